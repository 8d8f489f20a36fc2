//! What evaluation needs from a store.
//!
//! Evaluation copies sources into the store (path interpolation,
//! `builtins.path`, `filterSource`), writes text files (`toFile`) and
//! derivations (`derivationStrict`), and reads derivations and references back
//! (`=` contexts, hashing input derivations). [`EvalStore`] is that interface,
//! with three implementations:
//!
//! | type | what | Nix |
//! | --- | --- | --- |
//! | [`DryRunStore`] | computes the same paths, writes nothing; remembers what it "wrote" | `--readonly-mode` (`computeStorePathForPath`, `computeStorePathForText`) |
//! | [`LocalEvalStore`] | a [`rix_store::local_store::LocalStore`], `.drv` files written in batches | `LocalStore::addToStore`, `addTextToStore`, `writeDerivation` |
//! | [`StoreEvalStore`] | any [`rix_store::store_api::Store`] (a daemon): one request per object | `RemoteStore::addToStore`, `addTextToStore` |
//!
//! NAR serialisation and hashing come from [`rix_store::archive`]; a filtered
//! serialisation (the filter is a Nix function, called on every entry in
//! Nix's order) is [`dump_filtered`].

mod any;
mod dry_run;
mod local;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rix_formats::derivation::Derivation;
use rix_formats::hash::{Hash, Hasher};
use rix_formats::nar::NarWriter;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};
use rix_formats::HashAlgo;

pub use any::StoreEvalStore;
pub use dry_run::{DryRunStore, StoreOpener};
pub use local::LocalEvalStore;

/// A filter for source paths: receives the path and its type (`"regular"`,
/// `"directory"`, `"symlink"`, `"unknown"`), returns whether to keep it.
pub type PathFilter<'a> = &'a mut dyn FnMut(&Path, &str) -> bool;

/// The store operations evaluation uses.
pub trait EvalStore {
    fn store_dir(&self) -> &StoreDir;

    /// Adds the file system object at `path` under `name`, hashed with `method`
    /// and `algo`, keeping only what `filter` accepts (everything without one).
    /// Mirrors `Store::addToStore`.
    fn add_to_store(
        &self,
        name: &str,
        path: &Path,
        method: FileIngestionMethod,
        algo: HashAlgo,
        filter: Option<PathFilter<'_>>,
    ) -> io::Result<StorePath>;

    /// Adds a text file with the given references. Mirrors `Store::addTextToStore`.
    fn add_text(
        &self,
        name: &str,
        text: &[u8],
        refs: &BTreeSet<StorePath>,
    ) -> io::Result<StorePath>;

    /// Writes a derivation (its outputs already filled in) and returns its
    /// `.drv` path. Mirrors `writeDerivation`.
    fn write_derivation(&self, drv: &Derivation) -> io::Result<StorePath>;

    /// The store fetchers (`fetchGit`) add to, when it is not this one. Nix's
    /// fetchers write to the store even when evaluation writes nothing else
    /// (`nix-instantiate --eval`), so a [`DryRunStore`] gives the real store
    /// here when it has one.
    fn fetch_store(&self) -> io::Result<Option<std::rc::Rc<dyn EvalStore>>> {
        Ok(None)
    }

    /// The store behind this one, through the store interface: where
    /// fetchers add what they fetch. `None` for a store that only computes
    /// paths (call [`Self::fetch_store`] first on a dry-run store).
    fn backing_store(&self) -> Option<&dyn rix_store::store_api::Store> {
        None
    }

    /// Writes what is still waiting to be written (see [`LocalEvalStore`]);
    /// called before store paths are read or handed out.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Reads the derivation at `path`. Mirrors `Store::readDerivation`.
    fn read_derivation(&self, path: &StorePath) -> io::Result<Derivation>;

    /// The references of a valid path. Mirrors `queryPathInfo(p)->references`.
    fn references(&self, path: &StorePath) -> io::Result<BTreeSet<StorePath>>;

    /// Whether `path` is valid (for `builtins.storePath`, `builtins.path`
    /// with a known hash). A dry-run store knows only what it was given.
    fn is_valid_path(&self, path: &StorePath) -> bool;

    /// Whether nothing is written (Nix's `readOnlyMode`): then
    /// `builtins.storePath` does not insist on valid paths.
    fn is_read_only(&self) -> bool {
        false
    }

    /// Where the store object at `path` can be read (stores whose directory
    /// is not their location on disk).
    fn real_path(&self, path: &StorePath) -> std::path::PathBuf {
        std::path::PathBuf::from(self.store_dir().display(path))
    }

    /// The closure of `path` under references, `path` included. Mirrors
    /// `computeFSClosure`.
    fn closure(&self, path: &StorePath) -> io::Result<BTreeSet<StorePath>> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![path.clone()];
        while let Some(p) = todo.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            for r in self.references(&p)? {
                if !seen.contains(&r) {
                    todo.push(r);
                }
            }
        }
        Ok(seen)
    }
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

pub(crate) fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The content hash of the object at `path` as `addToStore` computes it:
/// the file's bytes (flat) or its NAR serialisation (recursive), keeping
/// what `filter` accepts.
pub(crate) fn content_hash(
    path: &Path,
    method: FileIngestionMethod,
    algo: HashAlgo,
    filter: Option<PathFilter<'_>>,
) -> io::Result<Hash> {
    match (method, filter) {
        (FileIngestionMethod::Flat, _) => {
            let meta = std::fs::symlink_metadata(path)?;
            if !meta.is_file() {
                return Err(io::Error::other(format!(
                    "file '{}' must be a regular file to be hashed flat",
                    path.display()
                )));
            }
            let mut h = Hasher::new(algo);
            io::copy(&mut std::fs::File::open(path)?, &mut h)?;
            Ok(h.finish())
        }
        (FileIngestionMethod::Recursive, None) => rix_store::archive::hash_path(path, algo)
            .map(|(h, _)| h)
            .map_err(other),
        (FileIngestionMethod::Recursive, Some(filter)) => {
            let mut h = Hasher::new(algo);
            dump_filtered(path, &mut h, filter)?;
            Ok(h.finish())
        }
    }
}

/// `addToStore` on a store behind the store interface: an unfiltered source as
/// the store adds files, a filtered one as the NAR of what the filter keeps.
pub(crate) fn add_source(
    store: &dyn rix_store::store_api::Store,
    name: &str,
    path: &Path,
    method: FileIngestionMethod,
    algo: HashAlgo,
    filter: Option<PathFilter<'_>>,
) -> io::Result<StorePath> {
    let Some(filter) = filter else {
        return store.add_path(path, name, method, algo).map_err(other);
    };
    let (info, nar) = filtered_source(store.store_dir(), name, path, method, algo, filter)?;
    if !store.is_valid(&info.path).map_err(other)? {
        let flags = rix_store::store_api::AddFlags::default();
        store
            .add_to_store_nar(&info, &mut &nar[..], flags)
            .map_err(other)?;
    }
    Ok(info.path)
}

/// A filtered tree as it enters a store: the NAR of what `filter` keeps, and
/// the record of the fixed-output path (`name`, `method`, `algo`) it gets.
fn filtered_source(
    dir: &StoreDir,
    name: &str,
    path: &Path,
    method: FileIngestionMethod,
    algo: HashAlgo,
    filter: PathFilter<'_>,
) -> io::Result<(rix_store::path_info::ValidPathInfo, Vec<u8>)> {
    let mut nar = Vec::new();
    dump_filtered(path, &mut nar, filter)?;
    let nar_hash = HashAlgo::Sha256.digest(&nar);
    let ca_hash = match (method, algo) {
        (FileIngestionMethod::Recursive, HashAlgo::Sha256) => nar_hash,
        (FileIngestionMethod::Recursive, _) => algo.digest(&nar),
        (FileIngestionMethod::Flat, _) => content_hash(path, method, algo, None)?,
    };
    let ca = rix_formats::content_address::ContentAddress::Fixed(method, ca_hash);
    let sp = dir
        .make_path_from_ca(name, &ca, [], false)
        .map_err(invalid)?;
    let mut info = rix_store::path_info::ValidPathInfo::new(sp, nar_hash, nar.len() as u64);
    info.ca = Some(ca);
    Ok((info, nar))
}

/// Serialises `path` as a NAR into `out`, leaving out the entries below the
/// root that `filter` rejects (with everything under them). The filter is
/// called on each directory entry, in NAR order, before descending into it,
/// as Nix's `dumpPath` calls its `PathFilter`.
pub fn dump_filtered(path: &Path, out: &mut dyn Write, filter: PathFilter<'_>) -> io::Result<()> {
    let mut w = NarWriter::new(out);
    dump_node(path, &mut w, filter)?;
    w.finish().map_err(other)?;
    Ok(())
}

fn dump_node(
    path: &Path,
    w: &mut NarWriter<&mut dyn Write>,
    filter: PathFilter<'_>,
) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    if ft.is_file() {
        let exec = meta.permissions().mode() & 0o100 != 0;
        let f = std::fs::File::open(path)?;
        w.regular(exec, meta.len(), f.take(meta.len()))
            .map_err(|e| io::Error::other(format!("file '{}': {e}", path.display())))?;
    } else if ft.is_dir() {
        w.begin_directory().map_err(other)?;
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child = path.join(&name);
            let cft = std::fs::symlink_metadata(&child)?.file_type();
            if !filter(&child, file_type_name(cft)) {
                continue;
            }
            w.entry(name.as_bytes()).map_err(other)?;
            dump_node(&child, w, filter)?;
        }
        w.end_directory().map_err(other)?;
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path)?;
        w.symlink(target.as_os_str().as_bytes()).map_err(other)?;
    } else {
        return Err(io::Error::other(format!(
            "file '{}' has an unsupported type",
            path.display()
        )));
    }
    Ok(())
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
        let p = s.add_text("foo", b"bar", &BTreeSet::new()).unwrap();
        assert_eq!(p.to_string(), "vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo");
    }

    #[test]
    fn filtered_dump_without_filtering_is_the_nar() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("d/f", dir.path().join("l")).unwrap();
        let mut a = Vec::new();
        dump_filtered(dir.path(), &mut a, &mut |_, _| true).unwrap();
        let mut b = Vec::new();
        rix_store::archive::dump(dir.path(), &mut b).unwrap();
        assert_eq!(a, b);
        let mut c = Vec::new();
        let mut seen = Vec::new();
        dump_filtered(dir.path(), &mut c, &mut |p, t| {
            seen.push((p.file_name().unwrap().to_owned(), t.to_owned()));
            t != "symlink"
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert!(c.len() < a.len());
    }
}
