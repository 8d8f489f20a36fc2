//! The daemon's socket. Mirrors `daemonLoop` in Nix's `nix-daemon.cc`: the
//! socket is `<state>/daemon-socket/socket` (or `NIX_DAEMON_SOCKET_PATH`),
//! created with mode 0666 so that every user can connect (who may *do* what is
//! decided per connection, see [`crate::auth`]); or it comes from systemd
//! (`LISTEN_FDS`/`LISTEN_PID`, taken with the `listenfd` crate). Each
//! connection is handled on its own thread; a connection that fails or panics
//! ends alone.

use std::io;
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

/// Accepts connections forever, each handled by `handle` on its own thread.
/// A panicking handler ends only its connection.
pub fn serve_listener(
    listener: UnixListener,
    handle: Arc<dyn Fn(UnixStream) + Send + Sync>,
) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ECONNABORTED)
                ) =>
            {
                eprintln!("error: accepting a connection: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e),
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
