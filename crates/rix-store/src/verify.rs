//! Checking the store against its database, and repairing it (Nix's
//! `verifyStore`, `verifyPath` and `repairPath`).
//!
//! [`verify_store`] reports, without changing anything:
//! - valid paths whose files are gone (rows without files), saying which valid
//!   paths still refer to them;
//! - references to rows that are not valid;
//! - with `check_contents`: paths whose NAR hash (or size) differs from the
//!   record, and `.links` entries whose contents no longer match their name;
//! - entries of the store directory that are not valid paths (files without
//!   rows: garbage, which the collector removes; not an inconsistency), apart
//!   from those an interrupted collection was deleting (named in its journal,
//!   [`crate::gc::pending`]: reported as pending deletions, which the next
//!   collection finishes) and the temporaries of rix processes that are gone
//!   (reported as leftovers, which the next writer of their path removes).
//!
//! [`repair`] fixes what it reported: corrupt `.links` entries are removed (the
//! paths sharing them are repaired on their own), and each broken path gets a
//! fresh copy from a [`PathSource`] (binary caches, a rebuild: the layers above
//! provide it), written under a temporary name, checked against the recorded
//! NAR hash (a rebuilt input-addressed path takes its new contents and hash,
//! see [`Fetched::Rebuilt`]) and swapped in atomically. A missing path no source has is removed
//! from the database when no valid path refers to it, as Nix does.
//!
//! Both hold the GC lock shared, so no collector runs meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rix_formats::hash::{Encoding, HashAlgo};
use rix_formats::{Hash, StorePath};

use crate::canonicalise::{canonicalise, delete_path};
use crate::gc::parallel_map;
use crate::gc_lock::GcLock;
use crate::local_store::{LocalStore, Result, StoreError};
use crate::lock::LockKind;
use crate::lock::PathLock;
use crate::path_info::ValidPathInfo;

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Hash every valid path and every `.links` entry.
    pub check_contents: bool,
}

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A valid path whose files are gone; `referrers` are the valid paths
    /// (other than itself) that refer to it.
    Missing {
        path: String,
        store_path: StorePath,
        referrers: Vec<String>,
    },
    /// Contents that do not have the recorded NAR hash.
    Modified {
        path: String,
        store_path: StorePath,
        expected: Hash,
        actual: Hash,
    },
    /// The recorded NAR size is wrong (the hash matches).
    WrongSize {
        path: String,
        store_path: StorePath,
        expected: u64,
        actual: u64,
    },
    /// Contents that cannot be read.
    Unreadable {
        path: String,
        store_path: StorePath,
        error: String,
    },
    /// A reference to a row that is not a valid path.
    DanglingReference { path: String, reference_id: i64 },
    /// A `.links` entry whose contents do not match its name.
    CorruptLink { link: PathBuf, actual: String },
}

impl Problem {
    /// The store path concerned, when a fresh copy of it would fix the problem.
    pub fn repairable_path(&self) -> Option<&StorePath> {
        match self {
            Self::Missing { store_path, .. }
            | Self::Modified { store_path, .. }
            | Self::WrongSize { store_path, .. }
            | Self::Unreadable { store_path, .. } => Some(store_path),
            Self::DanglingReference { .. } | Self::CorruptLink { .. } => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nix32 = |h: &Hash| h.to_typed_string(Encoding::Nix32);
        match self {
            Self::Missing {
                path, referrers, ..
            } if referrers.is_empty() => write!(f, "path '{path}' disappeared"),
            Self::Missing {
                path, referrers, ..
            } => write!(
                f,
                "path '{path}' disappeared, but it still has valid referrers: {}",
                referrers
                    .iter()
                    .map(|r| format!("'{r}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Modified {
                path,
                expected,
                actual,
                ..
            } => write!(
                f,
                "path '{path}' was modified! expected hash '{}', got '{}'",
                nix32(expected),
                nix32(actual)
            ),
            Self::WrongSize {
                path,
                expected,
                actual,
                ..
            } => write!(
                f,
                "path '{path}' has a NAR of {actual} bytes, the database says {expected}"
            ),
            Self::Unreadable { path, error, .. } => {
                write!(f, "cannot check the contents of '{path}': {error}")
            }
            Self::DanglingReference { path, reference_id } => write!(
                f,
                "path '{path}' refers to database row {reference_id}, which is not a valid path"
            ),
            Self::CorruptLink { link, actual } => {
                let name = link.file_name().unwrap_or_default().to_string_lossy();
                write!(
                    f,
                    "link '{}' was modified! expected hash '{name}', got '{actual}'",
                    link.display()
                )
            }
        }
    }
}

/// What verification found.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// Valid paths looked at.
    pub checked: usize,
    pub problems: Vec<Problem>,
    /// Printed names of entries of the store directory that are not valid paths
    /// (the collector's business; not counted as problems).
    pub garbage: Vec<String>,
    /// Printed names of entries that a collection invalidated and had not
    /// finished deleting when it was interrupted (the next one does).
    pub pending_deletion: Vec<String>,
    /// Printed names of temporaries (`<hash>-rix-tmp-<pid>-<n>`) of rix
    /// processes that are gone: left by a killed writer, removed by the next
    /// writer of that path or by the collector; not counted as problems.
    pub leftovers: Vec<String>,
}

impl VerifyReport {
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Progress messages (Nix prints "reading the Nix store...", ...).
pub trait VerifyObserver: Sync {
    fn info(&self, message: &str);
}

/// Says nothing.
pub struct Quiet;

impl VerifyObserver for Quiet {
    fn info(&self, _: &str) {}
}

/// Checks the store (see the module docs).
pub fn verify_store(
    store: &LocalStore,
    options: VerifyOptions,
    observer: &dyn VerifyObserver,
) -> Result<VerifyReport> {
    let layout = store.layout();
    let _gc = shared_gc_lock(store, observer)?;
    observer.info("reading the store...");
    let names: BTreeSet<String> = {
        let dir = &layout.real_store_dir;
        std::fs::read_dir(dir)
            .map_err(StoreError::io(dir))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()
            .map_err(StoreError::io(dir))?
    };
    let rows = load_rows(store)?;
    let mut report = VerifyReport {
        checked: rows.len(),
        ..VerifyReport::default()
    };

    observer.info("checking path existence...");
    let valid_names: BTreeSet<String> = rows.iter().map(|r| r.path.to_string()).collect();
    let mut present = Vec::new();
    for row in &rows {
        if names.contains(&row.path.to_string()) {
            present.push(row);
            continue;
        }
        let referrers: Vec<String> = store
            .db()
            .referrers(&row.path)?
            .into_iter()
            .filter(|r| *r != row.path)
            .map(|r| store.print(&r))
            .collect();
        report.problems.push(Problem::Missing {
            path: store.print(&row.path),
            store_path: row.path.clone(),
            referrers,
        });
    }
    for (path, reference_id) in dangling_references(store)? {
        report
            .problems
            .push(Problem::DanglingReference { path, reference_id });
    }
    let journal = crate::gc::pending::read_journal(layout)
        .map_err(StoreError::io(crate::gc::pending::journal_path(layout)))?;
    for name in &names {
        if name == ".links" || valid_names.contains(name) || name.ends_with(".lock") {
            continue;
        }
        if crate::gc::temporary_in_use(layout, name) {
            continue;
        }
        let printed = format!("{}/{name}", layout.store_dir);
        if journal.contains(name) {
            report.pending_deletion.push(printed);
        } else if crate::local_store::temp_owner(name).is_some() {
            report.leftovers.push(printed);
        } else {
            report.garbage.push(printed);
        }
    }

    if options.check_contents {
        observer.info("checking link hashes...");
        let links_dir = layout.real_store_dir.join(".links");
        let links: Vec<PathBuf> = match std::fs::read_dir(&links_dir) {
            Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        };
        let threads = hashing_threads();
        for (link, got) in links.iter().zip(parallel_map(&links, threads, |l| {
            crate::archive::hash_path(l, HashAlgo::Sha256).map(|(h, _)| h.to_nix32())
        })) {
            let name = link.file_name().unwrap_or_default().to_string_lossy();
            match got {
                Ok(h) if h == name => {}
                Ok(actual) => report.problems.push(Problem::CorruptLink {
                    link: link.clone(),
                    actual,
                }),
                Err(e) => report.problems.push(Problem::CorruptLink {
                    link: link.clone(),
                    actual: format!("(unreadable: {e})"),
                }),
            }
        }
        observer.info("checking store hashes...");
        let hashed = parallel_map(&present, threads, |row| {
            crate::archive::hash_path(&store.real_path(&row.path), row.nar_hash.algo())
        });
        for (row, got) in present.iter().zip(hashed) {
            let path = store.print(&row.path);
            let store_path = row.path.clone();
            match got {
                Ok((actual, _)) if actual != row.nar_hash => {
                    report.problems.push(Problem::Modified {
                        path,
                        store_path,
                        expected: row.nar_hash,
                        actual,
                    })
                }
                Ok((_, size)) if row.nar_size != 0 && size != row.nar_size => {
                    report.problems.push(Problem::WrongSize {
                        path,
                        store_path,
                        expected: row.nar_size,
                        actual: size,
                    })
                }
                Ok(_) => {}
                Err(e) => report.problems.push(Problem::Unreadable {
                    path,
                    store_path,
                    error: e.to_string(),
                }),
            }
        }
    }
    Ok(report)
}

fn shared_gc_lock(store: &LocalStore, observer: &dyn VerifyObserver) -> Result<GcLock> {
    let layout = store.layout();
    GcLock::acquire(layout, LockKind::Shared, || {
        observer.info("waiting for the big garbage collector lock...")
    })
    .map_err(|source| StoreError::Io {
        path: layout.state_dir.join("gc.lock"),
        source,
    })
}

fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

struct Row {
    path: StorePath,
    nar_hash: Hash,
    nar_size: u64,
}

fn load_rows(store: &LocalStore) -> Result<Vec<Row>> {
    let prefix = format!("{}/", store.layout().store_dir);
    let mut db = store.db();
    let rows: rusqlite::Result<Vec<(String, String, Option<i64>)>> = db
        .connection()
        .prepare("select path, hash, narSize from ValidPaths")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        });
    let rows = rows.map_err(|e| db.sql_error(e))?;
    let corrupt = |path: &str, what: String| {
        StoreError::Db(crate::db::DbError::Corrupt {
            path: path.to_owned(),
            what,
        })
    };
    rows.into_iter()
        .map(|(path, hash, size)| {
            let base = path
                .strip_prefix(&prefix)
                .ok_or_else(|| corrupt(&path, "not in the store directory".into()))?;
            Ok(Row {
                path: StorePath::from_base_name(base).map_err(|e| corrupt(&path, e.to_string()))?,
                nar_hash: Hash::parse_any(&hash, None)
                    .map_err(|e| corrupt(&path, e.to_string()))?,
                nar_size: size.unwrap_or(0).max(0) as u64,
            })
        })
        .collect()
}

/// `Refs` rows whose reference is not a valid path (impossible while foreign
/// keys are enforced, but a database written without them can have them).
fn dangling_references(store: &LocalStore) -> Result<Vec<(String, i64)>> {
    let mut db = store.db();
    let found: rusqlite::Result<Vec<(String, i64)>> = db
        .connection()
        .prepare(
            "select v.path, r.reference from Refs r join ValidPaths v on r.referrer = v.id \
             where not exists (select 1 from ValidPaths w where w.id = r.reference)",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect());
    found.map_err(|e| db.sql_error(e).into())
}

/// Where fresh copies of store paths come from (binary caches, a rebuild):
/// provided by the layers above the store.
pub trait PathSource: Sync {
    /// Writes a fresh copy of `info.path` at `dest`, which does not exist (a
    /// temporary name in the store directory), and says what it is. The
    /// caller holds the path's lock.
    fn fetch(&self, info: &ValidPathInfo, dest: &Path) -> std::result::Result<Fetched, String>;
}

/// What a [`PathSource`] wrote.
#[derive(Debug)]
pub enum Fetched {
    /// Nothing: this source has no copy of the path and cannot make one.
    Unavailable,
    /// A copy of the recorded contents: it must have the recorded NAR hash.
    Copy,
    /// A rebuild from the path's deriver, described as a build output. An
    /// input-addressed path takes what the rebuild produced, as Nix's repair
    /// does (a builder need not be deterministic): its row gets the new NAR
    /// hash and size (the references must be the recorded ones). A
    /// content-addressed path must come out with the recorded NAR hash.
    Rebuilt(Box<ValidPathInfo>),
}

/// What [`repair`] did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Paths that got a fresh copy.
    pub repaired: Vec<String>,
    /// Missing paths nobody refers to and no source has: removed from the database.
    pub invalidated: Vec<String>,
    /// Corrupt `.links` entries removed.
    pub removed_links: Vec<PathBuf>,
    /// What could not be fixed, and why.
    pub failed: Vec<String>,
}

/// Fixes the problems `report` found (see the module docs). `source` may be
/// `None` when there is nowhere to fetch from.
pub fn repair(
    store: &LocalStore,
    report: &VerifyReport,
    source: Option<&dyn PathSource>,
    observer: &dyn VerifyObserver,
) -> Result<RepairReport> {
    let _gc = shared_gc_lock(store, observer)?;
    let mut out = RepairReport::default();
    for problem in &report.problems {
        if let Problem::CorruptLink { link, .. } = problem {
            match std::fs::remove_file(link) {
                Ok(()) => {
                    observer.info(&format!("removed link '{}'", link.display()));
                    out.removed_links.push(link.clone());
                }
                Err(e) => out.failed.push(format!(
                    "cannot remove corrupt link '{}': {e}",
                    link.display()
                )),
            }
        }
    }
    // The first problem of each broken path.
    let mut broken: BTreeMap<&StorePath, &Problem> = BTreeMap::new();
    for problem in &report.problems {
        match problem.repairable_path() {
            Some(path) => {
                broken.entry(path).or_insert(problem);
            }
            None if matches!(problem, Problem::DanglingReference { .. }) => out
                .failed
                .push(format!("{problem} (rix cannot repair this)")),
            None => {}
        }
    }
    // References first: a rebuild must not read a broken input.
    let paths: BTreeSet<StorePath> = broken.keys().map(|p| (*p).clone()).collect();
    for path in store.topo_sort(&paths)? {
        let problem = broken[&path];
        let path = &path;
        let printed = store.print(path);
        observer.info(&format!("repairing path '{printed}'..."));
        let attempt = match source {
            Some(s) => replace_path(store, path, s).map_err(|e| e.to_string()),
            None => Err("there is no substituter to fetch a fresh copy from".to_owned()),
        };
        match attempt {
            Ok(()) => out.repaired.push(printed),
            Err(e) => {
                let missing_unreferenced = matches!(
                    problem,
                    Problem::Missing { referrers, .. } if referrers.is_empty()
                );
                if missing_unreferenced {
                    observer.info(&format!(
                        "path '{printed}' disappeared, removing from database..."
                    ));
                    store.db().invalidate(path)?;
                    out.invalidated.push(printed);
                } else {
                    out.failed
                        .push(format!("cannot repair path '{printed}': {e}"));
                }
            }
        }
    }
    Ok(out)
}

/// Replaces the contents of the valid path `path` with a fresh copy from
/// `source`, atomically: the copy is written under a temporary name, checked
/// against the recorded NAR hash, and exchanged with the old contents in one
/// `renameat2(RENAME_EXCHANGE)` (or moved into place when the path is missing).
pub fn replace_path(store: &LocalStore, path: &StorePath, source: &dyn PathSource) -> Result<()> {
    store.add_temp_root(path)?;
    let real = store.real_path(path);
    let mut lock = PathLock::acquire(&real)?;
    let info = store.path_info(path)?;
    let printed = store.print(path);
    let tmp = store.temp_path(path);
    delete_path(&tmp).map_err(StoreError::io(&tmp))?;
    let result = (|| {
        let unavailable = |why: String| StoreError::Io {
            path: real.clone(),
            source: io::Error::other(why),
        };
        let rebuilt =
            match source.fetch(&info, &tmp).map_err(unavailable)? {
                Fetched::Unavailable => return Err(unavailable(
                    "no substituter has a copy of it, and it cannot be rebuilt (no valid deriver)"
                        .into(),
                )),
                Fetched::Copy => None,
                Fetched::Rebuilt(new) => Some(new),
            };
        canonicalise(&tmp).map_err(StoreError::io(&tmp))?;
        let (hash, size) = crate::archive::hash_path(&tmp, info.nar_hash.algo())?;
        let update = match rebuilt {
            Some(new) if info.ca.is_none() => takes_rebuild(&info, &new, hash, size, &printed)?,
            _ => None,
        };
        if update.is_none() {
            check_same(&info, hash, size, &printed)?;
        }
        store.sync()?;
        swap_in(&tmp, &real, path, store)?;
        match update {
            Some(updated) => store.register(&[updated]),
            None => Ok(()),
        }
    })();
    let _ = delete_path(&tmp);
    lock.set_delete_on_release(true);
    result
}

/// Whether a copy with NAR `hash` and `size` has the recorded contents.
fn check_same(info: &ValidPathInfo, hash: Hash, size: u64, printed: &str) -> Result<()> {
    if hash != info.nar_hash {
        return Err(StoreError::HashMismatch {
            path: printed.to_owned(),
            expected: info.nar_hash.to_string(),
            actual: hash.to_string(),
        });
    }
    if info.nar_size != 0 && size != info.nar_size {
        return Err(StoreError::SizeMismatch {
            path: printed.to_owned(),
            expected: info.nar_size,
            actual: size,
        });
    }
    Ok(())
}

/// The row an input-addressed path gets from a rebuild that produced other
/// contents (NAR `hash`, `size`); `None` when they are the recorded ones.
fn takes_rebuild(
    info: &ValidPathInfo,
    new: &ValidPathInfo,
    hash: Hash,
    size: u64,
    printed: &str,
) -> Result<Option<ValidPathInfo>> {
    if hash == info.nar_hash {
        return Ok(None);
    }
    if new.references != info.references {
        return Err(StoreError::Io {
            path: PathBuf::from(printed),
            source: io::Error::other(
                "the rebuild refers to other store paths than the recorded ones; \
                 repair it from a binary cache, or delete it and build it again",
            ),
        });
    }
    let mut updated = info.clone();
    updated.nar_hash = hash;
    updated.nar_size = size;
    updated.registration_time = crate::path_info::now();
    updated.ultimate = true;
    // Signatures were made for the old contents.
    updated.sigs.clear();
    Ok(Some(updated))
}

/// Puts `tmp` at `real`: exchanged atomically when `real` exists (the old
/// contents end up at `tmp`), else renamed.
fn swap_in(tmp: &Path, real: &Path, path: &StorePath, store: &LocalStore) -> Result<()> {
    if std::fs::symlink_metadata(real).is_err() {
        return std::fs::rename(tmp, real).map_err(StoreError::io(real));
    }
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, tmp, cwd, real, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            // No RENAME_EXCHANGE on this file system: move the old contents
            // aside, then the new ones in (a moment without the path).
            let aside = store.temp_path(path);
            std::fs::rename(real, &aside).map_err(StoreError::io(real))?;
            let moved = std::fs::rename(tmp, real).map_err(StoreError::io(real));
            if moved.is_err() {
                let _ = std::fs::rename(&aside, real);
            } else {
                let _ = delete_path(&aside);
            }
            moved
        }
        Err(e) => Err(StoreError::Io {
            path: real.to_path_buf(),
            source: e.into(),
        }),
    }
}
