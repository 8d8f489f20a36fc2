//! What evaluation needs from a store.
//!
//! Evaluation copies sources into the store (path interpolation,
//! `builtins.path`, `filterSource`), writes text files (`toFile`) and
//! derivations (`derivationStrict`). [`EvalStore`] is that interface;
//! [`DryRunStore`] computes the same store paths without writing anything, as
//! Nix does in `--readonly-mode` (`computeStorePathForPath`, `computeStorePathForText`).

use std::io::{self, Read, Write};
use std::path::Path;

use rix_formats::hash::Hasher;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::HashAlgo;

/// A filter for source paths: receives the path and its type (`"regular"`,
/// `"directory"`, `"symlink"`, `"unknown"`), returns whether to keep it.
pub type PathFilter<'a> = &'a mut dyn FnMut(&Path, &str) -> bool;

/// The store operations evaluation uses.
pub trait EvalStore {
    fn store_dir(&self) -> &StoreDir;

    /// Adds the file system object at `path` under `name`, hashed with `method`
    /// and `algo`, keeping only what `filter` accepts. Mirrors `Store::addToStore`.
    fn add_to_store(
        &self,
        name: &str,
        path: &Path,
        method: FileIngestionMethod,
        algo: HashAlgo,
        filter: PathFilter<'_>,
    ) -> io::Result<StorePath>;

    /// Adds a text file with the given references. Mirrors `Store::addTextToStore`.
    fn add_text(&self, name: &str, text: &str, refs: &[StorePath]) -> io::Result<StorePath>;

    /// Whether `path` exists in the store (for `builtins.storePath`); a dry-run
    /// store answers `true`.
    fn is_valid_path(&self, _path: &StorePath) -> bool {
        true
    }
}

/// Computes store paths without writing anything.
#[derive(Debug, Clone, Default)]
pub struct DryRunStore {
    dir: StoreDir,
}

impl DryRunStore {
    pub fn new(dir: StoreDir) -> DryRunStore {
        DryRunStore { dir }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl EvalStore for DryRunStore {
    fn store_dir(&self) -> &StoreDir {
        &self.dir
    }

    fn add_to_store(
        &self,
        name: &str,
        path: &Path,
        method: FileIngestionMethod,
        algo: HashAlgo,
        filter: PathFilter<'_>,
    ) -> io::Result<StorePath> {
        let hash = match method {
            FileIngestionMethod::Recursive => {
                let mut h = Hasher::new(algo);
                dump_path(path, &mut h, filter)?;
                h.finish()
            }
            FileIngestionMethod::Flat => {
                let mut h = Hasher::new(algo);
                io::copy(&mut std::fs::File::open(path)?, &mut h)?;
                h.finish()
            }
        };
        self.dir
            .make_fixed_output_path(name, method, &hash, [], false)
            .map_err(invalid)
    }

    fn add_text(&self, name: &str, text: &str, refs: &[StorePath]) -> io::Result<StorePath> {
        let hash = HashAlgo::Sha256.digest(text.as_bytes());
        self.dir
            .make_text_path(name, &hash, refs.iter())
            .map_err(invalid)
    }
}

/// Serialises `path` as a NAR into `out`, skipping what `filter` rejects
/// (below the root). A small stand-in for `rix_store`'s archive writer.
pub fn dump_path(path: &Path, out: &mut dyn Write, filter: PathFilter<'_>) -> io::Result<()> {
    write_str(out, b"nix-archive-1")?;
    dump_node(path, out, filter)
}

fn write_str(out: &mut dyn Write, s: &[u8]) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s)?;
    let pad = (8 - s.len() % 8) % 8;
    out.write_all(&[0u8; 8][..pad])
}

fn dump_node(path: &Path, out: &mut dyn Write, filter: PathFilter<'_>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    write_str(out, b"(")?;
    let ft = meta.file_type();
    if ft.is_file() {
        write_str(out, b"type")?;
        write_str(out, b"regular")?;
        if meta.permissions().mode() & 0o100 != 0 {
            write_str(out, b"executable")?;
            write_str(out, b"")?;
        }
        write_str(out, b"contents")?;
        let len = meta.len();
        out.write_all(&len.to_le_bytes())?;
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
        if total != len {
            return Err(io::Error::other(format!(
                "file '{}' changed while being read",
                path.display()
            )));
        }
        let pad = ((8 - len % 8) % 8) as usize;
        out.write_all(&[0u8; 8][..pad])?;
    } else if ft.is_dir() {
        write_str(out, b"type")?;
        write_str(out, b"directory")?;
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| {
            use std::os::unix::ffi::OsStrExt;
            a.as_bytes().cmp(b.as_bytes())
        });
        for name in names {
            use std::os::unix::ffi::OsStrExt;
            let child = path.join(&name);
            let cft = std::fs::symlink_metadata(&child)?.file_type();
            let kind = file_type_name(cft);
            if !filter(&child, kind) {
                continue;
            }
            write_str(out, b"entry")?;
            write_str(out, b"(")?;
            write_str(out, b"name")?;
            write_str(out, name.as_bytes())?;
            write_str(out, b"node")?;
            dump_node(&child, out, filter)?;
            write_str(out, b")")?;
        }
    } else if ft.is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        write_str(out, b"type")?;
        write_str(out, b"symlink")?;
        write_str(out, b"target")?;
        write_str(out, std::fs::read_link(path)?.as_os_str().as_bytes())?;
    } else {
        return Err(io::Error::other(format!(
            "file '{}' has an unsupported type",
            path.display()
        )));
    }
    write_str(out, b")")
}

/// Nix's name for a file type, as `readDir` and path filters see it.
pub fn file_type_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "regular"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_path_matches_nix() {
        // nix-instantiate --eval -E 'builtins.toFile "foo" "bar"'
        let s = DryRunStore::default();
        let p = s.add_text("foo", "bar", &[]).unwrap();
        assert_eq!(p.to_string(), "vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo");
    }
}
