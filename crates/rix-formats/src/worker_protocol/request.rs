//! The requests a client sends: an operation code ([`WorkerOp`]) and its
//! arguments, as one [`Request`] value. Mirrors what `performOp` in Nix's
//! `daemon.cc` reads (server side, [`Request::read`]) and what
//! `RemoteStore` in `remote-store.cc` writes (client side, [`Request::write`]),
//! for protocols 1.34 (Nix 2.8) to 1.38 (Nix 2.26).
//!
//! Some operations are followed by a data stream that is not part of the
//! request: `AddToStore` (the dump: file bytes or a NAR), `AddToStoreNar` (the
//! NAR), `AddMultipleToStore` (a count, then each path's info and NAR) and
//! `AddBuildLog` (the log) are each followed by a *framed* stream, which the
//! server reads with [`FramedReader`](super::wire::FramedReader) and the client
//! writes with [`FramedWriter`](super::wire::FramedWriter) after the request.
//! `ImportPaths` (obsolete) pulls its data through `STDERR_READ`.
//!
//! Replies differ per operation and are written by the server directly with the
//! [`Serialise`] values.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use super::build_result::BuildMode;
use super::derived_path::DerivedPath;
use super::op::WorkerOp;
use super::path_info::ValidPathInfo;
use super::realisation::{DrvOutput, Realisation};
use super::serialise::{read_field, Ctx, Serialise};
use super::wire::{
    initial_capacity, read_bool, read_bytes, read_count, read_string, read_strings, read_u32,
    read_u64, write_bool, write_bytes, write_strings, write_u64, WireError,
};
use crate::content_address::ContentAddress;
use crate::derivation::{fixed_output_path, CaMethod, Derivation, DerivationOutput};
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{StoreDir, StorePath};

/// How `AddToStore` (1.25 form) hashes what follows it: Nix's
/// `ContentAddressMethod` with its hash algorithm, on the wire as
/// `text:sha256`, `fixed:sha1`, `fixed:r:sha256`, `fixed:git:sha1`
/// (`ContentAddressMethod::renderWithAlgo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentAddressMethodWithAlgo {
    pub method: AddMethod,
    pub algo: HashAlgo,
}

/// The content address method of `AddToStore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddMethod {
    /// `text:`: a text file (the dump is its bytes), SHA-256 only.
    Text,
    /// `fixed:`: a flat file (the dump is its bytes).
    Flat,
    /// `fixed:r:`: a NAR.
    Recursive,
    /// `fixed:git:`: Git's tree hashing (Nix 2.26, experimental); the dump is a NAR.
    Git,
}

impl ContentAddressMethodWithAlgo {
    /// Parses `text:sha256`, `fixed:r:sha256`, ... (`ContentAddressMethod::parseWithAlgo`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (method, algo) = if let Some(rest) = s.strip_prefix("text:") {
            (AddMethod::Text, rest)
        } else if let Some(rest) = s.strip_prefix("fixed:") {
            if let Some(rest) = rest.strip_prefix("r:") {
                (AddMethod::Recursive, rest)
            } else if let Some(rest) = rest.strip_prefix("git:") {
                (AddMethod::Git, rest)
            } else {
                (AddMethod::Flat, rest)
            }
        } else {
            return Err(format!(
                "content address method '{s}' does not start with 'text:' or 'fixed:'"
            ));
        };
        let algo: HashAlgo = algo
            .parse()
            .map_err(|_| format!("unknown hash algorithm '{algo}' in '{s}'"))?;
        if method == AddMethod::Text && algo != HashAlgo::Sha256 {
            return Err(format!("text hashing needs sha256, not '{algo}'"));
        }
        Ok(ContentAddressMethodWithAlgo { method, algo })
    }

    /// The wire form.
    pub fn render(&self) -> String {
        let prefix = match self.method {
            AddMethod::Text => "text:",
            AddMethod::Flat => "fixed:",
            AddMethod::Recursive => "fixed:r:",
            AddMethod::Git => "fixed:git:",
        };
        format!("{prefix}{}", self.algo)
    }
}

/// The client's settings (`SetOptions`), as Nix's daemon reads them into
/// `ClientSettings`: every number with `readInt`, then the overrides in the
/// order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientSettings {
    pub keep_failed: bool,
    pub keep_going: bool,
    pub try_fallback: bool,
    /// A verbosity level (see `stderr::verbosity`).
    pub verbosity: u32,
    pub max_build_jobs: u32,
    pub max_silent_time: u32,
    /// Sent as a verbosity: `lvlError` (0) means "show build logs".
    pub verbose_build: bool,
    pub build_cores: u32,
    pub use_substitutes: bool,
    /// `name`, `value` pairs; Nix keeps the first of a repeated name.
    pub overrides: Vec<(String, String)>,
}

impl Serialise for ClientSettings {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let flag = |r: &mut R, field| read_u32(r, field).map(|n| n != 0);
        let keep_failed = flag(r, "keepFailed")?;
        let keep_going = flag(r, "keepGoing")?;
        let try_fallback = flag(r, "tryFallback")?;
        let verbosity = read_u32(r, "verbosity")?;
        let max_build_jobs = read_u32(r, "maxBuildJobs")?;
        let max_silent_time = read_u32(r, "maxSilentTime")?;
        read_u32(r, "useBuildHook (obsolete)")?;
        let verbose_build = read_u32(r, "verboseBuild")? == 0;
        read_u32(r, "logType (obsolete)")?;
        read_u32(r, "printBuildTrace (obsolete)")?;
        let build_cores = read_u32(r, "buildCores")?;
        let use_substitutes = flag(r, "useSubstitutes")?;
        let count = read_u32(r, "overrides")? as usize;
        if count as u64 > ctx.limits.max_list {
            return Err(WireError::TooLong {
                field: "overrides",
                len: count as u64,
                max: ctx.limits.max_list,
            });
        }
        let mut overrides = Vec::with_capacity(initial_capacity(count));
        for _ in 0..count {
            let name = read_string(r, &ctx.limits, "override name")?;
            let value = read_string(r, &ctx.limits, "override value")?;
            overrides.push((name, value));
        }
        Ok(ClientSettings {
            keep_failed,
            keep_going,
            try_fallback,
            verbosity,
            max_build_jobs,
            max_silent_time,
            verbose_build,
            build_cores,
            use_substitutes,
            overrides,
        })
    }

    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_bool(w, self.keep_failed)?;
        write_bool(w, self.keep_going)?;
        write_bool(w, self.try_fallback)?;
        write_u64(w, self.verbosity.into())?;
        write_u64(w, self.max_build_jobs.into())?;
        write_u64(w, self.max_silent_time.into())?;
        write_u64(w, 1)?; // useBuildHook
        write_u64(w, if self.verbose_build { 0 } else { 7 })?; // lvlError / lvlVomit
        write_u64(w, 0)?; // logType
        write_u64(w, 0)?; // printBuildTrace
        write_u64(w, self.build_cores.into())?;
        write_bool(w, self.use_substitutes)?;
        write_u64(w, self.overrides.len() as u64)?;
        for (name, value) in &self.overrides {
            write_bytes(w, name.as_bytes())?;
            write_bytes(w, value.as_bytes())?;
        }
        Ok(())
    }
}

/// What `CollectGarbage` should do (`GCOptions::GCAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GcAction {
    ReturnLive = 0,
    ReturnDead = 1,
    DeleteDead = 2,
    DeleteSpecific = 3,
}

/// `CollectGarbage`'s arguments (`GCOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRequest {
    pub action: GcAction,
    pub paths_to_delete: BTreeSet<StorePath>,
    pub ignore_liveness: bool,
    /// Stop after freeing this many bytes (`u64::MAX`: no limit).
    pub max_freed: u64,
}

/// One request: an operation and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    IsValidPath(StorePath),
    HasSubstitutes(StorePath),
    /// Obsolete.
    QueryPathHash(StorePath),
    /// Obsolete.
    QueryReferences(StorePath),
    QueryReferrers(StorePath),
    /// The 1.25 form; the dump follows, framed.
    AddToStore {
        name: String,
        method: ContentAddressMethodWithAlgo,
        references: BTreeSet<StorePath>,
        repair: bool,
    },
    /// Obsolete (Nix 2.8 still sends it for `builtins.toFile` and `.drv`s
    /// through older code paths).
    AddTextToStore {
        name: String,
        text: Vec<u8>,
        references: BTreeSet<StorePath>,
    },
    BuildPaths {
        paths: Vec<DerivedPath>,
        mode: BuildMode,
    },
    EnsurePath(StorePath),
    AddTempRoot(StorePath),
    /// A symlink outside the store, as the client names it.
    AddIndirectRoot(String),
    /// Obsolete: answered at once.
    SyncWithGC,
    FindRoots,
    /// Obsolete.
    ExportPath {
        path: StorePath,
        sign: u32,
    },
    /// Obsolete.
    QueryDeriver(StorePath),
    SetOptions(ClientSettings),
    CollectGarbage(GcRequest),
    QuerySubstitutablePathInfo(StorePath),
    /// Obsolete.
    QueryDerivationOutputs(StorePath),
    QueryAllValidPaths,
    /// Removed.
    QueryFailedPaths,
    /// Removed.
    ClearFailedPaths,
    QueryPathInfo(StorePath),
    /// Obsolete; the data comes through `STDERR_READ`.
    ImportPaths,
    /// Obsolete.
    QueryDerivationOutputNames(StorePath),
    QueryPathFromHashPart(String),
    QuerySubstitutablePathInfos(BTreeMap<StorePath, Option<ContentAddress>>),
    QueryValidPaths {
        paths: BTreeSet<StorePath>,
        substitute: bool,
    },
    QuerySubstitutablePaths(BTreeSet<StorePath>),
    QueryValidDerivers(StorePath),
    OptimiseStore,
    VerifyStore {
        check_contents: bool,
        repair: bool,
    },
    /// A derivation sent in full (Nix's `BasicDerivation`: no input
    /// derivations); its name comes from `drv_path`.
    BuildDerivation {
        drv_path: StorePath,
        drv: Derivation,
        mode: BuildMode,
    },
    AddSignatures {
        path: StorePath,
        sigs: BTreeSet<String>,
    },
    NarFromPath(StorePath),
    /// The NAR follows, framed.
    AddToStoreNar {
        info: ValidPathInfo,
        repair: bool,
        dont_check_sigs: bool,
    },
    QueryMissing(Vec<DerivedPath>),
    QueryDerivationOutputMap(StorePath),
    RegisterDrvOutput(Realisation),
    QueryRealisation(DrvOutput),
    /// A count, then each path's info (at version 1.16) and NAR follow, framed.
    AddMultipleToStore {
        repair: bool,
        dont_check_sigs: bool,
    },
    /// The log follows, framed. The path travels as a base name.
    AddBuildLog(StorePath),
    BuildPathsWithResults {
        paths: Vec<DerivedPath>,
        mode: BuildMode,
    },
    /// Since 1.36.
    AddPermRoot {
        path: StorePath,
        gc_root: String,
    },
}

fn path<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<StorePath, WireError> {
    read_field(r, ctx, "path")
}

impl Request {
    /// The operation code.
    pub fn op(&self) -> WorkerOp {
        use Request as Q;
        use WorkerOp as O;
        match self {
            Q::IsValidPath(_) => O::IsValidPath,
            Q::HasSubstitutes(_) => O::HasSubstitutes,
            Q::QueryPathHash(_) => O::QueryPathHash,
            Q::QueryReferences(_) => O::QueryReferences,
            Q::QueryReferrers(_) => O::QueryReferrers,
            Q::AddToStore { .. } => O::AddToStore,
            Q::AddTextToStore { .. } => O::AddTextToStore,
            Q::BuildPaths { .. } => O::BuildPaths,
            Q::EnsurePath(_) => O::EnsurePath,
            Q::AddTempRoot(_) => O::AddTempRoot,
            Q::AddIndirectRoot(_) => O::AddIndirectRoot,
            Q::SyncWithGC => O::SyncWithGC,
            Q::FindRoots => O::FindRoots,
            Q::ExportPath { .. } => O::ExportPath,
            Q::QueryDeriver(_) => O::QueryDeriver,
            Q::SetOptions(_) => O::SetOptions,
            Q::CollectGarbage(_) => O::CollectGarbage,
            Q::QuerySubstitutablePathInfo(_) => O::QuerySubstitutablePathInfo,
            Q::QueryDerivationOutputs(_) => O::QueryDerivationOutputs,
            Q::QueryAllValidPaths => O::QueryAllValidPaths,
            Q::QueryFailedPaths => O::QueryFailedPaths,
            Q::ClearFailedPaths => O::ClearFailedPaths,
            Q::QueryPathInfo(_) => O::QueryPathInfo,
            Q::ImportPaths => O::ImportPaths,
            Q::QueryDerivationOutputNames(_) => O::QueryDerivationOutputNames,
            Q::QueryPathFromHashPart(_) => O::QueryPathFromHashPart,
            Q::QuerySubstitutablePathInfos(_) => O::QuerySubstitutablePathInfos,
            Q::QueryValidPaths { .. } => O::QueryValidPaths,
            Q::QuerySubstitutablePaths(_) => O::QuerySubstitutablePaths,
            Q::QueryValidDerivers(_) => O::QueryValidDerivers,
            Q::OptimiseStore => O::OptimiseStore,
            Q::VerifyStore { .. } => O::VerifyStore,
            Q::BuildDerivation { .. } => O::BuildDerivation,
            Q::AddSignatures { .. } => O::AddSignatures,
            Q::NarFromPath(_) => O::NarFromPath,
            Q::AddToStoreNar { .. } => O::AddToStoreNar,
            Q::QueryMissing(_) => O::QueryMissing,
            Q::QueryDerivationOutputMap(_) => O::QueryDerivationOutputMap,
            Q::RegisterDrvOutput(_) => O::RegisterDrvOutput,
            Q::QueryRealisation(_) => O::QueryRealisation,
            Q::AddMultipleToStore { .. } => O::AddMultipleToStore,
            Q::AddBuildLog(_) => O::AddBuildLog,
            Q::BuildPathsWithResults { .. } => O::BuildPathsWithResults,
            Q::AddPermRoot { .. } => O::AddPermRoot,
        }
    }

    /// Whether a framed stream follows the request.
    pub fn has_framed_data(&self) -> bool {
        matches!(
            self,
            Request::AddToStore { .. }
                | Request::AddToStoreNar { .. }
                | Request::AddMultipleToStore { .. }
                | Request::AddBuildLog(_)
        )
    }

    /// Reads the arguments of `op` (the code has been read already, see
    /// [`WorkerOp::read`]). An operation the negotiated version does not have
    /// (`AddPermRoot` below 1.36) is refused.
    pub fn read<R: Read + ?Sized>(
        op: WorkerOp,
        r: &mut R,
        ctx: &Ctx,
    ) -> Result<Request, WireError> {
        use Request as Q;
        use WorkerOp as O;
        let limits = &ctx.limits;
        Ok(match op {
            O::IsValidPath => Q::IsValidPath(path(r, ctx)?),
            O::HasSubstitutes => Q::HasSubstitutes(path(r, ctx)?),
            O::QueryPathHash => Q::QueryPathHash(path(r, ctx)?),
            O::QueryReferences => Q::QueryReferences(path(r, ctx)?),
            O::QueryReferrers => Q::QueryReferrers(path(r, ctx)?),
            O::AddToStore => {
                let name = read_string(r, limits, "AddToStore.name")?;
                let method = read_string(r, limits, "AddToStore.camStr")?;
                let method = ContentAddressMethodWithAlgo::parse(&method)
                    .map_err(|e| WireError::invalid("AddToStore.camStr", e))?;
                Q::AddToStore {
                    name,
                    method,
                    references: read_field(r, ctx, "AddToStore.references")?,
                    repair: read_bool(r, "AddToStore.repair")?,
                }
            }
            O::AddTextToStore => Q::AddTextToStore {
                name: read_string(r, limits, "AddTextToStore.name")?,
                text: read_bytes(r, limits, "AddTextToStore.text")?,
                references: read_field(r, ctx, "AddTextToStore.references")?,
            },
            O::BuildPaths => Q::BuildPaths {
                paths: read_field(r, ctx, "BuildPaths.paths")?,
                mode: read_field(r, ctx, "BuildPaths.mode")?,
            },
            O::EnsurePath => Q::EnsurePath(path(r, ctx)?),
            O::AddTempRoot => Q::AddTempRoot(path(r, ctx)?),
            O::AddIndirectRoot => {
                Q::AddIndirectRoot(read_string(r, limits, "AddIndirectRoot.path")?)
            }
            O::SyncWithGC => Q::SyncWithGC,
            O::FindRoots => Q::FindRoots,
            O::ExportPath => Q::ExportPath {
                path: path(r, ctx)?,
                sign: read_u32(r, "ExportPath.sign")?,
            },
            O::QueryDeriver => Q::QueryDeriver(path(r, ctx)?),
            O::SetOptions => Q::SetOptions(read_field(r, ctx, "SetOptions")?),
            O::CollectGarbage => {
                let action = match read_u32(r, "CollectGarbage.action")? {
                    0 => GcAction::ReturnLive,
                    1 => GcAction::ReturnDead,
                    2 => GcAction::DeleteDead,
                    3 => GcAction::DeleteSpecific,
                    value => {
                        return Err(WireError::UnknownTag {
                            field: "CollectGarbage.action",
                            value: value.into(),
                        })
                    }
                };
                let paths_to_delete = read_field(r, ctx, "CollectGarbage.pathsToDelete")?;
                let ignore_liveness = read_bool(r, "CollectGarbage.ignoreLiveness")?;
                let max_freed = read_u64(r, "CollectGarbage.maxFreed")?;
                for _ in 0..3 {
                    read_u32(r, "CollectGarbage (obsolete field)")?;
                }
                Q::CollectGarbage(GcRequest {
                    action,
                    paths_to_delete,
                    ignore_liveness,
                    max_freed,
                })
            }
            O::QuerySubstitutablePathInfo => Q::QuerySubstitutablePathInfo(path(r, ctx)?),
            O::QueryDerivationOutputs => Q::QueryDerivationOutputs(path(r, ctx)?),
            O::QueryAllValidPaths => Q::QueryAllValidPaths,
            O::QueryFailedPaths => Q::QueryFailedPaths,
            O::ClearFailedPaths => Q::ClearFailedPaths,
            O::QueryPathInfo => Q::QueryPathInfo(path(r, ctx)?),
            O::ImportPaths => Q::ImportPaths,
            O::QueryDerivationOutputNames => Q::QueryDerivationOutputNames(path(r, ctx)?),
            O::QueryPathFromHashPart => {
                Q::QueryPathFromHashPart(read_string(r, limits, "QueryPathFromHashPart")?)
            }
            O::QuerySubstitutablePathInfos => {
                Q::QuerySubstitutablePathInfos(read_field(r, ctx, "QuerySubstitutablePathInfos")?)
            }
            O::QueryValidPaths => Q::QueryValidPaths {
                paths: read_field(r, ctx, "QueryValidPaths.paths")?,
                substitute: read_u32(r, "QueryValidPaths.substitute")? != 0,
            },
            O::QuerySubstitutablePaths => {
                Q::QuerySubstitutablePaths(read_field(r, ctx, "QuerySubstitutablePaths")?)
            }
            O::QueryValidDerivers => Q::QueryValidDerivers(path(r, ctx)?),
            O::OptimiseStore => Q::OptimiseStore,
            O::VerifyStore => Q::VerifyStore {
                check_contents: read_bool(r, "VerifyStore.checkContents")?,
                repair: read_bool(r, "VerifyStore.repair")?,
            },
            O::BuildDerivation => {
                let drv_path: StorePath = read_field(r, ctx, "BuildDerivation.drvPath")?;
                let name = Derivation::name_from_drv_path(&drv_path)
                    .ok_or_else(|| {
                        WireError::invalid("BuildDerivation.drvPath", "not a derivation (.drv)")
                    })?
                    .to_owned();
                let drv = read_basic_derivation(r, ctx, name)
                    .map_err(|e| e.within("BuildDerivation.drv"))?;
                Q::BuildDerivation {
                    drv_path,
                    drv,
                    mode: read_field(r, ctx, "BuildDerivation.mode")?,
                }
            }
            O::AddSignatures => Q::AddSignatures {
                path: path(r, ctx)?,
                sigs: read_strings(r, limits, "AddSignatures.sigs")?
                    .into_iter()
                    .collect(),
            },
            O::NarFromPath => Q::NarFromPath(path(r, ctx)?),
            O::AddToStoreNar => Q::AddToStoreNar {
                info: read_field(r, ctx, "AddToStoreNar.info")?,
                repair: read_bool(r, "AddToStoreNar.repair")?,
                dont_check_sigs: read_bool(r, "AddToStoreNar.dontCheckSigs")?,
            },
            O::QueryMissing => Q::QueryMissing(read_field(r, ctx, "QueryMissing")?),
            O::QueryDerivationOutputMap => Q::QueryDerivationOutputMap(path(r, ctx)?),
            O::RegisterDrvOutput => Q::RegisterDrvOutput(read_field(r, ctx, "RegisterDrvOutput")?),
            O::QueryRealisation => Q::QueryRealisation(read_field(r, ctx, "QueryRealisation")?),
            O::AddMultipleToStore => Q::AddMultipleToStore {
                repair: read_bool(r, "AddMultipleToStore.repair")?,
                dont_check_sigs: read_bool(r, "AddMultipleToStore.dontCheckSigs")?,
            },
            O::AddBuildLog => {
                let base = read_string(r, limits, "AddBuildLog.path")?;
                Q::AddBuildLog(
                    StorePath::from_base_name(&base)
                        .map_err(|e| WireError::invalid("AddBuildLog.path", e))?,
                )
            }
            O::BuildPathsWithResults => Q::BuildPathsWithResults {
                paths: read_field(r, ctx, "BuildPathsWithResults.paths")?,
                mode: read_field(r, ctx, "BuildPathsWithResults.mode")?,
            },
            O::AddPermRoot => {
                if !ctx.version.has_add_perm_root() {
                    return Err(WireError::invalid(
                        "operation",
                        format!("AddPermRoot needs protocol 1.36, not {}", ctx.version),
                    ));
                }
                Q::AddPermRoot {
                    path: path(r, ctx)?,
                    gc_root: read_string(r, limits, "AddPermRoot.gcRoot")?,
                }
            }
        })
    }

    /// Writes the operation code and the arguments, as Nix's `RemoteStore`
    /// does. The framed stream of the operations that have one
    /// ([`Request::has_framed_data`]) is the caller's to write next.
    pub fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        use Request as Q;
        self.op().write(w)?;
        match self {
            Q::IsValidPath(p)
            | Q::HasSubstitutes(p)
            | Q::QueryPathHash(p)
            | Q::QueryReferences(p)
            | Q::QueryReferrers(p)
            | Q::EnsurePath(p)
            | Q::AddTempRoot(p)
            | Q::QueryDeriver(p)
            | Q::QuerySubstitutablePathInfo(p)
            | Q::QueryDerivationOutputs(p)
            | Q::QueryPathInfo(p)
            | Q::QueryDerivationOutputNames(p)
            | Q::QueryValidDerivers(p)
            | Q::NarFromPath(p)
            | Q::QueryDerivationOutputMap(p) => p.write(w, ctx),
            Q::AddToStore {
                name,
                method,
                references,
                repair,
            } => {
                write_bytes(w, name.as_bytes())?;
                write_bytes(w, method.render().as_bytes())?;
                references.write(w, ctx)?;
                write_bool(w, *repair)
            }
            Q::AddTextToStore {
                name,
                text,
                references,
            } => {
                write_bytes(w, name.as_bytes())?;
                write_bytes(w, text)?;
                references.write(w, ctx)
            }
            Q::BuildPaths { paths, mode } | Q::BuildPathsWithResults { paths, mode } => {
                paths.write(w, ctx)?;
                mode.write(w, ctx)
            }
            Q::AddIndirectRoot(s) | Q::QueryPathFromHashPart(s) => write_bytes(w, s.as_bytes()),
            Q::SyncWithGC
            | Q::FindRoots
            | Q::QueryAllValidPaths
            | Q::QueryFailedPaths
            | Q::ClearFailedPaths
            | Q::ImportPaths
            | Q::OptimiseStore => Ok(()),
            Q::ExportPath { path, sign } => {
                path.write(w, ctx)?;
                write_u64(w, (*sign).into())
            }
            Q::SetOptions(s) => s.write(w, ctx),
            Q::CollectGarbage(gc) => {
                write_u64(w, gc.action as u64)?;
                gc.paths_to_delete.write(w, ctx)?;
                write_bool(w, gc.ignore_liveness)?;
                write_u64(w, gc.max_freed)?;
                for _ in 0..3 {
                    write_u64(w, 0)?;
                }
                Ok(())
            }
            Q::QuerySubstitutablePathInfos(m) => m.write(w, ctx),
            Q::QueryValidPaths { paths, substitute } => {
                paths.write(w, ctx)?;
                write_bool(w, *substitute)
            }
            Q::QuerySubstitutablePaths(paths) => paths.write(w, ctx),
            Q::VerifyStore {
                check_contents,
                repair,
            } => {
                write_bool(w, *check_contents)?;
                write_bool(w, *repair)
            }
            Q::BuildDerivation {
                drv_path,
                drv,
                mode,
            } => {
                drv_path.write(w, ctx)?;
                write_basic_derivation(w, ctx, drv)?;
                mode.write(w, ctx)
            }
            Q::AddSignatures { path, sigs } => {
                path.write(w, ctx)?;
                write_strings(w, sigs.iter())
            }
            Q::AddToStoreNar {
                info,
                repair,
                dont_check_sigs,
            } => {
                info.write(w, ctx)?;
                write_bool(w, *repair)?;
                write_bool(w, *dont_check_sigs)
            }
            Q::QueryMissing(paths) => paths.write(w, ctx),
            Q::RegisterDrvOutput(r) => r.write(w, ctx),
            Q::QueryRealisation(id) => id.write(w, ctx),
            Q::AddMultipleToStore {
                repair,
                dont_check_sigs,
            } => {
                write_bool(w, *repair)?;
                write_bool(w, *dont_check_sigs)
            }
            Q::AddBuildLog(p) => write_bytes(w, p.to_string().as_bytes()),
            Q::AddPermRoot { path, gc_root } => {
                path.write(w, ctx)?;
                write_bytes(w, gc_root.as_bytes())
            }
        }
    }
}

/// Reads a `BasicDerivation` as `readDerivation(Source &, ...)` in Nix's
/// `derivations.cc`: outputs as `(name, path, hashAlgo, hash)`, input sources,
/// system, builder, arguments, environment. A fixed output's path is checked to
/// be a store path and otherwise ignored (it follows from the hash), as Nix does.
pub fn read_basic_derivation<R: Read + ?Sized>(
    r: &mut R,
    ctx: &Ctx,
    name: String,
) -> Result<Derivation, WireError> {
    let limits = &ctx.limits;
    let mut drv = Derivation {
        name,
        ..Derivation::default()
    };
    let count = read_count(r, limits, "outputs")?;
    for _ in 0..count {
        let out_name = read_string(r, limits, "output name")?;
        let path = read_string(r, limits, "output path")?;
        let algo = read_string(r, limits, "output hash algorithm")?;
        let hash = read_string(r, limits, "output hash")?;
        let output = parse_output(&ctx.store_dir, &path, &algo, &hash)
            .map_err(|e| WireError::invalid("output", format!("output '{out_name}': {e}")))?;
        // A fixed output's path must be computable (text hashing needs SHA-256,
        // the name must make a store path name).
        if let DerivationOutput::CAFixed { method, hash } = &output {
            fixed_output_path(&ctx.store_dir, &drv.name, &out_name, *method, hash)
                .map_err(|e| WireError::invalid("output", e))?;
        }
        drv.outputs.insert(out_name, output);
    }
    drv.input_srcs = read_field(r, ctx, "inputSrcs")?;
    drv.system = read_bytes(r, limits, "platform")?;
    drv.builder = read_bytes(r, limits, "builder")?;
    let count = read_count(r, limits, "args")?;
    drv.args = Vec::with_capacity(initial_capacity(count));
    for _ in 0..count {
        drv.args.push(read_bytes(r, limits, "arg")?);
    }
    let count = read_count(r, limits, "env")?;
    for _ in 0..count {
        let key = read_bytes(r, limits, "env name")?;
        let value = read_bytes(r, limits, "env value")?;
        drv.env.insert(key, value);
    }
    Ok(drv)
}

/// `parseDerivationOutput`, without Nix's experimental-feature checks.
fn parse_output(
    store_dir: &StoreDir,
    path: &str,
    algo: &str,
    hash: &str,
) -> Result<DerivationOutput, String> {
    if algo.is_empty() {
        if !hash.is_empty() {
            return Err("a hash without a hash algorithm".to_owned());
        }
        if path.is_empty() {
            return Ok(DerivationOutput::Deferred);
        }
        let path = store_dir.parse(path).map_err(|e| e.to_string())?;
        return Ok(DerivationOutput::InputAddressed { path });
    }
    let (method, algo_name) = CaMethod::split_prefix(algo);
    let algo: HashAlgo = algo_name
        .parse()
        .map_err(|_| format!("unknown hash algorithm '{algo}'"))?;
    if hash == "impure" || hash.is_empty() {
        if !path.is_empty() {
            return Err("a content-addressed or impure output cannot name its path".to_owned());
        }
        return Ok(if hash.is_empty() {
            DerivationOutput::CAFloating { method, algo }
        } else {
            DerivationOutput::Impure { method, algo }
        });
    }
    store_dir.parse(path).map_err(|e| e.to_string())?;
    let hash = Hash::parse_digest(hash, algo, false).map_err(|e| e.to_string())?;
    Ok(DerivationOutput::CAFixed { method, hash })
}

/// Writes a `BasicDerivation` as `writeDerivation(Sink &, ...)` does; input
/// derivations are not part of it.
pub fn write_basic_derivation<W: Write + ?Sized>(
    w: &mut W,
    ctx: &Ctx,
    drv: &Derivation,
) -> io::Result<()> {
    write_u64(w, drv.outputs.len() as u64)?;
    for (name, out) in &drv.outputs {
        write_bytes(w, name.as_bytes())?;
        let (path, hash) = match out {
            DerivationOutput::InputAddressed { path } => {
                (ctx.store_dir.display(path), String::new())
            }
            DerivationOutput::CAFixed { method, hash } => {
                let path = fixed_output_path(&ctx.store_dir, &drv.name, name, *method, hash)
                    .map_err(io::Error::other)?;
                (ctx.store_dir.display(&path), hash.to_base16())
            }
            DerivationOutput::Impure { .. } => (String::new(), "impure".to_owned()),
            DerivationOutput::CAFloating { .. } | DerivationOutput::Deferred => {
                (String::new(), String::new())
            }
        };
        write_bytes(w, path.as_bytes())?;
        write_bytes(w, out.hash_algo_field().as_bytes())?;
        write_bytes(w, hash.as_bytes())?;
    }
    drv.input_srcs.write(w, ctx)?;
    write_bytes(w, &drv.system)?;
    write_bytes(w, &drv.builder)?;
    write_strings(w, drv.args.iter())?;
    write_u64(w, drv.env.len() as u64)?;
    for (k, v) in &drv.env {
        write_bytes(w, k)?;
        write_bytes(w, v)?;
    }
    Ok(())
}
