//! [`StoreEvalStore`]: evaluation against any store behind the store interface
//! ([`rix_store::store_api::Store`]), such as a daemon's. Each source, text file
//! and derivation is one request, as Nix's `RemoteStore` sends them; the local
//! store has its own batched writer ([`super::LocalEvalStore`]).

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rix_formats::derivation::Derivation;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::HashAlgo;
use rix_store::store_api::Store;

use super::{add_source, invalid, other, EvalStore, PathFilter};

pub struct StoreEvalStore {
    store: Arc<dyn Store>,
}

impl StoreEvalStore {
    pub fn new(store: Arc<dyn Store>) -> StoreEvalStore {
        StoreEvalStore { store }
    }
}

impl EvalStore for StoreEvalStore {
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
        self.store.add_derivation(drv).map_err(other)
    }

    fn read_derivation(&self, path: &StorePath) -> io::Result<Derivation> {
        let mut nar = Vec::new();
        self.store.nar_from_path(path, &mut nar).map_err(|e| {
            io::Error::other(format!(
                "cannot read derivation '{}': {e}",
                self.store.print(path)
            ))
        })?;
        let bytes = rix_formats::nar::regular_file(&nar[..])
            .map_err(|e| e.to_string())
            .and_then(|b| b.ok_or_else(|| "a derivation must be a regular file".to_owned()))
            .map_err(invalid)?;
        Derivation::from_aterm_at(&bytes, self.store_dir(), path).map_err(invalid)
    }

    fn references(&self, path: &StorePath) -> io::Result<BTreeSet<StorePath>> {
        Ok(self.store.path_info(path).map_err(other)?.references)
    }

    fn is_valid_path(&self, path: &StorePath) -> bool {
        self.store.is_valid(path).unwrap_or(false)
    }
}
