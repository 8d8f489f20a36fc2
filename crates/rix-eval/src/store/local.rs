//! The evaluator's view of a [`LocalStore`]: sources, text files and
//! derivations are written into it as Nix's `LocalStore` writes them, so
//! that Nix and rix share the results.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rix_formats::content_address::ContentAddress;
use rix_formats::derivation::Derivation;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::HashAlgo;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;

use super::{content_hash, dump_filtered, invalid, other, EvalStore, PathFilter};

/// A [`LocalStore`] as an [`EvalStore`]. The store is shared (`Rc`) so that
/// the caller can go on to build what evaluation instantiated.
pub struct LocalEvalStore {
    store: Rc<LocalStore>,
    /// Derivations written by this evaluation, so they are not read back.
    drvs: RefCell<HashMap<StorePath, Derivation>>,
}

impl LocalEvalStore {
    pub fn new(store: Rc<LocalStore>) -> LocalEvalStore {
        LocalEvalStore {
            store,
            drvs: RefCell::default(),
        }
    }

    pub fn local_store(&self) -> &Rc<LocalStore> {
        &self.store
    }
}

impl EvalStore for LocalEvalStore {
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
        let Some(filter) = filter else {
            return self.store.add_path(path, name, method, algo).map_err(other);
        };
        // A filtered tree: serialise what the filter keeps, then add that NAR.
        let mut nar = Vec::new();
        dump_filtered(path, &mut nar, filter)?;
        let nar_hash = HashAlgo::Sha256.digest(&nar);
        let ca_hash = match (method, algo) {
            (FileIngestionMethod::Recursive, HashAlgo::Sha256) => nar_hash,
            (FileIngestionMethod::Recursive, _) => algo.digest(&nar),
            (FileIngestionMethod::Flat, _) => content_hash(path, method, algo, None)?,
        };
        let ca = ContentAddress::Fixed(method, ca_hash);
        let sp = self
            .store_dir()
            .make_path_from_ca(name, &ca, [], false)
            .map_err(invalid)?;
        if self.is_valid_path(&sp) {
            return Ok(sp);
        }
        let mut info = ValidPathInfo::new(sp.clone(), nar_hash, nar.len() as u64);
        info.ca = Some(ca);
        self.store.add_nar(&info, &nar[..]).map_err(other)?;
        Ok(sp)
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
        let p = self.store.add_derivation(drv).map_err(other)?;
        self.drvs.borrow_mut().insert(p.clone(), drv.clone());
        Ok(p)
    }

    fn read_derivation(&self, path: &StorePath) -> io::Result<Derivation> {
        if let Some(d) = self.drvs.borrow().get(path) {
            return Ok(d.clone());
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
        Ok(self.store.path_info(path).map_err(other)?.references)
    }

    fn is_valid_path(&self, path: &StorePath) -> bool {
        self.store.is_valid(path).unwrap_or(false)
    }

    fn real_path(&self, path: &StorePath) -> PathBuf {
        self.store.real_path(path)
    }
}
