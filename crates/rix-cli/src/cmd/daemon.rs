//! `rix daemon`: serve the store to Nix's clients over the daemon protocol
//! (like `nix-daemon`). Listens on `<state>/daemon-socket/socket` of the chosen
//! store (or `NIX_DAEMON_SOCKET_PATH`, or the socket systemd passes); with
//! `--stdio`, serves one connection on stdin/stdout (for `ssh-ng://`).
//!
//! As Nix's daemon does, each connection is served by its own process, forked
//! from the daemon: its temporary roots are its own and vanish when the client
//! disconnects, and whatever happens to one connection cannot take the daemon
//! down. The daemon process stays single-threaded for that (`main` starts no
//! signal thread for `rix daemon`; each connection starts its own).

use std::os::fd::AsFd as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

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
    /// With `--stdio`: treat the client as untrusted (as `nix-daemon
    /// --force-untrusted`): unsigned input-addressed paths are refused, and
    /// so are the settings only trusted users may pass.
    #[arg(long, requires = "stdio", conflicts_with = "force_trusted")]
    pub force_untrusted: bool,
    /// With `--stdio`: trust the client (the default of `--stdio`).
    #[arg(long, requires = "stdio")]
    pub force_trusted: bool,
    /// Internal: stdin/stdout is a connection the daemon accepted.
    #[arg(long, hide = true)]
    pub connection: bool,
}

pub fn run(ctx: &Context, args: &DaemonArgs) -> Result<()> {
    let layout = ctx.store_choice()?.layout;
    if args.stdio || args.connection {
        crate::handle_interrupts();
        let store = open_store(&ctx.settings, layout)?;
        let daemon = Daemon {
            store,
            settings: ctx.settings.clone(),
            exclusive: true,
        };
        let trusted = if args.connection {
            let peer =
                Peer::of_socket(&std::io::stdin()).context("reading the peer's credentials")?;
            match authorise(&ctx.settings, &peer) {
                Ok(t) => t,
                Err(msg) => anyhow::bail!("{msg}"),
            }
        } else {
            !args.force_untrusted
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
    // SAFETY: this process is single-threaded (no signal thread, nothing
    // spawned so far) and has opened no store: each connection opens its own.
    #[allow(unsafe_code)]
    let stream = unsafe { rix_daemon::fork_per_connection(listener) }?;
    // In the connection's process from here on.
    crate::handle_interrupts();
    let code = match serve_accepted(&ctx.settings, layout, stream) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rix daemon: {e:#}");
            1
        }
    };
    std::process::exit(code)
}

/// The daemon's store, with the settings that change how it works
/// (`auto-optimise-store`, the `ca-derivations` feature), as
/// `Context::open_store` opens it.
fn open_store(
    settings: &rix_store::settings::Settings,
    layout: rix_store::layout::StoreLayout,
) -> Result<rix_store::local_store::LocalStore> {
    let store = rix_store::local_store::LocalStore::open(layout)?;
    store.set_auto_optimise(settings.get_bool("auto-optimise-store")?);
    if settings.experimental_feature("ca-derivations") {
        store.enable_ca_derivations()?;
    }
    store.set_secret_key_files(
        settings
            .get_list("secret-key-files")
            .into_iter()
            .map(std::path::PathBuf::from)
            .collect(),
    );
    Ok(store)
}

/// Serves one accepted connection in its own process: the peer's credentials
/// checked, the store opened, requests answered until the client goes.
fn serve_accepted(
    settings: &rix_store::settings::Settings,
    layout: rix_store::layout::StoreLayout,
    stream: UnixStream,
) -> Result<()> {
    let peer = Peer::of_socket(&stream).context("cannot read a client's credentials")?;
    let trusted = match authorise(settings, &peer) {
        Ok(t) => t,
        Err(msg) => anyhow::bail!("error: {msg}"),
    };
    let store = open_store(settings, layout)?;
    let daemon = Daemon {
        store,
        settings: settings.clone(),
        exclusive: true,
    };
    // A client that hangs up mid-build takes its builds with it, as Nix's
    // `MonitorFdHup` does: this process serves nobody else.
    rix_daemon::hangup::watch(
        std::os::fd::OwnedFd::from(stream.try_clone()?),
        rix_build::running::cancel_all,
    );
    let input = stream.try_clone()?;
    if let Err(e) = rix_daemon::serve_connection(&daemon, input, stream, trusted) {
        // The client went away or spoke out of turn: its connection only.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("rix daemon: connection ended: {e}");
        }
    }
    Ok(())
}
