//! Path locks compatible with Nix's (`pathlocks.cc`): an exclusive lock on
//! `<path>.lock`, so that no two processes, rix or Nix, build or write the same
//! store path at once.
//!
//! Every lock here is a `flock(2)` lock, because that is what Nix 2.8's
//! `lockFile` takes (on `<path>.lock`, `db/big-lock`, `gc.lock`, temporary-root
//! files and build-user slots). Linux keeps `flock` and fcntl record locks apart
//! (neither excludes the other), so any other kind would let rix and Nix build
//! the same output at once. A `flock` belongs to an open file description, not to
//! a process: two threads of one rix that open the same lock file exclude each
//! other, and there is no per-process deadlock detection to report a false
//! EDEADLK. A process-wide table additionally keeps two threads of one rix from
//! even opening the same lock file at once.
//!
//! A holder that is done with a path deletes the lock file after writing one byte
//! into it; a waiter that then gets the lock sees a non-empty file, knows it is
//! stale, and retries on a fresh one (as Nix does).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use rustix::fs::FlockOperation;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot lock {}: {source}", path.display())]
pub struct LockError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Lock files held by this process, and a condition to wait for one to be released.
static HELD: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
static RELEASED: Condvar = Condvar::new();

/// Which kind of lock to take (Nix's `ltRead` / `ltWrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// Takes or tries a `flock` on `file`. Returns `Ok(false)` when `wait` is false
/// and another open file holds a conflicting lock.
pub fn lock_file(file: &File, kind: LockKind, wait: bool) -> std::io::Result<bool> {
    let op = match (kind, wait) {
        (LockKind::Shared, true) => FlockOperation::LockShared,
        (LockKind::Shared, false) => FlockOperation::NonBlockingLockShared,
        (LockKind::Exclusive, true) => FlockOperation::LockExclusive,
        (LockKind::Exclusive, false) => FlockOperation::NonBlockingLockExclusive,
    };
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) if !wait => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Releases a lock taken with [`lock_file`] (closing the file also does).
pub fn unlock_file(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, FlockOperation::Unlock).map_err(Into::into)
}

/// Opens (creating) a lock file.
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    lock_file_options().create(true).open(path)
}

/// Creates a lock file that must not exist yet.
fn create_lock_file(path: &Path) -> std::io::Result<File> {
    lock_file_options().create_new(true).open(path)
}

fn lock_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32);
    options
}

/// A held lock on one store path (`<path>.lock`). Released on drop.
#[derive(Debug)]
pub struct PathLock {
    lock_path: PathBuf,
    file: Option<File>,
    delete_on_release: bool,
    /// The lock file was there before we came: a writer before us failed or
    /// was killed (a successful one deletes it with the path valid).
    left_behind: bool,
}

impl PathLock {
    /// Waits until the lock on `path` is ours.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        Self::acquire_inner(path, true).map(|l| l.expect("waited for the lock"))
    }

    /// Takes the lock if nobody holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, LockError> {
        Self::acquire_inner(path, false)
    }

    fn acquire_inner(path: &Path, wait: bool) -> Result<Option<Self>, LockError> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let err = |source| LockError {
            path: lock_path.clone(),
            source,
        };
        if !claim_in_process(&lock_path, wait) {
            return Ok(None);
        }
        let guard = InProcessClaim(lock_path.clone());
        // Creating it, the common case, tells whether it was there, in one
        // system call.
        let (mut created, left_behind) = match create_lock_file(&lock_path) {
            Ok(file) => (Some(file), false),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (None, true),
            Err(e) => return Err(err(e)),
        };
        loop {
            let file = match created.take() {
                Some(file) => file,
                None => open_lock_file(&lock_path).map_err(err)?,
            };
            if !lock_file(&file, LockKind::Exclusive, wait).map_err(err)? {
                return Ok(None);
            }
            // A non-empty lock file was deleted by its previous holder: take a fresh one.
            if file.metadata().map_err(err)?.len() != 0 {
                continue;
            }
            std::mem::forget(guard);
            return Ok(Some(Self {
                lock_path,
                file: Some(file),
                delete_on_release: false,
                left_behind,
            }));
        }
    }

    /// Whether the lock file existed before this lock was asked for: an earlier
    /// holder did not finish (it failed, or was killed and may have left a
    /// temporary behind).
    pub fn left_behind(&self) -> bool {
        self.left_behind
    }

    /// Delete the lock file on release (once the path is valid, nobody needs it).
    pub fn set_delete_on_release(&mut self, delete: bool) {
        self.delete_on_release = delete;
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        if let Some(mut file) = self.file.take() {
            if self.delete_on_release {
                // Mark stale before unlinking so that waiters retry (see module docs).
                let _ = std::fs::remove_file(&self.lock_path);
                let _ = file.write_all(b"d");
            }
            drop(file);
        }
        release_in_process(&self.lock_path);
    }
}

/// Releases an in-process claim if acquisition fails half way.
struct InProcessClaim(PathBuf);

impl Drop for InProcessClaim {
    fn drop(&mut self) {
        release_in_process(&self.0);
    }
}

fn claim_in_process(path: &Path, wait: bool) -> bool {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let set = held.get_or_insert_with(HashSet::new);
        if set.insert(path.to_path_buf()) {
            return true;
        }
        if !wait {
            return false;
        }
        held = RELEASED.wait(held).unwrap_or_else(|e| e.into_inner());
    }
}

fn release_in_process(path: &Path) {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = held.as_mut() {
        set.remove(path);
    }
    RELEASED.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn excludes_threads_of_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, inside, max) = (path.clone(), inside.clone(), max.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mut l = PathLock::acquire(&path).unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        l.set_delete_on_release(true);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn try_acquire_fails_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let held = PathLock::acquire(&path).unwrap();
        assert!(PathLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(PathLock::try_acquire(&path).unwrap().is_some());
    }
}
