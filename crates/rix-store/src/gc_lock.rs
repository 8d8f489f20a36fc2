//! The global garbage collector lock, `<state>/gc.lock`, taken as Nix 2.8 takes
//! it: with `lock_file(2)` (Nix 2.8's `lockFile` is `flock`, not an fcntl lock, so
//! this is what excludes a Nix collector).
//!
//! - The collector holds it **exclusively** for its whole run, so two collectors
//!   (rix or Nix) never work on one store at once.
//! - A process adding a temporary root holds it **shared**, without waiting, for
//!   the moment it appends the root to its file (see [`crate::temp_roots`]). When
//!   it cannot (a collector runs), it hands the root to the collector through the
//!   socket `<state>/gc-socket/socket` instead.
//! - Verification holds it shared for its whole run, for a consistent view of the
//!   store (Nix's `verifyStore` does the same).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::layout::StoreLayout;
use crate::lock::{lock_file, open_lock_file, unlock_file, LockKind};

/// `<state>/gc.lock`.
pub fn gc_lock_path(layout: &StoreLayout) -> PathBuf {
    layout.state_dir.join("gc.lock")
}

/// `<state>/gc-socket/socket`, where a running collector accepts new roots.
pub fn gc_socket_path(layout: &StoreLayout) -> PathBuf {
    layout.state_dir.join("gc-socket").join("socket")
}

/// A held global GC lock, released on drop.
#[derive(Debug)]
pub struct GcLock {
    file: File,
}

impl GcLock {
    /// Takes the lock, calling `on_wait` once if someone else holds it (Nix prints
    /// "waiting for the big garbage collector lock..." then).
    pub fn acquire(
        layout: &StoreLayout,
        kind: LockKind,
        on_wait: impl FnOnce(),
    ) -> io::Result<Self> {
        let path = gc_lock_path(layout);
        let file = open_lock_file(&path).map_err(|e| annotate(e, &path))?;
        if !lock_file(&file, kind, false).map_err(|e| annotate(e, &path))? {
            on_wait();
            lock_file(&file, kind, true).map_err(|e| annotate(e, &path))?;
        }
        Ok(Self { file })
    }

    /// Takes the lock only if nobody holds a conflicting one.
    pub fn try_acquire(layout: &StoreLayout, kind: LockKind) -> io::Result<Option<Self>> {
        let path = gc_lock_path(layout);
        let file = open_lock_file(&path).map_err(|e| annotate(e, &path))?;
        Ok(lock_file(&file, kind, false)
            .map_err(|e| annotate(e, &path))?
            .then_some(Self { file }))
    }
}

impl Drop for GcLock {
    fn drop(&mut self) {
        let _ = unlock_file(&self.file);
    }
}

pub(crate) fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_shared_between_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StoreLayout::from_url(&format!(
            "local?store={0}/store&state={0}/state",
            dir.path().display()
        ))
        .unwrap();
        std::fs::create_dir_all(&layout.state_dir).unwrap();
        let held = GcLock::acquire(&layout, LockKind::Exclusive, || {}).unwrap();
        assert!(GcLock::try_acquire(&layout, LockKind::Shared)
            .unwrap()
            .is_none());
        drop(held);
        let a = GcLock::try_acquire(&layout, LockKind::Shared).unwrap();
        let b = GcLock::try_acquire(&layout, LockKind::Shared).unwrap();
        assert!(a.is_some() && b.is_some());
        assert!(GcLock::try_acquire(&layout, LockKind::Exclusive)
            .unwrap()
            .is_none());
    }
}
