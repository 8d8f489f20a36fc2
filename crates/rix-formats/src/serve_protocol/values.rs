//! The values whose serve protocol form is the serve protocol's own: build
//! options, build results and path infos. Mirrors `serve-protocol.cc`
//! (`ServeProto::Serialise<BuildOptions>`, `<BuildResult>`,
//! `<UnkeyedValidPathInfo>`), each field present from the version Nix added it.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use super::version::ServeCtx;
use crate::hash::{Hash, HashAlgo};
use crate::worker_protocol::serialise::read_field;
use crate::worker_protocol::wire::{
    read_bool, read_count, read_i64, read_string, read_strings, read_text, read_u32, read_u64,
    write_bool, write_bytes, write_i64, write_strings, write_u64, WireError,
};
use crate::worker_protocol::{
    BuildResult, BuildStatus, DrvOutput, Realisation, Serialise, UnkeyedValidPathInfo,
};

/// A value with a serve protocol form of its own. `read` never panics.
pub trait ServeSerialise: Sized {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &ServeCtx) -> Result<Self, WireError>;
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &ServeCtx) -> io::Result<()>;
}

/// What a client asks of the builds of `BuildPaths` and `BuildDerivation`
/// (`ServeProto::BuildOptions`). Fields a version does not send keep their
/// defaults: no limits (0), one round, keep nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuildOptions {
    /// Seconds without output before the build is killed; 0: no limit.
    pub max_silent_time: u64,
    /// Seconds before the build is killed; 0: no limit.
    pub build_timeout: u64,
    /// From 2.2: bytes of log before the build is killed; 0: no limit.
    pub max_log_size: u64,
    /// From 2.3: extra rounds (Nix refuses anything but 0).
    pub nr_repeats: u64,
    /// From 2.3; ignored by Nix since repeats went.
    pub enforce_determinism: bool,
    /// From 2.7: keep a failed build's directory.
    pub keep_failed: bool,
}

impl ServeSerialise for BuildOptions {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &ServeCtx) -> Result<Self, WireError> {
        let minor = ctx.version.minor();
        let mut o = BuildOptions {
            max_silent_time: read_u32(r, "BuildOptions.maxSilentTime")?.into(),
            build_timeout: read_u32(r, "BuildOptions.buildTimeout")?.into(),
            ..BuildOptions::default()
        };
        if minor >= 2 {
            o.max_log_size = read_u64(r, "BuildOptions.maxLogSize")?;
        }
        if minor >= 3 {
            o.nr_repeats = read_u32(r, "BuildOptions.nrRepeats")?.into();
            o.enforce_determinism = read_u32(r, "BuildOptions.enforceDeterminism")? != 0;
        }
        if minor >= 7 {
            o.keep_failed = read_u32(r, "BuildOptions.keepFailed")? != 0;
        }
        Ok(o)
    }

    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &ServeCtx) -> io::Result<()> {
        let minor = ctx.version.minor();
        write_u64(w, self.max_silent_time)?;
        write_u64(w, self.build_timeout)?;
        if minor >= 2 {
            write_u64(w, self.max_log_size)?;
        }
        if minor >= 3 {
            write_u64(w, self.nr_repeats)?;
            write_bool(w, self.enforce_determinism)?;
        }
        if minor >= 7 {
            write_bool(w, self.keep_failed)?;
        }
        Ok(())
    }
}

/// Status and message; from 2.3 the rounds and times; from 2.6 the outputs
/// built (a map keyed by [`DrvOutput`], re-keyed by output name on reading).
impl ServeSerialise for BuildResult {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &ServeCtx) -> Result<Self, WireError> {
        let status = read_u32(r, "BuildResult.status")?;
        let status = BuildStatus::from_u64(status.into()).ok_or(WireError::UnknownTag {
            field: "BuildResult.status",
            value: status.into(),
        })?;
        let mut res = BuildResult::new(status);
        res.error_msg = read_text(r, &ctx.limits, "BuildResult.errorMsg")?;
        if ctx.version.minor() >= 3 {
            res.times_built = read_u32(r, "BuildResult.timesBuilt")?;
            res.is_non_deterministic = read_bool(r, "BuildResult.isNonDeterministic")?;
            res.start_time = read_i64(r, "BuildResult.startTime")?;
            res.stop_time = read_i64(r, "BuildResult.stopTime")?;
        }
        if ctx.version.minor() >= 6 {
            let common = ctx.common();
            let count = read_count(r, &ctx.limits, "BuildResult.builtOutputs")?;
            for _ in 0..count {
                let _: DrvOutput = read_field(r, &common, "BuildResult.builtOutputs")?;
                let realisation: Realisation = read_field(r, &common, "BuildResult.builtOutputs")?;
                res.built_outputs
                    .insert(realisation.id.output_name.clone(), realisation);
            }
        }
        Ok(res)
    }

    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &ServeCtx) -> io::Result<()> {
        write_u64(w, self.status as u64)?;
        write_bytes(w, self.error_msg.as_bytes())?;
        if ctx.version.minor() >= 3 {
            write_u64(w, self.times_built.into())?;
            write_bool(w, self.is_non_deterministic)?;
            write_i64(w, self.start_time)?;
            write_i64(w, self.stop_time)?;
        }
        if ctx.version.minor() >= 6 {
            let common = ctx.common();
            let by_id: BTreeMap<&DrvOutput, &Realisation> =
                self.built_outputs.values().map(|r| (&r.id, r)).collect();
            write_u64(w, by_id.len() as u64)?;
            for (id, realisation) in by_id {
                id.write(w, &common)?;
                realisation.write(w, &common)?;
            }
        }
        Ok(())
    }
}

/// Nix's `Hash::dummy`: what a path info read before 2.4 has for its NAR
/// hash (all-zero SHA-256).
pub fn dummy_hash() -> Hash {
    Hash::from_bytes(HashAlgo::Sha256, &[0; 32]).expect("32 bytes make a SHA-256")
}

/// Deriver, references, download size (the NAR size again), NAR size; from 2.4
/// the NAR hash (`sha256:<nix32>`), content address and signatures. The
/// registration time and `ultimate` do not travel.
impl ServeSerialise for UnkeyedValidPathInfo {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &ServeCtx) -> Result<Self, WireError> {
        let common = ctx.common();
        let deriver = read_field(r, &common, "ValidPathInfo.deriver")?;
        let references = read_field(r, &common, "ValidPathInfo.references")?;
        read_u64(r, "ValidPathInfo.downloadSize")?;
        let nar_size = read_u64(r, "ValidPathInfo.narSize")?;
        let mut info = UnkeyedValidPathInfo {
            deriver,
            references,
            nar_size,
            ..UnkeyedValidPathInfo::new(dummy_hash())
        };
        if ctx.version.minor() >= 4 {
            let s = read_string(r, &ctx.limits, "ValidPathInfo.narHash")?;
            if !s.is_empty() {
                info.nar_hash = Hash::parse_prefixed(&s)
                    .map_err(|e| WireError::invalid("ValidPathInfo.narHash", e))?;
            }
            info.ca = read_field(r, &common, "ValidPathInfo.ca")?;
            info.sigs = read_strings(r, &ctx.limits, "ValidPathInfo.sigs")?
                .into_iter()
                .collect();
        }
        Ok(info)
    }

    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &ServeCtx) -> io::Result<()> {
        let common = ctx.common();
        self.deriver.write(w, &common)?;
        self.references.write(w, &common)?;
        write_u64(w, self.nar_size)?;
        write_u64(w, self.nar_size)?;
        if ctx.version.minor() >= 4 {
            write_bytes(w, nar_hash_string(&self.nar_hash).as_bytes())?;
            self.ca.write(w, &common)?;
            write_strings(w, self.sigs.iter())?;
        }
        Ok(())
    }
}

/// `Hash::to_string(HashFormat::Nix32, true)`: `<algo>:<nix32>`.
fn nar_hash_string(h: &Hash) -> String {
    format!("{}:{}", h.algo(), h.to_nix32())
}
