//! Repair by rebuilding: a fresh copy of a valid output path from its deriver,
//! for `rix store verify --repair` when no binary cache has the path (Nix's
//! `repairPath` falls back to a derivation goal in `bmRepair` mode).
//!
//! The caller holds the lock of the path being repaired; every build or check
//! of its derivation (rix's or Nix's) locks all the derivation's outputs first,
//! so none runs meanwhile, and the derivation's scratch locations (fallback
//! paths, the sandbox's store directory) are ours. The valid outputs are not
//! touched:
//! - in the sandbox the builder writes the outputs at their own paths inside
//!   it, and the wanted one is moved out to the destination;
//! - without it the builder writes to fallback paths (Nix's `makeFallbackPath`)
//!   with the real outputs' hash parts rewritten to the fallback ones in its
//!   environment and arguments, and the wanted output is copied back to the
//!   destination through a NAR stream with the hash parts rewritten back.
//!
//! Missing inputs are realised first (built, or substituted as `opts` says).
//! The result is described as a build output is (NAR hash, references, fixed
//! output hash checked); whether it may replace the recorded contents is the
//! store's decision (`rix_store::verify`): an input-addressed path takes what
//! the rebuild produced, a content-addressed one must come out identical.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rix_formats::StorePath;
use rix_store::canonicalise::delete_path;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;

use crate::builder::{self, BuildJob};
use crate::error::BuildError;
use crate::events::Observer;
use crate::plan::{output_paths, read_derivation};
use crate::realise::{realise, RealiseOptions};

/// Rebuilds the valid path `path` from its deriver into `dest` (a temporary
/// name in the store directory, which must not exist) and describes the result.
/// The caller holds `path`'s lock.
pub fn rebuild_output(
    store: &LocalStore,
    path: &StorePath,
    opts: &RealiseOptions,
    observer: &dyn Observer,
    dest: &Path,
) -> Result<ValidPathInfo, BuildError> {
    let printed = store.print(path);
    let unsupported = |drv: &str, reason: String| BuildError::Unsupported {
        drv: drv.to_owned(),
        reason,
    };
    let deriver = store
        .path_info(path)?
        .deriver
        .ok_or_else(|| unsupported(&printed, "the database records no deriver for it".into()))?;
    store.add_temp_root(&deriver)?;
    let drv_printed = store.print(&deriver);
    let drv = read_derivation(store, &deriver)?;
    // It will build: check its outputs again, as the planner does.
    store.check_derivation(&deriver, &drv)?;
    let outputs = output_paths(store, &deriver, &drv)?;
    let Some(name) = outputs
        .iter()
        .find(|(_, p)| *p == path)
        .map(|(n, _)| n.clone())
    else {
        return Err(unsupported(
            &drv_printed,
            format!("it has no output '{printed}' (the database names it as the deriver)"),
        ));
    };
    let input_closure = realise_inputs(store, &drv, opts, observer)?;
    let reason = format!("repairing '{printed}'");
    let job = BuildJob {
        drv_path: &deriver,
        drv: &drv,
        outputs: &outputs,
        input_closure: &input_closure,
        reason: &reason,
        check: false,
    };
    observer.event(crate::events::BuildEvent::Started {
        drv: &deriver,
        reason: &reason,
    });
    let start = std::time::Instant::now();
    let built = if builder::use_sandbox(store, &job, &opts.settings, &drv_printed)? {
        rebuild_in_sandbox(store, &job, opts, observer, &name, dest, &drv_printed)
    } else {
        rebuild_at_fallback(store, &job, opts, observer, &name, dest, &drv_printed)
    };
    let error = built.as_ref().err().map(|e| e.to_string());
    observer.event(crate::events::BuildEvent::Finished {
        drv: &deriver,
        elapsed: start.elapsed(),
        error: error.as_deref(),
    });
    built?;
    let candidates: BTreeSet<&StorePath> = input_closure.iter().chain(outputs.values()).collect();
    builder::describe_output(store, &job, &candidates, &name, path, dest, &drv_printed)
}

/// Makes the inputs of `drv` valid and returns the closure of what the builder
/// may refer to.
fn realise_inputs(
    store: &LocalStore,
    drv: &rix_formats::derivation::Derivation,
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> Result<BTreeSet<StorePath>, BuildError> {
    let input_drvs: Vec<StorePath> = drv.input_drvs.keys().cloned().collect();
    let mut inputs: BTreeSet<StorePath> = drv.input_srcs.clone();
    if !input_drvs.is_empty() {
        let mut opts = opts.clone();
        opts.check = false;
        let report = realise(store, &input_drvs, &opts, observer)?;
        if let Some((failed, e)) = report.failed.first() {
            return Err(BuildError::Unsupported {
                drv: store.print(failed),
                reason: format!("an input of the derivation to rebuild failed: {e}"),
            });
        }
        for (input, wanted) in &drv.input_drvs {
            let outs = output_paths(store, input, &read_derivation(store, input)?)?;
            inputs.extend(
                outs.into_iter()
                    .filter(|(n, _)| wanted.contains(n))
                    .map(|(_, p)| p),
            );
        }
    }
    Ok(store.closure(inputs)?)
}

fn rebuild_in_sandbox(
    store: &LocalStore,
    job: &BuildJob<'_>,
    opts: &RealiseOptions,
    observer: &dyn Observer,
    name: &str,
    dest: &Path,
    drv_printed: &str,
) -> Result<(), BuildError> {
    let build_dir = builder::create_build_dir(&opts.settings.build_dir_root, job.drv_path.name())?;
    let result = (|| {
        let mut sb = builder::prepare_sandbox(store, job, &build_dir, &opts.settings, drv_printed)?;
        builder::run_builder_in(
            store,
            job,
            job.drv,
            job.outputs,
            &opts.settings,
            observer,
            &build_dir,
            drv_printed,
            Some(&mut sb),
        )?;
        // Not produced: describing it reports the missing output.
        sb.take_output(&job.outputs[name], dest)
            .map(|_| ())
            .map_err(BuildError::io(dest))
    })();
    let _ = delete_path(&build_dir);
    result
}

fn rebuild_at_fallback(
    store: &LocalStore,
    job: &BuildJob<'_>,
    opts: &RealiseOptions,
    observer: &dyn Observer,
    name: &str,
    dest: &Path,
    drv_printed: &str,
) -> Result<(), BuildError> {
    let mut fallback = BTreeMap::new();
    for output in job.outputs.keys() {
        let p = builder::fallback_path(store, job.drv_path, &job.drv.name, output)?;
        let real = store.real_path(&p);
        delete_path(&real).map_err(BuildError::io(&real))?;
        fallback.insert(output.clone(), p);
    }
    let to_fallback: Vec<(StorePath, StorePath)> = job
        .outputs
        .iter()
        .map(|(n, p)| (p.clone(), fallback[n].clone()))
        .collect();
    let drv = builder::rewrite_derivation(job.drv, &to_fallback);
    let build_dir = builder::create_build_dir(&opts.settings.build_dir_root, job.drv_path.name())?;
    let result = builder::run_builder_in(
        store,
        job,
        &drv,
        &fallback,
        &opts.settings,
        observer,
        &build_dir,
        drv_printed,
        None,
    )
    .and_then(|()| {
        let built = store.real_path(&fallback[name]);
        if std::fs::symlink_metadata(&built).is_err() {
            return Err(BuildError::MissingOutput {
                drv: drv_printed.to_owned(),
                output: name.to_owned(),
                path: store.print(&fallback[name]),
            });
        }
        let back: Vec<(StorePath, StorePath)> =
            to_fallback.into_iter().map(|(real, f)| (f, real)).collect();
        builder::copy_rewritten(&built, dest, back)
    });
    let _ = delete_path(&build_dir);
    for p in fallback.values() {
        let _ = delete_path(&store.real_path(p));
    }
    result
}
