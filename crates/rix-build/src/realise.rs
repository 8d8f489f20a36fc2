//! Realisation: make the outputs of some derivations valid, building what is
//! missing in dependency order with up to `max_jobs` builders at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::mpsc;
use std::time::Instant;

use rix_formats::StorePath;
use rix_store::local_store::LocalStore;

use crate::builder::{build, BuildJob, BuildOutcome, BuildSettings};
use crate::error::BuildError;
use crate::events::{BuildEvent, Observer};
use crate::plan::{plan, Plan, PlannedBuild};

/// Options of one realisation.
#[derive(Debug, Clone)]
pub struct RealiseOptions {
    /// Builders running at once; 0 refuses to build anything (`max-jobs = 0`).
    pub max_jobs: usize,
    /// Go on with independent builds after a failure.
    pub keep_going: bool,
    /// Rebuild the targets (whose outputs must be valid) and compare (`--check`).
    pub check: bool,
    pub settings: BuildSettings,
    /// Binary caches to substitute from before building (`None`: build everything).
    pub substituter: Option<std::sync::Arc<rix_substitute::Substituter>>,
}

impl Default for RealiseOptions {
    fn default() -> Self {
        Self {
            max_jobs: 1,
            keep_going: false,
            check: false,
            settings: BuildSettings::default(),
            substituter: None,
        }
    }
}

/// What a realisation did.
#[derive(Debug, Default)]
pub struct RealiseReport {
    /// Derivations whose builder ran successfully.
    pub built: Vec<StorePath>,
    /// Derivations another process built while we waited.
    pub built_elsewhere: Vec<StorePath>,
    /// Content-addressed derivations not built because they resolved to a
    /// realised derivation (early cutoff, see [`crate::resolve`]).
    pub cut_off: Vec<StorePath>,
    /// `--check` results: derivations and their outputs that differed.
    pub nondeterministic: Vec<(StorePath, Vec<crate::builder::CheckDifference>)>,
    /// Failed builds with their errors.
    pub failed: Vec<(StorePath, BuildError)>,
    /// Those of the failed builds that failed transiently, as Nix counts
    /// them: a fixed-output derivation's builder (a download) failing.
    pub transient: Vec<StorePath>,
    /// Builds not attempted because a dependency failed (or after a failure
    /// without `keep_going`).
    pub skipped: Vec<StorePath>,
    /// Output name → path of every target derivation.
    pub outputs: BTreeMap<StorePath, BTreeMap<String, StorePath>>,
    /// Paths fetched from binary caches.
    pub substituted: Vec<StorePath>,
}

impl RealiseReport {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }

    /// The exit status Nix gives a realisation like this one
    /// (`Worker::failingExitStatus`): bits over 0x60, 0x04 for a failed
    /// build (100), plus 0x01 for a timeout (101), 0x02 for a hash mismatch
    /// (102); 0x08 for a `--check` that found a difference (104); 1 for
    /// anything else that failed; 0 on success.
    pub fn exit_status(&self) -> u8 {
        let (mut permanent, mut timed_out, mut hash_mismatch) = (false, false, false);
        for (drv, e) in &self.failed {
            match e {
                BuildError::TimedOut { .. } => timed_out = true,
                BuildError::HashMismatch { .. } => hash_mismatch = true,
                _ if self.transient.contains(drv) => {}
                e if e.is_build_failure() => permanent = true,
                _ => {}
            }
        }
        let mut mask = 0;
        if permanent || timed_out || hash_mismatch {
            mask |= 0x04;
        }
        if timed_out {
            mask |= 0x01;
        }
        if hash_mismatch {
            mask |= 0x02;
        }
        if !self.nondeterministic.is_empty() {
            mask |= 0x08;
        }
        match mask {
            0 if self.succeeded() => 0,
            0 => 1,
            m => m | 0x60,
        }
    }
}

/// Plans and builds (see the module docs).
pub fn realise(
    store: &LocalStore,
    targets: &[StorePath],
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> Result<RealiseReport, BuildError> {
    // --- substitution (rix-substitute) ---
    if let (Some(sub), false) = (&opts.substituter, opts.check) {
        let subst = crate::substitute::Substitution::new(sub, observer);
        let planned = crate::plan::plan_with(store, targets, Some(&subst))?;
        let (planned, fetched) =
            crate::substitute::substitute_planned(store, planned, targets, &subst)?;
        let mut report = execute(store, planned, opts, observer)?;
        report.substituted = fetched;
        return Ok(report);
    }
    // --- end substitution ---
    let plan = if opts.check {
        crate::plan::check_plan(store, targets)?
    } else {
        plan(store, targets)?
    };
    execute(store, plan, opts, observer)
}

/// Runs a plan.
pub fn execute(
    store: &LocalStore,
    plan: Plan,
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> Result<RealiseReport, BuildError> {
    let order = plan.build_order();
    let Plan {
        builds,
        target_outputs,
        ..
    } = plan;
    observer.event(BuildEvent::Planned { to_build: &order });
    // `max-jobs = 0`: nothing builds here (and rix sends nothing to the
    // `builders` machines yet), as Nix's worker refuses.
    if opts.max_jobs == 0 && !builds.is_empty() {
        return Err(BuildError::NoBuildSlots);
    }

    let mut report = RealiseReport {
        outputs: target_outputs,
        ..Default::default()
    };
    let mut waiting: HashMap<&StorePath, usize> =
        builds.iter().map(|(p, b)| (p, b.deps.len())).collect();
    let mut dependents: HashMap<&StorePath, Vec<&StorePath>> = HashMap::new();
    for (p, b) in &builds {
        for d in &b.deps {
            dependents.entry(d).or_default().push(p);
        }
    }
    let mut ready: VecDeque<&StorePath> = builds
        .iter()
        .filter(|(_, b)| b.deps.is_empty())
        .map(|(p, _)| p)
        .collect();
    let mut refs_cache = RefsCache::default();
    let mut stop = false;
    let max_jobs = opts.max_jobs.max(1);

    std::thread::scope(|scope| -> Result<(), BuildError> {
        let (tx, rx) = mpsc::channel::<(&StorePath, Result<BuildOutcome, BuildError>)>();
        let mut running = 0usize;
        loop {
            stop |= crate::running::cancelled();
            // --- content-addressed derivations: early cutoff in this thread,
            // without a builder (see crate::resolve::cut_off_ready) ---
            if !stop {
                for (drv_path, result) in
                    crate::resolve::cut_off_ready(store, &builds, &mut ready, observer)
                {
                    running += 1;
                    let _ = tx.send((drv_path, result));
                }
            }
            // --- end content-addressed derivations ---
            while running < max_jobs && !stop {
                let Some(drv_path) = ready.pop_front() else {
                    break;
                };
                let b = &builds[drv_path];
                let closure = refs_cache.input_closure(store, b)?;
                let tx = tx.clone();
                running += 1;
                scope.spawn(move || {
                    // A panic anywhere in the worker (builder, observer, database)
                    // becomes this build's error: the loop below waits for one
                    // message per worker, and would otherwise wait forever.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_one(store, drv_path, b, &closure, opts, observer)
                    }))
                    .unwrap_or_else(|panic| {
                        Err(BuildError::WorkerDied {
                            drv: store.print(drv_path),
                            message: panic_message(&*panic),
                        })
                    });
                    let _ = tx.send((drv_path, result));
                });
            }
            if running == 0 {
                break;
            }
            // Every worker sends exactly once (panics included), and this loop
            // holds a sender, so the channel cannot disconnect.
            let Ok((drv_path, result)) = rx.recv() else {
                break;
            };
            running -= 1;
            match result {
                Ok(outcome) => {
                    match outcome {
                        BuildOutcome::Built(infos) => {
                            refs_cache.learn(&infos);
                            report.built.push(drv_path.clone());
                        }
                        BuildOutcome::AlreadyValid => report.built_elsewhere.push(drv_path.clone()),
                        BuildOutcome::CutOff => report.cut_off.push(drv_path.clone()),
                        BuildOutcome::Checked(diffs) => {
                            report.built.push(drv_path.clone());
                            if !diffs.is_empty() {
                                report.nondeterministic.push((drv_path.clone(), diffs));
                            }
                        }
                    }
                    for &dep in dependents.get(drv_path).into_iter().flatten() {
                        // Absent: skipped, as another dependency of it failed.
                        if let Some(n) = waiting.get_mut(dep) {
                            *n -= 1;
                            if *n == 0 {
                                ready.push_back(dep);
                            }
                        }
                    }
                }
                Err(e) => {
                    // A fixed-output derivation's builder failing is, for
                    // Nix, a transient failure (a download), not a
                    // permanent one: it does not make the exit status 100.
                    if builds.get(drv_path).is_some_and(|b| {
                        b.drv.outputs.values().any(|o| {
                            matches!(o, rix_formats::derivation::DerivationOutput::CAFixed { .. })
                        })
                    }) && matches!(e, BuildError::BuilderFailed { .. })
                    {
                        report.transient.push(drv_path.clone());
                    }
                    report.failed.push((drv_path.clone(), e));
                    skip_dependents(drv_path, &dependents, &mut waiting, &mut report, observer);
                    stop |= !opts.keep_going;
                }
            }
        }
        Ok(())
    })?;
    // Without keep-going, whatever was never started is skipped too.
    let finished: BTreeSet<&StorePath> = report
        .built
        .iter()
        .chain(&report.built_elsewhere)
        .chain(&report.cut_off)
        .chain(report.failed.iter().map(|(p, _)| p))
        .chain(&report.skipped)
        .collect();
    let unstarted: Vec<StorePath> = order
        .iter()
        .filter(|p| !finished.contains(p))
        .cloned()
        .collect();
    report.skipped.extend(unstarted);
    crate::resolve::fill_target_outputs(store, &mut report.outputs)?;
    Ok(report)
}

/// One build in a worker thread: events, the build, its record in the database.
fn run_one(
    store: &LocalStore,
    drv_path: &StorePath,
    b: &PlannedBuild,
    closure: &BTreeSet<StorePath>,
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> Result<BuildOutcome, BuildError> {
    // --- content-addressed derivations (see crate::resolve) ---
    if let Some(ca) = b.ca.as_deref().filter(|_| crate::resolve::handles(&b.drv)) {
        return crate::resolve::realise_one(store, ca, drv_path, b, closure, opts, observer);
    }
    // --- end content-addressed derivations ---
    observer.event(BuildEvent::Started {
        drv: drv_path,
        reason: &b.reason,
    });
    let start = Instant::now();
    let job = BuildJob {
        drv_path,
        drv: &b.drv,
        outputs: &b.outputs,
        input_closure: closure,
        reason: &b.reason,
        check: opts.check,
    };
    let started_at = rix_store::path_info::now();
    let result = build(store, &job, &opts.settings, observer);
    // With `ca-derivations`, every build records realisations (as Nix's).
    let result = match (&b.ca, result) {
        (Some(ca), Ok(o @ (BuildOutcome::Built(_) | BuildOutcome::AlreadyValid))) => ca
            .register_built(store, drv_path, &b.drv, &b.outputs)
            .map(|()| o),
        (_, r) => r,
    };
    let error = result.as_ref().err().map(|e| e.to_string());
    let status = match &result {
        Ok(BuildOutcome::Built(_)) => "built".to_owned(),
        Ok(BuildOutcome::AlreadyValid) => "built by another process".to_owned(),
        Ok(BuildOutcome::Checked(d)) if d.is_empty() => "checked: identical".to_owned(),
        Ok(BuildOutcome::Checked(_)) => "checked: differs".to_owned(),
        Ok(BuildOutcome::CutOff) => "cut off: output unchanged".to_owned(),
        Err(e) => format!(
            "failed: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    };
    // The record is informational: a failure to write it must not fail the build.
    let _ = store.db().record_build(
        drv_path,
        &b.reason,
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

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

fn skip_dependents<'a>(
    failed: &'a StorePath,
    dependents: &HashMap<&'a StorePath, Vec<&'a StorePath>>,
    waiting: &mut HashMap<&'a StorePath, usize>,
    report: &mut RealiseReport,
    observer: &dyn Observer,
) {
    let mut queue = vec![failed];
    while let Some(p) = queue.pop() {
        for &dep in dependents.get(p).into_iter().flatten() {
            // Out of `waiting`, it never becomes ready, whatever else
            // succeeds; a dependent reached through several failed
            // dependencies is skipped (and counted) once.
            if waiting.remove(dep).is_some() {
                observer.event(BuildEvent::Skipped {
                    drv: dep,
                    failed_dep: failed,
                });
                report.skipped.push(dep.clone());
                queue.push(dep);
            }
        }
    }
}

/// References of store paths, remembered across the builds of one realisation so
/// that input closures cost memory lookups rather than database queries.
#[derive(Default)]
struct RefsCache {
    refs: HashMap<StorePath, Vec<StorePath>>,
}

impl RefsCache {
    fn learn(&mut self, infos: &[rix_store::path_info::ValidPathInfo]) {
        for i in infos {
            self.refs
                .insert(i.path.clone(), i.references.iter().cloned().collect());
        }
    }

    fn references(
        &mut self,
        store: &LocalStore,
        p: &StorePath,
    ) -> Result<&[StorePath], BuildError> {
        if !self.refs.contains_key(p) {
            let info = store.path_info(p)?;
            self.refs
                .insert(p.clone(), info.references.into_iter().collect());
        }
        Ok(&self.refs[p])
    }

    /// The closure of a build's inputs: its sources and its input derivations' outputs.
    fn input_closure(
        &mut self,
        store: &LocalStore,
        b: &PlannedBuild,
    ) -> Result<BTreeSet<StorePath>, BuildError> {
        let mut roots: Vec<StorePath> = b.drv.input_srcs.iter().cloned().collect();
        for (input, wanted) in &b.drv.input_drvs {
            let outs = match &b.ca {
                Some(ca) => ca.realised_outputs(store, input, &*ca.derivation(store, input)?)?,
                None => crate::plan::output_paths(
                    store,
                    input,
                    &crate::plan::read_derivation(store, input)?,
                )?,
            };
            roots.extend(
                outs.into_iter()
                    .filter(|(n, _)| wanted.contains(n))
                    .map(|(_, p)| p),
            );
        }
        let mut seen = BTreeSet::new();
        while let Some(p) = roots.pop() {
            if seen.insert(p.clone()) {
                roots.extend(
                    self.references(store, &p)?
                        .iter()
                        .filter(|r| !seen.contains(*r))
                        .cloned(),
                );
            }
        }
        Ok(seen)
    }
}
