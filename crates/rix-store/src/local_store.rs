//! The local store: store objects on disk plus the database that says which are valid.
//!
//! Every write follows one protocol ([`crate::write`]): take a temporary root
//! and the path's lock, write into a temporary name in the store directory,
//! canonicalise, hash, sync, rename into place, then register in one SQLite
//! transaction. A process killed at any point leaves either a valid path or an
//! invalid leftover that the next writer of that path (or the garbage
//! collector) removes.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rix_formats::content_address::ContentAddress;
use rix_formats::derivation::Derivation;
use rix_formats::hash::{Hash, HashAlgo, Hasher};
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath, StorePathError};
use thiserror::Error;

use crate::archive::{self, ArchiveError};
use crate::canonicalise::delete_path;
use crate::db::{Db, DbError};
use crate::drv_check::{DrvCheckError, DrvChecker};
use crate::layout::StoreLayout;
use crate::lock::{lock_file, open_lock_file, LockError, LockKind};
use crate::path_info::ValidPathInfo;
use crate::ref_graph::RefGraph;
use crate::temp_roots::TempRoots;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Path(#[from] StorePathError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("path '{0}' is not valid in this store")]
    NotValid(String),
    #[error("NAR for '{path}' has hash {actual}, expected {expected}")]
    HashMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("NAR for '{path}' has {actual} bytes, expected {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("'{path}' was not produced by its content address {ca} (it would be {actual})")]
    CaMismatch {
        path: String,
        ca: String,
        actual: String,
    },
    #[error("invalid derivation '{name}': {message}")]
    Derivation { name: String, message: String },
    #[error(transparent)]
    DrvCheck(#[from] DrvCheckError),
    #[error("cannot add '{0}' with --flat: only regular files can be hashed flat")]
    FlatNotFile(PathBuf),
    #[error("{operation} is not supported by store '{store}'")]
    Unsupported { operation: String, store: String },
    /// The daemon (or other remote store) refused the operation; the connection
    /// is still usable.
    #[error("{message}")]
    Remote { message: String, exit_status: u32 },
    /// The conversation with a remote store broke (unexpected bytes, a closed
    /// connection): the connection is dropped.
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Gc(Box<crate::gc::GcError>),
    /// A `secret-key-files` key that cannot be read or parsed.
    #[error("{0}")]
    SecretKey(String),
    /// A path from elsewhere that neither a content address nor a trusted
    /// signature vouches for, where signatures are required.
    #[error("cannot add path '{0}' because it lacks a signature by a trusted key")]
    Untrusted(String),
}

impl From<crate::gc::GcError> for StoreError {
    fn from(e: crate::gc::GcError) -> Self {
        Self::Gc(Box::new(e))
    }
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A local store, shared safely with Nix and with other rix processes.
pub struct LocalStore {
    layout: StoreLayout,
    db: Mutex<Db>,
    /// Shared lock on `db/big-lock`, as every Nix process holds while using the store.
    _big_lock: File,
    /// This process's temporary GC roots in this store.
    temp_roots: Arc<TempRoots>,
    /// `auto-optimise-store`: hard-link identical files as paths are added.
    auto_optimise: std::sync::atomic::AtomicBool,
    /// Whether [`Self::add_atomically`] flushes the file system before
    /// registering (see [`Self::set_sync_writes`]).
    sync_writes: std::sync::atomic::AtomicBool,
    /// Temporaries of other processes in the store directory, by hash part,
    /// listed when this process first found a lock file left behind (see
    /// [`Self::remove_stale_temps`]).
    others_temps: OnceLock<Mutex<HashMap<String, Vec<String>>>>,
    /// See [`Self::observe_writes`].
    write_observer: OnceLock<WriteObserver>,
    /// Modulo hashes of derivations, for checking their outputs.
    drv_checker: DrvChecker,
    /// The experimental feature `ca-derivations` (see [`Self::enable_ca_derivations`]).
    ca_derivations: std::sync::atomic::AtomicBool,
    /// `secret-key-files` (see [`Self::set_secret_key_files`]).
    secret_key_files: OnceLock<Vec<PathBuf>>,
    /// Their keys, or why they cannot be read.
    secret_keys: OnceLock<std::result::Result<Vec<rix_formats::signature::SecretKey>, String>>,
}

type WriteObserver = Box<dyn Fn(&StorePath) + Send + Sync>;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    /// Opens the store, creating its directories and database when missing.
    pub fn open(layout: StoreLayout) -> Result<Self> {
        for dir in [
            &layout.real_store_dir,
            &layout.db_dir(),
            &layout.gcroots_dir(),
            &layout.temproots_dir(),
            &layout.profiles_dir(),
        ] {
            std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        let big_lock_path = layout.db_dir().join("big-lock");
        let big_lock = open_lock_file(&big_lock_path).map_err(StoreError::io(&big_lock_path))?;
        lock_file(&big_lock, LockKind::Shared, true).map_err(StoreError::io(&big_lock_path))?;
        let db = Db::open(&layout.db_dir(), layout.store_dir.clone())?;
        Ok(Self {
            temp_roots: TempRoots::for_store(&layout),
            drv_checker: DrvChecker::new(&layout),
            layout,
            db: Mutex::new(db),
            _big_lock: big_lock,
            auto_optimise: std::sync::atomic::AtomicBool::new(false),
            sync_writes: std::sync::atomic::AtomicBool::new(true),
            others_temps: OnceLock::new(),
            write_observer: OnceLock::new(),
            ca_derivations: std::sync::atomic::AtomicBool::new(false),
            secret_key_files: OnceLock::new(),
            secret_keys: OnceLock::new(),
        })
    }

    /// Turns on the experimental feature `ca-derivations` for this store
    /// handle: the realisation tables are created if missing (as Nix does when
    /// it opens a store with the feature), builds register realisations and
    /// floating content-addressed derivations may be built.
    pub fn enable_ca_derivations(&self) -> Result<()> {
        self.db().enable_ca_derivations()?;
        self.ca_derivations.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `ca-derivations` is enabled (see [`Self::enable_ca_derivations`]).
    pub fn ca_derivations(&self) -> bool {
        self.ca_derivations.load(Ordering::Relaxed)
    }

    /// The realisation of a derivation output, if any (see [`crate::realisations`]).
    pub fn query_realisation(
        &self,
        id: &crate::realisations::DrvOutput,
    ) -> Result<Option<crate::realisations::Realisation>> {
        Ok(self.db().query_realisation(id)?)
    }

    /// Registers a realisation (see [`crate::db::Db::register_realisation`]).
    pub fn register_realisation(&self, r: &crate::realisations::Realisation) -> Result<()> {
        Ok(self.db().register_realisation(r)?)
    }

    /// The `secret-key-files` setting: this store's own realisations (those
    /// its builds register) are signed with these keys, read when first
    /// needed (as Nix's `LocalStore::signRealisation`). The first call stays.
    pub fn set_secret_key_files(&self, files: Vec<PathBuf>) {
        let _ = self.secret_key_files.set(files);
    }

    /// Signs `rs` with the keys of [`Self::set_secret_key_files`] (none
    /// set: unchanged).
    pub fn sign_realisations(&self, rs: &mut [crate::realisations::Realisation]) -> Result<()> {
        let Some(files) = self.secret_key_files.get().filter(|f| !f.is_empty()) else {
            return Ok(());
        };
        let keys = self.secret_keys.get_or_init(|| {
            files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f).map_err(|e| {
                        format!("cannot read secret key file '{}': {e}", f.display())
                    })?;
                    text.trim()
                        .parse::<rix_formats::signature::SecretKey>()
                        .map_err(|e| format!("secret key file '{}': {e}", f.display()))
                })
                .collect()
        });
        let keys = keys
            .as_ref()
            .map_err(|e| StoreError::SecretKey(e.clone()))?;
        for r in rs.iter_mut() {
            for k in keys {
                r.sign(k);
            }
        }
        Ok(())
    }

    /// Registers realisations in one transaction (see
    /// [`crate::db::Db::register_realisations`]).
    pub fn register_realisations(&self, rs: &[crate::realisations::Realisation]) -> Result<()> {
        Ok(self.db().register_realisations(rs)?)
    }

    /// The realisations of `ids`, read in one transaction.
    pub fn query_realisations(
        &self,
        ids: &[crate::realisations::DrvOutput],
    ) -> Result<Vec<Option<crate::realisations::Realisation>>> {
        Ok(self.db().query_realisations(ids)?)
    }

    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    /// Keeps `path` (and its closure) from being garbage collected, even by a
    /// collector running now, until this process exits (see [`crate::temp_roots`]).
    pub fn add_temp_root(&self, path: &StorePath) -> Result<()> {
        self.temp_roots.add(path).map_err(|source| StoreError::Io {
            path: self.layout.temproots_dir(),
            source,
        })
    }

    /// [`Self::add_temp_root`] for many paths at once (one append to the
    /// roots file, see [`TempRoots::add_many`]).
    pub fn add_temp_roots(&self, paths: &[StorePath]) -> Result<()> {
        self.temp_roots
            .add_many(paths)
            .map_err(|source| StoreError::Io {
                path: self.layout.temproots_dir(),
                source,
            })
    }

    /// `auto-optimise-store`: hard-link the files of paths added from now on with
    /// identical files already in the store (see [`crate::optimise`]).
    pub fn set_auto_optimise(&self, on: bool) {
        self.auto_optimise.store(on, Ordering::Relaxed);
    }

    /// Whether paths added one at a time ([`Self::add_atomically`]: added
    /// files, texts, NARs) are flushed to disk (`syncfs`) before they are
    /// registered: true unless a caller follows Nix's `fsync-store-paths`
    /// (false by default), as the fetchers do. Returns the previous choice.
    pub fn set_sync_writes(&self, on: bool) -> bool {
        self.sync_writes.swap(on, Ordering::Relaxed)
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.layout.store_dir
    }

    /// Locks the database connection for a sequence of queries.
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Physical location of `path`.
    pub fn real_path(&self, path: &StorePath) -> PathBuf {
        self.layout.real_path(path)
    }

    /// `/nix/store/...` for printing.
    pub fn print(&self, path: &StorePath) -> String {
        self.layout.print(path)
    }

    /// Parses a user-given path: a logical store path, a physical one in this store,
    /// or a path inside either (`/nix/store/xxx-foo/bin/sh` → `xxx-foo`).
    pub fn parse_path(&self, s: &str) -> Result<StorePath> {
        if let Ok((p, _)) = self.layout.store_dir.parse_prefix(s) {
            return Ok(p);
        }
        let real = self.layout.real_store_dir.to_string_lossy();
        let logical = s
            .strip_prefix(real.as_ref())
            .map(|rest| format!("{}{rest}", self.layout.store_dir));
        match logical {
            Some(l) => Ok(self.layout.store_dir.parse_prefix(&l)?.0),
            None => Ok(self.layout.store_dir.parse_prefix(s)?.0),
        }
    }

    pub fn is_valid(&self, path: &StorePath) -> Result<bool> {
        Ok(self.db().is_valid(path)?)
    }

    /// The subset of `paths` that is valid, read in one transaction (SQLite
    /// takes its file locks once, not once per path).
    pub fn query_valid_paths(
        &self,
        paths: &std::collections::BTreeSet<StorePath>,
    ) -> Result<std::collections::BTreeSet<StorePath>> {
        Ok(self.db().in_read_transaction(|db| {
            let mut valid = std::collections::BTreeSet::new();
            for p in paths {
                if db.is_valid(p)? {
                    valid.insert(p.clone());
                }
            }
            Ok(valid)
        })?)
    }

    pub fn query_path_info(&self, path: &StorePath) -> Result<Option<ValidPathInfo>> {
        Ok(self.db().query_path_info(path)?)
    }

    /// Like [`Self::query_path_info`] but an invalid path is an error.
    pub fn path_info(&self, path: &StorePath) -> Result<ValidPathInfo> {
        self.query_path_info(path)?
            .ok_or_else(|| StoreError::NotValid(self.print(path)))
    }

    /// The closure of `paths` under references (the paths themselves included).
    pub fn closure(
        &self,
        paths: impl IntoIterator<Item = StorePath>,
    ) -> Result<BTreeSet<StorePath>> {
        Ok(self.closure_graph(paths)?.into_set())
    }

    /// The closure of `paths`, each path with its references, read in one query
    /// per root ([`Db::reference_graph`]); every one of `paths` must be valid.
    pub fn closure_graph(&self, paths: impl IntoIterator<Item = StorePath>) -> Result<RefGraph> {
        let roots: Vec<StorePath> = paths.into_iter().collect();
        let graph = self.db().reference_graph(&roots)?;
        if let Some(invalid) = roots.iter().find(|r| !graph.contains(r)) {
            return Err(StoreError::NotValid(self.print(invalid)));
        }
        Ok(graph)
    }

    /// Starts a read-only snapshot of the database for the life of the returned
    /// guard: a query command takes SQLite's locks once instead of per statement.
    /// Nothing may be added to the store while it is held.
    pub fn read_snapshot(&self) -> Result<ReadSnapshot<'_>> {
        self.db().begin_read()?;
        Ok(ReadSnapshot { store: self })
    }

    /// Sorts `paths` so that every path comes after the paths it refers to
    /// (references outside `paths` are ignored), in Nix's order.
    pub fn topo_sort(&self, paths: &BTreeSet<StorePath>) -> Result<Vec<StorePath>> {
        let refs = self.db().in_read_transaction(|db| {
            paths
                .iter()
                .map(|p| db.references_if_valid(p))
                .collect::<std::result::Result<Vec<_>, DbError>>()
        })?;
        let refs = paths
            .iter()
            .zip(&refs)
            .map(|(p, r)| {
                r.as_ref()
                    .ok_or_else(|| StoreError::NotValid(self.print(p)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::ref_graph::topo_sort_subset(paths, &refs))
    }

    /// Writes a new store object atomically, through the [write
    /// protocol](crate::write). `fill` creates the object at the temporary
    /// path it is given and returns its metadata; if `path` is already valid,
    /// `fill` is not called and the existing record is returned.
    pub fn add_atomically(
        &self,
        path: &StorePath,
        fill: impl FnOnce(&Path) -> Result<ValidPathInfo>,
    ) -> Result<ValidPathInfo> {
        let Some(writer) = self.begin_write(path)? else {
            return self.path_info(path);
        };
        let info = fill(writer.tmp())?;
        writer.canonicalise()?;
        let sync = self.sync_writes.load(Ordering::Relaxed);
        crate::write::commit(self, vec![(writer, info.clone())], sync)?;
        Ok(info)
    }

    /// Calls `hook` as each write of this store begins ([`Self::begin_write`]),
    /// once the path is a temporary root and before its lock file or
    /// temporary is made (for tests and diagnostics; the first hook stays).
    pub fn observe_writes(&self, hook: impl Fn(&StorePath) + Send + Sync + 'static) {
        let _ = self.write_observer.set(Box::new(hook));
    }

    pub(crate) fn observe_write(&self, path: &StorePath) {
        if let Some(hook) = self.write_observer.get() {
            hook(path);
        }
    }

    /// Makes store paths that the write protocol has put in place valid, in one
    /// transaction. Every new store object of rix passes here (added files, `.drv`s,
    /// build outputs, substituted and imported paths), so this is where
    /// every `.drv` is checked ([`Self::check_derivation`]) and its
    /// `DerivationOutputs` rows are recorded, as Nix's `registerValidPaths`, and
    /// where `auto-optimise-store` hard-links their files first. The caller holds
    /// the paths' locks; on an error nothing is registered.
    pub fn register(&self, infos: &[ValidPathInfo]) -> Result<()> {
        self.register_known(infos, &|_| None)
    }

    /// [`Self::register`] for a caller that holds the contents of the `.drv`s
    /// it just wrote (`known` gives them by path), so they are not read back.
    pub fn register_known<'a>(
        &self,
        infos: &[ValidPathInfo],
        known: &dyn Fn(&StorePath) -> Option<&'a [u8]>,
    ) -> Result<()> {
        let mut drv_outputs = Vec::new();
        for info in infos.iter().filter(|i| i.path.is_derivation()) {
            let (drv, bytes) = match known(&info.path) {
                Some(bytes) => (self.parse_derivation(&info.path, bytes)?, bytes.into()),
                None => self.read_derivation_file(&info.path)?,
            };
            let outputs =
                self.drv_checker
                    .check(self.store_dir(), &info.path, &drv, Some(&bytes))?;
            drv_outputs.push((info.path.clone(), outputs));
        }
        if self.auto_optimise.load(Ordering::Relaxed) {
            for info in infos {
                crate::optimise::optimise_path(self, &self.real_path(&info.path))?;
            }
        }
        Ok(self.db().register(infos, &drv_outputs)?)
    }

    /// Parses the `.drv` file at `drv_path` (valid or not); also returns its bytes.
    fn read_derivation_file(
        &self,
        drv_path: &StorePath,
    ) -> Result<(Derivation, std::borrow::Cow<'static, [u8]>)> {
        let real = self.real_path(drv_path);
        let bytes = std::fs::read(&real).map_err(StoreError::io(&real))?;
        Ok((self.parse_derivation(drv_path, &bytes)?, bytes.into()))
    }

    fn parse_derivation(&self, drv_path: &StorePath, bytes: &[u8]) -> Result<Derivation> {
        let name = Derivation::name_from_drv_path(drv_path);
        Derivation::from_aterm(bytes, self.store_dir(), name).map_err(|e| StoreError::Derivation {
            name: self.print(drv_path),
            message: e.to_string(),
        })
    }

    /// Checks that `drv`, the derivation at `drv_path`, declares the output paths
    /// and output environment variables computed from it (see
    /// [`crate::drv_check`]); returns its output paths known in advance.
    pub fn check_derivation(
        &self,
        drv_path: &StorePath,
        drv: &Derivation,
    ) -> Result<Vec<(String, StorePath)>> {
        Ok(self
            .drv_checker
            .check(self.store_dir(), drv_path, drv, None)?)
    }

    /// A fresh temporary name in the store directory (same file system as the
    /// destination, so the final rename is atomic). `path` becomes a temporary
    /// root (when that fails, with a warning: [`Self::add_atomically`] checks it),
    /// so that a collector keeps the temporary file and the path once it is there.
    ///
    /// The name is [`temp_name`]: a store path name with `path`'s hash part.
    /// Nix's collector (2.8: `collectGarbage`) deletes every entry of the store
    /// directory that is not a valid path, with two exceptions: names that parse
    /// as store paths whose hash part is a temporary root (or a root), and
    /// locked `tmp-*` directories. A temporary named like a store path with the
    /// hash part of the path being written is kept by the first rule, whatever
    /// its file type, by Nix's collector and by rix's alike, for as long as this
    /// process holds the temporary root; once the process is gone, both remove
    /// it as garbage.
    ///
    pub fn temp_path(&self, path: &StorePath) -> PathBuf {
        if let Err(e) = self.add_temp_root(path) {
            eprintln!("warning: {e}");
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.layout.real_store_dir.join(temp_name(path, n))
    }

    /// Removes the temporaries of `path` that processes now gone left behind
    /// (killed mid-write). The writer calls it, holding the path's lock, when
    /// the lock file was left behind ([`crate::lock::PathLock::left_behind`]): only then can
    /// such a temporary exist, so a store that sees no failures is never
    /// listed. The store directory is listed once per process, and a temporary
    /// is removed only when the process named in it is not running, so a live
    /// concurrent writer's is left alone.
    pub(crate) fn remove_stale_temps(&self, path: &StorePath) {
        let index = self
            .others_temps
            .get_or_init(|| Mutex::new(others_temps(&self.layout.real_store_dir)));
        let names = index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path.hash_part());
        for name in names.into_iter().flatten() {
            if !crate::gc::temporary_in_use(&self.layout, &name) {
                let _ = delete_path(&self.layout.real_store_dir.join(&name));
            }
        }
    }

    /// Adds a file or tree, as `nix-store --add` (recursive, SHA-256) or
    /// `nix-store --add-fixed [--recursive] ALGO`.
    pub fn add_path(
        &self,
        src: &Path,
        name: &str,
        method: FileIngestionMethod,
        algo: HashAlgo,
    ) -> Result<StorePath> {
        let ca_hash = match method {
            FileIngestionMethod::Recursive => archive::hash_path(src, algo)?.0,
            FileIngestionMethod::Flat => {
                if !std::fs::symlink_metadata(src)
                    .map_err(StoreError::io(src))?
                    .is_file()
                {
                    return Err(StoreError::FlatNotFile(src.to_path_buf()));
                }
                hash_file(src, algo)?
            }
        };
        let ca = ContentAddress::Fixed(method, ca_hash);
        let path = self
            .layout
            .store_dir
            .make_path_from_ca(name, &ca, [], false)?;
        self.add_atomically(&path, |tmp| {
            copy_tree(src, tmp)?;
            let (nar_hash, nar_size) = archive::hash_path(tmp, HashAlgo::Sha256)?;
            // The source may have changed between hashing and copying.
            let copied = match method {
                FileIngestionMethod::Recursive if algo == HashAlgo::Sha256 => nar_hash,
                FileIngestionMethod::Recursive => archive::hash_path(tmp, algo)?.0,
                FileIngestionMethod::Flat => hash_file(tmp, algo)?,
            };
            if copied != ca_hash {
                return Err(StoreError::HashMismatch {
                    path: self.print(&path),
                    expected: ca_hash.to_string(),
                    actual: copied.to_string(),
                });
            }
            let mut info = ValidPathInfo::new(path.clone(), nar_hash, nar_size);
            info.ca = Some(ca);
            Ok(info)
        })?;
        Ok(path)
    }

    /// Adds a text file whose path depends on its contents and references, as
    /// `builtins.toFile` and `.drv` files. Mirrors `addTextToStore`.
    pub fn add_text(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath> {
        let hash = HashAlgo::Sha256.digest(contents);
        let path = self
            .layout
            .store_dir
            .make_text_path(name, &hash, references)?;
        self.add_atomically(&path, |tmp| {
            std::fs::write(tmp, contents).map_err(StoreError::io(tmp))?;
            let (nar_hash, nar_size) = archive::hash_path(tmp, HashAlgo::Sha256)?;
            let mut info = ValidPathInfo::new(path.clone(), nar_hash, nar_size);
            info.references = references.clone();
            info.ca = Some(ContentAddress::Text(hash));
            Ok(info)
        })?;
        Ok(path)
    }

    /// Writes a derivation as a `.drv` file and records its output paths (the
    /// `DerivationOutputs` rows), as Nix's `writeDerivation`.
    pub fn add_derivation(&self, drv: &Derivation) -> Result<StorePath> {
        // The store interface's: the ATerm as a text file; `register` checks
        // the outputs and records them.
        crate::store_api::Store::add_derivation(self, drv)
    }

    /// Writes derivations as `.drv` files in one batch of the write protocol
    /// (one transaction; one `syncfs` only when `sync`, which Nix's
    /// `fsync-store-paths`, false by default, asks for): those valid already
    /// are not written. Returns their paths, in order. For derivations the
    /// builder makes itself (resolved content-addressed derivations).
    pub fn add_derivations(&self, drvs: &[Derivation], sync: bool) -> Result<Vec<StorePath>> {
        let mut texts = Vec::with_capacity(drvs.len());
        for drv in drvs {
            let aterm = drv
                .to_aterm(self.store_dir())
                .map_err(|e| StoreError::Derivation {
                    name: drv.name.clone(),
                    message: e.to_string(),
                })?;
            let refs: BTreeSet<StorePath> = drv.references().into_iter().cloned().collect();
            let hash = HashAlgo::Sha256.digest(&aterm);
            let path =
                self.layout
                    .store_dir
                    .make_text_path(&format!("{}.drv", drv.name), &hash, &refs)?;
            texts.push((path, aterm, refs, hash));
        }
        let paths: Vec<StorePath> = texts.iter().map(|t| t.0.clone()).collect();
        self.add_temp_roots(&paths)?;
        let valid = self.query_valid_paths(&paths.iter().cloned().collect())?;
        let mut written = Vec::new();
        let mut seen = BTreeSet::new();
        for (path, aterm, refs, hash) in &texts {
            if valid.contains(path) || !seen.insert(path) {
                continue;
            }
            let Some(writer) = self.begin_write(path)? else {
                continue;
            };
            std::fs::write(writer.tmp(), aterm).map_err(StoreError::io(writer.tmp()))?;
            writer.canonicalise()?;
            let (nar_hash, nar_size) = archive::hash_path(writer.tmp(), HashAlgo::Sha256)?;
            let mut info = ValidPathInfo::new(path.clone(), nar_hash, nar_size);
            info.references = refs.clone();
            info.ca = Some(ContentAddress::Text(*hash));
            written.push((writer, info));
        }
        let known: std::collections::HashMap<&StorePath, &[u8]> =
            texts.iter().map(|(p, a, _, _)| (p, a.as_slice())).collect();
        crate::write::commit_known(self, written, sync, &|p| known.get(p).copied())?;
        Ok(paths)
    }

    /// Adds a store object from its NAR serialisation, checking the NAR's hash and
    /// size against `info` before anything is registered (imports, substitution).
    pub fn add_nar(&self, info: &ValidPathInfo, nar: impl Read) -> Result<ValidPathInfo> {
        let printed = self.print(&info.path);
        self.add_atomically(&info.path, |tmp| {
            let mut reader = HashingReader::new(nar);
            archive::restore(&mut reader, tmp)?;
            let (hash, size) = reader.finish();
            if size != info.nar_size && info.nar_size != 0 {
                return Err(StoreError::SizeMismatch {
                    path: printed.clone(),
                    expected: info.nar_size,
                    actual: size,
                });
            }
            if hash != info.nar_hash {
                return Err(StoreError::HashMismatch {
                    path: printed.clone(),
                    expected: info.nar_hash.to_string(),
                    actual: hash.to_string(),
                });
            }
            if let Some(ca) = &info.ca {
                check_content_address(self.store_dir(), info, ca, &hash, tmp)?;
            }
            let mut info = info.clone();
            info.nar_size = size;
            Ok(info)
        })
    }

    /// Flushes the store's file system (see [`sync_fs`]).
    pub fn sync(&self) -> Result<()> {
        sync_fs(&self.layout.real_store_dir)
    }

    /// Path of the build log of `drv` (Nix's layout: `drvs/<2 chars>/<rest>.bz2`).
    pub fn log_path(&self, drv: &StorePath) -> PathBuf {
        let base = drv.to_string();
        self.layout
            .log_dir
            .join("drvs")
            .join(&base[..2])
            .join(format!("{}.bz2", &base[2..]))
    }
}

/// `<hash part of path>-rix-tmp-<pid>-<n>`: the name of the `n`th temporary of
/// this process for `path` (see [`LocalStore::temp_path`]).
pub fn temp_name(path: &StorePath, n: u64) -> String {
    format!("{}-{TEMP_MARK}{}-{n}", path.hash_part(), std::process::id())
}

/// What follows the hash part in the names of rix's temporaries.
pub const TEMP_MARK: &str = "rix-tmp-";

/// The process that made a temporary named by [`temp_name`] (or by the
/// `.rix-tmp-<pid>-<n>-<hash>` form of rix before it), if `name` is one.
pub fn temp_owner(name: &str) -> Option<i32> {
    let rest = match name.strip_prefix(".rix-tmp-") {
        Some(rest) => rest,
        None => name.get(33..)?.strip_prefix(TEMP_MARK)?,
    };
    rest.split('-').next()?.parse().ok()
}

/// The temporaries of other processes in `dir` ([`temp_name`]s), by hash part.
fn others_temps(dir: &Path) -> HashMap<String, Vec<String>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let me = std::process::id() as i32;
    let mark = format!("-{TEMP_MARK}");
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(hash) = name.get(..32) else { continue };
        if name[32..].starts_with(&mark) && temp_owner(&name).is_some_and(|pid| pid != me) {
            found.entry(hash.to_owned()).or_default().push(name);
        }
    }
    found
}

/// Flushes the store's file system so that content reaches the disk before the
/// database says it is valid (one `syncfs`, cheaper than an fsync per file).
fn sync_fs(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(StoreError::io(dir))?;
    nix::unistd::syncfs(&f).map_err(|e| StoreError::Io {
        path: dir.to_path_buf(),
        source: e.into(),
    })
}

/// The hash of a file's contents (flat ingestion: `--flat`, fixed-output `flat`).
pub fn hash_file(path: &Path, algo: HashAlgo) -> Result<Hash> {
    let mut f = File::open(path).map_err(StoreError::io(path))?;
    let mut h = Hasher::new(algo);
    std::io::copy(&mut f, &mut h).map_err(StoreError::io(path))?;
    Ok(h.finish())
}

/// Copies a file, symlink or tree without following symlinks (a NAR round trip
/// would do the same; copying directly avoids serialising).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(src).map_err(StoreError::io(src))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(StoreError::io(src))?;
        std::os::unix::fs::symlink(target, dst).map_err(StoreError::io(dst))
    } else if ft.is_dir() {
        std::fs::create_dir(dst).map_err(StoreError::io(dst))?;
        for entry in std::fs::read_dir(src).map_err(StoreError::io(src))? {
            let entry = entry.map_err(StoreError::io(src))?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else if ft.is_file() {
        std::fs::copy(src, dst).map_err(StoreError::io(dst))?;
        Ok(())
    } else {
        Err(StoreError::Io {
            path: src.to_path_buf(),
            source: std::io::Error::other("not a regular file, directory or symlink"),
        })
    }
}

/// Hashes (SHA-256) and counts whatever is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Hasher::new(HashAlgo::Sha256),
            count: 0,
        }
    }

    pub fn finish(self) -> (Hash, u64) {
        (self.hasher.finish(), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// See [`LocalStore::read_snapshot`].
#[must_use = "the snapshot ends when this is dropped"]
pub struct ReadSnapshot<'a> {
    store: &'a LocalStore,
}

impl Drop for ReadSnapshot<'_> {
    fn drop(&mut self) {
        let _ = self.store.db().end_read();
    }
}

/// A content-addressed path from elsewhere is what its content address says
/// (as Nix's `LocalStore::addToStore` checks): the address gives the path,
/// and the contents written at `tmp` (whose NAR hash is `nar_hash`) have the
/// address's hash.
fn check_content_address(
    store_dir: &StoreDir,
    info: &ValidPathInfo,
    ca: &ContentAddress,
    nar_hash: &Hash,
    tmp: &Path,
) -> Result<()> {
    let printed = store_dir.display(&info.path);
    let refs = info.references.iter().filter(|r| **r != info.path);
    let self_ref = info.references.contains(&info.path);
    let gives = store_dir.make_path_from_ca(info.path.name(), ca, refs, self_ref);
    if gives.as_ref().ok() != Some(&info.path) {
        return Err(StoreError::CaMismatch {
            path: printed,
            ca: ca.to_string(),
            actual: gives.map_or_else(|e| e.to_string(), |p| store_dir.display(&p)),
        });
    }
    // A path that refers to itself (a floating content-addressed derivation's
    // output) is hashed with its own hash part zeroed (Nix's
    // `HashModuloSink`); that hash is not checked here yet, only the path.
    if self_ref {
        return Ok(());
    }
    let want = ca.hash();
    let actual = match ca {
        ContentAddress::Fixed(FileIngestionMethod::Recursive, h) if h.algo() == nar_hash.algo() => {
            *nar_hash
        }
        ContentAddress::Fixed(FileIngestionMethod::Recursive, h) => {
            archive::hash::hash_path(tmp, h.algo())?.0
        }
        ContentAddress::Fixed(FileIngestionMethod::Flat, h) | ContentAddress::Text(h) => {
            let mut file = File::open(tmp).map_err(StoreError::io(tmp))?;
            let mut hasher = Hasher::new(h.algo());
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = file.read(&mut buf).map_err(StoreError::io(tmp))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            hasher.finish()
        }
    };
    if actual != *want {
        return Err(StoreError::CaMismatch {
            path: printed,
            ca: ca.to_string(),
            actual: format!(
                "contents with hash {}",
                actual.to_typed_string(rix_formats::hash::Encoding::Nix32)
            ),
        });
    }
    Ok(())
}
