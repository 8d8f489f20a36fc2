//! The write protocol, the one way a new store object gets into the store
//! (added files and texts, `.drv`s, NAR imports, substituted paths):
//!
//! 1. the path becomes a temporary root of this process, *before* its lock
//!    file or temporary exists, so that a concurrent collector (rix's or
//!    Nix's) leaves them and the path alone;
//! 2. its lock is taken; if the path became valid meanwhile, stop;
//! 3. the caller writes into a fresh temporary name in the store directory
//!    (`<hash part>-rix-tmp-<pid>-<n>`, see [`LocalStore::temp_path`]),
//!    which [`PathWriter::canonicalise`] then gives canonical metadata;
//! 4. [`commit`]: one `syncfs` for the batch, each temporary renamed into
//!    place (over an invalid leftover), and all registered in one transaction.
//!
//! Whatever fails after the temporary was made removes what it wrote: a
//! [`PathWriter`] dropped before its commit deletes its temporary, and the
//! object itself if it was already renamed into place.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use rix_formats::StorePath;

use crate::canonicalise::{canonicalise, delete_path};
use crate::local_store::{LocalStore, Result, StoreError};
use crate::lock::PathLock;
use crate::path_info::ValidPathInfo;

/// A store path being written: its temporary root and lock are held, and
/// [`PathWriter::tmp`] is where its contents go.
pub struct PathWriter<'a> {
    /// Written into that store (and dropped before it is).
    store: PhantomData<&'a LocalStore>,
    path: StorePath,
    real: PathBuf,
    tmp: PathBuf,
    lock: Option<PathLock>,
    /// Renamed into place but not registered.
    moved: bool,
}

impl LocalStore {
    /// Starts writing `path` (steps 1 and 2 of the [protocol](crate::write)).
    /// `None` when the path is valid (it is a temporary root then, too).
    pub fn begin_write(&self, path: &StorePath) -> Result<Option<PathWriter<'_>>> {
        self.add_temp_root(path)?;
        self.observe_write(path);
        let real = self.real_path(path);
        let mut lock = PathLock::acquire(&real)?;
        if self.is_valid(path)? {
            lock.set_delete_on_release(true);
            return Ok(None);
        }
        if lock.left_behind() {
            // A writer before us did not finish: its temporary may be there.
            self.remove_stale_temps(path);
        }
        let tmp = self.temp_path(path);
        delete_path(&tmp).map_err(StoreError::io(&tmp))?;
        Ok(Some(PathWriter {
            store: PhantomData,
            path: path.clone(),
            real,
            tmp,
            lock: Some(lock),
            moved: false,
        }))
    }
}

impl PathWriter<'_> {
    pub fn path(&self) -> &StorePath {
        &self.path
    }

    /// Where the caller writes the object (nothing is there yet).
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Gives what was written canonical metadata (mtime 1, 0444/0555).
    pub fn canonicalise(&self) -> Result<()> {
        canonicalise(&self.tmp).map_err(StoreError::io(&self.tmp))
    }

    fn move_into_place(&mut self) -> Result<()> {
        // An invalid leftover from a killed writer is garbage: replace it.
        delete_path(&self.real).map_err(StoreError::io(&self.real))?;
        std::fs::rename(&self.tmp, &self.real).map_err(StoreError::io(&self.real))?;
        self.moved = true;
        Ok(())
    }
}

impl Drop for PathWriter<'_> {
    fn drop(&mut self) {
        let Some(mut lock) = self.lock.take() else {
            return;
        };
        // Not committed: what we wrote is ours (we hold the lock, the path
        // is not valid), and garbage. Nothing is left, not even the lock
        // file (it is marked stale for waiters): a lock file left behind
        // means a writer was killed (see `PathLock::left_behind`).
        let _ = delete_path(&self.tmp);
        if self.moved {
            let _ = delete_path(&self.real);
        }
        lock.set_delete_on_release(true);
    }
}

/// Moves written paths into place and registers them (step 4 of the
/// [protocol](crate::write)): one `syncfs` when `sync`, the renames, then one
/// transaction ([`LocalStore::register`], which checks derivations). On
/// failure nothing of them stays in the store directory.
pub fn commit(
    store: &LocalStore,
    written: Vec<(PathWriter<'_>, ValidPathInfo)>,
    sync: bool,
) -> Result<()> {
    commit_known(store, written, sync, &|_| None)
}

/// [`commit`] for a caller that holds the contents of the `.drv`s it wrote
/// (see [`LocalStore::register_known`]).
pub fn commit_known<'a>(
    store: &LocalStore,
    written: Vec<(PathWriter<'_>, ValidPathInfo)>,
    sync: bool,
    known: &dyn Fn(&StorePath) -> Option<&'a [u8]>,
) -> Result<()> {
    if written.is_empty() {
        return Ok(());
    }
    if sync {
        store.sync()?;
    }
    let (mut writers, infos): (Vec<PathWriter<'_>>, Vec<ValidPathInfo>) =
        written.into_iter().unzip();
    for w in &mut writers {
        w.move_into_place()?;
    }
    store.register_known(&infos, known)?;
    for mut w in writers {
        if let Some(mut lock) = w.lock.take() {
            lock.set_delete_on_release(true);
        }
    }
    Ok(())
}
