//! `rix daemon`: serve the store to Nix's clients over the daemon protocol
//! (like `nix-daemon`). Listens on `<state>/daemon-socket/socket` of the chosen
//! store (or `NIX_DAEMON_SOCKET_PATH`, or the socket systemd passes); with
//! `--stdio`, serves one connection on stdin/stdout (for `ssh-ng://`).
//!
//! As Nix's daemon forks, each connection is served by its own process (this
//! binary again, with the connection as stdin/stdout): its temporary roots are
//! its own and vanish when the client disconnects, and whatever happens to one
//! connection cannot take the daemon down.

use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use rix_daemon::{authorise, Daemon, Peer};

use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Serve one connection on stdin and stdout (trusted), as `nix-daemon --stdio`.
    #[arg(long)]
    pub stdio: bool,
    /// The socket to listen on (default: `NIX_DAEMON_SOCKET_PATH`, else
    /// `<state>/daemon-socket/socket` of the store).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Internal: stdin/stdout is a connection the daemon accepted.
    #[arg(long, hide = true)]
    pub connection: bool,
}

pub fn run(ctx: &Context, args: &DaemonArgs) -> Result<()> {
    let layout = ctx.store_choice()?.layout;
    if args.stdio || args.connection {
        let store = rix_store::local_store::LocalStore::open(layout)?;
        let daemon = Daemon {
            store,
            settings: ctx.settings.clone(),
        };
        let trusted = if args.connection {
            let peer =
                Peer::of_socket(&std::io::stdin()).context("reading the peer's credentials")?;
            match authorise(&ctx.settings, &peer) {
                Ok(t) => t,
                Err(msg) => anyhow::bail!("{msg}"),
            }
        } else {
            true
        };
        // The connection's descriptors as plain files: unbuffered by std (the
        // daemon buffers and flushes itself) and usable from build threads.
        let input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        let output = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
        let served = rix_daemon::serve_connection(&daemon, input, output, trusted);
        if let Err(e) = served {
            // The client went away or spoke out of turn: its connection only.
            if args.connection && e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("rix daemon: connection ended: {e}");
            }
        }
        return Ok(());
    }

    let listener = match rix_daemon::listen_fds()? {
        Some(l) => l,
        None => {
            let path = match (&args.socket, std::env::var_os("NIX_DAEMON_SOCKET_PATH")) {
                (Some(p), _) => p.clone(),
                (None, Some(p)) => PathBuf::from(p),
                (None, None) => layout.state_dir.join("daemon-socket/socket"),
            };
            let l = rix_daemon::bind(&path)?;
            eprintln!("rix daemon: listening on {}", path.display());
            l
        }
    };
    let exe = std::env::current_exe().context("finding the rix binary")?;
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let settings = ctx.settings.clone();
    let handle = move |stream: UnixStream| {
        let peer = match Peer::of_socket(&stream) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("rix daemon: cannot read a client's credentials: {e}");
                return;
            }
        };
        if let Err(msg) = authorise(&settings, &peer) {
            eprintln!("rix daemon: error: {msg}");
            return;
        }
        let input = match stream.try_clone() {
            Ok(s) => OwnedFd::from(s),
            Err(e) => {
                eprintln!("rix daemon: {e}");
                return;
            }
        };
        let child = Command::new(&exe)
            .args(&argv)
            .arg("--connection")
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(OwnedFd::from(stream)))
            .spawn();
        match child {
            Ok(mut c) => {
                let _ = c.wait();
            }
            Err(e) => eprintln!("rix daemon: cannot start a connection process: {e}"),
        }
    };
    rix_daemon::serve_listener(listener, Arc::new(handle))?;
    Ok(())
}
