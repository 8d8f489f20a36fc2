//! The store database, `<state>/db/db.sqlite`, in Nix's schema (version 10), so that
//! Nix and rix can share one store.
//!
//! Paths are stored as full logical paths (`/nix/store/...`), NAR hashes as
//! `sha256:<base16>`, content addresses and signatures as Nix prints them.
//! Mirrors the statements in Nix's `local-store.cc`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rix_formats::content_address::ContentAddress;
use rix_formats::hash::{Encoding, Hash};
use rix_formats::store_path::StoreDir;
use rix_formats::StorePath;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use thiserror::Error;

use crate::path_info::ValidPathInfo;
use crate::ref_graph::RefGraph;

/// The schema version Nix 2.8 writes to `db/schema`.
pub const SCHEMA_VERSION: u32 = 10;

/// Nix's `schema.sql` as Nix 2.8 creates it.
const SCHEMA: &str = "
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer, -- null implies \"false\"
    sigs             text, -- space-separated
    ca               text -- if not null, an assertion that the path is content-addressed; see ValidPathInfo
);

create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);

create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);

-- Paths can refer to themselves, causing a tuple (N, N) in the Refs
-- table.  This causes a deletion of the corresponding row in
-- ValidPaths to cause a foreign key constraint violation (due to `on
-- delete restrict' on the `reference' column).  Therefore, explicitly
-- get rid of self-references.
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;

create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null, -- symbolic output id, usually \"out\"
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);

create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
";

/// rix's own table (Nix ignores tables it does not know): one row per build run,
/// with the reason it ran, so that "why was this built?" can be answered later.
const RIX_SCHEMA: &str = "
create table if not exists RixBuilds (
    id        integer primary key autoincrement not null,
    drv       text not null,
    reason    text not null,
    startTime integer not null,
    stopTime  integer not null,
    status    text not null -- 'built', 'failed: ...', 'checked', 'nondeterministic'
);
create index if not exists IndexRixBuilds on RixBuilds(drv);
";

#[derive(Debug, Error)]
pub enum DbError {
    #[error("store database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store database has a corrupt row for '{path}': {what}")]
    Corrupt { path: String, what: String },
    #[error("cannot register '{path}': its reference '{reference}' is not valid")]
    MissingReference { path: String, reference: String },
    #[error("store database {path} has schema version {found}, rix supports {SCHEMA_VERSION}: upgrade it with Nix first")]
    Schema { path: String, found: String },
    /// A realisation that cannot be registered (Nix's wording; see
    /// [`crate::realisations`]).
    #[error("{0}")]
    Realisation(String),
    #[error("store database {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// An open connection to a store database.
pub struct Db {
    conn: Connection,
    path: String,
    store_dir: StoreDir,
}

impl Db {
    /// Opens (creating if needed) the database in `db_dir`, in WAL mode with a
    /// generous busy timeout so that many processes can share it.
    pub fn open(db_dir: &Path, store_dir: StoreDir) -> Result<Self, DbError> {
        let path = db_dir.join("db.sqlite").to_string_lossy().into_owned();
        let io = |source| DbError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(db_dir).map_err(io)?;
        let schema_file = db_dir.join("schema");
        match std::fs::read_to_string(&schema_file) {
            Ok(v) if v.trim() == SCHEMA_VERSION.to_string() => {}
            Ok(v) => {
                return Err(DbError::Schema {
                    path: path.clone(),
                    found: v.trim().to_owned(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let conn = Connection::open(&path).map_err(|source| DbError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let db = Self {
            conn,
            path,
            store_dir,
        };
        // Two processes opening a new store at once can meet SQLite's
        // deadlock avoidance while the first sets up WAL mode and the
        // schema: SQLITE_BUSY without the busy handler. Setting up is
        // idempotent, so it is tried again.
        let mut attempt = 0;
        loop {
            match db.init() {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 100 =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 + 5 * attempt));
                }
                r => break r.map_err(|e| db.err(e))?,
            }
        }
        if !schema_file.exists() {
            std::fs::write(&schema_file, SCHEMA_VERSION.to_string()).map_err(|source| {
                DbError::Io {
                    path: db.path.clone(),
                    source,
                }
            })?;
        }
        Ok(db)
    }

    /// Opens the existing database in `db_dir` for reading only: nothing is
    /// created, no schema statement runs, and every write through the
    /// connection fails. For readers that must not (or cannot) write the store,
    /// such as `rix serve`.
    pub fn open_read_only(db_dir: &Path, store_dir: StoreDir) -> Result<Self, DbError> {
        let path = db_dir.join("db.sqlite").to_string_lossy().into_owned();
        match std::fs::read_to_string(db_dir.join("schema")) {
            Ok(v) if v.trim() == SCHEMA_VERSION.to_string() => {}
            Ok(v) => {
                return Err(DbError::Schema {
                    path,
                    found: v.trim().to_owned(),
                })
            }
            Err(source) => return Err(DbError::Io { path, source }),
        }
        let sqlite = |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(600))
            .map_err(sqlite)?;
        Ok(Self {
            conn,
            path,
            store_dir,
        })
    }

    fn init(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(Duration::from_secs(600))?;
        self.conn.pragma_update(None, "foreign_keys", 1)?;
        self.conn.pragma_update(None, "synchronous", "normal")?;
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
        debug_assert!(mode == "wal" || mode == "memory");
        self.conn.execute_batch(SCHEMA)?;
        self.conn.execute_batch(RIX_SCHEMA)
    }

    /// Records one build run (see `RIX_SCHEMA`).
    pub fn record_build(
        &self,
        drv: &StorePath,
        reason: &str,
        start: i64,
        stop: i64,
        status: &str,
    ) -> Result<(), DbError> {
        self.conn
            .prepare_cached("insert into RixBuilds (drv, reason, startTime, stopTime, status) values (?, ?, ?, ?, ?)")
            .and_then(|mut s| s.execute(params![self.print(drv), reason, start, stop, status]))
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The recorded build runs of `drv`, oldest first: (reason, start, stop, status).
    pub fn build_history(
        &self,
        drv: &StorePath,
    ) -> Result<Vec<(String, i64, i64, String)>, DbError> {
        self.conn
            .prepare_cached("select reason, startTime, stopTime, status from RixBuilds where drv = ? order by id")
            .and_then(|mut s| {
                s.query_map([self.print(drv)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// Every derivation built successfully, each with the end time of its
    /// last build (for `rix build --explain`: the last build of a name).
    pub fn built_derivations(&self) -> Result<Vec<(StorePath, i64)>, DbError> {
        let rows: Vec<(String, i64)> = self
            .conn
            .prepare_cached(
                "select drv, max(stopTime) from RixBuilds where status = 'built' group by drv",
            )
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|e| self.err(e))?;
        // A row that does not parse (another store directory) is skipped.
        Ok(rows
            .into_iter()
            .filter_map(|(p, t)| self.parse(&p).ok().map(|p| (p, t)))
            .collect())
    }

    fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn print(&self, p: &StorePath) -> String {
        self.store_dir.display(p)
    }

    pub(crate) fn parse(&self, s: &str) -> Result<StorePath, DbError> {
        self.store_dir.parse(s).map_err(|e| DbError::Corrupt {
            path: s.to_owned(),
            what: e.to_string(),
        })
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// The connection itself, for the bulk reads and deletions of the garbage
    /// collector and verification (`gc`, `verify`).
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The connection, for reads of sibling modules (`realisations`).
    pub(crate) fn conn_ref(&self) -> &Connection {
        &self.conn
    }

    /// Wraps an SQLite error with the database's path.
    pub(crate) fn sql_error(&self, source: rusqlite::Error) -> DbError {
        self.err(source)
    }

    /// Whether `path` is registered as valid.
    pub fn is_valid(&self, path: &StorePath) -> Result<bool, DbError> {
        self.conn
            .prepare_cached("select 1 from ValidPaths where path = ?")
            .and_then(|mut s| s.exists([self.print(path)]))
            .map_err(|e| self.err(e))
    }

    /// The valid path whose hash part is `hash_part`, if any (Nix's
    /// `queryPathFromHashPart`).
    pub fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>, DbError> {
        let prefix = format!("{}/{hash_part}", self.store_dir);
        let found: Option<String> = self
            .conn
            .prepare_cached("select path from ValidPaths where path >= ? limit 1")
            .and_then(|mut s| s.query_row([&prefix], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        match found {
            Some(p) if p.starts_with(&prefix) && p.as_bytes().get(prefix.len()) == Some(&b'-') => {
                self.parse(&p).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The recorded metadata of `path`, or `None` if it is not valid.
    pub fn query_path_info(&self, path: &StorePath) -> Result<Option<ValidPathInfo>, DbError> {
        let printed = self.print(path);
        let row = self
            .conn
            .prepare_cached(
                "select id, hash, registrationTime, deriver, narSize, ultimate, sigs, ca from ValidPaths where path = ?",
            )
            .and_then(|mut s| {
                s.query_row([&printed], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((id, hash, reg, deriver, nar_size, ultimate, sigs, ca)) = row else {
            return Ok(None);
        };
        let corrupt = |what: String| DbError::Corrupt {
            path: printed.clone(),
            what,
        };
        let nar_hash = Hash::parse_any(&hash, None).map_err(|e| corrupt(e.to_string()))?;
        let ca = match ca.filter(|c| !c.is_empty()) {
            Some(c) => Some(
                c.parse::<ContentAddress>()
                    .map_err(|e| corrupt(e.to_string()))?,
            ),
            None => None,
        };
        let deriver = match deriver.filter(|d| !d.is_empty()) {
            Some(d) => self.parse(&d).ok(),
            None => None,
        };
        Ok(Some(ValidPathInfo {
            path: path.clone(),
            deriver,
            nar_hash,
            nar_size: nar_size.unwrap_or(0) as u64,
            references: self.references_by_id(id)?,
            registration_time: reg,
            ultimate: ultimate.unwrap_or(0) != 0,
            sigs: sigs
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            ca,
        }))
    }

    fn references_by_id(&self, id: i64) -> Result<BTreeSet<StorePath>, DbError> {
        let paths: Vec<String> = self
            .conn
            .prepare_cached(
                "select path from Refs join ValidPaths on reference = id where referrer = ?",
            )
            .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        paths.iter().map(|p| self.parse(p)).collect()
    }

    /// The references of `path` (one query, no other metadata), or `None` if it
    /// is not valid. For closure walks, which visit many paths.
    pub fn references_if_valid(
        &self,
        path: &StorePath,
    ) -> Result<Option<BTreeSet<StorePath>>, DbError> {
        let printed = self.print(path);
        let id: Option<i64> = self
            .conn
            .prepare_cached("select id from ValidPaths where path = ?")
            .and_then(|mut s| s.query_row([&printed], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        id.map(|id| self.references_by_id(id)).transpose()
    }

    /// Runs `f` inside one read transaction, so that its many small queries see
    /// one snapshot and SQLite takes its file locks once instead of per statement.
    pub fn in_read_transaction<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if !self.conn.is_autocommit() {
            return f(self); // inside a transaction already (see `begin_read`)
        }
        let txn = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let out = f(self)?;
        txn.finish().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Opens a read transaction that lasts until [`Self::end_read`]: for commands
    /// that only query, so that all their statements share one snapshot and one
    /// round of SQLite's file locking. Nothing may be written meanwhile.
    pub fn begin_read(&self) -> Result<(), DbError> {
        self.conn
            .execute_batch("begin deferred")
            .map_err(|e| self.err(e))
    }

    /// Ends the transaction of [`Self::begin_read`].
    pub fn end_read(&self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("commit").map_err(|e| self.err(e))
    }

    /// The closure of `roots` under references, each valid path with its
    /// references, read with one recursive query per root inside one read
    /// transaction (so SQLite takes its file locks once, not once per path). Roots
    /// that are not valid are simply absent from the result.
    pub fn reference_graph(&self, roots: &[StorePath]) -> Result<RefGraph, DbError> {
        let mut nodes: Vec<(i64, StorePath)> = Vec::new();
        let mut edges: Vec<(i64, i64)> = Vec::new();
        self.in_read_transaction(|db| {
            // One row per edge (or one with a null reference for a path without
            // references); a path's rows come together.
            let mut stmt = db
                .conn
                .prepare_cached(
                    "with recursive c(id) as ( \
                       select id from ValidPaths where path = ?1 \
                       union select reference from Refs join c on referrer = c.id) \
                     select c.id, v.path, Refs.reference from c \
                       join ValidPaths v on v.id = c.id \
                       left join Refs on Refs.referrer = c.id",
                )
                .map_err(|e| db.err(e))?;
            for root in roots {
                let mut rows = stmt.query([db.print(root)]).map_err(|e| db.err(e))?;
                let mut last = None;
                while let Some(row) = rows.next().map_err(|e| db.err(e))? {
                    let id: i64 = row.get(0).map_err(|e| db.err(e))?;
                    if last != Some(id) {
                        let printed = row.get_ref(1).map_err(|e| db.err(e))?;
                        let printed = printed.as_str().map_err(|e| db.err(e.into()))?;
                        nodes.push((id, db.parse(printed)?));
                        last = Some(id);
                    }
                    if let Some(reference) = row.get::<_, Option<i64>>(2).map_err(|e| db.err(e))? {
                        edges.push((id, reference));
                    }
                }
            }
            Ok(())
        })?;
        Ok(RefGraph::from_ids(nodes, &edges))
    }

    /// Valid paths that refer to `path`.
    pub fn referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>, DbError> {
        let paths: Vec<String> = self
            .conn
            .prepare_cached(
                "select path from Refs join ValidPaths on referrer = id \
                 where reference = (select id from ValidPaths where path = ?)",
            )
            .and_then(|mut s| s.query_map([self.print(path)], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        paths.iter().map(|p| self.parse(p)).collect()
    }

    /// Output name → path recorded for a valid derivation.
    pub fn derivation_outputs(&self, drv: &StorePath) -> Result<Vec<(String, StorePath)>, DbError> {
        let rows: Vec<(String, String)> = self
            .conn
            .prepare_cached(
                "select id, path from DerivationOutputs \
                 where drv = (select id from ValidPaths where path = ?) order by id",
            )
            .and_then(|mut s| {
                s.query_map([self.print(drv)], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(n, p)| Ok((n, self.parse(&p)?)))
            .collect()
    }

    /// Registers `infos` as valid in one transaction: rows, references (which must
    /// be valid already or among `infos`), and for `.drv` paths the outputs given
    /// by `drv_outputs` (derivation path → [(output name, output path)]).
    /// Mirrors `LocalStore::registerValidPaths`.
    pub fn register(
        &mut self,
        infos: &[ValidPathInfo],
        drv_outputs: &[(StorePath, Vec<(String, StorePath)>)],
    ) -> Result<(), DbError> {
        let store_dir = self.store_dir.clone();
        let path = self.path.clone();
        let sql = |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        for info in infos {
            upsert_path(&tx, &store_dir, info).map_err(sql)?;
        }
        for info in infos {
            let referrer = store_dir.display(&info.path);
            for r in &info.references {
                let reference = store_dir.display(r);
                let n = tx
                    .prepare_cached(
                        "insert or replace into Refs (referrer, reference) \
                         select a.id, b.id from ValidPaths a, ValidPaths b where a.path = ? and b.path = ?",
                    )
                    .and_then(|mut s| s.execute(params![referrer, reference]))
                    .map_err(sql)?;
                if n == 0 {
                    return Err(DbError::MissingReference {
                        path: referrer,
                        reference,
                    });
                }
            }
        }
        for (drv, outputs) in drv_outputs {
            for (name, out) in outputs {
                tx.prepare_cached(
                    "insert or replace into DerivationOutputs (drv, id, path) \
                     select id, ?, ? from ValidPaths where path = ?",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        name,
                        store_dir.display(out),
                        store_dir.display(drv)
                    ])
                })
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Removes `path` from the database (its referrers must be gone first).
    pub fn invalidate(&mut self, path: &StorePath) -> Result<(), DbError> {
        let printed = self.print(path);
        self.conn
            .execute("delete from ValidPaths where path = ?", [printed])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Every valid path.
    pub fn all_valid_paths(&self) -> Result<Vec<StorePath>, DbError> {
        let paths: Vec<String> = self
            .conn
            .prepare_cached("select path from ValidPaths")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        paths.iter().map(|p| self.parse(p)).collect()
    }

    /// Valid derivations that list `path` as one of their outputs.
    pub fn valid_derivers(&self, path: &StorePath) -> Result<Vec<StorePath>, DbError> {
        let paths: Vec<String> = self
            .conn
            .prepare_cached("select v.path from DerivationOutputs d join ValidPaths v on d.drv = v.id where d.path = ?")
            .and_then(|mut s| s.query_map([self.print(path)], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        paths.iter().map(|p| self.parse(p)).collect()
    }
}

fn upsert_path(
    tx: &rusqlite::Transaction<'_>,
    dir: &StoreDir,
    info: &ValidPathInfo,
) -> rusqlite::Result<()> {
    let sigs = info.sigs.iter().cloned().collect::<Vec<_>>().join(" ");
    let values = params![
        info.nar_hash.to_typed_string(Encoding::Base16),
        info.registration_time,
        info.deriver.as_ref().map(|d| dir.display(d)),
        info.nar_size as i64,
        info.ultimate.then_some(1),
        (!sigs.is_empty()).then_some(sigs),
        info.ca.map(|c| c.to_string()),
        dir.display(&info.path),
    ];
    // Update in place when already valid so the row id (and Refs to it) survive.
    let updated = tx
        .prepare_cached(
            "update ValidPaths set hash = ?, registrationTime = ?, deriver = ?, narSize = ?, \
             ultimate = ?, sigs = ?, ca = ? where path = ?",
        )?
        .execute(values)?;
    if updated == 0 {
        tx.prepare_cached(
            "insert into ValidPaths (hash, registrationTime, deriver, narSize, ultimate, sigs, ca, path) \
             values (?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(values)?;
    }
    Ok(())
}
