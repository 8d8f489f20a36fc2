//! User environments: the tree of symlinks a profile points to, built from
//! packages by priority, as Nix's `buildProfile` (`builtins/buildenv.cc`).
//! `rix profile` builds one directly; `builtin:buildenv` (rix-build) builds
//! one as a derivation's output (`nix-env`'s `buildenv.nix`).
//!
//! Packages are named by their store paths as printed (`/nix/store/…`), and
//! the links point there; `real` maps such a path to where its files are on
//! this machine (a chroot store's root), so that the tree is the same whatever
//! the store's physical location.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A package of a user environment (Nix's `Package`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The store path as printed.
    pub path: String,
    pub active: bool,
    /// Lower wins a collision.
    pub priority: i64,
}

#[derive(Debug, Error)]
pub enum BuildEnvError {
    /// Two packages of the same priority provide the same file (Nix's
    /// `BuildEnvFileConflictError`).
    #[error(
        "Unable to build profile. There is a conflict for the following files:\n\n  {file_a}\n  {file_b}"
    )]
    Conflict {
        file_a: String,
        file_b: String,
        priority: i64,
    },
    #[error("{0}")]
    Collision(String),
    #[error("{what} '{path}': {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BuildEnvError + 'a {
    move |source| BuildEnvError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

struct State<'a> {
    priorities: BTreeMap<PathBuf, i64>,
    symlinks: u64,
    real: &'a dyn Fn(&str) -> PathBuf,
    warn: &'a mut dyn FnMut(String),
}

impl State<'_> {
    /// `path` (as printed) with every symlink resolved, as Nix's `canonPath(p,
    /// true)`, each link read where its files really are.
    fn canon(&self, path: &str) -> io::Result<String> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_owned)
            .collect();
        let mut out = String::new();
        let mut follows = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    if let Some(i) = out.rfind('/') {
                        out.truncate(i);
                    }
                    continue;
                }
                _ => {}
            }
            let next = format!("{out}/{c}");
            let real = (self.real)(&next);
            match std::fs::symlink_metadata(&real) {
                Ok(m) if m.file_type().is_symlink() => {
                    follows += 1;
                    if follows > 1024 {
                        return Err(io::Error::from_raw_os_error(nix::libc::ELOOP));
                    }
                    let target = std::fs::read_link(&real)?;
                    let target = target.to_string_lossy();
                    if target.starts_with('/') {
                        out.clear();
                    }
                    todo.extend(
                        target
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(str::to_owned),
                    );
                }
                Ok(_) => out = next,
                Err(e) => return Err(e),
            }
        }
        Ok(if out.is_empty() { "/".into() } else { out })
    }

    /// `stat(2)` of a printed path (symlinks followed).
    fn stat(&self, path: &str) -> io::Result<std::fs::Metadata> {
        std::fs::symlink_metadata((self.real)(&self.canon(path)?))
    }

    /// Nix's `createLinks`: links in `dst` to each entry of `src`.
    fn create_links(&mut self, src: &str, dst: &Path, priority: i64) -> Result<(), BuildEnvError> {
        let real_src = (self.real)(src);
        let entries = match std::fs::read_dir(&real_src) {
            Ok(e) => e,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
                (self.warn)(format!(
                    "not including '{src}' in the user environment because it's not a directory"
                ));
                return Ok(());
            }
            Err(e) => return Err(io_err("cannot open directory", Path::new(src))(e)),
        };
        let mut names: Vec<String> = entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()
            .map_err(io_err("cannot read directory", Path::new(src)))?;
        names.sort();
        for name in names {
            if name.starts_with('.') {
                continue; // not matched by glob
            }
            let src_file = format!("{}/{name}", src.trim_end_matches('/'));
            let dst_file = dst.join(&name);
            let src_st = match self.stat(&src_file) {
                Ok(m) => m,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::ENOENT | nix::libc::ENOTDIR)
                    ) =>
                {
                    (self.warn)(format!(
                        "skipping dangling symlink '{}'",
                        dst_file.display()
                    ));
                    continue;
                }
                Err(e) => return Err(io_err("getting status of", Path::new(&src_file))(e)),
            };
            // Useless in a profile, or pointless collisions (each Python
            // package's `easy-install.pth`, ...).
            if [
                "/propagated-build-inputs",
                "/nix-support",
                "/perllocal.pod",
                "/info/dir",
                "/log",
                "/manifest.nix",
                "/manifest.json",
            ]
            .iter()
            .any(|s| src_file.ends_with(s))
            {
                continue;
            }
            let dst_st = std::fs::symlink_metadata(&dst_file).ok();
            if src_st.is_dir() {
                match &dst_st {
                    Some(d) if d.is_dir() => {
                        self.create_links(&src_file, &dst_file, priority)?;
                        continue;
                    }
                    Some(d) if d.file_type().is_symlink() => {
                        let link = std::fs::read_link(&dst_file)
                            .map_err(io_err("reading link", &dst_file))?;
                        let target = self
                            .canon(&link.to_string_lossy())
                            .map_err(io_err("resolving", &dst_file))?;
                        let is_dir = std::fs::symlink_metadata((self.real)(&target))
                            .map_err(io_err("getting status of", Path::new(&target)))?
                            .is_dir();
                        if !is_dir {
                            return Err(BuildEnvError::Collision(format!(
                                "collision between '{src_file}' and non-directory '{target}'"
                            )));
                        }
                        std::fs::remove_file(&dst_file).map_err(io_err("unlinking", &dst_file))?;
                        std::fs::create_dir(&dst_file)
                            .map_err(io_err("creating directory", &dst_file))?;
                        let prev = self.priorities.get(&dst_file).copied().unwrap_or(0);
                        self.create_links(&target, &dst_file, prev)?;
                        self.create_links(&src_file, &dst_file, priority)?;
                        continue;
                    }
                    _ => {}
                }
            } else if let Some(d) = &dst_st {
                if d.file_type().is_symlink() {
                    let prev = self.priorities.get(&dst_file).copied().unwrap_or(0);
                    if prev == priority {
                        let existing = std::fs::read_link(&dst_file)
                            .map_err(io_err("reading link", &dst_file))?;
                        return Err(BuildEnvError::Conflict {
                            file_a: existing.to_string_lossy().into_owned(),
                            file_b: src_file,
                            priority,
                        });
                    }
                    if prev < priority {
                        continue;
                    }
                    std::fs::remove_file(&dst_file).map_err(io_err("unlinking", &dst_file))?;
                } else if d.is_dir() {
                    return Err(BuildEnvError::Collision(format!(
                        "collision between non-directory '{src_file}' and directory '{}'",
                        dst_file.display()
                    )));
                }
            }
            std::os::unix::fs::symlink(&src_file, &dst_file)
                .map_err(io_err("creating symlink", &dst_file))?;
            self.priorities.insert(dst_file, priority);
            self.symlinks += 1;
        }
        Ok(())
    }
}

/// Builds the user environment of `pkgs` in directory `out` (Nix's
/// `buildProfile`): packages by priority (then path), each linked in as a
/// whole where it can be, directories merged where two provide one; then
/// what they list in `nix-support/propagated-user-env-packages`, at
/// priorities from 1000 up. `warn` gets Nix's warnings. Returns the number
/// of links made.
pub fn build_profile(
    out: &Path,
    mut pkgs: Vec<Package>,
    real: &dyn Fn(&str) -> PathBuf,
    warn: &mut dyn FnMut(String),
) -> Result<u64, BuildEnvError> {
    let mut state = State {
        priorities: BTreeMap::new(),
        symlinks: 0,
        real,
        warn,
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut postponed: BTreeSet<String> = BTreeSet::new();
    let mut add_pkg = |state: &mut State<'_>,
                       postponed: &mut BTreeSet<String>,
                       dir: &str,
                       priority: i64|
     -> Result<(), BuildEnvError> {
        if !done.insert(dir.to_owned()) {
            return Ok(());
        }
        state.create_links(dir, out, priority)?;
        let file = (state.real)(&format!("{dir}/nix-support/propagated-user-env-packages"));
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                for p in text.split([' ', '\n']).filter(|p| !p.is_empty()) {
                    if !done.contains(p) {
                        postponed.insert(p.to_owned());
                    }
                }
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOENT | nix::libc::ENOTDIR)
                ) => {}
            Err(e) => return Err(io_err("reading", &file)(e)),
        }
        Ok(())
    };
    pkgs.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.path.cmp(&b.path))
    });
    for p in pkgs.iter().filter(|p| p.active) {
        add_pkg(&mut state, &mut postponed, &p.path, p.priority)?;
    }
    let mut counter = 1000;
    while !postponed.is_empty() {
        for dir in std::mem::take(&mut postponed) {
            add_pkg(&mut state, &mut postponed, &dir, counter)?;
            counter += 1;
        }
    }
    Ok(state.symlinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[&str]) {
        for f in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
    }

    #[test]
    fn merges_directories_and_resolves_priorities() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        tree(&a, &["bin/x", "bin/y", "share/a"]);
        tree(&b, &["bin/x", "bin/z"]);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let pkg = |p: &Path, priority| Package {
            path: p.display().to_string(),
            active: true,
            priority,
        };
        let real = |s: &str| PathBuf::from(s);
        build_profile(&out, vec![pkg(&b, 4), pkg(&a, 5)], &real, &mut |_| {}).unwrap();
        assert!(std::fs::symlink_metadata(out.join("bin")).unwrap().is_dir());
        assert_eq!(
            std::fs::read_link(out.join("bin/x")).unwrap(),
            b.join("bin/x")
        );
        assert_eq!(
            std::fs::read_link(out.join("bin/y")).unwrap(),
            a.join("bin/y")
        );
        assert_eq!(
            std::fs::read_link(out.join("share")).unwrap(),
            a.join("share")
        );

        let out2 = dir.path().join("out2");
        std::fs::create_dir(&out2).unwrap();
        let e = build_profile(&out2, vec![pkg(&b, 5), pkg(&a, 5)], &real, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, BuildEnvError::Conflict { priority: 5, .. }),
            "{e}"
        );
    }
}
