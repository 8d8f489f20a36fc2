//! Turning command-line arguments into store paths, as Nix's
//! `followLinksToStorePath` does: a logical path (`/nix/store/xxx-foo`), its
//! physical location in a relocated store, a path inside a store object
//! (`/nix/store/xxx-foo/bin/sh`), or a symlink to any of these (`./result`).

use std::path::Path;

use anyhow::{Context as _, Result};
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::store_api::Store;

/// Splits `s` into a store path of `layout` and the rest (`""` or `/sub/path`),
/// without following symlinks.
pub fn split_store_path(layout: &StoreLayout, s: &str) -> Option<(StorePath, String)> {
    if let Ok((p, rest)) = layout.store_dir.parse_prefix(s) {
        return Some((p, rest.to_owned()));
    }
    let real = layout.real_store_dir.to_string_lossy();
    let logical = s
        .strip_prefix(real.as_ref())
        .map(|rest| format!("{}{rest}", layout.store_dir))?;
    let (p, rest) = layout.store_dir.parse_prefix(&logical).ok()?;
    Some((p, rest.to_owned()))
}

/// Like [`split_store_path`], following symlinks when `s` is not itself inside
/// the store (e.g. a `result` link).
pub fn follow_to_store_path(layout: &StoreLayout, s: &str) -> Result<(StorePath, String)> {
    if let Some(found) = split_store_path(layout, s) {
        return Ok(found);
    }
    let not_in_store = || {
        format!(
            "'{s}' is not in the store {} (give a store path such as {}/<hash>-<name>, or a symlink to one)",
            layout.store_dir,
            layout.store_dir
        )
    };
    let canon = std::fs::canonicalize(Path::new(s)).with_context(not_in_store)?;
    split_store_path(layout, &canon.to_string_lossy()).with_context(not_in_store)
}

/// The layout `store`'s paths are resolved with: a daemon's store is where
/// its store directory says (on this machine, or named so on the command line).
pub fn layout_of(store: &dyn Store) -> StoreLayout {
    match store.as_local() {
        Some(local) => local.layout().clone(),
        None => {
            let dir = std::path::PathBuf::from(store.store_dir().as_str());
            StoreLayout {
                store_dir: store.store_dir().clone(),
                real_store_dir: dir.clone(),
                state_dir: dir.clone(),
                log_dir: dir,
                root: None,
            }
        }
    }
}

/// Where `store` is, for messages: its real directory, or its URL.
pub fn store_location(store: &dyn Store) -> String {
    match store.as_local() {
        Some(local) => format!("the store at {}", local.layout().real_store_dir.display()),
        None => format!("the store '{}'", store.url()),
    }
}

/// A store path given on the command line (anything inside it is ignored).
pub fn store_path_arg(store: &dyn Store, s: &str) -> Result<StorePath> {
    Ok(follow_to_store_path(&layout_of(store), s)?.0)
}

/// Like [`store_path_arg`], requiring the path to be valid.
pub fn valid_path_arg(store: &dyn Store, s: &str) -> Result<StorePath> {
    let p = store_path_arg(store, s)?;
    if !store.is_valid(&p)? {
        anyhow::bail!(
            "path '{}' is not valid in {}",
            store.print(&p),
            store_location(store)
        );
    }
    Ok(p)
}
