//! Deciding what to build: walk the derivation graph from the targets, stopping at
//! derivations whose outputs are all valid already (their inputs are then not
//! needed at all), and collect the rest with their dependency edges.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rix_formats::derivation::Derivation;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;

use std::sync::Arc;

use crate::error::BuildError;
use crate::resolve::CaContext;

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
    /// With `ca-derivations`: realisations, resolution (see [`crate::resolve`]).
    /// `outputs` then lacks the outputs not realised yet.
    pub ca: Option<Arc<CaContext>>,
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

impl Plan {
    /// The derivations to build, each after the ones it depends on: the
    /// order Nix lists them in ("these N derivations will be built:", a
    /// depth-first walk in path order, `topoSortPaths` reversed).
    pub fn build_order(&self) -> Vec<StorePath> {
        fn visit<'a>(
            plan: &'a Plan,
            path: &'a StorePath,
            seen: &mut BTreeSet<&'a StorePath>,
            out: &mut Vec<StorePath>,
        ) {
            if !seen.insert(path) {
                return;
            }
            if let Some(b) = plan.builds.get(path) {
                for d in &b.deps {
                    if plan.builds.contains_key(d) {
                        visit(plan, d, seen, out);
                    }
                }
            }
            out.push(path.clone());
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(self.builds.len());
        for p in self.builds.keys() {
            visit(self, p, &mut seen, &mut out);
        }
        out
    }
}

/// Reads and parses a `.drv` from the store. Its outputs are checked when it
/// became valid; [`plan_with`] checks them again for those it will build.
pub fn read_derivation(store: &LocalStore, drv_path: &StorePath) -> Result<Derivation, BuildError> {
    let printed = store.print(drv_path);
    if !store.is_valid(drv_path)? {
        return Err(BuildError::MissingDerivation(printed));
    }
    let real = store.real_path(drv_path);
    let bytes = std::fs::read(&real).map_err(BuildError::io(&real))?;
    let name = Derivation::name_from_drv_path(drv_path);
    let drv = Derivation::from_aterm(&bytes, store.store_dir(), name).map_err(|e| {
        BuildError::BadDerivation {
            path: printed,
            message: e.to_string(),
        }
    })?;
    Ok(drv)
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
                    "experimental Nix feature 'ca-derivations' is disabled; add '--extra-experimental-features ca-derivations' to enable it (output '{name}' is known only once built)"
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
///
/// Only the *wanted* outputs of a derivation decide whether it is built: all of a
/// target's, and of an input derivation those its (to be built) dependents use.
/// Wanted sets only grow, so a derivation is re-examined when its set grows.
pub fn plan_with(
    store: &LocalStore,
    targets: &[StorePath],
    subst: Option<&crate::substitute::Substitution<'_>>,
) -> Result<Plan, BuildError> {
    let mut plan = Plan::default();
    let mut nodes: HashMap<StorePath, Node> = HashMap::new();
    let mut queue: Vec<StorePath> = Vec::new();
    let ca = store
        .ca_derivations()
        .then(|| Arc::new(CaContext::default()));
    for t in targets {
        let node = load_node(store, ca.as_deref(), &mut nodes, t)?;
        let all: BTreeSet<String> = node.drv.outputs.keys().cloned().collect();
        plan.target_outputs.insert(t.clone(), node.outputs.clone());
        if want(node, all) {
            queue.push(t.clone());
        }
    }
    while let Some(drv_path) = queue.pop() {
        let node = &nodes[&drv_path];
        if node.build {
            continue;
        }
        let mut invalid = Vec::new();
        let mut missing = Vec::new();
        for name in &node.wanted {
            let Some(p) = node.outputs.get(name) else {
                // Content-addressed, not realised (see `crate::resolve`).
                invalid.push(format!("'{name}' (not realised)"));
                continue;
            };
            if !store.is_valid(p)? {
                invalid.push(format!("'{name}' ({})", store.print(p)));
                missing.push(p.clone());
            }
        }
        if invalid.is_empty() {
            continue;
        }
        // --- substitution (rix-substitute): fetch rather than build ---
        // Outputs not realised: realisations in a cache name their paths.
        if let (Some(sub), Some(ca)) = (subst, ca.as_deref()) {
            if missing.len() != invalid.len() {
                let node = &nodes[&drv_path];
                if let Some(found) = crate::resolve::cached_realisations(
                    store,
                    ca,
                    sub,
                    &drv_path,
                    &node.drv,
                    &node.wanted,
                )? {
                    let mut fetch = missing.clone();
                    for r in &found {
                        if !store.is_valid(&r.out_path)? {
                            fetch.push(r.out_path.clone());
                        }
                    }
                    if sub.can_substitute(store, &drv_path, &fetch)? {
                        sub.expect_realisations(found);
                        let entry = plan.substitutes.entry(drv_path.clone()).or_default();
                        entry.extend(fetch);
                        entry.sort();
                        entry.dedup();
                        continue;
                    }
                }
            }
        }
        if let Some(sub) = subst.filter(|_| missing.len() == invalid.len()) {
            if sub.can_substitute(store, &drv_path, &missing)? {
                let entry = plan.substitutes.entry(drv_path.clone()).or_default();
                entry.extend(missing);
                entry.sort();
                entry.dedup();
                continue;
            }
        }
        // --- end substitution ---
        for src in &node.drv.input_srcs {
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
        // Checked when it became valid, and again now that it will build: a
        // store written by something that did not check (an older rix, an
        // edited database) must not let a derivation build into another one's
        // output paths (see `rix_store::drv_check`). Only derivations that
        // build are checked: a no-op rebuild reads no input derivations.
        store.check_derivation(&drv_path, &node.drv)?;
        let node = nodes.get_mut(&drv_path).expect("loaded");
        node.build = true;
        node.reason = format!("output {} not valid", invalid.join(", "));
        let inputs: Vec<(StorePath, BTreeSet<String>)> = node
            .drv
            .input_drvs
            .iter()
            .map(|(p, o)| (p.clone(), o.clone()))
            .collect();
        for (input, used) in inputs {
            let child = load_node(store, ca.as_deref(), &mut nodes, &input)?;
            if want(child, used) && !child.build {
                queue.push(input);
            }
        }
    }
    // A derivation being built no longer needs its outputs substituted.
    plan.substitutes
        .retain(|d, _| !nodes.get(d).is_some_and(|n| n.build));
    for (drv_path, node) in nodes {
        if !node.build {
            continue;
        }
        plan.builds.insert(
            drv_path.clone(),
            PlannedBuild {
                drv_path,
                drv: node.drv,
                outputs: node.outputs,
                deps: BTreeSet::new(),
                reason: node.reason,
                ca: ca.clone(),
            },
        );
    }
    let building: BTreeSet<StorePath> = plan.builds.keys().cloned().collect();
    for b in plan.builds.values_mut() {
        b.deps = b
            .drv
            .input_drvs
            .keys()
            .filter(|d| building.contains(*d))
            .cloned()
            .collect();
    }
    Ok(plan)
}

/// A derivation met while planning.
struct Node {
    drv: Derivation,
    outputs: BTreeMap<String, StorePath>,
    wanted: BTreeSet<String>,
    build: bool,
    reason: String,
}

fn load_node<'a>(
    store: &LocalStore,
    ca: Option<&CaContext>,
    nodes: &'a mut HashMap<StorePath, Node>,
    drv_path: &StorePath,
) -> Result<&'a mut Node, BuildError> {
    if !nodes.contains_key(drv_path) {
        let drv = temp_rooted_derivation(store, drv_path)?;
        let outputs = match ca {
            // Known in advance, or from realisations.
            Some(ca) => {
                let outputs = ca.realised_outputs(store, drv_path, &drv)?;
                for p in outputs.values() {
                    store.add_temp_root(p)?;
                }
                outputs
            }
            None => temp_rooted_outputs(store, drv_path, &drv)?,
        };
        nodes.insert(
            drv_path.clone(),
            Node {
                drv,
                outputs,
                wanted: BTreeSet::new(),
                build: false,
                reason: String::new(),
            },
        );
    }
    Ok(nodes.get_mut(drv_path).expect("just inserted"))
}

/// [`read_derivation`], after making the derivation a temporary GC root: a
/// collector running meanwhile keeps it and its closure (input derivations
/// and sources) until this process exits.
fn temp_rooted_derivation(
    store: &LocalStore,
    drv_path: &StorePath,
) -> Result<Derivation, BuildError> {
    store.add_temp_root(drv_path)?;
    read_derivation(store, drv_path)
}

/// [`output_paths`], each made a temporary GC root before anyone looks at its
/// validity: valid ones stay for the dependents, and an output being built
/// (its lock and temporary files) is left alone.
fn temp_rooted_outputs(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<BTreeMap<String, StorePath>, BuildError> {
    let outputs = output_paths(store, drv_path, drv)?;
    for p in outputs.values() {
        store.add_temp_root(p)?;
    }
    Ok(outputs)
}

/// Adds outputs to a node's wanted set; true when the set grew.
fn want(node: &mut Node, outputs: BTreeSet<String>) -> bool {
    let before = node.wanted.len();
    node.wanted.extend(
        outputs
            .into_iter()
            .filter(|o| node.drv.outputs.contains_key(o)),
    );
    node.wanted.len() > before
}

/// The plan of `--check`: rebuild exactly the targets, whose outputs (and so
/// inputs) must already be valid.
pub fn check_plan(store: &LocalStore, targets: &[StorePath]) -> Result<Plan, BuildError> {
    let mut plan = Plan::default();
    for t in targets {
        let drv = temp_rooted_derivation(store, t)?;
        let outputs = temp_rooted_outputs(store, t, &drv)?;
        plan.target_outputs.insert(t.clone(), outputs.clone());
        plan.builds.insert(
            t.clone(),
            PlannedBuild {
                drv_path: t.clone(),
                drv,
                outputs,
                deps: BTreeSet::new(),
                reason: "checking that a rebuild gives identical outputs (--check)".into(),
                ca: None,
            },
        );
    }
    Ok(plan)
}
