//! Instant re-entry: the environment captured for an installable, kept in
//! rix's evaluation cache (`rix_flake::eval_cache`) so that entering an
//! unchanged project again neither evaluates nor builds anything.
//!
//! Two answers are kept:
//! - for a flake installable, keyed as the evaluation cache keys `rix build`'s
//!   answers (the source's fingerprint, `flake.lock`, the installable, the
//!   system, the store directory, the `--option`s): the derivation and its
//!   environment's path;
//! - for a derivation, keyed by its path and the store directory: its
//!   environment's path (which saves writing and planning the environment
//!   derivation after evaluating a Nix file).
//!
//! An answer is used only while the environment is valid in the store (a
//! valid path's closure is valid, so everything it names is there); Nix
//! evaluates the flake and asks the store to build the environment
//! derivation on every run.

use rix_flake::eval_cache::EvalCache;
use rix_formats::StorePath;
use rix_store::store_api::Store;

use crate::cmd::instantiate::NixInstallableArgs;
use crate::context::Context;

/// The cache and the key of one flake installable's answer.
pub struct FlakeKey {
    cache: EvalCache,
    key: String,
    source: String,
    installable: String,
}

/// The key of a flake installable's environment, when it may be cached:
/// a local flake, evaluated purely, without `--arg`s or lock overrides.
pub fn flake_key(ctx: &Context, installable: &str, nix: &NixInstallableArgs) -> Option<FlakeKey> {
    if nix.is_set()
        || !crate::cmd::instantiate::is_flake_installable(installable)
        || nix.eval_args.impure
        || !nix.eval_args.auto_args().is_empty()
        || !nix.flake.is_plain()
    {
        return None;
    }
    let cache = crate::cmd::flake::eval_cache()?;
    let (key, source) = crate::cmd::flake::eval_cache_key(ctx, installable, &["develop"])?;
    Some(FlakeKey {
        cache,
        key,
        source,
        installable: installable.to_owned(),
    })
}

impl FlakeKey {
    /// The cached derivation and environment, if the environment is valid.
    pub fn get(&self, store: &dyn Store) -> Option<(StorePath, StorePath)> {
        let v: serde_json::Value = serde_json::from_str(&self.cache.get(&self.key)?).ok()?;
        let drv = StorePath::from_base_name(v.get("drv")?.as_str()?).ok()?;
        let env = StorePath::from_base_name(v.get("env")?.as_str()?).ok()?;
        valid(store, &env).then_some((drv, env))
    }

    /// Records the answer, unless the source changed while evaluating (the
    /// lock file was written).
    pub fn put(&self, drv: &StorePath, env: &StorePath) {
        if crate::cmd::flake::eval_cache_source_unchanged(&self.installable, &self.source) {
            let v = serde_json::json!({"drv": drv.to_string(), "env": env.to_string()});
            self.cache.put(&self.key, &v.to_string());
        }
    }
}

/// Whether `env` is valid, kept from the garbage collector first (a
/// temporary root) so that it stays so.
fn valid(store: &dyn Store, env: &StorePath) -> bool {
    store.add_temp_root(env).is_ok() && store.is_valid(env).unwrap_or(false)
}

fn drv_key(store: &dyn Store, drv: &StorePath) -> String {
    rix_flake::eval_cache::key(
        "develop-derivation",
        &[&drv.to_string(), store.store_dir().as_str()],
    )
}

/// The environment captured for `drv`, if still valid.
pub fn environment_of(store: &dyn Store, drv: &StorePath) -> Option<StorePath> {
    let cache = crate::cmd::flake::eval_cache()?;
    let env = StorePath::from_base_name(&cache.get(&drv_key(store, drv))?).ok()?;
    valid(store, &env).then_some(env)
}

/// Records the environment captured for `drv`.
pub fn remember(store: &dyn Store, drv: &StorePath, env: &StorePath) {
    if let Some(cache) = crate::cmd::flake::eval_cache() {
        cache.put(&drv_key(store, drv), &env.to_string());
    }
}
