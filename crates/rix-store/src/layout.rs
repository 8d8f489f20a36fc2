//! Where a local store lives on disk, chosen by a store URL as in Nix.
//!
//! Two kinds of local store:
//! - **rooted** (`R`, `local?root=R`): logical directory `/nix/store`, files in
//!   `R/nix/store`, state in `R/nix/var/nix`, logs in `R/nix/var/log/nix`.
//!   With `R = /` this is the real `/nix/store`.
//! - **relocated** (`local?store=DIR&state=S&log=L`): the logical directory *is*
//!   the physical one, so its paths hash with `DIR`, not `/nix/store`.
//!
//! Mirrors `LocalFSStoreConfig` and the URL handling of `LocalStore` in Nix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rix_formats::store_path::{StoreDir, StorePath, StorePathError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreUrlError {
    #[error("unsupported store URL '{0}': rix handles local stores ('/path', 'local', 'local?root=...', 'local?store=...&state=...')")]
    Unsupported(String),
    #[error("store URL '{url}': parameter '{param}' must be an absolute path")]
    NotAbsolute { url: String, param: String },
    #[error("store URL '{url}': unknown parameter '{param}'")]
    UnknownParam { url: String, param: String },
    #[error("store URL '{url}': {source}")]
    StoreDir { url: String, source: StorePathError },
}

/// The directories of one local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    /// The logical store directory that paths hash with (`/nix/store`).
    pub store_dir: StoreDir,
    /// Where the store directory really is on this file system.
    pub real_store_dir: PathBuf,
    /// `nix/var/nix`: the database, roots, profiles, locks.
    pub state_dir: PathBuf,
    /// `nix/var/log/nix`: build logs.
    pub log_dir: PathBuf,
    /// `Some(R)` for a store rooted at R (a chroot store); `None` when logical == physical.
    pub root: Option<PathBuf>,
}

impl StoreLayout {
    /// The store rooted at `root` (`/` is the system store).
    pub fn rooted(root: &Path) -> Self {
        let real = |p: &str| root.join(p.trim_start_matches('/'));
        Self {
            store_dir: StoreDir::default(),
            real_store_dir: real("/nix/store"),
            state_dir: real("/nix/var/nix"),
            log_dir: real("/nix/var/log/nix"),
            root: (root != Path::new("/")).then(|| root.to_path_buf()),
        }
    }

    /// Parses a store URL: an absolute path, `local`, or `local?key=value&...`.
    pub fn from_url(url: &str) -> Result<Self, StoreUrlError> {
        if url.starts_with('/') {
            return Ok(Self::rooted(Path::new(url)));
        }
        let (scheme, query) = url.split_once('?').unwrap_or((url, ""));
        if scheme != "local" {
            return Err(StoreUrlError::Unsupported(url.to_owned()));
        }
        let params = parse_query(query);
        let abs = |param: &str| -> Result<Option<PathBuf>, StoreUrlError> {
            match params.get(param) {
                None => Ok(None),
                Some(v) if v.starts_with('/') => Ok(Some(PathBuf::from(v))),
                Some(_) => Err(StoreUrlError::NotAbsolute {
                    url: url.to_owned(),
                    param: param.to_owned(),
                }),
            }
        };
        for key in params.keys() {
            if !["root", "store", "state", "log", "real"].contains(&key.as_str()) {
                return Err(StoreUrlError::UnknownParam {
                    url: url.to_owned(),
                    param: key.clone(),
                });
            }
        }
        let root = abs("root")?;
        let mut layout = Self::rooted(root.as_deref().unwrap_or(Path::new("/")));
        if let Some(store) = abs("store")? {
            let dir = store.to_string_lossy().into_owned();
            layout.store_dir = StoreDir::new(dir).map_err(|source| StoreUrlError::StoreDir {
                url: url.to_owned(),
                source,
            })?;
            layout.real_store_dir = store;
            layout.root = None;
        }
        if let Some(real) = abs("real")? {
            layout.real_store_dir = real;
        }
        if let Some(state) = abs("state")? {
            layout.state_dir = state;
        }
        if let Some(log) = abs("log")? {
            layout.log_dir = log;
        }
        Ok(layout)
    }

    /// Physical location of a store path.
    pub fn real_path(&self, path: &StorePath) -> PathBuf {
        self.real_store_dir.join(path.to_string())
    }

    /// Logical (printed) location of a store path.
    pub fn print(&self, path: &StorePath) -> String {
        self.store_dir.display(path)
    }

    pub fn db_dir(&self) -> PathBuf {
        self.state_dir.join("db")
    }

    pub fn gcroots_dir(&self) -> PathBuf {
        self.state_dir.join("gcroots")
    }

    pub fn temproots_dir(&self) -> PathBuf {
        self.state_dir.join("temproots")
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.state_dir.join("profiles")
    }

    /// Whether builds must remap the store to its logical path (a chroot store).
    pub fn needs_remap(&self) -> bool {
        self.store_dir.as_str() != self.real_store_dir.to_string_lossy()
    }
}

/// `a=b&c=d` with `%XX` escapes, as Nix's `decodeQuery` (a key without `=`
/// has an empty value; a repeated key keeps its last value).
pub fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `%XX` escapes decoded (a `%` not followed by two hex digits stays).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooted_and_relocated() {
        let l = StoreLayout::from_url("/tmp/r").unwrap();
        assert_eq!(l.store_dir.as_str(), "/nix/store");
        assert_eq!(l.real_store_dir, Path::new("/tmp/r/nix/store"));
        assert_eq!(l.state_dir, Path::new("/tmp/r/nix/var/nix"));
        assert!(l.needs_remap());
        assert_eq!(StoreLayout::from_url("local?root=/tmp/r").unwrap(), l);

        let l = StoreLayout::from_url("local?store=/tmp/x/store&state=/tmp/x/state&log=/tmp/x/log")
            .unwrap();
        assert_eq!(l.store_dir.as_str(), "/tmp/x/store");
        assert_eq!(l.real_store_dir, Path::new("/tmp/x/store"));
        assert_eq!(l.log_dir, Path::new("/tmp/x/log"));
        assert!(!l.needs_remap());

        let sys = StoreLayout::from_url("local").unwrap();
        assert_eq!(sys.real_store_dir, Path::new("/nix/store"));
        assert_eq!(sys.root, None);
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(StoreLayout::from_url("daemon").is_err());
        assert!(StoreLayout::from_url("local?store=relative").is_err());
        assert!(StoreLayout::from_url("local?bogus=1").is_err());
        assert!(StoreLayout::from_url("local?store=/x/").is_err());
    }

    #[test]
    fn percent_escapes() {
        let l = StoreLayout::from_url("local?store=/tmp/a%20b").unwrap();
        assert_eq!(l.store_dir.as_str(), "/tmp/a b");
    }
}
