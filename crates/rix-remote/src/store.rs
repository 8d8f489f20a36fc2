//! [`DaemonStore`]: a store reached through a Nix daemon. Implements
//! [`Store`] and [`GcStore`], and has the daemon's other operations (building,
//! substitution queries, verification, ...) as its own methods. Mirrors
//! `RemoteStore` and `UDSRemoteStore` in Nix (`remote-store.cc`,
//! `uds-remote-store.cc`).
//!
//! Connections are pooled: a thread takes an idle connection or opens a new
//! one, and gives it back when its operation is complete. A connection whose
//! operation broke off is dropped (see [`crate::connection`]). Temporary roots
//! belong to the daemon's process for one connection, so the pool never closes
//! a healthy connection: the roots added through it last as long as the store.
//!
//! As Nix's `Store` does (its `pathInfoCache`), the store remembers the infos
//! of valid paths it was told about, so asking again (`query_path_info` or
//! `is_valid` after `query_path_info`, a sort after a listing) costs no round
//! trip. Only valid
//! paths are remembered (a path may become valid at any time); the memory is
//! emptied by a garbage collection through this store (as in Nix) and forgets
//! a path whose signatures or contents this store changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rix_formats::content_address::ContentAddress;
use rix_formats::derivation::Derivation;
use rix_formats::hash::HashAlgo;
use rix_formats::nar::reader::NarReader;
use rix_formats::nar::writer::NarWriter;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::worker_protocol::handshake::TrustedFlag;
use rix_formats::worker_protocol::stderr::{verbosity, STDERR_ERROR};
use rix_formats::worker_protocol::wire::{read_count, read_string, read_u64};
use rix_formats::worker_protocol::{
    AddMethod, BuildMode, BuildResult, ClientSettings, ContentAddressMethodWithAlgo, DerivedPath,
    DrvOutput, GcAction as WireGcAction, GcRequest, KeyedBuildResult, OutputsSpec, ProtocolVersion,
    Realisation, Request, Serialise, StderrMsg, UnkeyedValidPathInfo, ValidPathInfo as WireInfo,
};
use rix_store::gc::{GcAction, GcOptions, GcResults};
use rix_store::local_store::{Result, StoreError};
use rix_store::path_info::ValidPathInfo;
use rix_store::store_api::{AddFlags, GcStore, RealisationStore, Store};

use crate::connection::{io_error, strip_ansi, wire_error, Connection};
use crate::logger::DaemonLogger;
use crate::transport::{Connector, UnixConnector};
use crate::url::DaemonUrl;
use rix_store::path_info::{from_unkeyed, from_wire, to_wire};

/// The client's settings, sent with `SetOptions` on every connection. The
/// defaults are Nix's client defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    pub keep_failed: bool,
    pub keep_going: bool,
    pub try_fallback: bool,
    /// A verbosity level (`lvlInfo`, 3, by default; `-v` adds one).
    pub verbosity: u32,
    /// `max-jobs` (1).
    pub max_jobs: u32,
    /// `max-silent-time` in seconds (0: none).
    pub max_silent_time: u32,
    /// Whether build logs are sent (Nix's `verboseBuild`, true).
    pub verbose_build: bool,
    /// `cores` (the machine's CPUs).
    pub build_cores: u32,
    pub use_substitutes: bool,
    /// `--option NAME VALUE` pairs and other settings to pass on, in order.
    pub overrides: Vec<(String, String)>,
    /// The newest protocol version to offer (1.38); lower it to speak an
    /// older protocol to a newer daemon.
    pub max_version: ProtocolVersion,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            keep_failed: false,
            keep_going: false,
            try_fallback: false,
            verbosity: verbosity::INFO,
            max_jobs: 1,
            max_silent_time: 0,
            verbose_build: true,
            build_cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            use_substitutes: true,
            overrides: Vec::new(),
            max_version: ProtocolVersion::MAX,
        }
    }
}

impl DaemonOptions {
    /// The `SetOptions` request's settings.
    pub fn client_settings(&self) -> ClientSettings {
        ClientSettings {
            keep_failed: self.keep_failed,
            keep_going: self.keep_going,
            try_fallback: self.try_fallback,
            verbosity: self.verbosity,
            max_build_jobs: self.max_jobs,
            max_silent_time: self.max_silent_time,
            verbose_build: self.verbose_build,
            build_cores: self.build_cores,
            use_substitutes: self.use_substitutes,
            overrides: self.overrides.clone(),
        }
    }
}

/// What `QueryMissing` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    pub will_build: BTreeSet<StorePath>,
    pub will_substitute: BTreeSet<StorePath>,
    pub unknown: BTreeSet<StorePath>,
    pub download_size: u64,
    pub nar_size: u64,
}

/// What a substituter knows about a path (`SubstitutablePathInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstitutablePathInfo {
    pub deriver: Option<StorePath>,
    pub references: BTreeSet<StorePath>,
    pub download_size: u64,
    pub nar_size: u64,
}

/// A store reached through a Nix daemon over a Unix socket.
pub struct DaemonStore {
    socket: PathBuf,
    connector: Arc<dyn Connector>,
    store_dir: StoreDir,
    url: String,
    settings: ClientSettings,
    max_version: ProtocolVersion,
    logger: Arc<dyn DaemonLogger>,
    pool: Mutex<Vec<Connection>>,
    /// Infos of valid paths already answered (see the module's documentation).
    info_cache: Mutex<HashMap<StorePath, ValidPathInfo>>,
}

/// At most this many `QueryPathInfo` requests are sent before their replies
/// are read ([`DaemonStore::query_path_infos`]).
const PIPELINE: usize = 128;

/// At most this many infos are remembered (Nix's `path-info-cache-size`);
/// when full, the memory starts again empty.
const INFO_CACHE_SIZE: usize = 65536;

/// A connection taken from the pool; back to it when dropped in sync.
struct Pooled<'a> {
    store: &'a DaemonStore,
    conn: Option<Connection>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.in_sync {
                if let Ok(mut pool) = self.store.pool.lock() {
                    pool.push(conn);
                }
            }
        }
    }
}

impl DaemonStore {
    /// Opens the daemon store of a `daemon` or `unix://` URL (see
    /// [`crate::url`]); the URL's warnings go to `logger`. Connects at once, so
    /// an absent or incompatible daemon is reported here.
    pub fn open_url(
        url: &str,
        options: DaemonOptions,
        logger: Arc<dyn DaemonLogger>,
    ) -> Result<DaemonStore> {
        let parsed = DaemonUrl::parse(url)?
            .ok_or_else(|| StoreError::Protocol(format!("'{url}' is not a daemon store URL")))?;
        for w in &parsed.warnings {
            logger.warn(w);
        }
        Self::open(
            &parsed.socket,
            parsed.store_dir,
            parsed.display,
            options,
            logger,
        )
    }

    /// Opens the daemon at `socket`, whose store directory is `store_dir`;
    /// `url` names it in messages.
    pub fn open(
        socket: &Path,
        store_dir: StoreDir,
        url: String,
        options: DaemonOptions,
        logger: Arc<dyn DaemonLogger>,
    ) -> Result<DaemonStore> {
        let connector = Arc::new(UnixConnector {
            socket: socket.to_path_buf(),
        });
        Self::open_with(
            connector,
            socket.to_path_buf(),
            store_dir,
            url,
            options,
            logger,
        )
    }

    /// Opens a daemon reached through `connector` (`ssh-ng://`: a command's
    /// stdin and stdout); `socket` is what [`Self::socket`] reports.
    pub fn open_with(
        connector: Arc<dyn Connector>,
        socket: PathBuf,
        store_dir: StoreDir,
        url: String,
        options: DaemonOptions,
        logger: Arc<dyn DaemonLogger>,
    ) -> Result<DaemonStore> {
        let store = DaemonStore {
            socket,
            connector,
            store_dir,
            url,
            settings: options.client_settings(),
            max_version: options.max_version,
            logger,
            pool: Mutex::new(Vec::new()),
            info_cache: Mutex::new(HashMap::new()),
        };
        drop(store.conn()?);
        Ok(store)
    }

    fn new_connection(&self) -> Result<Connection> {
        Connection::open(
            &*self.connector,
            &self.url,
            &self.store_dir,
            self.max_version,
            &self.settings,
            &*self.logger,
        )
    }

    fn conn(&self) -> Result<Pooled<'_>> {
        let idle = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match idle {
            Some(c) => c,
            None => self.new_connection()?,
        };
        Ok(Pooled {
            store: self,
            conn: Some(conn),
        })
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Result<ProtocolVersion> {
        Ok(self.conn()?.version())
    }

    /// The daemon's Nix version.
    pub fn daemon_nix_version(&self) -> Result<String> {
        Ok(self.conn()?.daemon_nix_version.clone())
    }

    /// Whether the daemon trusts this client (`None` below protocol 1.35).
    pub fn is_trusted_client(&self) -> Result<Option<TrustedFlag>> {
        Ok(self.conn()?.trusted)
    }

    /// Connections currently idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.pool.lock().map(|p| p.len()).unwrap_or(0)
    }

    fn cached_info(&self, path: &StorePath) -> Option<ValidPathInfo> {
        let cache = self.info_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(path).cloned()
    }

    fn remember_info(&self, info: &ValidPathInfo) {
        let mut cache = self.info_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= INFO_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(info.path.clone(), info.clone());
    }

    /// Sends `QueryPathInfo` for each of `paths` in one write, then reads the
    /// replies. The requests (at most [`PIPELINE`] of a few hundred bytes) fit
    /// in the socket's buffer, so writing them never waits for the daemon,
    /// which may meanwhile write its replies until this side reads them. A
    /// daemon's error for one path is returned after all the replies are read
    /// (the connection stays in step).
    fn pipelined_infos(&self, paths: &[&StorePath]) -> Result<Vec<Option<ValidPathInfo>>> {
        let mut conn = self.conn()?;
        conn.in_sync = false;
        {
            let conn = &mut *conn;
            for p in paths {
                Request::QueryPathInfo((*p).clone())
                    .write(&mut conn.writer, &conn.ctx)
                    .map_err(io_error)?;
            }
            conn.writer.flush().map_err(io_error)?;
        }
        let mut out = Vec::with_capacity(paths.len());
        let mut error = None;
        for p in paths {
            let status = conn.process_stderr(&*self.logger, None, None);
            conn.in_sync = false;
            match status {
                Ok(()) => {
                    if conn.read::<bool>()? {
                        let info: UnkeyedValidPathInfo = conn.read()?;
                        out.push(Some(from_unkeyed((*p).clone(), info)));
                    } else {
                        out.push(None);
                    }
                }
                Err(e @ StoreError::Remote { .. }) => {
                    error.get_or_insert(e);
                    out.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        conn.in_sync = true;
        match error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// A repairing build may rewrite valid paths (and their infos).
    fn forget_if_repair(&self, mode: BuildMode) {
        if matches!(mode, BuildMode::Repair) {
            self.forget_info(None);
        }
    }

    fn forget_info(&self, path: Option<&StorePath>) {
        let mut cache = self.info_cache.lock().unwrap_or_else(|e| e.into_inner());
        match path {
            Some(p) => drop(cache.remove(p)),
            None => cache.clear(),
        }
    }

    /// Sends `request`, reads the stderr stream, then the reply with `reply`.
    fn call<T>(
        &self,
        request: &Request,
        reply: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        conn.send(request)?;
        conn.process_stderr(&*self.logger, None, None)?;
        let value = reply(&mut conn)?;
        conn.in_sync = true;
        Ok(value)
    }

    /// A request whose reply is one `u64` Nix ignores (`1`).
    fn call_unit(&self, request: &Request) -> Result<()> {
        self.call(request, |c| c.read::<u64>().map(drop))
    }

    fn call_value<T: Serialise>(&self, request: &Request) -> Result<T> {
        self.call(request, |c| c.read::<T>())
    }

    /// Uploads framed data after `request`, then reads the reply with `reply`.
    fn upload<T>(
        &self,
        request: &Request,
        data: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
        reply: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        conn.upload(request, &*self.logger, data)?;
        let value = reply(&mut conn)?;
        conn.in_sync = true;
        Ok(value)
    }

    /// `AddToStore` (the 1.25 form): `dump` writes the file's bytes or its NAR.
    fn add_ca(
        &self,
        name: &str,
        method: ContentAddressMethodWithAlgo,
        references: &BTreeSet<StorePath>,
        repair: bool,
        dump: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<ValidPathInfo> {
        let request = Request::AddToStore {
            name: name.to_owned(),
            method,
            references: references.clone(),
            repair,
        };
        self.upload(&request, dump, |c| c.read::<WireInfo>().map(from_wire))
    }

    // ----- operations beyond the Store trait -----

    /// `BuildPaths`: builds or substitutes `paths`; a failure is an error.
    pub fn build_paths(&self, paths: &[DerivedPath], mode: BuildMode) -> Result<()> {
        self.forget_if_repair(mode);
        self.call_unit(&Request::BuildPaths {
            paths: paths.to_vec(),
            mode,
        })
    }

    /// `BuildPathsWithResults`: one result per path, failures included.
    pub fn build_paths_with_results(
        &self,
        paths: &[DerivedPath],
        mode: BuildMode,
    ) -> Result<Vec<KeyedBuildResult>> {
        self.forget_if_repair(mode);
        self.call_value(&Request::BuildPathsWithResults {
            paths: paths.to_vec(),
            mode,
        })
    }

    /// The outputs of `drv_path` after a successful build result: those it
    /// lists, with those the daemon knows besides (Nix 2.8 does not list the
    /// outputs that were valid already).
    pub fn outputs_built(
        &self,
        drv_path: &StorePath,
        result: &BuildResult,
    ) -> Result<BTreeMap<String, StorePath>> {
        let mut outputs: BTreeMap<String, StorePath> = result
            .built_outputs
            .values()
            .map(|real| (real.id.output_name.clone(), real.out_path.clone()))
            .collect();
        for (name, path) in self.query_derivation_output_map(drv_path)? {
            if let Some(path) = path {
                outputs.entry(name).or_insert(path);
            }
        }
        Ok(outputs)
    }

    /// Builds (or substitutes) `outputs` of `drv_path` and returns the
    /// derivation's outputs; a failed build is the daemon's message as
    /// `StoreError::Remote`.
    pub fn build_outputs(
        &self,
        drv_path: &StorePath,
        outputs: OutputsSpec,
    ) -> Result<BTreeMap<String, StorePath>> {
        let target = DerivedPath::Built {
            drv_path: drv_path.clone(),
            outputs,
        };
        let results = self.build_paths_with_results(&[target], BuildMode::Normal)?;
        let Some(r) = results.into_iter().next() else {
            return Err(StoreError::Protocol(
                "the daemon answered BuildPathsWithResults with no result".into(),
            ));
        };
        if !r.result.status.is_success() {
            return Err(StoreError::Remote {
                message: strip_ansi(&r.result.error_msg),
                exit_status: 1,
            });
        }
        self.outputs_built(drv_path, &r.result)
    }

    /// `BuildDerivation`: builds `drv` (sent in full; its input derivations'
    /// outputs must be valid) as `drv_path`.
    pub fn build_derivation(
        &self,
        drv_path: &StorePath,
        drv: &Derivation,
        mode: BuildMode,
    ) -> Result<BuildResult> {
        self.forget_if_repair(mode);
        self.call_value(&Request::BuildDerivation {
            drv_path: drv_path.clone(),
            drv: drv.clone(),
            mode,
        })
    }

    /// `EnsurePath`: makes `path` valid, substituting it if needed.
    pub fn ensure_path(&self, path: &StorePath) -> Result<()> {
        self.call_unit(&Request::EnsurePath(path.clone()))
    }

    /// `QueryMissing`: what building `targets` would build, substitute, or
    /// not know how to make.
    pub fn query_missing(&self, targets: &[DerivedPath]) -> Result<Missing> {
        self.call(&Request::QueryMissing(targets.to_vec()), |c| {
            Ok(Missing {
                will_build: c.read()?,
                will_substitute: c.read()?,
                unknown: c.read()?,
                download_size: c.read()?,
                nar_size: c.read()?,
            })
        })
    }

    /// Makes the symlink `gc_root` (outside the store) point to `path` and
    /// registers it as a root; returns the root's absolute path. With a
    /// protocol of 1.36 or later and a daemon that trusts us, `AddPermRoot`;
    /// otherwise as Nix's client does (`LocalFSStore::addPermRoot`): a
    /// temporary root, the symlink made here, then `AddIndirectRoot`.
    pub fn add_perm_root(&self, path: &StorePath, gc_root: &Path) -> Result<PathBuf> {
        let gc_root = absolute(gc_root)?;
        let (version, trusted) = {
            let c = self.conn()?;
            (c.version(), c.trusted)
        };
        if version.has_add_perm_root() && trusted == Some(TrustedFlag::Trusted) {
            let root: String = self.call_value(&Request::AddPermRoot {
                path: path.clone(),
                gc_root: gc_root.to_string_lossy().into_owned(),
            })?;
            return Ok(PathBuf::from(root));
        }
        let printed = self.store_dir.display(path);
        let in_store = |p: &Path| p.starts_with(self.store_dir.as_str());
        if in_store(&gc_root) {
            return Err(StoreError::Protocol(format!(
                "creating a garbage collector root ({}) in the Nix store is forbidden (are you running nix-build inside the store?)",
                gc_root.display()
            )));
        }
        self.add_temp_root(path)?;
        if let Ok(meta) = gc_root.symlink_metadata() {
            let points_into_store = meta.file_type().is_symlink()
                && std::fs::read_link(&gc_root).is_ok_and(|t| in_store(&t));
            if !points_into_store {
                return Err(StoreError::Protocol(format!(
                    "cannot create symlink '{}'; already exists",
                    gc_root.display()
                )));
            }
        }
        rix_store::roots::replace_symlink(Path::new(&printed), &gc_root)
            .map_err(StoreError::io(&gc_root))?;
        self.add_indirect_root(&gc_root)?;
        Ok(gc_root)
    }

    /// `QuerySubstitutablePathInfos`: what the daemon's substituters know
    /// about these paths (with their content addresses, if any).
    pub fn query_substitutable_path_infos(
        &self,
        paths: &BTreeMap<StorePath, Option<ContentAddress>>,
    ) -> Result<BTreeMap<StorePath, SubstitutablePathInfo>> {
        if paths.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.call(&Request::QuerySubstitutablePathInfos(paths.clone()), |c| {
            let count = read_count(&mut c.reader, &c.ctx.limits, "substitutable infos")
                .map_err(wire_error)?;
            let mut infos = BTreeMap::new();
            for _ in 0..count {
                let path: StorePath = c.read()?;
                let deriver: Option<StorePath> = c.read()?;
                let references: BTreeSet<StorePath> = c.read()?;
                let download_size: u64 = c.read()?;
                let nar_size: u64 = c.read()?;
                infos.insert(
                    path,
                    SubstitutablePathInfo {
                        deriver,
                        references,
                        download_size,
                        nar_size,
                    },
                );
            }
            Ok(infos)
        })
    }

    /// `VerifyStore`: whether errors remain.
    pub fn verify_store(&self, check_contents: bool, repair: bool) -> Result<bool> {
        if repair {
            self.forget_info(None);
        }
        self.call(
            &Request::VerifyStore {
                check_contents,
                repair,
            },
            |c| Ok(c.read::<u64>()? != 0),
        )
    }

    /// `OptimiseStore`.
    pub fn optimise_store(&self) -> Result<()> {
        self.call_unit(&Request::OptimiseStore)
    }

    /// `SyncWithGC` (obsolete; answered at once).
    pub fn sync_with_gc(&self) -> Result<()> {
        self.call_unit(&Request::SyncWithGC)
    }

    /// `QueryRealisation`: where a derivation output went (content-addressed
    /// derivations), if the daemon knows.
    pub fn query_realisation(&self, id: &DrvOutput) -> Result<Option<Realisation>> {
        let found: Vec<Realisation> = self.call_value(&Request::QueryRealisation(id.clone()))?;
        Ok(found.into_iter().next())
    }

    /// `AddTextToStore`, the obsolete operation (Nix 2.8's clients still send
    /// it); [`Store::add_text`] uses `AddToStore`.
    pub fn add_text_to_store_legacy(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath> {
        let request = Request::AddTextToStore {
            name: name.to_owned(),
            text: contents.to_vec(),
            references: references.clone(),
        };
        self.call_value(&request)
    }

    /// `AddMultipleToStore`: several paths in one framed stream, each its
    /// metadata then its NAR (dependencies first, as the daemon adds them in
    /// order).
    pub fn add_multiple_to_store(
        &self,
        paths: &mut [(ValidPathInfo, &mut dyn Read)],
        flags: AddFlags,
    ) -> Result<()> {
        let request = Request::AddMultipleToStore {
            repair: flags.repair,
            dont_check_sigs: !flags.check_sigs,
        };
        let store_dir = self.store_dir.clone();
        // Path infos inside the stream are at version 1.16, the same form as
        // every version rix speaks.
        let ctx = rix_formats::worker_protocol::Ctx::new(ProtocolVersion::MIN, store_dir);
        self.upload(
            &request,
            &mut |w| {
                rix_formats::worker_protocol::wire::write_u64(w, paths.len() as u64)
                    .map_err(io_error)?;
                for (info, nar) in paths.iter_mut() {
                    to_wire(info).write(w, &ctx).map_err(io_error)?;
                    copy_nar(&self.store_dir, info, nar, w)?;
                }
                Ok(())
            },
            |_| Ok(()),
        )
    }

    /// `AddBuildLog`: stores `log` as the build log of `drv_path`.
    pub fn add_build_log(&self, drv_path: &StorePath, log: &[u8]) -> Result<()> {
        self.upload(
            &Request::AddBuildLog(drv_path.clone()),
            &mut |w| w.write_all(log).map_err(io_error),
            |c| c.read::<u64>().map(drop),
        )
    }
}

/// A reader that remembers the last 8 bytes read through it.
struct Tap<R> {
    inner: R,
    last: [u8; 8],
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        if n >= 8 {
            self.last.copy_from_slice(&got[n - 8..]);
        } else {
            self.last.rotate_left(n);
            self.last[8 - n..].copy_from_slice(got);
        }
        Ok(n)
    }
}

/// Copies one NAR from `nar` to the upload; a failure to read it is this
/// side's error (the upload is then cut, see [`Connection::upload`]).
fn copy_nar(
    store_dir: &StoreDir,
    info: &ValidPathInfo,
    nar: &mut dyn Read,
    w: &mut dyn Write,
) -> Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match nar.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(StoreError::Io {
                    path: PathBuf::from(store_dir.display(&info.path)),
                    source,
                })
            }
        };
        w.write_all(&buf[..n]).map_err(io_error)?;
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(StoreError::io(p))
}

impl Store for DaemonStore {
    fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn query_path_info(&self, path: &StorePath) -> Result<Option<ValidPathInfo>> {
        if let Some(info) = self.cached_info(path) {
            return Ok(Some(info));
        }
        let info = self.call(&Request::QueryPathInfo(path.clone()), |c| {
            if !c.read::<bool>()? {
                return Ok(None);
            }
            let info: UnkeyedValidPathInfo = c.read()?;
            Ok(Some(from_unkeyed(path.clone(), info)))
        })?;
        if let Some(info) = &info {
            self.remember_info(info);
        }
        Ok(info)
    }

    /// Pipelined: the requests for up to [`PIPELINE`] paths not already known
    /// are sent together, then their replies read in order (Nix's client sends
    /// one and waits for its reply each time).
    fn query_path_infos(&self, paths: &[StorePath]) -> Result<Vec<Option<ValidPathInfo>>> {
        let mut out: Vec<Option<ValidPathInfo>> =
            paths.iter().map(|p| self.cached_info(p)).collect();
        let missing: Vec<usize> = (0..paths.len()).filter(|&i| out[i].is_none()).collect();
        for window in missing.chunks(PIPELINE) {
            let asked: Vec<&StorePath> = window.iter().map(|&i| &paths[i]).collect();
            for (&i, info) in window.iter().zip(self.pipelined_infos(&asked)?) {
                if let Some(info) = &info {
                    self.remember_info(info);
                }
                out[i] = info;
            }
        }
        Ok(out)
    }

    fn is_valid(&self, path: &StorePath) -> Result<bool> {
        if self.cached_info(path).is_some() {
            return Ok(true);
        }
        self.call(&Request::IsValidPath(path.clone()), |c| {
            Ok(c.read::<u64>()? != 0)
        })
    }

    fn query_valid_paths(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        self.call_value(&Request::QueryValidPaths {
            paths: paths.clone(),
            substitute: false,
        })
    }

    fn query_all_valid_paths(&self) -> Result<BTreeSet<StorePath>> {
        self.call_value(&Request::QueryAllValidPaths)
    }

    fn query_referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.call_value(&Request::QueryReferrers(path.clone()))
    }

    fn query_valid_derivers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.call_value(&Request::QueryValidDerivers(path.clone()))
    }

    fn query_derivation_output_map(
        &self,
        drv: &StorePath,
    ) -> Result<BTreeMap<String, Option<StorePath>>> {
        self.call_value(&Request::QueryDerivationOutputMap(drv.clone()))
    }

    fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>> {
        self.call(&Request::QueryPathFromHashPart(hash_part.to_owned()), |c| {
            c.read::<Option<StorePath>>()
        })
    }

    fn nar_from_path(&self, path: &StorePath, out: &mut dyn Write) -> Result<()> {
        let mut conn = self.conn()?;
        conn.send(&Request::NarFromPath(path.clone()))?;
        conn.process_stderr(&*self.logger, None, None)?;
        // The NAR follows unframed: its own grammar says where it ends. A
        // daemon that fails to read the path (not valid, or gone) has already
        // ended the stderr stream and may have sent the NAR's first strings:
        // it sends its error in their place and closes the connection (which
        // is then dropped). That error is reported as the daemon's.
        let copied = {
            let mut tap = Tap {
                inner: &mut conn.reader,
                last: [0; 8],
            };
            let mut reader = NarReader::new(&mut tap);
            let mut writer = NarWriter::new(out);
            match rix_formats::nar::copy::copy(&mut reader, &mut writer) {
                Ok(_) => Ok(()),
                Err(rix_formats::nar::copy::CopyError::Read(e)) => {
                    Err((tap.last == STDERR_ERROR.to_le_bytes(), e.to_string()))
                }
                Err(rix_formats::nar::copy::CopyError::Write(e)) => Err((false, e.to_string())),
            }
        };
        if let Err((daemon_error, message)) = copied {
            if daemon_error {
                let conn = &mut *conn;
                let mut rest = io::Cursor::new(STDERR_ERROR.to_le_bytes()).chain(&mut conn.reader);
                if let Ok(StderrMsg::Error(e)) = StderrMsg::read(&mut rest, &conn.ctx) {
                    return Err(StoreError::Remote {
                        message: strip_ansi(&e.msg),
                        exit_status: 1,
                    });
                }
            }
            return Err(StoreError::Protocol(format!(
                "reading the NAR of '{}' from the Nix daemon: {message}",
                self.store_dir.display(path)
            )));
        }
        conn.in_sync = true;
        Ok(())
    }

    fn add_to_store_nar(
        &self,
        info: &ValidPathInfo,
        nar: &mut dyn Read,
        flags: AddFlags,
    ) -> Result<()> {
        if flags.repair {
            self.forget_info(Some(&info.path));
        }
        let request = Request::AddToStoreNar {
            info: to_wire(info),
            repair: flags.repair,
            dont_check_sigs: !flags.check_sigs,
        };
        self.upload(
            &request,
            &mut |w| copy_nar(&self.store_dir, info, nar, w),
            |_| Ok(()),
        )
    }

    /// `AddMultipleToStore`: every path's record and NAR in one framed
    /// stream, each NAR written straight into it.
    fn add_multiple_nars(
        &self,
        infos: &[ValidPathInfo],
        nar: &mut dyn FnMut(&ValidPathInfo, &mut dyn Write) -> Result<()>,
        flags: AddFlags,
    ) -> Result<()> {
        if infos.is_empty() {
            return Ok(());
        }
        if flags.repair {
            for info in infos {
                self.forget_info(Some(&info.path));
            }
        }
        let request = Request::AddMultipleToStore {
            repair: flags.repair,
            dont_check_sigs: !flags.check_sigs,
        };
        // Path infos inside the stream are at version 1.16, the same form as
        // every version rix speaks.
        let ctx =
            rix_formats::worker_protocol::Ctx::new(ProtocolVersion::MIN, self.store_dir.clone());
        self.upload(
            &request,
            &mut |w| {
                rix_formats::worker_protocol::wire::write_u64(w, infos.len() as u64)
                    .map_err(io_error)?;
                for info in infos {
                    to_wire(info).write(w, &ctx).map_err(io_error)?;
                    nar(info, w)?;
                }
                Ok(())
            },
            |_| Ok(()),
        )
    }

    fn add_text(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath> {
        let method = ContentAddressMethodWithAlgo {
            method: AddMethod::Text,
            algo: HashAlgo::Sha256,
        };
        let info = self.add_ca(name, method, references, false, &mut |w| {
            w.write_all(contents).map_err(io_error)
        })?;
        Ok(info.path)
    }

    fn add_path(
        &self,
        src: &Path,
        name: &str,
        method: FileIngestionMethod,
        algo: HashAlgo,
    ) -> Result<StorePath> {
        let meta = src.symlink_metadata().map_err(StoreError::io(src))?;
        let add_method = match method {
            FileIngestionMethod::Flat => {
                if !meta.is_file() {
                    return Err(StoreError::FlatNotFile(src.to_path_buf()));
                }
                AddMethod::Flat
            }
            FileIngestionMethod::Recursive => AddMethod::Recursive,
        };
        let ca = ContentAddressMethodWithAlgo {
            method: add_method,
            algo,
        };
        let info = self.add_ca(name, ca, &BTreeSet::new(), false, &mut |w| match method {
            FileIngestionMethod::Flat => {
                let mut file = std::fs::File::open(src).map_err(StoreError::io(src))?;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(StoreError::io(src)(e)),
                    };
                    w.write_all(&buf[..n]).map_err(io_error)?;
                }
            }
            FileIngestionMethod::Recursive => {
                rix_store::archive::dump_to(src, w)?;
                Ok(())
            }
        })?;
        Ok(info.path)
    }

    fn add_signatures(&self, path: &StorePath, sigs: &BTreeSet<String>) -> Result<()> {
        self.forget_info(Some(path));
        self.call_unit(&Request::AddSignatures {
            path: path.clone(),
            sigs: sigs.clone(),
        })
    }

    fn add_temp_root(&self, path: &StorePath) -> Result<()> {
        self.call_unit(&Request::AddTempRoot(path.clone()))
    }

    fn add_indirect_root(&self, link: &Path) -> Result<()> {
        let link = absolute(link)?;
        self.call_unit(&Request::AddIndirectRoot(
            link.to_string_lossy().into_owned(),
        ))
    }

    fn gc(&self) -> Option<&dyn GcStore> {
        Some(self)
    }

    fn realisations(&self) -> Option<&dyn RealisationStore> {
        Some(self)
    }
}

/// `QueryRealisation` and `RegisterDrvOutput` (a daemon without
/// `ca-derivations` refuses them).
impl RealisationStore for DaemonStore {
    fn query_realisation(&self, id: &DrvOutput) -> Result<Option<Realisation>> {
        DaemonStore::query_realisation(self, id)
    }

    fn register_realisation(&self, r: &Realisation) -> Result<()> {
        self.call(&Request::RegisterDrvOutput(r.clone()), |_| Ok(()))
    }
}

impl GcStore for DaemonStore {
    /// The daemon decides what to hide: it censors other users' runtime roots
    /// for a client it does not trust, whatever `censor` says.
    fn find_roots(&self, _censor: bool) -> Result<BTreeMap<StorePath, BTreeSet<String>>> {
        self.call(&Request::FindRoots, |c| {
            let count = read_u64(&mut c.reader, "roots").map_err(wire_error)?;
            let mut roots: BTreeMap<StorePath, BTreeSet<String>> = BTreeMap::new();
            for _ in 0..count {
                let link =
                    read_string(&mut c.reader, &c.ctx.limits, "root link").map_err(wire_error)?;
                let target: StorePath = c.read()?;
                roots.entry(target).or_default().insert(link);
            }
            Ok(roots)
        })
    }

    /// `keep-outputs` / `keep-derivations` are the daemon's settings, not part
    /// of the request; a dry run is not something the protocol can ask.
    fn collect_garbage(&self, options: &GcOptions) -> Result<GcResults> {
        let (action, paths_to_delete) = match &options.action {
            GcAction::DeleteDead => (WireGcAction::DeleteDead, BTreeSet::new()),
            GcAction::ReturnDead => (WireGcAction::ReturnDead, BTreeSet::new()),
            GcAction::ReturnLive => (WireGcAction::ReturnLive, BTreeSet::new()),
            GcAction::DeleteSpecific(paths) => (
                WireGcAction::DeleteSpecific,
                paths.iter().cloned().collect(),
            ),
            GcAction::DryRun => {
                return Err(rix_store::store_api::unsupported(
                    "a garbage collection dry run",
                    self,
                ))
            }
        };
        // As Nix's `RemoteStore::collectGarbage`: what was valid may be gone.
        self.forget_info(None);
        let request = Request::CollectGarbage(GcRequest {
            action,
            paths_to_delete,
            ignore_liveness: false,
            max_freed: options.max_freed,
        });
        self.call(&request, |c| {
            let count =
                read_count(&mut c.reader, &c.ctx.limits, "collected paths").map_err(wire_error)?;
            let mut paths = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                paths.push(
                    read_string(&mut c.reader, &c.ctx.limits, "collected path")
                        .map_err(wire_error)?,
                );
            }
            let bytes_freed: u64 = c.read()?;
            let _obsolete: u64 = c.read()?;
            Ok(GcResults {
                paths,
                bytes_freed,
                links_saving: None,
                errors: Vec::new(),
            })
        })
    }
}
