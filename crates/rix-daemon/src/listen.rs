//! The daemon's socket. Mirrors `daemonLoop` in Nix's `nix-daemon.cc`: the
//! socket is `<state>/daemon-socket/socket` (or `NIX_DAEMON_SOCKET_PATH`),
//! created with mode 0666 so that every user can connect (who may *do* what is
//! decided per connection, see [`crate::auth`]); or it comes from systemd
//! (`LISTEN_FDS`/`LISTEN_PID`, taken with the `listenfd` crate). `rix daemon`
//! serves each connection in a process forked from the daemon
//! ([`fork_per_connection`], as Nix's daemon forks); [`serve_listener`] serves
//! each on a thread of this process instead (tests). A connection that fails
//! or panics ends alone.

use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

/// The listening socket systemd passed this process, if it did (the first
/// one, as Nix takes it).
pub fn listen_fds() -> io::Result<Option<UnixListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    if fds.len() != 1 {
        return Err(io::Error::other(format!(
            "unexpected systemd environment variables: {} sockets passed (exactly one is expected)",
            fds.len()
        )));
    }
    fds.take_unix_listener(0)
}

/// Binds the socket at `path` as Nix does: its directory created, a stale
/// socket replaced, mode 0666.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let annotate = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(annotate)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(annotate(e)),
    }
    let listener = UnixListener::bind(path).map_err(annotate)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(annotate)?;
    Ok(listener)
}

/// One connection, or `None` when `accept` should simply be tried again (a
/// signal, a connection aborted before it was taken, or no descriptors left
/// for a moment: said, then a short pause, as Nix's daemon loop does).
fn accept(listener: &UnixListener) -> io::Result<Option<UnixStream>> {
    match listener.accept() {
        Ok((s, _)) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ECONNABORTED)
            ) =>
        {
            eprintln!("error: accepting a connection: {e}");
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Accepts connections forever, each handled by `handle` on its own thread.
/// A panicking handler ends only its connection.
pub fn serve_listener(
    listener: UnixListener,
    handle: Arc<dyn Fn(UnixStream) + Send + Sync>,
) -> io::Result<()> {
    loop {
        let Some(stream) = accept(&listener)? else {
            continue;
        };
        let handle = Arc::clone(&handle);
        let spawned = std::thread::Builder::new()
            .name("rix-daemon-conn".into())
            .spawn(move || {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(stream)));
            });
        if let Err(e) = spawned {
            eprintln!("error: cannot start a thread for a connection: {e}");
        }
    }
}

/// Accepts connections forever, each in a child process forked from this one,
/// as Nix's `daemonLoop` does; returns only in a child, with its connection
/// (the listening socket closed there). The child has its own pid, so its
/// temporary roots (`temproots/<pid>`) and SQLite connection are its own, and
/// they vanish when it exits; nothing it does can stop the daemon. The parent
/// reaps exited children at least once a second.
///
/// Forking rather than re-executing the binary spares each connection loading
/// and relocating the whole program (about 3 ms of CPU per connection for
/// rix), and the children share the daemon's pages until they write them.
///
/// # Safety
///
/// The calling process must be single-threaded (a child of a multi-threaded
/// process could inherit a lock another thread held) and must hold no open
/// SQLite connection or temporary-roots file (a child would share them).
#[allow(unsafe_code)]
pub unsafe fn fork_per_connection(listener: UnixListener) -> io::Result<UnixStream> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    let reap = || {
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
    };
    let stream = loop {
        reap();
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(stream) = accept(&listener)? else {
            continue;
        };
        // SAFETY: the caller guarantees a single-threaded process.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => break stream,
            Ok(ForkResult::Parent { .. }) => drop(stream),
            Err(e) => eprintln!("error: cannot fork a process for a connection: {e}"),
        }
    };
    drop(listener);
    Ok(stream)
}
