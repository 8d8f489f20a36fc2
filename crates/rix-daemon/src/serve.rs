//! The serve protocol's server: what `nix-store --serve [--write]` does on a
//! build machine reached by an `ssh://` store (Nix's `LegacySSHStore`, Hydra's
//! queue runner, rix's own client). Mirrors `opServe` in Nix's `nix-store.cc`.
//!
//! One client on `input`/`output`: the handshake, then each request in turn
//! until the client closes. Without `write`, only queries and NAR dumps are
//! answered. As in Nix, an error ends the session (the caller prints it on
//! stderr, where `ssh` passes it to the client); the builders' log lines go to
//! stderr too, which is how Nix's client shows a remote build's log.

use std::collections::BTreeSet;
use std::io::{self, BufReader, BufWriter, Read, Write};

use rix_build::basic::{build_basic_derivation, BasicOutcome};
use rix_build::events::{BuildEvent, Observer};
use rix_build::{BuildError, RealiseOptions};
use rix_formats::derivation::hashing::{DrvHash, LookupError};
use rix_formats::derivation::Derivation;
use rix_formats::serve_protocol::{
    server_handshake, BuildOptions, ServeCtx, ServeRequest, ServeSerialise, ServeVersion,
};
use rix_formats::worker_protocol::wire::{read_u64, write_bytes, write_u64};
use rix_formats::worker_protocol::{
    BuildResult, BuildStatus, DrvOutput, Realisation, Serialise, WireError,
};
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_store::path_info::{to_unkeyed, ValidPathInfo};
use rix_store::settings::Settings;
use rix_store::store_api::{AddFlags, Store};

/// Reads a `nix-store --export` stream and adds its paths (rix-cli's
/// `nix-store --import`), for `ImportPaths`.
pub type Importer<'a> = &'a dyn Fn(&dyn Store, &mut dyn Read) -> Result<(), String>;

/// A serve session's failure, worded as Nix's.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn failed(e: impl ToString) -> ServeError {
    ServeError::Failed(e.to_string())
}

impl From<WireError> for ServeError {
    fn from(e: WireError) -> Self {
        failed(e)
    }
}

impl From<rix_store::local_store::StoreError> for ServeError {
    fn from(e: rix_store::local_store::StoreError) -> Self {
        failed(e)
    }
}

/// What a serve session needs.
pub struct ServeSession<'a> {
    pub store: &'a LocalStore,
    pub settings: &'a Settings,
    /// `--write`: imports and builds are allowed.
    pub write: bool,
    pub importer: Importer<'a>,
}

/// Writes the builders' log lines to stderr, as Nix's `nix-store --serve`
/// (its verbosity set to errors, which build logs still reach).
struct StderrLog;

impl Observer for StderrLog {
    fn event(&self, event: BuildEvent<'_>) {
        if let BuildEvent::Log { line, .. } = event {
            let mut e = io::stderr().lock();
            let _ = writeln!(e, "{line}");
        }
    }
}

impl ServeSession<'_> {
    /// Serves one client until it closes the connection.
    pub fn run<R: Read, W: Write>(&self, input: R, output: W) -> Result<(), ServeError> {
        let mut input = BufReader::with_capacity(64 << 10, input);
        let mut out = BufWriter::with_capacity(64 << 10, output);
        let version = server_handshake(&mut input, &mut out, ServeVersion::LATEST)
            .map_err(|e| failed(e.to_string()))?;
        let ctx = ServeCtx::new(version, self.store.store_dir().clone());
        loop {
            let code = match read_u64(&mut input, "serve command") {
                Ok(c) => c,
                Err(e) if is_eof(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let req = ServeRequest::read(code, &mut input, &ctx).map_err(failed)?;
            self.perform(req, &mut input, &mut out, &ctx)?;
            out.flush()?;
        }
    }

    fn require_write(&self, what: &str) -> Result<(), ServeError> {
        if self.write {
            Ok(())
        } else {
            Err(failed(format!("{what} is not allowed")))
        }
    }

    fn perform<R: Read, W: Write>(
        &self,
        req: ServeRequest,
        input: &mut R,
        out: &mut W,
        ctx: &ServeCtx,
    ) -> Result<(), ServeError> {
        let store = self.store;
        let common = ctx.common();
        match req {
            ServeRequest::QueryValidPaths { lock, paths, .. } => {
                // Substitution on request (`substitute`) is not done: rix's
                // build machines answer with what they have.
                if lock && self.write {
                    for p in &paths {
                        store.add_temp_root(p)?;
                    }
                }
                store.query_valid_paths(&paths)?.write(out, &common)?;
            }
            ServeRequest::QueryPathInfos { paths } => {
                for p in &paths {
                    if let Some(info) = store.query_path_info(p)? {
                        write_bytes(out, store.print(p).as_bytes())?;
                        ServeSerialise::write(&to_unkeyed(&info), out, ctx)?;
                    }
                }
                write_bytes(out, b"")?;
            }
            ServeRequest::DumpStorePath { path } => {
                store.nar_from_path(&path, out)?;
            }
            ServeRequest::ImportPaths => {
                self.require_write("importing paths")?;
                (self.importer)(store, input).map_err(failed)?;
                write_u64(out, 1)?;
            }
            ServeRequest::BuildPaths { paths, options } => {
                self.require_write("building paths")?;
                let opts = self.realise_options(&options)?;
                let mut drvs = Vec::new();
                let mut missing = None;
                for p in &paths {
                    store.add_temp_root(&p.path)?;
                    if p.path.is_derivation() {
                        drvs.push(p.path.clone());
                    } else if !store.is_valid(&p.path)? {
                        missing.get_or_insert_with(|| p.path.clone());
                    }
                }
                let outcome = match missing {
                    Some(p) => Err((
                        BuildStatus::MiscFailure,
                        format!(
                            "path '{}' is required, but there is no substituter that can build it",
                            store.print(&p)
                        ),
                    )),
                    None => match rix_build::realise(store, &drvs, &opts, &StderrLog) {
                        Ok(report) if report.succeeded() => Ok(()),
                        Ok(report) => Err((
                            BuildStatus::PermanentFailure,
                            report
                                .failed
                                .first()
                                .map(|(_, e)| e.to_string())
                                .unwrap_or_else(|| "build failed".to_owned()),
                        )),
                        Err(e) => Err((BuildStatus::MiscFailure, e.to_string())),
                    },
                };
                match outcome {
                    Ok(()) => write_u64(out, 0)?,
                    Err((status, msg)) => {
                        write_u64(out, status as u64)?;
                        write_bytes(out, msg.as_bytes())?;
                    }
                }
            }
            ServeRequest::BuildDerivation {
                drv_path,
                drv,
                options,
            } => {
                self.require_write("building paths")?;
                let opts = self.realise_options(&options)?;
                let res = basic_build_result(store, &drv_path, &drv, &opts, &StderrLog);
                ServeSerialise::write(&res, out, ctx)?;
            }
            ServeRequest::QueryClosure {
                include_outputs,
                paths,
            } => {
                let mut closure = store.closure(paths.iter().cloned())?;
                if include_outputs {
                    let mut outputs = BTreeSet::new();
                    for p in closure.iter().filter(|p| p.is_derivation()) {
                        for out in store
                            .query_derivation_output_map(p)?
                            .into_values()
                            .flatten()
                        {
                            if store.is_valid(&out)? {
                                outputs.insert(out);
                            }
                        }
                    }
                    if !outputs.is_empty() {
                        closure.extend(store.closure(outputs)?);
                    }
                }
                closure.write(out, &common)?;
            }
            ServeRequest::AddToStoreNar(wire) => {
                self.require_write("importing paths")?;
                let mut info = ValidPathInfo::new(wire.path, wire.nar_hash, wire.nar_size);
                info.deriver = wire.deriver;
                info.references = wire.references;
                info.registration_time = wire.registration_time;
                info.ultimate = wire.ultimate;
                info.sigs = wire.sigs;
                info.ca = wire.ca;
                let mut sized = (&mut *input).take(info.nar_size);
                let added = if store.is_valid(&info.path)? {
                    Ok(())
                } else {
                    store.add_to_store_nar(
                        &info,
                        &mut sized,
                        AddFlags {
                            repair: false,
                            check_sigs: false,
                        },
                    )
                };
                // Whatever was sent is consumed before going on.
                io::copy(&mut sized, &mut io::sink())?;
                added?;
                write_u64(out, 1)?;
            }
        }
        Ok(())
    }

    /// The machine's build settings with the client's options
    /// (`getBuildSettings`): no substitution, the client's limits.
    fn realise_options(&self, options: &BuildOptions) -> Result<RealiseOptions, ServeError> {
        if options.nr_repeats != 0 {
            return Err(failed(
                "client requested repeating builds, but this is not currently implemented",
            ));
        }
        let mut settings = rix_build::options::build_settings(self.settings).map_err(failed)?;
        let secs = |n: u64| (n > 0).then(|| std::time::Duration::from_secs(n));
        settings.max_silent_time = secs(options.max_silent_time);
        settings.timeout = secs(options.build_timeout);
        settings.max_log_size = (options.max_log_size > 0).then_some(options.max_log_size);
        settings.keep_failed = options.keep_failed;
        Ok(RealiseOptions {
            max_jobs: self.settings.max_jobs().unwrap_or(1).max(1),
            keep_going: false,
            check: false,
            settings,
            substituter: None,
        })
    }
}

/// Builds a derivation sent in full and describes the result as Nix's
/// `BuildDerivation` does (status, error, times, outputs built).
pub fn basic_build_result(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> BuildResult {
    let start = now();
    let result = build_basic_derivation(store, drv_path, drv, opts, observer);
    let stop = now();
    let mut res = match result {
        Ok(outcome) => {
            let status = match outcome {
                BasicOutcome::Built(_) => BuildStatus::Built,
                BasicOutcome::AlreadyValid(_) => BuildStatus::AlreadyValid,
            };
            let mut r = BuildResult::new(status);
            r.built_outputs = built_outputs(store, drv, outcome.outputs());
            if status == BuildStatus::Built {
                r.times_built = 1;
            }
            r
        }
        Err(e) => {
            let mut r = BuildResult::new(failure_status(&e));
            r.error_msg = e.to_string();
            r
        }
    };
    res.start_time = start;
    res.stop_time = stop;
    res
}

fn is_eof(e: &WireError) -> bool {
    matches!(e.root(), WireError::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof)
}

fn now() -> i64 {
    rix_store::path_info::now()
}

/// The status Nix gives a failed build.
fn failure_status(e: &BuildError) -> BuildStatus {
    match e {
        BuildError::TimedOut { .. } => BuildStatus::TimedOut,
        BuildError::HashMismatch { .. } => BuildStatus::OutputRejected,
        BuildError::MissingOutput { .. } => BuildStatus::PermanentFailure,
        e if e.is_build_failure() => BuildStatus::PermanentFailure,
        _ => BuildStatus::MiscFailure,
    }
}

/// The realisations of a basic derivation's outputs (`builtOutputs`, 2.6):
/// its output hashes modulo, which need no input derivation.
fn built_outputs(
    store: &LocalStore,
    drv: &Derivation,
    outputs: &std::collections::BTreeMap<String, StorePath>,
) -> std::collections::BTreeMap<String, Realisation> {
    let no_inputs = |_: &StorePath| -> Result<DrvHash, LookupError> {
        Err("a derivation sent in full has no input derivations".into())
    };
    let Ok(by_output) = drv.hash_modulo(store.store_dir(), true, no_inputs) else {
        return Default::default();
    };
    outputs
        .iter()
        .filter_map(|(name, path)| {
            let hash = *by_output.get(name)?;
            Some((
                name.clone(),
                Realisation {
                    id: DrvOutput {
                        drv_hash: hash,
                        output_name: name.clone(),
                    },
                    out_path: path.clone(),
                    signatures: BTreeSet::new(),
                    dependent_realisations: Default::default(),
                },
            ))
        })
        .collect()
}
