//! Deciding what to build: walk the derivation graph from the targets, stopping at
//! derivations whose outputs are all valid already (their inputs are then not
//! needed at all), and collect the rest with their dependency edges.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rix_formats::derivation::Derivation;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;

use crate::error::BuildError;

/// A derivation that must be built.
#[derive(Debug)]
pub struct PlannedBuild {
    pub drv_path: StorePath,
    pub drv: Derivation,
    /// Output name → path.
    pub outputs: BTreeMap<String, StorePath>,
    /// Derivations in the plan that must be built first.
    pub deps: BTreeSet<StorePath>,
    /// Why it must be built.
    pub reason: String,
}

/// The result of planning.
#[derive(Debug, Default)]
pub struct Plan {
    /// Derivations to build, keyed by path.
    pub builds: BTreeMap<StorePath, PlannedBuild>,
    /// Output paths of every target (name → path), valid or to be built.
    pub target_outputs: BTreeMap<StorePath, BTreeMap<String, StorePath>>,
    /// Derivations whose missing outputs are substituted instead (drv → outputs);
    /// see [`crate::substitute`].
    pub substitutes: BTreeMap<StorePath, Vec<StorePath>>,
}

/// Reads and parses a `.drv` from the store.
pub fn read_derivation(store: &LocalStore, drv_path: &StorePath) -> Result<Derivation, BuildError> {
    let printed = store.print(drv_path);
    if !store.is_valid(drv_path)? {
        return Err(BuildError::MissingDerivation(printed));
    }
    let real = store.real_path(drv_path);
    let bytes = std::fs::read(&real).map_err(BuildError::io(&real))?;
    let name = Derivation::name_from_drv_path(drv_path);
    Derivation::from_aterm(&bytes, store.store_dir(), name).map_err(|e| BuildError::BadDerivation {
        path: printed,
        message: e.to_string(),
    })
}

/// Output name → path of a derivation whose output paths are known in advance.
pub fn output_paths(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<BTreeMap<String, StorePath>, BuildError> {
    let declared =
        drv.declared_output_paths(store.store_dir())
            .map_err(|e| BuildError::BadDerivation {
                path: store.print(drv_path),
                message: e.to_string(),
            })?;
    declared
        .into_iter()
        .map(|(name, p)| {
            p.map(|p| (name.clone(), p)).ok_or_else(|| BuildError::Unsupported {
                drv: store.print(drv_path),
                reason: format!(
                    "output '{name}' is content-addressed with a floating hash (ca-derivations are not supported yet)"
                ),
            })
        })
        .collect()
}

/// Plans the realisation of `targets` (see the module docs).
pub fn plan(store: &LocalStore, targets: &[StorePath]) -> Result<Plan, BuildError> {
    plan_with(store, targets, None)
}

/// Plans, substituting derivations' outputs rather than building them when
/// `subst` can (see [`crate::substitute`]).
pub fn plan_with(
    store: &LocalStore,
    targets: &[StorePath],
    subst: Option<&crate::substitute::Substitution<'_>>,
) -> Result<Plan, BuildError> {
    let mut plan = Plan::default();
    // Derivations already examined: Some(needs build) once known.
    let mut seen: HashMap<StorePath, bool> = HashMap::new();
    // Iterative post-order DFS: (drv, children pushed?)
    let mut stack: Vec<(StorePath, bool)> =
        targets.iter().rev().map(|t| (t.clone(), false)).collect();
    let mut pending: HashMap<StorePath, (Derivation, BTreeMap<String, StorePath>, String)> =
        HashMap::new();
    while let Some((drv_path, expanded)) = stack.pop() {
        if expanded {
            let (drv, outputs, reason) =
                pending.remove(&drv_path).expect("expanded node is pending");
            let deps = drv
                .input_drvs
                .keys()
                .filter(|d| seen.get(*d) == Some(&true))
                .cloned()
                .collect();
            plan.builds.insert(
                drv_path.clone(),
                PlannedBuild {
                    drv_path,
                    drv,
                    outputs,
                    deps,
                    reason,
                },
            );
            continue;
        }
        if seen.contains_key(&drv_path) {
            continue;
        }
        let drv = read_derivation(store, &drv_path)?;
        let outputs = output_paths(store, &drv_path, &drv)?;
        if targets.contains(&drv_path) {
            plan.target_outputs
                .insert(drv_path.clone(), outputs.clone());
        }
        let mut invalid = Vec::new();
        for (name, p) in &outputs {
            if !store.is_valid(p)? {
                invalid.push(format!("'{name}' ({})", store.print(p)));
            }
        }
        if invalid.is_empty() {
            seen.insert(drv_path, false);
            continue;
        }
        // --- substitution (rix-substitute): fetch rather than build ---
        if let Some(sub) = subst {
            let mut missing = Vec::new();
            for p in outputs.values() {
                if !store.is_valid(p)? {
                    missing.push(p.clone());
                }
            }
            if sub.can_substitute(store, &drv_path, &missing)? {
                plan.substitutes.insert(drv_path.clone(), missing);
                seen.insert(drv_path, false);
                continue;
            }
        }
        // --- end substitution ---
        for src in &drv.input_srcs {
            if !store.is_valid(src)? {
                return Err(BuildError::BadDerivation {
                    path: store.print(&drv_path),
                    message: format!(
                        "its input source '{}' is not valid in the store",
                        store.print(src)
                    ),
                });
            }
        }
        seen.insert(drv_path.clone(), true);
        let reason = format!("output {} not valid", invalid.join(", "));
        stack.push((drv_path.clone(), true));
        for input in drv.input_drvs.keys() {
            if !seen.contains_key(input) {
                stack.push((input.clone(), false));
            }
        }
        pending.insert(drv_path, (drv, outputs, reason));
    }
    Ok(plan)
}

/// The plan of `--check`: rebuild exactly the targets, whose outputs (and so
/// inputs) must already be valid.
pub fn check_plan(store: &LocalStore, targets: &[StorePath]) -> Result<Plan, BuildError> {
    let mut plan = Plan::default();
    for t in targets {
        let drv = read_derivation(store, t)?;
        let outputs = output_paths(store, t, &drv)?;
        plan.target_outputs.insert(t.clone(), outputs.clone());
        plan.builds.insert(
            t.clone(),
            PlannedBuild {
                drv_path: t.clone(),
                drv,
                outputs,
                deps: BTreeSet::new(),
                reason: "checking that a rebuild gives identical outputs (--check)".into(),
            },
        );
    }
    Ok(plan)
}
