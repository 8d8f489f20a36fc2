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
    /// Derivations resolved in the scheduler ([`cut_off_ready`]) that must
    /// build after all: their resolution, for [`realise_one`].
    resolved: Mutex<HashMap<StorePath, Resolution>>,
}

/// A derivation resolved: the resolved derivation and its path.
type Resolution = (StorePath, std::sync::Arc<Derivation>);

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

    fn keep_resolution(&self, drv_path: &StorePath, r: Resolution) {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(drv_path.clone(), r);
    }

    /// Remembers realisations just registered (their dependents look them up).
    fn remember(&self, rs: &[Realisation]) {
        let mut known = self.realisations.lock().unwrap_or_else(|e| e.into_inner());
        for r in rs {
            known.insert(r.id.clone(), r.clone());
        }
    }

    fn has_resolution(&self, drv_path: &StorePath) -> bool {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(drv_path)
    }

    fn take_resolution(&self, drv_path: &StorePath) -> Option<Resolution> {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(drv_path)
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
        let mut realisations = Vec::new();
        for (name, path) in outputs {
            let Some(h) = hashes.get(name) else { continue };
            if !store.is_valid(path)? {
                continue;
            }
            realisations.push(Realisation {
                id: DrvOutput {
                    drv_hash: *h,
                    output_name: name.clone(),
                },
                out_path: path.clone(),
                signatures: BTreeSet::new(),
                dependent_realisations: BTreeMap::new(),
            });
        }
        store.sign_realisations(&mut realisations)?;
        store.register_realisations(&realisations)?;
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
        (drv_path.clone(), std::sync::Arc::new(b.drv.clone()))
    } else {
        let (path, resolved) = match ca.take_resolution(drv_path) {
            Some(r) => r,
            None => {
                resolve(store, ca, drv_path, &b.drv)?.ok_or_else(|| BuildError::Unsupported {
                    drv: store.print(drv_path),
                    reason: "an output of one of its inputs is not realised".into(),
                })?
            }
        };
        // Written unless there already (a cut off build's usually is);
        // without a sync, as Nix writes text files (`fsync-store-paths`).
        store.add_derivations(std::slice::from_ref(&*resolved), false)?;
        observer.event(BuildEvent::Resolved {
            drv: drv_path,
            resolved: &path,
        });
        (path, resolved)
    };
    if let Some(outputs) = realised_valid(store, ca, &resolved_path, &resolved)? {
        observer.event(BuildEvent::CutOff {
            drv: drv_path,
            resolved: &resolved_path,
        });
        return finish_cut_off(store, ca, drv_path, b, &resolved_path, &resolved, &outputs);
    }
    let outcome = build_resolved(
        store,
        &resolved_path,
        &resolved,
        &b.reason,
        closure,
        opts,
        observer,
    )?;
    let outputs = ca.realised_outputs(store, &resolved_path, &resolved)?;
    let realisations =
        original_realisations(store, ca, drv_path, b, &resolved_path, &resolved, &outputs)?;
    store.register_realisations(&realisations)?;
    ca.remember(&realisations);
    Ok(outcome)
}

/// Registers the realisations of a cut-off derivation (see
/// [`original_realisations`]).
fn finish_cut_off(
    store: &LocalStore,
    ca: &CaContext,
    drv_path: &StorePath,
    b: &PlannedBuild,
    resolved_path: &StorePath,
    resolved: &Derivation,
    outputs: &BTreeMap<String, StorePath>,
) -> Result<BuildOutcome, BuildError> {
    let realisations =
        original_realisations(store, ca, drv_path, b, resolved_path, resolved, outputs)?;
    store.register_realisations(&realisations)?;
    ca.remember(&realisations);
    Ok(BuildOutcome::CutOff)
}

/// `drv` resolved ([`try_resolve`]) with its path; `None` when an input's
/// output is not realised.
fn resolve(
    store: &LocalStore,
    ca: &CaContext,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<Option<Resolution>, BuildError> {
    let Some(resolved) = try_resolve(store, ca, drv_path, drv)? else {
        return Ok(None);
    };
    let path = resolved
        .drv_path(store.store_dir())
        .map_err(|e| bad(store, drv_path, e))?;
    Ok(Some((path, std::sync::Arc::new(resolved))))
}

/// The outputs of the resolved derivation when all are realised and valid
/// (the build is cut off), else `None`.
fn realised_valid(
    store: &LocalStore,
    ca: &CaContext,
    resolved_path: &StorePath,
    resolved: &Derivation,
) -> Result<Option<BTreeMap<String, StorePath>>, BuildError> {
    let outputs = ca.realised_outputs(store, resolved_path, resolved)?;
    if outputs.len() != resolved.outputs.len() {
        return Ok(None);
    }
    let wanted: BTreeSet<StorePath> = outputs.values().cloned().collect();
    let valid = store.query_valid_paths(&wanted)?;
    Ok((valid.len() == wanted.len()).then_some(outputs))
}

/// The realisations of the resolved derivation's outputs under the
/// original's output hashes (with the input realisations the outputs refer
/// to), as Nix's `resolvedFinished` registers them.
fn original_realisations(
    store: &LocalStore,
    ca: &CaContext,
    drv_path: &StorePath,
    b: &PlannedBuild,
    resolved_path: &StorePath,
    resolved: &Derivation,
    resolved_outputs: &BTreeMap<String, StorePath>,
) -> Result<Vec<Realisation>, BuildError> {
    let mut out = Vec::new();
    if resolved_path == drv_path || b.drv.derivation_type().is_ok_and(|t| t.is_impure()) {
        return Ok(out);
    }
    let resolved_hashes = ca.static_output_hashes(store, resolved_path, resolved)?;
    let original = ca.static_output_hashes(store, drv_path, &b.drv)?;
    let fixed = b.drv.derivation_type().is_ok_and(|t| t.is_fixed());
    for (name, out_path) in resolved_outputs {
        let (Some(h), Some(_)) = (original.get(name), resolved_hashes.get(name)) else {
            continue;
        };
        let dependent_realisations = if fixed {
            BTreeMap::new()
        } else {
            drv_output_references(store, ca, &b.drv, out_path)?
        };
        out.push(Realisation {
            id: DrvOutput {
                drv_hash: *h,
                output_name: name.clone(),
            },
            out_path: out_path.clone(),
            signatures: BTreeSet::new(),
            dependent_realisations,
        });
    }
    store.sign_realisations(&mut out)?;
    Ok(out)
}

/// Early cutoff in the scheduler, without a builder: of the `ready` builds,
/// those that resolve to derivations realised already are finished here,
/// their resolved `.drv`s written in one batch (without a sync, as Nix
/// writes text files) and their realisations registered in one transaction.
/// Returns them with their outcome and leaves the others in `ready` (their
/// resolution kept for [`realise_one`]). Should the batch fail, its builds
/// stay in `ready` and the builders report their errors one by one.
/// Mirrors what Nix's `DerivationGoal::inputsRealised` does for a resolved
/// derivation whose outputs are known.
pub(crate) fn cut_off_ready<'a>(
    store: &LocalStore,
    builds: &'a BTreeMap<StorePath, PlannedBuild>,
    ready: &mut std::collections::VecDeque<&'a StorePath>,
    observer: &dyn Observer,
) -> Vec<(&'a StorePath, Result<BuildOutcome, BuildError>)> {
    let mut done = Vec::new();
    let mut keep = std::collections::VecDeque::new();
    let mut cut: Vec<(&'a StorePath, Resolution, BTreeMap<String, StorePath>)> = Vec::new();
    for p in ready.drain(..) {
        let b = &builds[p];
        let Some(ca) = b
            .ca
            .as_deref()
            .filter(|ca| handles(&b.drv) && !b.drv.input_drvs.is_empty() && !ca.has_resolution(p))
        else {
            keep.push_back(p);
            continue;
        };
        let found = resolve(store, ca, p, &b.drv).and_then(|r| match r {
            Some((rp, rd)) => {
                let outputs = realised_valid(store, ca, &rp, &rd)?;
                Ok(Some(((rp, rd), outputs)))
            }
            None => Ok(None),
        });
        match found {
            Ok(Some((resolution, Some(outputs)))) => cut.push((p, resolution, outputs)),
            Ok(Some((resolution, None))) => {
                ca.keep_resolution(p, resolution);
                keep.push_back(p);
            }
            // An input's output not realised: the builder reports it.
            Ok(None) => keep.push_back(p),
            Err(e) => done.push((p, Err(e))),
        }
    }
    *ready = keep;
    if cut.is_empty() {
        return done;
    }
    let settled = (|| -> Result<(), BuildError> {
        let drvs: Vec<Derivation> = cut.iter().map(|(_, (_, d), _)| (**d).clone()).collect();
        store.add_derivations(&drvs, false)?;
        let mut realisations = Vec::new();
        for (p, (rp, rd), outputs) in &cut {
            let b = &builds[*p];
            let ca = b.ca.as_deref().expect("filtered above");
            realisations.extend(original_realisations(store, ca, p, b, rp, rd, outputs)?);
        }
        store.register_realisations(&realisations)?;
        for (p, _, _) in &cut {
            if let Some(ca) = builds[*p].ca.as_deref() {
                ca.remember(&realisations);
                break;
            }
        }
        Ok(())
    })();
    if settled.is_err() {
        for (p, resolution, _) in cut {
            if let Some(ca) = builds[p].ca.as_deref() {
                ca.keep_resolution(p, resolution);
            }
            ready.push_back(p);
        }
        return done;
    }
    for (p, (rp, _), _) in &cut {
        observer.event(BuildEvent::Resolved {
            drv: p,
            resolved: rp,
        });
        observer.event(BuildEvent::CutOff {
            drv: p,
            resolved: rp,
        });
        done.push((*p, Ok(BuildOutcome::CutOff)));
    }
    done
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
