//! The evaluation cache: what `rix eval FLAKE#ATTR` printed and which
//! derivations `rix build FLAKE#ATTR` wanted, kept across runs, keyed by
//! everything the answer depends on, so that repeating a command on an
//! unchanged flake answers without locking or evaluating anything.
//!
//! Nix's eval cache (`eval-cache-v5`) is keyed by the locked flake's
//! fingerprint, which it knows only after fetching the flake's source and
//! computing its lock, and it stores attribute values one by one, evaluating
//! again on every run whatever it lacks. rix keys a whole answer by the
//! source as it is on disk, read without copying it anywhere:
//!
//! - a Git working tree: the commit `HEAD` names, and the path, mode and
//!   contents of every file the index tracks (what the flake's source is);
//! - a directory (`path:`): its NAR hash, as locking it would compute;
//!
//! plus `flake.lock` (which pins every input), the subdirectory, the
//! installable, the kind of answer, the system, the store directory and
//! rix's version. Any change to the source or to a locked input is a new
//! key. Flakes from elsewhere (indirect, remote) are not cached, and
//! neither is an answer whose evaluation changed `flake.lock` (it was
//! computed from a lock that no longer is).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rix_formats::flake_ref::{FlakeRef, InputType};
use rix_formats::HashAlgo;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

/// The cache database under the cache directory.
pub const FILE_NAME: &str = "eval-cache-v1.sqlite";

pub struct EvalCache {
    db: Connection,
}

impl EvalCache {
    /// Opens (creating) the cache in `dir`; `None` when it cannot be.
    pub fn open(dir: &Path) -> Option<EvalCache> {
        std::fs::create_dir_all(dir).ok()?;
        let db = Connection::open(dir.join(FILE_NAME)).ok()?;
        db.busy_timeout(std::time::Duration::from_secs(5)).ok()?;
        db.execute_batch(
            "pragma journal_mode = wal; pragma synchronous = normal;
             create table if not exists Answers (key text primary key not null, value text not null);",
        )
        .ok()?;
        Some(EvalCache { db })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.db
            .query_row(
                "select value from Answers where key = ?",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()
    }

    pub fn put(&self, key: &str, value: &str) {
        let _ = self.db.execute(
            "insert or replace into Answers(key, value) values (?, ?)",
            params![key, value],
        );
    }
}

/// The identity of a local flake's source as it is now (see the module
/// documentation), or `None` when the flake is not one this cache serves.
pub fn source_fingerprint(r: &FlakeRef) -> Option<String> {
    let root = PathBuf::from(crate::lock::source_path(r)?);
    let mut h = Sha256::new();
    match r.input_type? {
        InputType::Git => git_fingerprint(&root, &mut h)?,
        InputType::Path => {
            let (nar_hash, _) =
                rix_store::archive::hash::hash_path(&root, HashAlgo::Sha256).ok()?;
            h.update(b"path\0");
            h.update(nar_hash.to_sri().as_bytes());
        }
        _ => return None,
    }
    h.update(b"\0dir\0");
    h.update(r.dir.as_bytes());
    let lock = root.join(&r.dir).join("flake.lock");
    h.update(b"\0lock\0");
    match std::fs::read(lock) {
        Ok(bytes) => h.update(&bytes),
        Err(_) => h.update(b"none"),
    }
    Some(hex(&h.finalize()))
}

/// `HEAD`'s commit and every tracked file's path, mode and contents (as
/// they are in the working tree).
fn git_fingerprint(root: &Path, h: &mut Sha256) -> Option<()> {
    let repo = git2::Repository::open(root).ok()?;
    h.update(b"git\0");
    match repo.head().ok().and_then(|r| r.peel_to_commit().ok()) {
        Some(c) => h.update(c.id().as_bytes()),
        None => h.update(b"no commit"),
    }
    let index = repo.index().ok()?;
    // As git decides a file is unchanged: its status matches what the index
    // recorded, and the index was written after the file's last change (not
    // "racily clean"); then the index's object id stands for the contents.
    let index_mtime = std::fs::metadata(repo.path().join("index"))
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec()));
    for entry in index.iter() {
        let rel = String::from_utf8_lossy(&entry.path).into_owned();
        h.update(b"\0f\0");
        h.update(rel.as_bytes());
        // Submodules (gitlinks) by their recorded commit.
        if entry.mode == 0o160000 {
            h.update(entry.id.as_bytes());
            continue;
        }
        let path = root.join(&rel);
        match std::fs::symlink_metadata(&path) {
            Err(_) => h.update(b"\0deleted"),
            Ok(meta) if meta.file_type().is_symlink() => {
                h.update(b"\0link\0");
                h.update(
                    std::fs::read_link(&path)
                        .ok()?
                        .as_os_str()
                        .as_encoded_bytes(),
                );
            }
            Ok(meta) => {
                let exec = meta.mode() & 0o100 != 0;
                h.update(if exec { b"\0exec\0" } else { b"\0file\0" });
                let recorded = (
                    entry.mtime.seconds() as i64,
                    entry.mtime.nanoseconds() as i64,
                );
                let unchanged = u64::from(entry.file_size) == meta.len() & 0xffff_ffff
                    && u64::from(entry.ino) == meta.ino() & 0xffff_ffff
                    && recorded == (meta.mtime(), meta.mtime_nsec())
                    && (entry.mode & 0o100 != 0) == exec
                    && index_mtime.is_some_and(|i| recorded < i);
                if unchanged {
                    h.update(b"id\0");
                    h.update(entry.id.as_bytes());
                } else {
                    h.update(b"bytes\0");
                    h.update(std::fs::read(&path).ok()?);
                }
            }
        }
    }
    Some(())
}

/// The cache key of an answer: the source's fingerprint and what was asked.
pub fn key(source: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\0");
    h.update(source.as_bytes());
    for p in parts {
        h.update(b"\0");
        h.update(p.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(digest: &[u8]) -> String {
    rix_formats::Hash::from_bytes(HashAlgo::Sha256, digest)
        .expect("a SHA-256 digest")
        .to_base16()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_ref(dir: &Path) -> FlakeRef {
        FlakeRef::parse(&format!("path:{}", dir.display())).unwrap()
    }

    #[test]
    fn a_directory_flake_changes_its_fingerprint_with_its_files_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flake.nix"), "{ outputs = _: { }; }").unwrap();
        let r = path_ref(dir.path());
        let a = source_fingerprint(&r).unwrap();
        assert_eq!(source_fingerprint(&r).unwrap(), a);
        std::fs::write(dir.path().join("flake.lock"), "{}").unwrap();
        let b = source_fingerprint(&r).unwrap();
        assert_ne!(a, b);
        std::fs::write(dir.path().join("x"), "1").unwrap();
        assert_ne!(source_fingerprint(&r).unwrap(), b);
    }

    #[test]
    fn keys_differ_by_question() {
        assert_ne!(key("s", &["eval", "a"]), key("s", &["eval", "b"]));
        assert_ne!(key("s", &["a", "b"]), key("s", &["ab"]));
    }
}
