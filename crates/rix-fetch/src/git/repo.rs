//! A Git repository through libgit2 (the `git2` crate), with the operations
//! Nix 2.26's `GitRepoImpl` (`libfetchers/git-utils.cc`) offers the Git
//! scheme: working-tree status, revision counts, commit times, references,
//! submodules, `export-ignore` attributes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use git2::{AttrCheckFlags, AttrValue, ObjectType, Oid, Repository, Status, StatusOptions};

use crate::error::{FetchError, Result};

/// What `GitRepo::getWorkdirInfo` reports of a working tree.
#[derive(Debug, Clone, Default)]
pub struct WorkdirInfo {
    /// Whether anything tracked differs from `HEAD` (index or working tree).
    pub is_dirty: bool,
    /// The commit `HEAD` names, if there is one.
    pub head_rev: Option<Oid>,
    /// The tracked files that exist (relative, `/`-separated).
    pub files: BTreeSet<String>,
    /// Tracked files that differ from `HEAD`.
    pub dirty_files: BTreeSet<String>,
    /// Tracked files deleted from the index or the working tree.
    pub deleted_files: BTreeSet<String>,
    /// The submodules `.gitmodules` declares.
    pub submodules: Vec<Submodule>,
}

/// A `.gitmodules` entry (`GitRepo::Submodule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submodule {
    /// Relative to the repository's root, without a leading or trailing `/`.
    pub path: String,
    pub url: String,
    pub branch: String,
}

pub fn git_err(what: impl std::fmt::Display, e: &git2::Error) -> FetchError {
    FetchError::msg(format!("{what}: {}", e.message()))
}

/// `GitRepo::openRepo` without creation: the repository at `path` (a working
/// tree with `.git`, or a bare repository).
pub fn open(path: &Path) -> Result<Repository> {
    Repository::open(path)
        .map_err(|e| git_err(format!("opening Git repository \"{}\"", path.display()), &e))
}

/// `GitRepo::openRepo(path, create = true, bare)`: creates the repository
/// first if `path` does not exist (in a temporary directory beside it, then
/// renamed, so that concurrent fetches do not see a half-made one).
pub fn open_or_init_bare(path: &Path) -> Result<Repository> {
    if !path.exists() {
        let parent = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            path.file_name().and_then(|n| n.to_str()).unwrap_or("repo")
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        Repository::init_bare(&tmp).map_err(|e| {
            git_err(
                format!("creating Git repository \"{}\"", path.display()),
                &e,
            )
        })?;
        if std::fs::rename(&tmp, path).is_err() {
            // Someone else made it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    open(path)
}

/// `GitRepoImpl::getWorkdirInfo`.
pub fn workdir_info(repo: &Repository, path: &Path) -> Result<WorkdirInfo> {
    let mut info = WorkdirInfo::default();
    match repo.refname_to_id("HEAD") {
        Ok(oid) => info.head_rev = Some(oid),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {}
        Err(e) => return Err(git_err("resolving HEAD", &e)),
    }
    let mut options = StatusOptions::new();
    options.include_unmodified(true).exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(|e| git_err("getting working directory status", &e))?;
    for entry in statuses.iter() {
        let path = String::from_utf8_lossy(entry.path_bytes()).into_owned();
        let status = entry.status();
        if !status.intersects(Status::INDEX_DELETED | Status::WT_DELETED) {
            if status != Status::CURRENT {
                info.dirty_files.insert(path.clone());
            }
            info.files.insert(path);
        } else {
            info.deleted_files.insert(path);
        }
        if status != Status::CURRENT {
            info.is_dirty = true;
        }
    }
    let modules = path.join(".gitmodules");
    if modules.exists() {
        info.submodules = parse_submodules(&modules)?;
    }
    Ok(info)
}

/// `GitRepoImpl::parseSubmodules`: the `path`, `url` and `branch` of each
/// `submodule.NAME` section of a `.gitmodules` file (read by libgit2's
/// configuration parser), in the order of their names.
pub fn parse_submodules(config_file: &Path) -> Result<Vec<Submodule>> {
    let config =
        git2::Config::open(config_file).map_err(|e| git_err("parsing .gitmodules file", &e))?;
    let mut entries = BTreeMap::new();
    let mut it = config
        .entries(Some(r"^submodule\..*\.(path|url|branch)$"))
        .map_err(|e| git_err("iterating over .gitmodules", &e))?;
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| git_err("iterating over .gitmodules", &e))?;
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let value = String::from_utf8_lossy(entry.value_bytes()).into_owned();
        if let Some(key) = name.strip_prefix("submodule.") {
            // Nix keeps the first value of each key (`map::emplace`).
            entries.entry(key.to_owned()).or_insert(value);
        }
    }
    let mut result = Vec::new();
    for (key, value) in &entries {
        let Some(base) = key.strip_suffix(".path") else {
            continue;
        };
        let get = |k: &str| entries.get(&format!("{base}.{k}")).cloned();
        result.push(Submodule {
            path: canon_rel(value),
            url: get("url").unwrap_or_default(),
            branch: get("branch").unwrap_or_default(),
        });
    }
    Ok(result)
}

/// A path as `CanonPath` makes it, relative: no empty, `.` or `..`
/// components (`..` removes the one before), no leading or trailing `/`.
pub fn canon_rel(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `GitRepoImpl::getWorkdirRef`: what `HEAD` points to when it is symbolic.
pub fn workdir_ref(repo: &Repository) -> Result<Option<String>> {
    let head = repo
        .find_reference("HEAD")
        .map_err(|e| git_err("looking up HEAD", &e))?;
    Ok(head.symbolic_target().map(str::to_owned))
}

/// `GitRepoImpl::resolveRef`: what `git_revparse_single` makes of `r` (an
/// annotated tag stays the tag object).
pub fn resolve_ref(repo: &Repository, r: &str) -> Result<Oid> {
    repo.revparse_single(r)
        .map(|o| o.id())
        .map_err(|e| git_err(format!("resolving Git reference '{r}'"), &e))
}

pub fn has_object(repo: &Repository, oid: Oid) -> Result<bool> {
    match repo.find_object(oid, None) {
        Ok(_) => Ok(true),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(false),
        Err(e) => Err(git_err(format!("getting Git object '{oid}'"), &e)),
    }
}

fn lookup_commit(repo: &Repository, oid: Oid) -> Result<git2::Commit<'_>> {
    let obj = repo
        .find_object(oid, None)
        .map_err(|e| git_err(format!("getting Git object '{oid}'"), &e))?;
    obj.peel_to_commit()
        .map_err(|e| git_err(format!("peeling Git object '{oid}'"), &e))
}

/// `GitRepoImpl::getRevCount`: how many commits `rev` has as ancestors,
/// itself included.
pub fn rev_count(repo: &Repository, rev: Oid) -> Result<u64> {
    let commit = lookup_commit(repo, rev)?;
    let mut walk = repo
        .revwalk()
        .map_err(|e| git_err("walking Git history", &e))?;
    walk.push(commit.id()).map_err(|e| {
        git_err(
            format!("getting parent of Git commit '{}'", commit.id()),
            &e,
        )
    })?;
    let mut n = 0u64;
    for oid in walk {
        oid.map_err(|e| {
            git_err(
                format!("getting parent of Git commit '{}'", commit.id()),
                &e,
            )
        })?;
        n += 1;
    }
    Ok(n)
}

/// `GitRepoImpl::getLastModified`: the commit's time.
pub fn last_modified(repo: &Repository, rev: Oid) -> Result<u64> {
    Ok(lookup_commit(repo, rev)?.time().seconds().max(0) as u64)
}

/// `GitRepoImpl::resolveSubmoduleUrl` (`git_submodule_resolve_url`): a
/// relative URL (`./…`, `../…`) is taken relative to the default remote's
/// URL (the upstream of `HEAD`'s branch, else `origin`), else to the working
/// tree.
pub fn resolve_submodule_url(repo: &Repository, url: &str) -> Result<String> {
    if url.starts_with("./") || url.starts_with("../") {
        let base = default_remote_url(repo).unwrap_or_else(|| {
            repo.workdir()
                .unwrap_or(repo.path())
                .to_string_lossy()
                .into_owned()
        });
        Ok(apply_relative(&base, url))
    } else if url.contains(':') || url.starts_with('/') {
        Ok(url.to_owned())
    } else {
        Err(FetchError::msg(format!(
            "resolving Git submodule URL '{url}'"
        )))
    }
}

fn default_remote_url(repo: &Repository) -> Option<String> {
    let from_head = || -> Option<String> {
        let head = repo.head().ok()?;
        if !head.is_branch() {
            return None;
        }
        let name = repo.branch_upstream_remote(head.name()?).ok()?;
        let remote = repo.find_remote(name.as_str()?).ok()?;
        remote.url().map(str::to_owned)
    };
    from_head().or_else(|| repo.find_remote("origin").ok()?.url().map(str::to_owned))
}

/// `git_fs_path_apply_relative`: `base` (a directory) joined with `rel`,
/// whose `..` components remove those of `base`.
fn apply_relative(base: &str, rel: &str) -> String {
    let mut out = base.trim_end_matches('/').to_owned();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if let Some(i) = out.rfind('/') {
                    out.truncate(i);
                } else {
                    out.clear();
                }
            }
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        "/".into()
    } else {
        out
    }
}

/// Answers whether paths are `export-ignore` (`GitExportIgnoreSourceAccessor`),
/// with `.gitattributes` from a commit or from the repository's index.
pub struct ExportIgnore {
    repo: Repository,
    flags: AttrCheckFlags,
    /// Whether any attributes file this lookup reads mentions
    /// `export-ignore` at all; when none does, no path is asked about (each
    /// lookup costs libgit2 a dozen system calls).
    active: bool,
}

const EXPORT_IGNORE: &[u8] = b"export-ignore";

fn mentions(data: &[u8]) -> bool {
    data.windows(EXPORT_IGNORE.len())
        .any(|w| w == EXPORT_IGNORE)
}

fn file_mentions(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|d| mentions(&d))
}

/// The attributes files outside the tree: `$GIT_DIR/info/attributes` and
/// the global one (`core.attributesFile`, else `$XDG_CONFIG_HOME/git/attributes`).
fn outside_files_mention(repo: &Repository) -> bool {
    if file_mentions(&repo.path().join("info/attributes")) {
        return true;
    }
    let configured = repo
        .config()
        .ok()
        .and_then(|c| c.get_path("core.attributesFile").ok());
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("git/attributes"));
    configured
        .iter()
        .chain(xdg.iter())
        .any(|p| file_mentions(p))
}

impl ExportIgnore {
    /// Attributes as of the commit `rev` (its tree stands in for the index, in
    /// a handle of its own), plus the working tree's files when there is one.
    pub fn for_commit(repo_path: &Path, tree: &git2::Tree<'_>) -> Result<Self> {
        let repo = open(repo_path)?;
        let mut index = git2::Index::new().map_err(|e| git_err("creating an index", &e))?;
        index
            .read_tree(tree)
            .map_err(|e| git_err("reading a Git tree", &e))?;
        repo.set_index(&mut index)
            .map_err(|e| git_err("setting the index", &e))?;
        // `.gitattributes` in the tree, or in the working tree's directories.
        let mut active = outside_files_mention(&repo);
        let workdir = repo.workdir().map(Path::to_owned);
        if !active {
            if let Some(w) = &workdir {
                active = file_mentions(&w.join(".gitattributes"));
            }
        }
        if !active {
            tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                let name = entry.name_bytes();
                if name == b".gitattributes" && entry.kind() == Some(ObjectType::Blob) {
                    if let Ok(b) = repo.find_blob(entry.id()) {
                        active |= mentions(b.content());
                    }
                } else if entry.kind() == Some(ObjectType::Tree) {
                    if let Some(w) = &workdir {
                        let sub = format!("{dir}{}", String::from_utf8_lossy(name));
                        active |= file_mentions(&w.join(sub).join(".gitattributes"));
                    }
                }
                if active {
                    git2::TreeWalkResult::Abort
                } else {
                    git2::TreeWalkResult::Ok
                }
            })
            .or_else(|e| if active { Ok(()) } else { Err(e) })
            .map_err(|e| git_err("reading a Git tree", &e))?;
        }
        Ok(ExportIgnore {
            repo,
            flags: AttrCheckFlags::FILE_THEN_INDEX | AttrCheckFlags::NO_SYSTEM,
            active,
        })
    }

    /// Attributes from the repository's index (a working tree).
    pub fn for_index(repo_path: &Path) -> Result<Self> {
        let repo = open(repo_path)?;
        let mut active = outside_files_mention(&repo);
        if !active {
            let index = repo.index().map_err(|e| git_err("reading the index", &e))?;
            active = index.iter().any(|e| {
                (e.path == b".gitattributes" || e.path.ends_with(b"/.gitattributes"))
                    && repo.find_blob(e.id).is_ok_and(|b| mentions(b.content()))
            });
        }
        Ok(ExportIgnore {
            repo,
            flags: AttrCheckFlags::INDEX_ONLY | AttrCheckFlags::NO_SYSTEM,
            active,
        })
    }

    /// `isExportIgnored`: the attribute is set (a value, as in
    /// `export-ignore=x`, does not count, as with Git).
    pub fn is_ignored(&self, rel: &str) -> Result<bool> {
        if !self.active {
            return Ok(false);
        }
        match self
            .repo
            .get_attr_bytes(Path::new(rel), "export-ignore", self.flags)
        {
            Ok(v) => Ok(AttrValue::always_bytes(v) == AttrValue::True),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(false),
            Err(e) => Err(git_err(format!("looking up '{rel}'"), &e)),
        }
    }
}

/// The tree (or blob) a commit, tag or tree object comes to.
pub fn peel_to_tree(repo: &Repository, oid: Oid) -> Result<git2::Object<'_>> {
    let obj = repo
        .find_object(oid, None)
        .map_err(|e| git_err(format!("getting Git object '{oid}'"), &e))?;
    if obj.kind() == Some(ObjectType::Blob) {
        return Ok(obj);
    }
    obj.peel(ObjectType::Tree)
        .map_err(|e| git_err(format!("peeling Git object '{oid}'"), &e))
}

/// `GitRepoImpl::getSubmodules`: the submodules `.gitmodules` of commit
/// `rev` declares that are gitlinks in its tree, with their commits.
pub fn submodules_at(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    export_ignore: Option<&ExportIgnore>,
) -> Result<Vec<(Submodule, Oid)>> {
    let Ok(entry) = tree.get_path(Path::new(".gitmodules")) else {
        return Ok(Vec::new());
    };
    if let Some(ei) = export_ignore {
        if ei.is_ignored(".gitmodules")? {
            return Ok(Vec::new());
        }
    }
    let blob = entry
        .to_object(repo)
        .and_then(|o| o.peel_to_blob())
        .map_err(|e| git_err("reading .gitmodules", &e))?;
    let tmp = tempfile_path("rix-git-submodules")?;
    std::fs::write(&tmp, blob.content())?;
    let parsed = parse_submodules(&tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut result = Vec::new();
    for sub in parsed? {
        if let Ok(e) = tree.get_path(Path::new(&sub.path)) {
            if e.kind() == Some(ObjectType::Commit) {
                result.push((sub, e.id()));
            }
        }
    }
    Ok(result)
}

fn tempfile_path(prefix: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    Ok(std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls() {
        assert_eq!(apply_relative("/a/b/c", "../d"), "/a/b/d");
        assert_eq!(apply_relative("/a/b/c/", "./d"), "/a/b/c/d");
        assert_eq!(
            apply_relative("https://h/x/y.git", "../z.git"),
            "https://h/x/z.git"
        );
        assert_eq!(canon_rel("/a//b/./c/"), "a/b/c");
    }
}
