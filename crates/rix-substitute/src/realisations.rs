//! Realisations in binary caches: `realisations/<drv hash>!<output>.doi`, the
//! realisation's JSON, signed with the cache's keys. Mirrors
//! `BinaryCacheStore::registerDrvOutput` and `queryRealisationUncached`.

use std::collections::BTreeSet;

use rix_formats::signature::{PublicKey, SecretKey};
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_store::realisations::{DrvOutput, Realisation};

use crate::cache::BinaryCache;
use crate::error::SubstError;

/// The key of `id`'s realisation in a binary cache.
pub fn realisation_key(id: &DrvOutput) -> String {
    format!("realisations/{id}.doi")
}

/// Uploads the realisations of the local store whose outputs are among
/// `paths` (with the realisations they depend on), each signed with `keys`.
/// Returns how many were written.
pub fn upload_realisations(
    store: &LocalStore,
    cache: &dyn BinaryCache,
    paths: &BTreeSet<StorePath>,
    keys: &[SecretKey],
) -> Result<usize, SubstError> {
    let mut queue: Vec<Realisation> = Vec::new();
    {
        let db = store.db();
        for p in paths {
            queue.extend(db.realisations_of_path(p)?);
        }
    }
    let mut done: BTreeSet<DrvOutput> = BTreeSet::new();
    while let Some(mut r) = queue.pop() {
        if !done.insert(r.id.clone()) {
            continue;
        }
        for dep in r.dependent_realisations.keys() {
            if !done.contains(dep) {
                if let Some(d) = store.query_realisation(dep)? {
                    queue.push(d);
                }
            }
        }
        for k in keys {
            r.sign(k);
        }
        cache.put(
            &realisation_key(&r.id),
            r.to_json().into_bytes(),
            "application/json",
        )?;
    }
    Ok(done.len())
}

/// The realisation of `id` in `cache`, if it has one signed by a key of
/// `trusted` (any, when `trusted` is `None`: `require-sigs = false`).
pub fn query_realisation(
    cache: &dyn BinaryCache,
    id: &DrvOutput,
    trusted: Option<&[PublicKey]>,
) -> Result<Option<Realisation>, SubstError> {
    let Some(bytes) = cache.get(&realisation_key(id))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let r = Realisation::from_json(&text).map_err(|e| SubstError::Query {
        path: realisation_key(id),
        cache: cache.url().to_owned(),
        message: format!("invalid realisation: {e}"),
    })?;
    if r.id != *id {
        return Ok(None);
    }
    match trusted {
        Some(keys) if !r.is_signed_by(keys) => Ok(None),
        _ => Ok(Some(r)),
    }
}
