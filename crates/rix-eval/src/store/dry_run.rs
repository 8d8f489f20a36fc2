//! A store that computes paths without writing anything (`--readonly-mode`,
//! `--dry-run`). What it would have written (text files and derivations) is
//! remembered, so that later steps of the same evaluation can read it back:
//! the closure of a `=` context, input derivations' outputs. Nix's read-only
//! mode cannot do that and fails there instead.
//!
//! Fetchers (`fetchGit`) write to the store even then, as Nix's do: a dry-run
//! store made [`DryRunStore::with_fetch_store`] opens the real store when the
//! first fetch needs it (see [`EvalStore::fetch_store`]).

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::rc::Rc;

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
    fetch: FetchStore,
}

/// Opens the store fetchers write to.
pub type StoreOpener = Box<dyn Fn() -> io::Result<Rc<dyn EvalStore>>>;

/// The real store behind a dry-run store, for fetchers: how to open it, and
/// once opened, the store.
#[derive(Default)]
struct FetchStore {
    open: Option<StoreOpener>,
    opened: OnceCell<Rc<dyn EvalStore>>,
}

impl std::fmt::Debug for FetchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchStore")
            .field("open", &self.open.is_some())
            .field("opened", &self.opened.get().is_some())
            .finish()
    }
}

impl DryRunStore {
    pub fn new(dir: StoreDir) -> DryRunStore {
        DryRunStore {
            dir,
            ..DryRunStore::default()
        }
    }

    /// This store, with `open` giving the store fetchers write to (opened
    /// once, when the first fetch needs it).
    pub fn with_fetch_store(mut self, open: StoreOpener) -> DryRunStore {
        self.fetch.open = Some(open);
        self
    }

    fn opened(&self) -> Option<&Rc<dyn EvalStore>> {
        self.fetch.opened.get()
    }
}

impl EvalStore for DryRunStore {
    fn backing_store(&self) -> Option<&dyn rix_store::store_api::Store> {
        self.opened().and_then(|s| s.backing_store())
    }

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

    fn fetch_store(&self) -> io::Result<Option<Rc<dyn EvalStore>>> {
        if let Some(s) = self.opened() {
            return Ok(Some(s.clone()));
        }
        let Some(open) = &self.fetch.open else {
            return Ok(None);
        };
        let store = open()?;
        let _ = self.fetch.opened.set(store.clone());
        Ok(Some(store))
    }

    fn flush(&self) -> io::Result<()> {
        self.opened().map_or(Ok(()), |s| s.flush())
    }

    fn real_path(&self, path: &StorePath) -> std::path::PathBuf {
        match self.opened() {
            Some(s) => s.real_path(path),
            None => std::path::PathBuf::from(self.dir.display(path)),
        }
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
            None if self.opened().is_some_and(|s| s.is_valid_path(path)) => {
                self.opened().expect("opened").references(path)
            }
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
            || self.opened().is_some_and(|s| s.is_valid_path(path))
    }

    fn is_read_only(&self) -> bool {
        true
    }
}
