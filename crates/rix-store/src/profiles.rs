//! Profiles and their generations, laid out as Nix lays them out
//! (`libstore/profiles.cc`), so that Nix and rix manage the same profiles.
//!
//! A profile `P` is a symlink to its current generation `P-N-link` in the same
//! directory (relative: `P -> P-3-link`); each generation is a symlink into the
//! store made a garbage collector root as Nix's `addPermRoot` makes it (the
//! link, and `gcroots/auto/<hash>` pointing at it), so every generation stays
//! live until it is deleted. Changes to a profile's generations take the lock
//! `P.lock` (Nix's `lockProfile`, a [`PathLock`]).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use rix_formats::StorePath;
use thiserror::Error;

use crate::lock::{LockError, PathLock};
use crate::store_api::Store;

/// A generation's number (`P-N-link`).
pub type GenerationNumber = u64;

/// One generation of a profile (Nix's `Generation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: GenerationNumber,
    /// `P-N-link`.
    pub path: PathBuf,
    /// The link's modification time (seconds since the epoch).
    pub creation_time: i64,
}

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("{message}: {source}")]
    Io { message: String, source: io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] crate::local_store::StoreError),
    #[error("{0}")]
    Msg(String),
}

pub type Result<T, E = ProfileError> = std::result::Result<T, E>;

fn io_err(message: String) -> impl FnOnce(io::Error) -> ProfileError {
    move |source| ProfileError::Io { message, source }
}

/// Nix's `parseName`: the number of `<profile>-<N>-link`.
fn parse_name(profile_name: &str, name: &str) -> Option<GenerationNumber> {
    let rest = name.strip_prefix(profile_name)?.strip_prefix('-')?;
    let p = rest.find("-link")?;
    let n = &rest[..p];
    // `string2Int<unsigned int>`: digits only, within 32 bits.
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<u32>().ok().map(GenerationNumber::from)
}

fn dir_and_name(profile: &Path) -> (PathBuf, String) {
    let dir = profile
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = profile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

/// The generations of `profile`, oldest first, and the current one (what
/// `profile` links to), as Nix's `findGenerations`.
pub fn find_generations(profile: &Path) -> Result<(Vec<Generation>, Option<GenerationNumber>)> {
    use std::os::unix::fs::MetadataExt;
    let (dir, name) = dir_and_name(profile);
    let mut gens = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .map_err(io_err(format!("cannot open directory '{}'", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("cannot read '{}'", dir.display())))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = parse_name(&name, &file) {
            let path = dir.join(&file);
            let meta = std::fs::symlink_metadata(&path)
                .map_err(io_err(format!("getting status of '{}'", path.display())))?;
            gens.push(Generation {
                number: n,
                path,
                creation_time: meta.mtime(),
            });
        }
    }
    gens.sort_by_key(|g| g.number);
    let current = match std::fs::read_link(profile) {
        Ok(t) => parse_name(&name, &t.to_string_lossy()),
        Err(_) => None,
    };
    // `pathExists(profile)`: a dangling profile link has no current generation.
    let current = current.filter(|_| profile.exists());
    Ok((gens, current))
}

/// `<profile>-<num>-link`.
pub fn generation_path(profile: &Path, num: GenerationNumber) -> PathBuf {
    let mut s = profile.as_os_str().to_owned();
    s.push(format!("-{num}-link"));
    PathBuf::from(s)
}

/// Makes `link` a symlink to `path` registered as a garbage collector root,
/// as Nix's `addPermRoot`: refused inside the store and over a file or a
/// link that does not point into the store; the link replaced atomically;
/// `gcroots/auto/<hash>` made to point at it.
pub fn add_perm_root(store: &dyn Store, path: &StorePath, link: &Path) -> Result<PathBuf> {
    let link = std::path::absolute(link)
        .map_err(io_err(format!("cannot resolve '{}'", link.display())))?;
    let link_str = link.to_string_lossy();
    if store.store_dir().parse_prefix(&link_str).is_ok() {
        return Err(ProfileError::Msg(format!(
            "creating a garbage collector root ({link_str}) in the Nix store is forbidden \
             (are you running nix-build inside the store?)"
        )));
    }
    store.add_temp_root(path)?;
    if let Ok(meta) = std::fs::symlink_metadata(&link) {
        let into_store = meta.file_type().is_symlink()
            && std::fs::read_link(&link)
                .is_ok_and(|t| store.store_dir().parse_prefix(&t.to_string_lossy()).is_ok());
        if !into_store {
            return Err(ProfileError::Msg(format!(
                "cannot create symlink '{link_str}'; already exists"
            )));
        }
    }
    crate::roots::replace_symlink(Path::new(&store.print(path)), &link)
        .map_err(io_err(format!("creating symlink '{link_str}'")))?;
    store.add_indirect_root(&link)?;
    Ok(link)
}

/// A new generation of `profile` pointing to `out` (Nix's
/// `createGeneration`): numbered after the last one, unless the last one
/// already points to `out`, which is then returned. The caller then
/// [`switch_link`]s the profile to it.
pub fn create_generation(store: &dyn Store, profile: &Path, out: &StorePath) -> Result<PathBuf> {
    let (gens, _) = find_generations(profile)?;
    let num = match gens.last() {
        Some(last) => {
            if std::fs::read_link(&last.path).is_ok_and(|t| t.to_string_lossy() == store.print(out))
            {
                return Ok(last.path.clone());
            }
            last.number
        }
        None => 0,
    };
    add_perm_root(store, out, &generation_path(profile, num + 1))
}

/// Points `link` at `target`, atomically; relative when both are in the same
/// directory (Nix's `switchLink`).
pub fn switch_link(link: &Path, target: &Path) -> Result<()> {
    let target = if target.parent() == link.parent() {
        target.file_name().map(Path::new).unwrap_or(target)
    } else {
        target
    };
    crate::roots::replace_symlink(target, link).map_err(io_err(format!(
        "cannot create symlink '{}'",
        link.display()
    )))
}

/// Makes `out` the profile's current generation: a new generation (or the
/// last, if it is `out`), then the profile link switched to it (Nix's
/// `MixProfile::updateProfile`). Returns the generation's link.
pub fn update_profile(store: &dyn Store, profile: &Path, out: &StorePath) -> Result<PathBuf> {
    let profile = std::path::absolute(profile)
        .map_err(io_err(format!("cannot resolve '{}'", profile.display())))?;
    let generation = create_generation(store, &profile, out)?;
    switch_link(&profile, &generation)?;
    Ok(generation)
}

/// The lock of a profile, `<profile>.lock`, deleted on release (Nix's
/// `lockProfile`).
pub fn lock_profile(profile: &Path) -> Result<PathLock> {
    let mut lock = PathLock::acquire(profile)?;
    lock.set_delete_on_release(true);
    Ok(lock)
}

/// What the profile points to now, to be compared before replacing it
/// (Nix's `optimisticLockProfile`).
pub fn optimistic_lock_profile(profile: &Path) -> String {
    if profile.exists() {
        std::fs::read_link(profile)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// Removes `<profile>-<gen>-link` (Nix's `deleteGeneration`).
pub fn delete_generation(profile: &Path, gen: GenerationNumber) -> Result<()> {
    let path = generation_path(profile, gen);
    std::fs::remove_file(&path).map_err(io_err(format!("cannot unlink '{}'", path.display())))
}

fn delete_generation2(
    profile: &Path,
    gen: GenerationNumber,
    dry_run: bool,
    notice: &mut dyn FnMut(String),
) -> Result<()> {
    if dry_run {
        notice(format!("would remove profile version {gen}"));
        Ok(())
    } else {
        notice(format!("removing profile version {gen}"));
        delete_generation(profile, gen)
    }
}

/// Deletes the generations `which`, refusing the current one (Nix's
/// `deleteGenerations`).
pub fn delete_generations(
    profile: &Path,
    which: &BTreeSet<GenerationNumber>,
    dry_run: bool,
    notice: &mut dyn FnMut(String),
) -> Result<()> {
    let _lock = lock_profile(profile)?;
    let (gens, cur) = find_generations(profile)?;
    if cur.is_some_and(|c| which.contains(&c)) {
        return Err(ProfileError::Msg(format!(
            "cannot delete current version of profile {}'",
            profile.display()
        )));
    }
    for g in gens.iter().filter(|g| which.contains(&g.number)) {
        delete_generation2(profile, g.number, dry_run, notice)?;
    }
    Ok(())
}

/// Keeps the current generation and the `max - 1` before it, deleting the
/// older ones (`--delete-generations +N`, Nix's `deleteGenerationsGreaterThan`).
pub fn delete_generations_greater_than(
    profile: &Path,
    max: GenerationNumber,
    dry_run: bool,
    notice: &mut dyn FnMut(String),
) -> Result<()> {
    if max == 0 {
        return Err(ProfileError::Msg(
            "Must keep at least one generation, otherwise the current one would be deleted".into(),
        ));
    }
    let _lock = lock_profile(profile)?;
    let (gens, cur) = find_generations(profile)?;
    let mut it = gens.iter().rev().skip_while(|g| Some(g.number) != cur);
    for _ in 0..max {
        if it.next().is_none() {
            break;
        }
    }
    for g in it {
        delete_generation2(profile, g.number, dry_run, notice)?;
    }
    Ok(())
}

/// Deletes every generation but the current one (Nix's `deleteOldGenerations`).
pub fn delete_old_generations(
    profile: &Path,
    dry_run: bool,
    notice: &mut dyn FnMut(String),
) -> Result<()> {
    let _lock = lock_profile(profile)?;
    let (gens, cur) = find_generations(profile)?;
    for g in gens.iter().filter(|g| Some(g.number) != cur) {
        delete_generation2(profile, g.number, dry_run, notice)?;
    }
    Ok(())
}

/// Deletes the generations older than `t` except the newest of them (it was
/// current at `t`) and the current one (Nix's `deleteGenerationsOlderThan`).
pub fn delete_generations_older_than(
    profile: &Path,
    t: i64,
    dry_run: bool,
    notice: &mut dyn FnMut(String),
) -> Result<()> {
    let _lock = lock_profile(profile)?;
    let (gens, cur) = find_generations(profile)?;
    let mut it = gens.iter().rev().skip_while(|g| g.creation_time >= t);
    it.next();
    for g in it {
        if Some(g.number) != cur {
            delete_generation2(profile, g.number, dry_run, notice)?;
        }
    }
    Ok(())
}

/// `Nd` → the time N days before `now` (Nix's `parseOlderThanTimeSpec`).
pub fn parse_older_than_time_spec(spec: &str, now: i64) -> Result<i64> {
    let Some(days) = spec.strip_suffix('d') else {
        return Err(ProfileError::Msg(format!(
            "invalid number of days specifier '{spec}', expected something like '14d'"
        )));
    };
    match days.parse::<i32>() {
        Ok(d) if d >= 1 => Ok(now - i64::from(d) * 24 * 3600),
        _ => Err(ProfileError::Msg(format!(
            "invalid number of days specifier '{spec}'"
        ))),
    }
}

/// `--delete-generations ARGS` (Nix's `nix-env` reading of them): `old`
/// (every generation but the current), `Nd` (older than N days, see
/// [`delete_generations_older_than`]), `+N` (keep the N newest up to the
/// current), else a list of numbers.
pub fn delete_generations_by_spec(
    profile: &Path,
    args: &[String],
    now: i64,
    dry_run: bool,
    notice: &mut dyn FnMut(String),
) -> Result<()> {
    match args {
        [one] if one == "old" => delete_old_generations(profile, dry_run, notice),
        [one] if one.contains('d') => {
            let t = parse_older_than_time_spec(one, now)?;
            delete_generations_older_than(profile, t, dry_run, notice)
        }
        [one] if one.contains('+') => {
            if one.len() < 2 {
                return Err(ProfileError::Msg(format!(
                    "invalid number of generations '{one}'"
                )));
            }
            let max = one[1..]
                .parse::<GenerationNumber>()
                .ok()
                .filter(|_| one[1..].bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    ProfileError::Msg(format!("invalid number of generations to keep '{one}'"))
                })?;
            delete_generations_greater_than(profile, max, dry_run, notice)
        }
        _ => {
            let mut which = BTreeSet::new();
            for a in args {
                match a.parse::<GenerationNumber>() {
                    Ok(n) if a.bytes().all(|b| b.is_ascii_digit()) => {
                        which.insert(n);
                    }
                    _ => {
                        return Err(ProfileError::Msg(format!(
                            "invalid generation number '{a}'"
                        )))
                    }
                }
            }
            delete_generations(profile, &which, dry_run, notice)
        }
    }
}

/// Switches `profile` to generation `dst`, or without one to the newest
/// older than the current (Nix's `switchGeneration`: `rollback`,
/// `--switch-generation`).
pub fn switch_generation(
    profile: &Path,
    dst: Option<GenerationNumber>,
    dry_run: bool,
    notice: &mut dyn FnMut(String),
) -> Result<()> {
    let _lock = lock_profile(profile)?;
    let (gens, cur) = find_generations(profile)?;
    let found = gens.iter().rfind(|g| match dst {
        None => cur.is_some_and(|c| g.number < c),
        Some(d) => g.number == d,
    });
    let Some(found) = found else {
        return Err(ProfileError::Msg(match dst {
            Some(d) => format!("profile version {d} does not exist"),
            None => format!(
                "no profile version older than the current ({}) exists",
                cur.unwrap_or(0)
            ),
        }));
    };
    notice(format!(
        "switching profile from version {} to {}",
        cur.unwrap_or(0),
        found.number
    ));
    if dry_run {
        return Ok(());
    }
    switch_link(profile, &found.path)
}

/// Nix's state directory for its own files (`settings.nixStateDir`:
/// `$NIX_STATE_DIR`, else `/nix/var/nix`).
pub fn nix_state_dir() -> PathBuf {
    std::env::var_os("NIX_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/nix/var/nix"), PathBuf::from)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `$XDG_STATE_HOME/nix`, else `~/.local/state/nix` (Nix's `getStateDir() /
/// "nix"`, without creating it).
pub fn user_state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| home().join(".local/state"), PathBuf::from)
        .join("nix")
}

/// `<state>/profiles/per-user/root` (Nix's `rootProfilesDir`).
pub fn root_profiles_dir() -> PathBuf {
    nix_state_dir().join("profiles/per-user/root")
}

/// The directory of this user's profiles, created (Nix's `profilesDir`):
/// root's under the state directory, others' under `$XDG_STATE_HOME/nix`.
pub fn profiles_dir() -> Result<PathBuf> {
    let dir = if is_root() {
        root_profiles_dir()
    } else {
        user_state_dir().join("profiles")
    };
    std::fs::create_dir_all(&dir)
        .map_err(io_err(format!("creating directory '{}'", dir.display())))?;
    Ok(dir)
}

/// The default profile (Nix's `getDefaultProfile`): where `~/.nix-profile`
/// (with `use-xdg-base-directories`, `$XDG_STATE_HOME/nix/profile`) points,
/// the link made first if missing, to `profiles_dir()/profile`; for root
/// also `/nix/var/nix/profiles/default` when missing. Falls back to the link
/// itself when any of this fails.
pub fn default_profile(use_xdg: bool) -> PathBuf {
    let link = if use_xdg {
        user_state_dir().join("profile")
    } else {
        home().join(".nix-profile")
    };
    let r = (|| -> Result<PathBuf> {
        let profile = profiles_dir()?.join("profile");
        if std::fs::symlink_metadata(&link).is_err() {
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io_err(format!("creating directory '{}'", parent.display())))?;
            }
            crate::roots::replace_symlink(&profile, &link)
                .map_err(io_err(format!("creating symlink '{}'", link.display())))?;
        }
        let global = nix_state_dir().join("profiles/default");
        if is_root() && std::fs::symlink_metadata(&global).is_err() {
            crate::roots::replace_symlink(&profile, &global)
                .map_err(io_err(format!("creating symlink '{}'", global.display())))?;
        }
        let target = std::fs::read_link(&link)
            .map_err(io_err(format!("reading link '{}'", link.display())))?;
        Ok(link.parent().unwrap_or(Path::new("/")).join(target))
    })();
    r.unwrap_or(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names() {
        assert_eq!(parse_name("p", "p-12-link"), Some(12));
        assert_eq!(parse_name("p", "p-12-linkx"), Some(12));
        assert_eq!(parse_name("p", "p-x-link"), None);
        assert_eq!(parse_name("p", "q-1-link"), None);
        assert_eq!(parse_name("p", "p-1"), None);
        assert_eq!(parse_name("p", "p--1-link"), None);
        assert_eq!(
            generation_path(Path::new("/a/p"), 3),
            Path::new("/a/p-3-link")
        );
    }

    #[test]
    fn time_specs() {
        assert_eq!(
            parse_older_than_time_spec("2d", 1_000_000).unwrap(),
            827_200
        );
        assert!(parse_older_than_time_spec("0d", 0).is_err());
        assert!(parse_older_than_time_spec("2h", 0).is_err());
    }

    #[test]
    fn switching_and_deleting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        for n in 1..=3 {
            std::os::unix::fs::symlink(dir.path(), generation_path(&p, n)).unwrap();
        }
        switch_link(&p, &generation_path(&p, 3)).unwrap();
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new("p-3-link"));
        let mut said = Vec::new();
        switch_generation(&p, None, false, &mut |m| said.push(m)).unwrap();
        assert_eq!(said, ["switching profile from version 3 to 2"]);
        switch_generation(&p, Some(2), false, &mut |m| said.push(m)).unwrap();
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new("p-2-link"));
        let (gens, _) = find_generations(&p).unwrap();
        assert_eq!(gens.iter().map(|g| g.number).collect::<Vec<_>>(), [1, 2, 3]);
        let numbers = |p: &Path| {
            find_generations(p)
                .unwrap()
                .0
                .iter()
                .map(|g| g.number)
                .collect::<Vec<_>>()
        };
        std::os::unix::fs::symlink(dir.path(), generation_path(&p, 4)).unwrap();
        let spec = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The current one is refused; `+2` keeps 2 and 1 (current first).
        assert!(delete_generations_by_spec(&p, &spec(&["2"]), 0, false, &mut |_| {}).is_err());
        delete_generations_by_spec(&p, &spec(&["4"]), 0, false, &mut |_| {}).unwrap();
        delete_generations_by_spec(&p, &spec(&["+2"]), 0, true, &mut |m| said.push(m)).unwrap();
        assert_eq!(numbers(&p), [1, 2, 3]);
        assert!(delete_generations_by_spec(&p, &spec(&["x"]), 0, false, &mut |_| {}).is_err());
        delete_old_generations(&p, false, &mut |m| said.push(m)).unwrap();
        assert_eq!(numbers(&p), [2]);
        assert!(!dir.path().join("p.lock").exists());
    }
}
