//! `rix develop --profile P`: the captured environment becomes a generation
//! of the profile `P` (`P-N-link`, a GC root) and `P` points at it. Mirrors
//! `MixProfile::updateProfile`, `createGeneration` and `switchLink` of Nix
//! (`src/libstore/profiles.cc`). A minimal version of its own, kept apart so
//! that it can give way to the profiles module.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rix_formats::StorePath;
use rix_store::store_api::Store;

/// The generation number of a link named `<profile>-<N>-link`
/// (`parseName`).
fn parse_name(profile: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(profile)?.strip_prefix('-')?;
    let p = rest.find("-link")?;
    rest[..p].parse().ok()
}

/// Makes `path` the profile's current generation (a new one unless the last
/// is already it).
pub fn update_profile(store: &dyn Store, profile: &Path, path: &StorePath) -> Result<()> {
    let profile = std::path::absolute(profile)
        .with_context(|| format!("cannot make '{}' absolute", profile.display()))?;
    let dir = profile.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = profile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create directory '{}'", dir.display()))?;
    let mut last: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read '{}'", dir.display()))? {
        let e = e?;
        if let Some(n) = parse_name(&name, &e.file_name().to_string_lossy()) {
            if last.as_ref().is_none_or(|(m, _)| n > *m) {
                last = Some((n, e.path()));
            }
        }
    }
    let printed = store.print(path);
    let generation = match last {
        Some((_, p)) if std::fs::read_link(&p).is_ok_and(|t| t == Path::new(&printed)) => p,
        other => {
            let n = other.map_or(0, |(n, _)| n) + 1;
            let link = dir.join(format!("{name}-{n}-link"));
            crate::cmd::instantiate::add_perm_root(store, &printed, &link)?;
            link
        }
    };
    // `switchLink`: relative when in the same directory, replaced atomically.
    let target = generation
        .file_name()
        .map(PathBuf::from)
        .unwrap_or(generation);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)
        .with_context(|| format!("cannot create symlink '{}'", tmp.display()))?;
    std::fs::rename(&tmp, &profile)
        .with_context(|| format!("cannot replace '{}'", profile.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generation_names() {
        assert_eq!(super::parse_name("p", "p-12-link"), Some(12));
        assert_eq!(super::parse_name("p", "q-1-link"), None);
        assert_eq!(super::parse_name("p", "p-x-link"), None);
    }
}
