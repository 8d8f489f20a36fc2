//! Capturing a derivation's build environment: a modified derivation whose
//! builder runs `get-env.sh` instead of the build (after sourcing stdenv's
//! `setup`), which dumps the variables and functions as JSON into its
//! output. Building it realises the derivation's inputs, not the derivation.
//! Mirrors `getDerivationEnvironment` in Nix's `src/nix/develop.cc`.

use anyhow::{bail, Context as _, Result};
use rix_formats::derivation::{DerivationOutput, DrvHashes};
use rix_formats::StorePath;

use super::store::DevStore;
use crate::context::Context;

/// Nix's `get-env.sh` (see `get-env.sh.NOTICE`: LGPL 2.1, from Nix
/// 2.26.3) as Nix adds it to the store: its build embeds the file after a
/// newline (`get-env.sh.gen.hh`). Its store path is part of every
/// environment derivation's, so these bytes must be Nix's to give Nix's
/// paths.
pub const GET_ENV_SH: &str = concat!("\n", include_str!("get-env.sh"));

/// The `-env` output of `drv_path`'s environment derivation, built if it is
/// not valid yet (by the store: a daemon builds it).
pub fn derivation_environment(
    ctx: &Context,
    store: &DevStore,
    drv_path: &StorePath,
) -> Result<StorePath> {
    let env_drv = write_env_derivation(store, drv_path)?;
    let printed = store.print(&env_drv);
    let built = crate::cmd::build::realise_installables(
        ctx,
        vec![format!("{printed}^*")],
        crate::cmd::instantiate::NixInstallableArgs::default(),
    )?;
    // As Nix: the first output (by name) holding something.
    for outs in built {
        for path in outs.into_values() {
            if store.holds_something(&path) {
                return Ok(path);
            }
        }
    }
    bail!("get-env.sh failed to produce an environment")
}

/// Writes the environment derivation of `drv_path` to the store and returns
/// its path (the part of `getDerivationEnvironment` before building).
pub fn write_env_derivation(dev: &DevStore, drv_path: &StorePath) -> Result<StorePath> {
    let store = &*dev.store;
    let mut drv = dev.read_derivation(drv_path)?;
    let builder = String::from_utf8_lossy(&drv.builder);
    let base = builder.rsplit('/').next().unwrap_or("");
    if base != "bash" {
        bail!("'nix develop' only works on derivations that use 'bash' as their builder");
    }
    let get_env = store
        .add_text("get-env.sh", GET_ENV_SH.as_bytes(), &Default::default())
        .context("cannot add get-env.sh to the store")?;
    let store_dir = store.store_dir().clone();
    drv.args = vec![store_dir.display(&get_env).into_bytes()];
    // No reference checks: the environment refers to everything.
    for k in [
        "allowedReferences",
        "allowedRequisites",
        "disallowedReferences",
        "disallowedRequisites",
        "name",
    ] {
        drv.env.remove(k.as_bytes());
    }
    drv.name.push_str("-env");
    drv.env
        .insert(b"name".to_vec(), drv.name.clone().into_bytes());
    drv.input_srcs.insert(get_env);
    for (name, out) in drv.outputs.iter_mut() {
        *out = DerivationOutput::Deferred;
        drv.env.insert(name.clone().into_bytes(), Vec::new());
    }
    let mut hashes = DrvHashes::new(store_dir.clone(), |p: &StorePath| dev.read_derivation(p));
    let paths = drv
        .output_paths(&store_dir, |p| hashes.get(p))
        .with_context(|| format!("cannot hash the environment of '{}'", store.print(drv_path)))?;
    for (name, path) in paths {
        let Some(path) = path else {
            bail!(
                "the environment of '{}' depends on content-addressed derivations, which 'rix develop' does not support yet",
                store.print(drv_path)
            );
        };
        drv.env.insert(
            name.clone().into_bytes(),
            store_dir.display(&path).into_bytes(),
        );
        drv.outputs
            .insert(name, DerivationOutput::InputAddressed { path });
    }
    Ok(store.add_derivation(&drv)?)
}
