//! `rix build` and `rix store realise`: make derivation outputs valid, building
//! only what is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_build::sandbox::SandboxMode;
use rix_build::{realise, RealiseOptions, RealiseReport};
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_store::store_api::Store;

use crate::context::Context;
use crate::progress::Progress;

#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// What to build: `/nix/store/...drv` (optionally `^out,dev` to pick
    /// outputs), or `FILE.nix` (evaluated, as `nix-build FILE.nix`); with
    /// `--file`/`--expr`, attribute paths. None: `./default.nix`.
    #[arg(value_name = "INSTALLABLES")]
    pub installables: Vec<String>,
    #[command(flatten)]
    pub nix: Box<crate::cmd::instantiate::NixInstallableArgs>,
    /// Builds to run at once (default: the `max-jobs` setting; `auto` = CPUs).
    #[arg(short = 'j', long = "max-jobs", value_name = "N")]
    pub max_jobs: Option<String>,
    /// CPU cores each builder may use (NIX_BUILD_CORES; 0 = all).
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Go on with other builds when one fails.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Keep the build directory of failed builds.
    #[arg(short = 'K', long)]
    pub keep_failed: bool,
    /// Show what would be built, build nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rebuild and check that the result is identical to the existing outputs.
    #[arg(long)]
    pub check: bool,
    /// Rebuild what is already built and compare (as `--check`; Nix's `nix build --rebuild`).
    #[arg(long)]
    pub rebuild: bool,
    /// Say why each derivation is built: what changed since the last build
    /// of its name in this store (with `--json`, as a JSON array on stdout).
    #[arg(long)]
    pub explain: bool,
    /// Name of the result symlink (`result`, `result-dev`, `result-1`, ...).
    #[arg(short = 'o', long, value_name = "PATH", default_value = "result")]
    pub out_link: PathBuf,
    /// Do not create result symlinks.
    #[arg(long)]
    pub no_link: bool,
    /// Print the output paths on stdout.
    #[arg(long)]
    pub print_out_paths: bool,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print every line of the builders' logs.
    #[arg(short = 'L', long)]
    pub print_build_logs: bool,
    /// Kill a build that runs longer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Kill a build that prints nothing for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub max_silent_time: Option<u64>,
    /// Kill a build whose log exceeds this many bytes (0: no limit).
    #[arg(long, value_name = "BYTES")]
    pub max_build_log_size: Option<u64>,
    /// Build in the Linux sandbox (the default where the kernel allows it).
    #[arg(long, overrides_with = "no_sandbox")]
    pub sandbox: bool,
    /// Let builders see the whole host (`sandbox = false`).
    #[arg(long, overrides_with = "sandbox")]
    pub no_sandbox: bool,
    /// Binary caches to substitute from, space-separated (instead of the
    /// `substituters` setting).
    #[arg(long, value_name = "URLS")]
    pub substituters: Option<String>,
    /// Build from source when substituting fails.
    #[arg(long)]
    pub fallback: bool,
    /// Use no binary caches.
    #[arg(long)]
    pub offline: bool,
}

/// A derivation and the outputs wanted from it (`None` = all).
struct Target {
    drv: StorePath,
    outputs: Option<Vec<String>>,
}

/// What one command-line argument asks for.
enum Installable {
    Derivation(Target),
    /// A plain store path: valid, or fetched from a cache (`nix build PATH`).
    Path(StorePath),
}

fn parse_installable(store: &dyn Store, s: &str) -> Result<Installable> {
    let (path, outputs) = match s.split_once('^') {
        Some((p, "*")) => (p, None),
        Some((p, outs)) => (p, Some(outs.split(',').map(str::to_owned).collect())),
        None => (s, None),
    };
    let abs = std::fs::canonicalize(path)
        .map_or_else(|_| path.to_owned(), |p| p.to_string_lossy().into_owned());
    let drv = store
        .parse_path(&abs)
        .or_else(|_| store.parse_path(path))
        .with_context(|| {
            format!(
                "'{s}' is not a store path of this store ({})",
                store.store_dir()
            )
        })?;
    if !drv.is_derivation() {
        if s.contains('^') {
            bail!(
                "'{s}' names outputs ('^'), but '{}' is not a derivation (.drv)",
                store.print(&drv)
            );
        }
        return Ok(Installable::Path(drv));
    }
    Ok(Installable::Derivation(Target { drv, outputs }))
}

/// What the command line asks for: the derivations evaluation selected (each
/// with its output), then the `.drv` and plain store paths given.
fn wanted(
    store: &dyn Store,
    args: &BuildArgs,
    evaluated: Vec<(StorePath, String)>,
) -> Result<Vec<Installable>> {
    let mut wanted: Vec<Installable> = evaluated
        .into_iter()
        .map(|(drv, output)| {
            Installable::Derivation(Target {
                drv,
                outputs: Some(vec![output]),
            })
        })
        .collect();
    for i in &args.installables {
        if !args.nix.is_set()
            && !crate::cmd::instantiate::is_nix_installable(i)
            && !crate::cmd::instantiate::is_flake_installable(i)
        {
            wanted.push(parse_installable(store, i)?);
        }
    }
    Ok(wanted)
}

/// `rix build`'s arguments with nothing given (for `rix repl`'s `:b`, which
/// builds as `rix build` does with the same settings).
pub(crate) fn default_args() -> BuildArgs {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        args: BuildArgs,
    }
    <Defaults as clap::Parser>::parse_from(["rix"]).args
}

/// The settings' realisation options ([`rix_build::options`], as `rix daemon`
/// reads them) with this command line's flags over them.
pub(crate) fn options(ctx: &Context, args: &BuildArgs) -> Result<RealiseOptions> {
    let s = &ctx.settings;
    let max_jobs = match &args.max_jobs {
        Some(j) if j == "auto" => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(j) => j
            .parse()
            .with_context(|| format!("--max-jobs: '{j}' is not a number"))?,
        None => s.max_jobs()?,
    };
    let mut settings = rix_build::options::build_settings(s).map_err(anyhow::Error::msg)?;
    match args.cores {
        Some(0) => settings.cores = std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) => settings.cores = n,
        None => {}
    }
    let secs = |v: u64| (v > 0).then(|| std::time::Duration::from_secs(v));
    if let Some(t) = args.timeout {
        settings.timeout = secs(t);
    }
    if let Some(t) = args.max_silent_time {
        settings.max_silent_time = secs(t);
    }
    if let Some(n) = args.max_build_log_size {
        settings.max_log_size = (n > 0).then_some(n);
    }
    settings.keep_failed |= args.keep_failed;
    // The hint after a failure names the store the build used.
    if let Some(url) = &ctx.store_url {
        let safe = url
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=".contains(&b));
        settings.log_command = if safe {
            format!("rix --store {url} log")
        } else {
            format!("rix --store \"{url}\" log")
        };
    }
    match (args.sandbox, args.no_sandbox) {
        (true, _) => settings.sandbox = SandboxMode::On,
        (_, true) => settings.sandbox = SandboxMode::Off,
        _ => {}
    }
    Ok(RealiseOptions {
        max_jobs,
        keep_going: args.keep_going || s.get_bool("keep-going")?,
        check: args.check || args.rebuild,
        settings,
        substituter: None,
    })
}

pub fn run(ctx: &Context, args: &BuildArgs) -> Result<()> {
    // Nothing named: `./default.nix`, as `nix-build` builds.
    let defaulted;
    let args = if args.installables.is_empty() && !args.nix.is_set() {
        defaulted = BuildArgs {
            installables: vec!["./default.nix".to_owned()],
            ..args.clone()
        };
        &defaulted
    } else {
        args
    };
    realise_then(ctx, args, &mut |store, results| {
        if !args.no_link {
            create_links(store, &args.out_link, results)?;
        }
        print_results(store, args, results);
        Ok(())
    })
}

/// What `rix build` does with the results: links and printing for the
/// command, collecting them for `rix run` and `rix shell`.
type Finish<'a> = dyn FnMut(&dyn Store, &Results) -> Result<()> + 'a;

/// Realises `installables` (`DRV^OUTPUTS`, store paths, flake installables
/// evaluated with `nix`'s flags) as `rix build --no-link` does: what is
/// missing is built or substituted, through the daemon when the store is
/// one. Returns each wanted thing's output paths, as Nix's
/// `Installable::build` (`Realise::Outputs`) for `nix run` and `nix shell`.
pub(crate) fn realise_installables(
    ctx: &Context,
    installables: Vec<String>,
    nix: crate::cmd::instantiate::NixInstallableArgs,
) -> Result<Vec<BTreeMap<String, StorePath>>> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        build: BuildArgs,
    }
    let mut args = <Defaults as clap::Parser>::try_parse_from(["rix"])
        .expect("build flags have defaults")
        .build;
    args.installables = installables;
    *args.nix = nix;
    args.no_link = true;
    let mut out = Vec::new();
    realise_then(ctx, &args, &mut |_, results| {
        out = results.iter().map(|(_, outs)| outs.clone()).collect();
        Ok(())
    })?;
    Ok(out)
}

fn realise_then(ctx: &Context, args: &BuildArgs, finish: &mut Finish<'_>) -> Result<()> {
    if ctx.daemon_url().is_some() {
        return run_through_daemon(ctx, args, finish);
    }
    let store = std::rc::Rc::new(ctx.open_store()?);
    if args
        .nix
        .eval_args
        .extra_experimental_features
        .iter()
        .any(|f| f.split_whitespace().any(|f| f == "ca-derivations"))
    {
        store.enable_ca_derivations()?;
    }
    let evaluated =
        crate::cmd::instantiate::build_targets(ctx, &store, &args.installables, &args.nix)?;
    let ctx = &crate::cmd::flake::with_flake_config(ctx);
    let wanted = wanted(&*store, args, evaluated)?;
    let (mut drvs, mut paths) = (Vec::new(), Vec::new());
    for w in &wanted {
        match w {
            Installable::Derivation(t) => drvs.push(t.drv.clone()),
            Installable::Path(p) => paths.push(p.clone()),
        }
    }
    let substituter = crate::cmd::copy::build_substituter(
        ctx,
        &store,
        args.substituters.as_deref(),
        args.fallback,
        args.offline,
    )?;
    if args.explain {
        print_explanations(&store, args, &drvs, substituter.as_deref())?;
    }
    if args.dry_run {
        let quiet = rix_build::events::Silent;
        let subst = substituter
            .as_deref()
            .map(|s| rix_build::substitute::Substitution::new(s, &quiet));
        let plan = rix_build::plan::plan_with(&store, &drvs, subst.as_ref())?;
        if !plan.substitutes.is_empty() {
            eprintln!(
                "these {} derivations' outputs would be fetched:",
                plan.substitutes.len()
            );
            for d in plan.substitutes.keys() {
                eprintln!("  {}", store.print(d));
            }
        }
        if plan.builds.is_empty() {
            eprintln!("nothing to build: every output is valid");
        } else {
            eprintln!(
                "{}",
                crate::progress::will_be_built(plan.builds.len(), true)
            );
            for d in plan.build_order() {
                eprintln!("  {}", store.print(&d));
            }
        }
        return Ok(());
    }
    if store.layout().needs_remap() && !drvs.is_empty() {
        if let Err(why) = rix_build::sandbox::available() {
            bail!(
                "cannot build in the store rooted at {}: its builders must see it at {}, which needs \
                 the sandbox's mount namespace, and the sandbox is not available ({why}); use a store \
                 whose directory is its real location, e.g. \
                 --store 'local?store=/some/dir/store&state=/some/dir/state&log=/some/dir/log'",
                store.layout().root.as_ref().map_or_else(String::new, |r| r.display().to_string()),
                store.store_dir()
            );
        }
    }
    let mut opts = options(ctx, args)?;
    opts.substituter = substituter;
    let sandbox_off_here = args.no_sandbox
        || (ctx.settings.origin("sandbox") == Some("--option")
            && opts.settings.sandbox == SandboxMode::Off);
    if store.layout().needs_remap() && !drvs.is_empty() && sandbox_off_here {
        eprintln!(
            "warning: building in the sandbox anyway: the store rooted at {} is seen at {} only \
             inside the sandbox, so 'sandbox = false' does not apply to it (as in Nix)",
            store
                .layout()
                .root
                .as_ref()
                .map_or_else(String::new, |r| r.display().to_string()),
            store.store_dir()
        );
    }
    let progress = Progress::new(store.store_dir().clone(), args.print_build_logs);
    progress.set_legacy(nix_file_build(args));
    let fetched = rix_build::substitute::realise_paths(
        &store,
        &paths,
        opts.substituter.as_deref(),
        &progress,
    );
    let report = match fetched {
        Ok(_) if drvs.is_empty() => Ok(RealiseReport::default()),
        Ok(_) => realise(&store, &drvs, &opts, &progress),
        Err(e) => Err(e),
    };
    progress.finish();
    if rix_build::running::cancelled() {
        bail!("interrupted by the user");
    }
    let report = report?;
    report_failures(&report, progress.reported_failures())?;
    report_nondeterminism(&store, &report)?;
    let results = selected_outputs(&wanted, &report)?;
    finish(&*store, &results)
}

/// `--explain`: why each derivation of the plan will be built.
fn print_explanations(
    store: &LocalStore,
    args: &BuildArgs,
    drvs: &[StorePath],
    substituter: Option<&rix_substitute::Substituter>,
) -> Result<()> {
    let check = args.check || args.rebuild;
    let plan = if check {
        rix_build::plan::check_plan(store, drvs)?
    } else {
        let quiet = rix_build::events::Silent;
        let subst = substituter.map(|s| rix_build::substitute::Substitution::new(s, &quiet));
        rix_build::plan::plan_with(store, drvs, subst.as_ref())?
    };
    let forced = check.then_some(if args.rebuild { "--rebuild" } else { "--check" });
    let explained = rix_build::explain::explain_plan(store, &plan, forced);
    if args.json {
        let json: Vec<serde_json::Value> = explained
            .iter()
            .map(|e| rix_build::explain::to_json(store, e))
            .collect();
        println!("{}", serde_json::Value::Array(json));
    } else if !explained.is_empty() {
        eprintln!("why each derivation will be built:");
        for e in &explained {
            let reason = rix_build::explain::Display {
                store,
                reason: &e.reason,
            };
            eprintln!("  {}: {reason}", store.print(&e.drv));
        }
    }
    Ok(())
}

/// Whether a Nix file is built (`rix build FILE.nix`, as `nix-build FILE`),
/// rather than installables as `nix build` (`-f`/`--expr` included).
fn nix_file_build(args: &BuildArgs) -> bool {
    !args.nix.is_set()
        && args
            .installables
            .iter()
            .any(|i| crate::cmd::instantiate::is_nix_installable(i))
}

/// Whether the build is `nix-build`'s (Nix files or `--file`/`--expr`),
/// which prints the output paths, rather than `nix build`'s.
fn nix_build_style(args: &BuildArgs) -> bool {
    args.nix.is_set()
        || args
            .installables
            .iter()
            .any(|i| crate::cmd::instantiate::is_nix_installable(i))
}

/// `--json` or `--print-out-paths` output; the output paths for a
/// `nix-build`-style build.
fn print_results(store: &dyn Store, args: &BuildArgs, results: &Results) {
    if args.json {
        let json: Vec<serde_json::Value> = results
            .iter()
            .map(|(drv, outs)| match drv {
                // A plain store path, as `nix build --json` prints it.
                None => serde_json::json!({
                    "path": outs.values().next().map(|p| store.print(p)),
                }),
                Some(drv) => serde_json::json!({
                    "drvPath": store.print(drv),
                    "outputs": outs.iter().map(|(n, p)| (n.clone(), serde_json::Value::String(store.print(p)))).collect::<serde_json::Map<_, _>>(),
                }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(json));
    } else if args.print_out_paths || nix_build_style(args) {
        for (_, outs) in results {
            for p in outs.values() {
                println!("{}", store.print(p));
            }
        }
    }
}

/// `rix build` against a daemon: evaluation writes the `.drv` files through it,
/// it builds or substitutes (`BuildPathsWithResults`), and its builds, log
/// lines and downloads show in rix's progress display.
fn run_through_daemon(ctx: &Context, args: &BuildArgs, finish: &mut Finish<'_>) -> Result<()> {
    use rix_formats::worker_protocol::{BuildMode, DerivedPath, OutputsSpec};
    let url = ctx.daemon_url().expect("a daemon store");
    let store_dir = rix_remote::DaemonUrl::parse(&url)?
        .map(|u| u.store_dir)
        .context("not a daemon URL")?;
    let progress = std::sync::Arc::new(Progress::new(store_dir, args.print_build_logs));
    progress.set_legacy(nix_file_build(args));
    let logger = std::sync::Arc::new(crate::progress::DaemonProgress::new(progress.clone()));
    // The daemon builds with this command's flags (`-j`, `--cores`, `-K`,
    // `--keep-going`, `--max-silent-time`) over the settings, as sent by `SetOptions`.
    let realise = options(ctx, args)?;
    let mut daemon_options = ctx.daemon_options()?;
    daemon_options.max_jobs = realise.max_jobs as u32;
    daemon_options.keep_going = realise.keep_going;
    daemon_options.keep_failed = realise.settings.keep_failed;
    daemon_options.build_cores = realise.settings.cores as u32;
    if let Some(t) = realise.settings.max_silent_time {
        daemon_options.max_silent_time = t.as_secs() as u32;
    }
    let daemon = std::sync::Arc::new(
        rix_remote::DaemonStore::open_url(&url, daemon_options, logger)
            .with_context(|| format!("cannot connect to the daemon at '{url}'"))?,
    );
    let store: std::sync::Arc<dyn Store> = daemon.clone();
    let evaluated = crate::cmd::instantiate::build_targets_in(
        ctx,
        store.clone(),
        &args.installables,
        &args.nix,
    )?;
    let wanted = wanted(&*store, args, evaluated)?;
    let targets: Vec<DerivedPath> = wanted
        .iter()
        .map(|w| match w {
            Installable::Path(p) => DerivedPath::Opaque(p.clone()),
            Installable::Derivation(t) => DerivedPath::Built {
                drv_path: t.drv.clone(),
                outputs: match &t.outputs {
                    None => OutputsSpec::All,
                    Some(names) => OutputsSpec::Names(names.iter().cloned().collect()),
                },
            },
        })
        .collect();
    if args.dry_run {
        let missing = daemon.query_missing(&targets)?;
        for (what, paths) in [
            ("would be built", &missing.will_build),
            ("would be fetched", &missing.will_substitute),
        ] {
            if !paths.is_empty() {
                eprintln!("these {} paths {what}:", paths.len());
                for p in paths {
                    eprintln!("  {}", store.print(p));
                }
            }
        }
        return Ok(());
    }
    let mode = if args.check || args.rebuild {
        BuildMode::Check
    } else {
        BuildMode::Normal
    };
    let results = daemon.build_paths_with_results(&targets, mode);
    progress.finish();
    let mut failures = Vec::new();
    let mut report = RealiseReport::default();
    for r in results? {
        let DerivedPath::Built { drv_path, .. } = &r.path else {
            continue;
        };
        if !r.result.status.is_success() {
            failures.push(rix_remote::strip_ansi(&r.result.error_msg));
            continue;
        }
        let outputs = daemon.outputs_built(drv_path, &r.result)?;
        report.outputs.insert(drv_path.clone(), outputs);
    }
    // Exit status 1, as Nix's client gives: the daemon's results do not
    // carry the worker's exit status.
    match failures.as_slice() {
        [] => {}
        [only] => bail!("{only}"),
        all => bail!("{}", all.join("\n")),
    }
    let results = selected_outputs(&wanted, &report)?;
    finish(&*store, &results)
}

/// Fails with Nix's exit status for the report (see
/// `RealiseReport::exit_status`). Failed builds were reported as they failed
/// (`reported` of them, by the progress display); what is left to say is the
/// count, unless the one build that failed was all there was.
fn report_failures(report: &RealiseReport, reported: usize) -> Result<()> {
    if report.succeeded() {
        return Ok(());
    }
    let fail = |message: String| -> Result<()> {
        Err(crate::cmd::ExitStatus {
            code: report.exit_status(),
            message,
        }
        .into())
    };
    if let [(_, only)] = report.failed.as_slice() {
        if report.skipped.is_empty() {
            // Said already: exit with the status alone.
            return fail(if reported == 1 {
                String::new()
            } else {
                only.to_string()
            });
        }
    }
    if reported == 0 {
        for (_, e) in &report.failed {
            eprintln!("error: {e}");
        }
    }
    let total = report.built.len()
        + report.built_elsewhere.len()
        + report.cut_off.len()
        + report.failed.len()
        + report.skipped.len();
    fail(format!(
        "{} of {total} builds failed and {} were not attempted",
        report.failed.len(),
        report.skipped.len()
    ))
}

fn report_nondeterminism(store: &LocalStore, report: &RealiseReport) -> Result<()> {
    let Some((drv, diffs)) = report.nondeterministic.first() else {
        return Ok(());
    };
    let mut msg = String::new();
    for d in diffs {
        msg.push_str(&format!(
            "derivation '{}' may not be deterministic: output '{}' differs{}\n",
            store.print(drv),
            d.path,
            d.kept_at
                .as_ref()
                .map_or_else(String::new, |k| format!(" from '{}'", k.display()))
        ));
    }
    if report.nondeterministic.len() > 1 {
        msg.push_str(&format!(
            "({} derivations differ in all)",
            report.nondeterministic.len()
        ));
    }
    Err(crate::cmd::ExitStatus {
        code: report.exit_status(),
        message: msg.trim_end().to_owned(),
    }
    .into())
}

/// Each wanted thing's results in command-line order: a derivation (`Some`) with
/// its selected outputs, or a plain store path (`None`) as its own `out`.
type Results = Vec<(Option<StorePath>, BTreeMap<String, StorePath>)>;

fn selected_outputs(wanted: &[Installable], report: &RealiseReport) -> Result<Results> {
    wanted
        .iter()
        .map(|w| {
            let t = match w {
                Installable::Path(p) => {
                    return Ok((None, BTreeMap::from([("out".to_owned(), p.clone())])))
                }
                Installable::Derivation(t) => t,
            };
            let all = &report.outputs[&t.drv];
            let outs = match &t.outputs {
                None => all.clone(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        all.get(n)
                            .map(|p| (n.clone(), p.clone()))
                            .with_context(|| format!("derivation '{}' has no output '{n}'", t.drv))
                    })
                    .collect::<Result<_>>()?,
            };
            Ok((Some(t.drv.clone()), outs))
        })
        .collect()
}

/// `result`, `result-dev`, `result-1`, ... as `nix build` names them, each
/// registered as an indirect GC root.
fn create_links(store: &dyn Store, base: &Path, results: &Results) -> Result<()> {
    for (i, (_, outs)) in results.iter().enumerate() {
        for (name, path) in outs {
            let mut link = base.as_os_str().to_owned();
            if i > 0 {
                link.push(format!("-{i}"));
            }
            if name != "out" {
                link.push(format!("-{name}"));
            }
            let link = PathBuf::from(link);
            let target = crate::cmd::resolve::layout_of(store).real_path(path);
            rix_store::roots::replace_symlink(&target, &link)
                .with_context(|| format!("cannot create result link {}", link.display()))?;
            store.add_indirect_root(&link)?;
        }
    }
    Ok(())
}
