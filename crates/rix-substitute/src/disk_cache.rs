//! The persistent narinfo cache (`$XDG_CACHE_HOME/rix/binary-cache-v1.sqlite`),
//! like Nix's `binary-cache-v6.sqlite`: what each remote cache said about each
//! hash part, present (with the narinfo) or absent, kept for
//! `narinfo-cache-positive-ttl` / `narinfo-cache-negative-ttl` seconds, and each
//! cache's `nix-cache-info` for a week. Only remote caches (HTTP, S3) use it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rix_formats::cache_info::CacheInfo;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::SubstError;

const SCHEMA: &str = "
create table if not exists Caches (
    url text primary key not null,
    timestamp integer not null,
    info text not null
);
create table if not exists NarInfos (
    cache text not null,
    hashPart text not null,
    timestamp integer not null,
    present integer not null,
    narinfo text,
    primary key (cache, hashPart)
);
";

/// How long a cache's `nix-cache-info` is trusted (as Nix: 7 days).
const CACHE_INFO_TTL: i64 = 7 * 24 * 3600;

/// What the disk cache knows about one hash part in one cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Unknown,
    Absent,
    Present(String),
}

pub struct DiskCache {
    conn: Mutex<Connection>,
    positive_ttl: i64,
    negative_ttl: i64,
}

fn now() -> i64 {
    rix_store::path_info::now()
}

impl DiskCache {
    /// `$XDG_CACHE_HOME/rix/binary-cache-v1.sqlite` (or `~/.cache/rix/...`).
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("rix/binary-cache-v1.sqlite"))
    }

    pub fn open(
        path: &Path,
        positive_ttl: Duration,
        negative_ttl: Duration,
    ) -> Result<Self, SubstError> {
        let fail = |e: rusqlite::Error| {
            SubstError::Other(format!("narinfo cache {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(SubstError::io(format!("creating {}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(fail)?;
        let _: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "off")
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Self {
            conn: Mutex::new(conn),
            positive_ttl: positive_ttl.as_secs() as i64,
            negative_ttl: negative_ttl.as_secs() as i64,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A recent `nix-cache-info` of `url`.
    pub fn cache_info(&self, url: &str) -> Option<CacheInfo> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "select info from Caches where url = ? and timestamp > ?",
                params![url, now() - CACHE_INFO_TTL],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten();
        text.and_then(|t| CacheInfo::parse(&t).ok())
    }

    pub fn put_cache_info(&self, url: &str, info: &CacheInfo) {
        let _ = self.conn().execute(
            "insert or replace into Caches (url, timestamp, info) values (?, ?, ?)",
            params![url, now(), info.to_string()],
        );
    }

    pub fn lookup(&self, url: &str, hash_part: &str) -> Lookup {
        let row: Option<(i64, bool, Option<String>)> = self
            .conn()
            .query_row(
                "select timestamp, present, narinfo from NarInfos where cache = ? and hashPart = ?",
                params![url, hash_part],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .ok()
            .flatten();
        let now = now();
        match row {
            Some((t, true, Some(text))) if t > now - self.positive_ttl => Lookup::Present(text),
            Some((t, false, _)) if t > now - self.negative_ttl => Lookup::Absent,
            _ => Lookup::Unknown,
        }
    }

    pub fn put(&self, url: &str, hash_part: &str, narinfo: Option<&str>) {
        let _ = self.conn().execute(
            "insert or replace into NarInfos (cache, hashPart, timestamp, present, narinfo) values (?, ?, ?, ?, ?)",
            params![url, hash_part, now(), narinfo.is_some(), narinfo],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_with_ttls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let c = DiskCache::open(&path, Duration::from_secs(100), Duration::from_secs(100)).unwrap();
        assert_eq!(c.lookup("u", "h"), Lookup::Unknown);
        c.put("u", "h", None);
        assert_eq!(c.lookup("u", "h"), Lookup::Absent);
        c.put("u", "h", Some("text"));
        assert_eq!(c.lookup("u", "h"), Lookup::Present("text".into()));
        assert_eq!(c.lookup("v", "h"), Lookup::Unknown);
        // A zero TTL forgets at once.
        let c = DiskCache::open(&path, Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(c.lookup("u", "h"), Lookup::Unknown);
        let info = CacheInfo {
            store_dir: Some("/nix/store".into()),
            want_mass_query: Some(true),
            priority: Some(40),
        };
        c.put_cache_info("u", &info);
        assert_eq!(c.cache_info("u"), Some(info));
    }
}
