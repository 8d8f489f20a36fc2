//! `rix derivation`: inspect, check and add `.drv` files. `show` prints exactly
//! what `nix show-derivation` of Nix 2.8 prints; `add` is `nix derivation add` of
//! later Nix versions.
//!
//! A `.drv` given on the command line may be a path of the selected store
//! (logical or physical, or an output path, whose deriver is then used), a file
//! in some other store directory, or a file anywhere else: its paths are then
//! parsed with the selected store's directory, or with the directory its own
//! output paths name. Input derivations are read from the directory the file is
//! in, else from the selected store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Subcommand;
use rix_formats::derivation::{json, Derivation, DerivationOutput, DrvHashes, OutputProblem};
use rix_formats::store_path::StoreDir;
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;

use crate::cmd::resolve::split_store_path;
use crate::context::Context;

#[derive(Subcommand)]
pub enum DerivationCommand {
    /// Print derivations as JSON, exactly as `nix show-derivation` (Nix 2.8) does.
    Show {
        /// Also show every derivation these depend on.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// `.drv` files, store paths of derivations, or output paths (their deriver is shown).
        #[arg(required = true, value_name = "DRV")]
        drvs: Vec<String>,
    },
    /// Recompute each output path (and the .drv's own path) and say whether the
    /// file declares them right; exits non-zero on any mismatch.
    Check {
        /// `.drv` files or store paths of derivations.
        #[arg(required = true, value_name = "DRV")]
        drvs: Vec<String>,
    },
    /// Read a derivation as JSON on standard input, fill in its output paths, write
    /// it to the store and print its path (like `nix derivation add`). Accepts Nix
    /// 2.8's `show-derivation` output for one derivation, and newer Nix's JSON.
    Add,
}

impl DerivationCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        match self {
            Self::Show { recursive, drvs } => show(ctx, drvs, *recursive),
            Self::Check { drvs } => check(ctx, drvs),
            Self::Add => add(ctx),
        }
    }
}

/// A derivation read from a file, and where it came from.
struct DrvFile {
    /// The store directory its paths are in.
    store_dir: StoreDir,
    /// Where its input derivations are looked for, in order.
    input_dirs: Vec<PathBuf>,
    /// Its store path: where it lies when that is a store directory, else computed.
    path: StorePath,
    /// Whether `path` is where the file lies (rather than computed from it).
    located: bool,
    /// The file, for messages.
    file: PathBuf,
    drv: Derivation,
}

fn read_file(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read derivation '{}'", file.display()))
}

/// Reads the derivation named by a command-line argument (see the module docs).
fn load(ctx: &Context, layout: &StoreLayout, arg: &str) -> Result<DrvFile> {
    // A symlink into the store (`./result`) stands for what it points to.
    let in_store = split_store_path(layout, arg).or_else(|| {
        let meta = std::fs::symlink_metadata(arg).ok()?;
        meta.file_type().is_symlink().then_some(())?;
        let target = std::fs::canonicalize(arg).ok()?;
        split_store_path(layout, &target.to_string_lossy())
    });
    if let Some((mut path, rest)) = in_store.filter(|(_, rest)| rest.is_empty() || rest == "/") {
        debug_assert!(rest.is_empty() || rest == "/");
        if !path.is_derivation() {
            let store = ctx.store()?;
            let info = store
                .path_info(&path)
                .with_context(|| format!("'{arg}' is not a derivation"))?;
            path = match info.deriver {
                Some(d) => d,
                None => store
                    .query_valid_derivers(&path)?
                    .into_iter()
                    .next()
                    .with_context(|| format!("'{arg}' is not a derivation, and no derivation that produced it is known"))?,
            };
        }
        let file = layout.real_path(&path);
        let bytes = read_file(&file)?;
        let drv = Derivation::from_aterm_at(&bytes, &layout.store_dir, &path)
            .with_context(|| format!("cannot parse derivation '{}'", file.display()))?;
        return Ok(DrvFile {
            store_dir: layout.store_dir.clone(),
            input_dirs: vec![layout.real_store_dir.clone()],
            path,
            located: true,
            file,
            drv,
        });
    }
    let file = PathBuf::from(arg);
    let bytes = read_file(&file)?;
    let canon = std::fs::canonicalize(&file)
        .with_context(|| format!("cannot resolve '{}'", file.display()))?;
    let dir = canon.parent().unwrap_or(Path::new("/")).to_path_buf();
    let base = canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let as_store_path = StorePath::from_base_name(&base)
        .ok()
        .filter(StorePath::is_derivation);

    // Store directories to try.
    let mut candidates: Vec<StoreDir> = Vec::new();
    if as_store_path.is_some() {
        candidates.extend(StoreDir::new(dir.to_string_lossy().into_owned()).ok());
    }
    candidates.push(layout.store_dir.clone());
    let named = store_dir_named_in(&bytes);
    candidates.extend(named.clone());
    candidates.dedup();
    // Input derivations: beside the file, in the selected store, or in the
    // directory the file's paths name.
    let mut input_dirs = vec![dir.clone(), layout.real_store_dir.clone()];
    input_dirs.extend(named.map(|d| PathBuf::from(d.as_str())));
    input_dirs.dedup();
    let mut first_error = None;
    for store_dir in candidates {
        let located = as_store_path
            .as_ref()
            .filter(|_| store_dir.as_str() == dir.to_string_lossy());
        let name = located.and_then(Derivation::name_from_drv_path);
        match Derivation::from_aterm(&bytes, &store_dir, name) {
            Ok(drv) => {
                let path = match located {
                    Some(p) => p.clone(),
                    None => drv.drv_path(&store_dir).with_context(|| {
                        format!("cannot compute the store path of '{}'", file.display())
                    })?,
                };
                return Ok(DrvFile {
                    store_dir,
                    input_dirs,
                    path,
                    located: located.is_some(),
                    file,
                    drv,
                });
            }
            Err(e) => {
                first_error.get_or_insert((store_dir, e));
            }
        }
    }
    let (store_dir, e) = first_error.expect("at least one candidate");
    Err(anyhow!(e).context(format!(
        "cannot parse derivation '{}' (with store directory {store_dir}; choose the store with --store)",
        file.display()
    )))
}

/// The store directory of the first output path in an ATerm (`("out","/x/store/...`).
fn store_dir_named_in(aterm: &[u8]) -> Option<StoreDir> {
    let text = std::str::from_utf8(aterm.get(..4096.min(aterm.len()))?).ok()?;
    let start = text.find(",\"/")? + 2;
    let end = start + text[start..].find('"')?;
    let path = &text[start..end];
    let dir = &path[..path.rfind('/')?];
    StoreDir::new(if dir.is_empty() { "/" } else { dir }).ok()
}

/// Reads an input derivation `p` of `of` from the first of its input directories
/// that has it.
fn read_input(of: &DrvFile, p: &StorePath) -> Result<Derivation, String> {
    let file = of
        .input_dirs
        .iter()
        .map(|d| d.join(p.to_string()))
        .find(|f| f.exists())
        .ok_or_else(|| {
            let dirs: Vec<String> = of
                .input_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            format!(
                "input derivation {p} is in none of {} (use --store to name the store it is in)",
                dirs.join(", ")
            )
        })?;
    let bytes =
        std::fs::read(&file).map_err(|e| format!("cannot read '{}': {e}", file.display()))?;
    Derivation::from_aterm_at(&bytes, &of.store_dir, p)
        .map_err(|e| format!("cannot parse '{}': {e}", file.display()))
}

/// The innermost cause of an error (hashing errors repeat their causes in their
/// messages).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(s) = e.source() {
        e = s;
    }
    e.to_string()
}

fn show(ctx: &Context, args: &[String], recursive: bool) -> Result<()> {
    let layout = ctx.layout()?;
    let mut shown: BTreeMap<StorePath, Derivation> = BTreeMap::new();
    let mut store_dir: Option<StoreDir> = None;
    for arg in args {
        let f = load(ctx, &layout, arg)?;
        match &store_dir {
            Some(d) if *d != f.store_dir => bail!(
                "'{arg}' is in store directory {}, the derivations before it in {d}: show them separately",
                f.store_dir
            ),
            _ => store_dir = Some(f.store_dir.clone()),
        }
        if recursive {
            let mut queue: VecDeque<StorePath> = f.drv.input_drvs.keys().cloned().collect();
            queue.extend(
                f.drv
                    .input_srcs
                    .iter()
                    .filter(|p| p.is_derivation())
                    .cloned(),
            );
            while let Some(p) = queue.pop_front() {
                if shown.contains_key(&p) {
                    continue;
                }
                let d = read_input(&f, &p)
                    .map_err(|e| anyhow!("{e} (an input of '{}')", f.file.display()))?;
                queue.extend(d.input_drvs.keys().cloned());
                queue.extend(d.input_srcs.iter().filter(|p| p.is_derivation()).cloned());
                shown.insert(p, d);
            }
        }
        shown.insert(f.path, f.drv);
    }
    let store_dir = store_dir.expect("clap requires a derivation");
    let list: Vec<(&StorePath, &Derivation)> = shown.iter().collect();
    let out = json::show_derivations(&store_dir, &list)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}

fn check(ctx: &Context, args: &[String]) -> Result<()> {
    let layout = ctx.layout()?;
    let mut bad = 0;
    for arg in args {
        let f = load(ctx, &layout, arg)?;
        let mut hashes = DrvHashes::new(f.store_dir.clone(), |p: &StorePath| read_input(&f, p));
        let cannot = |e: rix_formats::derivation::HashingError| {
            anyhow!("cannot check '{}': {}", f.file.display(), innermost(&e))
        };
        let problems = f
            .drv
            .check_outputs(&f.store_dir, |p| hashes.get(p))
            .map_err(cannot)?;
        let mut hashes = DrvHashes::new(f.store_dir.clone(), |p: &StorePath| read_input(&f, p));
        let computed = f
            .drv
            .output_paths(&f.store_dir, |p| hashes.get(p))
            .map_err(cannot)?;
        let sd = &f.store_dir;
        let mut lines = Vec::new();
        let mut wrong = false;
        if f.located {
            let expected = f.drv.drv_path(sd)?;
            if expected == f.path {
                lines.push("  .drv path: ok".to_owned());
            } else {
                wrong = true;
                lines.push(format!(
                    "  .drv path: WRONG: the file is {}, its contents give {}",
                    sd.display(&f.path),
                    sd.display(&expected)
                ));
            }
        }
        // Grouped once: looking each output's problems up in the whole list made
        // a derivation with many wrong outputs quadratic.
        let mut by_output: HashMap<&str, Vec<&OutputProblem>> = HashMap::new();
        for p in &problems {
            by_output.entry(problem_output(p)).or_default().push(p);
        }
        for (name, out) in &f.drv.outputs {
            let mine = by_output.remove(name.as_str()).unwrap_or_default();
            let declared = out.path(sd, &f.drv.name, name)?;
            if mine.is_empty() {
                match (declared, computed.get(name).cloned().flatten()) {
                    (Some(p), _) => lines.push(format!("  {name}: {} ok", sd.display(&p))),
                    (None, Some(c)) => lines.push(format!(
                        "  {name}: {}, its path will be {}",
                        kind(out),
                        sd.display(&c)
                    )),
                    (None, None) => lines.push(format!(
                        "  {name}: {} (its path is known only after building)",
                        kind(out)
                    )),
                }
                continue;
            }
            wrong = true;
            for p in mine {
                lines.push(match p {
                    OutputProblem::WrongPath { declared, expected, .. } => format!(
                        "  {name}: WRONG path {}, should be {}",
                        sd.display(declared),
                        sd.display(expected)
                    ),
                    OutputProblem::WrongEnvVar { found, expected, .. } => format!(
                        "  {name}: WRONG environment variable '{name}': {}, should be '{}'",
                        found
                            .as_ref()
                            .map_or_else(|| "missing".to_owned(), |v| format!("'{}'", String::from_utf8_lossy(v))),
                        sd.display(expected)
                    ),
                    OutputProblem::ShouldBeDeferred { .. } => format!(
                        "  {name}: WRONG: has a path, but must be deferred (an input derivation is content-addressed or impure)"
                    ),
                });
            }
        }
        println!(
            "{}{}",
            sd.display(&f.path),
            if f.located { "" } else { " (computed path)" }
        );
        for l in lines {
            println!("{l}");
        }
        if wrong {
            bad += 1;
        }
    }
    if bad > 0 {
        bail!(
            "{bad} of {} derivations declare wrong paths (see above)",
            args.len()
        );
    }
    Ok(())
}

fn problem_output(p: &OutputProblem) -> &str {
    match p {
        OutputProblem::WrongPath { output, .. }
        | OutputProblem::WrongEnvVar { output, .. }
        | OutputProblem::ShouldBeDeferred { output } => output,
    }
}

fn kind(out: &DerivationOutput) -> &'static str {
    match out {
        DerivationOutput::InputAddressed { .. } => "input-addressed",
        DerivationOutput::CAFixed { .. } => "fixed-output",
        DerivationOutput::CAFloating { .. } => "content-addressed",
        DerivationOutput::Deferred => "deferred",
        DerivationOutput::Impure { .. } => "impure",
    }
}

fn add(ctx: &Context) -> Result<()> {
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .context("cannot read standard input")?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .context("standard input is not JSON (expected a derivation as JSON)")?;
    let store = ctx.store()?;
    let layout = ctx.layout()?;
    let store_dir = store.store_dir().clone();
    // Nix 2.8's show-derivation form: {"/nix/store/...drv": {...}} with one entry.
    let obj = value
        .as_object()
        .context("standard input is not a JSON object (expected a derivation)")?;
    let wrapped =
        obj.len() == 1 && !obj.contains_key("outputs") && obj.values().all(|v| v.is_object());
    let (key, value) = if wrapped {
        let (k, v) = obj.iter().next().expect("one entry");
        (Some(k.clone()), v)
    } else {
        (None, &value)
    };
    let key_path = match &key {
        Some(k) => Some(store_dir.parse(k).map_err(|e| {
            anyhow!("the derivation's key '{k}' is not a .drv path in {store_dir}: {e} (is --store the store it came from?)")
        })?),
        None => None,
    };
    let name = key_path.as_ref().and_then(Derivation::name_from_drv_path);
    let mut drv = Derivation::from_json(value, &store_dir, name)
        .context("invalid derivation on standard input")?;
    for p in drv.references() {
        if !store.is_valid(p)? {
            bail!(
                "input '{}' is not valid in {}: add it first (`rix derivation add` for a .drv, `rix store add` for a source)",
                store.print(p),
                crate::cmd::resolve::store_location(&*store)
            );
        }
    }
    let real = layout.real_store_dir.clone();
    let read = |p: &StorePath| -> Result<Derivation, String> {
        let file = real.join(p.to_string());
        let bytes =
            std::fs::read(&file).map_err(|e| format!("cannot read '{}': {e}", file.display()))?;
        Derivation::from_aterm_at(&bytes, &store_dir, p)
            .map_err(|e| format!("cannot parse '{}': {e}", file.display()))
    };
    let mut hashes = DrvHashes::new(store_dir.clone(), read);
    drv.fill_in_output_paths(&store_dir, |p| hashes.get(p))
        .map_err(|e| {
            anyhow!(
                "cannot fill in the derivation's output paths: {}",
                innermost(&e)
            )
        })?;
    let path = store.add_derivation(&drv)?;
    if let Some(k) = key_path.filter(|k| *k != path) {
        eprintln!(
            "warning: the derivation was given as '{}' but its contents give '{}'",
            store.print(&k),
            store.print(&path)
        );
    }
    println!("{}", store.print(&path));
    Ok(())
}
