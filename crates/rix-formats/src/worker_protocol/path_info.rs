//! What the daemon knows about a valid path, as it travels. Mirrors
//! `UnkeyedValidPathInfo` and `ValidPathInfo` (`path-info.hh`) and their
//! serialisers in Nix's `worker-protocol.cc`, for protocols 1.34 to 1.38 (all
//! later than 1.16, which added `ultimate`, `sigs` and `ca`).
//!
//! These are plain wire structs; rix-store's `ValidPathInfo` is the store's own
//! record. The NAR hash is sent as bare base16 and read as SHA-256 in any
//! encoding (`Hash::parseAny(s, SHA256)`); signatures are free-form strings, as
//! Nix keeps them (`StringSet`).

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use super::serialise::{read_field, Ctx, Serialise};
use super::wire::{
    read_bool, read_i64, read_string, read_u64, write_bool, write_bytes, write_i64, write_u64,
    WireError,
};
use crate::content_address::ContentAddress;
use crate::hash::{Hash, HashAlgo};
use crate::store_path::StorePath;

/// Path metadata without the path (the answer to `QueryPathInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnkeyedValidPathInfo {
    pub deriver: Option<StorePath>,
    pub nar_hash: Hash,
    pub references: BTreeSet<StorePath>,
    /// Seconds since the epoch.
    pub registration_time: i64,
    pub nar_size: u64,
    /// Built locally: trusted without signatures.
    pub ultimate: bool,
    pub sigs: BTreeSet<String>,
    pub ca: Option<ContentAddress>,
}

impl UnkeyedValidPathInfo {
    /// A record with `nar_hash` and every other field empty or zero, as Nix's
    /// `UnkeyedValidPathInfo(Hash)`.
    pub fn new(nar_hash: Hash) -> UnkeyedValidPathInfo {
        UnkeyedValidPathInfo {
            deriver: None,
            nar_hash,
            references: BTreeSet::new(),
            registration_time: 0,
            nar_size: 0,
            ultimate: false,
            sigs: BTreeSet::new(),
            ca: None,
        }
    }
}

impl Serialise for UnkeyedValidPathInfo {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let deriver = read_field(r, ctx, "ValidPathInfo.deriver")?;
        let nar_hash = read_string(r, &ctx.limits, "ValidPathInfo.narHash")?;
        let nar_hash = Hash::parse_any(&nar_hash, Some(HashAlgo::Sha256))
            .map_err(|e| WireError::invalid("ValidPathInfo.narHash", e))?;
        Ok(UnkeyedValidPathInfo {
            deriver,
            nar_hash,
            references: read_field(r, ctx, "ValidPathInfo.references")?,
            registration_time: read_i64(r, "ValidPathInfo.registrationTime")?,
            nar_size: read_u64(r, "ValidPathInfo.narSize")?,
            ultimate: read_bool(r, "ValidPathInfo.ultimate")?,
            sigs: read_field(r, ctx, "ValidPathInfo.sigs")?,
            ca: read_field(r, ctx, "ValidPathInfo.ca")?,
        })
    }

    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        self.deriver.write(w, ctx)?;
        write_bytes(w, self.nar_hash.to_base16().as_bytes())?;
        self.references.write(w, ctx)?;
        write_i64(w, self.registration_time)?;
        write_u64(w, self.nar_size)?;
        write_bool(w, self.ultimate)?;
        self.sigs.write(w, ctx)?;
        self.ca.write(w, ctx)
    }
}

/// Path metadata with the path (`AddToStoreNar`, `AddMultipleToStore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPathInfo {
    pub path: StorePath,
    pub info: UnkeyedValidPathInfo,
}

impl Serialise for ValidPathInfo {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        Ok(ValidPathInfo {
            path: read_field(r, ctx, "ValidPathInfo.path")?,
            info: UnkeyedValidPathInfo::read(r, ctx)?,
        })
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        self.path.write(w, ctx)?;
        self.info.write(w, ctx)
    }
}
