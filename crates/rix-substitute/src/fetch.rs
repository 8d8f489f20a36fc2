//! Fetching planned paths into the local store.
//!
//! Up to `jobs` paths are downloaded at once; a path starts only once its
//! references are valid (as Nix's substitution goals wait for theirs), so the
//! referrers of a path that fails, or that no cache has, are never
//! downloaded. Each download streams: bytes arrive (on the transfer runtime,
//! or from a file), are decompressed, hashed and restored into a temporary
//! name in the store on the worker's thread, holding the path's lock. What
//! the cache sends is bounded by the narinfo: at most `FileSize` bytes
//! downloaded and `NarSize` bytes unpacked (one more is an error: a
//! decompression bomb writes nothing much). Size and hash are checked against
//! the narinfo before anything is registered. The coordinating thread then
//! moves checked paths into place and registers them in batches (one
//! transaction, and one `syncfs` when `fsync-store-paths` is set); whatever
//! fails after unpacking began is removed from the store directory.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use rix_formats::StorePath;
use rix_store::archive;
use rix_store::local_store::LocalStore;
use rix_store::path_info::{now, ValidPathInfo};
use rix_store::write::PathWriter;

use crate::cache::nar_key;
use crate::compression::Compression;
use crate::error::{Result, SubstError};
use crate::observer::{SubstEvent, SubstObserver};
use crate::substituter::{ClosurePlan, Found, Substituter};
use crate::util::{Capped, Counting, Hashing, ReadAhead, Tally, TooBig};

/// NARs at least this big are decompressed on a thread of their own, ahead of
/// hashing and writing.
const READ_AHEAD_FROM: u64 = 8 << 20;

/// What a substitution did.
#[derive(Debug, Default)]
pub struct SubstituteReport {
    /// Paths fetched and registered.
    pub substituted: Vec<StorePath>,
    /// Paths that were valid already (or became valid meanwhile).
    pub already_valid: Vec<StorePath>,
    /// Paths whose download or checks failed, or whose references did.
    pub failed: Vec<(StorePath, SubstError)>,
    /// Paths no cache has (with refused substitutes), and cache errors.
    pub unavailable: Vec<(StorePath, Vec<String>)>,
    pub errors: Vec<SubstError>,
    /// Bytes downloaded (compressed) and unpacked (NAR).
    pub downloaded: u64,
    pub nar_bytes: u64,
}

impl SubstituteReport {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.unavailable.is_empty() && self.errors.is_empty()
    }

    /// One message for everything that went wrong.
    pub fn problem(&self, store_dir: &rix_formats::StoreDir) -> String {
        let mut lines: Vec<String> = self.failed.iter().map(|(_, e)| e.to_string()).collect();
        let plan = ClosurePlan {
            unavailable: self.unavailable.clone(),
            ..ClosurePlan::default()
        };
        if !self.unavailable.is_empty() {
            lines.push(plan.problem(store_dir));
        }
        lines.extend(self.errors.iter().map(|e| e.to_string()));
        lines.join("\n")
    }
}

/// A path restored and checked under a temporary name, its lock held
/// (dropped unregistered, it is removed).
struct Prepared<'a> {
    info: ValidPathInfo,
    writer: PathWriter<'a>,
    downloaded: u64,
    started: Instant,
}

enum Outcome<'a> {
    Prepared(Box<Prepared<'a>>),
    AlreadyValid,
}

impl Substituter {
    /// Makes `paths` valid with their closures, from the caches.
    pub fn substitute(
        &self,
        store: &LocalStore,
        paths: &[StorePath],
        observer: &dyn SubstObserver,
    ) -> Result<SubstituteReport> {
        let plan = self.plan(store, paths, observer)?;
        Ok(self.fetch(store, plan, observer))
    }

    /// Fetches what `plan` says (see the module docs).
    pub fn fetch(
        &self,
        store: &LocalStore,
        plan: ClosurePlan,
        observer: &dyn SubstObserver,
    ) -> SubstituteReport {
        let ClosurePlan {
            fetch,
            valid,
            unavailable,
            errors,
        } = plan;
        let mut report = SubstituteReport {
            already_valid: valid.into_iter().collect(),
            unavailable,
            errors,
            ..SubstituteReport::default()
        };
        if fetch.is_empty() {
            return report;
        }
        let order = topo_order(&fetch);
        observer.event(SubstEvent::Planned {
            paths: &order,
            download_bytes: fetch
                .values()
                .map(|f| f.info.file_size().unwrap_or(f.info.nar_size()))
                .sum(),
            nar_bytes: fetch.values().map(|f| f.info.nar_size()).sum(),
        });
        let caches = self.caches(observer);
        let mut sched = Scheduler::new(&fetch, valid_refs(store, &fetch, &report));
        let jobs = self.config().jobs.clamp(1, order.len());
        let (work_tx, work_rx) = mpsc::channel::<StorePath>();
        let work_rx = Mutex::new(work_rx);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(StorePath, Result<Outcome>)>();
            for _ in 0..jobs {
                let tx = tx.clone();
                let (fetch, work_rx) = (&fetch, &work_rx);
                scope.spawn(move || loop {
                    let next = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(path) = next else { break };
                    let path = &path;
                    let found = &fetch[path];
                    let cache = &caches[found.cache];
                    let started = Instant::now();
                    observer.event(SubstEvent::Started {
                        path,
                        cache: cache.name(),
                        download_size: found.info.file_size(),
                        nar_size: found.info.nar_size(),
                    });
                    let result = fetch_one(
                        store,
                        cache.name(),
                        cache.store.as_ref(),
                        path,
                        found,
                        observer,
                        started,
                    );
                    if let Err(e) = &result {
                        self.forget(path);
                        observer.event(SubstEvent::Finished {
                            path,
                            cache: cache.name(),
                            downloaded: 0,
                            elapsed: started.elapsed(),
                            error: Some(&e.to_string()),
                        });
                    }
                    if tx.send((path.clone(), result)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let mut reg = Registrar {
                store,
                fetch: &fetch,
                pending: BTreeMap::new(),
                failed: HashMap::new(),
                fsync: self.config().fsync,
            };
            // A path starts only once its references are valid: a referrer
            // of a path that fails is never downloaded.
            let mut in_flight = 0usize;
            for p in order.iter().filter(|p| sched.ready(p)) {
                if work_tx.send(p.clone()).is_ok() {
                    in_flight += 1;
                }
            }
            while in_flight > 0 {
                let Ok(first) = rx.recv() else { break };
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                in_flight -= batch.len();
                let mut done = Vec::new();
                for (path, result) in batch {
                    match result {
                        Ok(Outcome::AlreadyValid) => {
                            report.already_valid.push(path.clone());
                            done.push(path);
                        }
                        Ok(Outcome::Prepared(p)) => {
                            reg.pending.insert(path, p);
                        }
                        Err(e) => {
                            reg.failed.insert(path, e);
                        }
                    }
                }
                done.extend(reg.register_pending(&mut report, caches, observer));
                for p in &done {
                    for d in sched.valid(p) {
                        if work_tx.send(d).is_ok() {
                            in_flight += 1;
                        }
                    }
                }
            }
            drop(work_tx);
            // What never started waits on a reference that failed or that no
            // cache has; in dependency order, so that a transitive referrer
            // names a reference that failed.
            for p in order.iter() {
                if sched.is_valid(p) || reg.failed.contains_key(p) {
                    continue;
                }
                let reference = fetch[p]
                    .info
                    .references()
                    .iter()
                    .find(|r| *r != p && !sched.is_valid(r))
                    .map_or_else(String::new, |r| store.print(r));
                reg.failed.insert(
                    p.clone(),
                    SubstError::ReferenceFailed {
                        path: store.print(p),
                        reference,
                    },
                );
            }
            let mut failed: Vec<(StorePath, SubstError)> = reg.failed.into_iter().collect();
            failed.sort_by(|a, b| a.0.cmp(&b.0));
            report.failed = failed;
        });
        report
    }
}

/// The references of planned paths that are valid (the others are to be
/// fetched, or no cache has them).
fn valid_refs(
    store: &LocalStore,
    fetch: &BTreeMap<StorePath, Found>,
    report: &SubstituteReport,
) -> HashSet<StorePath> {
    let known: HashSet<&StorePath> = report.already_valid.iter().collect();
    fetch
        .values()
        .flat_map(|f| f.info.references())
        .filter(|r| !fetch.contains_key(*r))
        .filter(|r| known.contains(r) || store.is_valid(r).unwrap_or(false))
        .cloned()
        .collect()
}

/// Which planned paths may start: those whose references are all valid.
struct Scheduler {
    /// References of each planned path that are not valid yet.
    waiting: HashMap<StorePath, usize>,
    dependents: HashMap<StorePath, Vec<StorePath>>,
    valid: HashSet<StorePath>,
}

impl Scheduler {
    fn new(fetch: &BTreeMap<StorePath, Found>, valid: HashSet<StorePath>) -> Self {
        let mut waiting = HashMap::new();
        let mut dependents: HashMap<StorePath, Vec<StorePath>> = HashMap::new();
        for (p, f) in fetch {
            let refs: BTreeSet<&StorePath> = f
                .info
                .references()
                .iter()
                .filter(|r| *r != p && !valid.contains(*r))
                .collect();
            for r in &refs {
                dependents.entry((*r).clone()).or_default().push(p.clone());
            }
            waiting.insert(p.clone(), refs.len());
        }
        Self {
            waiting,
            dependents,
            valid,
        }
    }

    fn ready(&self, p: &StorePath) -> bool {
        self.waiting.get(p) == Some(&0)
    }

    fn is_valid(&self, p: &StorePath) -> bool {
        self.valid.contains(p)
    }

    /// Records that `p` became valid; returns the paths that may start now.
    fn valid(&mut self, p: &StorePath) -> Vec<StorePath> {
        if !self.valid.insert(p.clone()) {
            return Vec::new();
        }
        let mut ready = Vec::new();
        for d in self.dependents.get(p).into_iter().flatten() {
            if let Some(n) = self.waiting.get_mut(d) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.push(d.clone());
                }
            }
        }
        ready
    }
}

/// References before referrers.
fn topo_order(fetch: &BTreeMap<StorePath, Found>) -> Vec<StorePath> {
    let mut out = Vec::with_capacity(fetch.len());
    let mut done: BTreeSet<&StorePath> = BTreeSet::new();
    for root in fetch.keys() {
        let mut stack = vec![(root, false)];
        while let Some((p, expanded)) = stack.pop() {
            if done.contains(p) {
                continue;
            }
            if expanded {
                done.insert(p);
                out.push(p.clone());
                continue;
            }
            stack.push((p, true));
            for r in fetch[p].info.references() {
                if r != p && fetch.contains_key(r) && !done.contains(r) {
                    stack.push((r, false));
                }
            }
        }
    }
    out
}

struct Registrar<'a> {
    store: &'a LocalStore,
    fetch: &'a BTreeMap<StorePath, Found>,
    pending: BTreeMap<StorePath, Box<Prepared<'a>>>,
    failed: HashMap<StorePath, SubstError>,
    fsync: bool,
}

impl Registrar<'_> {
    /// Moves the checked paths into place and registers them in one
    /// transaction; returns those registered. When that fails, nothing of
    /// them stays on disk.
    fn register_pending(
        &mut self,
        report: &mut SubstituteReport,
        caches: &[crate::substituter::Cache],
        observer: &dyn SubstObserver,
    ) -> Vec<StorePath> {
        let preps = std::mem::take(&mut self.pending);
        if preps.is_empty() {
            return Vec::new();
        }
        let mut done = Vec::with_capacity(preps.len());
        let mut written = Vec::with_capacity(preps.len());
        for prep in preps.into_values() {
            let Prepared {
                info,
                writer,
                downloaded,
                started,
            } = *prep;
            done.push((info.path.clone(), info.nar_size, downloaded, started));
            written.push((writer, info));
        }
        // On failure, commit leaves nothing of them in the store directory.
        let result = rix_store::write::commit(self.store, written, self.fsync);
        let mut registered = Vec::new();
        for (path, nar_size, downloaded, started) in done {
            let cache = caches[self.fetch[&path].cache].name();
            let error = result
                .as_ref()
                .err()
                .map(|e| format!("cannot register '{}': {e}", self.store.print(&path)));
            observer.event(SubstEvent::Finished {
                path: &path,
                cache,
                downloaded,
                elapsed: started.elapsed(),
                error: error.as_deref(),
            });
            match error {
                None => {
                    report.downloaded += downloaded;
                    report.nar_bytes += nar_size;
                    registered.push(path.clone());
                    report.substituted.push(path);
                }
                Some(message) => {
                    self.failed.insert(path, SubstError::Other(message));
                }
            }
        }
        registered
    }
}

/// Downloads, unpacks and checks one path under a temporary name.
fn fetch_one<'a>(
    store: &'a LocalStore,
    cache_name: &str,
    cache: &dyn crate::cache::BinaryCache,
    path: &StorePath,
    found: &Found,
    observer: &dyn SubstObserver,
    started: Instant,
) -> Result<Outcome<'a>> {
    let info = &found.info;
    let printed = store.print(path);
    let reject = |message: String| SubstError::Rejected {
        path: printed.clone(),
        cache: cache_name.to_owned(),
        message,
    };
    let key = nar_key(info.url()).ok_or_else(|| {
        reject(format!(
            "narinfo URL '{}' is not a file of the cache",
            info.url()
        ))
    })?;
    let compression = Compression::parse(info.compression())
        .ok_or_else(|| reject(format!("unsupported compression '{}'", info.compression())))?;
    let Some(writer) = store.begin_write(path)? else {
        return Ok(Outcome::AlreadyValid);
    };
    let tmp = writer.tmp();
    let file_size = info.file_size();
    let stream = cache
        .open(key, file_size)
        .map_err(|e| reject(format!("{} '{}': {}", e.op, e.key, e.message)))?
        .ok_or_else(|| reject(format!("its NAR '{key}' is missing from the cache")))?;
    let downloaded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tally = Tally {
        inner: stream,
        total: downloaded.clone(),
    };
    let result = (|| {
        let decoded = compression
            .decoder(tally)
            .map_err(|e| reject(format!("cannot decompress ({compression}): {e}")))?;
        // A decompression bomb stops one byte past the announced size.
        let decoded = Capped::new(decoded, info.nar_size(), "the NAR");
        let too_big = decoded.over();
        let decoded: Box<dyn Read + Send> = if info.nar_size() >= READ_AHEAD_FROM {
            Box::new(ReadAhead::new(decoded))
        } else {
            Box::new(decoded)
        };
        let progress = Counting::new(decoded, 1 << 20, |_| {
            observer.event(SubstEvent::Progress {
                path,
                downloaded: downloaded.load(Ordering::Relaxed),
            })
        });
        let mut hashing = Hashing::new(progress);
        let restored = archive::restore(&mut hashing, tmp);
        let (hash, size, mut rest) = hashing.finish();
        // Drain what the decoder left (trailing padding of the compressed file).
        let drained = std::io::copy(&mut rest, &mut std::io::sink());
        drop(rest);
        let got = downloaded.load(Ordering::Relaxed);
        if too_big.load(Ordering::Relaxed) {
            return Err(reject(format!(
                "its NAR decompresses to more than the {} bytes of the narinfo's NarSize \
                 (stopped after {} bytes)",
                info.nar_size(),
                info.nar_size() + 1
            )));
        }
        let cut_off = match (&restored, &drained) {
            (Err(e), _) => TooBig::cause_of(e),
            (_, Err(e)) => TooBig::cause_of(e),
            _ => None,
        };
        if let Some(t) = cut_off {
            return Err(reject(format!(
                "the cache sent more than the {} bytes of the narinfo's FileSize \
                 (stopped after {} bytes)",
                t.limit,
                t.limit + 1
            )));
        }
        if let Err(e) = restored {
            let truncated = file_size
                .filter(|&s| got < s)
                .map(|s| format!(" (download truncated: {got} of {s} bytes)"));
            return Err(reject(format!(
                "invalid NAR: {e}{}",
                truncated.unwrap_or_default()
            )));
        }
        if let Err(e) = drained {
            return Err(reject(format!("bad compressed data after the NAR: {e}")));
        }
        if size != info.nar_size() {
            return Err(reject(format!(
                "NAR has {size} bytes, but the narinfo says {}",
                info.nar_size()
            )));
        }
        if hash != *info.nar_hash() {
            return Err(reject(format!(
                "hash mismatch: the NAR's hash is {hash}, but the narinfo says {}",
                info.nar_hash()
            )));
        }
        writer.canonicalise()?;
        observer.event(SubstEvent::Progress {
            path,
            downloaded: got,
        });
        Ok(got)
    })();
    // On failure, dropping the writer removes what was unpacked.
    let got = result?;
    let mut vpi = ValidPathInfo::new(path.clone(), *info.nar_hash(), info.nar_size());
    vpi.deriver = info.deriver().cloned();
    vpi.references = info.references().iter().cloned().collect();
    vpi.sigs = info.sigs().iter().cloned().collect();
    vpi.ca = info.ca().cloned();
    vpi.registration_time = now();
    Ok(Outcome::Prepared(Box::new(Prepared {
        info: vpi,
        writer,
        downloaded: got,
        started,
    })))
}
