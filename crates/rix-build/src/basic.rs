//! Building a derivation sent in full (Nix's `BasicDerivation`, the
//! `BuildDerivation` request of both the worker and the serve protocol): its
//! `.drv` need not be in the store, and its input derivations are already
//! resolved (a build machine receives their outputs as input sources). Mirrors
//! `Store::buildDerivation` with `DerivationGoal` made from a
//! `BasicDerivation` (`makeBasicDerivationGoal`).

use std::collections::{BTreeMap, BTreeSet};

use rix_formats::derivation::Derivation;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;

use crate::builder::{build, BuildJob, BuildOutcome};
use crate::error::BuildError;
use crate::events::{BuildEvent, Observer};
use crate::realise::RealiseOptions;

/// What building a basic derivation did.
#[derive(Debug)]
pub enum BasicOutcome {
    /// Its builder ran; output name → path.
    Built(BTreeMap<String, StorePath>),
    /// Every output was valid already (or another process built them).
    AlreadyValid(BTreeMap<String, StorePath>),
}

impl BasicOutcome {
    /// Output name → path.
    pub fn outputs(&self) -> &BTreeMap<String, StorePath> {
        match self {
            BasicOutcome::Built(o) | BasicOutcome::AlreadyValid(o) => o,
        }
    }
}

/// Builds `drv` (named by `drv_path`, which need not be valid) with the
/// builder settings of `opts`. Every input source must be valid; the outputs
/// are registered with `drv_path` as their deriver.
pub fn build_basic_derivation(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
    opts: &RealiseOptions,
    observer: &dyn Observer,
) -> Result<BasicOutcome, BuildError> {
    if !drv.input_drvs.is_empty() {
        return Err(BuildError::Unsupported {
            drv: store.print(drv_path),
            reason: "a derivation sent in full cannot have input derivations".to_owned(),
        });
    }
    let outputs = crate::plan::output_paths(store, drv_path, drv)?;
    let mut all_valid = true;
    for p in outputs.values() {
        store.add_temp_root(p)?;
        all_valid &= store.is_valid(p)?;
    }
    if all_valid {
        return Ok(BasicOutcome::AlreadyValid(outputs));
    }
    for p in &drv.input_srcs {
        store.add_temp_root(p)?;
    }
    let input_closure: BTreeSet<StorePath> = store.closure(drv.input_srcs.iter().cloned())?;
    let reason = "built on request";
    observer.event(BuildEvent::Started {
        drv: drv_path,
        reason,
    });
    let start = std::time::Instant::now();
    let job = BuildJob {
        drv_path,
        drv,
        outputs: &outputs,
        input_closure: &input_closure,
        reason,
        check: false,
    };
    let result = build(store, &job, &opts.settings, observer);
    let error = result.as_ref().err().map(|e| e.to_string());
    observer.event(BuildEvent::Finished {
        drv: drv_path,
        elapsed: start.elapsed(),
        error: error.as_deref(),
    });
    Ok(match result? {
        BuildOutcome::AlreadyValid | BuildOutcome::CutOff => BasicOutcome::AlreadyValid(outputs),
        BuildOutcome::Built(_) | BuildOutcome::Checked(_) => BasicOutcome::Built(outputs),
    })
}
