//! The `path` scheme: a file or directory on this machine, copied to the
//! store as `source` (`PathInputScheme`). Its `lastModified` is the newest
//! modification time in the tree unless the input gives one.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rix_formats::flake_ref::AttrValue;
use rix_formats::store_path::StorePath;

use crate::error::{FetchError, Result};
use crate::input::Input;
use crate::Fetcher;

pub(crate) fn fetch(f: &Fetcher<'_>, input: &Input) -> Result<(StorePath, Input)> {
    let path = input
        .get_str("path")
        .ok_or_else(|| FetchError::msg("missing 'path' attribute"))?;
    if !path.starts_with('/') {
        return Err(FetchError::msg(format!(
            "cannot fetch input '{}' because it uses a relative path",
            input.to_url_string()
        )));
    }
    let abs = Path::new(path);
    let mut result = input.clone();
    // A store path named `source` that is valid is the tree itself.
    let existing = f
        .store
        .store_dir()
        .parse(path)
        .ok()
        .filter(|p| p.name() == "source");
    let store_path = match existing {
        Some(p)
            if {
                f.store.add_temp_root(&p)?;
                f.store.is_valid(&p)?
            } =>
        {
            p
        }
        _ => {
            let mtime = newest_mtime(abs).map_err(|e| {
                FetchError::msg(format!("getting status of '{}': {e}", abs.display()))
            })?;
            if input.last_modified().is_none() {
                result.set("lastModified", AttrValue::Int(mtime));
            }
            return Ok((f.add_tree(abs, "source")?, result));
        }
    };
    if input.last_modified().is_none() {
        result.set("lastModified", AttrValue::Int(0));
    }
    Ok((store_path, result))
}

/// The newest modification time of anything in the tree at `path` (symbolic
/// links not followed), as `dumpPathAndGetMtime`.
pub fn newest_mtime(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut newest = meta.mtime().max(0) as u64;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            newest = newest.max(newest_mtime(&entry?.path())?);
        }
    }
    Ok(newest)
}
