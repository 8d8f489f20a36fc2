//! `rix store refs|referrers|closure|ls|cat|verify|export|import`: queries on
//! the store (like `nix-store -q`, `nix store ls|cat`, `nix-store --verify`,
//! `nix-store --export|--import`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Subcommand;
use rix_formats::hash::{HashAlgo, Hasher};
use rix_formats::nar::listing::Node;
use rix_formats::nar::{NarReader, NarWriter};
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use rix_store::store_api::{AddFlags, Store};

use crate::cmd::nar::LsArgs;
use crate::cmd::resolve::{follow_to_store_path, layout_of, valid_path_arg};
use crate::context::Context;

#[derive(Subcommand)]
pub enum QueryCommand {
    /// Print the paths the given paths refer to (like `nix-store -q --references`).
    Refs {
        /// Store paths (or paths inside them, or links to them).
        #[arg(required = true, value_name = "PATHS")]
        paths: Vec<String>,
    },
    /// Print the valid paths that refer to the given paths (like `nix-store -q --referrers`).
    Referrers {
        /// Store paths (or paths inside them, or links to them).
        #[arg(required = true, value_name = "PATHS")]
        paths: Vec<String>,
    },
    /// Print the closure of the given paths, dependencies first (like `nix-store -q --requisites`).
    Closure {
        /// Store paths (or paths inside them, or links to them).
        #[arg(required = true, value_name = "PATHS")]
        paths: Vec<String>,
    },
    /// List a store path or a path inside one (like `nix store ls`).
    Ls {
        #[command(flatten)]
        ls: LsArgs,
        /// A store path, or a path inside one.
        path: String,
    },
    /// Print a regular file in the store (like `nix store cat`).
    Cat {
        /// A store path that is a regular file, or a regular file inside a store path.
        path: String,
    },
    /// Check the store against its database (like `nix-store --verify`).
    ///
    /// Every valid path must exist and its references be valid; with
    /// --check-contents its contents must have the recorded NAR hash. Entries of
    /// the store directory that are not valid paths are reported too. Exits
    /// non-zero when anything is wrong; changes nothing unless --repair.
    Verify {
        /// Also hash every valid path and compare with the database.
        #[arg(long)]
        check_contents: bool,
        /// Fix what is found: broken paths get fresh copies from the
        /// substituters, or are rebuilt from their derivation when no cache has
        /// them, swapped in atomically; corrupt `.links` entries are removed;
        /// missing paths nothing refers to leave the database; deletions an
        /// interrupted garbage collection left pending are finished.
        #[arg(long)]
        repair: bool,
    },
    /// Write the closure of PATHS in `nix-store --export` format to standard output.
    ///
    /// Paths come dependencies first, so `rix store import` and `nix-store
    /// --import` can add them in order.
    Export {
        /// Export only PATHS, not their closure (as `nix-store --export` does).
        #[arg(long)]
        no_closure: bool,
        /// Store paths to export.
        #[arg(required = true, value_name = "PATHS")]
        paths: Vec<String>,
    },
    /// Add the paths in `nix-store --export` output read on standard input.
    ///
    /// Each path's NAR is checked, then the path is registered with its references
    /// and deriver, and printed. Paths already valid are left alone.
    Import,
}

impl QueryCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        let opened = ctx.store()?;
        let store = &*opened;
        let snapshot = || store.as_local().map(|l| l.read_snapshot()).transpose();
        match self {
            Self::Refs { paths } => {
                let _snapshot = snapshot()?;
                let mut set = BTreeSet::new();
                for p in paths {
                    set.extend(store.path_info(&valid_path_arg(store, p)?)?.references);
                }
                print_topo(store, &set)
            }
            Self::Referrers { paths } => {
                let _snapshot = snapshot()?;
                let mut set = BTreeSet::new();
                for p in paths {
                    let p = valid_path_arg(store, p)?;
                    set.extend(store.query_referrers(&p)?);
                }
                print_topo(store, &set)
            }
            Self::Closure { paths } => {
                let _snapshot = snapshot()?;
                let roots = paths
                    .iter()
                    .map(|p| valid_path_arg(store, p))
                    .collect::<Result<Vec<_>>>()?;
                match store.as_local() {
                    // One query for the whole graph.
                    Some(local) => print_paths(store, local.closure_graph(roots)?.topo_order()),
                    None => print_topo(store, &store.closure(&roots.into_iter().collect())?),
                }
            }
            Self::Ls { ls, path } => {
                let (p, rest) = object_arg(store, path)?;
                let real = inside(layout_of(store).real_path(&p), &rest);
                let node = list_fs(&real)?;
                let shown = if rest.is_empty() {
                    store.print(&p)
                } else {
                    path.clone()
                };
                ls.print(&node, &shown)
            }
            Self::Cat { path } => {
                let (p, rest) = object_arg(store, path)?;
                let real = inside(layout_of(store).real_path(&p), &rest);
                let meta = std::fs::symlink_metadata(&real)
                    .with_context(|| format!("path '{path}' does not exist"))?;
                if !meta.is_file() {
                    bail!("path '{path}' is not a regular file");
                }
                let mut f = File::open(&real)
                    .with_context(|| format!("cannot open '{}'", real.display()))?;
                let mut stdout = io::stdout().lock();
                io::copy(&mut f, &mut stdout)?;
                stdout.flush()?;
                Ok(())
            }
            Self::Verify {
                check_contents,
                repair,
            } => {
                let Some(local) = store.as_local() else {
                    return verify_through_daemon(ctx, *check_contents, *repair);
                };
                verify(ctx, local, *check_contents, *repair)
            }
            Self::Export { no_closure, paths } => {
                let roots = paths
                    .iter()
                    .map(|p| valid_path_arg(store, p))
                    .collect::<Result<BTreeSet<_>>>()?;
                let set = if *no_closure {
                    roots
                } else {
                    store.closure(&roots)?
                };
                if io::stdout().is_terminal() {
                    bail!("refusing to write an export to a terminal: redirect standard output");
                }
                let mut out = BufWriter::new(io::stdout().lock());
                export(store, &store.topo_sort(&set)?, &mut out)?;
                out.flush()?;
                Ok(())
            }
            Self::Import => {
                let mut input = BufReader::new(io::stdin().lock());
                for p in import(store, &mut input)? {
                    println!("{}", store.print(&p));
                }
                Ok(())
            }
        }
    }
}

/// A store path argument that must be valid, and the path inside it.
fn object_arg(store: &dyn Store, s: &str) -> Result<(StorePath, String)> {
    let (p, rest) = follow_to_store_path(&layout_of(store), s)?;
    if !store.is_valid(&p)? {
        bail!("path '{}' is not a valid store path", store.print(&p));
    }
    Ok((p, rest))
}

/// `rest` (`""` or `/a/b`) inside the store object at `real`.
fn inside(real: std::path::PathBuf, rest: &str) -> std::path::PathBuf {
    let rest = rest.trim_matches('/');
    if rest.is_empty() {
        real
    } else {
        real.join(rest)
    }
}

/// Prints paths as `nix-store -q` does: dependencies before their referrers.
fn print_topo(store: &dyn Store, set: &BTreeSet<StorePath>) -> Result<()> {
    print_paths(store, &store.topo_sort(set)?)
}

fn print_paths<'a>(
    store: &dyn Store,
    paths: impl IntoIterator<Item = &'a StorePath>,
) -> Result<()> {
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    for p in paths {
        writeln!(stdout, "{}", store.print(p))?;
    }
    stdout.flush()?;
    Ok(())
}

/// The listing of a file system object, as Nix's local accessor gives it (no NAR
/// offsets).
fn list_fs(path: &Path) -> Result<Node> {
    use std::os::unix::ffi::OsStrExt;
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("path '{}' does not exist", path.display()))?;
    let ft = meta.file_type();
    Ok(if ft.is_symlink() {
        let target = std::fs::read_link(path)?;
        Node::Symlink {
            target: target.as_os_str().as_bytes().to_vec(),
        }
    } else if ft.is_dir() {
        let mut entries = std::collections::BTreeMap::new();
        for e in
            std::fs::read_dir(path).with_context(|| format!("cannot read '{}'", path.display()))?
        {
            let e = e?;
            entries.insert(e.file_name().as_bytes().to_vec(), list_fs(&e.path())?);
        }
        Node::Directory { entries }
    } else if ft.is_file() {
        Node::Regular {
            executable: meta.permissions().mode() & 0o100 != 0,
            size: meta.len(),
            nar_offset: 0,
        }
    } else {
        bail!("'{}' has an unsupported file type", path.display())
    })
}

/// Progress messages of the verification, on standard error.
struct StderrObserver;

impl rix_store::verify::VerifyObserver for StderrObserver {
    fn info(&self, message: &str) {
        eprintln!("{message}");
    }
}

/// Reports what `rix_store::verify::verify_store` finds, one line each on
/// standard output; entries of the store directory that are not valid paths
/// (other than lock files, `.links`, temporaries of rix processes, running or
/// gone, and deletions an interrupted collection left pending) count as
/// problems too.
/// `rix store verify` through a daemon: it checks its store (`VerifyStore`)
/// and reports what it finds as log lines; errors left unfixed are a failure,
/// as with `nix-store --verify`.
fn verify_through_daemon(ctx: &Context, check_contents: bool, repair: bool) -> Result<()> {
    let url = ctx.daemon_url().context("not a daemon store")?;
    let daemon = ctx.open_daemon(&url)?;
    if daemon.verify_store(check_contents, repair)? {
        bail!(
            "the store of the daemon at '{url}' has errors{}",
            if repair {
                " that were not all fixed"
            } else {
                " (see above; --repair may fix them)"
            }
        );
    }
    Ok(())
}

fn verify(ctx: &Context, store: &LocalStore, check_contents: bool, repair: bool) -> Result<()> {
    let options = rix_store::verify::VerifyOptions { check_contents };
    let report = rix_store::verify::verify_store(store, options, &StderrObserver)?;
    let mut stdout = io::stdout().lock();
    for p in &report.problems {
        writeln!(stdout, "{p}")?;
    }
    let mut unfixed = report.problems.len();
    if repair && !report.problems.is_empty() {
        let fixed = crate::cmd::repair::repair(ctx, store, &report, &StderrObserver)?;
        for p in &fixed.repaired {
            writeln!(stdout, "repaired '{p}'")?;
        }
        for p in &fixed.invalidated {
            writeln!(
                stdout,
                "removed '{p}' from the database (missing, and nothing refers to it)"
            )?;
        }
        for l in &fixed.removed_links {
            writeln!(stdout, "removed corrupt link '{}'", l.display())?;
        }
        for f in &fixed.failed {
            writeln!(stdout, "{f}")?;
        }
        unfixed = fixed.failed.len();
    }
    for g in &report.garbage {
        let name = g.rsplit('/').next().unwrap_or(g);
        let what = if StorePath::from_base_name(name).is_ok() {
            "is not a valid path (garbage, or left by an interrupted write)"
        } else {
            "is not a store path"
        };
        writeln!(
            stdout,
            "'{g}' in the store directory {what}; `rix store gc` removes it"
        )?;
    }
    if repair && !report.pending_deletion.is_empty() {
        let done = rix_store::gc::finish_pending_deletions(store, &rix_store::gc::Quiet)?;
        for p in &done.paths {
            writeln!(
                stdout,
                "deleted '{p}' (an interrupted garbage collection had begun deleting it)"
            )?;
        }
        for e in &done.errors {
            writeln!(stdout, "{e}")?;
        }
        unfixed += done.errors.len();
    } else if !report.pending_deletion.is_empty() {
        eprintln!(
            "note: {} entries of the store directory are pending deletion by an interrupted \
             garbage collection (their database rows are gone); the next `rix store gc` \
             finishes it",
            report.pending_deletion.len()
        );
    }
    let dir = &store.layout().real_store_dir;
    if repair {
        for p in &report.leftovers {
            let name = p.rsplit('/').next().unwrap_or(p);
            match rix_store::canonicalise::delete_path(&dir.join(name)) {
                Ok(()) => writeln!(stdout, "removed '{p}' (left by a killed rix process)")?,
                Err(e) => {
                    writeln!(stdout, "cannot remove '{p}': {e}")?;
                    unfixed += 1;
                }
            }
        }
    } else if !report.leftovers.is_empty() {
        eprintln!(
            "note: {} temporary file(s) of rix processes killed mid-write are left in the \
             store directory; the next write of their paths, `rix store gc` or `rix store \
             verify --repair` removes them",
            report.leftovers.len()
        );
    }
    stdout.flush()?;
    let n = unfixed + report.garbage.len();
    if n > 0 {
        bail!(
            "the store at {} has {n} problem(s) among {} valid paths (see above)",
            dir.display(),
            report.checked
        );
    }
    eprintln!(
        "the store at {} is consistent ({} valid paths)",
        dir.display(),
        report.checked
    );
    Ok(())
}

/// `EXPORT_MAGIC` of Nix's `exportPath`.
const EXPORT_MAGIC: u64 = 0x4558_494e;

fn write_u64(out: &mut impl Write, n: u64) -> io::Result<()> {
    out.write_all(&n.to_le_bytes())
}

fn write_string(out: &mut impl Write, s: &[u8]) -> io::Result<()> {
    rix_formats::nar::wire::write_str(out, s)
}

/// Writes `paths` (in this order) as `nix-store --export` does: for each, `1`,
/// its NAR, the magic, its path, references, deriver and `0` (no signature);
/// then `0`. Each NAR is checked against its recorded hash on the way out.
fn export(store: &dyn Store, paths: &[StorePath], out: &mut impl Write) -> Result<()> {
    for p in paths {
        let info = store.path_info(p)?;
        write_u64(out, 1)?;
        let mut hashing = HashingWriter {
            inner: &mut *out,
            hasher: Hasher::new(info.nar_hash.algo()),
        };
        match store.nar_from_path(p, &mut hashing) {
            Ok(()) => {}
            Err(rix_store::local_store::StoreError::Archive(
                rix_store::archive::ArchiveError::Write(e),
            )) => return Err(e.into()),
            Err(e) => bail!("cannot export '{}': {e}", store.print(p)),
        }
        let hash = hashing.hasher.finish();
        if hash != info.nar_hash {
            bail!(
                "cannot export '{}': its contents were modified (NAR hash {}, the database says {}); run `rix store verify --check-contents`",
                store.print(p),
                hash,
                info.nar_hash
            );
        }
        write_u64(out, EXPORT_MAGIC)?;
        write_string(out, store.print(p).as_bytes())?;
        write_u64(out, info.references.len() as u64)?;
        for r in &info.references {
            write_string(out, store.print(r).as_bytes())?;
        }
        write_string(
            out,
            info.deriver
                .as_ref()
                .map(|d| store.print(d))
                .unwrap_or_default()
                .as_bytes(),
        )?;
        write_u64(out, 0)?;
    }
    write_u64(out, 0)?;
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes read, for error offsets.
struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn read_u64(input: &mut Counting<impl Read>, what: &str) -> Result<u64> {
    let at = input.pos;
    let mut b = [0u8; 8];
    input
        .read_exact(&mut b)
        .map_err(|e| anyhow!("export stream ends at byte {at} where {what} was expected ({e})"))?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(input: &mut Counting<impl Read>, what: &str, max: u64) -> Result<String> {
    let at = input.pos;
    let len = read_u64(input, what)?;
    if len > max {
        bail!("bad export stream: {what} at byte {at} is {len} bytes long, at most {max} allowed");
    }
    let padded = len + rix_formats::nar::wire::padding_len(len) as u64;
    let mut buf = vec![0u8; padded as usize];
    input
        .read_exact(&mut buf)
        .map_err(|e| anyhow!("export stream ends inside {what} at byte {at} ({e})"))?;
    if buf[len as usize..].iter().any(|&b| b != 0) {
        bail!("bad export stream: non-zero padding after {what} at byte {at}");
    }
    buf.truncate(len as usize);
    String::from_utf8(buf)
        .map_err(|_| anyhow!("bad export stream: {what} at byte {at} is not UTF-8"))
}

/// Copies the NAR at the start of `input` (validated, and re-encoded, which
/// gives the same bytes) to an unnamed temporary file, hashing it: its hash
/// must be known before it is added. Returns the file, the hash and the size.
fn spool_nar(input: &mut Counting<impl Read>) -> Result<(File, rix_formats::Hash, u64)> {
    let nar_start = input.pos;
    let spool = tempfile::tempfile().context("cannot create a temporary file for the NAR")?;
    let mut hashing = HashingWriter {
        inner: BufWriter::new(spool.try_clone()?),
        hasher: Hasher::new(HashAlgo::Sha256),
    };
    {
        let mut reader = NarReader::new(&mut *input);
        let mut writer = NarWriter::new(&mut hashing);
        rix_formats::nar::copy(&mut reader, &mut writer).map_err(|e| {
            anyhow!("bad NAR in the export stream (starting at byte {nar_start}): {e}")
        })?;
        writer
            .finish()
            .map_err(|e| anyhow!("cannot spool the NAR: {e}"))?;
    }
    hashing.flush().context("cannot spool the NAR")?;
    Ok((spool, hashing.hasher.finish(), input.pos - nar_start))
}

/// Reads a `nix-store --export` stream and adds each path (see [`export`]).
/// Returns the imported paths in stream order.
pub(crate) fn import(store: &dyn Store, input: &mut impl Read) -> Result<Vec<StorePath>> {
    let mut input = Counting {
        inner: input,
        pos: 0,
    };
    let mut imported = Vec::new();
    loop {
        let at = input.pos;
        match read_u64(&mut input, "the next path's marker (1, or 0 at the end)")? {
            0 => break,
            1 => {}
            n => bail!("bad export stream: marker {n} at byte {at}, expected 1 (a path follows) or 0 (the end)"),
        }
        let (mut spool, nar_hash, size) = spool_nar(&mut input)?;
        let at = input.pos;
        let magic = read_u64(&mut input, "the export magic")?;
        if magic != EXPORT_MAGIC {
            bail!("bad export stream: magic {magic:#x} at byte {at}, expected {EXPORT_MAGIC:#x} (is this `nix-store --export` output?)");
        }
        let parse = |s: &str, what: &str| {
            store.store_dir().parse(s).map_err(|e| {
                anyhow!(
                    "bad export stream: {what} '{s}' is not a path of the store {}: {e}",
                    store.store_dir()
                )
            })
        };
        let path = parse(&read_string(&mut input, "the store path", 4096)?, "path")?;
        let count = read_u64(&mut input, "the number of references")?;
        if count > 1 << 20 {
            bail!(
                "bad export stream: {count} references for '{}'",
                store.print(&path)
            );
        }
        let mut references = BTreeSet::new();
        for _ in 0..count {
            references.insert(parse(
                &read_string(&mut input, "a reference", 4096)?,
                "reference",
            )?);
        }
        let deriver = read_string(&mut input, "the deriver", 4096)?;
        let deriver = if deriver.is_empty() {
            None
        } else {
            Some(parse(&deriver, "deriver")?)
        };
        let at = input.pos;
        if read_u64(&mut input, "the signature marker")? != 0 {
            bail!("bad export stream: signed exports (marker at byte {at}) are not supported");
        }
        for r in &references {
            if r != &path && !store.is_valid(r)? {
                bail!(
                    "cannot import '{}': its reference '{}' is not valid (export with its closure, dependencies first)",
                    store.print(&path),
                    store.print(r)
                );
            }
        }
        let mut info = ValidPathInfo::new(path.clone(), nar_hash, size);
        info.references = references;
        info.deriver = deriver;
        spool.rewind()?;
        store
            .add_to_store_nar(&info, &mut BufReader::new(spool), AddFlags::default())
            .with_context(|| format!("cannot import '{}'", store.print(&path)))?;
        imported.push(path);
    }
    Ok(imported)
}
