//! The fetcher cache: `(domain, key attributes) -> value attributes` with a
//! timestamp, in SQLite, as Nix's `fetchers::Cache` (same schema as Nix's
//! `fetcher-cache-v3.sqlite`, in rix's own cache directory). Entries that
//! name a store path are ignored once that path is no longer valid, and
//! lookups "with TTL" ignore entries older than `tarball-ttl`: a locked
//! input is looked up without TTL, so it is never fetched twice.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rix_formats::flake_ref::{AttrValue, Attrs};
use rix_formats::store_path::StorePath;
use rix_store::store_api::Store;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;
use crate::input::{attrs_to_json, json_to_attrs};
use crate::settings::FetchSettings;

/// The cache's file name under the cache directory.
pub const FILE_NAME: &str = "fetcher-cache-v3.sqlite";

pub struct Cache {
    db: Mutex<Connection>,
    ttl: u64,
}

/// A cache hit: the value and whether it is older than `tarball-ttl`.
#[derive(Debug, Clone)]
pub struct Hit {
    pub expired: bool,
    pub value: Attrs,
}

/// A hit on an entry that names a (valid) store path.
#[derive(Debug, Clone)]
pub struct StorePathHit {
    pub expired: bool,
    pub value: Attrs,
    pub store_path: StorePath,
}

const SCHEMA: &str = "
create table if not exists Cache (
    domain    text not null,
    key       text not null,
    value     text not null,
    timestamp integer not null,
    primary key (domain, key)
);";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Cache {
    /// Opens (creating) the cache in `settings.cache_dir`, or an in-memory
    /// one when there is none or it cannot be created.
    pub fn open(settings: &FetchSettings) -> Result<Self> {
        let conn = match &settings.cache_dir {
            Some(dir) => match Self::open_file(dir) {
                Ok(c) => c,
                Err(_) => Connection::open_in_memory()?,
            },
            None => Connection::open_in_memory()?,
        };
        conn.execute_batch(SCHEMA)?;
        Ok(Cache {
            db: Mutex::new(conn),
            ttl: settings.tarball_ttl,
        })
    }

    fn open_file(dir: &Path) -> Result<Connection> {
        std::fs::create_dir_all(dir)?;
        let conn = Connection::open(dir.join(FILE_NAME))?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        conn.execute_batch("pragma journal_mode = wal; pragma synchronous = normal;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(conn)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces an entry, stamped now.
    pub fn upsert(&self, domain: &str, key: &Attrs, value: &Attrs) -> Result<()> {
        self.db().execute(
            "insert or replace into Cache(domain, key, value, timestamp) values (?, ?, ?, ?)",
            params![
                domain,
                attrs_to_json(key),
                attrs_to_json(value),
                now() as i64
            ],
        )?;
        Ok(())
    }

    /// The entry, however old.
    pub fn lookup(&self, domain: &str, key: &Attrs) -> Result<Option<Attrs>> {
        Ok(self.lookup_expired(domain, key)?.map(|h| h.value))
    }

    /// The entry if it is younger than `tarball-ttl`.
    pub fn lookup_with_ttl(&self, domain: &str, key: &Attrs) -> Result<Option<Attrs>> {
        Ok(self
            .lookup_expired(domain, key)?
            .filter(|h| !h.expired)
            .map(|h| h.value))
    }

    /// The entry, and whether it is older than `tarball-ttl` (always, when
    /// the TTL is 0).
    pub fn lookup_expired(&self, domain: &str, key: &Attrs) -> Result<Option<Hit>> {
        let row: Option<(String, i64)> = self
            .db()
            .query_row(
                "select value, timestamp from Cache where domain = ? and key = ?",
                params![domain, attrs_to_json(key)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((value, timestamp)) = row else {
            return Ok(None);
        };
        let Ok(json) = serde_json::from_str(&value) else {
            return Ok(None);
        };
        let expired = self.ttl == 0 || (timestamp.max(0) as u64).saturating_add(self.ttl) < now();
        Ok(Some(Hit {
            expired,
            value: json_to_attrs(&json)?,
        }))
    }

    /// Adds an entry naming `path` (the key gets the store directory, so
    /// stores elsewhere do not share it).
    pub fn upsert_store_path(
        &self,
        domain: &str,
        key: &Attrs,
        store: &dyn Store,
        value: &Attrs,
        path: &StorePath,
    ) -> Result<()> {
        let mut key = key.clone();
        key.insert(
            "store".into(),
            AttrValue::Str(store.store_dir().to_string()),
        );
        let mut value = value.clone();
        value.insert("storePath".into(), AttrValue::Str(path.to_string()));
        self.upsert(domain, &key, &value)
    }

    /// The entry naming a store path, if that path is still valid (it
    /// becomes a temporary root first). It may be expired.
    pub fn lookup_store_path(
        &self,
        domain: &str,
        key: &Attrs,
        store: &dyn Store,
    ) -> Result<Option<StorePathHit>> {
        let mut key = key.clone();
        key.insert(
            "store".into(),
            AttrValue::Str(store.store_dir().to_string()),
        );
        let Some(mut hit) = self.lookup_expired(domain, &key)? else {
            return Ok(None);
        };
        let Some(AttrValue::Str(s)) = hit.value.remove("storePath") else {
            return Ok(None);
        };
        let Ok(path) = StorePath::from_base_name(&s) else {
            return Ok(None);
        };
        store.add_temp_root(&path)?;
        if !store.is_valid(&path)? {
            return Ok(None);
        }
        Ok(Some(StorePathHit {
            expired: hit.expired,
            value: hit.value,
            store_path: path,
        }))
    }

    /// [`Self::lookup_store_path`] without expired entries.
    pub fn lookup_store_path_with_ttl(
        &self,
        domain: &str,
        key: &Attrs,
        store: &dyn Store,
    ) -> Result<Option<StorePathHit>> {
        Ok(self
            .lookup_store_path(domain, key, store)?
            .filter(|h| !h.expired))
    }
}
