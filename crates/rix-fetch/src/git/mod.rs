//! The `git` scheme, as Nix 2.26's `GitInputScheme` (`libfetchers/git.cc`),
//! through libgit2 (the `git2` crate, as Nix itself).
//!
//! A local working tree (a `file` URL of a directory with `.git`, without
//! `ref` or `rev`) is taken as it is on disk (`getAccessorFromWorkdir`): the
//! files Git tracks, their contents from the working tree; a tree that
//! differs from `HEAD` is dirty (`dirtyRev`, a warning, or an error when
//! `allow-dirty` is false). Otherwise a commit is exported straight from the
//! object database (`getAccessorFromCommit`): of the local repository, or of
//! a cache repository under the cache directory that `git fetch` fills from
//! the URL ([`remote`]). `submodules` mounts each submodule's tree at its
//! path; `exportIgnore` drops what `.gitattributes` marks `export-ignore`.
//!
//! The fetcher cache keeps `revCount` and `lastModified` per commit
//! (`gitRevCount`, `gitLastModified`) and the store path per fingerprint
//! (`fetchToStore`: the commit and flags, plus a hash of the changes for a
//! dirty tree), so a locked input is never exported or hashed twice.

mod nar;
mod remote;
pub mod repo;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::Oid;
use rix_formats::flake_ref::{AttrValue, Attrs};
use rix_formats::store_path::StorePath;
use rix_formats::{Hash, HashAlgo};

use crate::error::{FetchError, Result};
use crate::input::Input;
use crate::Fetcher;

pub use nar::Plan;
use repo::WorkdirInfo;

/// Where a repository is: a working tree on this machine, or a URL that is
/// fetched into a cache repository (`RepoInfo::location`).
#[derive(Debug, Clone)]
enum Location {
    Path(PathBuf),
    Url(String),
}

struct RepoInfo {
    location: Location,
    /// The working tree's state (default when there is no working tree, or
    /// a `ref` or `rev` is given).
    workdir: WorkdirInfo,
}

impl RepoInfo {
    /// `RepoInfo::locationToArg`.
    fn location_to_arg(&self) -> String {
        match &self.location {
            Location::Path(p) => p.to_string_lossy().into_owned(),
            Location::Url(u) => u.clone(),
        }
    }

    fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::Path(p) => Some(p),
            Location::Url(_) => None,
        }
    }
}

fn bool_attr(input: &Input, name: &str) -> bool {
    input.get_bool(name).unwrap_or(false)
}

/// `Input::getRev` for Git: a SHA-1 commit hash (prefixed hashes are parsed
/// as such, anything else as SHA-1 in any encoding).
fn input_rev(input: &Input) -> Result<Option<Oid>> {
    let Some(s) = input.rev() else {
        return Ok(None);
    };
    let hash = Hash::parse_prefixed(s)
        .or_else(|_| Hash::parse_any(s, Some(HashAlgo::Sha1)))
        .map_err(|e| FetchError::msg(e.to_string().replace("hash type", "hash algorithm")))?;
    if hash.algo() != HashAlgo::Sha1 {
        if hash.algo() == HashAlgo::Sha256 {
            return Err(FetchError::msg(format!(
                "Git revision '{}' is a SHA-256 hash, which rix does not support",
                hash.to_base16()
            )));
        }
        return Err(FetchError::msg(format!(
            "Hash '{}' is not supported by Git. Supported types are sha1 and sha256.",
            hash.to_typed_string(rix_formats::hash::Encoding::Base16)
        )));
    }
    Oid::from_bytes(hash.digest())
        .map(Some)
        .map_err(|e| FetchError::msg(e.message().to_owned()))
}

/// What printing the input checks before anything is fetched (Nix's
/// `GitInputScheme::toURL` parses `rev`).
pub fn check_input(input: &Input) -> Result<()> {
    input_rev(input).map(|_| ())
}

/// The scheme, path and (percent-decoded) path of a URL, and the URL without
/// its query (what Nix's `ParsedURL` gives `getRepoInfo`).
struct Url {
    scheme: String,
    path: String,
    without_query: String,
}

fn parse_url(url: &str) -> Url {
    let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
    let main = rest.split(['?', '#']).next().unwrap_or("");
    let path = match main.strip_prefix("//") {
        Some(r) => r.find('/').map_or("", |i| &r[i..]),
        None => main,
    };
    let fragment = url.find('#').map_or("", |i| &url[i..]);
    Url {
        scheme: scheme.to_owned(),
        path: percent_decode(path),
        without_query: format!("{scheme}:{main}{fragment}"),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GitRepo::getCachedWorkdirInfo`: a working tree's state is read once per
/// process.
fn cached_workdir_info(path: &Path) -> Result<WorkdirInfo> {
    static CACHE: Mutex<Option<HashMap<PathBuf, WorkdirInfo>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(i) = map.get(path) {
        return Ok(i.clone());
    }
    let repo = repo::open(path)?;
    let info = repo::workdir_info(&repo, path)?;
    map.insert(path.to_owned(), info.clone());
    Ok(info)
}

/// `GitInputScheme::getRepoInfo`.
fn repo_info(input: &Input) -> Result<RepoInfo> {
    input_rev(input)?;
    let url_s = input
        .get_str("url")
        .ok_or_else(|| FetchError::msg("input attribute 'url' is missing"))?;
    let url = parse_url(url_s);
    let force_http = std::env::var("_NIX_FORCE_HTTP").is_ok_and(|v| v == "1");
    let is_bare = url.scheme == "file" && !Path::new(&url.path).join(".git").exists();
    let location = if url.scheme == "file" && !force_http && !is_bare {
        let p = Path::new(&url.path);
        if !p.is_absolute() {
            eprintln!(
                "warning: Fetching Git repository '{url_s}', which uses a path relative to the current directory. \
                 This is not supported and will stop working in a future release. \
                 See https://github.com/NixOS/nix/issues/12281 for details."
            );
        }
        Location::Path(std::path::absolute(p)?)
    } else if url.scheme == "file" {
        // Query parameters mean nothing to a `file` URL but Git would take
        // them as part of the name.
        Location::Url(url.without_query)
    } else {
        Location::Url(url_s.to_owned())
    };
    let mut info = RepoInfo {
        location,
        workdir: WorkdirInfo::default(),
    };
    if input.git_ref().is_none() && input.rev().is_none() {
        if let Some(p) = info.path() {
            info.workdir = cached_workdir_info(p)?;
        }
    }
    Ok(info)
}

/// The scheme's fetch, for [`Fetcher::fetch_to_store`]: the tree's store
/// path (looked up by fingerprint first, as `fetchToStore`) and the input
/// with what fetching found.
pub(crate) fn fetch(f: &Fetcher<'_>, input: &Input) -> Result<(StorePath, Input)> {
    let (plan, result) = get_accessor(f, input)?;
    let name = result.name().to_owned();
    let key = match fingerprint(&result)? {
        Some(fp) => {
            let mut key = Attrs::new();
            key.insert("name".into(), AttrValue::Str(name.clone()));
            key.insert("fingerprint".into(), AttrValue::Str(fp));
            key.insert("method".into(), AttrValue::Str("nar".into()));
            key.insert("path".into(), AttrValue::Str("/".into()));
            if let Some(hit) = f.cache.lookup_store_path("fetchToStore", &key, f.store)? {
                return Ok((hit.store_path, result));
            }
            Some(key)
        }
        None => None,
    };
    let path = nar::add_to_store(f, &plan, &name)?;
    if let Some(key) = key {
        f.cache
            .upsert_store_path("fetchToStore", &key, f.store, &Attrs::new(), &path)?;
    }
    Ok((path, result))
}

/// `Input::getAccessor` for a Git input (a submodule's): the tree, the input
/// as fetched, checked against what was asked for.
fn get_accessor_checked(f: &Fetcher<'_>, input: &Input) -> Result<(Plan, Input)> {
    get_accessor(f, input)
        .and_then(|(plan, mut result)| {
            result.check_locks(input)?;
            Ok((plan, result))
        })
        .map_err(|e| {
            e.with_trace(format!(
                "while fetching the input '{}'",
                input.to_url_string()
            ))
        })
}

/// `GitInputScheme::getAccessor`.
pub fn get_accessor(f: &Fetcher<'_>, input: &Input) -> Result<(Plan, Input)> {
    let info = repo_info(input)?;
    if bool_attr(input, "exportIgnore") && bool_attr(input, "submodules") {
        return Err(FetchError::msg(
            "exportIgnore and submodules are not supported together yet",
        ));
    }
    if input.git_ref().is_some() || input.rev().is_some() || info.path().is_none() {
        from_commit(f, info, input.clone())
    } else {
        from_workdir(f, info, input.clone())
    }
}

/// `verifyCommit`: rix does not check commit signatures (Nix's
/// `verified-fetches` experimental feature).
fn verify_commit(input: &Input) -> Result<()> {
    let wanted = input
        .get_bool("verifyCommit")
        .unwrap_or(input.attrs.contains_key("publicKey") || input.attrs.contains_key("publicKeys"));
    if wanted {
        return Err(FetchError::msg(format!(
            "commit verification of Git repository '{}' is not supported by rix",
            input.to_url_string()
        )));
    }
    Ok(())
}

/// `getLastModified`, cached per commit.
fn cached_last_modified(f: &Fetcher<'_>, repo_dir: &Path, rev: Oid) -> Result<u64> {
    let mut key = Attrs::new();
    key.insert("rev".into(), AttrValue::Str(rev.to_string()));
    if let Some(v) = f.cache.lookup("gitLastModified", &key)? {
        if let Some(AttrValue::Int(n)) = v.get("lastModified") {
            return Ok(*n);
        }
    }
    let n = repo::last_modified(&repo::open(repo_dir)?, rev)?;
    let mut value = Attrs::new();
    value.insert("lastModified".into(), AttrValue::Int(n));
    f.cache.upsert("gitLastModified", &key, &value)?;
    Ok(n)
}

/// `getRevCount`, cached per commit.
fn cached_rev_count(f: &Fetcher<'_>, repo_dir: &Path, rev: Oid) -> Result<u64> {
    let mut key = Attrs::new();
    key.insert("rev".into(), AttrValue::Str(rev.to_string()));
    if let Some(v) = f.cache.lookup("gitRevCount", &key)? {
        if let Some(AttrValue::Int(n)) = v.get("revCount") {
            return Ok(*n);
        }
    }
    let n = repo::rev_count(&repo::open(repo_dir)?, rev)?;
    let mut value = Attrs::new();
    value.insert("revCount".into(), AttrValue::Int(n));
    f.cache.upsert("gitRevCount", &key, &value)?;
    Ok(n)
}

/// `getDefaultRef`: what `HEAD` points to (of the working tree, or of the
/// remote as `git ls-remote` says), else `master`.
fn default_ref(f: &Fetcher<'_>, info: &RepoInfo) -> Result<String> {
    let head = match &info.location {
        Location::Path(p) => repo::workdir_ref(&repo::open(p)?)?,
        Location::Url(u) => remote::read_head_cached(f, u),
    };
    Ok(head.unwrap_or_else(|| {
        eprintln!(
            "warning: could not read HEAD ref from repo at '{}', using 'master'",
            info.location_to_arg()
        );
        "master".into()
    }))
}

/// `getAccessorFromCommit`.
fn from_commit(f: &Fetcher<'_>, info: RepoInfo, mut input: Input) -> Result<(Plan, Input)> {
    let original_ref = input.git_ref().map(str::to_owned);
    let r = match &original_ref {
        Some(r) => r.clone(),
        None => default_ref(f, &info)?,
    };
    input.set("ref", AttrValue::Str(r.clone()));
    let shallow = bool_attr(&input, "shallow");
    let repo_dir = match &info.location {
        Location::Path(p) => {
            if input.rev().is_none() {
                let rev = repo::resolve_ref(&repo::open(p)?, &r)?;
                input.set("rev", AttrValue::Str(rev.to_string()));
            }
            p.clone()
        }
        Location::Url(url) => {
            remote::fetch_into_cache(f, url, &mut input, &r, original_ref.is_some())?
        }
    };
    let repo = repo::open(&repo_dir)?;
    if repo.is_shallow() && !shallow {
        return Err(FetchError::msg(format!(
            "'{}' is a shallow Git repository, but shallow repositories are only allowed when `shallow = true;` is specified",
            info.location_to_arg()
        )));
    }
    let rev = input_rev(&input)?.expect("a rev is set above");
    let last_modified = cached_last_modified(f, &repo_dir, rev)?;
    let rev_count = if shallow {
        None
    } else {
        Some(cached_rev_count(f, &repo_dir, rev)?)
    };
    verify_commit(&input)?;
    let export_ignore = bool_attr(&input, "exportIgnore");
    let mut mounts = BTreeMap::new();
    if bool_attr(&input, "submodules") {
        let root = repo::peel_to_tree(&repo, rev)?;
        if let Some(tree) = root.as_tree() {
            let ei = if export_ignore {
                Some(repo::ExportIgnore::for_commit(&repo_dir, tree)?)
            } else {
                None
            };
            for (sub, sub_rev) in repo::submodules_at(&repo, tree, ei.as_ref())? {
                let resolved = repo::resolve_submodule_url(&repo, &sub.url)?;
                let mut attrs = Attrs::new();
                attrs.insert("type".into(), AttrValue::Str("git".into()));
                attrs.insert("url".into(), AttrValue::Str(resolved));
                if !sub.branch.is_empty() {
                    attrs.insert("ref".into(), AttrValue::Str(sub.branch.clone()));
                }
                attrs.insert("rev".into(), AttrValue::Str(sub_rev.to_string()));
                attrs.insert("exportIgnore".into(), AttrValue::Bool(export_ignore));
                attrs.insert("submodules".into(), AttrValue::Bool(true));
                attrs.insert("allRefs".into(), AttrValue::Bool(true));
                let sub_input = Input::from_attrs(attrs)?;
                let (plan, _) = get_accessor_checked(f, &sub_input)?;
                mounts.insert(sub.path, plan);
            }
        }
    }
    if let Some(n) = rev_count {
        input.set("revCount", AttrValue::Int(n));
    }
    input.set("lastModified", AttrValue::Int(last_modified));
    Ok((
        Plan::Commit {
            repo_dir,
            rev,
            export_ignore,
            mounts,
        },
        input,
    ))
}

/// `getAccessorFromWorkdir`.
fn from_workdir(f: &Fetcher<'_>, info: RepoInfo, mut input: Input) -> Result<(Plan, Input)> {
    let repo_path = info.path().expect("a working tree").to_owned();
    let mut wd = info.workdir.clone();
    let submodules = bool_attr(&input, "submodules");
    if submodules {
        // Mount points for the submodules.
        for s in &wd.submodules {
            wd.files.insert(s.path.clone());
        }
    }
    let export_ignore = bool_attr(&input, "exportIgnore");
    let mut mounts = BTreeMap::new();
    if submodules {
        for s in &wd.submodules {
            let sub_path = repo_path.join(&s.path);
            let mut attrs = Attrs::new();
            attrs.insert("type".into(), AttrValue::Str("git".into()));
            attrs.insert(
                "url".into(),
                AttrValue::Str(sub_path.to_string_lossy().into_owned()),
            );
            attrs.insert("exportIgnore".into(), AttrValue::Bool(export_ignore));
            attrs.insert("submodules".into(), AttrValue::Bool(true));
            let sub_input = Input::from_attrs(attrs)?;
            let (plan, sub_result) = get_accessor_checked(f, &sub_input)?;
            // A dirty submodule makes this tree dirty too.
            if sub_result.rev().is_none() {
                wd.is_dirty = true;
            }
            mounts.insert(s.path.clone(), plan);
        }
    }
    let plan = Plan::Workdir {
        root: repo_path.clone(),
        files: wd.files.clone(),
        export_ignore,
        mounts,
    };
    if !wd.is_dirty {
        let repo = repo::open(&repo_path)?;
        if let Some(r) = repo::workdir_ref(&repo)? {
            input.set("ref", AttrValue::Str(r));
        }
        let (rev, count) = match wd.head_rev {
            Some(h) => (h.to_string(), cached_rev_count(f, &repo_path, h)?),
            None => ("0".repeat(40), 0),
        };
        input.set("rev", AttrValue::Str(rev));
        input.set("revCount", AttrValue::Int(count));
        verify_commit(&input)?;
    } else {
        let location = info.location_to_arg();
        if !f.settings.allow_dirty {
            return Err(FetchError::msg(format!("Git tree '{location}' is dirty")));
        }
        if f.settings.warn_dirty {
            eprintln!("warning: Git tree '{location}' is dirty");
        }
        if let Some(h) = wd.head_rev {
            let h = h.to_string();
            input.set("dirtyRev", AttrValue::Str(format!("{h}-dirty")));
            input.set(
                "dirtyShortRev",
                AttrValue::Str(format!("{}-dirty", &h[..7])),
            );
        }
        if input.get_bool("verifyCommit").unwrap_or(false)
            || input.attrs.contains_key("publicKey")
            || input.attrs.contains_key("publicKeys")
        {
            return Err(FetchError::msg(format!(
                "commit verification is required for Git repository '{}', but it's dirty",
                input.to_url_string()
            )));
        }
    }
    let last_modified = match wd.head_rev {
        Some(h) => cached_last_modified(f, &repo_path, h)?,
        None => 0,
    };
    input.set("lastModified", AttrValue::Int(last_modified));
    Ok((plan, input))
}

/// `GitInputScheme::getFingerprint`: what names the tree of a fetch result
/// in the `fetchToStore` cache, when it can be named.
fn fingerprint(result: &Input) -> Result<Option<String>> {
    let make = |rev: &str| {
        format!(
            "{rev}{}{}",
            if bool_attr(result, "submodules") {
                ";s"
            } else {
                ""
            },
            if bool_attr(result, "exportIgnore") {
                ";e"
            } else {
                ""
            }
        )
    };
    if let Some(rev) = input_rev(result)? {
        return Ok(Some(make(&rev.to_string())));
    }
    let info = repo_info(result)?;
    let (Some(repo_path), Some(head)) = (info.path(), info.workdir.head_rev) else {
        return Ok(None);
    };
    if !info.workdir.submodules.is_empty() {
        return Ok(None);
    }
    // The changed and deleted files, in `CanonPath` order.
    let canon_order = |a: &&String, b: &&String| {
        a.bytes()
            .map(|c| if c == b'/' { 0 } else { c })
            .cmp(b.bytes().map(|c| if c == b'/' { 0 } else { c }))
    };
    let mut sink = rix_formats::hash::Hasher::new(HashAlgo::Sha512);
    let mut dirty: Vec<&String> = info.workdir.dirty_files.iter().collect();
    dirty.sort_by(canon_order);
    for file in dirty {
        write_string(&mut sink, b"modified:");
        write_string(&mut sink, format!("/{file}").as_bytes());
        nar::dump_path_into(&repo_path.join(file), &mut sink)?;
    }
    let mut deleted: Vec<&String> = info.workdir.deleted_files.iter().collect();
    deleted.sort_by(canon_order);
    for file in deleted {
        write_string(&mut sink, b"deleted:");
        write_string(&mut sink, format!("/{file}").as_bytes());
    }
    Ok(Some(format!(
        "{};d={}",
        make(&head.to_string()),
        sink.finish().to_base16()
    )))
}

/// Nix's `writeString`: the length (64-bit little-endian), the bytes, zeros
/// to a multiple of 8.
fn write_string(h: &mut rix_formats::hash::Hasher, s: &[u8]) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s);
    h.update(&[0u8; 8][..(8 - s.len() % 8) % 8]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FetchSettings, Fetchers};
    use rix_store::layout::StoreLayout;
    use rix_store::local_store::LocalStore;

    fn commit_all(repo: &git2::Repository, msg: &str, time: i64) -> Oid {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::new("t", "t@example.org", &git2::Time::new(time, 0)).unwrap();
        let parents: Vec<git2::Commit<'_>> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, msg, &tree, &refs)
            .unwrap()
    }

    fn git_input(url: &str, extra: &[(&str, AttrValue)]) -> Input {
        let mut attrs = Attrs::new();
        attrs.insert("type".into(), AttrValue::Str("git".into()));
        attrs.insert("url".into(), AttrValue::Str(url.into()));
        for (k, v) in extra {
            attrs.insert((*k).into(), v.clone());
        }
        Input::from_attrs(attrs).unwrap()
    }

    /// A clean working tree is its `HEAD` commit (same store path, `rev`,
    /// `revCount`, `lastModified`); a change makes it dirty, which
    /// `allow-dirty = false` refuses; a missing commit is an error naming it.
    #[test]
    fn working_tree_and_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let store = LocalStore::open(StoreLayout::rooted(&dir.join("root"))).unwrap();
        let r = dir.join("r");
        let repo = git2::Repository::init(&r).unwrap();
        std::fs::create_dir_all(r.join("d")).unwrap();
        std::fs::write(r.join("d/a"), "a\n").unwrap();
        std::fs::write(r.join("b"), "b\n").unwrap();
        commit_all(&repo, "one", 1_577_836_800);
        std::fs::write(r.join("b"), "b2\n").unwrap();
        let head = commit_all(&repo, "two", 1_577_836_900);
        std::fs::write(r.join("untracked"), "u\n").unwrap();

        let settings = FetchSettings {
            cache_dir: Some(dir.join("cache")),
            ..FetchSettings::default()
        };
        let fetchers = Fetchers::new(settings).unwrap();
        let f = fetchers.on(&store);
        let url = r.to_str().unwrap();
        let (p1, wd) = f.fetch_to_store(&git_input(url, &[])).unwrap();
        let rev = git_input(url, &[("rev", AttrValue::Str(head.to_string()))]);
        let (p2, at) = f.fetch_to_store(&rev).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(wd.rev(), Some(head.to_string().as_str()));
        assert_eq!(wd.rev_count(), Some(2));
        assert_eq!(at.rev_count(), Some(2));
        assert_eq!(at.last_modified(), Some(1_577_836_900));
        assert_eq!(wd.get_str("narHash"), at.get_str("narHash"));

        // Dirty.
        std::fs::write(r.join("d/a"), "changed\n").unwrap();
        let fresh = |allow_dirty| {
            let mut ps = FetchSettings {
                cache_dir: Some(dir.join("cache")),
                ..FetchSettings::default()
            };
            ps.allow_dirty = allow_dirty;
            ps.warn_dirty = false;
            Fetchers::new(ps).unwrap()
        };
        // The working tree's state is read once per process: use another path.
        let r2 = dir.join("r2");
        std::fs::rename(&r, &r2).unwrap();
        let url2 = r2.to_str().unwrap();
        let fs = fresh(true);
        let (p3, dirty) = fs.on(&store).fetch_to_store(&git_input(url2, &[])).unwrap();
        assert_ne!(p3, p1);
        assert_eq!(dirty.rev(), None);
        assert_eq!(
            dirty.get_str("dirtyRev"),
            Some(format!("{head}-dirty").as_str())
        );
        let fs = fresh(false);
        let e = fs
            .on(&store)
            .fetch_to_store(&git_input(url2, &[]))
            .unwrap_err();
        assert_eq!(e.message, format!("Git tree '{url2}' is dirty"));

        let missing = git_input(
            url2,
            &[(
                "rev",
                AttrValue::Str("0123456789012345678901234567890123456789".into()),
            )],
        );
        let e = fs.on(&store).fetch_to_store(&missing).unwrap_err();
        assert!(
            e.message
                .contains("0123456789012345678901234567890123456789"),
            "{}",
            e.message
        );
        assert!(
            e.trace[0].contains("while fetching the input"),
            "{:?}",
            e.trace
        );
    }
}
