//! The server side of Nix's daemon protocol (the worker protocol): what
//! `nix-daemon` does, so that Nix's own clients (`nix-store`, `nix-build`,
//! `nix copy`, ... with `--store unix://…` or `NIX_REMOTE=daemon`) use a rix
//! store unchanged. Protocols 1.34 (Nix 2.8) to 1.38 (Nix 2.26); the values on
//! the wire are `rix_formats::worker_protocol`'s.
//!
//! | module | concept | mirrors in Nix |
//! | --- | --- | --- |
//! | [`auth`] | the peer's uid/gid (`SO_PEERCRED`), `allowed-users`/`trusted-users` | `nix-daemon.cc` (`authPeer`, `matchUser`) |
//! | [`tunnel`] | the stderr channel: log lines, activities and build logs while an operation works, then `STDERR_LAST` or `STDERR_ERROR` | `daemon.cc` (`TunnelLogger`) |
//! | [`client_settings`] | `SetOptions`: what a client may change for its connection | `daemon.cc` (`ClientSettings::apply`) |
//! | [`connection`] | one connection: handshake, then each request in turn | `daemon.cc` (`processConnection`, `performOp`) |
//! | [`hangup`] | noticing a client that hung up, to stop its builds | `MonitorFdHup` |
//! | [`serve`] | the serve protocol's server (`nix-store --serve [--write]`, what an `ssh://` store starts): queries, NAR dumps, imports, `BuildDerivation`/`BuildPaths` | `nix-store.cc` (`opServe`) |
//! | [`listen`] | the socket: its path, mode 0666, systemd socket activation, a process forked per connection | `nix-daemon.cc` (`daemonLoop`) |
//!
//! A connection serves one client on whatever streams it is given (a Unix
//! socket, or stdin/stdout for `ssh-ng://`). Errors of one request are
//! reported to its client; a client that goes away mid-request (even in the
//! middle of a NAR) leaves the store as it was: paths are added through
//! `rix_store`'s write protocol, which removes what it wrote unless it commits.

pub mod auth;
pub mod client_settings;
pub mod connection;
pub mod hangup;
pub mod listen;
pub mod serve;
pub mod tunnel;

pub use auth::{authorise, Peer};
pub use connection::{serve_connection, Daemon};
pub use listen::{bind, fork_per_connection, listen_fds, serve_listener};

/// What the daemon tells clients it is (`daemonNixVersion`, 1.33 and later).
pub const DAEMON_VERSION: &str = concat!("rix ", env!("CARGO_PKG_VERSION"));
