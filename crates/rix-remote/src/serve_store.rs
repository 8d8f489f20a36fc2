//! A store on another machine reached with the serve protocol (`ssh://`):
//! `nix-store --serve --write` (or `rix store serve --write`) started over SSH,
//! one process per connection, connections pooled. Mirrors Nix's
//! `LegacySSHStore` (`legacy-ssh-store.cc`) and
//! `ServeProto::BasicClientConnection` (`serve-protocol-connection.cc`).
//!
//! The serve protocol answers queries by path, NAR dumps and adds, closures
//! and builds; whatever else a store does (listing all paths, referrers, text
//! adds, roots) is refused as unsupported, as Nix does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;

use rix_formats::derivation::Derivation;
use rix_formats::hash::HashAlgo;
use rix_formats::nar::reader::NarReader;
use rix_formats::nar::writer::NarWriter;
use rix_formats::serve_protocol::{
    client_handshake, AddToStoreNarInfo, BuildOptions, HandshakeError, ServeCtx, ServeRequest,
    ServeSerialise, ServeVersion, StorePathWithOutputs,
};
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::worker_protocol::wire::{read_string, read_text, read_u64};
use rix_formats::worker_protocol::{BuildResult, BuildStatus, Serialise, UnkeyedValidPathInfo};
use rix_store::local_store::{Result, StoreError};
use rix_store::path_info::ValidPathInfo;
use rix_store::store_api::{AddFlags, Store};

use crate::ssh::{SshChild, SshMaster};

/// What an `ssh://` URL says besides the host.
#[derive(Debug, Clone, Default)]
pub struct ServeStoreConfig {
    /// `remote-program`: the command that serves (default `nix-store`), split
    /// on whitespace.
    pub remote_program: Vec<String>,
    /// `remote-store`: the store the remote program opens (`--store`).
    pub remote_store: Option<String>,
    /// `ssh-key`.
    pub ssh_key: Option<String>,
    /// `base64-ssh-public-host-key`.
    pub host_key: Option<String>,
    /// `compress`.
    pub compress: bool,
    /// `max-connections` (default 1).
    pub max_connections: usize,
}

/// One session: the remote program's stdin and stdout.
pub struct ServeConnection {
    // Dropped in this order: stdin closed first, so the program ends.
    to: BufWriter<std::process::ChildStdin>,
    from: std::io::BufReader<std::process::ChildStdout>,
    _process: std::sync::Arc<crate::ssh::ChildProcess>,
    pub ctx: ServeCtx,
    good: bool,
}

impl ServeConnection {
    fn from(&mut self) -> &mut impl Read {
        &mut self.from
    }
}

/// An `ssh://` store.
pub struct ServeStore {
    host: String,
    url: String,
    master: SshMaster,
    config: ServeStoreConfig,
    store_dir: StoreDir,
    pool: Mutex<Vec<ServeConnection>>,
}

fn protocol(e: impl std::fmt::Display) -> StoreError {
    StoreError::Protocol(e.to_string())
}

fn io_err(e: io::Error) -> StoreError {
    StoreError::Protocol(format!("talking to the serve protocol's server: {e}"))
}

fn wire_err(e: rix_formats::worker_protocol::WireError) -> StoreError {
    StoreError::Protocol(format!("protocol error in the serve protocol: {e}"))
}

/// A connection taken from the pool, back to it when dropped still good.
struct Pooled<'a> {
    store: &'a ServeStore,
    conn: Option<ServeConnection>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = ServeConnection;
    fn deref(&self) -> &ServeConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut ServeConnection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if c.good {
                if let Ok(mut pool) = self.store.pool.lock() {
                    if pool.len() < self.store.config.max_connections.max(1) {
                        pool.push(c);
                    }
                }
            }
        }
    }
}

impl ServeStore {
    /// Opens `ssh://host` (`host` is `[user@]host`) with `config`, whose store
    /// directory is `store_dir`; connects at once, so an unreachable machine
    /// is reported here.
    pub fn open(host: &str, config: ServeStoreConfig, store_dir: StoreDir) -> Result<ServeStore> {
        let master = SshMaster::new(
            host,
            config.ssh_key.as_deref(),
            config.host_key.as_deref(),
            config.compress,
        )?;
        let store = ServeStore {
            host: host.to_owned(),
            url: format!("ssh://{host}"),
            master,
            config,
            store_dir,
            pool: Mutex::new(Vec::new()),
        };
        drop(store.conn()?);
        Ok(store)
    }

    /// `LegacySSHStore::openConnection`.
    fn open_connection(&self) -> Result<ServeConnection> {
        let mut command = if self.config.remote_program.is_empty() {
            vec!["nix-store".to_owned()]
        } else {
            self.config.remote_program.clone()
        };
        command.extend(["--serve".to_owned(), "--write".to_owned()]);
        if let Some(s) = self.config.remote_store.as_ref().filter(|s| !s.is_empty()) {
            command.extend(["--store".to_owned(), s.clone()]);
        }
        let SshChild {
            stdin,
            mut stdout,
            process,
        } = self.master.start(&command, Stdio::inherit())?;
        let mut to = BufWriter::with_capacity(64 << 10, stdin);
        let version = match client_handshake(&mut to, &mut stdout, ServeVersion::LATEST, &self.host)
        {
            Ok(v) => v,
            Err(HandshakeError::Wire(e)) if is_eof(&e) => {
                return Err(protocol(format!("cannot connect to '{}'", self.host)))
            }
            Err(HandshakeError::Io(_)) => {
                return Err(protocol(format!("cannot connect to '{}'", self.host)))
            }
            Err(e) => return Err(protocol(e)),
        };
        Ok(ServeConnection {
            to,
            from: stdout,
            _process: process,
            ctx: ServeCtx::new(version, self.store_dir.clone()),
            good: true,
        })
    }

    fn conn(&self) -> Result<Pooled<'_>> {
        let idle = self.pool.lock().ok().and_then(|mut p| p.pop());
        let conn = match idle {
            Some(c) => c,
            None => self.open_connection()?,
        };
        Ok(Pooled {
            store: self,
            conn: Some(conn),
        })
    }

    /// Sends a request; the connection is bad until its reply is read.
    fn send(conn: &mut ServeConnection, req: &ServeRequest) -> Result<()> {
        conn.good = false;
        req.write(&mut conn.to, &conn.ctx).map_err(io_err)?;
        conn.to.flush().map_err(io_err)
    }

    /// The serve protocol version in use.
    pub fn protocol_version(&self) -> Result<ServeVersion> {
        Ok(self.conn()?.ctx.version)
    }

    /// `QueryPathInfos`.
    pub fn query_infos(&self, paths: &BTreeSet<StorePath>) -> Result<Vec<ValidPathInfo>> {
        let mut conn = self.conn()?;
        Self::send(
            &mut conn,
            &ServeRequest::QueryPathInfos {
                paths: paths.clone(),
            },
        )?;
        let ctx = conn.ctx.clone();
        let mut out = Vec::new();
        loop {
            let s = read_string(conn.from(), &ctx.limits, "store path").map_err(wire_err)?;
            if s.is_empty() {
                break;
            }
            let path = ctx.store_dir.parse(&s).map_err(protocol)?;
            if !paths.contains(&path) {
                return Err(protocol(format!(
                    "the serve protocol's server answered for '{s}', which was not asked for"
                )));
            }
            let info = <UnkeyedValidPathInfo as ServeSerialise>::read(conn.from(), &ctx)
                .map_err(wire_err)?;
            if info.nar_hash == rix_formats::serve_protocol::values::dummy_hash() {
                return Err(protocol("NAR hash is now mandatory"));
            }
            out.push(rix_store::path_info::from_unkeyed(path, info));
        }
        conn.good = true;
        Ok(out)
    }

    /// `BuildDerivation`: builds `drv` (sent in full, its inputs already on
    /// the machine) and returns the machine's result. `log` receives the
    /// remote program's stderr lines while it builds, when it is given to
    /// [`Self::open`]'s ssh (here stderr is inherited).
    pub fn build_derivation(
        &self,
        drv_path: &StorePath,
        drv: &Derivation,
        options: BuildOptions,
    ) -> Result<BuildResult> {
        let mut conn = self.conn()?;
        Self::send(
            &mut conn,
            &ServeRequest::BuildDerivation {
                drv_path: drv_path.clone(),
                drv: drv.clone(),
                options,
            },
        )?;
        let ctx = conn.ctx.clone();
        let result = <BuildResult as ServeSerialise>::read(conn.from(), &ctx).map_err(wire_err)?;
        conn.good = true;
        Ok(result)
    }

    /// `BuildPaths`: Nix's error when a build fails.
    pub fn build_paths(&self, paths: &[StorePathWithOutputs], options: BuildOptions) -> Result<()> {
        let mut conn = self.conn()?;
        Self::send(
            &mut conn,
            &ServeRequest::BuildPaths {
                paths: paths.to_vec(),
                options,
            },
        )?;
        let ctx = conn.ctx.clone();
        let status = read_u64(conn.from(), "build status").map_err(wire_err)?;
        if status != BuildStatus::Built as u64 {
            let msg = read_text(conn.from(), &ctx.limits, "error").map_err(wire_err)?;
            conn.good = true;
            return Err(StoreError::Remote {
                message: msg,
                exit_status: 1,
            });
        }
        conn.good = true;
        Ok(())
    }

    /// `QueryValidPaths` with `lock`: the paths also become temporary roots
    /// of the session on the machine.
    pub fn query_valid_locked(
        &self,
        paths: &BTreeSet<StorePath>,
        lock: bool,
    ) -> Result<BTreeSet<StorePath>> {
        let mut conn = self.conn()?;
        Self::send(
            &mut conn,
            &ServeRequest::QueryValidPaths {
                lock,
                substitute: false,
                paths: paths.clone(),
            },
        )?;
        let ctx = conn.ctx.common();
        let valid = BTreeSet::<StorePath>::read(conn.from(), &ctx).map_err(wire_err)?;
        conn.good = true;
        Ok(valid)
    }

    fn unsupported(&self, op: &str) -> StoreError {
        StoreError::Unsupported {
            operation: op.to_owned(),
            store: self.url.clone(),
        }
    }
}

/// A writer that counts what goes through it and remembers a failure.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
    failed: bool,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| self.failed = true)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

fn is_eof(e: &rix_formats::worker_protocol::WireError) -> bool {
    matches!(e.root(), rix_formats::worker_protocol::WireError::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof)
}

impl Store for ServeStore {
    fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn query_path_info(&self, path: &StorePath) -> Result<Option<ValidPathInfo>> {
        Ok(self.query_infos(&[path.clone()].into())?.into_iter().next())
    }

    fn query_path_infos(&self, paths: &[StorePath]) -> Result<Vec<Option<ValidPathInfo>>> {
        let set: BTreeSet<StorePath> = paths.iter().cloned().collect();
        let mut by_path: BTreeMap<StorePath, ValidPathInfo> = self
            .query_infos(&set)?
            .into_iter()
            .map(|i| (i.path.clone(), i))
            .collect();
        Ok(paths
            .iter()
            .map(|p| by_path.get(p).cloned().or_else(|| by_path.remove(p)))
            .collect())
    }

    fn query_valid_paths(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        self.query_valid_locked(paths, false)
    }

    fn query_all_valid_paths(&self) -> Result<BTreeSet<StorePath>> {
        Err(self.unsupported("queryAllValidPaths"))
    }

    fn query_referrers(&self, _: &StorePath) -> Result<BTreeSet<StorePath>> {
        Err(self.unsupported("queryReferrers"))
    }

    fn query_valid_derivers(&self, _: &StorePath) -> Result<BTreeSet<StorePath>> {
        Err(self.unsupported("queryValidDerivers"))
    }

    fn query_derivation_output_map(
        &self,
        _: &StorePath,
    ) -> Result<BTreeMap<String, Option<StorePath>>> {
        Err(self.unsupported("queryDerivationOutputMap"))
    }

    fn query_path_from_hash_part(&self, _: &str) -> Result<Option<StorePath>> {
        Err(self.unsupported("queryPathFromHashPart"))
    }

    /// `QueryClosure`, one request.
    fn closure(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        let mut conn = self.conn()?;
        Self::send(
            &mut conn,
            &ServeRequest::QueryClosure {
                include_outputs: false,
                paths: paths.clone(),
            },
        )?;
        let ctx = conn.ctx.common();
        let closure = BTreeSet::<StorePath>::read(conn.from(), &ctx).map_err(wire_err)?;
        conn.good = true;
        Ok(closure)
    }

    /// `DumpStorePath`: the NAR is read through the NAR grammar, which says
    /// where it ends.
    fn nar_from_path(&self, path: &StorePath, out: &mut dyn Write) -> Result<()> {
        let mut conn = self.conn()?;
        Self::send(
            &mut conn,
            &ServeRequest::DumpStorePath { path: path.clone() },
        )?;
        let mut reader = NarReader::new(conn.from());
        let mut writer = NarWriter::new(out);
        rix_formats::nar::copy(&mut reader, &mut writer).map_err(|e| {
            protocol(format!(
                "cannot read the NAR of '{}' from '{}': {e}",
                self.print(path),
                self.host
            ))
        })?;
        writer.finish().map_err(protocol)?;
        conn.good = true;
        Ok(())
    }

    /// `AddToStoreNar` (Nix's `LegacySSHStore::addToStore`, protocol 2.5 on).
    fn add_to_store_nar(
        &self,
        info: &ValidPathInfo,
        nar: &mut dyn Read,
        _flags: AddFlags,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        if conn.ctx.version.minor() < 5 {
            return Err(protocol(format!(
                "the serve protocol of '{}' ({}) is too old to add paths",
                self.host, conn.ctx.version
            )));
        }
        Self::send(
            &mut conn,
            &ServeRequest::AddToStoreNar(add_to_store_nar_info(info)),
        )?;
        // The NAR checked on the way (it must be one whole NAR of the size
        // announced, or the machine would wait or read too far).
        let copied = {
            let mut reader = NarReader::new(nar);
            let mut writer = NarWriter::new(&mut conn.to);
            rix_formats::nar::copy(&mut reader, &mut writer)
        };
        let size = copied
            .map_err(|e| protocol(format!("invalid NAR for '{}': {e}", self.print(&info.path))))?;
        if size != info.nar_size {
            return Err(StoreError::SizeMismatch {
                path: self.print(&info.path),
                expected: info.nar_size,
                actual: size,
            });
        }
        conn.to.flush().map_err(io_err)?;
        let ok = read_u64(conn.from(), "import result").map_err(|_| {
            protocol(format!(
                "failed to add path '{}' to remote host '{}'",
                self.print(&info.path),
                self.host
            ))
        })?;
        if ok != 1 {
            return Err(protocol(format!(
                "failed to add path '{}' to remote host '{}'",
                self.print(&info.path),
                self.host
            )));
        }
        conn.good = true;
        Ok(())
    }

    /// `AddToStoreNar` for each path, pipelined: the requests and NARs go
    /// out one after the other while a second thread reads the machine's
    /// answers, so a closure costs no round trip per path.
    fn add_multiple_nars(
        &self,
        infos: &[ValidPathInfo],
        nar: &mut dyn FnMut(&ValidPathInfo, &mut dyn Write) -> Result<()>,
        _flags: AddFlags,
    ) -> Result<()> {
        if infos.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        if conn.ctx.version.minor() < 5 {
            return Err(protocol(format!(
                "the serve protocol of '{}' ({}) is too old to add paths",
                self.host, conn.ctx.version
            )));
        }
        conn.good = false;
        let ctx = conn.ctx.clone();
        let process = conn._process.clone();
        let refused = |info: &ValidPathInfo| {
            protocol(format!(
                "failed to add path '{}' to remote host '{}'",
                self.print(&info.path),
                self.host
            ))
        };
        let ServeConnection { to, from, .. } = &mut *conn;
        let (sent, acked, write_failed) = std::thread::scope(|scope| {
            let acks = scope.spawn(|| -> Result<()> {
                for info in infos {
                    let ok = read_u64(&mut *from, "import result").map_err(|_| refused(info))?;
                    if ok != 1 {
                        return Err(refused(info));
                    }
                }
                Ok(())
            });
            let mut write_failed = false;
            let sent = (|| -> Result<()> {
                for info in infos {
                    ServeRequest::AddToStoreNar(add_to_store_nar_info(info))
                        .write(&mut *to, &ctx)
                        .map_err(|e| {
                            write_failed = true;
                            io_err(e)
                        })?;
                    let mut counted = Counted {
                        inner: &mut *to,
                        bytes: 0,
                        failed: false,
                    };
                    let r = nar(info, &mut counted);
                    write_failed |= counted.failed;
                    r?;
                    // The machine reads one whole NAR; a source that sent
                    // another size than it said is out of step with it.
                    if counted.bytes != info.nar_size {
                        return Err(StoreError::SizeMismatch {
                            path: self.print(&info.path),
                            expected: info.nar_size,
                            actual: counted.bytes,
                        });
                    }
                }
                to.flush().map_err(|e| {
                    write_failed = true;
                    io_err(e)
                })
            })();
            if sent.is_err() {
                // The machine waits for the rest: end the session so that
                // the reader stops.
                crate::transport::Control::shutdown(&*process, std::net::Shutdown::Both);
            }
            let acked = acks
                .join()
                .unwrap_or_else(|_| Err(protocol("reader thread panicked")));
            (sent, acked, write_failed)
        });
        match (sent, acked) {
            (Ok(()), Ok(())) => {
                conn.good = true;
                Ok(())
            }
            // The machine stopped reading because it refused a path: its
            // refusal is the cause.
            (Err(_), Err(e)) if write_failed => Err(e),
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        }
    }

    fn add_text(&self, _: &str, _: &[u8], _: &BTreeSet<StorePath>) -> Result<StorePath> {
        Err(self.unsupported("addTextToStore"))
    }

    fn add_path(
        &self,
        _: &Path,
        _: &str,
        _: FileIngestionMethod,
        _: HashAlgo,
    ) -> Result<StorePath> {
        Err(self.unsupported("addToStore"))
    }

    fn add_signatures(&self, _: &StorePath, _: &BTreeSet<String>) -> Result<()> {
        Err(self.unsupported("addSignatures"))
    }

    /// The machine keeps what a session locked (`QueryValidPaths` with
    /// `lock`); there is no other root to add.
    fn add_temp_root(&self, _: &StorePath) -> Result<()> {
        Ok(())
    }

    fn add_indirect_root(&self, _: &Path) -> Result<()> {
        Err(self.unsupported("addIndirectRoot"))
    }
}

/// The serve protocol's `AddToStoreNar` header for `info`.
fn add_to_store_nar_info(info: &ValidPathInfo) -> AddToStoreNarInfo {
    AddToStoreNarInfo {
        path: info.path.clone(),
        deriver: info.deriver.clone(),
        nar_hash: info.nar_hash,
        references: info.references.clone(),
        registration_time: info.registration_time,
        nar_size: info.nar_size,
        ultimate: info.ultimate,
        sigs: info.sigs.clone(),
        ca: info.ca,
    }
}
