//! `rix path-info`, `rix why-depends` and `rix log`: what the store knows about
//! valid paths. Mirror `nix path-info`, `nix why-depends` and `nix log` of Nix 2.8.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{ArgAction, Args};
use rix_formats::hash::Encoding;
use rix_formats::StorePath;
use rix_store::path_info::ValidPathInfo;
use rix_store::store_api::Store;
use serde_json::{json, Map, Value};

use crate::cmd::resolve::{store_path_arg, valid_path_arg};
use crate::context::Context;

/// `rix path-info`: like `nix path-info`.
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct PathInfoArgs {
    /// Store paths (or paths inside them, or symlinks to them).
    #[arg(value_name = "PATHS", required_unless_present = "all")]
    paths: Vec<String>,
    /// Apply to the closure of the paths.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Print the size of each path's NAR serialisation.
    #[arg(short = 's', long)]
    size: bool,
    /// Print the sum of the NAR sizes of each path's closure.
    #[arg(short = 'S', long)]
    closure_size: bool,
    /// With -s and -S, print sizes like 1.5M.
    #[arg(short = 'h', long)]
    human_readable: bool,
    /// Show signatures (and `ultimate`, `ca:...`).
    #[arg(long)]
    sigs: bool,
    /// Print JSON, as Nix 2.8 does (no trailing newline).
    #[arg(long)]
    json: bool,
    /// Apply to every valid path in the store.
    #[arg(long, conflicts_with = "paths")]
    all: bool,
    /// Show a `.drv` itself; by default, as in Nix, a derivation stands for its outputs.
    #[arg(long)]
    derivation: bool,
    /// Print help (-h is --human-readable, as in Nix).
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// Sum of the NAR sizes of the closure of `p`.
fn closure_size(store: &dyn Store, p: &StorePath) -> Result<u64> {
    let closure = store.closure(&BTreeSet::from([p.clone()]))?;
    let mut total = 0;
    for q in &closure {
        total += store.path_info(q)?.nar_size;
    }
    Ok(total)
}

/// `nix path-info`'s size column: `\t%11d`, or `\t%6.1f%c` with -h.
fn size_column(value: u64, human: bool) -> String {
    if !human {
        return format!("\t{value:11}");
    }
    const UNITS: [char; 9] = [' ', 'K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'];
    let mut res = value as f64;
    let mut power = 0;
    while res > 1024.0 && power < UNITS.len() - 1 {
        power += 1;
        res /= 1024.0;
    }
    format!("\t{res:6.1}{}", UNITS[power])
}

/// One path as `nix path-info --json` (Nix 2.8) shows it, keys in its order.
fn info_json(store: &dyn Store, info: &ValidPathInfo, with_closure_size: bool) -> Result<Value> {
    let mut o = Map::new();
    o.insert("path".into(), store.print(&info.path).into());
    o.insert("narHash".into(), info.nar_hash.encode(Encoding::Sri).into());
    o.insert("narSize".into(), info.nar_size.into());
    let refs: Vec<Value> = info
        .references
        .iter()
        .map(|r| store.print(r).into())
        .collect();
    o.insert("references".into(), refs.into());
    if let Some(ca) = &info.ca {
        o.insert("ca".into(), ca.to_string().into());
    }
    if with_closure_size {
        o.insert(
            "closureSize".into(),
            closure_size(store, &info.path)?.into(),
        );
    }
    if let Some(d) = &info.deriver {
        o.insert("deriver".into(), store.print(d).into());
    }
    if info.registration_time != 0 {
        o.insert("registrationTime".into(), info.registration_time.into());
    }
    if info.ultimate {
        o.insert("ultimate".into(), true.into());
    }
    if !info.sigs.is_empty() {
        o.insert(
            "signatures".into(),
            info.sigs.iter().cloned().collect::<Vec<_>>().into(),
        );
    }
    Ok(Value::Object(o))
}

pub fn path_info(ctx: &Context, args: &PathInfoArgs) -> Result<()> {
    let opened = ctx.store()?;
    let store = &*opened;
    let _snapshot = store.as_local().map(|l| l.read_snapshot()).transpose()?;
    let mut paths = BTreeSet::new();
    if args.all {
        paths.extend(store.query_all_valid_paths()?);
    }
    let mut given = Vec::new();
    for a in &args.paths {
        let p = store_path_arg(store, a)?;
        if p.is_derivation() && !args.derivation {
            let outputs: Vec<StorePath> = store
                .query_derivation_output_map(&p)?
                .into_values()
                .flatten()
                .collect();
            if outputs.is_empty() {
                bail!(
                    "no outputs of '{}' are known: is it a valid derivation? (use --derivation to show the .drv itself)",
                    store.print(&p)
                );
            }
            given.extend(outputs);
        } else {
            given.push(p);
        }
    }
    // Like Nix: invalid paths are reported in JSON, an error otherwise. (The
    // infos, not just validity: through a daemon they are then known for what
    // follows, and asked for many paths at once.)
    let infos = if args.json {
        vec![None; given.len()]
    } else {
        store.query_path_infos(&given)?
    };
    for (p, info) in given.into_iter().zip(infos) {
        if !args.json && info.is_none() {
            bail!(
                "path '{}' is not valid in {}",
                store.print(&p),
                super::resolve::store_location(store)
            );
        }
        paths.insert(p);
    }
    if args.recursive {
        let valid: BTreeSet<StorePath> = paths
            .iter()
            .filter(|p| store.is_valid(p).unwrap_or(false))
            .cloned()
            .collect();
        let invalid: Vec<StorePath> = paths
            .iter()
            .filter(|p| !valid.contains(p))
            .cloned()
            .collect();
        paths = store.closure(&valid)?;
        paths.extend(invalid);
    }
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let mut list = Vec::new();
        for p in &paths {
            match store.query_path_info(p)? {
                Some(info) => list.push(info_json(store, &info, args.closure_size)?),
                None => list.push(json!({"path": store.print(p), "valid": false})),
            }
        }
        // Nix 2.8 prints no trailing newline.
        write!(stdout, "{}", Value::Array(list))?;
        stdout.flush()?;
        return Ok(());
    }
    let sorted = store.topo_sort(&paths)?;
    let width = sorted
        .iter()
        .map(|p| store.print(p).len())
        .max()
        .unwrap_or(0);
    for p in &sorted {
        let info = store.path_info(p)?;
        let printed = store.print(p);
        let mut line = printed.clone();
        if args.size || args.closure_size || args.sigs {
            line.push_str(&" ".repeat(width - printed.len()));
        }
        if args.size {
            line.push_str(&size_column(info.nar_size, args.human_readable));
        }
        if args.closure_size {
            line.push_str(&size_column(closure_size(store, p)?, args.human_readable));
        }
        if args.sigs {
            let mut ss = Vec::new();
            if info.ultimate {
                ss.push("ultimate".to_owned());
            }
            if let Some(ca) = &info.ca {
                ss.push(format!("ca:{ca}"));
            }
            ss.extend(info.sigs.iter().cloned());
            line.push('\t');
            line.push_str(&ss.join(" "));
        }
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    Ok(())
}

/// `rix why-depends`: like `nix why-depends`.
#[derive(Args)]
pub struct WhyDependsArgs {
    /// The store path whose closure is examined.
    package: String,
    /// The store path it (perhaps) depends on.
    dependency: String,
    /// Show all edges leading from PACKAGE to DEPENDENCY, not just a shortest path.
    #[arg(short = 'a', long)]
    all: bool,
    /// For each edge, show the files in the referrer that contain the reference.
    #[arg(long)]
    precise: bool,
}

const ANSI_NORMAL: &str = "\x1b[0m";
const ANSI_GREY: &str = "\x1b[38;5;244m";
const ANSI_GREEN: &str = "\x1b[32;1m";
const ANSI_BLUE: &str = "\x1b[34;1m";
const TREE_CONN: &str = "├───";
const TREE_LAST: &str = "└───";
const TREE_LINE: &str = "│   ";
const TREE_NULL: &str = "    ";

struct Node {
    refs: BTreeSet<StorePath>,
    dist: usize,
    visited: bool,
}

struct WhyDepends<'a> {
    store: &'a dyn Store,
    /// Where the store's files are read (`--precise`).
    layout: rix_store::layout::StoreLayout,
    graph: BTreeMap<StorePath, Node>,
    package: StorePath,
    dependency: StorePath,
    all: bool,
    precise: bool,
    out: Vec<u8>,
}

/// Thrown (as `Err`) once the one shortest path has been printed.
struct BailOut;

impl WhyDepends<'_> {
    fn line(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(b'\n');
    }

    /// Mirrors `printNode` in Nix 2.8's `why-depends.cc`.
    fn print_node(
        &mut self,
        path: &StorePath,
        first_pad: &str,
        tail_pad: &str,
    ) -> Result<Result<(), BailOut>> {
        let (visited, dist) = {
            let n = &self.graph[path];
            (n.visited, n.dist)
        };
        debug_assert!(dist != usize::MAX);
        if self.precise {
            let l = format!(
                "{first_pad}{}{}{}{ANSI_NORMAL}",
                if visited { ANSI_GREY } else { "" },
                if first_pad.is_empty() { "" } else { "→ " },
                self.store.print(path)
            );
            self.line(&l);
        }
        if *path == self.dependency && !self.all && self.package != self.dependency {
            return Ok(Err(BailOut));
        }
        if visited {
            return Ok(Ok(()));
        }
        if self.precise {
            self.graph.get_mut(path).expect("in graph").visited = true;
        }
        // References by distance to the dependency, shortest first (stable).
        let mut refs: Vec<(usize, StorePath)> = Vec::new();
        for r in &self.graph[path].refs {
            if r == path && self.package != self.dependency {
                continue;
            }
            let d = self.graph[r].dist;
            if d == usize::MAX {
                continue;
            }
            refs.push((d, r.clone()));
        }
        refs.sort_by_key(|(d, _)| *d);
        let mut hits: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if self.precise {
            let hashes: BTreeSet<String> =
                refs.iter().map(|(_, r)| r.hash_part().to_owned()).collect();
            let dep_hash = self.dependency.hash_part().to_owned();
            let root = self.layout.real_path(path);
            visit_path(&root, &root, &hashes, &dep_hash, &mut hits)?;
        }
        let count = refs.len();
        for (i, (_, r)) in refs.into_iter().enumerate() {
            let hash = r.hash_part().to_owned();
            let last = if self.all { i + 1 == count } else { true };
            if let Some(hs) = hits.get(&hash) {
                for (j, hit) in hs.clone().iter().enumerate() {
                    let first = j == 0;
                    let conn = match (first, last) {
                        (true, true) => TREE_LAST,
                        (true, false) => TREE_CONN,
                        (false, true) => TREE_NULL,
                        (false, false) => TREE_LINE,
                    };
                    self.line(&format!("{tail_pad}{conn}{hit}"));
                    if !self.all {
                        break;
                    }
                }
            }
            if !self.precise {
                let l = format!(
                    "{first_pad}{}{}{}{ANSI_NORMAL}",
                    if self.graph[&r].visited {
                        ANSI_GREY
                    } else {
                        ""
                    },
                    if last { TREE_LAST } else { TREE_CONN },
                    self.store.print(&r)
                );
                self.line(&l);
                self.graph.get_mut(path).expect("in graph").visited = true;
            }
            let pad = format!("{tail_pad}{}", if last { TREE_NULL } else { TREE_LINE });
            if let Err(b) = self.print_node(&r, &pad, &pad)? {
                return Ok(Err(b));
            }
        }
        Ok(Ok(()))
    }
}

/// `hilite` of Nix: `s` with `len` bytes at `pos` coloured.
fn hilite(s: &str, pos: usize, len: usize, colour: &str) -> String {
    let end = (pos + len).min(s.len());
    format!(
        "{}{colour}{}{ANSI_NORMAL}{}",
        &s[..pos],
        &s[pos..end],
        &s[end..]
    )
}

/// Files and symlinks under `path` that contain one of `hashes`, as Nix's
/// `visitPath` finds them (directories in name order).
fn visit_path(
    root: &Path,
    path: &Path,
    hashes: &BTreeSet<String>,
    dep_hash: &str,
    hits: &mut BTreeMap<String, Vec<String>>,
) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read '{}'", path.display()))?;
    let rel = if path == root {
        "/".to_owned()
    } else {
        path.strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned()
    };
    let colour = |h: &str| if h == dep_hash { ANSI_GREEN } else { ANSI_BLUE };
    if meta.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read '{}'", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        names.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        for n in names {
            visit_path(root, &n, hashes, dep_hash, hits)?;
        }
    } else if meta.is_file() {
        let contents =
            std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
        for h in hashes {
            if let Some(pos) = find(&contents, h.as_bytes()) {
                const MARGIN: usize = 32;
                let pos2 = pos.saturating_sub(MARGIN);
                let end = (pos + h.len() + MARGIN).min(contents.len());
                let printable: String = contents[pos2..end]
                    .iter()
                    .map(|&c| {
                        if (0x20..0x7f).contains(&c) {
                            c as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                let text = hilite(&printable, pos - pos2, h.len(), colour(h));
                hits.entry(h.clone())
                    .or_default()
                    .push(format!("{rel}: …{text}…"));
            }
        }
    } else if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?.to_string_lossy().into_owned();
        for h in hashes {
            if let Some(pos) = target.find(h.as_str()) {
                let text = hilite(&target, pos, h.len(), colour(h));
                hits.entry(h.clone())
                    .or_default()
                    .push(format!("{rel} -> {text}"));
            }
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn why_depends(ctx: &Context, args: &WhyDependsArgs) -> Result<()> {
    let opened = ctx.store()?;
    let store = &*opened;
    let _snapshot = store.as_local().map(|l| l.read_snapshot()).transpose()?;
    let package = valid_path_arg(store, &args.package)?;
    let dependency = store_path_arg(store, &args.dependency)?;
    let closure = store.closure(&BTreeSet::from([package.clone()]))?;
    if !closure.contains(&dependency) {
        bail!(
            "'{}' does not depend on '{}'",
            store.print(&package),
            store.print(&dependency)
        );
    }
    let mut graph = BTreeMap::new();
    for p in &closure {
        let refs = store.path_info(p)?.references;
        graph.insert(
            p.clone(),
            Node {
                refs,
                dist: usize::MAX,
                visited: false,
            },
        );
    }
    // Distances to the dependency: breadth-first over reversed references.
    let mut rrefs: BTreeMap<StorePath, Vec<StorePath>> = BTreeMap::new();
    for (p, n) in &graph {
        for r in &n.refs {
            rrefs.entry(r.clone()).or_default().push(p.clone());
        }
    }
    graph.get_mut(&dependency).expect("in closure").dist = 0;
    let mut queue = VecDeque::from([dependency.clone()]);
    while let Some(p) = queue.pop_front() {
        let d = graph[&p].dist + 1;
        for q in rrefs.get(&p).into_iter().flatten() {
            let n = graph.get_mut(q).expect("in closure");
            if d < n.dist {
                n.dist = d;
                queue.push_back(q.clone());
            }
        }
    }
    let mut w = WhyDepends {
        store,
        layout: ctx.layout()?,
        graph,
        package: package.clone(),
        dependency,
        all: args.all,
        precise: args.precise,
        out: Vec::new(),
    };
    if !args.precise {
        let l = store.print(&package);
        w.line(&l);
    }
    let _bailed_out = w.print_node(&package, "", "")?;
    let mut out = w.out;
    if std::env::var_os("NO_COLOR").is_some() {
        out = strip_ansi(&out);
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}

/// Removes `ESC [ ... m` sequences.
fn strip_ansi(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == 0x1b && s.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < s.len() && s[i] != b'm' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// `rix log`: like `nix log` / `nix-store --read-log`.
#[derive(Args)]
pub struct LogArgs {
    /// A derivation, or an output path (the log of the derivation that built it).
    path: String,
}

/// Through a daemon too, logs are read from this machine's log directory (the
/// protocol has no operation to read one; Nix's client reads the files).
pub fn log(ctx: &Context, args: &LogArgs) -> Result<()> {
    let opened = ctx.store()?;
    let store = &*opened;
    let layout = ctx.layout()?;
    let p = store_path_arg(store, &args.path)?;
    let drvs: Vec<StorePath> = if p.is_derivation() {
        vec![p.clone()]
    } else {
        let info = store.path_info(&p).with_context(|| {
            format!(
                "cannot find the build log of '{}': it is not a derivation, nor a valid path",
                store.print(&p)
            )
        })?;
        let mut drvs: Vec<StorePath> = info.deriver.into_iter().collect();
        for d in store.query_valid_derivers(&p)? {
            if !drvs.contains(&d) {
                drvs.push(d);
            }
        }
        drvs
    };
    let log_path = |drv: &StorePath| {
        let base = drv.to_string();
        layout
            .log_dir
            .join("drvs")
            .join(&base[..2])
            .join(format!("{}.bz2", &base[2..]))
    };
    let mut looked = Vec::new();
    for d in &drvs {
        let bz2 = log_path(d);
        let plain = bz2.with_extension("");
        for f in [bz2, plain] {
            if f.exists() {
                let text = rix_build::log::read_log(&f)
                    .with_context(|| format!("cannot read log '{}'", f.display()))?;
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&text)?;
                stdout.flush()?;
                return Ok(());
            }
            looked.push(f.display().to_string());
        }
    }
    if drvs.is_empty() {
        bail!(
            "no build log is available for '{}': it was not built here (no deriver is known)",
            store.print(&p)
        );
    }
    bail!(
        "no build log is available for '{}' (looked for {}); it may have been substituted, added, or built elsewhere",
        store.print(&p),
        looked.join(", ")
    )
}
