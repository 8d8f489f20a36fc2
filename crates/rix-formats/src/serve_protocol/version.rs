//! Serve protocol versions and the handshake. Mirrors `SERVE_PROTOCOL_VERSION`
//! and `GET_PROTOCOL_MINOR` (`serve-protocol.hh`) and
//! `BasicClientConnection::handshake` / `BasicServerConnection::handshake`
//! (`serve-protocol-connection.cc`).
//!
//! The client sends [`SERVE_MAGIC_1`] and its version; the server answers
//! [`SERVE_MAGIC_2`] and its version; both use the smaller of the two.

use std::fmt;
use std::io::{self, Read, Write};

use thiserror::Error;

use crate::store_path::StoreDir;
use crate::worker_protocol::version::ProtocolVersion;
use crate::worker_protocol::wire::{read_u32, write_u64, Limits, WireError};
use crate::worker_protocol::Ctx;

/// The client's greeting.
pub const SERVE_MAGIC_1: u64 = 0x390c_9deb;
/// The server's greeting.
pub const SERVE_MAGIC_2: u64 = 0x5452_eecb;

/// A serve protocol version, `major << 8 | minor` (Nix's `ServeProto::Version`,
/// an `unsigned int`). Its major number is 2 for every version Nix has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServeVersion(pub u32);

impl ServeVersion {
    /// 2.7, what Nix 2.8 to 2.26 speak and what rix offers.
    pub const LATEST: ServeVersion = ServeVersion(2 << 8 | 7);

    /// `major.minor`.
    pub const fn new(major: u8, minor: u8) -> ServeVersion {
        ServeVersion((major as u32) << 8 | minor as u32)
    }

    /// `GET_PROTOCOL_MAJOR`, shifted down.
    pub fn major(self) -> u32 {
        (self.0 & 0xff00) >> 8
    }

    /// `GET_PROTOCOL_MINOR`.
    pub fn minor(self) -> u32 {
        self.0 & 0xff
    }
}

impl fmt::Display for ServeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

/// What the serve protocol's serialisers need: the negotiated version, the
/// store directory and the limits on what a peer may make us read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeCtx {
    pub version: ServeVersion,
    pub store_dir: StoreDir,
    pub limits: Limits,
}

impl ServeCtx {
    /// A context with the default limits.
    pub fn new(version: ServeVersion, store_dir: StoreDir) -> ServeCtx {
        ServeCtx {
            version,
            store_dir,
            limits: Limits::default(),
        }
    }

    /// The context of the serialisers shared with the worker protocol
    /// (strings, sets, maps, store paths, content addresses, realisations),
    /// whose forms do not depend on the version.
    pub fn common(&self) -> Ctx {
        Ctx {
            version: ProtocolVersion::MAX,
            store_dir: self.store_dir.clone(),
            limits: self.limits,
        }
    }
}

/// Why a handshake failed, in Nix's words.
#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("'nix-store --serve' protocol mismatch from '{0}'")]
    Mismatch(String),
    #[error("unsupported 'nix-store --serve' protocol version on '{0}'")]
    UnsupportedVersion(String),
    /// The server's message for a client that did not open with
    /// [`SERVE_MAGIC_1`].
    #[error("protocol mismatch")]
    ClientMismatch,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The client's side: sends the greeting and `local`, reads the server's, and
/// returns the version both use. `host` names the server in errors.
pub fn client_handshake<W: Write + ?Sized, R: Read + ?Sized>(
    w: &mut W,
    r: &mut R,
    local: ServeVersion,
    host: &str,
) -> Result<ServeVersion, HandshakeError> {
    write_u64(w, SERVE_MAGIC_1)?;
    write_u64(w, local.0.into())?;
    w.flush()?;
    let magic = read_u32(r, "serve magic")?;
    if u64::from(magic) != SERVE_MAGIC_2 {
        return Err(HandshakeError::Mismatch(host.to_owned()));
    }
    let remote = ServeVersion(read_u32(r, "serve protocol version")?);
    if remote.0 & 0xff00 != 0x200 {
        return Err(HandshakeError::UnsupportedVersion(host.to_owned()));
    }
    Ok(remote.min(local))
}

/// The server's side: reads the client's greeting, answers with `local`, reads
/// the client's version and returns the version both use.
pub fn server_handshake<R: Read + ?Sized, W: Write + ?Sized>(
    r: &mut R,
    w: &mut W,
    local: ServeVersion,
) -> Result<ServeVersion, HandshakeError> {
    let magic = read_u32(r, "serve magic")?;
    if u64::from(magic) != SERVE_MAGIC_1 {
        return Err(HandshakeError::ClientMismatch);
    }
    write_u64(w, SERVE_MAGIC_2)?;
    write_u64(w, local.0.into())?;
    w.flush()?;
    let remote = ServeVersion(read_u32(r, "serve protocol version")?);
    Ok(remote.min(local))
}
