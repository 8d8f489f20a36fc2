//! The store a development environment is captured in and read from:
//! this machine's store, or a daemon's (`--store daemon`, `unix://…`, or the
//! daemon chosen by default for a user who cannot write the store), behind
//! the common store interface. Evaluation writes derivations through it,
//! the environment derivation is added through it and built by it, and the
//! captured JSON is read where the client sees the store's files (Nix's
//! `toRealPath`), or as a NAR from the store when they cannot be read here.

use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use rix_eval::store::{EvalStore, LocalEvalStore, StoreEvalStore};
use rix_formats::derivation::Derivation;
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::store_api::Store;

use crate::context::Context;

/// The selected store, and where its files are seen from this machine.
pub struct DevStore {
    pub store: Arc<dyn Store>,
    /// The local store's layout, or a daemon's store as its client sees it.
    pub layout: StoreLayout,
    /// Whether the store is a daemon's (its files may not be readable here).
    pub daemon: bool,
}

impl DevStore {
    /// Opens the store `ctx` selects (a local one, or a daemon's).
    pub fn open(ctx: &Context) -> Result<DevStore> {
        if ctx.daemon_url().is_some() {
            return Ok(DevStore {
                store: ctx.store()?,
                layout: ctx.layout()?,
                daemon: true,
            });
        }
        let local = ctx.open_store()?;
        Ok(DevStore {
            layout: local.layout().clone(),
            store: Arc::new(local),
            daemon: false,
        })
    }

    /// `path` as text.
    pub fn print(&self, path: &StorePath) -> String {
        self.store.print(path)
    }

    /// What makes the evaluator's store on the evaluation thread: the local
    /// store opened there (its batched writer), or the daemon's connection,
    /// each derivation one request.
    pub fn eval_store_opener(&self) -> impl FnOnce() -> Result<Rc<dyn EvalStore>> + Send {
        let (layout, store) = (self.layout.clone(), self.store.clone());
        let daemon = self.daemon;
        move || -> Result<Rc<dyn EvalStore>> {
            if daemon {
                Ok(Rc::new(StoreEvalStore::new(store)))
            } else {
                let local = Rc::new(LocalStore::open(layout)?);
                Ok(Rc::new(LocalEvalStore::new(local)))
            }
        }
    }

    /// The contents of the regular file `path` (a valid store path): read
    /// where it is on this machine, else, for a daemon's store whose files
    /// are not here, its NAR from the daemon.
    pub fn read_file(&self, path: &StorePath) -> Result<Vec<u8>> {
        let real = self.layout.real_path(path);
        match std::fs::read(&real) {
            Ok(bytes) => Ok(bytes),
            Err(_) if self.daemon => {
                let mut nar = Vec::new();
                self.store
                    .nar_from_path(path, &mut nar)
                    .with_context(|| format!("cannot read '{}'", self.print(path)))?;
                rix_formats::nar::regular_file(&nar[..])
                    .with_context(|| format!("cannot read '{}'", self.print(path)))?
                    .with_context(|| format!("'{}' is not a regular file", self.print(path)))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read '{}'", real.display())),
        }
    }

    /// Whether the output `path` (valid) holds something: a non-empty file
    /// (Nix's `lstat(…).st_size`).
    pub fn holds_something(&self, path: &StorePath) -> bool {
        match std::fs::symlink_metadata(self.layout.real_path(path)) {
            Ok(m) => m.len() > 0,
            Err(_) if self.daemon => self.read_file(path).is_ok_and(|b| !b.is_empty()),
            Err(_) => false,
        }
    }

    /// The derivation at `drv_path` (valid).
    pub fn read_derivation(&self, drv_path: &StorePath) -> Result<Derivation> {
        if !self.store.is_valid(drv_path)? {
            anyhow::bail!(
                "the derivation '{}' is not valid in the store",
                self.print(drv_path)
            );
        }
        let bytes = self.read_file(drv_path)?;
        Derivation::from_aterm_at(&bytes, self.store.store_dir(), drv_path)
            .with_context(|| format!("cannot parse the derivation '{}'", self.print(drv_path)))
    }
}
