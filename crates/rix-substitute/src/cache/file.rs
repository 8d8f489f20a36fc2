//! `file://DIR`: a binary cache in a local directory.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempPath;

use super::{capped, check_announced, check_key, read_small, BinaryCache, Stream, MAX_SMALL_FILE};
use crate::error::CacheError;

pub struct FileCache {
    root: PathBuf,
    url: String,
}

static TMP: AtomicU64 = AtomicU64::new(0);

impl FileCache {
    pub fn new(root: &Path, url: String) -> Self {
        Self {
            root: root.to_path_buf(),
            url,
        }
    }

    fn err(&self, op: &'static str, key: &str, e: std::io::Error) -> CacheError {
        CacheError::new(&self.url, op, key, e.to_string(), false)
    }

    /// Writes through a temporary file and a rename, so readers never see half a file.
    fn write_atomically(
        &self,
        key: &str,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<(), CacheError> {
        check_key(&self.url, "write", key)?;
        let dest = self.root.join(key);
        let dir = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| self.err("write", key, e))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let result = File::create(&tmp)
            .and_then(|mut f| {
                fill(&mut f)?;
                f.flush()
            })
            .and_then(|()| std::fs::rename(&tmp, &dest));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| self.err("write", key, e))
    }
}

impl FileCache {
    /// Opens a file, refusing one bigger than `limit`.
    fn open_file(&self, key: &str, limit: Option<u64>) -> Result<Option<File>, CacheError> {
        check_key(&self.url, "read", key)?;
        let f = match File::open(self.root.join(key)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("read", key, e)),
        };
        let size = f.metadata().map_err(|e| self.err("read", key, e))?.len();
        check_announced(&self.url, "read", key, Some(size), limit)?;
        Ok(Some(f))
    }
}

impl BinaryCache for FileCache {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let Some(f) = self.open_file(key, Some(MAX_SMALL_FILE))? else {
            return Ok(None);
        };
        read_small(&self.url, key, f).map(Some)
    }

    fn open(&self, key: &str, limit: Option<u64>) -> Result<Option<Stream>, CacheError> {
        let Some(f) = self.open_file(key, limit)? else {
            return Ok(None);
        };
        let stream: Stream = Box::new(BufReader::with_capacity(256 * 1024, f));
        Ok(Some(capped(&self.url, key, stream, limit)))
    }

    fn put(&self, key: &str, data: Vec<u8>, _content_type: &str) -> Result<(), CacheError> {
        self.write_atomically(key, |f| f.write_all(&data))
    }

    fn put_file(&self, key: &str, file: &Path, _content_type: &str) -> Result<(), CacheError> {
        self.write_atomically(key, |f| {
            let mut src = File::open(file)?;
            std::io::copy(&mut src, f).map(drop)
        })
    }

    /// Inside the cache, so that a spooled NAR is moved into place, not copied.
    fn spool_dir(&self) -> PathBuf {
        self.root.join("nar")
    }

    fn put_spooled(&self, key: &str, file: TempPath, content_type: &str) -> Result<(), CacheError> {
        check_key(&self.url, "write", key)?;
        let dest = self.root.join(key);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err("write", key, e))?;
        }
        match file.persist(&dest) {
            Ok(()) => Ok(()),
            // Another file system: copy it.
            Err(e) => self.put_file(key, &e.path, content_type),
        }
    }

    fn exists(&self, key: &str) -> Result<bool, CacheError> {
        check_key(&self.url, "probe", key)?;
        match std::fs::symlink_metadata(self.root.join(key)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err("probe", key, e)),
        }
    }
}
