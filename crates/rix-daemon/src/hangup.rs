//! Noticing that a client has hung up while its operation runs, as Nix's
//! `MonitorFdHup`: a connection's process stops its builds when nobody is left
//! to take their results, instead of running them to the end.

use std::os::fd::OwnedFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// `POLLRDHUP` (Linux): the peer closed its end (not named by the nix crate).
const POLLRDHUP: PollFlags = PollFlags::from_bits_retain(nix::libc::POLLRDHUP);

/// Watches the connection `fd` on a thread of its own and calls `on_hangup`
/// once the peer has closed it (`POLLRDHUP`, `POLLHUP` or `POLLERR`). Reads
/// nothing: requests stay for the connection to read. For a process that
/// serves this one connection (the thread lives as long as the process).
pub fn watch(fd: OwnedFd, on_hangup: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name("hangup".into())
        .spawn(move || loop {
            let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&fd), POLLRDHUP)];
            match poll(&mut fds, PollTimeout::NONE) {
                // Only `POLLRDHUP` is asked for, and `POLLHUP`/`POLLERR` come
                // unasked: any event is the hang-up. (`revents()` cannot show
                // `POLLRDHUP`, which the nix crate does not name.)
                Ok(n) if n > 0 => {
                    on_hangup();
                    return;
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        })
        .expect("cannot start the hang-up watcher");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;

    #[test]
    fn a_closed_peer_is_noticed_and_pending_requests_are_not_read() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel();
        watch(OwnedFd::from(ours.try_clone().unwrap()), move || {
            tx.send(()).unwrap()
        });
        // Data waiting is not a hang-up, and stays unread.
        use std::io::{Read, Write};
        (&theirs).write_all(b"request").unwrap();
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(theirs);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the hang-up is noticed");
        let mut buf = [0u8; 7];
        (&ours).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"request");
    }
}
