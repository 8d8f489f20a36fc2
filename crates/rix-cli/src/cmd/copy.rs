//! `rix copy --to|--from URL PATHS...` (binary caches, like `nix copy`), `rix
//! store sign`, and the substituters `rix build` uses.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_formats::narinfo::fingerprint;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_store::store_api::Store;
use rix_substitute::substituter::read_secret_keys;
use rix_substitute::upload::{copy_to, UploadOptions};
use rix_substitute::{CacheUrl, Substituter, SubstituterConfig};

use crate::context::Context;
use crate::progress::Progress;

#[derive(Args, Debug, Clone)]
pub struct CopyArgs {
    /// Copy to this binary cache: `file:///DIR`, `http(s)://HOST/PATH`, or
    /// `s3://BUCKET?region=..&endpoint=..&scheme=..&profile=..`; with
    /// `?compression=zstd|xz|bzip2|none`, `?compression-level=N`, `?secret-key=FILE`.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "from",
        required_unless_present = "from"
    )]
    pub to: Option<String>,
    /// Copy from this binary cache into the local store.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// Accept paths from the cache without checking their signatures.
    #[arg(long)]
    pub no_check_sigs: bool,
    /// Sign what is copied with these secret keys (besides the `secret-key-files` setting).
    #[arg(long = "secret-key-files", value_name = "FILE")]
    pub secret_key_files: Vec<String>,
    /// Store paths (their closures are copied).
    #[arg(required = true, value_name = "PATHS")]
    pub paths: Vec<String>,
}

/// Parses store paths given on the command line (symlinks such as `result` are followed).
fn parse_paths(store: &dyn Store, paths: &[String]) -> Result<Vec<StorePath>> {
    paths
        .iter()
        .map(|p| {
            let abs = std::fs::canonicalize(p)
                .map_or_else(|_| p.clone(), |c| c.to_string_lossy().into_owned());
            store
                .parse_path(&abs)
                .or_else(|_| store.parse_path(p))
                .with_context(|| {
                    format!(
                        "'{p}' is not a store path of this store ({})",
                        store.store_dir()
                    )
                })
        })
        .collect()
}

/// Secret keys of the `secret-key-files` setting plus `extra`.
fn secret_keys(ctx: &Context, extra: &[String]) -> Result<Vec<rix_formats::signature::SecretKey>> {
    let mut files = ctx.settings.get_list("secret-key-files");
    files.extend(extra.iter().cloned());
    Ok(read_secret_keys(files.iter().map(String::as_str))?)
}

/// `--to` or `--from` a store (local or a daemon's) rather than a binary cache:
/// store to store through the store interface.
fn copy_between_stores(ctx: &Context, args: &CopyArgs) -> Result<bool> {
    let (other_url, to) = match (&args.to, &args.from) {
        (Some(u), _) => (u, true),
        (None, Some(u)) => (u, false),
        (None, None) => return Ok(false),
    };
    let Some(other) = ctx.open_store_url(other_url)? else {
        return Ok(false);
    };
    let this = ctx.store()?;
    let (src, dst) = if to {
        (&*this, &*other)
    } else {
        (&*other, &*this)
    };
    if src.store_dir() != dst.store_dir() {
        bail!(
            "cannot copy from '{}' (store directory {}) to '{}' (store directory {}): a store \
             path's name depends on its store directory, so both stores must use the same one \
             (a local store can keep it elsewhere: 'local?store={}&real=/some/dir&state=...')",
            src.url(),
            src.store_dir(),
            dst.url(),
            dst.store_dir(),
            dst.store_dir()
        );
    }
    let paths = args
        .paths
        .iter()
        .map(|p| crate::cmd::resolve::store_path_arg(src, p))
        .collect::<Result<std::collections::BTreeSet<_>>>()?;
    let started = std::time::Instant::now();
    // Into a store on this disk, this command is the one to ask for
    // signatures (`require-sigs`, as Nix's local store does); a daemon or a
    // machine asks for itself.
    let require_sigs =
        !args.no_check_sigs && dst.as_local().is_some() && ctx.settings.get_bool("require-sigs")?;
    let keys = rix_formats::signature::parse_public_keys(&ctx.settings.get("trusted-public-keys"))
        .context("setting 'trusted-public-keys'")?;
    let accept = |info: &rix_store::path_info::ValidPathInfo| {
        if !require_sigs || info.is_trusted(dst.store_dir(), &keys) {
            Ok(())
        } else {
            Err(rix_store::local_store::StoreError::Untrusted(
                dst.print(&info.path),
            ))
        }
    };
    let report =
        rix_store::store_api::copy_paths_checked(src, dst, &paths, !args.no_check_sigs, &accept)?;
    // Realisations of the copied outputs go with them (content-addressed derivations).
    let closure: BTreeSet<StorePath> = report
        .copied
        .iter()
        .chain(&report.present)
        .cloned()
        .collect();
    let realisations = rix_store::store_api::copy_realisations(src, dst, &closure)?;
    if realisations > 0 {
        eprintln!("copied {realisations} realisations");
    }
    eprintln!(
        "copied {} paths {} '{}' ({:.2} MiB) in {:.2} s; {} were there already",
        report.copied.len(),
        if to { "to" } else { "from" },
        other.url(),
        report.nar_bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        report.present.len()
    );
    Ok(true)
}

pub fn run(ctx: &Context, args: &CopyArgs) -> Result<()> {
    if copy_between_stores(ctx, args)? {
        return Ok(());
    }
    let store = ctx.open_store()?;
    let progress = Progress::new(store.store_dir().clone(), false);
    if let Some(to) = &args.to {
        let paths = parse_paths(&store, &args.paths)?;
        let url = CacheUrl::parse(to)?;
        let config = SubstituterConfig::from_settings(&ctx.settings)?;
        let cache = rix_substitute::cache::open(&url, &config.transport)?;
        let opts = UploadOptions::from_url(&url, secret_keys(ctx, &args.secret_key_files)?)?;
        let started = std::time::Instant::now();
        let report = copy_to(&store, cache.as_ref(), &paths, &opts, &progress);
        progress.finish();
        let report = report?;
        // Realisations of the copied outputs go with them (content-addressed derivations).
        let closure = store.closure(paths.iter().cloned())?;
        rix_substitute::realisations::upload_realisations(
            &store,
            cache.as_ref(),
            &closure,
            &opts.keys,
        )?;
        eprintln!(
            "copied {} paths to '{}' ({:.2} MiB compressed from {:.2} MiB) in {:.2} s; {} were there already",
            report.uploaded.len(),
            url.display(),
            report.file_bytes as f64 / 1048576.0,
            report.nar_bytes as f64 / 1048576.0,
            started.elapsed().as_secs_f64(),
            report.present.len()
        );
        return Ok(());
    }
    let from = args.from.as_deref().expect("clap requires --to or --from");
    // `DRV^OUTPUTS`: a derivation's outputs, found through the cache's
    // realisations when content-addressed (see `copy_outputs_from`).
    let (outputs, paths): (Vec<&String>, Vec<&String>) =
        args.paths.iter().partition(|p| p.contains('^'));
    let paths: Vec<String> = paths.into_iter().cloned().collect();
    let paths = parse_paths(&store, &paths)?;
    let mut config = SubstituterConfig::from_settings(&ctx.settings)?;
    config.urls = vec![from.to_owned()];
    if args.no_check_sigs {
        config.require_sigs = false;
    }
    let subst = Substituter::new(config, store.store_dir().clone());
    if subst.caches(&progress).is_empty() {
        progress.finish();
        bail!(
            "cannot use '{}' as a binary cache",
            from.split('?').next().unwrap_or(from)
        );
    }
    let subst = Arc::new(subst);
    if !outputs.is_empty() {
        let drvs = outputs
            .iter()
            .map(|o| {
                let drv = o.split('^').next().unwrap_or(o);
                crate::cmd::resolve::valid_path_arg(&store, drv)
            })
            .collect::<Result<Vec<_>>>()?;
        let copied = copy_outputs_from(&store, &drvs, &subst, &progress);
        if copied.is_err() {
            progress.finish();
        }
        copied?;
        if paths.is_empty() {
            progress.finish();
            eprintln!(
                "copied the outputs of {} derivation(s) from '{}'",
                drvs.len(),
                from.split('?').next().unwrap_or(from)
            );
            return Ok(());
        }
    }
    let report = subst.substitute(&store, &paths, &progress);
    progress.finish();
    let report = report?;
    if !report.succeeded() {
        bail!("{}", report.problem(store.store_dir()));
    }
    eprintln!(
        "copied {} paths from '{}' ({:.2} MiB downloaded, {:.2} MiB unpacked); {} were valid already",
        report.substituted.len(),
        from.split('?').next().unwrap_or(from),
        report.downloaded as f64 / 1048576.0,
        report.nar_bytes as f64 / 1048576.0,
        report.already_valid.len()
    );
    Ok(())
}

/// Fetches the outputs of derivations `drvs` (valid here) from the caches
/// of `subst`, building nothing: a content-addressed derivation's outputs are
/// found through the caches' realisations (`realisations/<id>.doi`), which
/// are registered here too, as `nix copy --from CACHE DRV^out` does. Every
/// output is fetched, whichever `^OUTPUTS` named.
fn copy_outputs_from(
    store: &LocalStore,
    drvs: &[StorePath],
    subst: &Arc<Substituter>,
    progress: &Progress,
) -> Result<()> {
    let opts = rix_build::realise::RealiseOptions {
        max_jobs: 0,
        substituter: Some(subst.clone()),
        ..Default::default()
    };
    match rix_build::realise::realise(store, drvs, &opts, progress) {
        Ok(report) if report.succeeded() => Ok(()),
        Ok(report) => bail!(
            "cannot copy the outputs of {} from the cache",
            report
                .failed
                .iter()
                .map(|(p, e)| format!("'{}' ({e})", store.print(p)))
                .chain(report.skipped.iter().map(|p| format!("'{}'", store.print(p))))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(rix_build::error::BuildError::NoBuildSlots) => bail!(
            "the cache lacks some outputs of {} (or their realisations): 'rix copy --from' builds nothing",
            drvs.iter()
                .map(|p| format!("'{}'", store.print(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => Err(e.into()),
    }
}

/// The substituters `rix build` uses: the `substituters` setting (or
/// `--substituters`), none with `--offline` or `substitute = false`.
pub fn build_substituter(
    ctx: &Context,
    store: &LocalStore,
    urls: Option<&str>,
    fallback: bool,
    offline: bool,
) -> Result<Option<Arc<Substituter>>> {
    if offline {
        return Ok(None);
    }
    rix_build::options::substituter(&ctx.settings, store.store_dir(), urls, fallback)
        .map_err(anyhow::Error::msg)
}

/// `rix store sign -k KEYFILE PATHS`: adds signatures to the store's records
/// (through a daemon, `AddSignatures`).
pub fn sign(ctx: &Context, key_file: &std::path::Path, paths: &[String]) -> Result<()> {
    let opened = ctx.store()?;
    let store = &*opened;
    let keys = read_secret_keys([key_file.to_str().context("key file name is not UTF-8")?])?;
    let mut added = 0;
    for p in parse_paths(store, paths)? {
        let info = store.path_info(&p)?;
        let fp = fingerprint(
            store.store_dir(),
            &p,
            &info.nar_hash,
            info.nar_size,
            &info.references,
        )
        .with_context(|| format!("cannot sign '{}'", store.print(&p)))?;
        let new: BTreeSet<String> = keys
            .iter()
            .map(|k| k.sign(fp.as_bytes()).to_string())
            .filter(|s| !info.sigs.contains(s))
            .collect();
        if !new.is_empty() {
            added += new.len();
            store
                .add_signatures(&p, &new)
                .with_context(|| format!("cannot sign '{}'", store.print(&p)))?;
        }
    }
    eprintln!("added {added} signatures");
    Ok(())
}
