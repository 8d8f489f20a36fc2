//! `builtins.fetchGit` for repositories on this machine, as Nix 2.26 fetches
//! them (`GitInputScheme` in `libfetchers/git.cc`), through the `git` program.
//!
//! Without `ref` or `rev`, a local working tree is taken as it is on disk
//! (`getAccessorFromWorkdir`): the files Git tracks (in the index and not
//! deleted from the working tree), with their contents in the working tree;
//! untracked and ignored files are left out, and so is `.git`. A tree with
//! changes to tracked files is dirty: Nix warns, and the result has
//! `dirtyRev`/`dirtyShortRev` and an all-zero `rev`. With `submodules = true`
//! each submodule is fetched the same way and put at its path (a dirty
//! submodule makes the whole tree dirty); without, submodules are left out.
//!
//! With `ref` or `rev` (or a bare repository), the commit is exported with
//! `git archive` (`getAccessorFromCommit`). Submodules of a commit are not
//! supported. Repositories elsewhere need the network, which rix's evaluator
//! does not use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

use rix_formats::store_path::FileIngestionMethod;
use rix_formats::HashAlgo;

use super::fetch_tree::utc_timestamp;
use super::{arg_ctx, err, Registry};
use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::{Coerce, Evaluator};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Context, NixString, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("fetchGit", 1, fetch_git);
}

/// The arguments of one `fetchGit` call.
struct Request {
    /// The repository's directory.
    repo: PathBuf,
    name: String,
    git_ref: Option<String>,
    rev: Option<String>,
    submodules: bool,
}

fn needs_network(url: &str, pos: Pos) -> Box<EvalError> {
    EvalError::new(
        ErrorKind::NeedsNetwork,
        format!(
            "fetching '{url}' needs network access, which rix's evaluator does not do \
             (fetchGit takes repositories on this machine)"
        ),
        pos,
    )
}

fn fetch_git(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let arg = ev.force(&a[0])?;
    let as_string = |ev: &mut Evaluator, v: &Value| -> Result<String> {
        let s = ev.coerce_to_string(
            v,
            pos,
            Coerce {
                more: false,
                copy_to_store: false,
                ctx: "",
            },
        )?;
        Ok(s.as_str().to_owned())
    };
    let mut url = None;
    let mut name = "source".to_owned();
    let (mut git_ref, mut rev, mut submodules) = (None, None, false);
    if let Value::Attrs(attrs) = &arg {
        for attr in attrs.iter() {
            match attr.name.as_str() {
                "url" => url = Some(arg_ctx(as_string(ev, &attr.value), 0, "fetchGit", pos)?),
                "name" => name = ev.force_string_no_ctx(&attr.value, attr.pos)?,
                "ref" => git_ref = Some(ev.force_string_no_ctx(&attr.value, attr.pos)?),
                "rev" => rev = Some(ev.force_string_no_ctx(&attr.value, attr.pos)?),
                "submodules" => submodules = ev.force_bool(&attr.value, attr.pos)?,
                // What only matters when fetching over the network, or what
                // this implementation does anyway.
                "shallow" | "allRefs" | "exportIgnore" | "verifyCommit" => {
                    ev.force_bool(&attr.value, attr.pos)?;
                }
                "lfs" => {
                    if ev.force_bool(&attr.value, attr.pos)? {
                        return Err(err(
                            "rix's fetchGit does not support 'lfs = true'",
                            attr.pos,
                        ));
                    }
                }
                "narHash" | "publicKey" | "keytype" | "publicKeys" | "lastModified"
                | "revCount" => {}
                other => {
                    return Err(err(
                        format!("unsupported argument '{other}' to 'fetchGit'"),
                        attr.pos,
                    ))
                }
            }
        }
    } else {
        url = Some(arg_ctx(as_string(ev, &arg), 0, "fetchGit", pos)?);
    }
    let url = url.ok_or_else(|| err("'url' argument required", pos))?;
    let path = url
        .strip_prefix("git+file://")
        .or_else(|| url.strip_prefix("file://"))
        .unwrap_or(&url);
    if !path.starts_with('/') || !Path::new(path).is_dir() {
        return Err(needs_network(&url, pos));
    }
    if let Some(r) = &rev {
        if r.len() != 40 || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                format!("hash '{r}' is not a valid Git revision (40 hexadecimal digits)"),
                pos,
            ));
        }
    }
    if ev.options().pure && rev.is_none() {
        return Err(err(
            "in pure evaluation mode, 'fetchTree' requires a locked input",
            pos,
        ));
    }
    ev.before_reading(path, pos)?;
    let req = Request {
        repo: PathBuf::from(path.trim_end_matches('/')),
        name,
        git_ref,
        rev,
        submodules,
    };
    let workdir = req.git_ref.is_none() && req.rev.is_none() && req.repo.join(".git").exists();
    let fetched = if workdir {
        fetch_workdir(ev, &req.repo, &req.name, req.submodules, pos)?
    } else {
        fetch_commit(ev, &req, pos)?
    };
    Ok(fetched.into_value(ev, req.submodules))
}

/// What a fetch gives, before it becomes the result set.
struct Fetched {
    out_path: String,
    nar_hash: rix_formats::Hash,
    /// The commit, when the tree is exactly a commit (or all zeros for a
    /// repository without commits).
    rev: Option<String>,
    rev_count: i64,
    /// The commit a dirty tree started from.
    dirty_rev: Option<String>,
    last_modified: i64,
}

impl Fetched {
    /// The result set, as `emitTreeAttrs` makes it for `fetchGit`.
    fn into_value(self, ev: &Evaluator, submodules: bool) -> Value {
        let zero = "0".repeat(40);
        let rev = self.rev.clone().unwrap_or_else(|| zero.clone());
        let mut entries = Vec::new();
        let mut put = |name: &str, value: Value| {
            entries.push(Attr {
                name: Symbol::new(name),
                value,
                pos: Pos::NONE,
            })
        };
        let mut ctx = Context::new();
        ctx.insert(Rc::from(self.out_path.as_str()));
        put(
            "outPath",
            Value::String(NixString::with_context(self.out_path.clone(), ctx)),
        );
        put("narHash", Value::string(self.nar_hash.to_sri()));
        put("submodules", Value::Bool(submodules));
        put("rev", Value::string(rev.clone()));
        put("shortRev", Value::string(rev[..7].to_owned()));
        put(
            "revCount",
            Value::Int(if self.rev.is_some() {
                self.rev_count
            } else {
                0
            }),
        );
        if let Some(d) = &self.dirty_rev {
            put("dirtyRev", Value::string(format!("{d}-dirty")));
            put("dirtyShortRev", Value::string(format!("{}-dirty", &d[..7])));
        }
        put("lastModified", Value::Int(self.last_modified));
        put(
            "lastModifiedDate",
            Value::string(utc_timestamp(self.last_modified)),
        );
        let _ = ev;
        Value::attrs(Attrs::from_unsorted(entries))
    }
}

/// `git -C repo ARGS`, its standard output; `None` when git says no.
fn git(repo: &Path, args: &[&str], pos: Pos) -> Result<Option<Vec<u8>>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        // No index refreshes written back, no pager, no prompts.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            EvalError::new(
                ErrorKind::Io,
                format!("running git (needed by fetchGit): {e}"),
                pos,
            )
        })?;
    Ok(out.status.success().then_some(out.stdout))
}

/// `git ARGS` that must succeed.
fn git_ok(repo: &Path, args: &[&str], pos: Pos) -> Result<Vec<u8>> {
    git(repo, args, pos)?.ok_or_else(|| {
        err(
            format!("'git {}' failed in '{}'", args.join(" "), repo.display()),
            pos,
        )
    })
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// The commit `what` names, if it names one.
fn resolve(repo: &Path, what: &str, pos: Pos) -> Result<Option<String>> {
    let spec = format!("{what}^{{commit}}");
    Ok(git(repo, &["rev-parse", "--verify", "-q", &spec], pos)?.map(text))
}

fn rev_count(repo: &Path, rev: &str, pos: Pos) -> Result<i64> {
    Ok(text(git_ok(repo, &["rev-list", "--count", rev], pos)?)
        .parse()
        .unwrap_or(0))
}

fn commit_time(repo: &Path, rev: &str, pos: Pos) -> Result<i64> {
    Ok(text(git_ok(
        repo,
        &["log", "-1", "--format=%ct", rev, "--"],
        pos,
    )?)
    .parse()
    .unwrap_or(0))
}

/// The paths (relative, `/`-separated) of a working tree's tracked files and
/// the submodules' paths, and whether the tree is dirty. Mirrors
/// `GitRepoImpl::getWorkdirInfo`.
struct WorkdirInfo {
    files: Vec<String>,
    submodules: Vec<String>,
    dirty: bool,
    head: Option<String>,
}

fn split_z(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

fn workdir_info(repo: &Path, pos: Pos) -> Result<WorkdirInfo> {
    let deleted: HashSet<String> =
        split_z(&git_ok(repo, &["ls-files", "-z", "--deleted"], pos)?).collect();
    let mut files = Vec::new();
    for entry in split_z(&git_ok(repo, &["ls-files", "-z", "--stage"], pos)?) {
        // `MODE OBJECT STAGE\tPATH`; gitlinks (submodules) have mode 160000.
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        if meta.starts_with("160000 ") || deleted.contains(path) {
            continue;
        }
        if files.last() != Some(&path.to_owned()) {
            files.push(path.to_owned());
        }
    }
    let status = git_ok(
        repo,
        &[
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=no",
            "--ignore-submodules=all",
        ],
        pos,
    )?;
    let mut submodules = Vec::new();
    if repo.join(".gitmodules").is_file() {
        if let Some(out) = git(
            repo,
            &[
                "config",
                "-z",
                "-f",
                ".gitmodules",
                "--get-regexp",
                r"^submodule\..*\.path$",
            ],
            pos,
        )? {
            // `KEY\nVALUE\0` per entry.
            for entry in split_z(&out) {
                if let Some((_, p)) = entry.split_once('\n') {
                    submodules.push(p.trim_end_matches('/').to_owned());
                }
            }
        }
    }
    Ok(WorkdirInfo {
        files,
        submodules,
        dirty: !status.is_empty(),
        head: resolve(repo, "HEAD", pos)?,
    })
}

/// Adds what `keep` (absolute paths under `root`) holds to the store, as
/// `name`; its path and NAR hash.
fn add_tree(
    ev: &Evaluator,
    root: &Path,
    name: &str,
    keep: Option<&HashSet<PathBuf>>,
    pos: Pos,
) -> Result<(String, rix_formats::Hash)> {
    let io = |e: std::io::Error| {
        EvalError::new(
            ErrorKind::Io,
            format!("adding '{}' to the store: {e}", root.display()),
            pos,
        )
    };
    let store = match ev.store().fetch_store().map_err(io)? {
        Some(s) => s,
        None => ev.store().clone(),
    };
    let mut filter = |p: &Path, _: &str| keep.is_none_or(|k| k.contains(p));
    let nar_hash = crate::store::content_hash(
        root,
        FileIngestionMethod::Recursive,
        HashAlgo::Sha256,
        Some(&mut filter),
    )
    .map_err(io)?;
    let sp = store
        .add_to_store(
            name,
            root,
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
            Some(&mut filter),
        )
        .map_err(io)?;
    Ok((store.store_dir().display(&sp), nar_hash))
}

/// Adds the tracked files of the working tree at `repo` (and, with
/// `submodules`, of its submodules') to `keep`; whether it or a submodule is
/// dirty, and the working tree's facts.
fn collect_workdir(
    repo: &Path,
    submodules: bool,
    keep: &mut HashSet<PathBuf>,
    pos: Pos,
) -> Result<(bool, WorkdirInfo)> {
    let info = workdir_info(repo, pos)?;
    let mut dirty = info.dirty;
    let add = |p: PathBuf, keep: &mut HashSet<PathBuf>| {
        let mut cur = Some(p.as_path());
        while let Some(c) = cur {
            if c == repo || !keep.insert(c.to_path_buf()) {
                break;
            }
            cur = c.parent();
        }
    };
    for f in &info.files {
        add(repo.join(f), keep);
    }
    if submodules {
        for s in &info.submodules {
            let sub = repo.join(s);
            if !sub.join(".git").exists() {
                continue;
            }
            add(sub.clone(), keep);
            let (sub_dirty, sub_info) = collect_workdir(&sub, true, keep, pos)?;
            if sub_info.dirty {
                eprintln!("warning: Git tree '{}' is dirty", sub.display());
            }
            dirty |= sub_dirty;
        }
    }
    Ok((dirty, info))
}

fn fetch_workdir(
    ev: &Evaluator,
    repo: &Path,
    name: &str,
    submodules: bool,
    pos: Pos,
) -> Result<Fetched> {
    let mut keep = HashSet::new();
    let (dirty, info) = collect_workdir(repo, submodules, &mut keep, pos)?;
    if dirty {
        eprintln!("warning: Git tree '{}' is dirty", repo.display());
    }
    let (out_path, nar_hash) = add_tree(ev, repo, name, Some(&keep), pos)?;
    let last_modified = match &info.head {
        Some(h) => commit_time(repo, h, pos)?,
        None => 0,
    };
    Ok(if dirty {
        Fetched {
            out_path,
            nar_hash,
            rev: None,
            rev_count: 0,
            dirty_rev: info.head,
            last_modified,
        }
    } else {
        let rev_count = match &info.head {
            Some(h) => rev_count(repo, h, pos)?,
            None => 0,
        };
        Fetched {
            out_path,
            nar_hash,
            rev: Some(info.head.unwrap_or_else(|| "0".repeat(40))),
            rev_count,
            dirty_rev: None,
            last_modified,
        }
    })
}

/// A commit of a repository on this machine, exported with `git archive`.
fn fetch_commit(ev: &Evaluator, req: &Request, pos: Pos) -> Result<Fetched> {
    let repo = &req.repo;
    if req.submodules {
        return Err(err(
            "rix's fetchGit does not fetch the submodules of a commit (only of a working tree)",
            pos,
        ));
    }
    let rev = match (&req.rev, &req.git_ref) {
        (Some(r), _) => resolve(repo, r, pos)?.ok_or_else(|| {
            err(
                format!("Cannot find Git revision '{r}' in '{}'", repo.display()),
                pos,
            )
        })?,
        (None, r) => {
            let r = r.as_deref().unwrap_or("HEAD");
            resolve(repo, r, pos)?.ok_or_else(|| {
                err(
                    format!("Cannot find Git reference '{r}' in '{}'", repo.display()),
                    pos,
                )
            })?
        }
    };
    let tmp = std::env::temp_dir().join(format!(
        "rix-fetchgit-{}-{}",
        std::process::id(),
        &rev[..12]
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| err(e.to_string(), pos))?;
    let export = || -> std::io::Result<bool> {
        let mut archive = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["archive", "--format=tar", &rev])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = archive.stdout.take().expect("piped");
        let untar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&tmp)
            .stdin(stdout)
            .status()?;
        Ok(archive.wait()?.success() && untar.success())
    };
    let result = match export() {
        Ok(true) => add_tree(ev, &tmp, &req.name, None, pos),
        Ok(false) => Err(err(
            format!(
                "exporting Git revision '{rev}' of '{}' failed",
                repo.display()
            ),
            pos,
        )),
        Err(e) => Err(err(format!("exporting Git revision '{rev}': {e}"), pos)),
    };
    let _ = std::fs::remove_dir_all(&tmp);
    let (out_path, nar_hash) = result?;
    Ok(Fetched {
        out_path,
        nar_hash,
        rev_count: rev_count(repo, &rev, pos)?,
        last_modified: commit_time(repo, &rev, pos)?,
        rev: Some(rev),
        dirty_rev: None,
    })
}
