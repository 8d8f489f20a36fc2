//! Binary cache stores: a flat namespace of files (`nix-cache-info`,
//! `<hash>.narinfo`, `nar/...`) behind one interface, whatever the transport.
//!
//! | module | transport |
//! | --- | --- |
//! | [`file`] | `file://DIR` |
//! | [`http`] | `http://` and `https://` (reqwest: pooled connections, retries) |
//! | [`s3`] | `s3://BUCKET` on any S3-compatible service (object_store) |

pub mod file;
pub mod http;
pub mod s3;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rix_formats::cache_info::CacheInfo;
use rix_formats::narinfo::NarInfo;
use rix_formats::store_path::StoreDir;
use tempfile::TempPath;

use crate::error::{CacheError, SubstError};
use crate::url::{CacheUrl, Location};

/// MIME types Nix uses.
pub const NARINFO_MIME: &str = "text/x-nix-narinfo";
pub const NAR_MIME: &str = "application/x-nix-nar";
pub const CACHE_INFO_MIME: &str = "text/x-nix-cache-info";

/// A stream of bytes from a cache, read on the caller's thread.
pub type Stream = Box<dyn Read + Send>;

/// One binary cache: get, stream, put and probe files by key (`nix-cache-info`,
/// `<hash>.narinfo`, `nar/<hash>.nar.xz`). Absent files are `Ok(None)` / `Ok(false)`.
pub trait BinaryCache: Send + Sync {
    /// The cache's URL without parameters, for messages.
    fn url(&self) -> &str;
    /// A whole small file (`nix-cache-info`, narinfos): at most
    /// [`MAX_SMALL_FILE`] bytes, a bigger one is an error.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// A file as a stream (NARs). With `limit` (the narinfo's `FileSize`), a
    /// file announced bigger is refused before reading, and the stream fails
    /// after `limit` bytes rather than pass on more.
    fn open(&self, key: &str, limit: Option<u64>) -> Result<Option<Stream>, CacheError>;
    /// Creates or replaces a file.
    fn put(&self, key: &str, data: Vec<u8>, content_type: &str) -> Result<(), CacheError>;
    /// Creates or replaces a file from a local file (large NARs). Caches that
    /// can send a file in pieces override this; the default reads it whole.
    fn put_file(&self, key: &str, file: &Path, content_type: &str) -> Result<(), CacheError> {
        let data = std::fs::read(file)
            .map_err(|e| CacheError::new(self.url(), "upload", key, e.to_string(), false))?;
        self.put(key, data, content_type)
    }
    /// Where to write a file before it is stored with [`BinaryCache::put_spooled`]
    /// (a NAR is compressed there before its name, its compressed hash, is known).
    fn spool_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }
    /// Creates or replaces a file from a temporary file written in
    /// [`BinaryCache::spool_dir`], which is gone afterwards.
    fn put_spooled(&self, key: &str, file: TempPath, content_type: &str) -> Result<(), CacheError> {
        self.put_file(key, &file, content_type)
    }
    /// Whether a file exists.
    fn exists(&self, key: &str) -> Result<bool, CacheError>;
}

/// The most a cache may send for a small file (`nix-cache-info`, a narinfo):
/// real ones are a few KiB, a narinfo with thousands of references well under 1 MiB.
pub const MAX_SMALL_FILE: u64 = 4 << 20;

/// Refuses a file whose announced size is over `limit`.
pub(crate) fn check_announced(
    cache: &str,
    op: &'static str,
    key: &str,
    announced: Option<u64>,
    limit: Option<u64>,
) -> Result<(), CacheError> {
    match (announced, limit) {
        (Some(size), Some(limit)) if size > limit => Err(CacheError::new(
            cache,
            op,
            key,
            format!("the file has {size} bytes, more than the {limit} expected"),
            false,
        )),
        _ => Ok(()),
    }
}

/// `stream`, failing after `limit` bytes (see [`BinaryCache::open`]).
pub(crate) fn capped(cache: &str, key: &str, stream: Stream, limit: Option<u64>) -> Stream {
    match limit {
        Some(limit) => Box::new(crate::util::Capped::new(
            stream,
            limit,
            format!("{cache}: '{key}'"),
        )),
        None => stream,
    }
}

/// Reads a whole small file from `stream`, refusing more than [`MAX_SMALL_FILE`] bytes.
pub(crate) fn read_small(cache: &str, key: &str, stream: impl Read) -> Result<Vec<u8>, CacheError> {
    let mut out = Vec::new();
    crate::util::Capped::new(stream, MAX_SMALL_FILE, format!("'{key}'"))
        .read_to_end(&mut out)
        .map_err(|e| CacheError::new(cache, "download", key, e.to_string(), false))?;
    Ok(out)
}

/// Transport settings shared by the caches of one process.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// `http-connections`: connections (and requests in flight) per cache.
    pub http_connections: usize,
    /// `connect-timeout` (none = the system's).
    pub connect_timeout: Option<Duration>,
    /// Attempts of a request that fails transiently.
    pub attempts: u32,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            http_connections: 25,
            connect_timeout: None,
            attempts: 3,
        }
    }
}

/// Opens the cache a URL names (no request is made).
pub fn open(url: &CacheUrl, opts: &TransportOptions) -> Result<Arc<dyn BinaryCache>, SubstError> {
    Ok(match &url.location {
        Location::File(dir) => Arc::new(file::FileCache::new(dir, url.display())),
        Location::Http(base) => Arc::new(http::HttpCache::new(base, opts)?),
        Location::S3 { .. } => Arc::new(s3::S3Cache::new(url, opts)?),
    })
}

/// Reads `nix-cache-info` (`None` when the cache has none).
pub fn cache_info(cache: &dyn BinaryCache) -> Result<Option<CacheInfo>, SubstError> {
    let Some(bytes) = cache.get("nix-cache-info")? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    CacheInfo::parse(&text)
        .map(Some)
        .map_err(|e| SubstError::Open {
            cache: cache.url().to_owned(),
            message: format!("bad nix-cache-info: {e}"),
        })
}

/// Key of the narinfo of the path whose hash part is `hash_part`.
pub fn narinfo_key(hash_part: &str) -> String {
    format!("{hash_part}.narinfo")
}

/// Parses a narinfo fetched from `cache`.
pub fn parse_narinfo(
    cache: &str,
    store_dir: &StoreDir,
    key: &str,
    bytes: &[u8],
) -> Result<NarInfo, SubstError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SubstError::Open {
        cache: cache.to_owned(),
        message: format!("'{key}' is not UTF-8"),
    })?;
    NarInfo::parse(store_dir, text)
        .map_err(|e| SubstError::Cache(CacheError::new(cache, "parse", key, e.to_string(), false)))
}

/// Resolves a narinfo `URL` (relative to the cache, as Nix writes them) to a key.
/// Absolute URLs and keys climbing out of the cache are refused.
pub fn nar_key(url: &str) -> Option<&str> {
    if url.contains("://") || url.starts_with('/') || url.split('/').any(|c| c == ".." || c == ".")
    {
        return None;
    }
    Some(url)
}

/// Rejects keys that could leave a cache's namespace.
pub(crate) fn check_key(cache: &str, op: &'static str, key: &str) -> Result<(), CacheError> {
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || key.contains('\0')
    {
        return Err(CacheError::new(cache, op, key, "invalid file name", false));
    }
    Ok(())
}
