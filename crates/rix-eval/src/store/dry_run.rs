//! A store that computes paths without writing anything (`--readonly-mode`,
//! `--dry-run`). What it would have written (text files and derivations) is
//! remembered, so that later steps of the same evaluation can read it back:
//! the closure of a `=` context, input derivations' outputs. Nix's read-only
//! mode cannot do that and fails there instead.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;

use rix_formats::derivation::Derivation;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::HashAlgo;

use super::{content_hash, invalid, EvalStore, PathFilter};

/// Computes store paths without writing anything.
#[derive(Debug, Default)]
pub struct DryRunStore {
    dir: StoreDir,
    /// Paths "written" by this evaluation, with their references.
    refs: RefCell<HashMap<StorePath, BTreeSet<StorePath>>>,
    /// The ATerms of the derivations "written" (smaller than `Derivation`s).
    drvs: RefCell<HashMap<StorePath, Box<[u8]>>>,
}

impl DryRunStore {
    pub fn new(dir: StoreDir) -> DryRunStore {
        DryRunStore {
            dir,
            ..DryRunStore::default()
        }
    }
}

impl EvalStore for DryRunStore {
    fn store_dir(&self) -> &StoreDir {
        &self.dir
    }

    fn add_to_store(
        &self,
        name: &str,
        path: &Path,
        method: FileIngestionMethod,
        algo: HashAlgo,
        filter: Option<PathFilter<'_>>,
    ) -> io::Result<StorePath> {
        let hash = content_hash(path, method, algo, filter)?;
        let p = self
            .dir
            .make_fixed_output_path(name, method, &hash, [], false)
            .map_err(invalid)?;
        self.refs.borrow_mut().entry(p.clone()).or_default();
        Ok(p)
    }

    fn add_text(
        &self,
        name: &str,
        text: &[u8],
        refs: &BTreeSet<StorePath>,
    ) -> io::Result<StorePath> {
        let hash = HashAlgo::Sha256.digest(text);
        let p = self
            .dir
            .make_text_path(name, &hash, refs.iter())
            .map_err(invalid)?;
        self.refs.borrow_mut().insert(p.clone(), refs.clone());
        Ok(p)
    }

    fn write_derivation(&self, drv: &Derivation) -> io::Result<StorePath> {
        let p = drv.drv_path(&self.dir).map_err(invalid)?;
        let refs = drv.references().into_iter().cloned().collect();
        self.refs.borrow_mut().insert(p.clone(), refs);
        let aterm = drv.to_aterm(&self.dir).map_err(invalid)?;
        self.drvs
            .borrow_mut()
            .insert(p.clone(), aterm.into_boxed_slice());
        Ok(p)
    }

    fn read_derivation(&self, path: &StorePath) -> io::Result<Derivation> {
        if let Some(aterm) = self.drvs.borrow().get(path) {
            return Derivation::from_aterm_at(aterm, &self.dir, path).map_err(invalid);
        }
        // Not written by this evaluation: read it from the file system, if there.
        let file = self.dir.display(path);
        let bytes = std::fs::read(&file).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read derivation '{file}': {e}"))
        })?;
        Derivation::from_aterm_at(&bytes, &self.dir, path).map_err(invalid)
    }

    fn references(&self, path: &StorePath) -> io::Result<BTreeSet<StorePath>> {
        match self.refs.borrow().get(path) {
            Some(r) => Ok(r.clone()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "path '{}' is not valid (the dry-run store only knows what this evaluation added)",
                    self.dir.display(path)
                ),
            )),
        }
    }

    fn is_valid_path(&self, path: &StorePath) -> bool {
        self.refs.borrow().contains_key(path)
    }

    fn is_read_only(&self) -> bool {
        true
    }
}
