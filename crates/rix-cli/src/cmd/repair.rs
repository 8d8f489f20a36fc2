//! `rix store verify --repair`: fresh copies of broken store paths from the
//! configured substituters (`substituters`, as `rix build` uses them) or, when
//! no cache has one, by rebuilding the path's deriver (`rix_build::repair`),
//! swapped in by `rix_store::verify::repair` (Nix's `repairPath`).

use std::path::Path;

use anyhow::Result;
use clap::Parser;
use rix_build::RealiseOptions;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use rix_store::verify::{Fetched, PathSource, RepairReport, VerifyObserver, VerifyReport};
use rix_substitute::cache::nar_key;
use rix_substitute::{Compression, Quiet, Substituter};

use crate::context::Context;
use crate::progress::Progress;

/// Repairs what `report` found, printing what it does on standard error.
pub fn repair(
    ctx: &Context,
    store: &LocalStore,
    report: &VerifyReport,
    observer: &dyn VerifyObserver,
) -> Result<RepairReport> {
    let substituter = crate::cmd::copy::build_substituter(ctx, store, None, false, false)?;
    let mut opts = build_options(ctx)?;
    opts.substituter = substituter.clone();
    let progress = Progress::new(store.store_dir().clone(), false);
    let source = Sources {
        caches: substituter.as_deref().map(|s| Caches { substituter: s }),
        rebuild: Rebuild {
            store,
            opts,
            progress: &progress,
        },
    };
    let repaired = rix_store::verify::repair(store, report, Some(&source), observer);
    progress.finish();
    Ok(repaired?)
}

/// The build settings `rix build` would use, with no flags given.
fn build_options(ctx: &Context) -> Result<RealiseOptions> {
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        build: crate::cmd::build::BuildArgs,
    }
    let defaults = Defaults::try_parse_from(["rix", "--no-link", "(none)"])?;
    crate::cmd::build::options(ctx, &defaults.build)
}

/// The caches first, then a rebuild.
struct Sources<'a> {
    caches: Option<Caches<'a>>,
    rebuild: Rebuild<'a>,
}

impl PathSource for Sources<'_> {
    fn fetch(&self, info: &ValidPathInfo, dest: &Path) -> Result<Fetched, String> {
        let mut cache_error = None;
        if let Some(caches) = &self.caches {
            match caches.fetch(info, dest) {
                Ok(Fetched::Unavailable) => {}
                Ok(fetched) => return Ok(fetched),
                Err(e) => {
                    let _ = rix_store::canonicalise::delete_path(dest);
                    cache_error = Some(e);
                }
            }
        }
        match (self.rebuild.fetch(info, dest), cache_error) {
            (Ok(Fetched::Unavailable), Some(e)) => Err(e),
            (Err(e), Some(c)) => Err(format!("{c}; rebuilding it failed too: {e}")),
            (result, _) => result,
        }
    }
}

/// Rebuilding from the deriver, when it is valid.
struct Rebuild<'a> {
    store: &'a LocalStore,
    opts: RealiseOptions,
    progress: &'a Progress,
}

impl PathSource for Rebuild<'_> {
    fn fetch(&self, info: &ValidPathInfo, dest: &Path) -> Result<Fetched, String> {
        let Some(deriver) = &info.deriver else {
            return Ok(Fetched::Unavailable);
        };
        if !self.store.is_valid(deriver).map_err(|e| e.to_string())? {
            return Ok(Fetched::Unavailable);
        }
        rix_build::repair::rebuild_output(self.store, &info.path, &self.opts, self.progress, dest)
            .map(|info| Fetched::Rebuilt(Box::new(info)))
            .map_err(|e| e.to_string())
    }
}

/// The binary caches as a source of fresh copies.
struct Caches<'a> {
    substituter: &'a Substituter,
}

impl PathSource for Caches<'_> {
    fn fetch(&self, info: &ValidPathInfo, dest: &Path) -> Result<Fetched, String> {
        let query = self.substituter.query(&info.path, &Quiet);
        let Some(found) = query.found else {
            if let Some(e) = query.errors.first() {
                return Err(e.to_string());
            }
            return Ok(Fetched::Unavailable);
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
            .open(key, found.info.file_size())
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("'{}' lists it but its NAR '{key}' is missing", cache.name()))?;
        let nar = compression
            .decoder(stream)
            .map_err(|e| format!("cannot decompress '{key}': {e}"))?;
        // A decompression bomb stops one byte past the announced size.
        let nar = rix_substitute::Capped::new(nar, found.info.nar_size(), "the NAR");
        rix_store::archive::restore(nar, dest).map_err(|e| e.to_string())?;
        Ok(Fetched::Copy)
    }
}
