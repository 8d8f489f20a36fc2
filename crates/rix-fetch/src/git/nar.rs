//! The tree a Git fetch gives, serialised as a NAR and added to the store:
//! a commit's tree read from the object database (Nix's
//! `GitSourceAccessor`), or a working tree's tracked files read from disk
//! (`AllowListSourceAccessor`), either without what `export-ignore` marks
//! (`GitExportIgnoreSourceAccessor`) and with submodules' trees mounted at
//! their paths (`MountedSourceAccessor`). Nothing is checked out: the NAR is
//! written from the objects and hashed as it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};
use rix_formats::content_address::ContentAddress;
use rix_formats::hash::Hasher;
use rix_formats::nar::NarWriter;
use rix_formats::store_path::{FileIngestionMethod, StorePath};
use rix_formats::HashAlgo;
use rix_store::path_info::ValidPathInfo;
use rix_store::store_api::AddFlags;

use super::repo::{self, git_err, ExportIgnore};
use crate::error::{FetchError, Result};
use crate::Fetcher;

/// A tree to export (a lazy source accessor): read only when its NAR is
/// written, so that a cached fetch reads nothing.
#[derive(Debug)]
pub enum Plan {
    /// The tree of commit (or tag, or tree) `rev` in the repository at `repo_dir`.
    Commit {
        repo_dir: PathBuf,
        rev: Oid,
        export_ignore: bool,
        mounts: BTreeMap<String, Plan>,
    },
    /// The tracked `files` (relative paths) of the working tree at `root`,
    /// with their parent directories; everything under a listed path that is
    /// a directory on disk.
    Workdir {
        root: PathBuf,
        files: BTreeSet<String>,
        export_ignore: bool,
        mounts: BTreeMap<String, Plan>,
    },
}

fn nar_err(e: impl std::fmt::Display) -> FetchError {
    FetchError::msg(e.to_string())
}

/// A [`Write`] that hashes what it keeps.
struct HashingBuf {
    buf: Vec<u8>,
    hasher: Hasher,
}

impl Write for HashingBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A [`Write`] into a hash only.
struct HashOnly<'a>(&'a mut Hasher);

impl Write for HashOnly<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the NAR of `plan` and adds it to the store as `name` (a
/// fixed-output path, recursive SHA-256, as `fetchToStore`), unless a path
/// with that content is already valid there.
pub fn add_to_store(f: &Fetcher<'_>, plan: &Plan, name: &str) -> Result<StorePath> {
    let mut sink = HashingBuf {
        buf: Vec::new(),
        hasher: Hasher::new(HashAlgo::Sha256),
    };
    let mut w = NarWriter::new(&mut sink);
    dump(plan, &mut w)?;
    w.finish().map_err(nar_err)?;
    let HashingBuf { buf, hasher } = sink;
    let nar_hash = hasher.finish();
    let ca = ContentAddress::Fixed(FileIngestionMethod::Recursive, nar_hash);
    let path = f
        .store
        .store_dir()
        .make_path_from_ca(name, &ca, [], false)
        .map_err(nar_err)?;
    f.store.add_temp_root(&path)?;
    if !f.store.is_valid(&path)? {
        let mut info = ValidPathInfo::new(path.clone(), nar_hash, buf.len() as u64);
        info.ca = Some(ca);
        f.store
            .add_to_store_nar(&info, &mut &buf[..], AddFlags::default())?;
    }
    Ok(path)
}

/// Writes the node of `plan`'s root.
pub fn dump<W: Write>(plan: &Plan, w: &mut NarWriter<W>) -> Result<()> {
    match plan {
        Plan::Commit {
            repo_dir,
            rev,
            export_ignore,
            mounts,
        } => {
            let repo = repo::open(repo_dir)?;
            let root = repo::peel_to_tree(&repo, *rev)?;
            match root.as_tree() {
                Some(tree) => {
                    let ei = if *export_ignore {
                        Some(ExportIgnore::for_commit(repo_dir, tree)?)
                    } else {
                        None
                    };
                    let ctx = CommitCtx {
                        repo: &repo,
                        ei: ei.as_ref(),
                        mounts,
                    };
                    ctx.dump_tree(tree, "", w)
                }
                None => {
                    let blob = root
                        .peel_to_blob()
                        .map_err(|e| git_err("reading a Git blob", &e))?;
                    w.file(false, blob.content()).map_err(nar_err)
                }
            }
        }
        Plan::Workdir {
            root,
            files,
            export_ignore,
            mounts,
        } => {
            if files.is_empty() {
                // An empty working tree is an empty directory.
                w.begin_directory().map_err(nar_err)?;
                return w.end_directory().map_err(nar_err);
            }
            let mut ancestors = BTreeSet::new();
            for f in files {
                let mut p = f.as_str();
                while let Some(i) = p.rfind('/') {
                    p = &p[..i];
                    if !ancestors.insert(p.to_owned()) {
                        break;
                    }
                }
            }
            let ei = if *export_ignore {
                Some(ExportIgnore::for_index(root)?)
            } else {
                None
            };
            let ctx = WorkdirCtx {
                root,
                files,
                ancestors: &ancestors,
                ei: ei.as_ref(),
                mounts,
            };
            ctx.dump_node(root, "", false, w)
        }
    }
}

struct CommitCtx<'a, 'r> {
    repo: &'r Repository,
    ei: Option<&'a ExportIgnore>,
    mounts: &'a BTreeMap<String, Plan>,
}

impl CommitCtx<'_, '_> {
    fn dump_tree<W: Write>(
        &self,
        tree: &git2::Tree<'_>,
        prefix: &str,
        w: &mut NarWriter<W>,
    ) -> Result<()> {
        w.begin_directory().map_err(nar_err)?;
        let mut entries: Vec<git2::TreeEntry<'_>> = tree.iter().collect();
        entries.sort_by(|a, b| a.name_bytes().cmp(b.name_bytes()));
        for entry in entries {
            let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if let Some(ei) = self.ei {
                if ei.is_ignored(&rel)? {
                    continue;
                }
            }
            w.entry(entry.name_bytes()).map_err(nar_err)?;
            if let Some(mounted) = self.mounts.get(&rel) {
                dump(mounted, w)?;
                continue;
            }
            match entry.filemode() {
                0o040000 => {
                    let sub = self
                        .repo
                        .find_tree(entry.id())
                        .map_err(|e| git_err(format!("looking up directory '{rel}'"), &e))?;
                    self.dump_tree(&sub, &rel, w)?;
                }
                mode @ (0o100644 | 0o100755 | 0o100664 | 0o120000) => {
                    let blob = self
                        .repo
                        .find_blob(entry.id())
                        .map_err(|e| git_err(format!("looking up file '{rel}'"), &e))?;
                    if mode == 0o120000 {
                        w.symlink(blob.content()).map_err(nar_err)?;
                    } else {
                        w.file(mode == 0o100755, blob.content()).map_err(nar_err)?;
                    }
                }
                // A submodule's commit: an empty directory.
                0o160000 if entry.kind() == Some(ObjectType::Commit) => {
                    w.begin_directory().map_err(nar_err)?;
                    w.end_directory().map_err(nar_err)?;
                }
                _ => {
                    return Err(FetchError::msg(format!(
                        "file '{rel}' has an unsupported Git file type"
                    )))
                }
            }
        }
        w.end_directory().map_err(nar_err)
    }
}

struct WorkdirCtx<'a> {
    root: &'a Path,
    files: &'a BTreeSet<String>,
    ancestors: &'a BTreeSet<String>,
    ei: Option<&'a ExportIgnore>,
    mounts: &'a BTreeMap<String, Plan>,
}

impl WorkdirCtx<'_> {
    /// Writes the node at `path` (`rel` under the root); `all` when
    /// everything under it is allowed.
    fn dump_node<W: Write>(
        &self,
        path: &Path,
        rel: &str,
        all: bool,
        w: &mut NarWriter<W>,
    ) -> Result<()> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| FetchError::msg(format!("getting status of '{}': {e}", path.display())))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(path)?;
            w.symlink(target.as_os_str().as_bytes()).map_err(nar_err)
        } else if ft.is_file() {
            let contents = std::fs::read(path)
                .map_err(|e| FetchError::msg(format!("reading file '{}': {e}", path.display())))?;
            w.file(meta.permissions().mode() & 0o100 != 0, &contents)
                .map_err(nar_err)
        } else if ft.is_dir() {
            w.begin_directory().map_err(nar_err)?;
            let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(path)
                .map_err(|e| {
                    FetchError::msg(format!("reading directory '{}': {e}", path.display()))
                })?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()?;
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                let name_s = name.to_string_lossy();
                let rel2 = if rel.is_empty() {
                    name_s.into_owned()
                } else {
                    format!("{rel}/{name_s}")
                };
                let listed = self.files.contains(&rel2);
                if !(all || listed || self.ancestors.contains(&rel2)) {
                    continue;
                }
                if let Some(ei) = self.ei {
                    if ei.is_ignored(&rel2)? {
                        continue;
                    }
                }
                w.entry(name.as_bytes()).map_err(nar_err)?;
                if let Some(mounted) = self.mounts.get(&rel2) {
                    dump(mounted, w)?;
                    continue;
                }
                let all2 = all || listed;
                self.dump_node(&self.root.join(&rel2), &rel2, all2, w)?;
            }
            w.end_directory().map_err(nar_err)
        } else {
            Err(FetchError::msg(format!(
                "file '{}' has an unsupported type",
                path.display()
            )))
        }
    }
}

/// Hashes the NAR of the file system object at `path` (Nix's `dumpPath`
/// into a hash sink).
pub fn dump_path_into(path: &Path, hasher: &mut Hasher) -> Result<()> {
    let mut w = NarWriter::new(HashOnly(hasher));
    let files = BTreeSet::new();
    let ancestors = BTreeSet::new();
    let mounts = BTreeMap::new();
    let ctx = WorkdirCtx {
        root: path,
        files: &files,
        ancestors: &ancestors,
        ei: None,
        mounts: &mounts,
    };
    ctx.dump_node(path, "", true, &mut w)?;
    w.finish().map_err(nar_err)?;
    Ok(())
}
