//! Garbage collector roots, found where Nix finds them (`LocalStore::findRoots`,
//! `findRuntimeRoots` in `gc.cc`):
//!
//! - `<state>/gcroots`, recursively: a symlink into the store is a root; a
//!   symlink elsewhere is an *indirect* root (as `gcroots/auto/<hash>` → a
//!   `result` link anywhere): if its target is itself a symlink into the store,
//!   that is a root. A dangling link under `gcroots/auto` is removed (its `result`
//!   link is gone). A regular file named like a store path roots that path.
//! - `<state>/profiles`, the same way (profile generations are symlinks).
//! - runtime roots: store paths that running processes use (`/proc/*/exe`,
//!   `cwd`, open files, mapped files, environment).
//! - temporary roots of live processes ([`crate::temp_roots`]).
//!
//! A target is in the store when it is under the logical store directory or
//! (for rix's own links in a chroot store) under its physical location.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::FileType;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rix_formats::StorePath;

use crate::local_store::LocalStore;
use crate::temp_roots::read_temp_roots;

/// Root store path → the links (or `{temp:PID}`, `/proc/...`, `{censored}`) that root it.
pub type Roots = BTreeMap<StorePath, BTreeSet<String>>;

/// What the collector says while looking for roots (Nix prints these at its
/// default verbosity).
pub trait RootsObserver {
    fn info(&self, message: &str);
}

/// Ignores messages.
pub struct Silent;

impl RootsObserver for Silent {
    fn info(&self, _: &str) {}
}

/// Finds the roots in `gcroots`, `profiles` and, with `runtime`, of running
/// processes. `is_valid` decides which targets count (invalid ones are skipped).
/// `censor` replaces runtime roots' links by `{censored}` as the collector does.
pub fn find_roots_no_temp(
    store: &LocalStore,
    is_valid: &dyn Fn(&StorePath) -> bool,
    runtime: bool,
    censor: bool,
    observer: &dyn RootsObserver,
) -> io::Result<Roots> {
    let layout = store.layout();
    let mut finder = Finder {
        store,
        is_valid,
        observer,
        auto_dir: layout.gcroots_dir().join("auto"),
        roots: Roots::new(),
    };
    finder.walk(&layout.gcroots_dir(), None)?;
    finder.walk(&layout.profiles_dir(), None)?;
    let mut roots = finder.roots;
    if runtime {
        find_runtime_roots(store, is_valid, censor, &mut roots);
    }
    Ok(roots)
}

/// Every root: permanent, runtime and temporary (`{temp:PID}`). Uncensored, as
/// `nix-store --gc --print-roots` shows them.
pub fn find_all_roots(
    store: &LocalStore,
    is_valid: &dyn Fn(&StorePath) -> bool,
    observer: &dyn RootsObserver,
) -> io::Result<Roots> {
    let mut roots = find_roots_no_temp(store, is_valid, true, false, observer)?;
    for proc_roots in read_temp_roots(store.layout(), |p| {
        observer.info(&format!(
            "removing stale temporary roots file '{}'",
            p.display()
        ))
    })? {
        for p in &proc_roots.paths {
            if let Ok(path) = store.parse_path(p) {
                roots
                    .entry(path)
                    .or_default()
                    .insert(format!("{{temp:{}}}", proc_roots.pid));
            }
        }
    }
    Ok(roots)
}

fn strip_dir<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

struct Finder<'a> {
    store: &'a LocalStore,
    is_valid: &'a dyn Fn(&StorePath) -> bool,
    observer: &'a dyn RootsObserver,
    auto_dir: PathBuf,
    roots: Roots,
}

impl Finder<'_> {
    fn found(&mut self, link: &Path, target: &str) {
        let Ok(path) = self.store.parse_path(target) else {
            return;
        };
        if (self.is_valid)(&path) {
            self.roots
                .entry(path)
                .or_default()
                .insert(link.to_string_lossy().into_owned());
        } else {
            self.observer.info(&format!(
                "skipping invalid root from '{}' to '{target}'",
                link.display()
            ));
        }
    }

    fn walk(&mut self, path: &Path, ty: Option<FileType>) -> io::Result<()> {
        match self.walk_inner(path, ty) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EACCES | nix::libc::ENOENT | nix::libc::ENOTDIR)
                ) =>
            {
                self.observer
                    .info(&format!("cannot read potential root '{}'", path.display()));
                Ok(())
            }
            other => other,
        }
    }

    fn walk_inner(&mut self, path: &Path, ty: Option<FileType>) -> io::Result<()> {
        let ty = match ty {
            Some(t) => t,
            None => std::fs::symlink_metadata(path)?.file_type(),
        };
        if ty.is_dir() {
            let mut entries: Vec<(PathBuf, Option<FileType>)> = std::fs::read_dir(path)?
                .map(|e| e.map(|e| (e.path(), e.file_type().ok())))
                .collect::<io::Result<_>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (child, ty) in entries {
                self.walk(&child, ty)?;
            }
        } else if ty.is_symlink() {
            let target = std::fs::read_link(path)?;
            let target_str = target.to_string_lossy();
            if self.in_store(&target_str) {
                self.found(path, &target_str);
                return Ok(());
            }
            // An indirect root: a link to a link (a `result` symlink) elsewhere.
            let abs = absolute_in(&target, path.parent().unwrap_or(Path::new("/")));
            match std::fs::symlink_metadata(&abs) {
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
                {
                    if path.starts_with(&self.auto_dir) {
                        self.observer.info(&format!(
                            "removing stale link from '{}' to '{}'",
                            path.display(),
                            abs.display()
                        ));
                        let _ = std::fs::remove_file(path);
                    }
                }
                Err(e) => return Err(e),
                Ok(m) if m.file_type().is_symlink() => {
                    let target2 = std::fs::read_link(&abs)?;
                    let target2 = target2.to_string_lossy();
                    if self.in_store(&target2) {
                        self.found(&abs, &target2);
                    }
                }
                Ok(_) => {}
            }
        } else if ty.is_file() {
            let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
            if let Ok(p) = StorePath::from_base_name(&String::from_utf8_lossy(name)) {
                if (self.is_valid)(&p) {
                    self.roots
                        .entry(p)
                        .or_default()
                        .insert(path.to_string_lossy().into_owned());
                }
            }
        }
        Ok(())
    }

    fn in_store(&self, target: &str) -> bool {
        let layout = self.store.layout();
        strip_dir(target, layout.store_dir.as_str()).is_some()
            || layout
                .real_store_dir
                .to_str()
                .is_some_and(|real| strip_dir(target, real).is_some())
    }
}

/// `absPath(target, dir)`: `target` made absolute against `dir`, with `.` and
/// `..` resolved lexically (no symlinks followed), as Nix's `canonPath`.
fn absolute_in(target: &Path, dir: &Path) -> PathBuf {
    let joined = if target.is_absolute() {
        target.to_path_buf()
    } else {
        dir.join(target)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Store paths used by running processes (mirrors `findRuntimeRoots` on Linux).
fn find_runtime_roots(
    store: &LocalStore,
    is_valid: &dyn Fn(&StorePath) -> bool,
    censor: bool,
    roots: &mut Roots,
) {
    let layout = store.layout();
    let mut unchecked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |target: String, from: String| {
        unchecked.entry(target).or_default().insert(from);
    };
    let prefixes: Vec<String> = [
        Some(layout.store_dir.as_str().to_owned()),
        layout.real_store_dir.to_str().map(str::to_owned),
    ]
    .into_iter()
    .flatten()
    .collect::<BTreeSet<_>>()
    .into_iter()
    .collect();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for entry in procs.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let dir = Path::new("/proc").join(pid);
            for link in ["exe", "cwd"] {
                read_proc_link(&dir.join(link), &mut add);
            }
            if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
                for fd in fds.flatten() {
                    read_proc_link(&fd.path(), &mut add);
                }
            }
            let maps = dir.join("maps");
            if let Ok(text) = std::fs::read(&maps) {
                for line in text.split(|&b| b == b'\n') {
                    let fields: Vec<&[u8]> = line
                        .split(|b| b.is_ascii_whitespace())
                        .filter(|f| !f.is_empty())
                        .collect();
                    if fields.len() == 6 && fields[5].starts_with(b"/") {
                        add(
                            String::from_utf8_lossy(fields[5]).into_owned(),
                            maps.to_string_lossy().into_owned(),
                        );
                    }
                }
            }
            let environ = dir.join("environ");
            if let Ok(env) = std::fs::read(&environ) {
                for prefix in &prefixes {
                    for found in scan_store_paths(&env, prefix) {
                        add(found, environ.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    for f in [
        "/proc/sys/kernel/modprobe",
        "/proc/sys/kernel/fbsplash",
        "/proc/sys/kernel/poweroff_cmd",
    ] {
        if let Ok(text) = std::fs::read_to_string(f) {
            add(text, f.to_owned());
        }
    }
    for (target, links) in unchecked {
        let Ok(path) = store.parse_path(&target) else {
            continue;
        };
        if !is_valid(&path) {
            continue;
        }
        let entry = roots.entry(path).or_default();
        if censor {
            entry.insert("{censored}".to_owned());
        } else {
            entry.extend(links);
        }
    }
}

fn read_proc_link(link: &Path, add: &mut impl FnMut(String, String)) {
    if let Ok(target) = std::fs::read_link(link) {
        if target.as_os_str().as_bytes().first() == Some(&b'/') {
            add(
                target.to_string_lossy().into_owned(),
                link.to_string_lossy().into_owned(),
            );
        }
    }
}

/// Occurrences of `<dir>/[0-9a-z]+[0-9a-zA-Z+-._?=]*` in `bytes` (Nix's regex
/// over `/proc/*/environ`).
fn scan_store_paths(bytes: &[u8], dir: &str) -> Vec<String> {
    let needle = format!("{dir}/");
    let needle = needle.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) else {
            break;
        };
        let start = i + pos;
        let mut end = start + needle.len();
        let first = end;
        while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end].is_ascii_lowercase())
        {
            end += 1;
        }
        if end > first {
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || b"+-._?=".contains(&bytes[end]))
            {
                end += 1;
            }
            out.push(String::from_utf8_lossy(&bytes[start..end]).into_owned());
        }
        i = end.max(start + 1);
    }
    out
}

/// Makes the symlink `link` (anywhere) a root for whatever it points to:
/// `gcroots/auto/<nix32 SHA-1 of its absolute path>` → `link`, as Nix's
/// `addIndirectRoot`. Replaces an older entry atomically.
pub fn add_indirect_root(
    layout: &crate::layout::StoreLayout,
    link: &Path,
) -> crate::local_store::Result<()> {
    use crate::local_store::StoreError;
    use rix_formats::hash::HashAlgo;
    let abs = std::path::absolute(link).map_err(StoreError::io(link))?;
    let dir = layout.gcroots_dir().join("auto");
    std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
    let name = rix_formats::nixbase32::encode(
        HashAlgo::Sha1
            .digest(abs.as_os_str().as_encoded_bytes())
            .digest(),
    );
    let entry = dir.join(name);
    replace_symlink(&abs, &entry).map_err(StoreError::io(&entry))
}

/// Makes `link` a symlink to `target`, replacing what is there atomically, as
/// Nix's `replaceSymlink`: a temporary link beside it (named for this process
/// and call, so that threads do not share one) renamed over it.
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = link.with_file_name(format!(
        ".{}.rix-tmp-{}-{n}",
        link.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_absolute_paths() {
        assert_eq!(
            absolute_in(Path::new("../b/./c"), Path::new("/x/y")),
            Path::new("/x/b/c")
        );
        assert_eq!(
            absolute_in(Path::new("/a//b"), Path::new("/x")),
            Path::new("/a/b")
        );
    }

    #[test]
    fn scans_environment_for_store_paths() {
        let env = b"A=/nix/store/abc-foo/bin:/nix/store/\0B=/nix/store/x9-y.z?=k rest\0";
        assert_eq!(
            scan_store_paths(env, "/nix/store"),
            ["/nix/store/abc-foo", "/nix/store/x9-y.z?=k"]
        );
    }
}
