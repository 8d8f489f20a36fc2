//! Fetchers: sources named by an [`Input`] (a type and attributes, as
//! `fetchTree` and flake references give them) brought into a store, with
//! the attributes that lock them. Mirrors Nix 2.26's `libfetchers`.
//!
//! One [`Fetcher`] per process holds the store (any [`Store`]: the local store
//! or a daemon), the settings and the fetcher cache. [`Fetcher::fetch_to_store`]
//! is `Input::fetchToStore`: it reuses a locked input already in the store,
//! dispatches on the input's type to its scheme (one module each: [`path`],
//! [`git`], `tarball`, `file`, `github`), records the NAR hash, and checks the
//! result against what the input asked for (`checkLocks`).
//!
//! Layer: above rix-store (it adds to a store), below the evaluator (the
//! `fetch*` builtins) and flakes (which lock their inputs through it).

pub mod cache;
pub mod download;
pub mod error;
pub mod git;
pub mod github;
pub mod input;
pub mod path;
pub mod settings;
pub mod tarball;
pub mod unpack;

use rix_formats::flake_ref::{AttrValue, InputType};
use rix_formats::store_path::{FileIngestionMethod, StorePath};
use rix_formats::HashAlgo;
use rix_store::store_api::Store;

pub use cache::Cache;
pub use error::{FetchError, Result};
pub use input::Input;
pub use settings::FetchSettings;

/// What fetching keeps for the life of a process: the settings and the cache.
pub struct Fetchers {
    pub settings: FetchSettings,
    pub cache: Cache,
}

impl Fetchers {
    /// Fetchers with their cache in `settings.cache_dir`.
    pub fn new(settings: FetchSettings) -> Result<Self> {
        let cache = Cache::open(&settings)?;
        Ok(Fetchers { settings, cache })
    }

    /// Fetching into `store`.
    pub fn on<'a>(&'a self, store: &'a dyn Store) -> Fetcher<'a> {
        Fetcher {
            store,
            settings: &self.settings,
            cache: &self.cache,
        }
    }
}

/// What one fetch needs: a store to add to (any [`Store`]: local or a
/// daemon), the settings, the cache.
#[derive(Clone, Copy)]
pub struct Fetcher<'a> {
    pub store: &'a dyn Store,
    pub settings: &'a FetchSettings,
    pub cache: &'a Cache,
}

impl Fetcher<'_> {
    /// Fetches `input` into the store: its store path and the input locked
    /// (with `narHash`, and what its scheme adds: `rev`, `lastModified`, ...).
    /// Mirrors `Input::fetchToStore`.
    pub fn fetch_to_store(&self, input: &Input) -> Result<(StorePath, Input)> {
        // Nix flushes added paths only with `fsync-store-paths`; a `syncfs`
        // per input would dominate locking a flake of many small inputs.
        let local = self.store.as_local();
        let sync_before = local.map(|l| l.set_sync_writes(self.settings.fsync_store_paths));
        let result = self.fetch_unchecked(input);
        if let (Some(l), Some(before)) = (local, sync_before) {
            l.set_sync_writes(before);
        }
        result.map_err(|e| {
            e.with_trace(format!(
                "while fetching the input '{}'",
                input.to_url_string()
            ))
        })
    }

    fn fetch_unchecked(&self, input: &Input) -> Result<(StorePath, Input)> {
        // A final input with a NAR hash may already be in the store (as Nix's
        // `getAccessorUnchecked`): then nothing is fetched.
        if input.is_final() {
            if let Some(nar_hash) = input.nar_hash()? {
                let path = self.store_path_for(input, &nar_hash)?;
                self.store.add_temp_root(&path)?;
                if self.store.is_valid(&path)? {
                    return Ok((path, input.clone()));
                }
            }
        }
        let (path, mut result) = match input.ty {
            InputType::Path => path::fetch(self, input)?,
            InputType::Git => git::fetch(self, input)?,
            InputType::Tarball => tarball::fetch_tarball(self, input)?,
            InputType::File => tarball::fetch_file(self, input)?,
            InputType::Github | InputType::Gitlab | InputType::Sourcehut => {
                github::fetch(self, input)?
            }
            other => {
                return Err(FetchError::msg(format!(
                    "input type '{}' is not supported yet",
                    other.name()
                )))
            }
        };
        let info = self.store.path_info(&path)?;
        result
            .attrs
            .insert("narHash".into(), AttrValue::Str(info.nar_hash.to_sri()));
        result.check_locks(input)?;
        Ok((path, result))
    }

    /// The path a tree with this NAR hash has under the input's name
    /// (`Input::computeStorePath`).
    pub fn store_path_for(&self, input: &Input, nar_hash: &rix_formats::Hash) -> Result<StorePath> {
        let ca = rix_formats::content_address::ContentAddress::Fixed(
            FileIngestionMethod::Recursive,
            *nar_hash,
        );
        self.store
            .store_dir()
            .make_path_from_ca(input.name(), &ca, [], false)
            .map_err(|e| FetchError::msg(e.to_string()))
    }

    /// The contents of the regular file at valid `path` (read through the
    /// store's NAR when the store is not on this machine).
    pub fn read_file(&self, path: &StorePath) -> Result<Vec<u8>> {
        if let Some(local) = self.store.as_local() {
            return Ok(std::fs::read(local.real_path(path))?);
        }
        let tmp = tempfile::tempdir()?;
        let dest = tmp.path().join("file");
        let mut nar = Vec::new();
        self.store.nar_from_path(path, &mut nar)?;
        rix_store::archive::restore(&nar[..], &dest).map_err(|e| FetchError::msg(e.to_string()))?;
        Ok(std::fs::read(&dest)?)
    }

    /// The SHA-256 of the regular file at valid `path` (Nix's `hashFile`).
    pub fn hash_flat_file(&self, path: &StorePath) -> Result<rix_formats::Hash> {
        if let Some(local) = self.store.as_local() {
            return download::hash_file(&local.real_path(path));
        }
        Ok(HashAlgo::Sha256.digest(self.read_file(path)?))
    }

    /// Adds the file system object at `src` as `name` (recursive, SHA-256),
    /// as Nix's fetchers copy a tree to the store.
    pub fn add_tree(&self, src: &std::path::Path, name: &str) -> Result<StorePath> {
        Ok(self
            .store
            .add_path(src, name, FileIngestionMethod::Recursive, HashAlgo::Sha256)?)
    }
}
