//! The evaluator's view of a [`LocalStore`]: sources, text files and
//! derivations are written into it as Nix's `LocalStore` writes them, so
//! that Nix and rix share the results.
//!
//! `.drv` files are written in batches: their paths are known at once (they
//! are text paths), so instantiation goes on while they wait, and
//! [`EvalStore::flush`] writes up to [`BATCH`] of them with one file-system
//! sync and one database transaction, through the store's write protocol
//! (`rix_store::write`: temporary root, lock, temporary name, canonicalise,
//! sync, rename, register). A `.drv` already valid costs no lock and no
//! write: the batch's temporary roots are added in one append and its
//! validity read in one transaction first. Reading a pending path, or
//! the end of evaluation, flushes. (With `auto-optimise-store`, registration
//! hard-links them as it does every new path.)

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rix_formats::content_address::ContentAddress;
use rix_formats::derivation::Derivation;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::HashAlgo;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;

use super::{add_source, invalid, other, EvalStore, PathFilter};

/// `.drv` files written together (each batch holds one lock file open per path).
pub const BATCH: usize = 256;

/// A `.drv` file waiting to be written.
struct PendingDrv {
    path: StorePath,
    aterm: Vec<u8>,
    refs: BTreeSet<StorePath>,
}

/// A [`LocalStore`] as an [`EvalStore`]. The store is shared (`Rc`) so that
/// the caller can go on to build what evaluation instantiated.
pub struct LocalEvalStore {
    store: Rc<LocalStore>,
    /// Derivations written (or about to be) by this evaluation.
    drvs: RefCell<HashSet<StorePath, crate::symbol::FxBuild>>,
    pending: RefCell<Vec<PendingDrv>>,
}

impl LocalEvalStore {
    pub fn new(store: Rc<LocalStore>) -> LocalEvalStore {
        LocalEvalStore {
            store,
            drvs: RefCell::default(),
            pending: RefCell::default(),
        }
    }

    pub fn local_store(&self) -> &Rc<LocalStore> {
        &self.store
    }

    fn is_pending(&self, path: &StorePath) -> bool {
        self.pending.borrow().iter().any(|p| &p.path == path)
    }

    /// Writes one batch of `.drv` files through the store's write protocol
    /// (`rix_store::write`): one sync and one transaction for the batch; on
    /// failure nothing of it stays.
    ///
    /// What is already valid (re-instantiating an unchanged expression) is
    /// neither locked nor written, as in Nix's `addTextToStore`: the batch's
    /// paths become temporary roots (one append), then one read transaction
    /// tells which are valid. Only the others take the write protocol, which
    /// checks validity again under the path's lock, so a concurrent writer of
    /// the same path is waited for and not written over.
    fn write_batch(&self, batch: &[PendingDrv]) -> io::Result<()> {
        let paths: Vec<StorePath> = batch.iter().map(|d| d.path.clone()).collect();
        self.store.add_temp_roots(&paths).map_err(other)?;
        let valid = self
            .store
            .query_valid_paths(&paths.iter().cloned().collect())
            .map_err(other)?;
        let mut written = Vec::new();
        for d in batch.iter().filter(|d| !valid.contains(&d.path)) {
            let Some(writer) = self.store.begin_write(&d.path).map_err(other)? else {
                continue;
            };
            std::fs::write(writer.tmp(), &d.aterm)?;
            writer.canonicalise().map_err(other)?;
            let (nar_hash, nar_size) = text_nar_hash(&d.aterm);
            let mut info = ValidPathInfo::new(d.path.clone(), nar_hash, nar_size);
            info.references = d.refs.clone();
            info.ca = Some(ContentAddress::Text(HashAlgo::Sha256.digest(&d.aterm)));
            written.push((writer, info));
        }
        if written.is_empty() {
            return Ok(());
        }
        // Registration checks every derivation's outputs and records them
        // (from the bytes written, not read back).
        let known: std::collections::HashMap<&StorePath, &[u8]> = batch
            .iter()
            .map(|d| (&d.path, d.aterm.as_slice()))
            .collect();
        rix_store::write::commit_known(&self.store, written, true, &|p| known.get(p).copied())
            .map_err(other)
    }
}

impl Drop for LocalEvalStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            eprintln!("error: cannot write derivations to the store: {e}");
        }
    }
}

/// The NAR hash and size of a regular, non-executable file with these contents.
fn text_nar_hash(contents: &[u8]) -> (rix_formats::Hash, u64) {
    let mut w = rix_formats::nar::NarWriter::new(rix_formats::hash::Hasher::new(HashAlgo::Sha256));
    w.file(false, contents)
        .expect("a single file is a valid NAR");
    let size = w.position();
    (w.finish().expect("complete").finish(), size)
}

impl EvalStore for LocalEvalStore {
    fn backing_store(&self) -> Option<&dyn rix_store::store_api::Store> {
        Some(&*self.store)
    }

    fn store_dir(&self) -> &StoreDir {
        self.store.store_dir()
    }

    fn add_to_store(
        &self,
        name: &str,
        path: &Path,
        method: FileIngestionMethod,
        algo: HashAlgo,
        filter: Option<PathFilter<'_>>,
    ) -> io::Result<StorePath> {
        add_source(&*self.store, name, path, method, algo, filter)
    }

    fn add_text(
        &self,
        name: &str,
        text: &[u8],
        refs: &BTreeSet<StorePath>,
    ) -> io::Result<StorePath> {
        self.store.add_text(name, text, refs).map_err(other)
    }

    fn write_derivation(&self, drv: &Derivation) -> io::Result<StorePath> {
        let dir = self.store_dir();
        let aterm = drv.to_aterm(dir).map_err(invalid)?;
        let refs: BTreeSet<StorePath> = drv.references().into_iter().cloned().collect();
        let path = dir
            .make_text_path(
                &format!("{}.drv", drv.name),
                &HashAlgo::Sha256.digest(&aterm),
                refs.iter(),
            )
            .map_err(invalid)?;
        if self.drvs.borrow().contains(&path) {
            return Ok(path);
        }
        // It becomes a temporary root when its batch is written, before its
        // validity is read (as in Nix's `addTextToStore`); until then it is
        // not in the store for this process (see `write_batch`).
        self.drvs.borrow_mut().insert(path.clone());
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(PendingDrv {
                path: path.clone(),
                aterm,
                refs,
            });
            pending.len() >= BATCH
        };
        if full {
            self.flush()?;
        }
        Ok(path)
    }

    fn flush(&self) -> io::Result<()> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for batch in pending.chunks(BATCH) {
            self.write_batch(batch)?;
        }
        Ok(())
    }

    fn read_derivation(&self, path: &StorePath) -> io::Result<Derivation> {
        if let Some(p) = self.pending.borrow().iter().find(|p| &p.path == path) {
            return Derivation::from_aterm_at(&p.aterm, self.store_dir(), path).map_err(invalid);
        }
        let file = self.store.real_path(path);
        let bytes = std::fs::read(&file).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read derivation '{}': {e}", self.store.print(path)),
            )
        })?;
        Derivation::from_aterm_at(&bytes, self.store_dir(), path).map_err(invalid)
    }

    fn references(&self, path: &StorePath) -> io::Result<BTreeSet<StorePath>> {
        if let Some(p) = self.pending.borrow().iter().find(|p| &p.path == path) {
            return Ok(p.refs.clone());
        }
        Ok(self.store.path_info(path).map_err(other)?.references)
    }

    fn is_valid_path(&self, path: &StorePath) -> bool {
        self.is_pending(path) || self.store.is_valid(path).unwrap_or(false)
    }

    fn real_path(&self, path: &StorePath) -> PathBuf {
        self.store.real_path(path)
    }
}
