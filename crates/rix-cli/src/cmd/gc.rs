//! `rix store gc|delete|roots|optimise`: garbage collection and store
//! optimisation (like `nix-store --gc`, `--delete`, `--gc --print-roots`,
//! `--optimise`), printing what Nix prints.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use rix_store::gc::{collect_garbage, GcAction, GcError, GcObserver, GcOptions, GcResults};
use rix_store::local_store::LocalStore;
use rix_store::optimise::{optimise_store, OptimiseObserver};
use rix_store::roots::{find_all_roots, RootsObserver};
use rix_store::store_api::Store;

use crate::context::Context;

#[derive(Subcommand)]
pub enum GcCommand {
    /// Delete every store path that no root keeps alive, and every entry of the
    /// store directory that is not a valid path; report paths and bytes freed
    /// (like `nix-store --gc`).
    Gc(GcArgs),
    /// Delete the given paths, refusing any that a root or another path still
    /// keeps, and saying which (like `nix-store --delete`).
    Delete {
        /// Store paths to delete (or paths inside them, or links to them).
        #[arg(required = true, value_name = "PATHS")]
        paths: Vec<String>,
    },
    /// List the garbage collector roots as `LINK -> PATH` (like `nix-store --gc
    /// --print-roots`), with what each keeps alive.
    Roots {
        /// Also print how many paths and bytes each root keeps alive.
        #[arg(long)]
        closure_size: bool,
    },
    /// Hard-link identical files of the store through `.links` (like `nix-store
    /// --optimise`).
    Optimise,
}

#[derive(Args, Clone, Debug)]
pub struct GcArgs {
    /// Delete nothing: print what would be deleted and how much it would free.
    #[arg(long, conflicts_with_all = ["print_live", "print_dead", "print_roots"])]
    dry_run: bool,
    /// Stop after freeing more than BYTES (suffixes K, M, G, T: powers of 1024).
    #[arg(long, alias = "max-freed", value_name = "BYTES", value_parser = parse_bytes)]
    max: Option<u64>,
    /// Print the live paths instead of deleting anything.
    #[arg(long, conflicts_with_all = ["print_dead", "print_roots"])]
    print_live: bool,
    /// Print the dead paths instead of deleting anything.
    #[arg(long, conflicts_with = "print_roots")]
    print_dead: bool,
    /// Print the roots instead of deleting anything (as `rix store roots`).
    #[arg(long)]
    print_roots: bool,
}

impl GcCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        let opened = ctx.store()?;
        let store = &*opened;
        match self {
            Self::Gc(args) if args.print_roots => roots(store, false),
            Self::Gc(args) => gc(ctx, store, args),
            Self::Delete { paths } => delete(ctx, store, paths),
            Self::Roots { closure_size } => roots(store, *closure_size),
            Self::Optimise => match store.as_local() {
                Some(local) => optimise(local),
                // The daemon reports what it freed as a log line.
                None => {
                    let url = ctx.daemon_url().context("not a daemon store")?;
                    Ok(ctx.open_daemon(&url)?.optimise_store()?)
                }
            },
        }
    }
}

/// `1024`, `10K`, `5M`, `2G`, `1T` (Nix's `string2IntWithUnitPrefix`).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        Some(b'T' | b't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("'{s}' is not a number of bytes (digits, then optionally K, M, G or T)")
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Prints the collector's progress on stderr as Nix does.
struct Stderr {
    out: Mutex<BufWriter<io::Stderr>>,
}

impl Stderr {
    fn new() -> Self {
        Self {
            out: Mutex::new(BufWriter::new(io::stderr())),
        }
    }

    fn line(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{text}");
    }

    fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
}

impl GcObserver for Stderr {
    fn info(&self, message: &str) {
        self.line(message);
        self.flush();
    }

    fn deleting(&self, path: &str) {
        self.line(&format!("deleting '{path}'"));
    }
}

impl RootsObserver for Stderr {
    fn info(&self, message: &str) {
        self.line(message);
    }
}

fn options(ctx: &Context, action: GcAction) -> Result<GcOptions> {
    let mut o = GcOptions::new(action);
    o.keep_outputs = ctx.settings.get_bool("keep-outputs")?;
    o.keep_derivations = ctx.settings.get_bool("keep-derivations")?;
    Ok(o)
}

/// Collects with `o`: on this machine with progress on stderr, or by the store
/// (a daemon).
fn collect(store: &dyn Store, o: &GcOptions) -> Result<GcResults> {
    let Some(local) = store.as_local() else {
        let gc = store.gc().ok_or_else(|| {
            anyhow::anyhow!("the store '{}' does not collect garbage", store.url())
        })?;
        return Ok(gc.collect_garbage(o)?);
    };
    let observer = Stderr::new();
    let results = collect_garbage(local, o, &observer);
    observer.flush();
    match results {
        Err(GcError::StillAlive(reasons)) => bail!("{}", reasons.join("\n")),
        other => Ok(other?),
    }
}

fn gc(ctx: &Context, store: &dyn Store, args: &GcArgs) -> Result<()> {
    let action = if args.print_live {
        GcAction::ReturnLive
    } else if args.print_dead {
        GcAction::ReturnDead
    } else if args.dry_run {
        GcAction::DryRun
    } else {
        GcAction::DeleteDead
    };
    let mut o = options(ctx, action.clone())?;
    if let Some(max) = args.max {
        o.max_freed = max;
    }
    let results = collect(store, &o)?;
    let mut stdout = BufWriter::new(io::stdout().lock());
    match action {
        GcAction::ReturnLive | GcAction::ReturnDead => {
            for p in &results.paths {
                writeln!(stdout, "{p}")?;
            }
        }
        GcAction::DryRun => {
            for p in &results.paths {
                writeln!(stdout, "{p}")?;
            }
            writeln!(
                stdout,
                "{} store paths would be deleted, {} would be freed",
                results.paths.len(),
                mib(results.bytes_freed)
            )?;
        }
        _ => report_deleted(&mut stdout, &results)?,
    }
    stdout.flush()?;
    check_errors(&results)
}

fn report_deleted(out: &mut impl Write, results: &GcResults) -> io::Result<()> {
    writeln!(
        out,
        "{} store paths deleted, {} freed",
        results.paths.len(),
        mib(results.bytes_freed)
    )
}

fn check_errors(results: &GcResults) -> Result<()> {
    if results.errors.is_empty() {
        return Ok(());
    }
    for e in &results.errors {
        eprintln!("error: {e}");
    }
    bail!(
        "{} entries could not be deleted (their database rows are gone: the next collection retries them)",
        results.errors.len()
    )
}

fn delete(ctx: &Context, store: &dyn Store, paths: &[String]) -> Result<()> {
    let targets = paths
        .iter()
        .map(|p| {
            store
                .parse_path(p)
                .with_context(|| format!("'{p}' is not a store path"))
        })
        .collect::<Result<Vec<_>>>()?;
    let results = collect(store, &options(ctx, GcAction::DeleteSpecific(targets))?)?;
    let mut stdout = io::stdout().lock();
    report_deleted(&mut stdout, &results)?;
    check_errors(&results)
}

fn roots(store: &dyn Store, closure_size: bool) -> Result<()> {
    let roots = match (store.as_local(), store.gc()) {
        (Some(local), _) => {
            let observer = Stderr::new();
            let roots = find_all_roots(local, &|p| local.is_valid(p).unwrap_or(false), &observer);
            observer.flush();
            roots.context("cannot find the roots")?
        }
        (None, Some(gc)) => gc.find_roots(false)?,
        (None, None) => bail!("the store '{}' has no garbage collector roots", store.url()),
    };
    // Sorted by link, as Nix prints them.
    let pairs: BTreeSet<(&String, &rix_formats::StorePath)> = roots
        .iter()
        .flat_map(|(path, links)| links.iter().map(move |l| (l, path)))
        .collect();
    let mut stdout = BufWriter::new(io::stdout().lock());
    for (link, path) in &pairs {
        write!(stdout, "{link} -> {}", store.print(path))?;
        if closure_size {
            let (n, bytes) = closure_summary(store, [(*path).clone()])?;
            write!(stdout, "  ({n} paths, {})", mib(bytes))?;
        }
        writeln!(stdout)?;
    }
    if closure_size {
        let (n, bytes) = closure_summary(store, roots.keys().cloned())?;
        writeln!(stdout, "all roots keep {n} paths, {}", mib(bytes))?;
    }
    stdout.flush()?;
    Ok(())
}

/// Paths in the closure and the sum of their NAR sizes.
fn closure_summary(
    store: &dyn Store,
    paths: impl IntoIterator<Item = rix_formats::StorePath>,
) -> Result<(usize, u64)> {
    let closure = store.closure(&paths.into_iter().collect())?;
    let mut bytes = 0;
    for p in &closure {
        bytes += store.path_info(p)?.nar_size;
    }
    Ok((closure.len(), bytes))
}

struct Warnings;

impl OptimiseObserver for Warnings {
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

fn optimise(store: &LocalStore) -> Result<()> {
    let stats = optimise_store(store, &Warnings)?;
    eprintln!(
        "{} freed by hard-linking {} files",
        mib(stats.bytes_freed),
        stats.files_linked
    );
    Ok(())
}
