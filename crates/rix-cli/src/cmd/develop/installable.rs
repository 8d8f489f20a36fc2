//! What `rix develop` and `rix print-dev-env` are asked for: the one
//! derivation an installable evaluates to (a flake's `devShells` first), or
//! an environment already captured (a store path whose name ends in `-env`).
//! Mirrors `Common::getShellOutPath` and the develop commands'
//! `getDefaultFlakeAttrPaths` in Nix's `src/nix/develop.cc`.

use std::collections::BTreeSet;

use anyhow::{bail, Context as _, Result};
use rix_eval::Evaluator;
use rix_formats::StorePath;
use rix_store::store_api::Store;

use super::store::DevStore;
use crate::cmd::flake::Purpose;
use crate::cmd::instantiate::{
    build_targets_with, eval_error, is_flake_installable, is_nix_installable, NixInstallableArgs,
    RenderedError,
};
use crate::context::Context;

/// What an installable names.
pub enum Target {
    /// A derivation whose environment is to be captured.
    Derivation(StorePath),
    /// A captured environment (`nix develop /nix/store/…-env`).
    Environment(StorePath),
}

/// The installable as given, or the default: `.` (the flake here), or the
/// whole file or expression with `--file`/`--expr`.
pub fn installable_or_default(installable: Option<&str>, nix: &NixInstallableArgs) -> String {
    match installable {
        Some(i) => i.to_owned(),
        None if nix.is_set() => String::new(),
        None => ".".to_owned(),
    }
}

/// Evaluates (or parses) `installable` into what to develop.
pub fn resolve(
    ctx: &Context,
    store: &DevStore,
    installable: &str,
    nix: &NixInstallableArgs,
) -> Result<Target> {
    let drvs: Vec<(StorePath, String)> = if nix.is_set() {
        let attrs: Vec<String> = if installable.is_empty() {
            Vec::new()
        } else {
            vec![installable.to_owned()]
        };
        build_targets_with(ctx, &attrs, nix, store.eval_store_opener())?
    } else if is_flake_installable(installable) {
        flake_derivations(ctx, store, installable, nix, Purpose::Develop)?
    } else if is_nix_installable(installable) {
        build_targets_with(
            ctx,
            &[installable.to_owned()],
            nix,
            store.eval_store_opener(),
        )?
    } else {
        return store_path_target(&*store.store, installable);
    };
    let unique: BTreeSet<&StorePath> = drvs.iter().map(|(d, _)| d).collect();
    match unique.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => Ok(Target::Derivation((*one).clone())),
        many => bail!(
            "'{installable}' needs to evaluate to a single derivation, but it evaluated to {} derivations",
            many.len()
        ),
    }
}

/// A store path given directly: a `.drv`, or an environment (`…-env`).
fn store_path_target(store: &dyn Store, s: &str) -> Result<Target> {
    let abs = std::fs::canonicalize(s)
        .map_or_else(|_| s.to_owned(), |p| p.to_string_lossy().into_owned());
    let path = store
        .parse_path(&abs)
        .or_else(|_| store.parse_path(s))
        .with_context(|| {
            format!(
                "'{s}' is neither a flake, a Nix file nor a store path of this store ({})",
                store.store_dir()
            )
        })?;
    if path.is_derivation() {
        Ok(Target::Derivation(path))
    } else if path.name().ends_with("-env") {
        Ok(Target::Environment(path))
    } else {
        bail!(
            "argument '{}' did not evaluate to a derivation",
            store.print(&path)
        )
    }
}

/// A flake installable's derivations, searched as `nix develop` does.
fn flake_derivations(
    ctx: &Context,
    store: &DevStore,
    installable: &str,
    nix: &NixInstallableArgs,
    purpose: Purpose,
) -> Result<Vec<(StorePath, String)>> {
    let open = store.eval_store_opener();
    let show_trace = nix.eval_args.show_trace();
    crate::cmd::instantiate::on_big_stack(|| {
        let eval_store = open()?;
        let mut ev = Evaluator::new(crate::cmd::flake::eval_options(
            ctx,
            &nix.eval_args,
            eval_store,
        ));
        let r = ev
            .auto_args(&nix.eval_args.auto_args())
            .map_err(rix_flake::FlakeError::from)
            .and_then(|auto_args| {
                crate::cmd::flake::installables_for(
                    ctx,
                    &mut ev,
                    &[installable],
                    &nix.flake,
                    &auto_args,
                    purpose,
                )
            });
        let targets = r.map_err(|e| anyhow::Error::new(RenderedError(e.render(show_trace), 1)))?;
        crate::cmd::instantiate::flush(&ev).map_err(|e| eval_error(e, show_trace))?;
        Ok(targets)
    })
}

/// The store paths `installable` names, nothing built (Nix's
/// `toStorePathSet` with `Realise::Nothing` and `OperateOn::Output`, for
/// `--redirect`): a store path itself, a `.drv`'s outputs, or the wanted
/// outputs of the derivations a Nix file or a flake evaluates to.
pub fn output_paths(
    ctx: &Context,
    store: &DevStore,
    installable: &str,
    nix: &NixInstallableArgs,
) -> Result<Vec<StorePath>> {
    let drvs: Vec<(StorePath, String)> = if nix.is_set() {
        build_targets_with(
            ctx,
            &[installable.to_owned()],
            nix,
            store.eval_store_opener(),
        )?
    } else if is_flake_installable(installable) {
        flake_derivations(ctx, store, installable, nix, Purpose::Build)?
    } else if is_nix_installable(installable) {
        build_targets_with(
            ctx,
            &[installable.to_owned()],
            nix,
            store.eval_store_opener(),
        )?
    } else {
        let abs = std::fs::canonicalize(installable).map_or_else(
            |_| installable.to_owned(),
            |p| p.to_string_lossy().into_owned(),
        );
        let path = store
            .store
            .parse_path(&abs)
            .or_else(|_| store.store.parse_path(installable))
            .with_context(|| {
                format!("'{installable}' is neither a flake, a Nix file nor a store path")
            })?;
        if !path.is_derivation() {
            return Ok(vec![path]);
        }
        vec![(path, String::new())]
    };
    let mut paths = Vec::new();
    for (drv_path, output) in drvs {
        let drv = store.read_derivation(&drv_path)?;
        let outputs = drv
            .declared_output_paths(store.store.store_dir())
            .with_context(|| format!("in '{}'", store.print(&drv_path)))?;
        for (name, path) in outputs {
            if !output.is_empty() && name != output {
                continue;
            }
            let path = path.with_context(|| {
                format!(
                    "the output '{name}' of '{}' has no path before it is built (content-addressed)",
                    store.print(&drv_path)
                )
            })?;
            paths.push(path);
        }
    }
    Ok(paths)
}
