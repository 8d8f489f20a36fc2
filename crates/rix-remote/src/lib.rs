//! A Nix store reached through a Nix daemon (`nix-daemon`, protocol 1.34 of
//! Nix 2.8 to 1.38 of Nix 2.24–2.26), over a Unix socket: the client side of
//! the worker protocol whose values `rix_formats::worker_protocol` encodes.
//!
//! | module | concept | mirrors in Nix |
//! | --- | --- | --- |
//! | [`url`] | `daemon`, `unix://…` store URLs; the socket path; the `auto` rule | `uds-remote-store.cc`, `openStore` in `store-api.cc` |
//! | [`connection`] | one connection: handshake, `SetOptions`, the stderr stream, framed uploads | `RemoteStore::initConnection`, `BasicClientConnection` |
//! | [`store`] | [`DaemonStore`]: `Store` and `GcStore` over a pool of connections, and the daemon's other operations | `RemoteStore`, `UDSRemoteStore` |
//! | [`transport`] | how a connection reaches its peer: a Unix socket, or a command's stdin/stdout | `UDSRemoteStore`/`SSHStore::openConnection` |
//! | [`ssh`] | running a command on a host over SSH (`NIX_SSHOPTS`, key, host key, `localhost` run directly) | `ssh.cc` (`SSHMaster`) |
//! | [`serve_store`] | [`ServeStore`]: an `ssh://` store, the serve protocol's client | `legacy-ssh-store.cc`, `serve-protocol-connection.cc` |
//! | [`ssh_url`] | `ssh://` and `ssh-ng://` store URLs and their parameters; opening them | `LegacySSHStoreConfig`, `SSHStoreConfig`, `CommonSSHStoreConfig` |
//! | [`logger`] | [`DaemonLogger`]: the daemon's log lines, activities and results | `Logger`, `processStderr` |
//!
//! Errors: what the daemon refuses comes back as
//! `StoreError::Remote { message, exit_status }` (Nix's message, colours
//! removed) and the connection stays usable; a conversation that broke (a
//! closed socket, bytes out of place) is `StoreError::Protocol`, and that
//! connection is dropped.

pub mod connection;
pub mod logger;
pub mod serve_store;
pub mod ssh;
pub mod ssh_url;
pub mod store;
pub mod transport;
pub mod url;

pub use connection::{strip_ansi, Connection};
pub use logger::{Activity, ActivityKind, DaemonLogger, QuietLogger, ResultKind, StderrLogger};
pub use serve_store::{ServeStore, ServeStoreConfig};
pub use store::{DaemonOptions, DaemonStore, Missing, SubstitutablePathInfo};
pub use url::{auto_store, default_socket_path, AutoStore, DaemonUrl};
