//! The opening of a connection. Mirrors `BasicClientConnection::handshake` /
//! `BasicServerConnection::handshake` and `postHandshake` in Nix's
//! `worker-protocol-connection.cc`, and `ClientHandshakeInfo` with its
//! serialiser in `worker-protocol.cc`.
//!
//! In order:
//! 1. client → daemon: [`WORKER_MAGIC_1`] ([`write_client_magic`] / [`read_client_magic`]);
//! 2. daemon → client: [`ServerHello`] (`WORKER_MAGIC_2`, the daemon's version);
//! 3. client → daemon: the client's version ([`write_raw_version`] / [`read_raw_version`]).
//!    Nix 2.8's client waits for step 2 before sending it; later ones send
//!    steps 1 and 3 together. Both sides then take
//!    [`ProtocolVersion::negotiate`](super::ProtocolVersion::negotiate);
//! 4. from 1.38: client → daemon, then daemon → client, each a set of feature
//!    names ([`Features`]); the connection uses their intersection;
//! 5. client → daemon: [`ClientOptions`] (two obsolete fields);
//! 6. daemon → client: [`ClientHandshakeInfo`], then the stderr stream of the
//!    daemon's start-up, ended by `STDERR_LAST` (see [`super::stderr`]).

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use super::serialise::{Ctx, Serialise};
use super::version::{RawVersion, WORKER_MAGIC_1, WORKER_MAGIC_2};
use super::wire::{read_string, read_u32, read_u64, write_bool, write_bytes, write_u64, WireError};

/// Reads the client's magic number.
pub fn read_client_magic<R: Read + ?Sized>(r: &mut R) -> Result<(), WireError> {
    read_magic(r, WORKER_MAGIC_1, "client magic")
}

/// Writes the client's magic number.
pub fn write_client_magic<W: Write + ?Sized>(w: &mut W) -> io::Result<()> {
    write_u64(w, WORKER_MAGIC_1)
}

fn read_magic<R: Read + ?Sized>(
    r: &mut R,
    expected: u64,
    field: &'static str,
) -> Result<(), WireError> {
    // Nix reads it with `readInt`, so a value over 32 bits is refused as such.
    let found = read_u32(r, field)?;
    if u64::from(found) != expected {
        return Err(WireError::invalid(
            field,
            format!("protocol mismatch: {found:#x} instead of {expected:#x}"),
        ));
    }
    Ok(())
}

/// Reads a peer's version (`readInt`).
pub fn read_raw_version<R: Read + ?Sized>(
    r: &mut R,
    field: &'static str,
) -> Result<RawVersion, WireError> {
    read_u32(r, field).map(RawVersion)
}

/// Writes a version.
pub fn write_raw_version<W: Write + ?Sized>(w: &mut W, v: RawVersion) -> io::Result<()> {
    write_u64(w, v.0.into())
}

/// The daemon's greeting: its magic number and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    pub version: RawVersion,
}

impl ServerHello {
    pub fn read<R: Read + ?Sized>(r: &mut R) -> Result<ServerHello, WireError> {
        read_magic(r, WORKER_MAGIC_2, "daemon magic")?;
        Ok(ServerHello {
            version: read_raw_version(r, "daemon version")?,
        })
    }

    pub fn write<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        write_u64(w, WORKER_MAGIC_2)?;
        write_raw_version(w, self.version)
    }
}

/// A feature set (1.38 on): names of optional protocol extensions. Nix 2.26
/// knows none yet.
pub type Features = BTreeSet<String>;

/// The obsolete fields the client sends after the handshake: a CPU affinity
/// (Nix always sends "none", `0`) and `reserveSpace` (always `false`). The
/// daemon reads each with `readInt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientOptions {
    pub cpu_affinity: Option<u32>,
    pub reserve_space: bool,
}

impl Serialise for ClientOptions {
    fn read<R: Read + ?Sized>(r: &mut R, _: &Ctx) -> Result<Self, WireError> {
        let cpu_affinity = if read_u32(r, "CPU affinity flag")? != 0 {
            Some(read_u32(r, "CPU affinity")?)
        } else {
            None
        };
        Ok(ClientOptions {
            cpu_affinity,
            reserve_space: read_u32(r, "reserveSpace")? != 0,
        })
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        match self.cpu_affinity {
            None => write_u64(w, 0)?,
            Some(cpu) => {
                write_u64(w, 1)?;
                write_u64(w, cpu.into())?;
            }
        }
        write_bool(w, self.reserve_space)
    }
}

/// Whether the daemon trusts the client (`TrustedFlag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrustedFlag {
    Trusted,
    NotTrusted,
}

/// `0` unknown, `1` trusted, `2` not trusted.
impl Serialise for Option<TrustedFlag> {
    fn read<R: Read + ?Sized>(r: &mut R, _: &Ctx) -> Result<Self, WireError> {
        match read_u64(r, "trusted flag")? {
            0 => Ok(None),
            1 => Ok(Some(TrustedFlag::Trusted)),
            2 => Ok(Some(TrustedFlag::NotTrusted)),
            value => Err(WireError::UnknownTag {
                field: "trusted flag",
                value,
            }),
        }
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_u64(
            w,
            match self {
                None => 0,
                Some(TrustedFlag::Trusted) => 1,
                Some(TrustedFlag::NotTrusted) => 2,
            },
        )
    }
}

/// What the daemon tells the client once the version is settled: its Nix
/// version (always, since 1.33) and, from 1.35, whether it trusts the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshakeInfo {
    pub daemon_nix_version: String,
    /// Always `None` below 1.35 (not sent).
    pub remote_trusts_us: Option<TrustedFlag>,
}

impl Serialise for ClientHandshakeInfo {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let daemon_nix_version = read_string(r, &ctx.limits, "daemon Nix version")?;
        let remote_trusts_us = if ctx.version.has_trust_flag() {
            Option::<TrustedFlag>::read(r, ctx)?
        } else {
            None
        };
        Ok(ClientHandshakeInfo {
            daemon_nix_version,
            remote_trusts_us,
        })
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        write_bytes(w, self.daemon_nix_version.as_bytes())?;
        if ctx.version.has_trust_flag() {
            self.remote_trusts_us.write(w, ctx)?;
        }
        Ok(())
    }
}

/// The features both sides named, as Nix's `intersectFeatures`.
pub fn intersect_features(ours: &Features, theirs: &Features) -> Features {
    ours.intersection(theirs).cloned().collect()
}
