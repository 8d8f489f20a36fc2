//! Content-addressed derivations in the realisation engine (experimental
//! feature `ca-derivations`): output paths known from realisations, the
//! resolution of a derivation whose inputs are content-addressed, early cutoff
//! and the realisations registered after each build.
//!
//! A derivation whose output paths are not known in advance (a floating
//! content-addressed one, or an input-addressed one depending on such:
//! "deferred") is *resolved* once its inputs are built: each input derivation's
//! output becomes an input source, its placeholder in the environment the
//! realised path ([`try_resolve`], Nix's `Derivation::tryResolve`). The
//! resolved derivation is written to the store; its own hash decides whether it
//! must run: when its realisations exist already (an input was rebuilt with an
//! identical result), nothing runs: the build is *cut off*. Either way the
//! original derivation's outputs are then registered as realisations pointing
//! at the resolved one's. Mirrors `DerivationGoal::inputsRealised`,
//! `resolvedFinished` and `drvOutputReferences` of Nix 2.26.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use rix_formats::derivation::hashing::DrvHash;
use rix_formats::derivation::{Derivation, DerivationOutput, DerivationType};
use rix_formats::hash::HashAlgo;
use rix_formats::nixbase32;
use rix_formats::store_path::output_path_name;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_store::realisations::{DrvOutput, Realisation};

use crate::builder::{BuildJob, BuildOutcome};
use crate::error::BuildError;
use crate::events::{BuildEvent, Observer};
use crate::plan::PlannedBuild;
use crate::realise::RealiseOptions;

/// What the engine knows of content-addressed derivations during one
/// realisation: whether the feature is on, and the derivations' modulo
/// hashes (memoised: a chain of N derivations is hashed in N steps).
#[derive(Debug, Default)]
pub struct CaContext {
    hashes: Mutex<HashMap<StorePath, DrvHash>>,
    /// Realisations read (a registered realisation does not change, but for
    /// its signatures), so that walking their closures costs no queries.
    realisations: Mutex<HashMap<DrvOutput, Realisation>>,
    /// Input derivations read (many dependents share one input).
    drvs: Mutex<HashMap<StorePath, std::sync::Arc<Derivation>>>,
}

fn bad(store: &LocalStore, drv_path: &StorePath, e: impl std::fmt::Display) -> BuildError {
    BuildError::BadDerivation {
        path: store.print(drv_path),
        message: e.to_string(),
    }
}

impl CaContext {
    /// The modulo hash of the derivation at `drv_path` as an input of others
    /// (outputs not masked), computing its inputs' first. Mirrors
    /// `pathDerivationModulo`.
    pub fn modulo(&self, store: &LocalStore, drv_path: &StorePath) -> Result<DrvHash, BuildError> {
        if let Some(h) = self.cache().get(drv_path) {
            return Ok(h.clone());
        }
        let root = crate::plan::read_derivation(store, drv_path)?;
        let mut stack = vec![(drv_path.clone(), root)];
        let mut on_stack = HashSet::from([drv_path.clone()]);
        while let Some((_, top)) = stack.last() {
            let needs_inputs = top
                .derivation_type()
                .is_ok_and(|t| !t.is_fixed() && !t.is_impure());
            let missing = needs_inputs
                .then(|| {
                    let cache = self.cache();
                    top.input_drvs
                        .keys()
                        .find(|p| !cache.contains_key(*p))
                        .cloned()
                })
                .flatten();
            if let Some(input) = missing {
                if !on_stack.insert(input.clone()) {
                    return Err(bad(store, &input, "it depends on itself"));
                }
                let drv = crate::plan::read_derivation(store, &input)?;
                stack.push((input, drv));
                continue;
            }
            let (path, drv) = stack.pop().expect("stack is not empty");
            on_stack.remove(&path);
            let h = {
                let cache = self.cache();
                drv.hash_modulo(store.store_dir(), false, |p| {
                    cache.get(p).cloned().ok_or("not hashed yet")
                })
                .map_err(|e| bad(store, &path, e))?
            };
            self.cache().insert(path, h);
        }
        Ok(self.cache()[drv_path].clone())
    }

    /// The derivation at `drv_path` (memoised).
    pub fn derivation(
        &self,
        store: &LocalStore,
        drv_path: &StorePath,
    ) -> Result<std::sync::Arc<Derivation>, BuildError> {
        let known = self
            .drvs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(drv_path)
            .cloned();
        if let Some(d) = known {
            return Ok(d);
        }
        let d = std::sync::Arc::new(crate::plan::read_derivation(store, drv_path)?);
        self.drvs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(drv_path.clone(), d.clone());
        Ok(d)
    }

    /// The realisation of `id` (memoised when there is one).
    pub fn realisation(
        &self,
        store: &LocalStore,
        id: &DrvOutput,
    ) -> Result<Option<Realisation>, BuildError> {
        let known = self
            .realisations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(r) = known {
            return Ok(Some(r));
        }
        let found = store.query_realisation(id)?;
        if let Some(r) = &found {
            self.realisations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), r.clone());
        }
        Ok(found)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<StorePath, DrvHash>> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hash naming each output's realisation (the modulo hash with
    /// outputs masked). Mirrors `staticOutputHashes`.
    pub fn static_output_hashes(
        &self,
        store: &LocalStore,
        drv_path: &StorePath,
        drv: &Derivation,
    ) -> Result<DrvHash, BuildError> {
        for input in drv.input_drvs.keys() {
            self.modulo(store, input)?;
        }
        let cache = self.cache();
        drv.hash_modulo(store.store_dir(), true, |p| {
            cache.get(p).cloned().ok_or("not hashed yet")
        })
        .map_err(|e| bad(store, drv_path, e))
    }

    /// Each output's path when known: from the derivation, else from its
    /// realisation (whose path must be valid). Mirrors
    /// `queryPartialDerivationOutputMap` (the realisation is consulted only
    /// for outputs the derivation does not fix).
    pub fn output_map(
        &self,
        store: &LocalStore,
        drv_path: &StorePath,
        drv: &Derivation,
    ) -> Result<BTreeMap<String, Option<StorePath>>, BuildError> {
        let mut map = drv
            .declared_output_paths(store.store_dir())
            .map_err(|e| bad(store, drv_path, e))?;
        if map.values().all(Option::is_some) {
            return Ok(map);
        }
        let hashes = self.static_output_hashes(store, drv_path, drv)?;
        for (name, path) in map.iter_mut().filter(|(_, p)| p.is_none()) {
            let Some(h) = hashes.get(name) else { continue };
            let id = DrvOutput {
                drv_hash: *h,
                output_name: name.clone(),
            };
            if let Some(r) = self.realisation(store, &id)? {
                *path = Some(r.out_path);
            }
        }
        Ok(map)
    }

    /// [`Self::output_map`] without the outputs not realised yet.
    pub fn realised_outputs(
        &self,
        store: &LocalStore,
        drv_path: &StorePath,
        drv: &Derivation,
    ) -> Result<BTreeMap<String, StorePath>, BuildError> {
        Ok(self
            .output_map(store, drv_path, drv)?
            .into_iter()
            .filter_map(|(n, p)| p.map(|p| (n, p)))
            .collect())
    }

    /// Registers the realisations of a derivation built as it is (not
    /// resolved): its outputs under its own output hashes, as Nix's
    /// `registerOutputs` does for every pure derivation with `ca-derivations`.
    pub fn register_built(
        &self,
        store: &LocalStore,
        drv_path: &StorePath,
        drv: &Derivation,
        outputs: &BTreeMap<String, StorePath>,
    ) -> Result<(), BuildError> {
        if drv.derivation_type().is_ok_and(DerivationType::is_impure) {
            return Ok(());
        }
        let hashes = self.static_output_hashes(store, drv_path, drv)?;
        for (name, path) in outputs {
            let Some(h) = hashes.get(name) else { continue };
            if !store.is_valid(path)? {
                continue;
            }
            store.register_realisation(&Realisation {
                id: DrvOutput {
                    drv_hash: *h,
                    output_name: name.clone(),
                },
                out_path: path.clone(),
                signatures: BTreeSet::new(),
                dependent_realisations: BTreeMap::new(),
            })?;
        }
        Ok(())
    }
}

/// The realisations of `drv`'s `wanted` outputs that are not realised
/// locally, from the caches of `subst` (see
/// [`crate::substitute::Substitution::cached_realisations`]).
pub fn cached_realisations(
    store: &LocalStore,
    ca: &CaContext,
    subst: &crate::substitute::Substitution<'_>,
    drv_path: &StorePath,
    drv: &Derivation,
    wanted: &BTreeSet<String>,
) -> Result<Option<Vec<Realisation>>, BuildError> {
    let known = ca.realised_outputs(store, drv_path, drv)?;
    let hashes = ca.static_output_hashes(store, drv_path, drv)?;
    let ids: Vec<DrvOutput> = wanted
        .iter()
        .filter(|n| !known.contains_key(*n))
        .filter_map(|n| {
            hashes.get(n).map(|h| DrvOutput {
                drv_hash: *h,
                output_name: n.clone(),
            })
        })
        .collect();
    subst.cached_realisations(&ids)
}

/// Whether building `drv` goes through this module: its outputs are not known
/// in advance, or (as Nix does with `ca-derivations`) it is a fixed-output
/// derivation with input derivations, which is resolved too.
pub fn handles(drv: &Derivation) -> bool {
    match drv.derivation_type() {
        Ok(t) => !t.has_known_output_paths() || (t.is_fixed() && !drv.input_drvs.is_empty()),
        Err(_) => false,
    }
}

/// The placeholder of output `output` of the input derivation `drv_path`, as
/// the evaluator writes it for a content-addressed input. Mirrors
/// `DownstreamPlaceholder::unknownCaOutput(...).render()`.
pub fn upstream_placeholder(drv_path: &StorePath, output: &str) -> String {
    let drv_name = drv_path
        .name()
        .strip_suffix(".drv")
        .unwrap_or(drv_path.name());
    let clear = format!(
        "nix-upstream-output:{}:{}",
        drv_path.hash_part(),
        output_path_name(drv_name, output)
    );
    format!(
        "/{}",
        nixbase32::encode(HashAlgo::Sha256.digest(clear).digest())
    )
}

/// `drv` with its input derivations replaced by their realised outputs
/// (input sources), their placeholders rewritten to those paths everywhere,
/// and its deferred outputs made input-addressed from the result's own hash.
/// `None` when an input output is not realised. Mirrors
/// `Derivation::tryResolve` and `rewriteDerivation`.
pub fn try_resolve(
    store: &LocalStore,
    ca: &CaContext,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<Option<Derivation>, BuildError> {
    let mut resolved = drv.clone();
    resolved.input_drvs.clear();
    let mut rewrites: Vec<(String, String)> = Vec::new();
    for (input, wanted) in &drv.input_drvs {
        let input_drv = ca.derivation(store, input)?;
        let map = ca.output_map(store, input, &input_drv)?;
        for output in wanted {
            let Some(Some(path)) = map.get(output) else {
                eprintln!(
                    "warning: output {output} of input {} missing, aborting the resolving",
                    store.print(input)
                );
                return Ok(None);
            };
            rewrites.push((upstream_placeholder(input, output), store.print(path)));
            resolved.input_srcs.insert(path.clone());
        }
    }
    let rewrite = |v: &[u8]| -> Vec<u8> {
        let mut v = v.to_vec();
        for (from, to) in &rewrites {
            v = replace_all(&v, from.as_bytes(), to.as_bytes());
        }
        v
    };
    resolved.builder = rewrite(&resolved.builder);
    for a in resolved.args.iter_mut() {
        *a = rewrite(a);
    }
    resolved.env = resolved
        .env
        .iter()
        .map(|(k, v)| (rewrite(k), rewrite(v)))
        .collect();
    let hashes = resolved
        .hash_modulo(store.store_dir(), true, |_| {
            Err::<DrvHash, _>("a resolved derivation has no input derivations")
        })
        .map_err(|e| bad(store, drv_path, e))?;
    for (name, out) in resolved.outputs.iter_mut() {
        if matches!(out, DerivationOutput::Deferred) {
            let h = hashes.get(name).ok_or_else(|| {
                bad(
                    store,
                    drv_path,
                    format!("derivation '{}' output '{name}' has no hash", drv.name),
                )
            })?;
            let path = store
                .store_dir()
                .make_output_path(name, h, &resolved.name)
                .map_err(|e| bad(store, drv_path, e))?;
            resolved
                .env
                .insert(name.clone().into_bytes(), store.print(&path).into_bytes());
            *out = DerivationOutput::InputAddressed { path };
        }
    }
    Ok(Some(resolved))
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() || haystack.len() < from.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Realises one derivation that [`handles`] covers: resolve it (when it has
/// input derivations), then either find the resolved derivation realised
/// already (cut off) or build it, and register the realisations of both.
/// Events and the build record as [`crate::realise`] gives other builds.
pub(crate) fn realise_one(
    store: &LocalStore,
    ca: &CaContext,
    drv_path: &StorePath,
    b: &PlannedBuild,
    closure: &BTreeSet<StorePath>,
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> Result<BuildOutcome, BuildError> {
    let (resolved_path, resolved) = if b.drv.input_drvs.is_empty() {
        (drv_path.clone(), b.drv.clone())
    } else {
        let resolved =
            try_resolve(store, ca, drv_path, &b.drv)?.ok_or_else(|| BuildError::Unsupported {
                drv: store.print(drv_path),
                reason: "an output of one of its inputs is not realised".into(),
            })?;
        // Written unless there already (a cut off build's usually is).
        let path = resolved
            .drv_path(store.store_dir())
            .map_err(|e| bad(store, drv_path, e))?;
        store.add_temp_root(&path)?;
        if !store.is_valid(&path)? {
            store.add_derivation(&resolved)?;
        }
        observer.event(BuildEvent::Resolved {
            drv: drv_path,
            resolved: &path,
        });
        (path, resolved)
    };
    let resolved_hashes = ca.static_output_hashes(store, &resolved_path, &resolved)?;
    let mut resolved_outputs = ca.realised_outputs(store, &resolved_path, &resolved)?;
    let mut all_valid = resolved_outputs.len() == resolved.outputs.len();
    for p in resolved_outputs.values() {
        all_valid &= store.is_valid(p)?;
    }
    let outcome = if all_valid {
        observer.event(BuildEvent::CutOff {
            drv: drv_path,
            resolved: &resolved_path,
        });
        BuildOutcome::CutOff
    } else {
        let outcome = build_resolved(
            store,
            &resolved_path,
            &resolved,
            &b.reason,
            closure,
            opts,
            observer,
        )?;
        resolved_outputs = ca.realised_outputs(store, &resolved_path, &resolved)?;
        outcome
    };
    // Realisations of the resolved derivation's outputs under the original's
    // output hashes (with the input realisations the outputs refer to).
    if resolved_path != *drv_path && !b.drv.derivation_type().is_ok_and(|t| t.is_impure()) {
        let original = ca.static_output_hashes(store, drv_path, &b.drv)?;
        let fixed = b.drv.derivation_type().is_ok_and(|t| t.is_fixed());
        for (name, out_path) in &resolved_outputs {
            let (Some(h), Some(_)) = (original.get(name), resolved_hashes.get(name)) else {
                continue;
            };
            let dependent_realisations = if fixed {
                BTreeMap::new()
            } else {
                drv_output_references(store, ca, &b.drv, out_path)?
            };
            store.register_realisation(&Realisation {
                id: DrvOutput {
                    drv_hash: *h,
                    output_name: name.clone(),
                },
                out_path: out_path.clone(),
                signatures: BTreeSet::new(),
                dependent_realisations,
            })?;
        }
    }
    Ok(outcome)
}

/// Builds a resolved derivation (or one without inputs) with the usual
/// events and build record: a floating one through [`crate::ca_output`], any
/// other with the ordinary builder; registers its realisations.
fn build_resolved(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
    reason: &str,
    closure: &BTreeSet<StorePath>,
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> Result<BuildOutcome, BuildError> {
    let floating = matches!(
        drv.derivation_type(),
        Ok(DerivationType::ContentAddressed { fixed: false })
    );
    let outputs: BTreeMap<String, StorePath> = if floating {
        drv.outputs
            .keys()
            .map(|n| {
                Ok((
                    n.clone(),
                    crate::builder::fallback_path(store, drv_path, &drv.name, n)?,
                ))
            })
            .collect::<Result<_, BuildError>>()?
    } else {
        crate::plan::output_paths(store, drv_path, drv)?
    };
    for p in outputs.values() {
        store.add_temp_root(p)?;
    }
    observer.event(BuildEvent::Started {
        drv: drv_path,
        reason,
    });
    let start = Instant::now();
    let job = BuildJob {
        drv_path,
        drv,
        outputs: &outputs,
        input_closure: closure,
        reason,
        check: false,
    };
    let started_at = rix_store::path_info::now();
    let result = if floating {
        crate::ca_output::build_floating(store, &job, &opts.settings, observer)
    } else {
        crate::builder::build(store, &job, &opts.settings, observer)
    };
    let result = result.and_then(|outcome| {
        if !floating {
            let ca = CaContext::default();
            ca.register_built(store, drv_path, drv, &outputs)?;
        }
        Ok(outcome)
    });
    let error = result.as_ref().err().map(|e| e.to_string());
    let status = match &result {
        Ok(BuildOutcome::AlreadyValid) => "built by another process".to_owned(),
        Ok(_) => "built".to_owned(),
        Err(e) => format!(
            "failed: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    };
    let _ = store.db().record_build(
        drv_path,
        reason,
        started_at,
        rix_store::path_info::now(),
        &status,
    );
    observer.event(BuildEvent::Finished {
        drv: drv_path,
        elapsed: start.elapsed(),
        error: error.as_deref(),
    });
    result
}

/// The realisations of `drv`'s inputs (and theirs, transitively) whose output
/// paths `out_path` refers to. Mirrors `drvOutputReferences`; inputs without a
/// realisation (built before `ca-derivations` was on) are left out.
fn drv_output_references(
    store: &LocalStore,
    ca: &CaContext,
    drv: &Derivation,
    out_path: &StorePath,
) -> Result<BTreeMap<DrvOutput, StorePath>, BuildError> {
    let mut queue: Vec<Realisation> = Vec::new();
    for (input, wanted) in &drv.input_drvs {
        let input_drv = ca.derivation(store, input)?;
        let hashes = ca.static_output_hashes(store, input, &input_drv)?;
        for output in wanted {
            let Some(h) = hashes.get(output) else {
                continue;
            };
            let id = DrvOutput {
                drv_hash: *h,
                output_name: output.clone(),
            };
            if let Some(r) = ca.realisation(store, &id)? {
                queue.push(r);
            }
        }
    }
    // `Realisation::closure`.
    let mut closure: BTreeMap<DrvOutput, StorePath> = BTreeMap::new();
    while let Some(r) = queue.pop() {
        if closure.contains_key(&r.id) {
            continue;
        }
        for dep in r.dependent_realisations.keys() {
            if !closure.contains_key(dep) {
                if let Some(d) = ca.realisation(store, dep)? {
                    queue.push(d);
                }
            }
        }
        closure.insert(r.id, r.out_path);
    }
    let refs = store.path_info(out_path)?.references;
    Ok(closure
        .into_iter()
        .filter(|(_, p)| refs.contains(p))
        .collect())
}

/// Fills in the output paths of targets not known before they were built
/// (from their realisations).
pub(crate) fn fill_target_outputs(
    store: &LocalStore,
    outputs: &mut BTreeMap<StorePath, BTreeMap<String, StorePath>>,
) -> Result<(), BuildError> {
    if !store.ca_derivations() {
        return Ok(());
    }
    let ca = CaContext::default();
    for (drv_path, outs) in outputs.iter_mut() {
        let drv = crate::plan::read_derivation(store, drv_path)?;
        if outs.len() == drv.outputs.len() {
            continue;
        }
        for (n, p) in ca.realised_outputs(store, drv_path, &drv)? {
            outs.entry(n).or_insert(p);
        }
    }
    Ok(())
}
