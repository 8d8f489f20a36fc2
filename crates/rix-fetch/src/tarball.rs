//! The `tarball` and `file` schemes (Nix's `CurlInputScheme`s in
//! `libfetchers/tarball.cc`): a URL (`http(s)://`, `file://`) downloaded
//! through [`crate::download`]. A `file` input is the downloaded file itself
//! (added flat, under the input's name); a `tarball` input is the tree the
//! archive unpacks to, with `lastModified` (the newest entry's time, unless
//! the input gives one). A server that answers with a
//! `Link: <URL>; rel="immutable"` header (the lockable tarball protocol)
//! names the locked input: its URL's `rev`, `revCount`, `lastModified` and
//! `narHash` become the result's attributes. Both are locked by `narHash`.

use rix_formats::flake_ref::{AttrValue, InputType};
use rix_formats::store_path::StorePath;

use crate::error::{FetchError, Result};
use crate::input::Input;
use crate::Fetcher;

fn url(input: &Input) -> Result<&str> {
    input
        .get_str("url")
        .ok_or_else(|| FetchError::msg("missing 'url' attribute"))
}

/// `FileInputScheme::getAccessor`.
pub(crate) fn fetch_file(f: &Fetcher<'_>, input: &Input) -> Result<(StorePath, Input)> {
    let file = f.download_file(url(input)?, input.name(), &[])?;
    // Nix copies the downloaded (flat) file to the store as a tree
    // (`fetchToStore` of its accessor): the input's path is recursive.
    let nar_hash = f.store.path_info(&file.store_path)?.nar_hash;
    let path = f.store_as(&file.store_path, &nar_hash, input.name())?;
    Ok((path, input.clone()))
}

/// `TarballInputScheme::getAccessor`.
pub(crate) fn fetch_tarball(f: &Fetcher<'_>, input: &Input) -> Result<(StorePath, Input)> {
    let mut input = input.clone();
    let result = f.download_tarball(url(&input)?, input.name(), &[])?;
    let mut path = result.store_path;
    if let Some(immutable) = &result.immutable_url {
        let locked = Input::from_url(immutable)?;
        if locked.ty != InputType::Tarball {
            return Err(FetchError::msg(
                "tarball 'Link' headers that redirect to non-tarball URLs are not supported",
            ));
        }
        input = locked;
        // The tree is named as the locked input names it.
        path = f.store_as(&path, &result.nar_hash, input.name())?;
    }
    if result.last_modified != 0 && input.last_modified().is_none() {
        input.set("lastModified", AttrValue::Int(result.last_modified));
    }
    input.set("narHash", AttrValue::Str(result.nar_hash.to_sri()));
    Ok((path, input))
}
