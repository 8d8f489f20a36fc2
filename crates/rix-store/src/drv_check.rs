//! Checking derivations as they enter the store and before they are built.
//!
//! A `.drv` names its output paths, and a builder writes to them: a `.drv` whose
//! declared outputs are not the ones computed from its contents would take over
//! another derivation's outputs. So, as Nix's `LocalStore::registerValidPaths`
//! (`Derivation::checkInvariants`), every `.drv` that becomes valid is parsed and
//! its input-addressed output paths and output environment variables are
//! recomputed and compared, whatever brought it (adding text, instantiation,
//! import, copy, substitution); the builder checks again before building.
//!
//! Output paths of input-addressed derivations depend on the modulo hashes of
//! their input derivations. Those are memoised here for the life of the store
//! handle ([`DrvChecker`]), so checking a graph of derivations reads and hashes
//! each one once. An input is read from the store and is only used if its
//! contents are the ones its path names (a `.drv` is a text path over its
//! contents and references): a path's contents never change, so the memo is
//! never stale.

use std::sync::Mutex;

use rix_formats::derivation::hashing::LookupError;
use rix_formats::derivation::{Derivation, DrvHashes, HashingError, OutputProblem};
use rix_formats::hash::HashAlgo;
use rix_formats::store_path::{StoreDir, StorePath};

use crate::layout::StoreLayout;

type ReadDrv = Box<dyn FnMut(&StorePath) -> Result<Derivation, LookupError> + Send>;

/// Memoised modulo hashes of the store's derivations, and the check of a
/// derivation's outputs against them.
pub struct DrvChecker {
    hashes: Mutex<DrvHashes<ReadDrv>>,
}

/// Why a derivation was refused, worded as Nix words it.
#[derive(Debug, thiserror::Error)]
pub enum DrvCheckError {
    #[error("derivation '{drv}' has incorrect output '{declared}', should be '{expected}'")]
    IncorrectOutput {
        drv: String,
        declared: String,
        expected: String,
    },
    #[error(
        "derivation '{drv}' has incorrect environment variable '{output}', should be '{expected}'"
    )]
    IncorrectEnvVar {
        drv: String,
        output: String,
        expected: String,
    },
    #[error("derivation '{drv}' has an input-addressed output '{output}' that must be deferred (an input derivation is content-addressed or impure)")]
    ShouldBeDeferred { drv: String, output: String },
    #[error("derivation '{drv}': {source}")]
    Hashing { drv: String, source: HashingError },
}

impl DrvChecker {
    pub fn new(layout: &StoreLayout) -> Self {
        let store_dir = layout.store_dir.clone();
        let layout = layout.clone();
        let read: ReadDrv = Box::new(move |p: &StorePath| read_input(&layout, p));
        Self {
            hashes: Mutex::new(DrvHashes::new(store_dir, read)),
        }
    }

    /// Checks `drv`, the derivation at `drv_path`, as Nix's `checkInvariants`:
    /// every input-addressed output has the path computed from the derivation's
    /// modulo hash, and every output's environment variable holds its path.
    /// Returns the output paths known in advance (the `DerivationOutputs` rows).
    ///
    /// With `contents` (the file's bytes, as read from the store), a derivation
    /// that checks and whose contents are the ones its path names has its own
    /// modulo hash memoised too, so that its dependents find it without reading
    /// it again.
    pub fn check(
        &self,
        store_dir: &StoreDir,
        drv_path: &StorePath,
        drv: &Derivation,
        contents: Option<&[u8]>,
    ) -> Result<Vec<(String, StorePath)>, DrvCheckError> {
        let printed = store_dir.display(drv_path);
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        let problems = drv
            .check_outputs(store_dir, |p| hashes.get(p))
            .map_err(|source| DrvCheckError::Hashing {
                drv: printed.clone(),
                source,
            })?;
        if problems.is_empty()
            && !hashes.contains(drv_path)
            && contents.is_some_and(|b| names(store_dir, drv_path, drv, b))
        {
            if let Ok(h) = drv.hash_modulo(store_dir, false, |p| hashes.get(p)) {
                hashes.insert(drv_path.clone(), h);
            }
        }
        if let Some(p) = problems.into_iter().next() {
            return Err(match p {
                OutputProblem::WrongPath {
                    declared, expected, ..
                } => DrvCheckError::IncorrectOutput {
                    drv: printed,
                    declared: store_dir.display(&declared),
                    expected: store_dir.display(&expected),
                },
                OutputProblem::WrongEnvVar {
                    output, expected, ..
                } => DrvCheckError::IncorrectEnvVar {
                    drv: printed,
                    output,
                    expected: store_dir.display(&expected),
                },
                OutputProblem::ShouldBeDeferred { output } => DrvCheckError::ShouldBeDeferred {
                    drv: printed,
                    output,
                },
            });
        }
        let declared =
            drv.declared_output_paths(store_dir)
                .map_err(|e| DrvCheckError::Hashing {
                    drv: printed,
                    source: e.into(),
                })?;
        Ok(declared
            .into_iter()
            .filter_map(|(name, p)| p.map(|p| (name, p)))
            .collect())
    }
}

/// Whether `bytes`, the contents of `drv` at `path`, are the ones its path
/// names (a `.drv` is a text path over its contents and references).
fn names(store_dir: &StoreDir, path: &StorePath, drv: &Derivation, bytes: &[u8]) -> bool {
    store_dir
        .make_text_path(
            path.name(),
            &HashAlgo::Sha256.digest(bytes),
            drv.references(),
        )
        .is_ok_and(|named| &named == path)
}

/// Reads an input derivation from the store, refusing one whose contents are not
/// the ones its path names.
fn read_input(layout: &StoreLayout, path: &StorePath) -> Result<Derivation, LookupError> {
    let real = layout.real_path(path);
    let bytes = std::fs::read(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    let name = Derivation::name_from_drv_path(path);
    let drv = Derivation::from_aterm(&bytes, &layout.store_dir, name)?;
    if !names(&layout.store_dir, path, &drv, &bytes) {
        return Err(format!(
            "its contents are not the ones '{}' names",
            layout.store_dir.display(path)
        )
        .into());
    }
    Ok(drv)
}
