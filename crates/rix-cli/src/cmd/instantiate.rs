//! `rix instantiate`: a drop-in `nix-instantiate` (evaluate, print, write
//! `.drv` files), and what `rix eval`, `rix repl` and `rix build FILE.nix`
//! share: evaluation flags, the store evaluation writes to, error display.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_eval::lower::{LintLevel, Lints};
use rix_eval::store::{DryRunStore, EvalStore, LocalEvalStore};
use rix_eval::{AutoArg, EvalError, EvalOptions, Evaluator, SearchPathEntry, Value};
use rix_store::local_store::LocalStore;
use rix_store::store_api::Store;

use crate::context::Context;

/// Flags of every evaluating command (as `nix-instantiate` has them).
#[derive(Args, Debug, Clone, Default)]
pub struct EvalArgs {
    /// Add a search path entry for `<...>` lookups: `PATH` or `PREFIX=PATH`
    /// (before those of NIX_PATH).
    #[arg(short = 'I', long = "include", value_name = "PATH")]
    pub include: Vec<String>,
    /// Pass `NAME = EXPR` to the top-level function (auto-calling).
    #[arg(long, num_args = 2, value_names = ["NAME", "EXPR"], action = clap::ArgAction::Append)]
    pub arg: Vec<String>,
    /// Pass `NAME = "STRING"` to the top-level function.
    #[arg(long, num_args = 2, value_names = ["NAME", "STRING"], action = clap::ArgAction::Append)]
    pub argstr: Vec<String>,
    /// Show the chain of calls and evaluations that led to an error.
    #[arg(long)]
    pub show_trace: bool,
    /// Do not show the trace (the default).
    #[arg(long, hide = true)]
    pub no_show_trace: bool,
    /// Enable experimental language features (`ca-derivations`, ...).
    #[arg(long, value_name = "FEATURES", action = clap::ArgAction::Append)]
    pub extra_experimental_features: Vec<String>,
    /// Set the experimental features (space-separated).
    #[arg(long, value_name = "FEATURES")]
    pub experimental_features: Option<String>,
    /// Refuse impure operations (environment, time, paths outside the store).
    #[arg(long)]
    pub pure_eval: bool,
    /// Allow impure operations (the default).
    #[arg(long, hide = true)]
    pub impure: bool,
    /// Bound on nested function calls.
    #[arg(long, value_name = "N", hide = true)]
    pub max_call_depth: Option<usize>,
    #[arg(long, value_name = "LEVEL", hide = true)]
    pub lint_absolute_path_literals: Option<String>,
    #[arg(long, value_name = "LEVEL", hide = true)]
    pub lint_short_path_literals: Option<String>,
    #[arg(long, value_name = "LEVEL", hide = true)]
    pub lint_url_literals: Option<String>,
}

fn lint_level(s: &Option<String>) -> LintLevel {
    match s.as_deref() {
        Some("fatal") => LintLevel::Fatal,
        Some("warn") => LintLevel::Warn,
        _ => LintLevel::Off,
    }
}

impl EvalArgs {
    /// `--arg`/`--argstr`, in that order.
    pub fn auto_args(&self) -> Vec<AutoArg> {
        let mut out: Vec<AutoArg> = self
            .arg
            .chunks(2)
            .map(|p| AutoArg::Expr(p[0].clone(), p[1].clone()))
            .collect();
        out.extend(
            self.argstr
                .chunks(2)
                .map(|p| AutoArg::Str(p[0].clone(), p[1].clone())),
        );
        out
    }

    /// Evaluator options: the search path from `-I` then `NIX_PATH`, features
    /// from the flags and the `experimental-features` settings.
    pub fn options(&self, ctx: &Context, store: Rc<dyn EvalStore>) -> EvalOptions {
        let mut search_path: Vec<SearchPathEntry> = self
            .include
            .iter()
            .map(|s| SearchPathEntry::parse(s))
            .collect();
        if let Ok(p) = std::env::var("NIX_PATH") {
            search_path.extend(SearchPathEntry::parse_nix_path(&p));
        }
        let mut features: Vec<String> = match &self.experimental_features {
            Some(f) => f.split_whitespace().map(str::to_owned).collect(),
            None => ctx
                .settings
                .get("experimental-features")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        };
        features.extend(
            ctx.settings
                .get("extra-experimental-features")
                .split_whitespace()
                .map(str::to_owned),
        );
        for f in &self.extra_experimental_features {
            features.extend(f.split_whitespace().map(str::to_owned));
        }
        let mut opts = EvalOptions {
            extra_primops: vec![rix_flake::get_flake_primop()],
            search_path,
            store,
            features,
            pure: self.pure_eval,
            show_trace: self.show_trace && !self.no_show_trace,
            abort_on_warn: ctx.settings.get("abort-on-warn") == "true",
            trace_verbose: ctx.settings.get("trace-verbose") == "true",
            fetch_settings: rix_fetch::FetchSettings::from_settings(&ctx.settings),
            lints: Lints {
                absolute_path_literals: lint_level(&self.lint_absolute_path_literals),
                short_path_literals: lint_level(&self.lint_short_path_literals),
                url_literals: lint_level(&self.lint_url_literals),
            },
            ..EvalOptions::default()
        };
        if let Some(d) = self.max_call_depth {
            opts.max_call_depth = d;
        }
        let system = ctx.settings.get("system");
        if !system.is_empty() {
            opts.system = system.to_string();
        }
        opts
    }

    pub fn show_trace(&self) -> bool {
        self.show_trace && !self.no_show_trace
    }
}

impl InstantiateArgs {
    fn eval_options(&self, ctx: &Context, store: Rc<dyn EvalStore>) -> EvalOptions {
        let mut opts = self.eval_args.options(ctx, store);
        if let Some(s) = &self.system {
            opts.system = s.clone();
        }
        opts
    }
}

/// Nix's common flags that evaluation has no use for: accepted, so that
/// scripts written for `nix-instantiate` run unchanged, and ignored.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct IgnoredNixArgs {
    #[arg(short = 'Q', long = "no-build-output", hide = true)]
    no_build_output: bool,
    #[arg(short = 'j', long = "max-jobs", value_name = "N", hide = true)]
    max_jobs: Option<String>,
    #[arg(long, value_name = "N", hide = true)]
    cores: Option<String>,
    #[arg(short = 'K', long = "keep-failed", hide = true)]
    keep_failed: bool,
    #[arg(short = 'k', long = "keep-going", hide = true)]
    keep_going: bool,
    #[arg(long, hide = true)]
    fallback: bool,
    #[arg(long, value_name = "SECONDS", hide = true)]
    timeout: Option<String>,
    #[arg(long, hide = true)]
    debug: bool,
    #[arg(long, hide = true)]
    restrict_eval: bool,
    #[arg(long, value_name = "FORMAT", hide = true)]
    log_format: Option<String>,
    #[arg(long, value_name = "URLS", hide = true)]
    substituters: Option<String>,
    #[arg(long, hide = true)]
    no_substitute: bool,
    #[arg(long, value_name = "URIS", hide = true)]
    allowed_uris: Option<String>,
}

/// An evaluation error as Nix 2.26 prints it (`error:`, the trace, the
/// message, position and code; every frame with `--show-trace`), printed
/// as is by `main` (see [`RenderedError`]).
// Takes the box evaluation results carry, for `map_err(|e| eval_error(e, ..))`.
#[allow(clippy::boxed_local)]
pub fn eval_error(e: Box<EvalError>, show_trace: bool) -> anyhow::Error {
    // Nix's exit status for a hash mismatch (`withExitStatus(102)`).
    let status = if e.kind == rix_eval::error::ErrorKind::HashMismatch {
        102
    } else {
        1
    };
    anyhow::Error::new(RenderedError(e.render(show_trace), status))
}

/// An error whose text is complete, `error:` included, and the exit status.
#[derive(Debug)]
pub struct RenderedError(pub String, pub u8);

impl std::fmt::Display for RenderedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Shown after `error: ` where not printed by `main` itself.
        let t = &self.0;
        match t.strip_prefix("error: ") {
            Some(rest) => f.write_str(rest),
            None => f.write_str(t.strip_prefix("error:").unwrap_or(t)),
        }
    }
}

impl std::error::Error for RenderedError {}

/// A store that writes nothing, with the selected store's directory (a
/// daemon's as its URL says). Fetchers (`fetchGit`) still write to the
/// selected store, as Nix's do; it is opened when the first fetch needs it.
pub fn dry_run_store(ctx: &Context) -> Result<Rc<dyn EvalStore>> {
    let ctx = ctx.clone();
    let dir = ctx.layout()?.store_dir;
    let open: rix_eval::store::StoreOpener = Box::new(move || {
        open_eval_store(&ctx)
            .map(|(_, store)| store)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    });
    Ok(Rc::new(DryRunStore::new(dir).with_fetch_store(open)))
}

/// The store evaluation writes to: a store on this disk (written in batches,
/// directly), or any other behind the store interface (a daemon: one request
/// per source, text file and `.drv`, as Nix's client sends them).
#[derive(Clone)]
pub enum WriteStore {
    Local(Rc<LocalStore>),
    Any(Arc<dyn Store>),
}

impl WriteStore {
    pub fn store(&self) -> &dyn Store {
        match self {
            WriteStore::Local(l) => &**l,
            WriteStore::Any(a) => &**a,
        }
    }
}

/// The selected store, opened, and the evaluator's view of it.
pub fn open_eval_store(ctx: &Context) -> Result<(WriteStore, Rc<dyn EvalStore>)> {
    if ctx.daemon_url().is_some() {
        let store = ctx.store()?;
        let eval: Rc<dyn EvalStore> = Rc::new(rix_eval::store::StoreEvalStore::new(store.clone()));
        return Ok((WriteStore::Any(store), eval));
    }
    let store = Rc::new(ctx.open_store()?);
    let eval: Rc<dyn EvalStore> = Rc::new(LocalEvalStore::new(store.clone()));
    Ok((WriteStore::Local(store), eval))
}

/// Runs `f` on a thread with a large stack: evaluation recurses deeply, and
/// the main thread's stack is small (Nix also raises its stack to 64 MiB).
pub fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("eval".into())
            .stack_size(256 << 20)
            .spawn_scoped(s, f)
            .expect("cannot start the evaluation thread")
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Where evaluation starts: a file (`-` for standard input) or an expression.
pub enum Source<'a> {
    File(&'a str),
    Expr(&'a str),
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "/".into())
}

/// Evaluates `src` to weak head normal form. Files are looked up as
/// `nix-instantiate` does: `<x>` in the search path, directories through
/// their `default.nix`.
pub fn eval_source(ev: &mut Evaluator, src: &Source<'_>) -> rix_eval::Result<Value> {
    match src {
        Source::Expr(e) => ev.eval_expr(e, &cwd()),
        Source::File("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| {
                EvalError::new(
                    rix_eval::ErrorKind::Io,
                    format!("reading standard input: {e}"),
                    rix_eval::source::Pos::NONE,
                )
            })?;
            ev.eval_stdin(&text, &cwd())
        }
        Source::File(f) => {
            if let Some(name) = f.strip_prefix('<').and_then(|f| f.strip_suffix('>')) {
                let sp = ev.options().search_path.clone();
                let path = ev.find_file(&sp, name, rix_eval::source::Pos::NONE)?;
                return ev.eval_file(&path);
            }
            ev.eval_file(f)
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct InstantiateArgs {
    /// Files to evaluate (default `./default.nix`; `-` reads standard input);
    /// with `--expr`, expressions.
    #[arg(value_name = "FILES")]
    pub files: Vec<String>,
    /// The arguments are expressions, not files.
    #[arg(short = 'E', long = "expr")]
    pub expr: bool,
    /// Select attributes (`a.b.0`) of the result; repeatable.
    #[arg(
        short = 'A',
        long = "attr",
        value_name = "ATTRPATH",
        allow_hyphen_values = true
    )]
    pub attr: Vec<String>,
    /// Evaluate and print the result instead of instantiating derivations.
    #[arg(long, alias = "eval-only")]
    pub eval: bool,
    /// Only parse, and print the parsed expression.
    #[arg(long)]
    pub parse: bool,
    /// Evaluate the result completely (with `--eval`).
    #[arg(long)]
    pub strict: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the result as XML.
    #[arg(long)]
    pub xml: bool,
    /// Leave source positions out of the XML.
    #[arg(long)]
    pub no_location: bool,
    /// Look the arguments up in the search path and print where they are.
    #[arg(long)]
    pub find_file: bool,
    /// Make a GC root (a symlink) for each `.drv` written, and print its path.
    #[arg(long, value_name = "PATH")]
    pub add_root: Option<PathBuf>,
    /// Roots are indirect (always, as in Nix 2.8).
    #[arg(long, hide = true)]
    pub indirect: bool,
    /// Compute paths without writing anything to the store.
    #[arg(long, alias = "dry-run")]
    pub readonly_mode: bool,
    /// Let `--eval` write to the store (copying sources, instantiating).
    #[arg(long)]
    pub read_write_mode: bool,
    /// Accepted for compatibility; paths are written anew when invalid anyway.
    #[arg(short = 'r', long, hide = true)]
    pub repair: bool,
    /// Accepted for compatibility.
    #[arg(short = 'v', long, action = clap::ArgAction::Count, hide = true)]
    pub verbose: u8,
    /// Accepted for compatibility.
    #[arg(long, hide = true)]
    pub quiet: bool,
    /// The platform evaluation reports (`builtins.currentSystem`), as
    /// `--option system`.
    #[arg(long, value_name = "SYSTEM")]
    pub system: Option<String>,
    #[command(flatten)]
    pub ignored: IgnoredNixArgs,
    #[command(flatten)]
    pub eval_args: EvalArgs,
}

pub fn run(ctx: &Context, args: &InstantiateArgs) -> Result<()> {
    on_big_stack(|| run_inner(ctx, args))
}

fn run_inner(ctx: &Context, args: &InstantiateArgs) -> Result<()> {
    let show_trace = args.eval_args.show_trace();
    if args.find_file {
        let ev = Evaluator::new(args.eval_options(ctx, dry_run_store(ctx)?));
        let sp = ev.options().search_path.clone();
        for f in &args.files {
            let p = ev
                .find_file(&sp, f, rix_eval::source::Pos::NONE)
                .map_err(|e| eval_error(e, show_trace))?;
            emit(format_args!("{p}\n"));
        }
        return Ok(());
    }
    let mut files: Vec<&str> = args.files.iter().map(String::as_str).collect();
    if files.is_empty() && !args.expr {
        files.push("./default.nix");
    }
    if args.parse {
        let ev = Evaluator::new(args.eval_options(ctx, dry_run_store(ctx)?));
        let cwd = cwd();
        for f in files {
            use rix_eval::source::Origin;
            let (text, origin, dir) = if args.expr {
                (f.to_owned(), Origin::String, cwd.clone())
            } else if f == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                (t, Origin::Stdin, cwd.clone())
            } else {
                let path = std::path::absolute(resolve_file(f))?;
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("opening file '{}'", path.display()))?;
                let dir = path
                    .parent()
                    .map_or_else(|| "/".to_owned(), |d| d.display().to_string());
                (
                    text,
                    Origin::Path(Rc::from(path.display().to_string())),
                    dir,
                )
            };
            let e = ev
                .parse(&text, origin, &dir)
                .map_err(|e| eval_error(e, show_trace))?;
            emit(format_args!("{}\n", rix_eval::show::show(&e)));
        }
        return Ok(());
    }
    // `--eval` is read-only unless asked otherwise, as in nix-instantiate.
    let read_only = args.readonly_mode || (args.eval && !args.read_write_mode);
    let (local, store) = if read_only {
        (None, dry_run_store(ctx)?)
    } else {
        let (l, s) = open_eval_store(ctx)?;
        (Some(l), s)
    };
    let mut ev = Evaluator::new(args.eval_options(ctx, store.clone()));
    let auto_args = ev
        .auto_args(&args.eval_args.auto_args())
        .map_err(|e| eval_error(e, show_trace))?;
    let attr_paths: Vec<&str> = if args.attr.is_empty() {
        vec![""]
    } else {
        args.attr.iter().map(String::as_str).collect()
    };
    let mut warned = false;
    let mut root_nr = 0;
    for f in files {
        let src = if args.expr {
            Source::Expr(f)
        } else {
            Source::File(f)
        };
        let root = eval_source(&mut ev, &src).map_err(|e| eval_error(e, show_trace))?;
        for path in &attr_paths {
            let r = (|| -> rix_eval::Result<()> {
                let v = ev.find_along_attr_path(&root, path, &auto_args)?;
                if args.eval {
                    let v = if auto_args.is_empty() {
                        v
                    } else {
                        ev.auto_call(&v, &auto_args)?
                    };
                    let out = if args.xml {
                        ev.to_xml(&v, args.strict, !args.no_location)?
                    } else if args.json {
                        ev.to_json_as(&v, args.strict)?
                    } else {
                        ev.print(&v, args.strict)?
                    };
                    // Nix 2.26 ends JSON output with a newline too (2.8 did not).
                    emit(format_args!("{}\n", out.trim_end_matches('\n')));
                    return Ok(());
                }
                let mut found = Vec::new();
                for d in ev.get_derivations(&v, &auto_args)? {
                    let drv_path = ev.drv_path_of(&d)?;
                    let output = ev.output_name_of(&d)?;
                    if output.is_empty() {
                        return Err(EvalError::new(
                            rix_eval::ErrorKind::Other,
                            format!("derivation '{drv_path}' lacks an 'outputName' attribute"),
                            rix_eval::source::Pos::NONE,
                        ));
                    }
                    found.push((drv_path, output));
                }
                // The `.drv` files are on disk before their paths are printed.
                flush(&ev)?;
                for (drv_path, output) in found {
                    let mut shown = drv_path.clone();
                    match (&args.add_root, &local) {
                        (Some(root), Some(l)) => {
                            root_nr += 1;
                            let mut link = std::path::absolute(root)
                                .unwrap_or_else(|_| root.clone())
                                .into_os_string();
                            if root_nr > 1 {
                                link.push(format!("-{root_nr}"));
                            }
                            let link = PathBuf::from(link);
                            add_perm_root(l.store(), &drv_path, &link).map_err(|e| {
                                EvalError::new(
                                    rix_eval::ErrorKind::Io,
                                    format!("{e:#}"),
                                    rix_eval::source::Pos::NONE,
                                )
                            })?;
                            shown = link.display().to_string();
                        }
                        _ => {
                            if !warned && !read_only {
                                eprintln!("warning: you did not specify '--add-root'; the result might be removed by the garbage collector");
                                warned = true;
                            }
                        }
                    }
                    if output == "out" {
                        emit(format_args!("{shown}\n"));
                    } else {
                        emit(format_args!("{shown}!{output}\n"));
                    }
                }
                Ok(())
            })();
            r.map_err(|e| eval_error(e, show_trace))?;
        }
    }
    Ok(())
}

/// Writes to standard output. A reader that went away (`| head`) ends rix
/// quietly with success, as it ends Nix; another failure (a full disk) is an
/// error. `println!` would panic on both.
fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `FILE` or `FILE/default.nix`.
fn resolve_file(f: &str) -> PathBuf {
    let p = Path::new(f);
    if p.is_dir() {
        p.join("default.nix")
    } else {
        p.to_path_buf()
    }
}

/// A symlink `link` → `target` registered as an indirect GC root, as Nix's
/// `addPermRoot`.
///
/// As Nix 2.8: an existing file, or a link that points outside the store, is
/// not clobbered; missing parent directories are created.
/// Through a daemon the link is made here and registered with `AddIndirectRoot`,
/// as Nix's client does.
pub fn add_perm_root(store: &dyn Store, target: &str, link: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(link) {
        let into_store = meta.file_type().is_symlink()
            && std::fs::read_link(link).is_ok_and(|t| {
                t.to_str()
                    .is_some_and(|t| store.store_dir().parse_prefix(t).is_ok())
            });
        if !into_store {
            bail!("cannot create symlink '{}'; already exists", link.display());
        }
        std::fs::remove_file(link)
            .with_context(|| format!("cannot replace '{}'", link.display()))?;
    } else if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory '{}'", parent.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot create symlink '{}'", link.display()))?;
    store
        .add_indirect_root(link)
        .with_context(|| format!("cannot register '{}' as a root", link.display()))
}

/// What `rix build` takes besides `.drv` paths: Nix files and expressions.
#[derive(Args, Debug, Clone, Default)]
pub struct NixInstallableArgs {
    /// Build the derivations this file evaluates to; the INSTALLABLES are
    /// then attribute paths in it.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Build the derivations this expression evaluates to; the INSTALLABLES
    /// are then attribute paths in it.
    #[arg(long, value_name = "EXPR", conflicts_with = "file")]
    pub expr: Option<String>,
    /// Select an attribute (`a.b.0`) of each evaluated file; repeatable.
    #[arg(
        short = 'A',
        long = "attr",
        value_name = "ATTRPATH",
        allow_hyphen_values = true
    )]
    pub attr: Vec<String>,
    #[command(flatten)]
    pub eval_args: EvalArgs,
    #[command(flatten)]
    pub flake: crate::cmd::flake::FlakeLockArgs,
}

impl NixInstallableArgs {
    pub fn is_set(&self) -> bool {
        self.file.is_some() || self.expr.is_some()
    }
}

/// Whether a `rix build` argument names a Nix file rather than a `.drv`.
pub fn is_nix_installable(s: &str) -> bool {
    if is_flake_installable(s) {
        return false;
    }
    s.ends_with(".nix")
        || (s.starts_with('<') && s.ends_with('>'))
        || (Path::new(s).is_dir() && Path::new(s).join("default.nix").is_file())
}

/// Evaluates the Nix installables of `rix build` into `store` (writing their
/// `.drv` files) and returns each derivation with the output it selects, as
/// `nix-build` does. `installables` are attribute paths with `--file` or
/// `--expr`, else the files among them (see [`is_nix_installable`]) and the
/// flake installables (`FLAKEREF#ATTRPATH`).
pub fn build_targets(
    ctx: &Context,
    store: &Rc<LocalStore>,
    installables: &[String],
    args: &NixInstallableArgs,
) -> Result<Vec<(rix_formats::StorePath, String)>> {
    let layout = store.layout().clone();
    build_targets_with(ctx, installables, args, move || {
        let store = Rc::new(LocalStore::open(layout)?);
        Ok(Rc::new(LocalEvalStore::new(store)))
    })
}

/// [`build_targets`] into any store (a daemon's): each `.drv` one request.
pub fn build_targets_in(
    ctx: &Context,
    store: Arc<dyn Store>,
    installables: &[String],
    args: &NixInstallableArgs,
) -> Result<Vec<(rix_formats::StorePath, String)>> {
    build_targets_with(ctx, installables, args, move || {
        Ok(Rc::new(rix_eval::store::StoreEvalStore::new(store)))
    })
}

/// Evaluates on a big stack with the evaluator's store made there by `open`.
pub(crate) fn build_targets_with(
    ctx: &Context,
    installables: &[String],
    args: &NixInstallableArgs,
    open: impl FnOnce() -> Result<Rc<dyn EvalStore>> + Send,
) -> Result<Vec<(rix_formats::StorePath, String)>> {
    if args.expr.is_none()
        && args.file.is_none()
        && !installables
            .iter()
            .any(|i| is_nix_installable(i) || is_flake_installable(i))
    {
        return Ok(Vec::new()); // only store paths: nothing to evaluate
    }
    on_big_stack(|| eval_build_targets(ctx, open()?, installables, args))
}

fn eval_build_targets(
    ctx: &Context,
    eval_store: Rc<dyn EvalStore>,
    installables: &[String],
    args: &NixInstallableArgs,
) -> Result<Vec<(rix_formats::StorePath, String)>> {
    let show_trace = args.eval_args.show_trace();
    let flakes: Vec<&str> = if args.is_set() {
        Vec::new()
    } else {
        installables
            .iter()
            .map(String::as_str)
            .filter(|i| is_flake_installable(i))
            .collect()
    };
    let mut ev = if flakes.is_empty() {
        Evaluator::new(args.eval_args.options(ctx, eval_store))
    } else {
        Evaluator::new(crate::cmd::flake::eval_options(
            ctx,
            &args.eval_args,
            eval_store,
        ))
    };
    let mut jobs: Vec<(Source<'_>, Vec<&str>)> = Vec::new();
    let attrs: Vec<&str> = args.attr.iter().map(String::as_str).collect();
    if let Some(e) = &args.expr {
        let mut paths: Vec<&str> = installables.iter().map(String::as_str).collect();
        paths.extend(&attrs);
        jobs.push((Source::Expr(e), paths));
    } else if let Some(f) = &args.file {
        let mut paths: Vec<&str> = installables.iter().map(String::as_str).collect();
        paths.extend(&attrs);
        jobs.push((Source::File(f), paths));
    } else {
        for i in installables.iter().filter(|i| is_nix_installable(i)) {
            jobs.push((Source::File(i), attrs.clone()));
        }
    }
    let mut out = Vec::new();
    // Flake installables: from the evaluation cache when the flake, its lock
    // and the question are unchanged and the derivations are still valid.
    let cacheable =
        !args.eval_args.impure && args.eval_args.auto_args().is_empty() && args.flake.is_plain();
    let cache = if cacheable {
        crate::cmd::flake::eval_cache()
    } else {
        None
    };
    for f in &flakes {
        let key = cache
            .as_ref()
            .and_then(|_| crate::cmd::flake::eval_cache_key(ctx, f, &["build"]));
        if let (Some(cache), Some((key, _))) = (&cache, &key) {
            if let Some(targets) = cache.get(key).and_then(|v| cached_targets(&ev, &v)) {
                out.extend(targets);
                continue;
            }
        }
        let r = ev
            .auto_args(&args.eval_args.auto_args())
            .map_err(rix_flake::FlakeError::from)
            .and_then(|auto_args| {
                crate::cmd::flake::build_installables(ctx, &mut ev, &[f], &args.flake, &auto_args)
            });
        let targets = r.map_err(|e| anyhow::Error::new(RenderedError(e.render(show_trace), 1)))?;
        if let (Some(cache), Some((key, source))) = (&cache, &key) {
            if crate::cmd::flake::eval_cache_source_unchanged(f, source) {
                let json: Vec<serde_json::Value> = targets
                    .iter()
                    .map(|(p, o)| serde_json::json!([p.to_string(), o]))
                    .collect();
                cache.put(key, &serde_json::Value::Array(json).to_string());
            }
        }
        out.extend(targets);
    }
    let r = (|| -> rix_eval::Result<()> {
        let r = eval_build_jobs(&mut ev, &jobs, args, &mut out);
        flush(&ev)?;
        r
    })();
    r.map_err(|e| eval_error(e, show_trace))?;
    Ok(out)
}

/// The derivations and outputs a cached answer names, if every derivation
/// is still valid in the store.
fn cached_targets(ev: &Evaluator, json: &str) -> Option<Vec<(rix_formats::StorePath, String)>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut out = Vec::new();
    for pair in v.as_array()? {
        let drv = rix_formats::StorePath::from_base_name(pair.get(0)?.as_str()?).ok()?;
        if !ev.store().is_valid_path(&drv) {
            return None;
        }
        out.push((drv, pair.get(1)?.as_str()?.to_owned()));
    }
    Some(out)
}

/// A flake installable (`.#x`, `path:/p#x`, a directory with a `flake.nix`).
pub fn is_flake_installable(s: &str) -> bool {
    rix_flake::reference::looks_like_flake_installable(s)
}

/// Writes what evaluation left pending in the store.
pub fn flush(ev: &Evaluator) -> rix_eval::Result<()> {
    ev.store().flush().map_err(|e| {
        EvalError::new(
            rix_eval::ErrorKind::Io,
            format!("cannot write to the store: {e}"),
            rix_eval::source::Pos::NONE,
        )
    })
}

fn eval_build_jobs(
    ev: &mut Evaluator,
    jobs: &[(Source<'_>, Vec<&str>)],
    args: &NixInstallableArgs,
    out: &mut Vec<(rix_formats::StorePath, String)>,
) -> rix_eval::Result<()> {
    {
        let auto_args = ev.auto_args(&args.eval_args.auto_args())?;
        for (src, paths) in jobs {
            let root = eval_source(ev, src)?;
            let paths: &[&str] = if paths.is_empty() { &[""] } else { paths };
            for path in paths {
                let v = ev.find_along_attr_path(&root, path, &auto_args)?;
                for d in ev.get_derivations(&v, &auto_args)? {
                    let drv_path = ev.drv_path_of(&d)?;
                    let output = ev.output_name_of(&d)?;
                    let sp = ev.store().store_dir().parse(&drv_path).map_err(|e| {
                        EvalError::new(
                            rix_eval::ErrorKind::Other,
                            format!("'{drv_path}' is not a derivation in the store: {e}"),
                            rix_eval::source::Pos::NONE,
                        )
                    })?;
                    if output.is_empty() {
                        return Err(EvalError::new(
                            rix_eval::ErrorKind::Other,
                            format!("derivation '{drv_path}' lacks an 'outputName' attribute"),
                            rix_eval::source::Pos::NONE,
                        ));
                    }
                    out.push((sp, output));
                }
            }
        }
        Ok(())
    }
}
