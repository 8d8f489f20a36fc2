//! User environments: the tree of symlinks a profile points to, built from
//! packages by priority, as Nix's `buildProfile` (`builtins/buildenv.cc`).
//! `rix profile` builds one directly; `builtin:buildenv` (rix-build) builds
//! one as a derivation's output (`nix-env`'s `buildenv.nix`).
//!
//! Packages are named by their store paths as printed (`/nix/store/…`), and
//! the links point there; `real` maps such a path to where its files are on
//! this machine (a chroot store's root), so that the tree is the same whatever
//! the store's physical location.
//!
//! The tree is built into an [`EnvDest`]: a directory ([`FsDest`], for
//! `builtin:buildenv`'s output) or memory ([`MemTree`], serialised straight
//! to a NAR: `rix profile` needs no temporary directory, which Nix makes and
//! leaves behind).

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

/// What is at a path of the tree being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Symlink,
    Other,
}

/// Where a user environment is built; paths are relative to its top.
pub trait EnvDest {
    /// `lstat`: what is at `p`, if anything.
    fn kind(&self, p: &Path) -> Option<Kind>;
    fn read_link(&self, p: &Path) -> io::Result<String>;
    fn symlink(&mut self, target: &str, p: &Path) -> io::Result<()>;
    fn mkdir(&mut self, p: &Path) -> io::Result<()>;
    fn unlink(&mut self, p: &Path) -> io::Result<()>;
    /// For messages: `p` as Nix would name it.
    fn display(&self, p: &Path) -> String;
}

/// A directory on disk (it must exist).
pub struct FsDest {
    pub root: PathBuf,
}

impl EnvDest for FsDest {
    fn kind(&self, p: &Path) -> Option<Kind> {
        let m = std::fs::symlink_metadata(self.root.join(p)).ok()?;
        Some(if m.is_dir() {
            Kind::Directory
        } else if m.file_type().is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        })
    }
    fn read_link(&self, p: &Path) -> io::Result<String> {
        Ok(std::fs::read_link(self.root.join(p))?
            .to_string_lossy()
            .into_owned())
    }
    fn symlink(&mut self, target: &str, p: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, self.root.join(p))
    }
    fn mkdir(&mut self, p: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(self.root.join(p))
    }
    fn unlink(&mut self, p: &Path) -> io::Result<()> {
        std::fs::remove_file(self.root.join(p))
    }
    fn display(&self, p: &Path) -> String {
        self.root.join(p).display().to_string()
    }
}

/// A tree in memory: directories, symlinks and regular files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Directory(BTreeMap<String, Node>),
    Symlink(String),
    File(Vec<u8>),
}

/// A user environment built in memory, written out as a NAR.
#[derive(Debug, Clone)]
pub struct MemTree {
    pub root: Node,
}

impl Default for MemTree {
    fn default() -> Self {
        MemTree {
            root: Node::Directory(BTreeMap::new()),
        }
    }
}

fn not_found() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::ENOENT)
}

impl MemTree {
    fn node(&self, p: &Path) -> Option<&Node> {
        let mut n = &self.root;
        for c in p.iter() {
            match n {
                Node::Directory(m) => n = m.get(&*c.to_string_lossy())?,
                _ => return None,
            }
        }
        Some(n)
    }

    /// The directory holding `p`, and `p`'s name.
    fn parent_mut(&mut self, p: &Path) -> io::Result<(&mut BTreeMap<String, Node>, String)> {
        let name = p
            .file_name()
            .ok_or_else(not_found)?
            .to_string_lossy()
            .into_owned();
        let mut n = &mut self.root;
        for c in p.parent().into_iter().flat_map(Path::iter) {
            match n {
                Node::Directory(m) => n = m.get_mut(&*c.to_string_lossy()).ok_or_else(not_found)?,
                _ => return Err(io::Error::from_raw_os_error(nix::libc::ENOTDIR)),
            }
        }
        match n {
            Node::Directory(m) => Ok((m, name)),
            _ => Err(io::Error::from_raw_os_error(nix::libc::ENOTDIR)),
        }
    }

    fn create(&mut self, p: &Path, node: Node) -> io::Result<()> {
        let (dir, name) = self.parent_mut(p)?;
        if dir.contains_key(&name) {
            return Err(io::Error::from_raw_os_error(nix::libc::EEXIST));
        }
        dir.insert(name, node);
        Ok(())
    }

    /// Adds a regular file (not executable) at `p`.
    pub fn add_file(&mut self, p: &Path, contents: Vec<u8>) -> io::Result<()> {
        self.create(p, Node::File(contents))
    }

    /// The tree's NAR serialisation (what `dumpPath` of it on disk gives).
    pub fn to_nar(&self) -> Result<Vec<u8>, rix_formats::nar::NarWriteError> {
        fn write(
            w: &mut rix_formats::nar::NarWriter<&mut Vec<u8>>,
            n: &Node,
        ) -> Result<(), rix_formats::nar::NarWriteError> {
            match n {
                Node::File(c) => w.file(false, c),
                Node::Symlink(t) => w.symlink(t.as_bytes()),
                Node::Directory(m) => {
                    w.begin_directory()?;
                    for (name, child) in m {
                        w.entry(name.as_bytes())?;
                        write(w, child)?;
                    }
                    w.end_directory()
                }
            }
        }
        let mut out = Vec::new();
        let mut w = rix_formats::nar::NarWriter::new(&mut out);
        write(&mut w, &self.root)?;
        w.finish()?;
        Ok(out)
    }
}

impl EnvDest for MemTree {
    fn kind(&self, p: &Path) -> Option<Kind> {
        Some(match self.node(p)? {
            Node::Directory(_) => Kind::Directory,
            Node::Symlink(_) => Kind::Symlink,
            Node::File(_) => Kind::Other,
        })
    }
    fn read_link(&self, p: &Path) -> io::Result<String> {
        match self.node(p) {
            Some(Node::Symlink(t)) => Ok(t.clone()),
            Some(_) => Err(io::Error::from_raw_os_error(nix::libc::EINVAL)),
            None => Err(not_found()),
        }
    }
    fn symlink(&mut self, target: &str, p: &Path) -> io::Result<()> {
        self.create(p, Node::Symlink(target.to_owned()))
    }
    fn mkdir(&mut self, p: &Path) -> io::Result<()> {
        self.create(p, Node::Directory(BTreeMap::new()))
    }
    fn unlink(&mut self, p: &Path) -> io::Result<()> {
        let (dir, name) = self.parent_mut(p)?;
        match dir.get(&name) {
            Some(Node::Directory(_)) => Err(io::Error::from_raw_os_error(nix::libc::EISDIR)),
            Some(_) => {
                dir.remove(&name);
                Ok(())
            }
            None => Err(not_found()),
        }
    }
    fn display(&self, p: &Path) -> String {
        p.display().to_string()
    }
}

struct State<'a> {
    priorities: BTreeMap<PathBuf, i64>,
    symlinks: u64,
    dest: &'a mut dyn EnvDest,
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
                        self.dest.display(&dst_file)
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
            let dst_kind = self.dest.kind(&dst_file);
            let shown = |d: &dyn EnvDest| d.display(&dst_file);
            if src_st.is_dir() {
                match dst_kind {
                    Some(Kind::Directory) => {
                        self.create_links(&src_file, &dst_file, priority)?;
                        continue;
                    }
                    Some(Kind::Symlink) => {
                        let link = self
                            .dest
                            .read_link(&dst_file)
                            .map_err(io_err("reading link", Path::new(&shown(self.dest))))?;
                        let target = self
                            .canon(&link)
                            .map_err(io_err("resolving", Path::new(&shown(self.dest))))?;
                        let is_dir = std::fs::symlink_metadata((self.real)(&target))
                            .map_err(io_err("getting status of", Path::new(&target)))?
                            .is_dir();
                        if !is_dir {
                            return Err(BuildEnvError::Collision(format!(
                                "collision between '{src_file}' and non-directory '{target}'"
                            )));
                        }
                        self.dest
                            .unlink(&dst_file)
                            .map_err(io_err("unlinking", Path::new(&shown(self.dest))))?;
                        self.dest
                            .mkdir(&dst_file)
                            .map_err(io_err("creating directory", Path::new(&shown(self.dest))))?;
                        let prev = self.priorities.get(&dst_file).copied().unwrap_or(0);
                        self.create_links(&target, &dst_file, prev)?;
                        self.create_links(&src_file, &dst_file, priority)?;
                        continue;
                    }
                    _ => {}
                }
            } else if let Some(kind) = dst_kind {
                if kind == Kind::Symlink {
                    let prev = self.priorities.get(&dst_file).copied().unwrap_or(0);
                    if prev == priority {
                        let existing = self
                            .dest
                            .read_link(&dst_file)
                            .map_err(io_err("reading link", Path::new(&shown(self.dest))))?;
                        return Err(BuildEnvError::Conflict {
                            file_a: existing,
                            file_b: src_file,
                            priority,
                        });
                    }
                    if prev < priority {
                        continue;
                    }
                    self.dest
                        .unlink(&dst_file)
                        .map_err(io_err("unlinking", Path::new(&shown(self.dest))))?;
                } else if kind == Kind::Directory {
                    return Err(BuildEnvError::Collision(format!(
                        "collision between non-directory '{src_file}' and directory '{}'",
                        shown(self.dest)
                    )));
                }
            }
            self.dest
                .symlink(&src_file, &dst_file)
                .map_err(io_err("creating symlink", Path::new(&shown(self.dest))))?;
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
    dest: &mut dyn EnvDest,
    mut pkgs: Vec<Package>,
    real: &dyn Fn(&str) -> PathBuf,
    warn: &mut dyn FnMut(String),
) -> Result<u64, BuildEnvError> {
    let mut state = State {
        priorities: BTreeMap::new(),
        symlinks: 0,
        dest,
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
        state.create_links(dir, Path::new(""), priority)?;
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
        let mut fs = FsDest { root: out.clone() };
        build_profile(&mut fs, vec![pkg(&b, 4), pkg(&a, 5)], &real, &mut |_| {}).unwrap();
        let mut mem = MemTree::default();
        build_profile(&mut mem, vec![pkg(&b, 4), pkg(&a, 5)], &real, &mut |_| {}).unwrap();
        let mut on_disk = Vec::new();
        crate::archive::dump::dump(&out, &mut on_disk).unwrap();
        assert_eq!(mem.to_nar().unwrap(), on_disk);
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

        let e = build_profile(
            &mut MemTree::default(),
            vec![pkg(&b, 5), pkg(&a, 5)],
            &real,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(e, BuildEnvError::Conflict { priority: 5, .. }),
            "{e}"
        );
    }
}
