//! `rix store verify --repair`: fresh copies of broken store paths from the
//! configured substituters (`substituters`, as `rix build` uses them), swapped
//! in by `rix_store::verify::repair` (Nix's `repairPath` by substitution).

use std::path::Path;

use anyhow::Result;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use rix_store::verify::{PathSource, RepairReport, VerifyObserver, VerifyReport};
use rix_substitute::cache::nar_key;
use rix_substitute::{Compression, Quiet, Substituter};

use crate::context::Context;

/// Repairs what `report` found, printing what it does on standard error.
pub fn repair(
    ctx: &Context,
    store: &LocalStore,
    report: &VerifyReport,
    observer: &dyn VerifyObserver,
) -> Result<RepairReport> {
    let substituter = crate::cmd::copy::build_substituter(ctx, store, None, false, false)?;
    let source = substituter.as_deref().map(|s| Caches { substituter: s });
    let source = source.as_ref().map(|s| s as &dyn PathSource);
    Ok(rix_store::verify::repair(store, report, source, observer)?)
}

/// The binary caches as a source of fresh copies.
struct Caches<'a> {
    substituter: &'a Substituter,
}

impl PathSource for Caches<'_> {
    fn fetch(&self, info: &ValidPathInfo, dest: &Path) -> Result<bool, String> {
        let query = self.substituter.query(&info.path, &Quiet);
        let Some(found) = query.found else {
            if let Some(e) = query.errors.first() {
                return Err(e.to_string());
            }
            return Ok(false);
        };
        let cache = &self.substituter.caches(&Quiet)[found.cache];
        if found.info.nar_hash() != &info.nar_hash {
            return Err(format!(
                "'{}' has different contents for it (NAR hash {}, the database says {})",
                cache.name(),
                found.info.nar_hash(),
                info.nar_hash
            ));
        }
        let key = nar_key(found.info.url())
            .ok_or_else(|| format!("'{}': bad NAR URL '{}'", cache.name(), found.info.url()))?;
        let compression = Compression::parse(found.info.compression()).ok_or_else(|| {
            format!(
                "'{}': unsupported compression '{}'",
                cache.name(),
                found.info.compression()
            )
        })?;
        let stream = cache
            .store
            .open(key)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("'{}' lists it but its NAR '{key}' is missing", cache.name()))?;
        let nar = compression
            .decoder(stream)
            .map_err(|e| format!("cannot decompress '{key}': {e}"))?;
        rix_store::archive::restore(nar, dest).map_err(|e| e.to_string())?;
        Ok(true)
    }
}
