//! Nix's serve protocol (`nix-store --serve`, the `ssh://` store, Hydra's queue
//! runner), as a pure, synchronous codec like [`crate::worker_protocol`]: values
//! from `std::io::Read` and to `std::io::Write`, no processes. Byte for byte as
//! Nix 2.26 (protocol 2.7; every older 2.x a peer may offer is understood);
//! tested against Nix's own golden files
//! (`tests/vectors/nix-libstore/serve-protocol/`).
//!
//! | module | concept | mirrors in Nix |
//! | --- | --- | --- |
//! | [`version`] | [`ServeVersion`], magic numbers, both sides of the handshake, [`ServeCtx`] | `serve-protocol.hh`, `serve-protocol-connection.cc` (`handshake`) |
//! | [`command`] | [`ServeCommand`], the request codes | `ServeProto::Command` |
//! | [`values`] | the values whose form is the serve protocol's own: [`BuildOptions`], build results, path infos | `serve-protocol.cc` |
//! | [`request`] | [`ServeRequest`]: one command and its arguments, read by `nix-store --serve` and written by its client | `nix-store.cc` (`opServe`), `serve-protocol-connection.cc`, `legacy-ssh-store.cc` |
//!
//! The values the serve protocol shares with the worker protocol (strings,
//! lists, sets, maps, store paths, content addresses, realisations) keep their
//! [`crate::worker_protocol::Serialise`] form; [`ServeCtx::common`] gives the
//! context those serialisers take. Every reader takes untrusted bytes: it
//! returns a [`WireError`](crate::worker_protocol::WireError) naming the field
//! and never panics (the `serve_protocol` fuzz target checks this).

pub mod command;
pub mod request;
pub mod values;
pub mod version;

#[cfg(test)]
mod tests;

pub use command::ServeCommand;
pub use request::{AddToStoreNarInfo, RequestError, ServeRequest, StorePathWithOutputs};
pub use values::{BuildOptions, ServeSerialise};
pub use version::{
    client_handshake, server_handshake, HandshakeError, ServeCtx, ServeVersion, SERVE_MAGIC_1,
    SERVE_MAGIC_2,
};
