//! Running one derivation's builder and registering what it produced.
//!
//! 1. Lock the output paths (Nix-compatible locks); if another process built them
//!    meanwhile, stop. Remove invalid leftovers of earlier attempts.
//! 2. Create a fresh build directory, write the environment's files, start the
//!    builder with stdin from /dev/null and stdout and stderr into one pipe that
//!    feeds the log: in the Linux sandbox ([`crate::sandbox`]: PID 1 of its own
//!    namespaces, outputs written in the sandbox's store directory and moved into
//!    the real one afterwards), or directly, in its own process group.
//! 3. On failure (or timeout, log limit, cancellation) kill the whole process
//!    group (the whole PID namespace in the sandbox) and delete whatever the
//!    builder left in the outputs: nothing is registered.
//! 4. On success: canonicalise each output, serialise it once to get its NAR hash,
//!    size and references, check fixed-output hashes, sync, and register all
//!    outputs in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rix_formats::content_address::ContentAddress;
use rix_formats::derivation::{CaMethod, Derivation, DerivationOutput};
use rix_formats::hash::{HashAlgo, Hasher};
use rix_formats::references::ReferenceScanner;
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::StorePath;
use rix_store::canonicalise::{canonicalise, delete_path};
use rix_store::local_store::LocalStore;
use rix_store::lock::PathLock;
use rix_store::path_info::ValidPathInfo;

use crate::env::{builder_env, EnvContext};
use crate::error::BuildError;
use crate::events::{BuildEvent, Observer};
use crate::log::LogSink;
use crate::running;
use crate::sandbox::{self, Sandbox, SandboxMode, SandboxPath, SandboxSetup};

/// Knobs for running builders.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// `NIX_BUILD_CORES`.
    pub cores: usize,
    /// Keep the build directory of failed builds.
    pub keep_failed: bool,
    /// Kill a build that runs longer than this.
    pub timeout: Option<Duration>,
    /// Kill a build that prints nothing for this long.
    pub max_silent_time: Option<Duration>,
    /// Where build directories are created.
    pub build_dir_root: PathBuf,
    /// Run builders in the Linux sandbox (`sandbox`).
    pub sandbox: SandboxMode,
    /// Build without the sandbox when the kernel cannot provide it (`sandbox-fallback`).
    pub sandbox_fallback: bool,
    /// Host paths visible in the sandbox (`sandbox-paths`, `extra-sandbox-paths`).
    pub sandbox_paths: Vec<SandboxPath>,
    /// The size of the sandbox's `/dev/shm` (`sandbox-dev-shm-size`).
    pub sandbox_shm_size: String,
    /// Kill a build whose log exceeds this many bytes (`max-build-log-size`).
    pub max_log_size: Option<u64>,
    /// Forbid set-user-ID/set-group-ID modes and extended attributes to builders
    /// (`filter-syscalls`, see [`sandbox::seccomp`]).
    pub filter_syscalls: bool,
    /// Let builders gain privileges through set-user-ID programs
    /// (`allow-new-privileges`; only without `filter-syscalls` or with this on).
    pub allow_new_privileges: bool,
    /// The command that prints a build's log, for the hint after a failure
    /// (`rix log`, with the `--store` the build used).
    pub log_command: String,
    /// What `builtin:fetchurl` reads (`netrc-file`, `hashed-mirrors`, ...).
    pub fetchurl: crate::builtins::FetchurlSettings,
}

impl Default for BuildSettings {
    fn default() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keep_failed: false,
            timeout: None,
            max_silent_time: None,
            build_dir_root: std::env::temp_dir(),
            sandbox: SandboxMode::Off,
            sandbox_fallback: true,
            sandbox_paths: Vec::new(),
            sandbox_shm_size: "50%".to_owned(),
            max_log_size: None,
            filter_syscalls: true,
            allow_new_privileges: false,
            log_command: "rix log".to_owned(),
            fetchurl: crate::builtins::FetchurlSettings::default(),
        }
    }
}

/// One derivation to build.
pub struct BuildJob<'a> {
    pub drv_path: &'a StorePath,
    pub drv: &'a Derivation,
    /// Output name → path.
    pub outputs: &'a BTreeMap<String, StorePath>,
    /// The closure of the inputs: candidates for references.
    pub input_closure: &'a BTreeSet<StorePath>,
    /// Why this derivation is being built (for the user and the build record).
    pub reason: &'a str,
    /// Rebuild valid outputs into temporary paths and compare (`--check`).
    pub check: bool,
}

/// What became of a build.
#[derive(Debug)]
pub enum BuildOutcome {
    Built(Vec<ValidPathInfo>),
    /// Another process built the outputs while we waited for their locks.
    AlreadyValid,
    /// `--check`: the outputs that differ from the valid ones (empty: deterministic).
    Checked(Vec<CheckDifference>),
    /// A content-addressed derivation's inputs resolved to a derivation that is
    /// realised already: nothing ran (early cutoff, see [`crate::resolve`]).
    CutOff,
}

/// An output that a `--check` rebuild produced differently.
#[derive(Debug, Clone)]
pub struct CheckDifference {
    pub output: String,
    pub path: String,
    /// Where the differing result was kept (with `keep_failed`).
    pub kept_at: Option<PathBuf>,
}

/// Builds one derivation (see the module docs).
pub fn build(
    store: &LocalStore,
    job: &BuildJob<'_>,
    settings: &BuildSettings,
    observer: &dyn Observer,
) -> Result<BuildOutcome, BuildError> {
    let drv_printed = store.print(job.drv_path);
    let mut locks = Vec::new();
    for out in job.outputs.values() {
        let real = store.real_path(out);
        let lock = match PathLock::try_acquire(&real)? {
            Some(lock) => lock,
            None => {
                observer.event(BuildEvent::WaitingForLock {
                    drv: job.drv_path,
                    path: &store.print(out),
                });
                PathLock::acquire(&real)?
            }
        };
        locks.push(lock);
    }
    if job.check {
        return check(store, job, settings, observer, &drv_printed);
    }
    // Outputs that are valid already are never touched: as Nix does, the builder
    // writes them to fallback paths, which are discarded afterwards.
    let mut scratch = job.outputs.clone();
    let mut redirects: Vec<(StorePath, StorePath)> = Vec::new();
    for (name, out) in job.outputs {
        let real = if store.is_valid(out)? {
            let fallback = fallback_path(store, job.drv_path, &job.drv.name, name)?;
            redirects.push((out.clone(), fallback.clone()));
            scratch.insert(name.clone(), fallback.clone());
            store.real_path(&fallback)
        } else {
            store.real_path(out)
        };
        delete_path(&real).map_err(BuildError::io(&real))?;
    }
    if redirects.len() == job.outputs.len() {
        return Ok(BuildOutcome::AlreadyValid);
    }
    let rewritten;
    let drv = if redirects.is_empty() {
        job.drv
    } else {
        rewritten = rewrite_derivation(job.drv, &redirects);
        &rewritten
    };
    let to_register: BTreeMap<String, StorePath> = job
        .outputs
        .iter()
        .filter(|(_, p)| !redirects.iter().any(|(real, _)| real == *p))
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();

    let sandboxed = use_sandbox(store, job, settings, &drv_printed)?;
    let build_dir = create_build_dir(&settings.build_dir_root, job.drv_path.name())?;
    let mut sb = None;
    if sandboxed {
        match prepare_sandbox(store, job, &build_dir, settings, &drv_printed) {
            Ok(s) => sb = Some(s),
            Err(e) => {
                let _ = delete_path(&build_dir);
                return Err(e);
            }
        }
    }
    let result = run_builder_in(
        store,
        job,
        drv,
        &scratch,
        settings,
        observer,
        &build_dir,
        &drv_printed,
        sb.as_mut(),
    )
    .and_then(|()| match &sb {
        Some(sb) => take_outputs(store, sb, &scratch),
        None => Ok(()),
    })
    .and_then(|()| rewrite_fallback_references(store, &to_register, &redirects))
    .and_then(|()| register_outputs(store, job, &to_register, &drv_printed));
    drop(sb);
    for (_, fallback) in &redirects {
        let _ = delete_path(&store.real_path(fallback));
    }
    if result.is_err() {
        for out in to_register.values() {
            let _ = delete_path(&store.real_path(out));
        }
    }
    if result.is_ok() || !settings.keep_failed {
        let _ = delete_path(&build_dir);
    } else {
        observer.event(crate::events::BuildEvent::KeptBuildDir {
            drv: job.drv_path,
            path: &build_dir,
        });
    }
    for l in &mut locks {
        l.set_delete_on_release(result.is_ok());
    }
    result.map(BuildOutcome::Built)
}

/// The temporary path a `--check` rebuild writes an output to. Mirrors Nix's
/// `makeFallbackPath`: an all-zero SHA-256 under a `rewrite:` type.
pub fn fallback_path(
    store: &LocalStore,
    drv_path: &StorePath,
    drv_name: &str,
    output: &str,
) -> Result<StorePath, BuildError> {
    let zero = rix_formats::Hash::from_bytes(HashAlgo::Sha256, &[0; 32]).expect("32 bytes");
    let ty = format!("rewrite:{drv_path}:name:{output}");
    let name = rix_formats::store_path::output_path_name(drv_name, output);
    let path = store
        .store_dir()
        .make_store_path(&ty, &zero, &name)
        .map_err(rix_store::local_store::StoreError::from)?;
    // A collector must leave the rebuilt output alone until it is compared or moved.
    store.add_temp_root(&path)?;
    Ok(path)
}

/// Copies the tree at `src` to `dest` through its NAR serialisation with the
/// hash parts in `map` rewritten (Nix's `rewriteOutput`).
pub(crate) fn copy_rewritten(
    src: &Path,
    dest: &Path,
    map: Vec<(StorePath, StorePath)>,
) -> Result<(), BuildError> {
    let (reader, writer) = std::io::pipe().map_err(BuildError::io(src))?;
    std::thread::scope(|s| {
        let dumper = s.spawn(move || -> Result<(), BuildError> {
            let mut rewriter = rix_formats::references::HashRewriter::new(writer, map);
            rix_store::archive::dump(src, &mut rewriter)?;
            rewriter.finish().map_err(BuildError::io(src))?;
            Ok(())
        });
        let restored = rix_store::archive::restore(reader, dest);
        let dumped = dumper.join().expect("the NAR writer does not panic");
        dumped?;
        restored.map_err(rix_store::local_store::StoreError::from)?;
        Ok(())
    })
}

/// The outputs built beside already-valid siblings refer to those siblings by the
/// fallback paths the builder saw: rewrite them to the real paths, as Nix's
/// `registerOutputs` does, before they are hashed and registered.
fn rewrite_fallback_references(
    store: &LocalStore,
    outputs: &BTreeMap<String, StorePath>,
    redirects: &[(StorePath, StorePath)],
) -> Result<(), BuildError> {
    if redirects.is_empty() {
        return Ok(());
    }
    let back: Vec<(StorePath, StorePath)> = redirects
        .iter()
        .map(|(real, fallback)| (fallback.clone(), real.clone()))
        .collect();
    for path in outputs.values() {
        let real = store.real_path(path);
        if std::fs::symlink_metadata(&real).is_err() {
            continue; // reported as a missing output when registering
        }
        let aside = store.temp_path(path);
        std::fs::rename(&real, &aside).map_err(BuildError::io(&real))?;
        let copied = copy_rewritten(&aside, &real, back.clone());
        let _ = delete_path(&aside);
        copied?;
    }
    Ok(())
}

/// A copy of `drv` whose environment and arguments name the paths of `map`'s
/// second column instead of its first (how a builder is pointed at fallback paths).
pub(crate) fn rewrite_derivation(drv: &Derivation, map: &[(StorePath, StorePath)]) -> Derivation {
    let mut copy = drv.clone();
    for v in copy.env.values_mut().chain(copy.args.iter_mut()) {
        *v = rewrite_bytes(v, map);
    }
    copy
}

/// Replaces every occurrence of the hash parts in `map` (equal lengths).
pub(crate) fn rewrite_bytes(data: &[u8], map: &[(StorePath, StorePath)]) -> Vec<u8> {
    let mut w = rix_formats::references::HashRewriter::new(Vec::new(), map.iter().cloned());
    w.write_all(data).expect("writing to a Vec");
    w.finish().expect("writing to a Vec")
}

/// `--check`: rebuilds into fallback paths, with the real output hashes rewritten
/// to the fallback ones in the environment and arguments (as Nix does for
/// non-sandboxed checks), then compares each result, rewritten back, with the
/// valid output's NAR hash.
fn check(
    store: &LocalStore,
    job: &BuildJob<'_>,
    settings: &BuildSettings,
    observer: &dyn Observer,
    drv_printed: &str,
) -> Result<BuildOutcome, BuildError> {
    let mut valid = BTreeMap::new();
    for (name, out) in job.outputs {
        let info = store
            .query_path_info(out)?
            .ok_or_else(|| BuildError::Unsupported {
                drv: drv_printed.to_owned(),
                reason: format!(
                    "output '{name}' is not valid, so checking is not possible: build it first"
                ),
            })?;
        valid.insert(name.clone(), info);
    }
    if use_sandbox(store, job, settings, drv_printed)? {
        return check_in_sandbox(store, job, settings, observer, drv_printed, &valid);
    }
    let mut fallback = BTreeMap::new();
    for name in job.outputs.keys() {
        fallback.insert(
            name.clone(),
            fallback_path(store, job.drv_path, &job.drv.name, name)?,
        );
    }
    let to_fallback: Vec<(StorePath, StorePath)> = job
        .outputs
        .iter()
        .map(|(n, p)| (p.clone(), fallback[n].clone()))
        .collect();
    let drv = rewrite_derivation(job.drv, &to_fallback);
    for p in fallback.values() {
        let real = store.real_path(p);
        delete_path(&real).map_err(BuildError::io(&real))?;
    }
    let build_dir = create_build_dir(&settings.build_dir_root, job.drv_path.name())?;
    let built = run_builder_in(
        store,
        job,
        &drv,
        &fallback,
        settings,
        observer,
        &build_dir,
        drv_printed,
        None,
    );
    let _ = delete_path(&build_dir);
    let result = built.and_then(|()| {
        let mut differing = Vec::new();
        for (name, tmp) in &fallback {
            let real_tmp = store.real_path(tmp);
            if std::fs::symlink_metadata(&real_tmp).is_err() {
                return Err(BuildError::MissingOutput {
                    drv: drv_printed.to_owned(),
                    output: name.clone(),
                    path: store.print(tmp),
                });
            }
            let back: Vec<(StorePath, StorePath)> = to_fallback
                .iter()
                .map(|(a, b)| (b.clone(), a.clone()))
                .collect();
            let mut hasher =
                rix_formats::references::HashRewriter::new(Hasher::new(HashAlgo::Sha256), back);
            rix_store::archive::dump(&real_tmp, &mut hasher)?;
            let hash = hasher.finish().map_err(BuildError::io(&real_tmp))?.finish();
            if hash != valid[name].nar_hash {
                let kept_at = settings.keep_failed.then(|| {
                    let mut dest = store.real_path(&job.outputs[name]).into_os_string();
                    dest.push(".check");
                    let dest = PathBuf::from(dest);
                    let _ = delete_path(&dest);
                    std::fs::rename(&real_tmp, &dest).ok().map(|_| dest)
                });
                differing.push(CheckDifference {
                    output: name.clone(),
                    path: store.print(&job.outputs[name]),
                    kept_at: kept_at.flatten(),
                });
            }
        }
        Ok(differing)
    });
    for p in fallback.values() {
        let _ = delete_path(&store.real_path(p));
    }
    result.map(BuildOutcome::Checked)
}

/// Writes the environment's files and runs the builder of `drv` (which may be a
/// rewritten copy of the job's derivation) with `outputs` as its output paths.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_builder_in(
    store: &LocalStore,
    job: &BuildJob<'_>,
    drv: &Derivation,
    outputs: &BTreeMap<String, StorePath>,
    settings: &BuildSettings,
    observer: &dyn Observer,
    build_dir: &Path,
    drv_printed: &str,
    mut sandbox: Option<&mut Sandbox>,
) -> Result<(), BuildError> {
    if let Some(name) = crate::builtins::builtin_name(drv) {
        return run_builtin(
            store,
            job,
            drv,
            name,
            outputs,
            settings,
            observer,
            drv_printed,
        );
    }
    let printed_outputs: BTreeMap<String, String> = outputs
        .iter()
        .map(|(k, v)| (k.clone(), store.print(v)))
        .collect();
    let impure = |name: &str| std::env::var(name).ok();
    let ctx = EnvContext {
        store_dir: store.store_dir().as_str(),
        build_dir: match sandbox {
            Some(_) => Path::new(sandbox::SANDBOX_BUILD_DIR),
            None => build_dir,
        },
        cores: settings.cores,
        outputs: &printed_outputs,
        impure: &impure,
    };
    let rewritten = crate::env::substitute_placeholders(drv, &printed_outputs);
    let drv = &rewritten;
    let (env, files) = builder_env(drv, &ctx);
    for (name, contents) in files {
        let p = build_dir.join(name);
        std::fs::write(&p, contents).map_err(BuildError::io(&p))?;
    }
    if let Some(sb) = sandbox.as_deref_mut() {
        sb.give_to_builder(build_dir)
            .map_err(|(p, e)| BuildError::io(p)(e))?;
    }
    run_builder(
        store,
        job,
        drv,
        settings,
        observer,
        build_dir,
        &env,
        drv_printed,
        sandbox,
    )
}

/// Whether this build runs in the sandbox: as the `sandbox` setting says (Nix's
/// rules: `relaxed` leaves out fixed-output derivations and `__noChroot`), and
/// always in a store whose directory is not at its logical path. A build
/// outside it needs the builders' `HOME` to be missing on the host, as in Nix.
pub(crate) fn use_sandbox(
    store: &LocalStore,
    job: &BuildJob<'_>,
    settings: &BuildSettings,
    drv_printed: &str,
) -> Result<bool, BuildError> {
    // A builtin builder runs in rix's process (see `crate::builtins`).
    if crate::builtins::builtin_name(job.drv).is_some() {
        return Ok(false);
    }
    let sandboxed = sandbox_wanted_and_available(store, job, settings, drv_printed)?;
    if !sandboxed {
        no_home_on_the_host(Path::new(crate::env::HOME_DIR), drv_printed)?;
    }
    Ok(sandboxed)
}

/// Nix's check before building outside the sandbox: builders get
/// `HOME=/homeless-shelter` so that nothing finds a home directory; one that
/// exists on the host would make their results depend on it.
fn no_home_on_the_host(home: &Path, drv_printed: &str) -> Result<(), BuildError> {
    if std::fs::symlink_metadata(home).is_ok() {
        return Err(BuildError::Unsupported {
            drv: drv_printed.to_owned(),
            reason: format!(
                "home directory '{}' exists; please remove it to assure purity of builds \
                 without sandboxing",
                home.display()
            ),
        });
    }
    Ok(())
}

/// Whether the `sandbox` setting asks for the sandbox for this build (Nix's
/// rules: `relaxed` leaves out fixed-output derivations and `__noChroot`).
fn sandbox_wanted(
    job: &BuildJob<'_>,
    settings: &BuildSettings,
    drv_printed: &str,
) -> Result<bool, BuildError> {
    let no_chroot = bool_attr(job.drv, "__noChroot");
    Ok(match settings.sandbox {
        SandboxMode::Off => false,
        SandboxMode::Relaxed => !is_fixed_output(job.drv) && !no_chroot,
        SandboxMode::On if no_chroot => {
            return Err(BuildError::Unsupported {
                drv: drv_printed.to_owned(),
                reason: "it has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'"
                    .into(),
            })
        }
        SandboxMode::On => true,
    })
}

/// Whether the build runs in the sandbox: when the settings ask for it, and
/// always for a store not at its logical path (its builders can see it there
/// only in the sandbox's mount namespace; Nix forces `useChroot` for such a
/// "diverted" store too, whatever `sandbox` says).
fn sandbox_wanted_and_available(
    store: &LocalStore,
    job: &BuildJob<'_>,
    settings: &BuildSettings,
    drv_printed: &str,
) -> Result<bool, BuildError> {
    let wanted = sandbox_wanted(job, settings, drv_printed)?;
    let remap = store.layout().needs_remap();
    if !wanted && !remap {
        return Ok(false);
    }
    match sandbox::available() {
        Ok(()) => Ok(true),
        Err(why) if remap => Err(BuildError::Unsupported {
            drv: drv_printed.to_owned(),
            reason: format!(
                "the store {} is at {}, and builders can only see it at its logical path in the \
                 sandbox, which is not available: {why}",
                store.store_dir(),
                store.layout().real_store_dir.display()
            ),
        }),
        Err(why) if settings.sandbox_fallback => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "warning: the build sandbox is not available ({why}); building without it \
                     (set 'sandbox = false' to silence this, 'sandbox-fallback = false' to make it an error)"
                )
            });
            Ok(false)
        }
        Err(why) => Err(BuildError::Unsupported {
            drv: drv_printed.to_owned(),
            reason: format!(
                "the sandbox is not available ({why}) and 'sandbox-fallback' is false; \
                 build without it with --no-sandbox (or 'sandbox = false'), or set \
                 'sandbox-fallback = true' to do so when the sandbox is not available"
            ),
        }),
    }
}

fn is_fixed_output(drv: &Derivation) -> bool {
    drv.outputs
        .values()
        .any(|o| matches!(o, DerivationOutput::CAFixed { .. }))
}

/// A Boolean derivation attribute (`"1"` in the environment, `true` in
/// structured attributes).
fn bool_attr(drv: &Derivation, name: &str) -> bool {
    if let Some(json) = drv.env_var("__json") {
        return serde_json::from_slice::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get(name).and_then(serde_json::Value::as_bool))
            .unwrap_or(false);
    }
    drv.env_var(name) == Some(b"1".as_slice())
}

pub(crate) fn prepare_sandbox(
    store: &LocalStore,
    job: &BuildJob<'_>,
    build_dir: &Path,
    settings: &BuildSettings,
    drv_printed: &str,
) -> Result<Sandbox, BuildError> {
    Sandbox::prepare(&SandboxSetup {
        store,
        drv_path: job.drv_path,
        inputs: job.input_closure,
        build_dir,
        network: is_fixed_output(job.drv),
        paths: &settings.sandbox_paths,
        shm_size: &settings.sandbox_shm_size,
    })
    .map_err(|(path, e)| BuildError::Spawn {
        drv: drv_printed.to_owned(),
        builder: String::from_utf8_lossy(&job.drv.builder).into_owned(),
        source: std::io::Error::new(
            e.kind(),
            format!("while setting up the sandbox: {}: {e}", path.display()),
        ),
    })
}

/// Moves the outputs a sandboxed builder produced into the real store.
pub(crate) fn take_outputs(
    store: &LocalStore,
    sb: &Sandbox,
    outputs: &BTreeMap<String, StorePath>,
) -> Result<(), BuildError> {
    for p in outputs.values() {
        let dest = store.real_path(p);
        sb.take_output(p, &dest).map_err(BuildError::io(&dest))?;
    }
    Ok(())
}

/// `--check` in the sandbox: the rebuild writes the outputs at their own paths
/// inside the sandbox (no hash rewriting needed), compared there with the valid ones.
fn check_in_sandbox(
    store: &LocalStore,
    job: &BuildJob<'_>,
    settings: &BuildSettings,
    observer: &dyn Observer,
    drv_printed: &str,
    valid: &BTreeMap<String, ValidPathInfo>,
) -> Result<BuildOutcome, BuildError> {
    let build_dir = create_build_dir(&settings.build_dir_root, job.drv_path.name())?;
    let mut sb = match prepare_sandbox(store, job, &build_dir, settings, drv_printed) {
        Ok(sb) => sb,
        Err(e) => {
            let _ = delete_path(&build_dir);
            return Err(e);
        }
    };
    let built = run_builder_in(
        store,
        job,
        job.drv,
        job.outputs,
        settings,
        observer,
        &build_dir,
        drv_printed,
        Some(&mut sb),
    );
    let _ = delete_path(&build_dir);
    built?;
    let mut differing = Vec::new();
    for (name, out) in job.outputs {
        let inside = sb.output_in_root(out);
        if std::fs::symlink_metadata(&inside).is_err() {
            return Err(BuildError::MissingOutput {
                drv: drv_printed.to_owned(),
                output: name.clone(),
                path: store.print(out),
            });
        }
        sb.reclaim(&inside).map_err(|(p, e)| BuildError::io(p)(e))?;
        canonicalise(&inside).map_err(BuildError::io(&inside))?;
        let mut hasher = Hasher::new(HashAlgo::Sha256);
        rix_store::archive::dump(&inside, &mut hasher)?;
        if hasher.finish() != valid[name].nar_hash {
            let kept_at = settings.keep_failed.then(|| {
                let mut dest = store.real_path(out).into_os_string();
                dest.push(".check");
                let dest = PathBuf::from(dest);
                let _ = delete_path(&dest);
                std::fs::rename(&inside, &dest).ok().map(|_| dest)
            });
            differing.push(CheckDifference {
                output: name.clone(),
                path: store.print(out),
                kept_at: kept_at.flatten(),
            });
        }
    }
    Ok(BuildOutcome::Checked(differing))
}

/// Starts the builder as a child of rix in its own process group.
fn spawn_direct(
    drv: &Derivation,
    env: &BTreeMap<Vec<u8>, Vec<u8>>,
    build_dir: &Path,
    writer: std::io::PipeWriter,
    syscalls: sandbox::seccomp::Policy,
) -> std::io::Result<std::process::Child> {
    let builder = OsStr::from_bytes(&drv.builder);
    let mut cmd = Command::new(builder);
    cmd.args(drv.args.iter().map(|a| OsStr::from_bytes(a)))
        .env_clear()
        .envs(
            env.iter()
                .map(|(k, v)| (OsStr::from_bytes(k), OsStr::from_bytes(v))),
        )
        .current_dir(build_dir)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    die_with_parent(&mut cmd, syscalls);
    let spawned = cmd.spawn();
    drop(cmd); // closes our copies of the pipe's write end
    spawned
}

/// Starts the builder in the sandbox; `argv[0]` is the builder's base name, as Nix
/// passes it.
fn spawn_sandboxed(
    sb: &mut Sandbox,
    drv: &Derivation,
    env: &BTreeMap<Vec<u8>, Vec<u8>>,
    log: std::os::fd::OwnedFd,
    syscalls: sandbox::seccomp::Policy,
) -> std::io::Result<sandbox::SandboxChild> {
    let c = |b: &[u8]| {
        std::ffi::CString::new(b).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a NUL byte in the builder's arguments or environment",
            )
        })
    };
    let program = c(&drv.builder)?;
    let base = drv
        .builder
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or(&drv.builder);
    let mut argv = vec![c(base)?];
    for a in &drv.args {
        argv.push(c(a)?);
    }
    let mut envp = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut kv = k.clone();
        kv.push(b'=');
        kv.extend_from_slice(v);
        envp.push(c(&kv)?);
    }
    sb.spawn(program, argv, envp, &log, syscalls)
        .map_err(std::io::Error::other)
}

/// `<root>/nix-build-<drv name>-<n>`, as Nix names it, created with mode 0700.
pub(crate) fn create_build_dir(root: &Path, drv_name: &str) -> Result<PathBuf, BuildError> {
    use std::os::unix::fs::DirBuilderExt;
    for n in 0.. {
        let dir = root.join(format!("nix-build-{drv_name}-{n}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(BuildError::Io {
                    path: dir,
                    source: e,
                })
            }
        }
    }
    unreachable!("ran out of build directory names")
}

/// Makes the kernel kill the builder if rix dies (even by `kill -9`), so that an
/// orphaned builder can never write into an output path after its lock is gone;
/// and installs the system call policy.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command, syscalls: sandbox::seccomp::Policy) {
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (prctl) on memory prepared before the fork;
    // it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The kernel's huge-page policy, not the one rix chose for itself.
            let _ = nix::sys::prctl::set_thp_disable(false);
            syscalls.apply().map_err(std::io::Error::from)
        });
    }
}

enum Msg {
    Output(Vec<u8>),
    Eof,
    Exited(std::io::Result<ExitStatus>),
}

#[allow(clippy::too_many_arguments)]
fn run_builder(
    store: &LocalStore,
    job: &BuildJob<'_>,
    drv: &Derivation,
    settings: &BuildSettings,
    observer: &dyn Observer,
    build_dir: &Path,
    env: &BTreeMap<Vec<u8>, Vec<u8>>,
    drv_printed: &str,
    sandbox: Option<&mut Sandbox>,
) -> Result<(), BuildError> {
    let log_path = store.log_path(job.drv_path);
    let mut log = LogSink::create(&log_path).map_err(BuildError::io(&log_path))?;
    let (reader, writer) = std::io::pipe().map_err(BuildError::io(build_dir))?;
    if running::cancelled() {
        return Err(BuildError::Cancelled(drv_printed.to_owned()));
    }
    let spawn_error = |source| BuildError::Spawn {
        drv: drv_printed.to_owned(),
        builder: String::from_utf8_lossy(&drv.builder).into_owned(),
        source,
    };
    let policy = |required| {
        sandbox::seccomp::Policy::new(
            settings.filter_syscalls,
            settings.allow_new_privileges,
            required,
        )
    };
    let (pgid, waiter): (i32, Box<dyn FnOnce() -> std::io::Result<ExitStatus> + Send>) =
        match sandbox {
            Some(sb) => {
                let policy = policy(sb.privileged());
                let child =
                    spawn_sandboxed(sb, drv, env, writer.into(), policy).map_err(spawn_error)?;
                (child.pid.as_raw(), Box::new(move || child.wait()))
            }
            None => {
                // Builders run as rix's own user here: as Nix without build
                // users, going on without the filter when it cannot be installed.
                let mut child = spawn_direct(drv, env, build_dir, writer, policy(false))
                    .map_err(spawn_error)?;
                (child.id() as i32, Box::new(move || child.wait()))
            }
        };
    let _registration = running::register(pgid);
    // Bounded: a builder printing faster than the log is compressed waits on its
    // pipe instead of piling its output up in rix's memory (LOG_CHANNEL_CHUNKS
    // reads of 64 KiB at most), and `max-build-log-size` is checked as it goes.
    let (tx, rx) = mpsc::sync_channel(LOG_CHANNEL_CHUNKS);
    let out_tx = tx.clone();
    std::thread::spawn(move || pump(reader, out_tx));
    std::thread::spawn(move || {
        let _ = tx.send(Msg::Exited(waiter()));
    });

    let start = Instant::now();
    let mut last_output = start;
    let (mut eof, mut status) = (false, None);
    let mut killed_for: Option<String> = None;
    let line = |l: &str| {
        observer.event(BuildEvent::Log {
            drv: job.drv_path,
            line: l,
        })
    };
    while !(eof && status.is_some()) {
        let deadline = next_deadline(settings, start, last_output, status.is_some());
        let msg = match deadline {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Output(data)) => {
                last_output = Instant::now();
                log.write(&data, line);
                if let Some(max) = settings.max_log_size {
                    if log.len() > max && killed_for.is_none() {
                        killed_for = Some(format!(
                            "killed after writing more than {max} bytes of log output"
                        ));
                        running::kill_group(pgid);
                    }
                }
            }
            Ok(Msg::Eof) => eof = true,
            Ok(Msg::Exited(s)) => {
                // Whatever the builder left running dies with it.
                running::kill_group(pgid);
                status = Some(s.map_err(BuildError::io(build_dir))?);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if status.is_some() => break, // a straggler holds the pipe
            Err(mpsc::RecvTimeoutError::Timeout) => {
                killed_for = Some(timeout_reason(settings, start, last_output));
                running::kill_group(pgid);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // A failed log write (a full disk) is reported only when nothing the builder
    // did failed first: its own error (writing its output to the same full disk)
    // is what the user must see.
    let crate::log::LogEnd {
        tail,
        error: log_error,
    } = log.finish(line);
    let status = status.unwrap_or_else(|| ExitStatus::from_raw(9));
    if let Some(reason) = killed_for {
        return Err(BuildError::TimedOut {
            drv: drv_printed.to_owned(),
            reason,
        });
    }
    if running::cancelled() {
        return Err(BuildError::Cancelled(drv_printed.to_owned()));
    }
    if !status.success() {
        return Err(BuildError::BuilderFailed {
            drv: drv_printed.to_owned(),
            status: describe_status(status),
            tail,
            log_error: log_error.map(|e| e.to_string()),
            log_command: settings.log_command.clone(),
        });
    }
    match log_error {
        Some(e) => Err(BuildError::Log(e)),
        None => Ok(()),
    }
}

/// Runs builtin `name` (`builtin:fetchurl`) in this process, its messages
/// in the build log as a builder's output would be.
#[allow(clippy::too_many_arguments)]
fn run_builtin(
    store: &LocalStore,
    job: &BuildJob<'_>,
    drv: &Derivation,
    name: &str,
    outputs: &BTreeMap<String, StorePath>,
    settings: &BuildSettings,
    observer: &dyn Observer,
    drv_printed: &str,
) -> Result<(), BuildError> {
    if running::cancelled() {
        return Err(BuildError::Cancelled(drv_printed.to_owned()));
    }
    let log_path = store.log_path(job.drv_path);
    let mut log = LogSink::create(&log_path).map_err(BuildError::io(&log_path))?;
    let real: BTreeMap<String, PathBuf> = outputs
        .iter()
        .map(|(k, p)| (k.clone(), store.real_path(p)))
        .collect();
    let store_dir = store.store_dir().as_str().to_owned();
    let real_store_dir = store.layout().real_store_dir.clone();
    let real_of = |p: &str| match p
        .strip_prefix(store_dir.as_str())
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(rest) => real_store_dir.join(rest),
        None => PathBuf::from(p),
    };
    let result = crate::builtins::run(name, drv, &real, &settings.fetchurl, &real_of);
    let line = |l: &str| {
        observer.event(BuildEvent::Log {
            drv: job.drv_path,
            line: l,
        })
    };
    if let Err(message) = &result {
        log.write(format!("{message}\n").as_bytes(), line);
    }
    let crate::log::LogEnd {
        tail,
        error: log_error,
    } = log.finish(line);
    match result {
        Ok(()) => match log_error {
            Some(e) => Err(BuildError::Log(e)),
            None => Ok(()),
        },
        Err(_) => Err(BuildError::BuilderFailed {
            drv: drv_printed.to_owned(),
            status: "exit code 1".into(),
            tail,
            log_error: log_error.map(|e| e.to_string()),
            log_command: settings.log_command.clone(),
        }),
    }
}

/// Reads of builder output waiting to be logged, at most.
const LOG_CHANNEL_CHUNKS: usize = 16;

fn pump(mut reader: std::io::PipeReader, tx: mpsc::SyncSender<Msg>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Msg::Eof);
                return;
            }
            Ok(n) => {
                if tx.send(Msg::Output(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

/// When the wait for the next message must end: a limit, or (once the builder has
/// exited) a short grace period for the rest of its output.
fn next_deadline(
    s: &BuildSettings,
    start: Instant,
    last: Instant,
    exited: bool,
) -> Option<Instant> {
    if exited {
        return Some(Instant::now() + Duration::from_millis(500));
    }
    let a = s.timeout.map(|t| start + t);
    let b = s.max_silent_time.map(|t| last + t);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn timeout_reason(s: &BuildSettings, start: Instant, last: Instant) -> String {
    match (s.timeout, s.max_silent_time) {
        (Some(t), _) if start.elapsed() >= t => format!("timed out after {} seconds", t.as_secs()),
        (_, Some(t)) if last.elapsed() >= t => {
            format!("timed out after {} seconds of silence", t.as_secs())
        }
        _ => "timed out".to_owned(),
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => "unknown status".to_owned(),
    }
}

/// A `Write` that hashes, counts and scans for references in one pass.
struct OutputSink {
    sha256: Hasher,
    extra: Option<Hasher>,
    scanner: ReferenceScanner,
    size: u64,
}

impl Write for OutputSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sha256.update(buf);
        if let Some(h) = self.extra.as_mut() {
            h.update(buf);
        }
        self.scanner.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn register_outputs(
    store: &LocalStore,
    job: &BuildJob<'_>,
    outputs: &BTreeMap<String, StorePath>,
    drv_printed: &str,
) -> Result<Vec<ValidPathInfo>, BuildError> {
    let candidates: BTreeSet<&StorePath> = job
        .input_closure
        .iter()
        .chain(job.outputs.values())
        .collect();
    let mut infos = Vec::new();
    for (name, path) in outputs {
        let real = store.real_path(path);
        infos.push(describe_output(
            store,
            job,
            &candidates,
            name,
            path,
            &real,
            drv_printed,
        )?);
    }
    store.sync()?;
    store.register(&infos)?;
    Ok(infos)
}

/// Canonicalises the output `name` (`path`, found at `real`) and describes it:
/// NAR hash and size, references among `candidates`, deriver; for a fixed-output
/// derivation, checks the hash and records the content address.
pub(crate) fn describe_output(
    store: &LocalStore,
    job: &BuildJob<'_>,
    candidates: &BTreeSet<&StorePath>,
    name: &str,
    path: &StorePath,
    real: &Path,
    drv_printed: &str,
) -> Result<ValidPathInfo, BuildError> {
    if std::fs::symlink_metadata(real).is_err() {
        return Err(BuildError::MissingOutput {
            drv: drv_printed.to_owned(),
            output: name.to_owned(),
            path: store.print(path),
        });
    }
    canonicalise(real).map_err(BuildError::io(real))?;
    let fixed = match job.drv.outputs.get(name) {
        Some(DerivationOutput::CAFixed { method, hash }) => Some((*method, *hash)),
        _ => None,
    };
    let extra = fixed
        .filter(|(m, h)| *m == CaMethod::Recursive && h.algo() != HashAlgo::Sha256)
        .map(|(_, h)| Hasher::new(h.algo()));
    let mut sink = OutputSink {
        sha256: Hasher::new(HashAlgo::Sha256),
        extra,
        scanner: ReferenceScanner::new(candidates.iter().copied()),
        size: 0,
    };
    rix_store::archive::dump(real, &mut sink)?;
    let nar_hash = sink.sha256.clone().finish();
    let mut info = ValidPathInfo::new(path.clone(), nar_hash, sink.size);
    info.references = sink.scanner.into_found().into_iter().collect();
    info.deriver = Some(job.drv_path.clone());
    info.ultimate = true;
    if let Some((method, expected)) = fixed {
        let got = match method {
            CaMethod::Recursive if expected.algo() == HashAlgo::Sha256 => nar_hash,
            CaMethod::Recursive => sink.extra.take().expect("extra hasher").finish(),
            _ => rix_store::local_store::hash_file(real, expected.algo())?,
        };
        if got != expected {
            return Err(BuildError::HashMismatch {
                drv: drv_printed.to_owned(),
                specified: expected.to_sri(),
                got: got.to_sri(),
            });
        }
        info.ca = Some(match method {
            CaMethod::Recursive => ContentAddress::Fixed(FileIngestionMethod::Recursive, expected),
            CaMethod::Text => ContentAddress::Text(expected),
            _ => ContentAddress::Fixed(FileIngestionMethod::Flat, expected),
        });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_home_stops_builds_outside_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("homeless-shelter");
        no_home_on_the_host(&home, "/nix/store/x.drv").unwrap();
        std::fs::create_dir(&home).unwrap();
        let e = no_home_on_the_host(&home, "/nix/store/x.drv")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("home directory '{}' exists", home.display()))
                && e.contains("without sandboxing"),
            "{e}"
        );
    }
}
