//! Garbage collection, compatible with Nix's (`LocalStore::collectGarbage`):
//! every path not reachable from a root is deleted, and so is every entry of
//! the store directory that is not a valid path (leftovers of interrupted
//! writes, stale temporaries of dead processes, `.lock` files nobody holds).
//!
//! 1. Take the global GC lock exclusively ([`crate::gc_lock`]) and start the
//!    roots server ([`server`]): from now on new temporary roots arrive there.
//! 2. Read the temporary roots of live processes, then load the whole reference
//!    graph in one pass over the database ([`graph`]), then find the permanent
//!    and runtime roots ([`crate::roots`]).
//! 3. Mark the closure of the roots (following references, and with
//!    `keep-derivations` / `keep-outputs` the deriver and output edges, as Nix's
//!    `computeFSClosure`). Everything else is dead.
//! 4. Delete dead paths referrers first, in batches: per batch, drop paths that
//!    became temporary roots meanwhile (and keep their closures), announce the
//!    batch as pending to the roots server, append the batch's names to the
//!    journal ([`pending`]), remove the rows in one transaction, *then* remove
//!    the files (on several threads). A collector killed at any point leaves
//!    rows only for paths whose files are complete; files without rows are
//!    named in the journal (so the verifier knows them for what they are) and
//!    removed by the next run.
//! 5. Remove `.links` entries no path uses any more; drop from the journal what
//!    is gone.

mod delete;
pub mod graph;
pub mod pending;
pub(crate) mod server;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rix_formats::StorePath;
use thiserror::Error;

use crate::db::DbError;
use crate::gc_lock::GcLock;
use crate::layout::StoreLayout;
use crate::local_store::LocalStore;
use crate::lock::{lock_file, LockKind};
use crate::roots::{find_roots_no_temp, Roots, RootsObserver};
use crate::temp_roots::read_temp_roots;

pub use delete::{delete_counting, io_threads, parallel_map, size_counting};
use graph::{EdgeKind, Graph, Node};
use server::RootsServer;

#[derive(Debug, Error)]
pub enum GcError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{}", .0.join("\n"))]
    StillAlive(Vec<String>),
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcAction {
    /// Delete everything dead (`nix-store --gc`).
    DeleteDead,
    /// Say what [`GcAction::DeleteDead`] would delete and free, deleting nothing.
    DryRun,
    /// List dead paths (`--print-dead`).
    ReturnDead,
    /// List live paths (`--print-live`).
    ReturnLive,
    /// Delete exactly these paths, refusing live or referenced ones (`nix-store --delete`).
    DeleteSpecific(Vec<StorePath>),
}

/// Options of a collection.
#[derive(Debug, Clone)]
pub struct GcOptions {
    pub action: GcAction,
    /// Stop after freeing more than this many bytes (`u64::MAX`: no limit).
    pub max_freed: u64,
    /// `keep-outputs`: a live derivation keeps its outputs.
    pub keep_outputs: bool,
    /// `keep-derivations`: a live path keeps its deriver.
    pub keep_derivations: bool,
}

impl GcOptions {
    pub fn new(action: GcAction) -> Self {
        Self {
            action,
            max_freed: u64::MAX,
            keep_outputs: false,
            keep_derivations: true,
        }
    }
}

/// What a collection did (or, for the `Return*` actions and dry runs, found).
#[derive(Debug, Default, Clone)]
pub struct GcResults {
    /// Printed paths of the entries deleted (in deletion order) or listed (sorted).
    pub paths: Vec<String>,
    /// Bytes freed (or that would be freed), counted as Nix counts them.
    pub bytes_freed: u64,
    /// What hard links through `.links` still save, as Nix reports it (deletions only).
    pub links_saving: Option<i64>,
    /// Entries whose deletion failed (their rows are gone; the next run retries).
    pub errors: Vec<String>,
}

/// Progress of a collection; Nix prints these lines at its default verbosity.
pub trait GcObserver: Sync {
    fn info(&self, message: &str);
    /// About to delete this entry (printed path).
    fn deleting(&self, _path: &str) {}
}

/// A [`GcObserver`] as a [`RootsObserver`].
struct RootsInfo<'a>(&'a dyn GcObserver);

impl RootsObserver for RootsInfo<'_> {
    fn info(&self, message: &str) {
        self.0.info(message);
    }
}

/// Says nothing.
pub struct Quiet;

impl GcObserver for Quiet {
    fn info(&self, _: &str) {}
}

/// Paths deleted per database transaction.
const BATCH: usize = 2048;

/// Runs the collector (see the module docs).
pub fn collect_garbage(
    store: &LocalStore,
    options: &GcOptions,
    observer: &dyn GcObserver,
) -> Result<GcResults, GcError> {
    let layout = store.layout();
    let should_delete = matches!(
        options.action,
        GcAction::DeleteDead | GcAction::DeleteSpecific(_)
    );
    if let GcAction::DeleteSpecific(paths) = &options.action {
        if paths.is_empty() {
            return Ok(GcResults::default());
        }
    }
    if should_delete {
        // Space Nix reserves so that a collection can run on a full disk.
        let _ = std::fs::remove_file(layout.db_dir().join("reserved"));
    }

    let _gc_lock = GcLock::acquire(layout, LockKind::Exclusive, || {
        observer.info("waiting for the big garbage collector lock...")
    })?;
    let server = RootsServer::start(
        crate::gc_lock::gc_socket_path(layout),
        layout.store_dir.clone(),
    )?;

    observer.info("finding garbage collector roots...");
    // Temporary roots first: any later one arrives through the server.
    let mut temp_root_paths: Vec<StorePath> = Vec::new();
    {
        let files = read_temp_roots(layout, |p| {
            observer.info(&format!(
                "removing stale temporary roots file '{}'",
                p.display()
            ))
        })?;
        let mut shared = server.lock();
        for p in files.iter().flat_map(|f| &f.paths) {
            if let Ok(path) = store.parse_path(p) {
                shared.temp_roots.insert(path.hash_part().to_owned());
                temp_root_paths.push(path);
            }
        }
    }
    let graph = {
        let mut db = store.db();
        let prefix = format!("{}/", layout.store_dir);
        Graph::load(
            db.connection(),
            &prefix,
            options.keep_outputs,
            options.keep_derivations,
        )
        .map_err(|e| db.sql_error(e))?
    };
    let is_valid = |p: &StorePath| graph.lookup(&p.to_string()).is_some();
    let roots = find_roots_no_temp(store, &is_valid, true, true, &RootsInfo(observer))?;

    let mut alive = vec![false; graph.len()];
    let root_nodes: Vec<Node> = roots
        .keys()
        .chain(&temp_root_paths)
        .filter_map(|p| graph.lookup(&p.to_string()))
        .collect();
    graph.mark(root_nodes.iter().copied(), &mut alive);

    let entries = scan_store_dir(layout, &graph)?;
    let mut results = GcResults::default();
    let print = |base: &str| format!("{}/{base}", layout.store_dir);

    if options.action == GcAction::ReturnLive {
        observer.info("determining live/dead paths...");
        let shared = server.lock();
        let mut live: BTreeSet<String> = (0..graph.len())
            .filter(|&n| alive[n])
            .map(|n| print(&graph.names[n]))
            .collect();
        for e in &entries {
            if let Entry::Invalid { name, hash } = e {
                if shared.temp_roots.contains(hash) {
                    live.insert(print(name));
                }
            }
        }
        results.paths = live.into_iter().collect();
        return Ok(results);
    }

    // What is dead: rows not marked, and entries that are not valid paths.
    let mut dead: Vec<bool> = alive.iter().map(|a| !a).collect();
    let mut invalid: Vec<String> = Vec::new();
    match &options.action {
        GcAction::DeleteSpecific(targets) => {
            let wanted = specific(store, &graph, &roots, &temp_root_paths, &alive, targets)?;
            dead = vec![false; graph.len()];
            for n in wanted.valid {
                dead[n as usize] = true;
            }
            invalid = wanted.invalid;
        }
        _ => {
            let shared = server.lock();
            for e in &entries {
                let protected = match e {
                    Entry::Valid(_) => continue,
                    Entry::Invalid { hash, .. } => shared.temp_roots.contains(hash),
                    Entry::Other { name } => other_is_protected(layout, name, &shared.temp_roots),
                };
                if !protected {
                    invalid.push(e.name(&graph).to_owned());
                }
            }
        }
    }

    if matches!(options.action, GcAction::ReturnDead | GcAction::DryRun) {
        observer.info("determining live/dead paths...");
        let mut listed: BTreeSet<String> = (0..graph.len())
            .filter(|&n| dead[n])
            .map(|n| print(&graph.names[n]))
            .collect();
        listed.extend(invalid.iter().map(|n| print(n)));
        if options.action == GcAction::DryRun {
            let names: Vec<&String> = listed.iter().collect();
            let prefix_len = layout.store_dir.as_str().len() + 1;
            let sizes = parallel_map(&names, io_threads(), |p| {
                size_counting(&layout.real_store_dir.join(&p[prefix_len..])).unwrap_or(0)
            });
            results.bytes_freed = sizes.iter().sum();
        }
        results.paths = listed.into_iter().collect();
        return Ok(results);
    }

    if options.max_freed == 0 {
        return Ok(results);
    }
    observer.info("deleting garbage...");
    let mut deleter = Deleter {
        store,
        graph: &graph,
        server: &server,
        observer,
        alive: &mut alive,
        max_freed: options.max_freed,
        results: &mut results,
        journal: pending::Journal::new(layout),
    };
    let stopped = deleter.delete_invalid(&invalid) || deleter.delete_valid(&dead)?;
    if stopped {
        observer.info(&format!(
            "deleted more than {} bytes; stopping",
            options.max_freed
        ));
    }
    drop(server);
    remove_unused_links(layout, &mut results, observer)?;
    pending::prune_journal(layout, |name| {
        std::fs::symlink_metadata(layout.real_store_dir.join(name)).is_ok()
            && !StorePath::from_base_name(name).is_ok_and(|p| store.is_valid(&p).unwrap_or(true))
    })?;
    Ok(results)
}

/// Finishes the deletions an interrupted collection left pending (entries
/// named in its journal, [`pending`], that are still there without rows), as
/// `rix store delete` of just those entries would: under the exclusive GC lock,
/// sparing any whose path became a temporary root (a process writing it anew).
/// `rix store verify --repair` runs this; any collection does it too.
pub fn finish_pending_deletions(
    store: &LocalStore,
    observer: &dyn GcObserver,
) -> Result<GcResults, GcError> {
    let layout = store.layout();
    let mut targets = Vec::new();
    for name in pending::read_journal(layout)? {
        let Ok(p) = StorePath::from_base_name(&name) else {
            continue;
        };
        if !store.is_valid(&p).unwrap_or(true)
            && std::fs::symlink_metadata(layout.real_path(&p)).is_ok()
        {
            targets.push(p);
        }
    }
    if targets.is_empty() {
        return Ok(GcResults::default());
    }
    let options = GcOptions::new(GcAction::DeleteSpecific(targets));
    collect_garbage(store, &options, observer)
}

/// An entry of the store directory.
enum Entry {
    Valid(Node),
    /// Named like a store path but not valid.
    Invalid {
        name: String,
        hash: String,
    },
    /// Anything else (temporary files, junk).
    Other {
        name: String,
    },
}

impl Entry {
    fn name<'a>(&'a self, graph: &'a Graph) -> &'a str {
        match self {
            Entry::Valid(n) => &graph.names[*n as usize],
            Entry::Invalid { name, .. } | Entry::Other { name } => name,
        }
    }
}

fn scan_store_dir(layout: &StoreLayout, graph: &Graph) -> io::Result<Vec<Entry>> {
    let dir = &layout.real_store_dir;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| crate::gc_lock::annotate(e, dir))? {
        let entry = entry.map_err(|e| crate::gc_lock::annotate(e, dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".links" {
            continue;
        }
        if let Some(n) = graph.lookup(&name) {
            out.push(Entry::Valid(n));
        } else if let Ok(p) = StorePath::from_base_name(&name) {
            out.push(Entry::Invalid {
                hash: p.hash_part().to_owned(),
                name,
            });
        } else {
            out.push(Entry::Other { name });
        }
    }
    Ok(out)
}

/// Whether a non-store-path entry is in use: rix's temporary files of paths
/// someone holds as temporary roots, and [`temporary_in_use`] ones.
fn other_is_protected(layout: &StoreLayout, name: &str, temp_roots: &HashSet<String>) -> bool {
    if let Some(rest) = name.strip_prefix(".rix-tmp-") {
        // .rix-tmp-<pid>-<n>-<hash>
        let hash = rest.splitn(3, '-').nth(2).unwrap_or_default();
        if temp_roots.contains(hash.get(..32).unwrap_or(hash)) {
            return true;
        }
    }
    temporary_in_use(layout, name)
}

/// Whether a temporary entry of the store directory belongs to a live process:
/// rix's temporaries ([`crate::local_store::temp_name`], and the older
/// `.rix-tmp-<pid>-...` and `.tmp-link-<pid>-...`), and Nix's `tmp-*`
/// directories while locked.
pub(crate) fn temporary_in_use(layout: &StoreLayout, name: &str) -> bool {
    if let Some(pid) = crate::local_store::temp_owner(name) {
        return process_alive(pid);
    }
    if let Some(rest) = name.strip_prefix(".tmp-link-") {
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        return pid.is_some_and(process_alive);
    }
    if name.starts_with("tmp-") {
        let path = layout.real_store_dir.join(name);
        return match std::fs::File::open(&path) {
            Ok(f) => !lock_file(&f, LockKind::Exclusive, false).unwrap_or(false),
            Err(_) => false,
        };
    }
    false
}

fn process_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Deletes in batches, keeping paths that become temporary roots meanwhile.
struct Deleter<'a> {
    store: &'a LocalStore,
    graph: &'a Graph,
    server: &'a RootsServer,
    observer: &'a dyn GcObserver,
    alive: &'a mut [bool],
    max_freed: u64,
    results: &'a mut GcResults,
    journal: pending::Journal,
}

impl Deleter<'_> {
    /// Marks the closures of roots that arrived through the server.
    fn take_new_roots(&mut self, shared: &mut server::Shared) {
        let new: Vec<Node> = shared
            .new_roots
            .drain(..)
            .filter_map(|h| self.graph.lookup_hash(&h))
            .collect();
        self.graph.mark(new, self.alive);
    }

    fn limit_reached(&self) -> bool {
        self.results.bytes_freed > self.max_freed
    }

    /// Deletes entries that are not valid paths. Returns true when the byte
    /// limit stopped the collection.
    fn delete_invalid(&mut self, names: &[String]) -> bool {
        let layout = self.store.layout();
        for chunk in names.chunks(BATCH) {
            let batch: Vec<&String> = {
                let mut shared = self.server.lock();
                let batch: Vec<&String> = chunk
                    .iter()
                    .filter(|name| {
                        let hash = graph::hash_key(name)
                            .map(|h| String::from_utf8_lossy(&h).into_owned())
                            .unwrap_or_default();
                        !shared.temp_roots.contains(&hash)
                    })
                    .collect();
                let hashes = batch
                    .iter()
                    .filter_map(|n| graph::hash_key(n))
                    .map(|h| String::from_utf8_lossy(&h).into_owned())
                    .collect();
                self.server.set_pending(&mut shared, hashes);
                batch
            };
            let outcomes = parallel_map(&batch, io_threads(), |name| {
                let path = layout.real_store_dir.join(name);
                if name.ends_with(".lock") {
                    delete_lock_file(&path)
                } else {
                    delete_counting(&path).map(Some)
                }
            });
            self.server.clear_pending();
            for (name, outcome) in batch.iter().zip(outcomes) {
                let printed = format!("{}/{name}", layout.store_dir);
                match outcome {
                    Ok(Some(freed)) => {
                        self.observer.deleting(&printed);
                        self.results.bytes_freed += freed;
                        self.results.paths.push(printed);
                    }
                    Ok(None) => {}
                    Err(e) => self.results.errors.push(e.to_string()),
                }
            }
            if self.limit_reached() {
                return true;
            }
        }
        false
    }

    /// Deletes dead valid paths, referrers first. Returns true when the byte
    /// limit stopped the collection. Fails when the journal cannot be written
    /// (before any row of the batch is removed).
    fn delete_valid(&mut self, dead: &[bool]) -> io::Result<bool> {
        let order = self.graph.deletion_order(dead);
        let layout = self.store.layout();
        let mut i = 0;
        while i < order.len() {
            // The next batch: BATCH paths, or (under a byte limit) about as many
            // as the remaining budget, judged by their NAR sizes.
            let budget = self.max_freed.saturating_sub(self.results.bytes_freed);
            let mut end = i;
            let mut expected = 0u64;
            while end < order.len() && end - i < BATCH {
                expected = expected.saturating_add(self.graph.nar_sizes[order[end] as usize]);
                end += 1;
                if self.max_freed != u64::MAX && expected > budget {
                    break;
                }
            }
            let batch: Vec<Node> = {
                let mut shared = self.server.lock();
                self.take_new_roots(&mut shared);
                let batch: Vec<Node> = order[i..end]
                    .iter()
                    .copied()
                    .filter(|&n| !self.alive[n as usize])
                    .collect();
                let hashes = batch
                    .iter()
                    .map(|&n| self.graph.names[n as usize][..32].to_owned())
                    .collect();
                self.server.set_pending(&mut shared, hashes);
                batch
            };
            i = end;
            if batch.is_empty() {
                self.server.clear_pending();
                continue;
            }
            if let Err(e) = self
                .journal
                .record(batch.iter().map(|&n| &*self.graph.names[n as usize]))
            {
                self.server.clear_pending();
                return Err(e);
            }
            let removed = self.invalidate(&batch);
            let names: Vec<&str> = removed
                .iter()
                .map(|&n| &*self.graph.names[n as usize])
                .collect();
            for name in &names {
                self.observer
                    .deleting(&format!("{}/{name}", layout.store_dir));
            }
            let freed = parallel_map(&names, io_threads(), |name| {
                delete_counting(&layout.real_store_dir.join(name))
            });
            self.server.clear_pending();
            for (name, f) in names.iter().zip(freed) {
                match f {
                    Ok(b) => self.results.bytes_freed += b,
                    Err(e) => self.results.errors.push(e.to_string()),
                }
                self.results
                    .paths
                    .push(format!("{}/{name}", layout.store_dir));
            }
            if self.limit_reached() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes the rows of `batch` in one transaction; if that fails (a path
    /// gained a referrer meanwhile, which only a process ignoring the temporary
    /// roots protocol can cause), one by one, keeping those that cannot go.
    /// Returns the nodes whose rows are gone.
    fn invalidate(&mut self, batch: &[Node]) -> Vec<Node> {
        let mut db = self.store.db();
        let conn = db.connection();
        let all = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached("delete from ValidPaths where id = ?")?;
                for &n in batch {
                    stmt.execute([self.graph.ids[n as usize]])?;
                }
            }
            tx.commit()
        })();
        if all.is_ok() {
            return batch.to_vec();
        }
        let mut removed = Vec::new();
        for &n in batch {
            match conn.execute(
                "delete from ValidPaths where id = ?",
                [self.graph.ids[n as usize]],
            ) {
                Ok(_) => removed.push(n),
                Err(e) => {
                    self.alive[n as usize] = true;
                    self.observer.info(&format!(
                        "keeping '{}/{}': {e}",
                        self.store.layout().store_dir,
                        self.graph.names[n as usize]
                    ));
                }
            }
        }
        removed
    }
}

/// Deletes a `.lock` file nobody holds, the way a holder releases it (unlink,
/// then mark the open file stale so that waiters retry). `Ok(None)`: in use.
fn delete_lock_file(path: &Path) -> io::Result<Option<u64>> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Not a regular file we can open: delete it as any other entry.
        Err(_) => return delete_counting(path).map(Some),
    };
    if !file.metadata()?.is_file() {
        return delete_counting(path).map(Some);
    }
    // rix and Nix both lock with flock.
    if !lock_file(&file, LockKind::Exclusive, false)? {
        return Ok(None);
    }
    let freed = delete_counting(path)?;
    use std::io::Write;
    let _ = (&file).write_all(b"d");
    Ok(Some(freed))
}

/// Removes `.links` entries with one link left (no store file uses them) and
/// reports what the remaining ones save, as Nix does after a collection.
fn remove_unused_links(
    layout: &StoreLayout,
    results: &mut GcResults,
    observer: &dyn GcObserver,
) -> io::Result<()> {
    let links = layout.real_store_dir.join(".links");
    let names: Vec<PathBuf> = match std::fs::read_dir(&links) {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::gc_lock::annotate(e, &links)),
    };
    observer.info("deleting unused links...");
    let sizes = parallel_map(&names, io_threads(), |p| -> io::Result<(i64, i64)> {
        let m = std::fs::symlink_metadata(p)?;
        if m.nlink() == 1 {
            std::fs::remove_file(p)?;
            return Ok((0, 0));
        }
        let size = m.size() as i64;
        Ok((size, (m.nlink() as i64 - 1) * size))
    });
    let (mut actual, mut unshared) = (0i64, 0i64);
    for s in sizes {
        match s {
            Ok((a, u)) => {
                actual += a;
                unshared += u;
            }
            Err(e) => results.errors.push(e.to_string()),
        }
    }
    let overhead = std::fs::metadata(&links).map_or(0, |m| m.blocks() as i64 * 512);
    let saving = unshared - actual - overhead;
    results.links_saving = Some(saving);
    observer.info(&format!(
        "note: currently hard linking saves {:.2} MiB",
        saving as f64 / (1024.0 * 1024.0)
    ));
    Ok(())
}

/// Paths a `DeleteSpecific` may delete.
struct Specific {
    valid: Vec<Node>,
    invalid: Vec<String>,
}

/// Checks that every requested path can go: not alive, and every path that
/// keeps it (referrers, and with keep-* settings derivers' and outputs' edges)
/// is requested too. Otherwise says what keeps it.
fn specific(
    store: &LocalStore,
    graph: &Graph,
    roots: &Roots,
    temp_roots: &[StorePath],
    alive: &[bool],
    targets: &[StorePath],
) -> Result<Specific, GcError> {
    let layout = store.layout();
    let print = |n: Node| format!("{}/{}", layout.store_dir, graph.names[n as usize]);
    let preds = graph.predecessors();
    let mut wanted: BTreeSet<Node> = BTreeSet::new();
    let mut invalid = Vec::new();
    for t in targets {
        match graph.lookup(&t.to_string()) {
            Some(n) => {
                wanted.insert(n);
            }
            None => {
                if std::fs::symlink_metadata(layout.real_path(t)).is_ok() {
                    invalid.push(t.to_string());
                }
            }
        }
    }
    // Who roots what, for explanations.
    let mut root_links: BTreeMap<Node, Vec<String>> = BTreeMap::new();
    for (p, links) in roots {
        if let Some(n) = graph.lookup(&p.to_string()) {
            root_links
                .entry(n)
                .or_default()
                .extend(links.iter().cloned());
        }
    }
    for p in temp_roots {
        if let Some(n) = graph.lookup(&p.to_string()) {
            root_links
                .entry(n)
                .or_default()
                .push("a temporary root of a running process".into());
        }
    }
    let mut refusals: BTreeMap<Node, String> = BTreeMap::new();
    for &n in &wanted {
        if alive[n as usize] {
            refusals.insert(n, explain_alive(&preds, &root_links, n, &print));
        }
    }
    // Requested paths kept by unrequested (or refused) ones cannot go either.
    loop {
        let mut changed = false;
        for &n in &wanted {
            if refusals.contains_key(&n) {
                continue;
            }
            let keeper = preds[n as usize]
                .iter()
                .find(|(p, _)| !wanted.contains(p) || refusals.contains_key(p));
            if let Some(&(p, kind)) = keeper {
                let why = match kind {
                    EdgeKind::Reference => format!("it is referenced by '{}'", print(p)),
                    EdgeKind::Deriver => {
                        format!("'{}' was built by it (keep-derivations)", print(p))
                    }
                    EdgeKind::Output => {
                        format!("it is an output of '{}' (keep-outputs)", print(p))
                    }
                };
                let also = if wanted.contains(&p) {
                    ", which cannot be deleted"
                } else {
                    ", which is not being deleted"
                };
                refusals.insert(
                    n,
                    format!("cannot delete path '{}' since {why}{also}", print(n)),
                );
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if !refusals.is_empty() {
        return Err(GcError::StillAlive(refusals.into_values().collect()));
    }
    Ok(Specific {
        valid: wanted.into_iter().collect(),
        invalid,
    })
}

/// "cannot delete path P since it is still alive: ..." with a shortest chain
/// from a root.
fn explain_alive(
    preds: &[Vec<(Node, EdgeKind)>],
    root_links: &BTreeMap<Node, Vec<String>>,
    n: Node,
    print: &dyn Fn(Node) -> String,
) -> String {
    // Breadth-first backwards from n to the nearest root; parent[p] = (x, kind):
    // p keeps x alive through an edge of this kind.
    let mut parent: BTreeMap<Node, (Node, EdgeKind)> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([n]);
    let mut seen: HashSet<Node> = HashSet::from([n]);
    let mut found = None;
    while let Some(x) = queue.pop_front() {
        if root_links.contains_key(&x) {
            found = Some(x);
            break;
        }
        for &(p, kind) in &preds[x as usize] {
            if seen.insert(p) {
                parent.insert(p, (x, kind));
                queue.push_back(p);
            }
        }
    }
    let mut msg = format!("cannot delete path '{}' since it is still alive", print(n));
    let Some(root) = found else {
        return msg;
    };
    let by = root_links[&root].first().cloned().unwrap_or_default();
    if root == n {
        msg.push_str(&format!(": it is a root ({by})"));
        return msg;
    }
    msg.push_str(&format!(": '{}' (root: {by})", print(root)));
    let mut x = root;
    let mut first = true;
    while let Some(&(next, kind)) = parent.get(&x) {
        let how = match kind {
            EdgeKind::Reference => "refers to",
            EdgeKind::Deriver => "has the deriver",
            EdgeKind::Output => "has the output",
        };
        msg.push_str(if first { " " } else { ", which " });
        msg.push_str(&format!("{how} '{}'", print(next)));
        first = false;
        x = next;
    }
    msg
}
