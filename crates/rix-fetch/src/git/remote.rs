//! Repositories that are not a working tree on this machine (a bare
//! repository, any other URL): fetched with the `git` program into a bare
//! cache repository under the cache directory (`gitv3/<hash of the URL>`),
//! as Nix 2.26 does in `getAccessorFromCommit`, then read like a local one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rix_formats::flake_ref::AttrValue;
use rix_formats::HashAlgo;

use super::repo;
use crate::error::{FetchError, Result};
use crate::input::Input;
use crate::Fetcher;

/// The branch name Nix gives its cache repositories (ignored as a cached `HEAD`).
const GIT_INITIAL_BRANCH: &str = "__nix_dummy_branch";

fn cache_root(f: &Fetcher<'_>) -> PathBuf {
    f.settings
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("rix-cache"))
}

/// `getCachePath`.
fn cache_path(f: &Fetcher<'_>, key: &str, shallow: bool) -> PathBuf {
    cache_root(f).join("gitv3").join(format!(
        "{}{}",
        HashAlgo::Sha256.digest(key.as_bytes()).to_nix32(),
        if shallow { "-shallow" } else { "" }
    ))
}

fn within_ttl(f: &Fetcher<'_>, mtime: SystemTime) -> bool {
    mtime + Duration::from_secs(f.settings.tarball_ttl) > SystemTime::now()
}

/// `git ARGS`, with the user's terminal for its messages; its exit status
/// and standard output.
fn run_git(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| FetchError::msg(format!("executing 'git': {e}")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// `readHead`: the target of `HEAD` as `git ls-remote --symref` reports it.
fn read_head(location: &str) -> Option<String> {
    let (ok, out) = run_git(&["ls-remote", "--symref", location]).ok()?;
    if !ok {
        return None;
    }
    let line = out.lines().next()?;
    // `ref: refs/heads/main\tHEAD` or `<rev>\tHEAD` (`parseLsRemoteLine`).
    let line = line.strip_prefix("ref:").map_or(line, str::trim_start);
    let (target, reference) = line.split_once('\t')?;
    (reference.trim_start_matches('\t') == "HEAD" && !target.is_empty()).then(|| target.to_owned())
}

/// `readHeadCached`: the remote's `HEAD`, remembered in a cache repository
/// of its own for `tarball-ttl` seconds.
pub fn read_head_cached(f: &Fetcher<'_>, url: &str) -> Option<String> {
    let cache_dir = cache_path(f, url, false);
    let head_file = cache_dir.join("HEAD");
    let mut cached = None;
    if let Ok(meta) = std::fs::metadata(&head_file) {
        cached = read_head(&cache_dir.to_string_lossy());
        if let Some(c) = &cached {
            if c != GIT_INITIAL_BRANCH && meta.modified().is_ok_and(|m| within_ttl(f, m)) {
                return cached;
            }
        }
    }
    if let Some(r) = read_head(url) {
        return Some(r);
    }
    if let Some(c) = &cached {
        eprintln!(
            "warning: could not get HEAD ref for repository '{url}'; using expired cached ref '{c}'"
        );
    }
    cached
}

/// The part of `getAccessorFromCommit` for a repository elsewhere: brings
/// `rev` (or what `r` points to, then set as the input's `rev`) into the
/// cache repository; its directory.
pub fn fetch_into_cache(
    f: &Fetcher<'_>,
    url: &str,
    input: &mut Input,
    r: &str,
    ref_given: bool,
) -> Result<PathBuf> {
    let shallow = input.get_bool("shallow").unwrap_or(false);
    let all_refs = input.get_bool("allRefs").unwrap_or(false);
    let cache_dir = cache_path(f, url, shallow);
    let repo = repo::open_or_init_bare(&cache_dir)?;
    // The origin makes relative submodule URLs resolve.
    repo.remote_set_url("origin", url)
        .map_err(|e| repo::git_err(format!("setting remote 'origin' URL to '{url}'"), &e))?;
    let local_ref_file = if r.starts_with("refs/") {
        cache_dir.join(r)
    } else {
        cache_dir.join("refs/heads").join(r)
    };
    let rev = super::input_rev(input)?;
    let do_fetch = match rev {
        Some(rev) => !repo::has_object(&repo, rev)?,
        None if all_refs => true,
        None => !std::fs::metadata(&local_ref_file)
            .and_then(|m| m.modified())
            .is_ok_and(|m| within_ttl(f, m)),
    };
    if do_fetch {
        let fetch_ref = if all_refs {
            "refs/*:refs/*".to_owned()
        } else if let Some(rev) = rev {
            rev.to_string()
        } else if r.starts_with("refs/") {
            format!("{r}:{r}")
        } else if r == "HEAD" {
            r.to_owned()
        } else {
            format!("refs/heads/{r}:refs/heads/{r}")
        };
        git_fetch(&cache_dir, url, &fetch_ref, shallow)?;
        if rev.is_none() {
            let now = std::fs::FileTimes::new().set_modified(SystemTime::now());
            if let Err(e) = std::fs::File::options()
                .write(true)
                .open(&local_ref_file)
                .and_then(|file| file.set_times(now))
            {
                eprintln!(
                    "warning: could not update mtime for file {:?}: {e}",
                    local_ref_file.display().to_string()
                );
            }
        }
        if !ref_given && !store_cached_head(&cache_dir, r) {
            eprintln!("warning: could not update cached head '{r}' for '{url}'");
        }
    }
    match rev {
        Some(rev) => {
            if !repo::has_object(&repo, rev)? {
                return Err(FetchError::msg(format!(
                    "Cannot find Git revision '{rev}' in ref '{r}' of repository '{url}'! \
                     Please make sure that the \x1b[1mrev\x1b[0m exists on the \x1b[1mref\x1b[0m \
                     you've specified or add \x1b[1mallRefs = true;\x1b[0m to \x1b[1mfetchGit\x1b[0m."
                )));
            }
        }
        None => {
            let oid = repo::resolve_ref(&repo, r)?;
            input.set("rev", AttrValue::Str(oid.to_string()));
        }
    }
    Ok(cache_dir)
}

/// `GitRepoImpl::fetch`: `git fetch` of `refspec` from `url` into the cache
/// repository. As in Nix, a failure shows only as git's own messages: what
/// comes after (the missing commit or reference) is the error.
fn git_fetch(cache_dir: &Path, url: &str, refspec: &str, shallow: bool) -> Result<()> {
    let dir = cache_dir.to_string_lossy();
    let mut args = vec!["-C", &dir, "--git-dir", ".", "fetch", "--quiet", "--force"];
    if shallow {
        args.extend(["--depth", "1"]);
    }
    args.extend(["--", url, refspec]);
    run_git(&args)?;
    Ok(())
}

/// `storeCachedHead`: remembers the remote's `HEAD` as the cache
/// repository's.
fn store_cached_head(cache_dir: &Path, head_ref: &str) -> bool {
    let dir = cache_dir.to_string_lossy();
    matches!(
        run_git(&[
            "-C",
            &dir,
            "--git-dir",
            ".",
            "symbolic-ref",
            "--",
            "HEAD",
            head_ref
        ]),
        Ok((true, _))
    )
}
