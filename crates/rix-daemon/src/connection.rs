//! One connection: the handshake, then each request in turn until the client
//! closes. Mirrors `processConnection` and `performOp` in Nix's `daemon.cc`.
//!
//! Errors follow Nix's layout: an error while an operation works is sent as
//! `STDERR_ERROR` and the connection goes on; an error before it starts
//! (unknown or removed operation, unreadable arguments, a privileged request
//! from an untrusted client that Nix refuses up front) is sent the same way,
//! then the connection is closed, as Nix's daemon does. A client that goes
//! away ends only its connection.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::Path;

use rix_build::realise::RealiseReport;
use rix_formats::content_address::ContentAddress;
use rix_formats::derivation::{Derivation, DerivationType, DrvHashes};
use rix_formats::hash::{HashAlgo, Hasher};
use rix_formats::nar::{NarReader, NarWriter};
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::worker_protocol::handshake::{
    read_client_magic, read_raw_version, Features, ServerHello,
};
use rix_formats::worker_protocol::wire::{read_u32, read_u64, write_bool, write_bytes, write_u64};
use rix_formats::worker_protocol::{
    AddMethod, BuildMode, BuildResult, BuildStatus, ClientHandshakeInfo, ClientOptions, Ctx,
    DerivedPath, DrvOutput, FramedReader, GcAction, KeyedBuildResult, OutputsSpec, ProtocolVersion,
    Realisation, Request, Serialise, TrustedFlag, ValidPathInfo as WireInfo, WireError, WorkerOp,
};
use rix_formats::{StoreDir, StorePath};
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use rix_store::settings::Settings;
use rix_store::store_api::{AddFlags, Store};

use crate::client_settings::ConnSettings;
use crate::tunnel::Tunnel;

/// What every connection of a daemon shares: the store and the daemon's settings.
pub struct Daemon {
    pub store: LocalStore,
    pub settings: Settings,
    /// This process serves this one connection only (`rix daemon` forks one
    /// per connection): queries a client pipelines then share one read
    /// transaction, so SQLite locks the database once for the batch instead of
    /// once per query. Never with connections sharing the store's database
    /// connection (threads), whose writes would land in that transaction.
    pub exclusive: bool,
}

/// An operation's failure.
enum OpError {
    /// Reported to the client; the connection goes on.
    Failed(String),
    /// Reported to the client, then the connection is closed (Nix refuses
    /// these before the operation starts).
    Fatal(String),
    /// The client is gone or the stream is out of step.
    Io(io::Error),
}

impl From<io::Error> for OpError {
    fn from(e: io::Error) -> Self {
        OpError::Io(e)
    }
}

impl From<rix_store::local_store::StoreError> for OpError {
    fn from(e: rix_store::local_store::StoreError) -> Self {
        OpError::Failed(e.to_string())
    }
}

fn failed(msg: impl ToString) -> OpError {
    OpError::Failed(msg.to_string())
}

/// What an operation answers after `STDERR_LAST`.
enum Reply {
    Bytes(Vec<u8>),
    /// A NAR of this valid path, streamed (`NarFromPath`).
    Nar(StorePath),
}

/// Serves one client on `input`/`output` until it closes the connection.
/// `trusted` comes from [`crate::authorise`] (or is true for `--stdio`).
/// Returns an error only when the connection broke (not for failed requests).
pub fn serve_connection<R: Read, W: Write + Send>(
    daemon: &Daemon,
    input: R,
    output: W,
    trusted: bool,
) -> io::Result<()> {
    let store_dir = daemon.store.store_dir().clone();
    let mut reader = BufReader::with_capacity(64 << 10, input);
    let tunnel = Tunnel::new(output, store_dir.clone());
    let wire = |e: WireError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());

    // The greeting (`BasicServerConnection::handshake`, `postHandshake`).
    read_client_magic(&mut reader).map_err(wire)?;
    tunnel.raw(|w| {
        ServerHello {
            version: ProtocolVersion::MAX.raw(),
        }
        .write(w)
    })?;
    let client_version = read_raw_version(&mut reader, "client version").map_err(wire)?;
    let version =
        ProtocolVersion::negotiate(ProtocolVersion::MAX, client_version).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the Nix client version is too old (protocol {client_version})"),
            )
        })?;
    let ctx = Ctx::new(version, store_dir);
    if version.has_feature_exchange() {
        let _theirs = Features::read(&mut reader, &ctx).map_err(wire)?;
        tunnel.raw(|w| Features::new().write(w, &ctx))?;
    }
    ClientOptions::read(&mut reader, &ctx).map_err(wire)?;
    tunnel.raw(|w| {
        ClientHandshakeInfo {
            daemon_nix_version: crate::DAEMON_VERSION.to_owned(),
            remote_trusts_us: Some(if trusted {
                TrustedFlag::Trusted
            } else {
                TrustedFlag::NotTrusted
            }),
        }
        .write(w, &ctx)
    })?;
    tunnel.start_work()?;
    tunnel.stop_work(None)?;
    tunnel.reply(|_| Ok(()))?;

    // Whether a read transaction is open for a batch of pipelined queries.
    let mut in_batch = false;
    let mut conn = Conn {
        daemon,
        ctx,
        tunnel: &tunnel,
        settings: ConnSettings::new(daemon.settings.clone()),
        trusted,
    };
    loop {
        let code = match read_u32(&mut reader, "operation") {
            Ok(code) => code,
            Err(WireError::Io { source, .. }) if source.kind() == io::ErrorKind::UnexpectedEof => {
                return tunnel.flush();
            }
            Err(e) => return Err(wire(e)),
        };
        let op = match WorkerOp::from_u64(code.into()) {
            Some(op @ (WorkerOp::QueryFailedPaths | WorkerOp::ClearFailedPaths)) => {
                return conn.fatal(&format!("Removed operation {}", op.code()));
            }
            Some(op) => op,
            None => return conn.fatal(&format!("invalid operation {code}")),
        };
        let request = match Request::read(op, &mut reader, &conn.ctx) {
            Ok(r) => r,
            Err(e) => return conn.fatal(&format!("reading the arguments of {}: {e}", op.name())),
        };
        let query = is_query(&request);
        if daemon.exclusive {
            let db = daemon.store.db();
            if !query && in_batch {
                in_batch = false;
                db.end_read().map_err(io::Error::other)?;
            } else if query && !in_batch && !reader.buffer().is_empty() {
                in_batch = true;
                db.begin_read().map_err(io::Error::other)?;
            }
        }
        let performed = conn.perform(request, &mut reader);
        // A client that sent its next request before this reply came (one
        // that pipelines its queries) gets its replies together, in one write:
        // a reply is flushed when no further request is waiting to be read.
        // (A client that waits for each reply always has it at once.) The
        // batch's read transaction ends there too.
        let flush = reader.buffer().is_empty();
        if in_batch && flush {
            in_batch = false;
            daemon.store.db().end_read().map_err(io::Error::other)?;
        }
        match performed {
            Ok(Reply::Bytes(bytes)) => {
                tunnel.stop_work(None)?;
                tunnel.reply_then(|w| w.write_all(&bytes), flush)?;
            }
            Ok(Reply::Nar(path)) => {
                tunnel.stop_work(None)?;
                let real = daemon.store.real_path(&path);
                tunnel.reply(|w| {
                    let mut w = w;
                    rix_store::archive::dump(&real, &mut w)
                        .map(drop)
                        .map_err(io::Error::other)
                })?;
            }
            Err(OpError::Failed(msg)) => {
                tunnel.stop_work(Some(&msg))?;
                tunnel.reply(|_| Ok(()))?;
            }
            Err(OpError::Fatal(msg)) => return conn.fatal(&msg),
            Err(OpError::Io(e)) => return Err(e),
        }
    }
}

/// Requests that only read the database (and may share a read transaction).
fn is_query(r: &Request) -> bool {
    matches!(
        r,
        Request::IsValidPath(_)
            | Request::QueryPathInfo(_)
            | Request::QueryValidPaths { .. }
            | Request::QueryReferrers(_)
            | Request::QueryReferences(_)
            | Request::QueryPathHash(_)
            | Request::QueryDeriver(_)
            | Request::QueryValidDerivers(_)
            | Request::QueryDerivationOutputs(_)
            | Request::QueryDerivationOutputNames(_)
            | Request::QueryDerivationOutputMap(_)
            | Request::QueryPathFromHashPart(_)
            | Request::QueryAllValidPaths
    )
}

struct Conn<'a, W: Write + Send> {
    daemon: &'a Daemon,
    ctx: Ctx,
    tunnel: &'a Tunnel<W>,
    settings: ConnSettings,
    trusted: bool,
}

fn bytes_of(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> Result<Reply, OpError> {
    let mut out = Vec::new();
    f(&mut out)?;
    Ok(Reply::Bytes(out))
}

/// A path's record as a client sent it; Nix's clients send no registration
/// time (0): it is registered now.
fn from_wire(w: WireInfo) -> ValidPathInfo {
    let mut info = rix_store::path_info::from_wire(w);
    if info.registration_time == 0 {
        info.registration_time = rix_store::path_info::now();
    }
    info
}

impl<W: Write + Send> Conn<'_, W> {
    fn store(&self) -> &LocalStore {
        &self.daemon.store
    }

    fn api(&self) -> &dyn Store {
        &self.daemon.store
    }

    fn dir(&self) -> &StoreDir {
        &self.ctx.store_dir
    }

    fn print(&self, p: &StorePath) -> String {
        self.ctx.store_dir.display(p)
    }

    /// The path's info, read in one transaction (its row, then its
    /// references): SQLite takes its file locks once rather than per statement.
    fn query_path_info(&self, path: &StorePath) -> Result<Option<ValidPathInfo>, OpError> {
        let db = self.store().db();
        db.in_read_transaction(|db| db.query_path_info(path))
            .map_err(|e| OpError::from(rix_store::local_store::StoreError::from(e)))
    }

    fn path_info(&self, path: &StorePath) -> Result<ValidPathInfo, OpError> {
        self.query_path_info(path)?.ok_or_else(|| {
            OpError::from(rix_store::local_store::StoreError::NotValid(
                self.print(path),
            ))
        })
    }

    /// Sends `msg` as an error outside an operation and ends the connection.
    fn fatal(&self, msg: &str) -> io::Result<()> {
        self.tunnel.stop_work(Some(msg))?;
        self.tunnel.reply(|_| Ok(()))
    }

    fn perform<R: Read>(&mut self, req: Request, reader: &mut R) -> Result<Reply, OpError> {
        use Request as Q;
        // Refusals Nix makes before the operation starts (the connection ends).
        match &req {
            Q::AddPermRoot { .. } if !self.trusted => {
                return Err(OpError::Fatal("you are not privileged to create perm roots\n\nhint: you can just do this client-side without special privileges, and probably want to do that instead.".to_owned()));
            }
            Q::BuildPaths { mode, .. } | Q::BuildPathsWithResults { mode, .. }
                if *mode == BuildMode::Repair && !self.trusted =>
            {
                return Err(OpError::Fatal(
                    "repairing is not allowed because you are not in 'trusted-users'".to_owned(),
                ));
            }
            _ => {}
        }
        let op = req.op();
        self.tunnel.start_work()?;
        let ctx = self.ctx.clone();
        let ctx = &ctx;
        match req {
            Q::IsValidPath(p) => {
                let valid = self.api().is_valid(&p)?;
                bytes_of(|w| write_bool(w, valid))
            }
            Q::QueryValidPaths { paths, .. } => {
                let valid = self.api().query_valid_paths(&paths)?;
                bytes_of(|w| valid.write(w, ctx))
            }
            Q::HasSubstitutes(_) => bytes_of(|w| write_bool(w, false)),
            Q::QuerySubstitutablePaths(_) => {
                bytes_of(|w| BTreeSet::<StorePath>::new().write(w, ctx))
            }
            Q::QuerySubstitutablePathInfo(_) => bytes_of(|w| write_u64(w, 0)),
            Q::QuerySubstitutablePathInfos(_) => bytes_of(|w| write_u64(w, 0)),
            Q::QueryPathHash(p) => {
                let info = self.path_info(&p)?;
                bytes_of(|w| write_bytes(w, info.nar_hash.to_base16().as_bytes()))
            }
            Q::QueryReferences(p) => {
                let info = self.path_info(&p)?;
                bytes_of(|w| info.references.write(w, ctx))
            }
            Q::QueryReferrers(p) => {
                let r = self.api().query_referrers(&p)?;
                bytes_of(|w| r.write(w, ctx))
            }
            Q::QueryValidDerivers(p) => {
                let r = self.api().query_valid_derivers(&p)?;
                bytes_of(|w| r.write(w, ctx))
            }
            Q::QueryDerivationOutputs(p) => {
                let m = self.api().query_derivation_output_map(&p)?;
                let set: BTreeSet<StorePath> = m.into_values().flatten().collect();
                bytes_of(|w| set.write(w, ctx))
            }
            Q::QueryDerivationOutputNames(p) => {
                let drv = rix_build::plan::read_derivation(self.store(), &p).map_err(failed)?;
                let names: BTreeSet<String> = drv.outputs.into_keys().collect();
                bytes_of(|w| names.write(w, ctx))
            }
            Q::QueryDerivationOutputMap(p) => {
                let m = self.derivation_output_map(&p)?;
                bytes_of(|w| m.write(w, ctx))
            }
            Q::QueryDeriver(p) => {
                let info = self.path_info(&p)?;
                bytes_of(|w| info.deriver.write(w, ctx))
            }
            Q::QueryPathFromHashPart(h) => {
                let p = self.api().query_path_from_hash_part(&h)?;
                bytes_of(|w| p.write(w, ctx))
            }
            Q::QueryAllValidPaths => {
                let all = self.api().query_all_valid_paths()?;
                bytes_of(|w| all.write(w, ctx))
            }
            Q::QueryPathInfo(p) => match self.query_path_info(&p)? {
                Some(info) => bytes_of(|w| {
                    write_u64(w, 1)?;
                    rix_store::path_info::to_unkeyed(&info).write(w, ctx)
                }),
                None => bytes_of(|w| write_u64(w, 0)),
            },
            Q::AddToStore {
                name,
                method,
                references,
                repair: _,
            } => {
                let mut framed = FramedReader::new(reader, u64::MAX);
                let added =
                    self.add_to_store(&name, method.method, method.algo, &references, &mut framed);
                let drained = framed.drain();
                let path = added?;
                drained?;
                let info = self.api().path_info(&path)?;
                bytes_of(|w| {
                    WireInfo {
                        path,
                        info: rix_store::path_info::to_unkeyed(&info),
                    }
                    .write(w, ctx)
                })
            }
            Q::AddTextToStore {
                name,
                text,
                references,
            } => {
                let p = self.api().add_text(&name, &text, &references)?;
                bytes_of(|w| write_bytes(w, self.print(&p).as_bytes()))
            }
            Q::AddToStoreNar {
                info,
                repair,
                dont_check_sigs,
            } => {
                let mut info = from_wire(info);
                let check_sigs = !(dont_check_sigs && self.trusted);
                if !self.trusted {
                    info.ultimate = false;
                }
                let mut framed = FramedReader::new(reader, u64::MAX);
                let added = self.check_sigs(&info, check_sigs).and_then(|()| {
                    self.api()
                        .add_to_store_nar(
                            &info,
                            &mut framed,
                            AddFlags {
                                repair,
                                check_sigs: false,
                            },
                        )
                        .map_err(OpError::from)
                });
                let drained = framed.drain();
                added?;
                drained?;
                Ok(Reply::Bytes(Vec::new()))
            }
            Q::AddMultipleToStore {
                repair,
                dont_check_sigs,
            } => {
                let check_sigs = !(dont_check_sigs && self.trusted);
                let mut framed = FramedReader::new(reader, u64::MAX);
                let added = self.add_multiple(&mut framed, repair, check_sigs);
                let drained = framed.drain();
                added?;
                drained?;
                Ok(Reply::Bytes(Vec::new()))
            }
            Q::AddBuildLog(drv) => {
                let mut framed = FramedReader::new(reader, 1 << 30);
                let mut log = Vec::new();
                let read = framed.read_to_end(&mut log);
                let drained = framed.drain();
                read?;
                drained?;
                if !self.trusted {
                    return Err(failed("you are not privileged to add logs"));
                }
                self.add_build_log(&drv, &log)?;
                bytes_of(|w| write_u64(w, 1))
            }
            Q::NarFromPath(p) => {
                if !self.api().is_valid(&p)? {
                    return Err(failed(format!("path '{}' is not valid", self.print(&p))));
                }
                self.api().add_temp_root(&p)?;
                Ok(Reply::Nar(p))
            }
            Q::BuildPaths { paths, mode } => {
                let results = self.build(&paths, mode)?;
                if let Some(msg) = build_failure(&results) {
                    return Err(failed(msg));
                }
                bytes_of(|w| write_u64(w, 1))
            }
            Q::BuildPathsWithResults { paths, mode } => {
                let results = self.build(&paths, mode)?;
                bytes_of(|w| results.write(w, ctx))
            }
            Q::EnsurePath(p) => {
                if !self.api().is_valid(&p)? {
                    return Err(failed(format!(
                        "path '{}' does not exist and cannot be created",
                        self.print(&p)
                    )));
                }
                self.api().add_temp_root(&p)?;
                bytes_of(|w| write_u64(w, 1))
            }
            Q::BuildDerivation {
                drv_path,
                drv,
                mode,
            } => {
                let result = self.build_derivation(drv_path, drv, mode)?;
                bytes_of(|w| result.write(w, ctx))
            }
            Q::AddTempRoot(p) => {
                self.api().add_temp_root(&p)?;
                bytes_of(|w| write_u64(w, 1))
            }
            Q::AddIndirectRoot(link) => {
                self.api().add_indirect_root(Path::new(&link))?;
                bytes_of(|w| write_u64(w, 1))
            }
            Q::AddPermRoot { path, gc_root } => {
                let root =
                    std::path::absolute(&gc_root).map_err(|e| failed(format!("{gc_root}: {e}")))?;
                self.add_perm_root(&path, &root)?;
                bytes_of(|w| write_bytes(w, root.as_os_str().as_encoded_bytes()))
            }
            Q::SyncWithGC => bytes_of(|w| write_u64(w, 1)),
            Q::FindRoots => {
                let gc = self
                    .api()
                    .gc()
                    .ok_or_else(|| failed("this store has no roots"))?;
                let roots = gc.find_roots(!self.trusted)?;
                let count: usize = roots.values().map(BTreeSet::len).sum();
                bytes_of(|w| {
                    write_u64(w, count as u64)?;
                    for (target, links) in &roots {
                        for link in links {
                            write_bytes(w, link.as_bytes())?;
                            target.write(w, ctx)?;
                        }
                    }
                    Ok(())
                })
            }
            Q::CollectGarbage(req) => {
                if req.ignore_liveness {
                    return Err(failed("you are not allowed to ignore liveness"));
                }
                let action = match req.action {
                    GcAction::ReturnLive => rix_store::gc::GcAction::ReturnLive,
                    GcAction::ReturnDead => rix_store::gc::GcAction::ReturnDead,
                    GcAction::DeleteDead => rix_store::gc::GcAction::DeleteDead,
                    GcAction::DeleteSpecific => rix_store::gc::GcAction::DeleteSpecific(
                        req.paths_to_delete.into_iter().collect(),
                    ),
                };
                let s = &self.settings.settings;
                let mut options = rix_store::gc::GcOptions::new(action);
                options.max_freed = req.max_freed;
                options.keep_outputs = s.get_bool("keep-outputs").map_err(failed)?;
                options.keep_derivations = s.get_bool("keep-derivations").map_err(failed)?;
                let gc = self
                    .api()
                    .gc()
                    .ok_or_else(|| failed("this store cannot collect garbage"))?;
                let results = gc.collect_garbage(&options)?;
                bytes_of(|w| {
                    let paths: BTreeSet<&String> = results.paths.iter().collect();
                    write_u64(w, paths.len() as u64)?;
                    for p in paths {
                        write_bytes(w, p.as_bytes())?;
                    }
                    write_u64(w, results.bytes_freed)?;
                    write_u64(w, 0)
                })
            }
            Q::SetOptions(client) => {
                self.tunnel.set_verbosity(client.verbosity);
                for warning in self.settings.apply(client, self.trusted) {
                    self.tunnel.warn(&warning);
                }
                Ok(Reply::Bytes(Vec::new()))
            }
            Q::OptimiseStore => {
                rix_store::optimise::optimise_store(self.store(), &QuietOptimise)?;
                bytes_of(|w| write_u64(w, 1))
            }
            Q::VerifyStore {
                check_contents,
                repair,
            } => {
                if repair && !self.trusted {
                    return Err(failed("you are not privileged to repair paths"));
                }
                if repair {
                    return Err(failed(
                        "repairing through the daemon is not supported by rix yet; run 'rix store verify --repair'",
                    ));
                }
                let report = rix_store::verify::verify_store(
                    self.store(),
                    rix_store::verify::VerifyOptions { check_contents },
                    &rix_store::verify::Quiet,
                )?;
                for p in &report.problems {
                    self.tunnel.log(0, &format!("{p:?}"));
                }
                bytes_of(|w| write_bool(w, !report.is_consistent()))
            }
            Q::AddSignatures { path, sigs } => {
                self.api().add_signatures(&path, &sigs)?;
                bytes_of(|w| write_u64(w, 1))
            }
            Q::QueryMissing(targets) => self.query_missing(&targets),
            // Realisations (content-addressed derivations, `rix_store::realisations`).
            Q::QueryRealisation(id) => {
                let found: Vec<_> = self
                    .store()
                    .query_realisation(&id)
                    .map_err(failed)?
                    .into_iter()
                    .collect();
                bytes_of(|w| found.write(w, ctx))
            }
            Q::RegisterDrvOutput(r) => {
                if !self.store().ca_derivations() {
                    return Err(failed(
                        "experimental Nix feature 'ca-derivations' is disabled; add '--extra-experimental-features ca-derivations' to enable it",
                    ));
                }
                self.store().register_realisation(&r).map_err(failed)?;
                bytes_of(|_| Ok(()))
            }
            Q::ExportPath { .. } | Q::ImportPaths => Err(failed(format!(
                "operation {} is obsolete (Nix before 2.0) and not supported by rix",
                op.name()
            ))),
            Q::QueryFailedPaths | Q::ClearFailedPaths => Err(failed("Removed operation")),
        }
    }

    /// The output map of a derivation: from the database, else from the
    /// derivation itself (`queryPartialDerivationOutputMap`).
    fn derivation_output_map(
        &self,
        drv_path: &StorePath,
    ) -> Result<BTreeMap<String, Option<StorePath>>, OpError> {
        let drv = rix_build::plan::read_derivation(self.store(), drv_path).map_err(failed)?;
        let mut map = BTreeMap::new();
        for (name, out) in &drv.outputs {
            let path = out.path(self.dir(), &drv.name, name).map_err(failed)?;
            map.insert(name.clone(), path);
        }
        for (name, path) in self.api().query_derivation_output_map(drv_path)? {
            if let Some(path) = path {
                map.insert(name, Some(path));
            }
        }
        // With `ca-derivations`: outputs known from realisations.
        if self.store().ca_derivations() && map.values().any(Option::is_none) {
            let ca = rix_build::resolve::CaContext::default();
            for (name, path) in ca
                .output_map(self.store(), drv_path, &drv)
                .map_err(failed)?
            {
                if let Some(path) = path {
                    map.insert(name, Some(path));
                }
            }
        }
        Ok(map)
    }

    /// Whether `info` may be added: a client that must show signatures
    /// (`check_sigs`) needs a content address that gives the path, or a
    /// signature by a key in `trusted-public-keys` (`pathInfoIsUntrusted`).
    fn check_sigs(&self, info: &ValidPathInfo, check_sigs: bool) -> Result<(), OpError> {
        let s = &self.settings.settings;
        if !check_sigs || !s.get_bool("require-sigs").map_err(failed)? {
            return Ok(());
        }
        if let Some(ca) = &info.ca {
            let refs = info.references.iter().filter(|r| **r != info.path);
            let self_ref = info.references.contains(&info.path);
            if self
                .dir()
                .make_path_from_ca(info.path.name(), ca, refs, self_ref)
                .is_ok_and(|p| p == info.path)
            {
                return Ok(());
            }
        }
        let keys = rix_formats::signature::parse_public_keys(&s.get("trusted-public-keys"))
            .map_err(|e| failed(format!("setting 'trusted-public-keys': {e}")))?;
        let fp = rix_formats::narinfo::fingerprint(
            self.dir(),
            &info.path,
            &info.nar_hash,
            info.nar_size,
            &info.references,
        );
        if let Ok(fp) = fp {
            for sig in &info.sigs {
                if let Ok(sig) = sig.parse() {
                    if rix_formats::signature::verify_detached(fp.as_bytes(), &sig, &keys) {
                        return Ok(());
                    }
                }
            }
        }
        Err(failed(format!(
            "cannot add path '{}' because it lacks a signature by a trusted key",
            self.print(&info.path)
        )))
    }

    /// `AddToStore` (1.25 form): the dump is spooled to a temporary file
    /// while it is hashed, then added under the path its hash gives.
    fn add_to_store(
        &self,
        name: &str,
        method: AddMethod,
        algo: HashAlgo,
        references: &BTreeSet<StorePath>,
        dump: &mut dyn Read,
    ) -> Result<StorePath, OpError> {
        match method {
            AddMethod::Text => {
                let mut text = Vec::new();
                dump.take(1 << 30).read_to_end(&mut text)?;
                Ok(self.api().add_text(name, &text, references)?)
            }
            AddMethod::Git => Err(failed("git hashing (fixed:git:) is not supported by rix")),
            AddMethod::Flat => {
                if !references.is_empty() {
                    return Err(failed("a flat fixed-output path cannot have references"));
                }
                let mut spool = tempfile::NamedTempFile::new()?;
                io::copy(dump, spool.as_file_mut())?;
                spool.as_file().sync_data().ok();
                Ok(self
                    .api()
                    .add_path(spool.path(), name, FileIngestionMethod::Flat, algo)?)
            }
            AddMethod::Recursive => {
                let mut spool = tempfile::tempfile()?;
                let (ca_hash, nar_hash, size) = {
                    let mut ca = Hasher::new(algo);
                    let mut nar = Hasher::new(HashAlgo::Sha256);
                    let mut reader = NarReader::new(dump);
                    let mut writer = NarWriter::new(HashTee {
                        out: &mut spool,
                        a: &mut ca,
                        b: &mut nar,
                    });
                    let size = rix_formats::nar::copy(&mut reader, &mut writer)
                        .map_err(|e| failed(format!("invalid NAR for '{name}': {e}")))?;
                    (ca.finish(), nar.finish(), size)
                };
                let refs = references.iter();
                let path = self
                    .dir()
                    .make_fixed_output_path(
                        name,
                        FileIngestionMethod::Recursive,
                        &ca_hash,
                        refs,
                        false,
                    )
                    .map_err(failed)?;
                let mut info = ValidPathInfo::new(path.clone(), nar_hash, size);
                info.references = references.clone();
                info.ca = Some(ContentAddress::Fixed(
                    FileIngestionMethod::Recursive,
                    ca_hash,
                ));
                spool.rewind()?;
                self.api()
                    .add_to_store_nar(&info, &mut spool, AddFlags::default())?;
                Ok(path)
            }
        }
    }

    /// `AddMultipleToStore`: a count, then each path's info and NAR.
    fn add_multiple(
        &self,
        framed: &mut dyn Read,
        repair: bool,
        check_sigs: bool,
    ) -> Result<(), OpError> {
        let wire = |e: WireError| failed(e);
        let count = read_u64(framed, "path count").map_err(wire)?;
        for _ in 0..count {
            let info = WireInfo::read(framed, &self.ctx).map_err(wire)?;
            let mut info = from_wire(info);
            info.ultimate = false;
            self.check_sigs(&info, check_sigs)?;
            self.api().add_temp_root(&info.path)?;
            let mut reader = NarReader::new(&mut *framed);
            if self.api().is_valid(&info.path)? && !repair {
                rix_formats::nar::copy(&mut reader, &mut NarWriter::new(io::sink()))
                    .map_err(failed)?;
                continue;
            }
            let mut spool = tempfile::tempfile()?;
            rix_formats::nar::copy(&mut reader, &mut NarWriter::new(&mut spool))
                .map_err(|e| failed(format!("NAR of '{}': {e}", self.print(&info.path))))?;
            spool.rewind()?;
            self.api().add_to_store_nar(
                &info,
                &mut spool,
                AddFlags {
                    repair,
                    check_sigs: false,
                },
            )?;
        }
        Ok(())
    }

    fn add_build_log(&self, drv: &StorePath, log: &[u8]) -> Result<(), OpError> {
        let path = self.store().log_path(drv);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        {
            let file = std::fs::File::create(&tmp)?;
            let mut enc = bzip2::write::BzEncoder::new(file, bzip2::Compression::default());
            enc.write_all(log)?;
            enc.finish()?.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    fn add_perm_root(&self, path: &StorePath, root: &Path) -> Result<(), OpError> {
        let store_dir = Path::new(self.dir().as_str());
        let real_store = &self.store().layout().real_store_dir;
        if root.starts_with(store_dir) || root.starts_with(real_store) {
            return Err(failed(format!(
                "creating a garbage collector root ({}) in the Nix store is forbidden (are you running nix-build inside the store?)",
                root.display()
            )));
        }
        self.api().add_temp_root(path)?;
        rix_store::roots::replace_symlink(Path::new(&self.print(path)), root)?;
        self.api().add_indirect_root(root)?;
        Ok(())
    }

    /// Builds or checks what `paths` name (`buildPathsWithResults`).
    fn build(
        &self,
        paths: &[DerivedPath],
        mode: BuildMode,
    ) -> Result<Vec<KeyedBuildResult>, OpError> {
        if mode == BuildMode::Repair {
            return Err(failed(
                "repairing through the daemon is not supported by rix yet; run 'rix store repair'",
            ));
        }
        let mut drvs = Vec::new();
        for p in paths {
            match p {
                DerivedPath::Opaque(p) => self.api().add_temp_root(p)?,
                DerivedPath::Built { drv_path, .. } => {
                    self.api().add_temp_root(drv_path)?;
                    if !drvs.contains(drv_path) {
                        drvs.push(drv_path.clone());
                    }
                }
            }
        }
        let mut report = RealiseReport::default();
        if !drvs.is_empty() {
            let mut opts = self.settings.realise_options(self.dir()).map_err(failed)?;
            opts.check = mode == BuildMode::Check;
            report = rix_build::realise(self.store(), &drvs, &opts, self.tunnel).map_err(failed)?;
        }
        let mut hashes = DrvHashes::new(self.dir().clone(), |p: &StorePath| {
            rix_build::plan::read_derivation(self.store(), p)
        });
        let mut results = Vec::with_capacity(paths.len());
        for p in paths {
            let result = match p {
                DerivedPath::Opaque(path) => {
                    if self.api().is_valid(path)? {
                        BuildResult::new(BuildStatus::AlreadyValid)
                    } else {
                        let mut r = BuildResult::new(BuildStatus::MiscFailure);
                        r.error_msg = format!(
                            "path '{}' does not exist and cannot be created",
                            self.print(path)
                        );
                        r
                    }
                }
                DerivedPath::Built { drv_path, outputs } => {
                    self.built_result(&report, drv_path, outputs, &mut hashes)?
                }
            };
            results.push(KeyedBuildResult {
                path: p.clone(),
                result,
            });
        }
        Ok(results)
    }

    fn built_result<F>(
        &self,
        report: &RealiseReport,
        drv_path: &StorePath,
        outputs: &OutputsSpec,
        hashes: &mut DrvHashes<F>,
    ) -> Result<BuildResult, OpError>
    where
        F: FnMut(&StorePath) -> Result<Derivation, rix_build::BuildError>,
    {
        if let Some((_, e)) = report.failed.iter().find(|(d, _)| d == drv_path) {
            let mut r = BuildResult::new(BuildStatus::PermanentFailure);
            r.error_msg = e.to_string();
            return Ok(r);
        }
        if let Some((_, e)) = report.failed.first() {
            if report.skipped.contains(drv_path) {
                let mut r = BuildResult::new(BuildStatus::DependencyFailed);
                r.error_msg = e.to_string();
                return Ok(r);
            }
        }
        if report.skipped.contains(drv_path) {
            return Ok(BuildResult::new(BuildStatus::DependencyFailed));
        }
        let status = if report.built.contains(drv_path) {
            BuildStatus::Built
        } else {
            BuildStatus::AlreadyValid
        };
        let mut r = BuildResult::new(status);
        if status == BuildStatus::Built {
            r.times_built = 1;
        }
        let all = match report.outputs.get(drv_path) {
            Some(o) => o.clone(),
            None => self
                .derivation_output_map(drv_path)?
                .into_iter()
                .filter_map(|(n, p)| p.map(|p| (n, p)))
                .collect(),
        };
        let drv_hash = hashes.get(drv_path).ok();
        for (name, path) in all {
            if let OutputsSpec::Names(names) = outputs {
                if !names.contains(&name) {
                    continue;
                }
            }
            let Some(hash) = drv_hash.as_ref().and_then(|h| h.get(&name)).cloned() else {
                continue;
            };
            let id = DrvOutput {
                drv_hash: hash,
                output_name: name.clone(),
            };
            r.built_outputs.insert(
                name,
                Realisation {
                    id,
                    out_path: path,
                    signatures: BTreeSet::new(),
                    dependent_realisations: BTreeMap::new(),
                },
            );
        }
        Ok(r)
    }

    /// `BuildDerivation`: a derivation sent in full. Nix lets an untrusted
    /// client build only content-addressed ones.
    fn build_derivation(
        &self,
        drv_path: StorePath,
        drv: Derivation,
        mode: BuildMode,
    ) -> Result<BuildResult, OpError> {
        let ty = drv.derivation_type().map_err(failed)?;
        let is_ca = matches!(
            ty,
            DerivationType::ContentAddressed { .. } | DerivationType::Impure
        );
        if !is_ca && !self.trusted {
            return Err(failed(
                "you are not privileged to build input-addressed derivations",
            ));
        }
        // Build what the store has under that name; a content-addressed
        // derivation from an untrusted client is written to the store first
        // (its path recomputed), as Nix does.
        let drv_path = if self.api().is_valid(&drv_path)? && self.trusted {
            drv_path
        } else if is_ca {
            self.api().add_derivation(&drv)?
        } else {
            // A trusted client's derivation, built as it was sent (a build
            // machine receives its inputs' outputs as input sources).
            let opts = self.settings.realise_options(self.dir()).map_err(failed)?;
            return Ok(crate::serve::basic_build_result(
                self.store(),
                &drv_path,
                &drv,
                &opts,
                self.tunnel,
            ));
        };
        let results = self.build(
            &[DerivedPath::Built {
                drv_path,
                outputs: OutputsSpec::All,
            }],
            mode,
        )?;
        Ok(results
            .into_iter()
            .next()
            .map(|k| k.result)
            .unwrap_or_else(|| BuildResult::new(BuildStatus::MiscFailure)))
    }

    /// `QueryMissing`: what building `targets` would build, substitute, or
    /// cannot make (no substituters are consulted yet).
    fn query_missing(&self, targets: &[DerivedPath]) -> Result<Reply, OpError> {
        let mut unknown = BTreeSet::new();
        let mut drvs = Vec::new();
        for t in targets {
            match t {
                DerivedPath::Opaque(p) => {
                    if !self.api().is_valid(p)? {
                        unknown.insert(p.clone());
                    }
                }
                DerivedPath::Built { drv_path, .. } => {
                    if self.api().is_valid(drv_path)? {
                        drvs.push(drv_path.clone());
                    } else {
                        unknown.insert(drv_path.clone());
                    }
                }
            }
        }
        let will_build: BTreeSet<StorePath> = if drvs.is_empty() {
            BTreeSet::new()
        } else {
            rix_build::plan::plan(self.store(), &drvs)
                .map_err(failed)?
                .builds
                .into_keys()
                .collect()
        };
        let ctx = &self.ctx;
        bytes_of(|w| {
            will_build.write(w, ctx)?;
            BTreeSet::<StorePath>::new().write(w, ctx)?;
            unknown.write(w, ctx)?;
            write_u64(w, 0)?;
            write_u64(w, 0)
        })
    }
}

/// Nix's message for failed builds (`BuildPaths`), from their results.
fn build_failure(results: &[KeyedBuildResult]) -> Option<String> {
    let failed: Vec<&KeyedBuildResult> = results
        .iter()
        .filter(|r| !r.result.status.is_success())
        .collect();
    match failed.as_slice() {
        [] => None,
        [one] => Some(one.result.error_msg.clone()),
        many => Some(
            many.iter()
                .map(|r| r.result.error_msg.as_str())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

/// Writes to `out` and hashes what passes.
struct HashTee<'a, W: Write> {
    out: W,
    a: &'a mut Hasher,
    b: &'a mut Hasher,
}

impl<W: Write> Write for HashTee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.a.update(&buf[..n]);
        self.b.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct QuietOptimise;

impl rix_store::optimise::OptimiseObserver for QuietOptimise {
    fn warn(&self, _: &str) {}
}
