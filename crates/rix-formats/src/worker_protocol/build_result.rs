//! Build modes and build results. Mirrors `BuildMode` (`store-api.hh`),
//! `BuildResult` and `KeyedBuildResult` (`build-result.hh`) and their
//! serialisers in Nix's `worker-protocol.cc`, for protocols 1.34 to 1.38: the
//! timing fields (since 1.29) are always there, `cpuUser`/`cpuSystem` from 1.37.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use super::derived_path::DerivedPath;
use super::realisation::{DrvOutput, Realisation};
use super::serialise::{read_field, Ctx, Serialise};
use super::wire::{
    read_bool, read_count, read_i64, read_text, read_u32, read_u64, write_bool, write_bytes,
    write_i64, write_u64, WireError,
};

/// How to build (`bmNormal`, `bmRepair`, `bmCheck`). Sent as a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuildMode {
    Normal = 0,
    Repair = 1,
    Check = 2,
}

impl Serialise for BuildMode {
    fn read<R: Read + ?Sized>(r: &mut R, _: &Ctx) -> Result<Self, WireError> {
        match read_u64(r, "build mode")? {
            0 => Ok(BuildMode::Normal),
            1 => Ok(BuildMode::Repair),
            2 => Ok(BuildMode::Check),
            value => Err(WireError::UnknownTag {
                field: "build mode",
                value,
            }),
        }
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_u64(w, *self as u64)
    }
}

macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $n:literal,)*) => {
        /// How a build or substitution ended, with Nix's numbers
        /// (`BuildResult::Status`; new ones are only ever appended).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum BuildStatus {
            $($(#[$doc])* $name = $n,)*
        }

        impl BuildStatus {
            pub const ALL: &'static [BuildStatus] = &[$(BuildStatus::$name,)*];

            pub fn from_u64(n: u64) -> Option<BuildStatus> {
                match n {
                    $($n => Some(BuildStatus::$name),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    Built = 0,
    Substituted = 1,
    AlreadyValid = 2,
    PermanentFailure = 3,
    InputRejected = 4,
    OutputRejected = 5,
    /// Possibly transient.
    TransientFailure = 6,
    /// No longer used.
    CachedFailure = 7,
    TimedOut = 8,
    MiscFailure = 9,
    DependencyFailed = 10,
    LogLimitExceeded = 11,
    NotDeterministic = 12,
    ResolvesToAlreadyValid = 13,
    NoSubstituters = 14,
}

impl BuildStatus {
    /// Whether the wanted paths are valid now (`BuildResult::success`).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            BuildStatus::Built
                | BuildStatus::Substituted
                | BuildStatus::AlreadyValid
                | BuildStatus::ResolvesToAlreadyValid
        )
    }
}

/// The outcome of building or substituting one derived path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    pub status: BuildStatus,
    /// Empty on success.
    pub error_msg: String,
    /// How many times the build ran (more than once with `--check` / rounds).
    pub times_built: u32,
    /// Whether repeated builds differed.
    pub is_non_deterministic: bool,
    /// Seconds since the epoch; 0 when unknown.
    pub start_time: i64,
    pub stop_time: i64,
    /// Microseconds of CPU time (sent from 1.37 on).
    pub cpu_user: Option<i64>,
    pub cpu_system: Option<i64>,
    /// The realised outputs, by output name.
    pub built_outputs: BTreeMap<String, Realisation>,
}

impl BuildResult {
    /// A result with `status` and nothing else, as Nix's default-initialised
    /// fields.
    pub fn new(status: BuildStatus) -> BuildResult {
        BuildResult {
            status,
            error_msg: String::new(),
            times_built: 0,
            is_non_deterministic: false,
            start_time: 0,
            stop_time: 0,
            cpu_user: None,
            cpu_system: None,
            built_outputs: BTreeMap::new(),
        }
    }
}

/// `std::optional<std::chrono::microseconds>`: a tag (0 or 1), then the count.
fn read_opt_micros<R: Read + ?Sized>(
    r: &mut R,
    field: &'static str,
) -> Result<Option<i64>, WireError> {
    match read_u64(r, field)? {
        0 => Ok(None),
        1 => Ok(Some(read_i64(r, field)?)),
        value => Err(WireError::UnknownTag { field, value }),
    }
}

fn write_opt_micros<W: Write + ?Sized>(w: &mut W, v: Option<i64>) -> io::Result<()> {
    match v {
        None => write_u64(w, 0),
        Some(n) => {
            write_u64(w, 1)?;
            write_i64(w, n)
        }
    }
}

impl Serialise for BuildResult {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let status = read_u32(r, "BuildResult.status")?;
        let status = BuildStatus::from_u64(status.into()).ok_or(WireError::UnknownTag {
            field: "BuildResult.status",
            value: status.into(),
        })?;
        let mut res = BuildResult::new(status);
        res.error_msg = read_text(r, &ctx.limits, "BuildResult.errorMsg")?;
        res.times_built = read_u32(r, "BuildResult.timesBuilt")?;
        res.is_non_deterministic = read_bool(r, "BuildResult.isNonDeterministic")?;
        res.start_time = read_i64(r, "BuildResult.startTime")?;
        res.stop_time = read_i64(r, "BuildResult.stopTime")?;
        if ctx.version.has_cpu_times() {
            res.cpu_user = read_opt_micros(r, "BuildResult.cpuUser")?;
            res.cpu_system = read_opt_micros(r, "BuildResult.cpuSystem")?;
        }
        // A `std::map<DrvOutput, Realisation>`, re-keyed by output name.
        let count = read_count(r, &ctx.limits, "BuildResult.builtOutputs")?;
        for _ in 0..count {
            let id: DrvOutput = read_field(r, ctx, "BuildResult.builtOutputs")?;
            let realisation = read_field(r, ctx, "BuildResult.builtOutputs")?;
            res.built_outputs.insert(id.output_name, realisation);
        }
        Ok(res)
    }

    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        write_u64(w, self.status as u64)?;
        write_bytes(w, self.error_msg.as_bytes())?;
        write_u64(w, self.times_built.into())?;
        write_bool(w, self.is_non_deterministic)?;
        write_i64(w, self.start_time)?;
        write_i64(w, self.stop_time)?;
        if ctx.version.has_cpu_times() {
            write_opt_micros(w, self.cpu_user)?;
            write_opt_micros(w, self.cpu_system)?;
        }
        // Nix re-keys by each realisation's id and sends them in that order.
        let by_id: BTreeMap<&DrvOutput, &Realisation> =
            self.built_outputs.values().map(|r| (&r.id, r)).collect();
        write_u64(w, by_id.len() as u64)?;
        for (id, realisation) in by_id {
            id.write(w, ctx)?;
            realisation.write(w, ctx)?;
        }
        Ok(())
    }
}

/// A build result together with the path it is for (`BuildPathsWithResults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedBuildResult {
    pub path: DerivedPath,
    pub result: BuildResult,
}

impl Serialise for KeyedBuildResult {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        Ok(KeyedBuildResult {
            path: read_field(r, ctx, "KeyedBuildResult.path")?,
            result: read_field(r, ctx, "KeyedBuildResult.result")?,
        })
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        self.path.write(w, ctx)?;
        self.result.write(w, ctx)
    }
}
