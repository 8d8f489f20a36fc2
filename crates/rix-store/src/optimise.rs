//! Store optimisation, as Nix's `optimise-store.cc`: identical files of the
//! store share one inode, linked through `<real store>/.links/<nix32 SHA-256 of
//! the file's NAR serialisation>` (the same names Nix uses, so Nix's optimiser
//! and collector agree with rix's). The NAR serialisation includes the execute
//! bit, so an executable and a plain file with the same bytes stay apart; a
//! symlink is linked by its target text (Linux can hard-link symlinks).
//!
//! For each regular file or symlink: skip it when its inode already is a link
//! of `.links`; hash it; if `.links/<hash>` does not exist, link it there;
//! otherwise link `.links/<hash>` to a temporary name in the store directory
//! and rename that over the file (atomic: the path never lacks the file), with
//! the containing directory made writable for the moment and then restored
//! (mode 0555, mtime 1).
//!
//! Store paths are optimised on several threads (one path per thread at a
//! time, so no two threads toggle one directory), with the GC lock held shared
//! so that no collector runs meanwhile (it could remove a `.links` entry the
//! moment before we link to it).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use rix_formats::hash::HashAlgo;
use rix_formats::nixbase32;

use crate::gc::{io_threads, parallel_map};
use crate::gc_lock::GcLock;
use crate::local_store::{LocalStore, Result, StoreError};
use crate::lock::LockKind;

/// What optimising did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OptimiseStats {
    /// Files replaced by a hard link.
    pub files_linked: u64,
    /// Their sizes.
    pub bytes_freed: u64,
    /// Their 512-byte blocks.
    pub blocks_freed: u64,
}

impl OptimiseStats {
    fn add(&mut self, other: OptimiseStats) {
        self.files_linked += other.files_linked;
        self.bytes_freed += other.bytes_freed;
        self.blocks_freed += other.blocks_freed;
    }
}

/// Progress and warnings.
pub trait OptimiseObserver: Sync {
    fn warn(&self, message: &str);
    /// `done` of `total` store paths optimised.
    fn progress(&self, _done: u64, _total: u64) {}
}

/// Prints warnings to stderr.
pub struct StderrWarnings;

impl OptimiseObserver for StderrWarnings {
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// Optimises every valid path (`nix-store --optimise`).
pub fn optimise_store(
    store: &LocalStore,
    observer: &dyn OptimiseObserver,
) -> Result<OptimiseStats> {
    let layout = store.layout();
    let _gc = GcLock::acquire(layout, LockKind::Shared, || {
        observer.warn("waiting for the big garbage collector lock...")
    })
    .map_err(|source| StoreError::Io {
        path: layout.state_dir.join("gc.lock"),
        source,
    })?;
    let paths = store.db().all_valid_paths()?;
    let optimiser = Optimiser::new(store, true)?;
    let done = AtomicU64::new(0);
    let total = paths.len() as u64;
    let results = parallel_map(&paths, io_threads(), |p| {
        let real = store.real_path(p);
        let r = match fs::symlink_metadata(&real) {
            // Valid but missing: `rix store verify` reports it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OptimiseStats::default()),
            _ => optimiser.optimise(&real, observer),
        };
        observer.progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        r
    });
    let mut stats = OptimiseStats::default();
    for r in results {
        stats.add(r?);
    }
    Ok(stats)
}

/// Optimises one tree in the store directory (a new path, in place but not
/// yet registered: `auto-optimise-store`, see
/// [`crate::local_store::LocalStore::register`]). None of its files is linked
/// yet, so `.links` is not read.
pub fn optimise_path(store: &LocalStore, path: &Path) -> Result<OptimiseStats> {
    Optimiser::new(store, false)?.optimise(path, &StderrWarnings)
}

struct Optimiser {
    store_dir: PathBuf,
    links_dir: PathBuf,
    /// Inodes that are entries of `.links` (already shared).
    linked: Mutex<HashSet<u64>>,
}

impl Optimiser {
    /// With `known_links`, remembers the inodes of `.links` (Nix's inode hash),
    /// so files already linked are skipped without being hashed.
    fn new(store: &LocalStore, known_links: bool) -> Result<Self> {
        let store_dir = store.layout().real_store_dir.clone();
        let links_dir = store_dir.join(".links");
        fs::create_dir_all(&links_dir).map_err(StoreError::io(&links_dir))?;
        let mut linked = HashSet::new();
        if known_links {
            for entry in fs::read_dir(&links_dir).map_err(StoreError::io(&links_dir))? {
                let entry = entry.map_err(StoreError::io(&links_dir))?;
                linked.insert(std::os::unix::fs::DirEntryExt::ino(&entry));
            }
        }
        Ok(Self {
            store_dir,
            links_dir,
            linked: Mutex::new(linked),
        })
    }

    fn is_linked(&self, ino: u64) -> bool {
        self.linked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ino)
    }

    fn optimise(&self, path: &Path, observer: &dyn OptimiseObserver) -> Result<OptimiseStats> {
        let mut stats = OptimiseStats::default();
        self.visit(path, &mut stats, observer)?;
        Ok(stats)
    }

    fn visit(
        &self,
        path: &Path,
        stats: &mut OptimiseStats,
        observer: &dyn OptimiseObserver,
    ) -> Result<()> {
        let meta = fs::symlink_metadata(path).map_err(StoreError::io(path))?;
        if meta.is_dir() {
            let mut children = Vec::new();
            for entry in fs::read_dir(path).map_err(StoreError::io(path))? {
                let entry = entry.map_err(StoreError::io(path))?;
                // Already a link of `.links`: nothing to do (Nix's
                // readDirectoryIgnoringInodes).
                if !self.is_linked(std::os::unix::fs::DirEntryExt::ino(&entry)) {
                    children.push(entry.path());
                }
            }
            for child in children {
                self.visit(&child, stats, observer)?;
            }
            return Ok(());
        }
        if !meta.is_file() && !meta.file_type().is_symlink() {
            return Ok(());
        }
        self.link_file(path, &meta, stats, observer)
            .map_err(StoreError::io(path))
    }

    fn link_file(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        stats: &mut OptimiseStats,
        observer: &dyn OptimiseObserver,
    ) -> io::Result<()> {
        if meta.is_file() && meta.mode() & 0o200 != 0 {
            observer.warn(&format!(
                "skipping suspicious writable file '{}'",
                path.display()
            ));
            return Ok(());
        }
        if meta.nlink() > 1 && self.is_linked(meta.ino()) {
            return Ok(());
        }
        let (hash, _) = crate::archive::hash_path(path, HashAlgo::Sha256)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let link = self.links_dir.join(nixbase32::encode(hash.digest()));
        // A concurrent collector (Nix's, while auto-optimise-store runs without
        // the GC lock) may remove the link the moment it has one name left, or
        // our temporary name: then start over.
        for _ in 0..8 {
            match self.link_to(path, meta, &link, stats, observer)? {
                Linked::Done => return Ok(()),
                Linked::Vanished => continue,
            }
        }
        Ok(())
    }

    /// Makes `path` a hard link of `link` (see [`Self::link_file`]).
    fn link_to(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        link: &Path,
        stats: &mut OptimiseStats,
        observer: &dyn OptimiseObserver,
    ) -> io::Result<Linked> {
        loop {
            if fs::symlink_metadata(link).is_err() {
                match fs::hard_link(path, link) {
                    Ok(()) => {
                        self.linked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(meta.ino());
                        return Ok(Linked::Done);
                    }
                    // Another process or thread linked the same contents first.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    // A full directory index (ext4): leave this file alone.
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                        return Ok(Linked::Done)
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "cannot link '{}' to '{}': {e}",
                                link.display(),
                                path.display()
                            ),
                        ))
                    }
                }
            }
            let link_meta = match fs::symlink_metadata(link) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if link_meta.ino() == meta.ino() {
                return Ok(Linked::Done);
            }
            if link_meta.size() != meta.size() {
                observer.warn(&format!("removing corrupted link '{}'", link.display()));
                observer.warn(
                    "There may be more corrupted paths.\nYou should run `rix store verify --check-contents --repair` to fix them all",
                );
                fs::remove_file(link)?;
                continue;
            }
            break;
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let toggle = dir != self.store_dir;
        if toggle {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        let replaced = self.replace_with_link(path, link);
        if toggle {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555))?;
            let one = TimeSpec::new(1, 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                dir,
                &one,
                &one,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(io::Error::from)?;
        }
        match replaced? {
            Some(true) => {
                stats.files_linked += 1;
                stats.bytes_freed += meta.size();
                stats.blocks_freed += meta.blocks();
                Ok(Linked::Done)
            }
            Some(false) => Ok(Linked::Done),
            None => Ok(Linked::Vanished),
        }
    }

    /// A temporary name in the store directory for a link that replaces a file
    /// of `path`: a temporary of the store path containing it (see
    /// [`crate::local_store::LocalStore::temp_path`]: kept by any collector
    /// while that path is a temporary root of ours).
    fn temp_link_name(&self, path: &Path) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let top = path
            .strip_prefix(&self.store_dir)
            .ok()
            .and_then(|rel| rel.components().next())
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|name| rix_formats::StorePath::from_base_name(name).ok());
        let name = match top {
            Some(p) => format!(
                "{}-{}{}-link{n}",
                p.hash_part(),
                crate::local_store::TEMP_MARK,
                std::process::id()
            ),
            None => format!(".tmp-link-{}-{n}", std::process::id()),
        };
        self.store_dir.join(name)
    }

    /// Renames a fresh link of `link` over `path`. `Ok(Some(false))`: the file
    /// system has no more links to give (EMLINK), the file stays as it is.
    /// `Ok(None)`: `link` or the temporary name vanished (a concurrent collector).
    fn replace_with_link(&self, path: &Path, link: &Path) -> io::Result<Option<bool>> {
        let tmp = self.temp_link_name(path);
        match fs::hard_link(link, &tmp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EMLINK) => return Ok(Some(false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot link '{}' to '{}': {e}",
                        tmp.display(),
                        link.display()
                    ),
                ))
            }
        }
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            if e.raw_os_error() == Some(nix::libc::EMLINK) {
                return Ok(Some(false));
            }
            if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(path).is_ok() {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(true))
    }
}

/// What one attempt at linking a file did.
enum Linked {
    Done,
    /// The `.links` entry or the temporary link vanished meanwhile: try again.
    Vanished,
}
