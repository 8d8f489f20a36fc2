//! Flakes on the command line: installables `FLAKEREF#ATTRPATH` for `rix
//! build`, `rix eval`, `rix shell` and `rix run` (Nix's attribute search
//! orders; `rix run`'s apps), `rix flake lock |
//! update | metadata | show | check | init | prefetch | archive`, and `rix
//! registry list | add | remove | pin`. The work is `rix_flake`'s.

use std::collections::BTreeSet;
use std::rc::Rc;

use anyhow::Result;
use clap::{Args, Subcommand};
use rix_eval::source::Pos;
use rix_eval::symbol::Symbol;
use rix_eval::{EvalOptions, EvalStore, Evaluator, Value};
use rix_flake::lock_file::{Edge, LockFile, ROOT};
use rix_flake::reference::{self, FlakeInstallable, OutputsSpec, ParseOptions};
use rix_flake::registry::{self, Registry, RegistryType};
use rix_flake::{FlakeError, FlakeSettings, LockFlags, LockedFlake};
use rix_formats::flake_ref::FlakeRef;

use crate::cmd::instantiate::{eval_error, EvalArgs};
use crate::context::Context;

/// The flags of every command that locks a flake (Nix's `MixFlakeOptions`).
#[derive(Args, Debug, Clone, Default)]
pub struct FlakeLockArgs {
    /// Recreate the flake's lock file from scratch.
    #[arg(long)]
    pub recreate_lock_file: bool,
    /// Do not allow any updates to the flake's lock file.
    #[arg(long)]
    pub no_update_lock_file: bool,
    /// Do not write the flake's newly generated lock file.
    #[arg(long)]
    pub no_write_lock_file: bool,
    /// Override a flake input (`--override-input nixpkgs path:/x`).
    #[arg(long, num_args = 2, value_names = ["INPUT_PATH", "FLAKE_URL"], action = clap::ArgAction::Append)]
    pub override_input: Vec<String>,
    /// Update one input of the lock file (deprecated in Nix for `flake update INPUT`).
    #[arg(long, value_name = "INPUT_PATH", action = clap::ArgAction::Append)]
    pub update_input: Vec<String>,
    /// Read the given lock file instead of `flake.lock`.
    #[arg(long, value_name = "FLAKE_LOCK_PATH")]
    pub reference_lock_file: Option<String>,
    /// Write the lock file to this path instead of the flake's `flake.lock`.
    #[arg(long, value_name = "FLAKE_LOCK_PATH")]
    pub output_lock_file: Option<String>,
    /// Do not look up flake names in the registries.
    #[arg(long)]
    pub no_registries: bool,
    /// Override the flake registries: map FROM to TO.
    #[arg(long, num_args = 2, value_names = ["ORIGINAL_REF", "RESOLVED_REF"], action = clap::ArgAction::Append)]
    pub override_flake: Vec<String>,
    /// Accept the `nixConfig` settings of flakes without asking.
    #[arg(long)]
    pub accept_flake_config: bool,
}

impl FlakeLockArgs {
    /// Whether the lock is computed from the flake's own lock file alone (no
    /// flag overrides or updates an input): then an answer may be cached.
    pub fn is_plain(&self) -> bool {
        !self.recreate_lock_file
            && self.override_input.is_empty()
            && self.update_input.is_empty()
            && self.reference_lock_file.is_none()
            && self.output_lock_file.is_none()
            && self.override_flake.is_empty()
    }
}

/// The evaluation cache's key for a question about a flake installable, or
/// `None` when the answer cannot be cached (see `rix_flake::eval_cache`):
/// the source's fingerprint, then the question's parts, the system, the
/// store directory and the `--option`s given.
pub fn eval_cache_key(
    ctx: &Context,
    installable: &str,
    parts: &[&str],
) -> Option<(String, String)> {
    let inst = rix_flake::reference::parse_installable(installable, &cwd()).ok()?;
    let source = rix_flake::eval_cache::source_fingerprint(&inst.flake_ref)?;
    let store_dir = ctx.settings.get("store");
    let system = ctx.settings.get("system");
    let options: Vec<String> = ctx
        .overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let reference = inst.flake_ref.to_string();
    let mut all: Vec<&str> = vec![&reference, &inst.fragment, &system, &store_dir];
    all.extend(parts.iter().copied());
    all.extend(options.iter().map(String::as_str));
    Some((rix_flake::eval_cache::key(&source, &all), source))
}

/// The evaluation cache, in rix's cache directory.
pub fn eval_cache() -> Option<rix_flake::eval_cache::EvalCache> {
    rix_flake::eval_cache::EvalCache::open(&rix_fetch::settings::default_cache_dir()?)
}

/// Whether the source behind `installable` is still the one fingerprinted
/// as `source` (evaluation may have written its lock file).
pub fn eval_cache_source_unchanged(installable: &str, source: &str) -> bool {
    rix_flake::reference::parse_installable(installable, &cwd())
        .ok()
        .and_then(|i| rix_flake::eval_cache::source_fingerprint(&i.flake_ref))
        .is_some_and(|s| s == source)
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "/".into())
}

pub(crate) fn flake_err(e: FlakeError, show_trace: bool) -> anyhow::Error {
    anyhow::Error::new(crate::cmd::instantiate::RenderedError(
        e.render(show_trace),
        1,
    ))
}

fn parse_ref(s: &str) -> Result<FlakeRef, FlakeError> {
    reference::parse(
        s,
        ParseOptions {
            base_dir: Some(&cwd()),
            ..ParseOptions::default()
        },
    )
}

impl FlakeLockArgs {
    /// The settings flakes read, from `rix.conf`/`--option` and these flags.
    pub fn settings(&self, ctx: &Context) -> Result<FlakeSettings, FlakeError> {
        let s = &ctx.settings;
        let fetch = rix_fetch::FetchSettings::from_settings(s);
        let mut settings = FlakeSettings::from_env(fetch);
        settings.use_registries = s.get("use-registries") != "false" && !self.no_registries;
        settings.accept_flake_config =
            self.accept_flake_config || s.get("accept-flake-config") == "true";
        settings.flake_registry = s.get("flake-registry");
        for pair in self.override_flake.chunks(2) {
            let from = parse_ref(&pair[0])?;
            let to = parse_ref(&pair[1])?;
            let mut extra = rix_formats::flake_ref::Attrs::new();
            if !to.dir.is_empty() {
                extra.insert(
                    "dir".into(),
                    rix_formats::flake_ref::AttrValue::Str(to.dir.clone()),
                );
            }
            settings.flag_registry.push(registry::Entry {
                from,
                to: FlakeRef {
                    dir: String::new(),
                    ..to
                },
                extra_attrs: extra,
                exact: false,
            });
        }
        Ok(settings)
    }

    pub fn lock_flags(&self) -> Result<LockFlags, FlakeError> {
        let mut flags = LockFlags {
            recreate_lock_file: self.recreate_lock_file,
            update_lock_file: !self.no_update_lock_file,
            write_lock_file: !self.no_write_lock_file,
            allow_unlocked: true,
            reference_lock_file_path: self.reference_lock_file.clone(),
            output_lock_file_path: self.output_lock_file.clone(),
            ..LockFlags::default()
        };
        for pair in self.override_input.chunks(2) {
            let path = rix_flake::flake::parse_input_path(&pair[0])?;
            let r = parse_ref(&pair[1])?;
            flags.input_overrides.insert(path, r);
        }
        for u in &self.update_input {
            flags
                .input_updates
                .insert(rix_flake::flake::parse_input_path(u)?);
        }
        Ok(flags)
    }
}

/// Evaluation options for flakes: the `flakes` feature on, pure unless
/// `--impure` (as Nix evaluates flakes).
pub fn eval_options(ctx: &Context, eval_args: &EvalArgs, store: Rc<dyn EvalStore>) -> EvalOptions {
    let mut opts = eval_args.options(ctx, store);
    for f in ["flakes", "nix-command"] {
        if !opts.features.iter().any(|x| x == f) {
            opts.features.push(f.to_owned());
        }
    }
    opts.pure = !eval_args.impure;
    opts
}

/// What an installable is for: the attribute paths tried differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Build,
    Run,
    Develop,
}

/// The attribute paths tried for a fragment (`getActualAttrPaths`).
pub fn attr_paths(fragment: &str, purpose: Purpose, system: &str) -> Vec<String> {
    if let Some(abs) = fragment.strip_prefix('.') {
        return vec![abs.to_owned()];
    }
    let (defaults, prefixes): (Vec<String>, Vec<String>) = match purpose {
        Purpose::Build => (
            vec![
                format!("packages.{system}.default"),
                format!("defaultPackage.{system}"),
            ],
            vec![
                format!("packages.{system}."),
                format!("legacyPackages.{system}."),
            ],
        ),
        Purpose::Run => (
            vec![
                format!("apps.{system}.default"),
                format!("defaultApp.{system}"),
                format!("packages.{system}.default"),
                format!("defaultPackage.{system}"),
            ],
            vec![
                format!("apps.{system}."),
                format!("packages.{system}."),
                format!("legacyPackages.{system}."),
            ],
        ),
        Purpose::Develop => (
            vec![
                format!("devShells.{system}.default"),
                format!("devShell.{system}"),
                format!("packages.{system}.default"),
                format!("defaultPackage.{system}"),
            ],
            vec![
                format!("devShells.{system}."),
                format!("packages.{system}."),
                format!("legacyPackages.{system}."),
            ],
        ),
    };
    if fragment.is_empty() {
        return defaults;
    }
    let mut out: Vec<String> = prefixes.iter().map(|p| format!("{p}{fragment}")).collect();
    out.push(fragment.to_owned());
    out
}

/// `parseAttrPath`: `a.b."c.d"`.
fn parse_attr_path(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() || !out.is_empty() {
        out.push(cur);
    }
    out
}

/// The attribute `name` of a set, `None` when missing or not a set.
pub(crate) fn get_attr(
    ev: &mut Evaluator,
    v: &Value,
    name: &str,
) -> rix_eval::Result<Option<Value>> {
    match ev.force(v)? {
        Value::Attrs(a) => Ok(a.get(Symbol::new(name)).cloned()),
        _ => Ok(None),
    }
}

pub(crate) fn select(
    ev: &mut Evaluator,
    root: &Value,
    path: &str,
) -> rix_eval::Result<Option<Value>> {
    let mut v = root.clone();
    for elem in parse_attr_path(path) {
        match get_attr(ev, &v, &elem)? {
            Some(x) => v = x,
            None => return Ok(None),
        }
    }
    Ok(Some(v))
}

/// `'a', 'b' or 'c'`.
pub(crate) fn show_attr_paths(paths: &[String]) -> String {
    let mut s = String::new();
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            s += if i + 1 == paths.len() { " or " } else { ", " };
        }
        s += &format!("'{p}'");
    }
    s
}

/// A flake installable evaluated: the value at the first attribute path
/// that exists, and that path.
pub fn eval_installable(
    ev: &mut Evaluator,
    settings: &FlakeSettings,
    flags: &LockFlags,
    inst: &FlakeInstallable,
    purpose: Purpose,
) -> Result<(Value, String), FlakeError> {
    // As Nix's `InstallableFlake::getLockedFlake`: the flake's `nixConfig`
    // applies.
    let flags = LockFlags {
        apply_nix_config: true,
        ..flags.clone()
    };
    let locked = rix_flake::lock_flake(ev, settings, &inst.flake_ref, &flags)?;
    apply_config(settings);
    let root = rix_flake::call_flake(ev, &locked)?;
    let outputs = get_attr(ev, &root, "outputs")?.unwrap_or(root);
    let system = ev.options().system.clone();
    let paths = attr_paths(&inst.fragment, purpose, &system);
    for p in &paths {
        if let Some(v) = select(ev, &outputs, p)? {
            return Ok((v, p.clone()));
        }
    }
    Err(FlakeError::msg(format!(
        "flake '{}' does not provide attribute {}",
        inst.flake_ref,
        show_attr_paths(&paths)
    )))
}

/// The `nixConfig` settings the flakes of this command accepted, in order.
static ACCEPTED_CONFIG: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Keeps the accepted `nixConfig` settings for [`with_flake_config`].
fn apply_config(settings: &FlakeSettings) {
    let mut accepted = ACCEPTED_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    accepted.extend(settings.accepted_config.borrow_mut().drain(..));
}

/// `ctx` with the `nixConfig` settings the flakes evaluated so far accepted
/// set, for what the command does next (building, running), as Nix's
/// `ConfigFile::apply` sets them in its global settings.
pub fn with_flake_config(ctx: &Context) -> Context {
    let accepted = std::mem::take(&mut *ACCEPTED_CONFIG.lock().unwrap_or_else(|e| e.into_inner()));
    if accepted.is_empty() {
        return ctx.clone();
    }
    ctx.with_settings(&accepted, "flake nixConfig")
}

/// For `rix build`: each flake installable's derivations and wanted outputs.
pub fn build_installables(
    ctx: &Context,
    ev: &mut Evaluator,
    installables: &[&str],
    lock: &FlakeLockArgs,
    auto_args: &rix_eval::value::Attrs,
) -> Result<Vec<(rix_formats::StorePath, String)>, FlakeError> {
    installables_for(ctx, ev, installables, lock, auto_args, Purpose::Build)
}

/// [`build_installables`] with the attribute paths searched for `purpose`
/// (`rix develop` tries `devShells` first).
pub fn installables_for(
    ctx: &Context,
    ev: &mut Evaluator,
    installables: &[&str],
    lock: &FlakeLockArgs,
    auto_args: &rix_eval::value::Attrs,
    purpose: Purpose,
) -> Result<Vec<(rix_formats::StorePath, String)>, FlakeError> {
    let settings = lock.settings(ctx)?;
    let flags = lock.lock_flags()?;
    let mut out = Vec::new();
    for i in installables {
        let inst = reference::parse_installable(i, &cwd())?;
        let (v, path) = eval_installable(ev, &settings, &flags, &inst, purpose)?;
        let drvs = ev.get_derivations(&v, auto_args)?;
        if drvs.is_empty() {
            return Err(FlakeError::msg(format!(
                "flake output attribute '{path}' is not a derivation or path"
            )));
        }
        for d in drvs {
            let drv_path = ev.drv_path_of(&d)?;
            let sp = ev
                .store()
                .store_dir()
                .parse(&drv_path)
                .map_err(|e| FlakeError::msg(format!("'{drv_path}': {e}")))?;
            match &inst.outputs {
                OutputsSpec::Names(names) => {
                    for n in names {
                        out.push((sp.clone(), n.clone()));
                    }
                }
                OutputsSpec::All => {
                    let outs = get_attr(ev, &Value::attrs((*d.attrs).clone()), "outputs")?;
                    let list = match outs {
                        Some(l) => ev.force_list(&l, Pos::NONE)?,
                        None => Rc::new(vec![Value::string("out")]),
                    };
                    for o in list.iter() {
                        let n = ev.force_string_no_ctx(o, Pos::NONE)?;
                        out.push((sp.clone(), n));
                    }
                }
                OutputsSpec::Default => out.push((sp.clone(), ev.output_name_of(&d)?)),
            }
        }
    }
    Ok(out)
}

/// `rix eval FLAKEREF#ATTR`: the value at the installable.
pub fn eval_flake_value(
    ctx: &Context,
    ev: &mut Evaluator,
    installable: &str,
    lock: &FlakeLockArgs,
) -> Result<Value, FlakeError> {
    let settings = lock.settings(ctx)?;
    let flags = lock.lock_flags()?;
    let inst = reference::parse_installable(installable, &cwd())?;
    Ok(eval_installable(ev, &settings, &flags, &inst, Purpose::Build)?.0)
}

/// What `rix run` runs for a flake installable (Nix's `UnresolvedApp`):
/// what must be realised first, as `rix build` arguments (`DRV^OUT`,
/// `DRV^*`, store paths), and the program.
pub struct App {
    pub context: Vec<String>,
    pub program: String,
}

/// The `rix run` app of a flake installable, its derivations written to the
/// selected store (evaluated on a big stack).
pub fn app_of(
    ctx: &Context,
    installable: &str,
    lock: &FlakeLockArgs,
    eval_args: &EvalArgs,
) -> Result<App> {
    let show_trace = eval_args.show_trace();
    crate::cmd::instantiate::on_big_stack(|| {
        let (_, store) = crate::cmd::instantiate::open_eval_store(ctx)?;
        let mut ev = Evaluator::new(eval_options(ctx, eval_args, store));
        let r = (|| -> Result<App, FlakeError> {
            let settings = lock.settings(ctx)?;
            let flags = lock.lock_flags()?;
            let inst = reference::parse_installable(installable, &cwd())?;
            let (v, path) = eval_installable(&mut ev, &settings, &flags, &inst, Purpose::Run)?;
            let app = to_app(&mut ev, &v, &path)?;
            crate::cmd::instantiate::flush(&ev)?;
            Ok(app)
        })();
        r.map_err(|e| flake_err(e, show_trace))
    })
}

/// An attribute of the value at `path` as Nix's evaluation cache reads it
/// (`AttrCursor::getAttr`): missing is an error naming the whole path.
fn cursor_attr(ev: &mut Evaluator, v: &Value, path: &str, name: &str) -> Result<Value, FlakeError> {
    get_attr(ev, v, name)?
        .ok_or_else(|| FlakeError::msg(format!("attribute '{path}.{name}' does not exist")))
}

/// A string attribute (`AttrCursor::getString`), its context kept.
fn cursor_string(
    ev: &mut Evaluator,
    v: &Value,
    path: &str,
    name: &str,
) -> Result<rix_eval::value::NixString, FlakeError> {
    let a = cursor_attr(ev, v, path, name)?;
    match ev.force(&a)? {
        Value::String(s) => Ok(s),
        _ => Err(FlakeError::msg(format!("'{path}.{name}' is not a string"))),
    }
}

/// `InstallableValue::toApp`: an `apps` (or `defaultApp`) attribute must be
/// `{ type = "app"; program = ...; }`, whose program's string context is
/// what to realise; anything else a derivation, whose program is
/// `OUT/bin/<meta.mainProgram, pname, or the name without its version>`.
fn to_app(ev: &mut Evaluator, v: &Value, path: &str) -> Result<App, FlakeError> {
    let ty = cursor_string(ev, v, path, "type")?;
    let first = parse_attr_path(path).into_iter().next().unwrap_or_default();
    let expected = if first == "apps" || first == "defaultApp" {
        "app"
    } else {
        "derivation"
    };
    if ty.as_str() != expected {
        return Err(FlakeError::msg(format!(
            "attribute '{path}' should have type '{expected}'"
        )));
    }
    if expected == "app" {
        let program = cursor_string(ev, v, path, "program")?;
        let context = program
            .context()
            .iter()
            .map(|c| {
                if let Some(drv) = c.strip_prefix('=') {
                    format!("{drv}^*")
                } else if let Some((out, drv)) = c.strip_prefix('!').and_then(|r| r.split_once('!'))
                {
                    format!("{drv}^{out}")
                } else {
                    c.to_string()
                }
            })
            .collect();
        return Ok(App {
            context,
            program: program.as_str().to_owned(),
        });
    }
    let drv = ev.get_derivations(v, &rix_eval::value::Attrs::default())?;
    let d = drv
        .first()
        .ok_or_else(|| FlakeError::msg(format!("'{path}' is not a derivation")))?;
    let drv_path = ev.drv_path_of(d)?;
    let out_path = cursor_string(ev, v, path, "outPath")?;
    let output = cursor_string(ev, v, path, "outputName")?;
    let name = cursor_string(ev, v, path, "name")?;
    let main = match get_attr(ev, v, "meta")? {
        Some(meta) if get_attr(ev, &meta, "mainProgram")?.is_some() => {
            cursor_string(ev, &meta, &format!("{path}.meta"), "mainProgram")?
                .as_str()
                .to_owned()
        }
        _ => match get_attr(ev, v, "pname")? {
            Some(_) => cursor_string(ev, v, path, "pname")?.as_str().to_owned(),
            None => crate::cmd::run::package_name(name.as_str()).to_owned(),
        },
    };
    Ok(App {
        context: vec![format!("{drv_path}^{}", output.as_str())],
        program: format!("{}/bin/{main}", out_path.as_str()),
    })
}

// ----- rix flake -----

#[derive(Subcommand, Debug, Clone)]
pub enum FlakeCommand {
    /// Create missing lock file entries (like `nix flake lock`).
    Lock(FlakeRefArgs),
    /// Update the lock file: all inputs, or those named (like `nix flake update`).
    Update(UpdateArgs),
    /// Show the flake's metadata: URLs, path, inputs (like `nix flake metadata`).
    Metadata(MetadataArgs),
    /// Show the outputs a flake provides (like `nix flake show`).
    Show(ShowArgs),
    /// Check the flake's outputs and build its checks (like `nix flake check`).
    Check(crate::cmd::flake_check::CheckArgs),
    /// Create a flake in the current directory from a template (like `nix flake init`).
    Init(crate::cmd::flake_init::InitArgs),
    /// Create a flake in a new directory from a template (like `nix flake new`).
    New(crate::cmd::flake_init::NewArgs),
    /// Fetch a flake's source into the store (like `nix flake prefetch`).
    Prefetch(MetadataArgs),
    /// Copy a flake and its inputs to a store (like `nix flake archive`).
    Archive(ArchiveArgs),
}

#[derive(Args, Debug, Clone)]
pub struct FlakeRefArgs {
    /// The flake (default: the current directory).
    #[arg(value_name = "FLAKE_URL", default_value = ".")]
    pub flake: String,
    #[command(flatten)]
    pub lock: FlakeLockArgs,
    #[command(flatten)]
    pub eval_args: EvalArgs,
}

#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// The inputs to update (default: all).
    #[arg(value_name = "INPUTS")]
    pub inputs: Vec<String>,
    /// The flake to operate on (default: the current directory).
    #[arg(long = "flake", value_name = "FLAKE_URL", default_value = ".")]
    pub flake: String,
    #[command(flatten)]
    pub lock: FlakeLockArgs,
    #[command(flatten)]
    pub eval_args: EvalArgs,
}

#[derive(Args, Debug, Clone)]
pub struct MetadataArgs {
    #[command(flatten)]
    pub base: FlakeRefArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    #[command(flatten)]
    pub base: FlakeRefArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show the contents of `legacyPackages`.
    #[arg(long)]
    pub legacy: bool,
    /// Show the outputs of every system.
    #[arg(long)]
    pub all_systems: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub base: FlakeRefArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only print what would be copied.
    #[arg(long)]
    pub dry_run: bool,
    /// Copy the sources to this store or binary cache (as `rix copy --to`).
    #[arg(long, value_name = "STORE_URI")]
    pub to: Option<String>,
}

/// An evaluator for the `rix flake` commands: on the store (fetches write
/// to it).
fn evaluator(ctx: &Context, eval_args: &EvalArgs) -> Result<Evaluator> {
    let store = crate::cmd::instantiate::dry_run_store(ctx)?;
    Ok(Evaluator::new(eval_options(ctx, eval_args, store)))
}

fn lock(
    ctx: &Context,
    ev: &mut Evaluator,
    args: &FlakeRefArgs,
    adjust: impl FnOnce(&mut LockFlags),
) -> Result<(FlakeSettings, LockedFlake)> {
    let show_trace = args.eval_args.show_trace();
    let r = (|| -> Result<_, FlakeError> {
        let settings = args.lock.settings(ctx)?;
        let mut flags = args.lock.lock_flags()?;
        adjust(&mut flags);
        let top = parse_ref(&args.flake)?;
        let locked = rix_flake::lock_flake(ev, &settings, &top, &flags)?;
        apply_config(&settings);
        Ok((settings, locked))
    })();
    r.map_err(|e| flake_err(e, show_trace))
}

impl FlakeCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        crate::cmd::instantiate::on_big_stack(|| self.run_inner(ctx))
    }

    fn run_inner(&self, ctx: &Context) -> Result<()> {
        match self {
            FlakeCommand::Lock(a) => {
                let mut ev = evaluator(ctx, &a.eval_args)?;
                lock(ctx, &mut ev, a, |f| {
                    f.write_lock_file = true;
                    f.fail_on_unlocked = true;
                    f.apply_nix_config = true;
                })?;
                Ok(())
            }
            FlakeCommand::Update(a) => {
                let mut ev = evaluator(ctx, &a.eval_args)?;
                let mut updates = BTreeSet::new();
                for i in &a.inputs {
                    let p = rix_flake::flake::parse_input_path(i).map_err(|e| {
                        reference::warn(&format!(
                            "Invalid flake input '{i}'. To update a specific flake, use 'nix flake update --flake {i}' instead."
                        ));
                        flake_err(e, false)
                    })?;
                    updates.insert(p);
                }
                let base = FlakeRefArgs {
                    flake: a.flake.clone(),
                    lock: a.lock.clone(),
                    eval_args: a.eval_args.clone(),
                };
                lock(ctx, &mut ev, &base, |f| {
                    f.recreate_lock_file = updates.is_empty();
                    f.input_updates.extend(updates);
                    f.write_lock_file = true;
                    f.apply_nix_config = true;
                })?;
                Ok(())
            }
            FlakeCommand::Metadata(a) => metadata(ctx, a),
            FlakeCommand::Show(a) => show(ctx, a),
            FlakeCommand::Check(a) => crate::cmd::flake_check::run(ctx, a),
            FlakeCommand::Init(a) => crate::cmd::flake_init::init(ctx, a),
            FlakeCommand::New(a) => crate::cmd::flake_init::new(ctx, a),
            FlakeCommand::Prefetch(a) => prefetch(ctx, a),
            FlakeCommand::Archive(a) => archive(ctx, a),
        }
    }
}

/// `%Y-%m-%d %H:%M:%S` in local time (`TZ`), as Nix's `std::put_time(
/// std::localtime(..), "%F %T")`.
#[allow(unsafe_code)]
fn date_time(t: u64) -> String {
    use nix::libc;
    let t = t as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `localtime_r` reads `t` and writes `tm`, both live for the
    // call, and is thread-safe (glibc reads `TZ` on its first call).
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return utc_date_time(t as u64);
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `%Y-%m-%d %H:%M:%S` in UTC.
fn utc_date_time(t: u64) -> String {
    let d = rix_eval::builtins::utc_timestamp(t as i64);
    format!(
        "{}-{}-{} {}:{}:{}",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[8..10],
        &d[10..12],
        &d[12..14]
    )
}

fn ref_json(r: &FlakeRef) -> serde_json::Value {
    rix_flake::lock_file::attrs_json(&r.to_attrs())
}

fn metadata(ctx: &Context, a: &MetadataArgs) -> Result<()> {
    let mut ev = evaluator(ctx, &a.base.eval_args)?;
    let (_, locked) = lock(ctx, &mut ev, &a.base, |_| {})?;
    let flake = &locked.flake;
    let store_dir = ev.store().store_dir().clone();
    let path = store_dir
        .parse_prefix(&flake.path)
        .map(|(sp, _)| store_dir.display(&sp))
        .unwrap_or_else(|_| flake.dir());
    let input =
        rix_flake::reference::to_input(&flake.locked_ref).map_err(|e| flake_err(e, false))?;
    if a.json {
        let mut j = serde_json::Map::new();
        if let Some(d) = &flake.description {
            j.insert("description".into(), d.clone().into());
        }
        j.insert("originalUrl".into(), flake.original_ref.to_string().into());
        j.insert("original".into(), ref_json(&flake.original_ref));
        j.insert("resolvedUrl".into(), flake.resolved_ref.to_string().into());
        j.insert("resolved".into(), ref_json(&flake.resolved_ref));
        j.insert("url".into(), flake.locked_ref.to_string().into());
        j.insert("locked".into(), ref_json(&flake.locked_ref));
        if let Some(rev) = input.rev() {
            j.insert("revision".into(), rev.into());
        }
        if let Some(d) = input.get_str("dirtyRev") {
            j.insert("dirtyRevision".into(), d.into());
        }
        if let Some(n) = input.rev_count() {
            j.insert("revCount".into(), n.into());
        }
        if let Some(t) = input.last_modified() {
            j.insert("lastModified".into(), t.into());
        }
        j.insert("path".into(), path.into());
        j.insert("locks".into(), locked.lock_file.to_json().0);
        let mut sorted: Vec<(String, serde_json::Value)> = j.into_iter().collect();
        sorted.sort_by(|x, y| x.0.cmp(&y.0));
        let obj: serde_json::Map<String, serde_json::Value> = sorted.into_iter().collect();
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    let bold = |s: &str| format!("\x1b[1m{s}\x1b[0m");
    let mut out = String::new();
    out += &format!("{}  {}\n", bold("Resolved URL:"), flake.resolved_ref);
    if input.is_locked() {
        out += &format!("{}    {}\n", bold("Locked URL:"), flake.locked_ref);
    }
    if let Some(d) = &flake.description {
        out += &format!("{}   {d}\n", bold("Description:"));
    }
    out += &format!("{}          {path}\n", bold("Path:"));
    if let Some(rev) = input.rev() {
        out += &format!("{}      {rev}\n", bold("Revision:"));
    }
    if let Some(d) = input.get_str("dirtyRev") {
        out += &format!("{}      {d}\n", bold("Revision:"));
    }
    if let Some(n) = input.rev_count() {
        out += &format!("{}     {n}\n", bold("Revisions:"));
    }
    if let Some(t) = input.last_modified() {
        out += &format!("{} {}\n", bold("Last modified:"), date_time(t));
    }
    let lf = &locked.lock_file;
    if !lf.nodes[ROOT].inputs.is_empty() {
        out += &format!("{}\n", bold("Inputs:"));
    }
    let mut visited = BTreeSet::new();
    visited.insert(ROOT);
    tree(lf, ROOT, "", &mut visited, &mut out);
    print_filtered(&out);
    Ok(())
}

const TREE_CONN: &str = "├───";
const TREE_LAST: &str = "└───";
const TREE_LINE: &str = "│   ";
const TREE_NULL: &str = "    ";

fn tree(lf: &LockFile, node: usize, prefix: &str, visited: &mut BTreeSet<usize>, out: &mut String) {
    let n = lf.nodes[node].inputs.len();
    for (i, (name, edge)) in lf.nodes[node].inputs.iter().enumerate() {
        let last = i + 1 == n;
        let branch = if last { TREE_LAST } else { TREE_CONN };
        match edge {
            Edge::Node(c) => {
                let l = lf.nodes[*c].locked.as_ref().expect("locked");
                let lm = match l.locked.attrs.get("lastModified") {
                    Some(rix_formats::flake_ref::AttrValue::Int(t)) => {
                        // Nix prints inputs' dates in UTC (`gmtime`).
                        format!(" ({})", utc_date_time(*t))
                    }
                    _ => String::new(),
                };
                *out += &format!("{prefix}{branch}\x1b[1m{name}\x1b[0m: {}{lm}\n", l.locked);
                if visited.insert(*c) {
                    let p = format!("{prefix}{}", if last { TREE_NULL } else { TREE_LINE });
                    tree(lf, *c, &p, visited, out);
                }
            }
            Edge::Follows(f) => {
                *out += &format!(
                    "{prefix}{branch}\x1b[1m{name}\x1b[0m follows input '{}'\n",
                    f.join("/")
                );
            }
        }
    }
}

/// Standard output as Nix 2.26's `logger->cout` writes it: the text as it
/// is, colour escapes included (Nix does not filter standard output).
fn print_filtered(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

pub(crate) fn is_derivation(ev: &mut Evaluator, v: &Value) -> rix_eval::Result<bool> {
    match get_attr(ev, v, "type")? {
        Some(t) => Ok(matches!(ev.force(&t)?, Value::String(s) if s.as_str() == "derivation")),
        None => Ok(false),
    }
}

fn attr_names(ev: &mut Evaluator, v: &Value) -> rix_eval::Result<Vec<String>> {
    match ev.force(v)? {
        Value::Attrs(a) => Ok(a.iter().map(|x| x.name.as_str().to_owned()).collect()),
        _ => Err(rix_eval::EvalError::new(
            rix_eval::ErrorKind::Type,
            "expected a set",
            Pos::NONE,
        )),
    }
}

fn get_string(ev: &mut Evaluator, v: &Value, name: &str) -> rix_eval::Result<Option<String>> {
    match get_attr(ev, v, name)? {
        Some(x) => Ok(Some(ev.force_string_no_ctx(&x, Pos::NONE)?)),
        None => Ok(None),
    }
}

struct Shower<'a> {
    ev: &'a mut Evaluator,
    json: bool,
    legacy: bool,
    all_systems: bool,
    system: String,
    out: String,
}

impl Shower<'_> {
    fn has_content(&mut self, v: &Value, path: &[String], attr: &str) -> bool {
        let mut p = path.to_vec();
        p.push(attr.to_owned());
        let r = (|| -> rix_eval::Result<bool> {
            let Some(v2) = get_attr(self.ev, v, attr)? else {
                return Ok(false);
            };
            let p0 = p[0].as_str();
            let container = (matches!(
                p0,
                "apps" | "checks" | "devShells" | "legacyPackages" | "packages"
            ) && (p.len() == 1 || p.len() == 2))
                || (p.len() == 1
                    && matches!(
                        p0,
                        "formatter" | "nixosConfigurations" | "nixosModules" | "overlays"
                    ));
            if container {
                for sub in attr_names(self.ev, &v2)? {
                    if self.has_content(&v2, &p, &sub) {
                        return Ok(true);
                    }
                }
                return Ok(false);
            }
            Ok(true)
        })();
        r.unwrap_or(true)
    }

    fn visit(
        &mut self,
        v: &Value,
        path: &[String],
        header: &str,
        next: &str,
    ) -> rix_eval::Result<serde_json::Value> {
        let mut j = serde_json::Map::new();
        let ps: Vec<&str> = path.iter().map(String::as_str).collect();
        let r = (|| -> rix_eval::Result<()> {
            let recurse_kinds = ps.is_empty()
                || (ps.len() == 1
                    && matches!(
                        ps[0],
                        "defaultPackage"
                            | "devShell"
                            | "formatter"
                            | "nixosConfigurations"
                            | "nixosModules"
                            | "defaultApp"
                            | "templates"
                            | "overlays"
                    ))
                || ((ps.len() == 1 || ps.len() == 2)
                    && matches!(ps[0], "checks" | "packages" | "devShells" | "apps"));
            if recurse_kinds {
                return self.recurse(v, path, header, next, &mut j);
            }
            if (ps.len() == 2 && matches!(ps[0], "defaultPackage" | "devShell" | "formatter"))
                || (ps.len() == 3 && matches!(ps[0], "checks" | "packages" | "devShells"))
            {
                if !self.all_systems && ps[1] != self.system {
                    self.omitted(header, &ps, "--all-systems");
                } else if is_derivation(self.ev, v)? {
                    self.show_derivation(v, &ps, header, &mut j)?;
                } else {
                    return Err(rix_eval::EvalError::new(
                        rix_eval::ErrorKind::Other,
                        "expected a derivation",
                        Pos::NONE,
                    ));
                }
                return Ok(());
            }
            if !ps.is_empty() && ps[0] == "hydraJobs" {
                if is_derivation(self.ev, v)? {
                    self.show_derivation(v, &ps, header, &mut j)?;
                } else {
                    self.recurse(v, path, header, next, &mut j)?;
                }
                return Ok(());
            }
            if !ps.is_empty() && ps[0] == "legacyPackages" {
                if ps.len() == 1 {
                    self.recurse(v, path, header, next, &mut j)?;
                } else if !self.legacy {
                    self.omitted(header, &ps, "--legacy");
                } else if !self.all_systems && ps[1] != self.system {
                    self.omitted(header, &ps, "--all-systems");
                } else if is_derivation(self.ev, v)? {
                    self.show_derivation(v, &ps, header, &mut j)?;
                } else if ps.len() <= 2 {
                    self.recurse(v, path, header, next, &mut j)?;
                }
                return Ok(());
            }
            if (ps.len() == 2 && ps[0] == "defaultApp") || (ps.len() == 3 && ps[0] == "apps") {
                let ty = get_string(self.ev, v, "type")?;
                let description = match get_attr(self.ev, v, "meta")? {
                    Some(m) => get_string(self.ev, &m, "description")?,
                    None => None,
                };
                if ty.as_deref() != Some("app") {
                    return Err(rix_eval::EvalError::new(
                        rix_eval::ErrorKind::Other,
                        "not an app definition",
                        Pos::NONE,
                    ));
                }
                if self.json {
                    j.insert("type".into(), "app".into());
                    if let Some(d) = description {
                        j.insert("description".into(), d.into());
                    }
                } else {
                    self.out += &format!(
                        "{header}: app: \x1b[1m{}\x1b[0m\n",
                        description.as_deref().unwrap_or("no description")
                    );
                }
                return Ok(());
            }
            if (ps.len() == 1 && ps[0] == "defaultTemplate")
                || (ps.len() == 2 && ps[0] == "templates")
            {
                let d = get_string(self.ev, v, "description")?.unwrap_or_default();
                if self.json {
                    j.insert("type".into(), "template".into());
                    j.insert("description".into(), d.into());
                } else {
                    self.out += &format!("{header}: template: \x1b[1m{d}\x1b[0m\n");
                }
                return Ok(());
            }
            let (ty, desc) = if (ps.len() == 1 && ps[0] == "overlay")
                || (ps.len() == 2 && ps[0] == "overlays")
            {
                ("nixpkgs-overlay", "Nixpkgs overlay")
            } else if ps.len() == 2 && ps[0] == "nixosConfigurations" {
                ("nixos-configuration", "NixOS configuration")
            } else if (ps.len() == 1 && ps[0] == "nixosModule")
                || (ps.len() == 2 && ps[0] == "nixosModules")
            {
                ("nixos-module", "NixOS module")
            } else {
                ("unknown", "unknown")
            };
            if self.json {
                j.insert("type".into(), ty.into());
            } else {
                self.out += &format!("{header}: \x1b[35;1m{desc}\x1b[0m\n");
            }
            Ok(())
        })();
        match r {
            Err(e) if ps.first() != Some(&"legacyPackages") => Err(e),
            _ => Ok(serde_json::Value::Object(j)),
        }
    }

    fn omitted(&mut self, header: &str, ps: &[&str], flag: &str) {
        if self.json {
            reference::warn(&format!("{} omitted (use '{flag}' to show)", ps.join(".")));
        } else {
            self.out += &format!("{header} \x1b[35;1momitted\x1b[0m (use '{flag}' to show)\n");
        }
    }

    fn show_derivation(
        &mut self,
        v: &Value,
        ps: &[&str],
        header: &str,
        j: &mut serde_json::Map<String, serde_json::Value>,
    ) -> rix_eval::Result<()> {
        let name = get_string(self.ev, v, "name")?.unwrap_or_default();
        if self.json {
            let description = match get_attr(self.ev, v, "meta")? {
                Some(m) => get_string(self.ev, &m, "description")?,
                None => None,
            };
            j.insert("type".into(), "derivation".into());
            j.insert("name".into(), name.into());
            j.insert("description".into(), description.unwrap_or_default().into());
        } else {
            let kind = if (ps.len() == 2 && ps[0] == "devShell")
                || (ps.len() >= 2 && ps[0] == "devShells")
            {
                "development environment"
            } else if (ps.len() == 3 && ps[0] == "checks")
                || (!ps.is_empty() && ps[0] == "hydraJobs")
            {
                "derivation"
            } else {
                "package"
            };
            self.out += &format!("{header}: {kind} '{name}'\n");
        }
        Ok(())
    }

    fn recurse(
        &mut self,
        v: &Value,
        path: &[String],
        header: &str,
        next: &str,
        j: &mut serde_json::Map<String, serde_json::Value>,
    ) -> rix_eval::Result<()> {
        if !self.json {
            self.out += &format!("{header}\n");
        }
        let mut attrs = Vec::new();
        for a in attr_names(self.ev, v)? {
            if self.has_content(v, path, &a) {
                attrs.push(a);
            }
        }
        let n = attrs.len();
        for (i, a) in attrs.iter().enumerate() {
            let last = i + 1 == n;
            let v2 = get_attr(self.ev, v, a)?.expect("listed");
            let mut p2 = path.to_vec();
            p2.push(a.clone());
            let h = format!(
                "\x1b[32;1m{next}{}\x1b[0m\x1b[1m{a}\x1b[0m",
                if last { TREE_LAST } else { TREE_CONN }
            );
            let nx = format!("{next}{}", if last { TREE_NULL } else { TREE_LINE });
            let j2 = self.visit(&v2, &p2, &h, &nx)?;
            if self.json {
                j.insert(a.clone(), j2);
            }
        }
        Ok(())
    }
}

fn show(ctx: &Context, a: &ShowArgs) -> Result<()> {
    let show_trace = a.base.eval_args.show_trace();
    let mut ev = evaluator(ctx, &a.base.eval_args)?;
    let (_, locked) = lock(ctx, &mut ev, &a.base, |_| {})?;
    let root = rix_flake::call_flake(&mut ev, &locked).map_err(|e| flake_err(e, show_trace))?;
    let system = ev.options().system.clone();
    let header = format!("\x1b[1m{}\x1b[0m", locked.flake.locked_ref);
    let mut s = Shower {
        ev: &mut ev,
        json: a.json,
        legacy: a.legacy,
        all_systems: a.all_systems,
        system,
        out: String::new(),
    };
    let outputs = get_attr(s.ev, &root, "outputs").map_err(|e| eval_error(e, show_trace))?;
    let r = s.visit(&outputs.unwrap_or(root), &[], &header, "");
    let out = std::mem::take(&mut s.out);
    print_filtered(&out);
    let j = r.map_err(|e| eval_error(e, show_trace))?;
    if a.json {
        println!("{}", sorted(j));
    }
    Ok(())
}

/// A JSON value with every object's keys sorted, as nlohmann's `json`
/// (a `std::map`) prints them.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut items: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(items.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        v => v,
    }
}

/// Locks the flake for `rix flake check`, its `nixConfig` applied.
pub(crate) fn lock_for_check(
    ctx: &Context,
    ev: &mut Evaluator,
    args: &FlakeRefArgs,
) -> Result<(FlakeSettings, LockedFlake)> {
    lock(ctx, ev, args, |f| f.apply_nix_config = true)
}

/// `rix flake prefetch`: the source tree in the store, its path and hash.
fn prefetch(ctx: &Context, a: &MetadataArgs) -> Result<()> {
    let show_trace = a.base.eval_args.show_trace();
    let mut ev = evaluator(ctx, &a.base.eval_args)?;
    let r = (|| -> Result<(String, FlakeRef), FlakeError> {
        let settings = a.base.lock.settings(ctx)?;
        let r = parse_ref(&a.base.flake)?;
        let r = if reference::is_indirect(&r) {
            registry::resolve(&settings, &r)?
        } else {
            r
        };
        let input = reference::to_input(&r)?;
        let (path, locked) =
            rix_eval::builtins::with_fetcher(&ev, Pos::NONE, |f| f.fetch_to_store(&input))?;
        Ok((
            ev.store().store_dir().display(&path),
            reference::from_input(locked, &r.dir),
        ))
    })();
    let (path, locked) = r.map_err(|e| flake_err(e, show_trace))?;
    let _ = &mut ev;
    let nar_hash = match locked.attrs.get("narHash") {
        Some(rix_formats::flake_ref::AttrValue::Str(h)) => h.clone(),
        _ => String::new(),
    };
    if a.json {
        let mut j = serde_json::Map::new();
        j.insert("hash".into(), nar_hash.into());
        j.insert("locked".into(), ref_json(&locked));
        j.insert(
            "original".into(),
            ref_json(&parse_ref(&a.base.flake).map_err(|e| flake_err(e, false))?),
        );
        j.insert("storePath".into(), path.into());
        println!("{}", sorted(serde_json::Value::Object(j)));
    } else {
        rix_eval::error::log_stderr(&format!(
            "Downloaded '{}' to '{path}' (hash '{nar_hash}').",
            locked
        ));
    }
    Ok(())
}

/// `rix flake archive`: the flake's source and its inputs' sources are in
/// the store (fetched while locking); with `--json`, their paths.
fn archive(ctx: &Context, a: &ArchiveArgs) -> Result<()> {
    let show_trace = a.base.eval_args.show_trace();
    let mut ev = evaluator(ctx, &a.base.eval_args)?;
    let (_, locked) = lock(ctx, &mut ev, &a.base, |_| {})?;
    let store_dir = ev.store().store_dir().clone();
    let r = (|| -> Result<(serde_json::Value, Vec<String>), FlakeError> {
        let root_path = store_dir
            .parse_prefix(&locked.flake.path)
            .map(|(sp, _)| store_dir.display(&sp))
            .unwrap_or_default();
        let mut sources = vec![root_path.clone()];
        let mut j = serde_json::Map::new();
        j.insert(
            "inputs".into(),
            archive_inputs(&mut ev, &locked.lock_file, ROOT, &mut sources)?,
        );
        j.insert("path".into(), root_path.into());
        Ok((serde_json::Value::Object(j), sources))
    })();
    let (j, sources) = r.map_err(|e| flake_err(e, show_trace))?;
    if a.json {
        println!("{}", sorted(j));
    }
    if let (Some(to), false) = (&a.to, a.dry_run) {
        let args = crate::cmd::copy::CopyArgs {
            to: Some(to.clone()),
            from: None,
            no_check_sigs: false,
            secret_key_files: Vec::new(),
            paths: sources.into_iter().filter(|p| !p.is_empty()).collect(),
        };
        crate::cmd::copy::run(ctx, &args)?;
    }
    Ok(())
}

fn archive_inputs(
    ev: &mut Evaluator,
    lf: &LockFile,
    node: usize,
    sources: &mut Vec<String>,
) -> Result<serde_json::Value, FlakeError> {
    let mut j = serde_json::Map::new();
    for (name, edge) in &lf.nodes[node].inputs {
        let Edge::Node(c) = edge else { continue };
        let l = lf.nodes[*c].locked.as_ref().expect("locked");
        if reference::relative_path(&l.locked).is_some() {
            continue;
        }
        let input = reference::to_input(&l.locked)?;
        let (path, _) =
            rix_eval::builtins::with_fetcher(ev, Pos::NONE, |f| f.fetch_to_store(&input))?;
        let mut e = serde_json::Map::new();
        e.insert("inputs".into(), archive_inputs(ev, lf, *c, sources)?);
        let printed = ev.store().store_dir().display(&path);
        sources.push(printed.clone());
        e.insert("path".into(), printed.into());
        j.insert(name.clone(), serde_json::Value::Object(e));
    }
    Ok(serde_json::Value::Object(j))
}

// ----- rix registry -----

#[derive(Subcommand, Debug, Clone)]
pub enum RegistryCommand {
    /// List the flake registries' entries (like `nix registry list`).
    List {
        /// Also list the global registry.
        #[arg(long)]
        no_global: bool,
    },
    /// Add (or replace) an entry in the user registry (like `nix registry add`).
    Add {
        from: String,
        to: String,
        /// The registry file to change (default: the user registry).
        #[arg(long, value_name = "PATH")]
        registry: Option<String>,
    },
    /// Remove an entry from the user registry (like `nix registry remove`).
    Remove {
        url: String,
        #[arg(long, value_name = "PATH")]
        registry: Option<String>,
    },
    /// Pin an entry of the user registry to its locked reference (like `nix registry pin`).
    Pin {
        url: String,
        locked: Option<String>,
        #[arg(long, value_name = "PATH")]
        registry: Option<String>,
    },
}

impl RegistryCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        let settings = FlakeLockArgs::default()
            .settings(ctx)
            .map_err(|e| flake_err(e, false))?;
        let path_of = |r: &Option<String>| {
            r.as_ref()
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| settings.user_registry.clone())
        };
        let fe = |e: FlakeError| flake_err(e, false);
        match self {
            RegistryCommand::List { no_global } => {
                for reg in registry::registries(&settings) {
                    if *no_global && reg.ty == RegistryType::Global {
                        continue;
                    }
                    let ty = match reg.ty {
                        RegistryType::Flag => "flags ",
                        RegistryType::User => "user  ",
                        RegistryType::System => "system",
                        _ => "global",
                    };
                    for e in &reg.entries {
                        let mut to = e.to.clone();
                        if let Some(rix_formats::flake_ref::AttrValue::Str(d)) =
                            e.extra_attrs.get("dir")
                        {
                            to.dir = d.clone();
                        }
                        println!("{ty} {} {}", e.from, to);
                    }
                }
                Ok(())
            }
            RegistryCommand::Add {
                from,
                to,
                registry: r,
            } => {
                let path = path_of(r);
                let from = parse_ref(from).map_err(fe)?;
                let to = parse_ref(to).map_err(fe)?;
                let mut reg = Registry::read(&path, RegistryType::User);
                reg.remove(&from);
                let mut extra = rix_formats::flake_ref::Attrs::new();
                if !to.dir.is_empty() {
                    extra.insert(
                        "dir".into(),
                        rix_formats::flake_ref::AttrValue::Str(to.dir.clone()),
                    );
                }
                reg.add(
                    from,
                    FlakeRef {
                        dir: String::new(),
                        ..to
                    },
                    extra,
                );
                reg.write(&path).map_err(fe)
            }
            RegistryCommand::Remove { url, registry: r } => {
                let path = path_of(r);
                let from = parse_ref(url).map_err(fe)?;
                let mut reg = Registry::read(&path, RegistryType::User);
                reg.remove(&from);
                reg.write(&path).map_err(fe)
            }
            RegistryCommand::Pin {
                url,
                locked,
                registry: r,
            } => {
                let path = path_of(r);
                let from = parse_ref(url).map_err(fe)?;
                let target = match locked {
                    Some(l) => parse_ref(l).map_err(fe)?,
                    None => registry::resolve(&settings, &from).map_err(fe)?,
                };
                let store = crate::cmd::instantiate::dry_run_store(ctx)?;
                let ev = Evaluator::new(eval_options(ctx, &EvalArgs::default(), store));
                let input = reference::to_input(&target).map_err(fe)?;
                let (_, resolved) =
                    rix_eval::builtins::with_fetcher(&ev, Pos::NONE, |f| f.fetch_to_store(&input))
                        .map_err(|e| eval_error(e, false))?;
                let mut resolved = resolved;
                resolved.attrs.remove("__final");
                let mut reg = Registry::read(&path, RegistryType::User);
                reg.remove(&from);
                let mut extra = rix_formats::flake_ref::Attrs::new();
                if !target.dir.is_empty() {
                    extra.insert(
                        "dir".into(),
                        rix_formats::flake_ref::AttrValue::Str(target.dir.clone()),
                    );
                }
                reg.add(from, reference::from_input(resolved, ""), extra);
                reg.write(&path).map_err(fe)
            }
        }
    }
}
