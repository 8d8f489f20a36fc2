//! Substituting instead of building: while planning, a derivation whose missing
//! outputs (with their runtime closures) can all be fetched from a binary cache
//! is not built, and its inputs are not needed at all; before the builds start,
//! those outputs are fetched. With `fallback`, a failed download makes the
//! derivation be built instead; without it, the realisation fails, as in Nix.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_substitute::{SubstEvent, SubstObserver, Substituter};

use crate::error::BuildError;
use crate::events::{BuildEvent, Observer};
use crate::plan::{plan_with, Plan};

/// Forwards substitution events to a build observer.
pub struct Bridge<'a>(pub &'a dyn Observer);

impl SubstObserver for Bridge<'_> {
    fn event(&self, event: SubstEvent<'_>) {
        self.0.event(BuildEvent::Substitution(event));
    }
}

/// The substituters one realisation uses, and what failed to download.
pub struct Substitution<'a> {
    pub substituter: &'a Substituter,
    pub observer: &'a dyn Observer,
    /// Outputs whose substitution failed in this realisation: build them.
    failed: Mutex<HashSet<StorePath>>,
    /// Realisations found in caches while planning, registered once their
    /// output paths are fetched (see [`Self::cached_realisations`]).
    pending: Mutex<Vec<rix_store::realisations::Realisation>>,
}

impl<'a> Substitution<'a> {
    pub fn new(substituter: &'a Substituter, observer: &'a dyn Observer) -> Self {
        Self {
            substituter,
            observer,
            failed: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The realisations of `ids` that a cache has (the first cache, in
    /// priority order, with each; signed by a trusted key unless
    /// `require-sigs` is off or the cache is trusted), or `None` when one is
    /// in none. Substitution asks for realisations first: they give the
    /// output paths to fetch. Mirrors `DrvOutputSubstitutionGoal`.
    pub fn cached_realisations(
        &self,
        ids: &[rix_store::realisations::DrvOutput],
    ) -> Result<Option<Vec<rix_store::realisations::Realisation>>, BuildError> {
        let bridge = Bridge(self.observer);
        let config = self.substituter.config();
        let trusted = config
            .require_sigs
            .then_some(config.trusted_keys.as_slice());
        let mut found = Vec::new();
        'ids: for id in ids {
            for cache in self.substituter.caches(&bridge) {
                let r = rix_substitute::realisations::query_realisation(
                    cache.store.as_ref(),
                    id,
                    trusted.filter(|_| !cache.trusted),
                );
                match r {
                    Ok(Some(r)) => {
                        found.push(r);
                        continue 'ids;
                    }
                    Ok(None) => {}
                    Err(e) => self
                        .observer
                        .event(BuildEvent::Substitution(SubstEvent::Warning {
                            message: &e.to_string(),
                        })),
                }
            }
            return Ok(None);
        }
        Ok(Some(found))
    }

    /// Remembers realisations to register once their paths are valid.
    pub fn expect_realisations(&self, rs: Vec<rix_store::realisations::Realisation>) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(rs);
    }

    /// Registers the remembered realisations whose output paths are valid
    /// now. Dependencies the local store lacks are left out of them.
    pub fn register_realisations(&self, store: &LocalStore) -> Result<(), BuildError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for mut r in pending {
            if !store.is_valid(&r.out_path)? {
                continue;
            }
            let mut deps = std::collections::BTreeMap::new();
            for (id, p) in std::mem::take(&mut r.dependent_realisations) {
                if store
                    .query_realisation(&id)?
                    .is_some_and(|l| l.out_path == p)
                {
                    deps.insert(id, p);
                }
            }
            r.dependent_realisations = deps;
            store.register_realisation(&r)?;
        }
        Ok(())
    }

    /// Whether all of `outputs` (missing outputs of one derivation) can be fetched
    /// with their closures. A cache that cannot be asked is an error unless
    /// `fallback` is set, as in Nix.
    pub fn can_substitute(
        &self,
        store: &LocalStore,
        drv: &StorePath,
        outputs: &[StorePath],
    ) -> Result<bool, BuildError> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if outputs.iter().any(|o| failed.contains(o)) {
            return Ok(false);
        }
        drop(failed);
        let bridge = Bridge(self.observer);
        let plan = self
            .substituter
            .plan(store, outputs, &bridge)
            .map_err(|e| BuildError::Substitution(e.to_string()))?;
        if plan.complete() {
            return Ok(true);
        }
        if !plan.errors.is_empty() {
            let problem = plan.problem(store.store_dir());
            if !self.substituter.config().fallback {
                return Err(BuildError::Substitution(format!(
                    "cannot query the substituters for the outputs of '{}' (use --fallback to build instead):\n{problem}",
                    store.print(drv)
                )));
            }
            self.observer
                .event(BuildEvent::Substitution(SubstEvent::Warning {
                    message: &format!("building '{}' because: {problem}", store.print(drv)),
                }));
        }
        Ok(false)
    }
}

/// Fetches what `plan` substitutes. On failure with `fallback`, plans again
/// (building what could not be fetched); without it, fails. Returns the plan to
/// build and the paths fetched.
pub fn substitute_planned(
    store: &LocalStore,
    mut plan: Plan,
    targets: &[StorePath],
    subst: &Substitution<'_>,
) -> Result<(Plan, Vec<StorePath>), BuildError> {
    let mut fetched = Vec::new();
    loop {
        if plan.substitutes.is_empty() || crate::running::cancelled() {
            return Ok((plan, fetched));
        }
        let paths: Vec<StorePath> = plan
            .substitutes
            .values()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let bridge = Bridge(subst.observer);
        let report = subst
            .substituter
            .substitute(store, &paths, &bridge)
            .map_err(|e| BuildError::Substitution(e.to_string()))?;
        fetched.extend(report.substituted.iter().cloned());
        subst.register_realisations(store)?;
        if report.succeeded() {
            return Ok((plan, fetched));
        }
        let problem = report.problem(store.store_dir());
        let broken: Vec<&StorePath> = plan
            .substitutes
            .iter()
            .filter(|(_, outs)| outs.iter().any(|o| !store.is_valid(o).unwrap_or(false)))
            .map(|(d, _)| d)
            .collect();
        if !subst.substituter.config().fallback {
            let drvs: Vec<String> = broken
                .iter()
                .map(|d| format!("'{}'", store.print(d)))
                .collect();
            return Err(BuildError::Substitution(format!(
                "some substitutes for the outputs of derivation {} failed (usually happens due to networking issues); try '--fallback' to build derivation from source\n{problem}",
                drvs.join(", ")
            )));
        }
        subst
            .observer
            .event(BuildEvent::Substitution(SubstEvent::Warning {
                message: &format!("substitution failed, building instead (--fallback):\n{problem}"),
            }));
        {
            let mut failed = subst.failed.lock().unwrap_or_else(|e| e.into_inner());
            for (_, outs) in plan.substitutes.iter().filter(|(d, _)| broken.contains(d)) {
                failed.extend(outs.iter().cloned());
            }
        }
        plan = plan_with(store, targets, Some(subst))?;
    }
}

/// Makes plain store paths (not derivations) valid, as `nix-store -r PATH` and
/// `nix build PATH` do: a valid path is its own result; a missing one is fetched
/// with its closure from the caches. No cache having it is Nix's
/// [`BuildError::NoSubstituter`]. Returns the paths fetched.
pub fn realise_paths(
    store: &LocalStore,
    paths: &[StorePath],
    substituter: Option<&Substituter>,
    observer: &dyn Observer,
) -> Result<Vec<StorePath>, BuildError> {
    let mut missing = Vec::new();
    for p in paths {
        if !store.is_valid(p)? && !missing.contains(p) {
            missing.push(p.clone());
        }
    }
    let Some(first) = missing.first() else {
        return Ok(Vec::new());
    };
    let Some(substituter) = substituter else {
        return Err(BuildError::NoSubstituter(store.print(first)));
    };
    let bridge = Bridge(observer);
    let plan = substituter
        .plan(store, &missing, &bridge)
        .map_err(|e| BuildError::Substitution(e.to_string()))?;
    if let Some((p, _)) = plan
        .unavailable
        .iter()
        .find(|(p, _)| missing.contains(p))
        .filter(|_| plan.errors.is_empty())
    {
        return Err(BuildError::NoSubstituter(store.print(p)));
    }
    if !plan.complete() {
        return Err(BuildError::Substitution(format!(
            "cannot substitute {}:\n{}",
            missing
                .iter()
                .map(|p| format!("'{}'", store.print(p)))
                .collect::<Vec<_>>()
                .join(", "),
            plan.problem(store.store_dir())
        )));
    }
    let report = substituter.fetch(store, plan, &bridge);
    if !report.succeeded() {
        return Err(BuildError::Substitution(report.problem(store.store_dir())));
    }
    Ok(report.substituted)
}
