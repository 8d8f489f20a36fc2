//! `hashDerivationModulo`, output paths and the `.drv` path.
//!
//! An input-addressed output path is computed from the derivation's *modulo hash*:
//! the SHA-256 of its ATerm with each input derivation replaced by that input's own
//! modulo hash (so a fixed-output input contributes only its output's identity, not
//! how it is fetched), and, for the derivation's own outputs, with output paths and
//! the environment variables named after outputs blanked. Mirrors
//! `hashDerivationModulo`, `staticOutputHashes`, `writeDerivation` and
//! `LocalStore::checkDerivationOutputs` / `Derivation::checkInvariants` in Nix.
//!
//! This module never reads a store: input derivations are found through a lookup
//! function supplied by the caller, either returning their [`DrvHash`] directly or,
//! with [`DrvHashes`], returning the parsed input [`Derivation`] (memoised, each
//! read once, without recursion on the call stack).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;

use thiserror::Error;

use super::aterm::unparse;
use super::{fixed_output_path, Derivation, DerivationError, DerivationOutput};
use crate::hash::{Encoding, Hash, HashAlgo};
use crate::store_path::{StoreDir, StorePath};

/// Boxed error of a caller's lookup function.
pub type LookupError = Box<dyn StdError + Send + Sync>;

/// Whether a derivation's modulo hash fixes its outputs' paths. Mirrors `DrvHash::Kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrvHashKind {
    /// Output paths follow from the hash.
    Regular,
    /// Some (transitive) input is content-addressed or impure: output paths are
    /// known only once those inputs are built.
    Deferred,
}

/// A derivation's modulo hash per output, and its kind. Mirrors `DrvHash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrvHash {
    /// By output name, in order. A list, not a map: a derivation has few
    /// outputs, and an evaluation (or a check of a store's derivations) keeps
    /// one of these per derivation (a `BTreeMap` allocates a node of eleven
    /// entries, over a kilobyte, for the one output most have).
    pub hashes: Vec<(String, Hash)>,
    pub kind: DrvHashKind,
}

impl DrvHash {
    /// The hash for `output`.
    pub fn get(&self, output: &str) -> Option<&Hash> {
        self.hashes
            .iter()
            .find(|(name, _)| name == output)
            .map(|(_, h)| h)
    }
}

/// The input part of a derivation's modulo hash ([`Derivation::modulo_inputs`]):
/// its input derivations replaced by their own modulo hashes, and whether the
/// result is deferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuloInputs {
    inputs: BTreeMap<String, BTreeSet<String>>,
    kind: DrvHashKind,
}

/// Why hashing or checking a derivation failed.
#[derive(Debug, Error)]
pub enum HashingError {
    #[error(transparent)]
    Derivation(#[from] DerivationError),
    #[error("cannot look up input derivation '{path}': {source}")]
    Lookup { path: String, source: LookupError },
    #[error("derivation '{drv}' uses output '{output}' of '{input}', which has no such output")]
    MissingInputOutput {
        drv: String,
        input: String,
        output: String,
    },
    #[error("input derivation '{0}' depends on itself")]
    Cycle(String),
    #[error(transparent)]
    Output(Box<OutputProblem>),
}

impl From<OutputProblem> for HashingError {
    fn from(p: OutputProblem) -> Self {
        Self::Output(Box::new(p))
    }
}

/// One discrepancy between the outputs a derivation declares and those Nix would
/// compute for it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OutputProblem {
    /// An input-addressed output's path is not the one its modulo hash gives.
    #[error("output '{output}' has path '{declared}', should be '{expected}'")]
    WrongPath {
        output: String,
        declared: StorePath,
        expected: StorePath,
    },
    /// The environment variable named after an output does not hold its path.
    #[error("environment variable '{output}' is {}, should be '{expected}'", found_env(.found))]
    WrongEnvVar {
        output: String,
        found: Option<Vec<u8>>,
        expected: StorePath,
    },
    /// An input-addressed output of a derivation that depends on content-addressed
    /// (floating or impure) derivations, whose outputs must be deferred.
    #[error("output '{output}' is input-addressed, but must be deferred: an input derivation is content-addressed or impure")]
    ShouldBeDeferred { output: String },
}

fn found_env(found: &Option<Vec<u8>>) -> String {
    match found {
        None => "missing".to_owned(),
        Some(v) => format!("'{}'", String::from_utf8_lossy(v)),
    }
}

/// `sha256("impure")`, the modulo hash of every impure output. Mirrors `impureOutputHash`.
fn impure_output_hash() -> Hash {
    HashAlgo::Sha256.digest("impure")
}

impl Derivation {
    /// The `.drv` store path: a text path named `<name>.drv` over the ATerm, with the
    /// input sources and input derivations as references. Mirrors `writeDerivation`
    /// (`computeStorePathForText`).
    pub fn drv_path(&self, store_dir: &StoreDir) -> Result<StorePath, DerivationError> {
        let aterm = self.to_aterm(store_dir)?;
        let name = format!("{}.drv", self.name);
        store_dir
            .make_text_path(&name, &HashAlgo::Sha256.digest(&aterm), self.references())
            .map_err(|source| DerivationError::InvalidName {
                name: self.name.clone(),
                source,
            })
    }

    /// The inputs of this derivation's modulo hash: each input derivation's own
    /// modulo hash (base16) with the outputs used (inputs whose hashes coincide
    /// merged), and the kind. `None` for fixed-output and impure derivations,
    /// whose hash is not over an ATerm (their inputs are not looked up, as in
    /// Nix). Computed once, it serves both hashes of a derivation (outputs
    /// masked for its output paths, unmasked for its dependents).
    pub fn modulo_inputs<E>(
        &self,
        store_dir: &StoreDir,
        mut lookup: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<Option<ModuloInputs>, HashingError>
    where
        E: Into<LookupError>,
    {
        let ty = self.derivation_type()?;
        if ty.is_fixed() || ty.is_impure() {
            return Ok(None);
        }
        let mut kind = match ty {
            super::DerivationType::ContentAddressed { fixed: false } => DrvHashKind::Deferred,
            _ => DrvHashKind::Regular,
        };
        let mut inputs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, outputs) in &self.input_drvs {
            let res = lookup(path).map_err(|e| HashingError::Lookup {
                path: store_dir.display(path),
                source: e.into(),
            })?;
            if res.kind == DrvHashKind::Deferred {
                kind = DrvHashKind::Deferred;
            }
            for output in outputs {
                let h = res
                    .get(output)
                    .ok_or_else(|| HashingError::MissingInputOutput {
                        drv: self.name.clone(),
                        input: store_dir.display(path),
                        output: output.clone(),
                    })?;
                inputs
                    .entry(h.to_base16())
                    .or_default()
                    .insert(output.clone());
            }
        }
        Ok(Some(ModuloInputs { inputs, kind }))
    }

    /// The text whose SHA-256 is the modulo hash of a non-fixed, pure derivation:
    /// the ATerm with inputs replaced by their modulo hashes (inputs whose hashes
    /// coincide are merged) and, with `mask_outputs`, outputs blanked; with the kind.
    /// `None` for fixed-output and impure derivations, whose hash is not over an ATerm.
    pub fn modulo_aterm<E>(
        &self,
        store_dir: &StoreDir,
        mask_outputs: bool,
        lookup: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<Option<(Vec<u8>, DrvHashKind)>, HashingError>
    where
        E: Into<LookupError>,
    {
        let Some(inputs) = self.modulo_inputs(store_dir, lookup)? else {
            return Ok(None);
        };
        let aterm = unparse(self, store_dir, mask_outputs, Some(&inputs.inputs))?;
        Ok(Some((aterm, inputs.kind)))
    }

    /// The modulo hash of each output. `lookup` gives the modulo hash of an input
    /// derivation (computed with `mask_outputs = false`, as [`DrvHashes`] does).
    /// Use `mask_outputs = true` to compute this derivation's own output paths, and
    /// `false` for its hash as an input of others. Mirrors `hashDerivationModulo`.
    pub fn hash_modulo<E>(
        &self,
        store_dir: &StoreDir,
        mask_outputs: bool,
        lookup: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<DrvHash, HashingError>
    where
        E: Into<LookupError>,
    {
        let inputs = self.modulo_inputs(store_dir, lookup)?;
        self.hash_modulo_with(store_dir, mask_outputs, inputs.as_ref())
    }

    /// [`Self::hash_modulo`] with the inputs computed by [`Self::modulo_inputs`].
    pub fn hash_modulo_with(
        &self,
        store_dir: &StoreDir,
        mask_outputs: bool,
        inputs: Option<&ModuloInputs>,
    ) -> Result<DrvHash, HashingError> {
        let ty = self.derivation_type()?;
        if ty.is_fixed() {
            let mut hashes = Vec::new();
            for (name, out) in &self.outputs {
                if let DerivationOutput::CAFixed { method, hash } = out {
                    let path = fixed_output_path(store_dir, &self.name, name, *method, hash)?;
                    let fingerprint = format!(
                        "fixed:out:{}:{}:{}",
                        method.method_algo(hash.algo()),
                        hash.encode(Encoding::Base16),
                        store_dir.display(&path)
                    );
                    hashes.push((name.clone(), HashAlgo::Sha256.digest(fingerprint)));
                }
            }
            return Ok(DrvHash {
                hashes,
                kind: DrvHashKind::Regular,
            });
        }
        if ty.is_impure() {
            let h = impure_output_hash();
            return Ok(DrvHash {
                hashes: self.outputs.keys().map(|n| (n.clone(), h)).collect(),
                kind: DrvHashKind::Deferred,
            });
        }
        let inputs = inputs.expect("the inputs of a derivation neither fixed nor impure");
        let aterm = unparse(self, store_dir, mask_outputs, Some(&inputs.inputs))?;
        let h = HashAlgo::Sha256.digest(aterm);
        Ok(DrvHash {
            hashes: self.outputs.keys().map(|n| (n.clone(), h)).collect(),
            kind: inputs.kind,
        })
    }

    /// The output paths Nix computes for this derivation: input-addressed (and
    /// deferred) outputs from the modulo hash with outputs masked, fixed outputs from
    /// their hash. `None` for outputs whose path is not known before building
    /// (floating, impure, or depending on such derivations). Declared paths are
    /// ignored. Mirrors `staticOutputHashes` + `makeOutputPath`.
    pub fn output_paths<E>(
        &self,
        store_dir: &StoreDir,
        lookup: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<BTreeMap<String, Option<StorePath>>, HashingError>
    where
        E: Into<LookupError>,
    {
        let inputs = if self.needs_modulo_hash() {
            self.modulo_inputs(store_dir, lookup)?
        } else {
            None
        };
        self.output_paths_with(store_dir, inputs.as_ref())
    }

    /// Whether some output's path follows from the modulo hash.
    fn needs_modulo_hash(&self) -> bool {
        self.outputs.values().any(|o| {
            matches!(
                o,
                DerivationOutput::InputAddressed { .. } | DerivationOutput::Deferred
            )
        })
    }

    /// [`Self::output_paths`] with the inputs computed by [`Self::modulo_inputs`]
    /// (needed only when some output is input-addressed or deferred).
    pub fn output_paths_with(
        &self,
        store_dir: &StoreDir,
        inputs: Option<&ModuloInputs>,
    ) -> Result<BTreeMap<String, Option<StorePath>>, HashingError> {
        let modulo = if self.needs_modulo_hash() {
            Some(self.hash_modulo_with(store_dir, true, inputs)?)
        } else {
            self.derivation_type()?;
            None
        };
        let mut res = BTreeMap::new();
        for (name, out) in &self.outputs {
            let path = match (out, &modulo) {
                (DerivationOutput::InputAddressed { .. } | DerivationOutput::Deferred, Some(m))
                    if m.kind == DrvHashKind::Regular =>
                {
                    let h = m.get(name).expect("every output has a hash");
                    Some(output_path(store_dir, &self.name, name, h)?)
                }
                (DerivationOutput::CAFixed { method, hash }, _) => Some(fixed_output_path(
                    store_dir, &self.name, name, *method, hash,
                )?),
                _ => None,
            };
            res.insert(name.clone(), path);
        }
        Ok(res)
    }

    /// Recomputes the output paths and lists every output whose declared path, or
    /// whose environment variable, differs from what Nix computes. Empty when the
    /// derivation is consistent. Mirrors `LocalStore::checkDerivationOutputs`
    /// (which stops at the first problem).
    pub fn check_outputs<E>(
        &self,
        store_dir: &StoreDir,
        lookup: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<Vec<OutputProblem>, HashingError>
    where
        E: Into<LookupError>,
    {
        let computed = self.output_paths(store_dir, lookup)?;
        let mut problems = Vec::new();
        for (name, out) in &self.outputs {
            let expected = computed.get(name).cloned().flatten();
            match (out, expected) {
                (DerivationOutput::InputAddressed { .. }, None) => {
                    problems.push(OutputProblem::ShouldBeDeferred {
                        output: name.clone(),
                    })
                }
                (DerivationOutput::InputAddressed { path }, Some(expected)) => {
                    if *path != expected {
                        problems.push(OutputProblem::WrongPath {
                            output: name.clone(),
                            declared: path.clone(),
                            expected: expected.clone(),
                        });
                    }
                    self.check_env(store_dir, name, &expected, &mut problems);
                }
                (DerivationOutput::CAFixed { .. }, Some(expected)) => {
                    self.check_env(store_dir, name, &expected, &mut problems)
                }
                _ => {}
            }
        }
        Ok(problems)
    }

    fn check_env(
        &self,
        store_dir: &StoreDir,
        output: &str,
        expected: &StorePath,
        problems: &mut Vec<OutputProblem>,
    ) {
        let found = self.env.get(output.as_bytes());
        if found.map(Vec::as_slice) != Some(store_dir.display(expected).as_bytes()) {
            problems.push(OutputProblem::WrongEnvVar {
                output: output.to_owned(),
                found: found.cloned(),
                expected: expected.clone(),
            });
        }
    }

    /// Fills in the paths of deferred and input-addressed outputs and the
    /// environment variables named after outputs, as the evaluator does after
    /// `derivationStrict` and `nix derivation add` does. Hashing uses the
    /// environment as it is: a missing variable is added afterwards, as in Nix (whose
    /// test data shows that the result then hashes differently: the evaluator always
    /// creates the variables empty first). Outputs stay deferred when an input is content-addressed or impure. Fails,
    /// leaving `self` unchanged, on a declared path or a non-empty environment
    /// variable that disagrees with the computed path. Idempotent.
    /// Mirrors `Derivation::fillInOutputPaths` + `checkInvariants`.
    pub fn fill_in_output_paths<E>(
        &mut self,
        store_dir: &StoreDir,
        lookup: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<(), HashingError>
    where
        E: Into<LookupError>,
    {
        let computed = self.output_paths(store_dir, lookup)?;
        self.fill_in_computed(store_dir, computed)
    }

    /// [`Self::fill_in_output_paths`] with the inputs computed by
    /// [`Self::modulo_inputs`].
    pub fn fill_in_output_paths_with(
        &mut self,
        store_dir: &StoreDir,
        inputs: Option<&ModuloInputs>,
    ) -> Result<(), HashingError> {
        let computed = self.output_paths_with(store_dir, inputs)?;
        self.fill_in_computed(store_dir, computed)
    }

    fn fill_in_computed(
        &mut self,
        store_dir: &StoreDir,
        computed: BTreeMap<String, Option<StorePath>>,
    ) -> Result<(), HashingError> {
        // Everything is checked before anything changes: on an error the
        // derivation is as it was (without cloning it, env and all).
        let mut fills = Vec::with_capacity(computed.len());
        for (name, expected) in computed {
            let out = &self.outputs[&name];
            let Some(expected) = expected else {
                if matches!(out, DerivationOutput::InputAddressed { .. }) {
                    return Err(OutputProblem::ShouldBeDeferred { output: name }.into());
                }
                continue;
            };
            if let DerivationOutput::InputAddressed { path } = out {
                if *path != expected {
                    return Err(OutputProblem::WrongPath {
                        output: name,
                        declared: path.clone(),
                        expected,
                    }
                    .into());
                }
            }
            let printed = store_dir.display(&expected).into_bytes();
            match self.env.get(name.as_bytes()) {
                Some(v) if !v.is_empty() && *v != printed => {
                    return Err(OutputProblem::WrongEnvVar {
                        output: name,
                        found: Some(v.clone()),
                        expected,
                    }
                    .into())
                }
                _ => {}
            }
            fills.push((name, expected, printed));
        }
        for (name, expected, printed) in fills {
            let out = self.outputs.get_mut(&name).expect("computed from outputs");
            if matches!(out, DerivationOutput::Deferred) {
                *out = DerivationOutput::InputAddressed { path: expected };
            }
            match self.env.get_mut(name.as_bytes()) {
                Some(v) => *v = printed,
                None => {
                    self.env.insert(name.into_bytes(), printed);
                }
            }
        }
        Ok(())
    }
}

/// Output path of an input-addressed output. Mirrors `makeOutputPath`.
fn output_path(
    store_dir: &StoreDir,
    drv_name: &str,
    output: &str,
    hash: &Hash,
) -> Result<StorePath, DerivationError> {
    store_dir
        .make_output_path(output, hash, drv_name)
        .map_err(|source| DerivationError::OutputPath {
            output: output.to_owned(),
            source,
        })
}

/// Memoised modulo hashes of derivations read on demand. Mirrors Nix's `drvHashes`
/// cache and `pathDerivationModulo`.
///
/// `read` returns the parsed derivation at a `.drv` path (for example
/// `Derivation::from_aterm_at(&fs::read(dir.display(p))?, &dir, p)`). Inputs of
/// fixed-output and impure derivations are not read, as in Nix.
///
/// ```ignore
/// let mut hashes = DrvHashes::new(dir.clone(), |p: &StorePath| read_drv(p));
/// let problems = drv.check_outputs(&dir, |p| hashes.get(p))?;
/// ```
pub struct DrvHashes<F> {
    store_dir: StoreDir,
    read: F,
    cache: HashMap<StorePath, DrvHash>,
}

impl<F> fmt::Debug for DrvHashes<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrvHashes")
            .field("store_dir", &self.store_dir)
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl<F, E> DrvHashes<F>
where
    F: FnMut(&StorePath) -> Result<Derivation, E>,
    E: Into<LookupError>,
{
    pub fn new(store_dir: StoreDir, read: F) -> Self {
        Self {
            store_dir,
            read,
            cache: HashMap::new(),
        }
    }

    /// Whether the modulo hash of `drv_path` is known.
    pub fn contains(&self, drv_path: &StorePath) -> bool {
        self.cache.contains_key(drv_path)
    }

    /// Records a known modulo hash (it will not be read).
    pub fn insert(&mut self, drv_path: StorePath, hash: DrvHash) {
        self.cache.insert(drv_path, hash);
    }

    fn read(&mut self, path: &StorePath) -> Result<Derivation, HashingError> {
        (self.read)(path).map_err(|e| HashingError::Lookup {
            path: self.store_dir.display(path),
            source: e.into(),
        })
    }

    /// The modulo hash (outputs not masked) of the derivation at `drv_path`,
    /// computing those of its input derivations first.
    pub fn get(&mut self, drv_path: &StorePath) -> Result<DrvHash, HashingError> {
        if let Some(h) = self.cache.get(drv_path) {
            return Ok(h.clone());
        }
        let root = self.read(drv_path)?;
        let mut stack = vec![(drv_path.clone(), root)];
        let mut on_stack = HashSet::from([drv_path.clone()]);
        while let Some((_, top)) = stack.last() {
            let needs_inputs = top
                .derivation_type()
                .is_ok_and(|t| !t.is_fixed() && !t.is_impure());
            let missing = needs_inputs
                .then(|| {
                    top.input_drvs
                        .keys()
                        .find(|p| !self.cache.contains_key(*p))
                        .cloned()
                })
                .flatten();
            if let Some(input) = missing {
                if !on_stack.insert(input.clone()) {
                    return Err(HashingError::Cycle(self.store_dir.display(&input)));
                }
                let drv = self.read(&input)?;
                stack.push((input, drv));
                continue;
            }
            let (path, drv) = stack.pop().expect("stack is not empty");
            on_stack.remove(&path);
            let cache = &self.cache;
            let h = drv.hash_modulo(&self.store_dir, false, |p| {
                cache.get(p).cloned().ok_or("not hashed yet")
            })?;
            self.cache.insert(path, h);
        }
        Ok(self.cache[drv_path].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_inputs(_: &StorePath) -> Result<DrvHash, LookupError> {
        Err("no inputs expected".into())
    }

    // hashDerivationModulo of a fixed-output derivation (Tvix's unit tests have the same value;
    // Nix 2.8 wrote this drv: tests/vectors/generated/derivation/ok/ss2p...-bar.drv).
    #[test]
    fn fixed_output_modulo() {
        let aterm = br#"Derive([("out","/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar","r:sha1","0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")],[],[],":",":",[],[("builder",":"),("name","bar"),("out","/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar"),("outputHash","0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"),("outputHashAlgo","sha1"),("outputHashMode","recursive"),("system",":")])"#;
        let dir = StoreDir::default();
        let drv = Derivation::from_aterm(aterm, &dir, Some("bar")).unwrap();
        let h = drv.hash_modulo(&dir, true, no_inputs).unwrap();
        assert_eq!(
            h.get("out").unwrap().to_base16(),
            "c79aebd0ce3269393d4a1fde2cbd1d975d879b40f0bf40a48f550edc107fd5df"
        );
        assert_eq!(
            dir.display(&drv.drv_path(&dir).unwrap()),
            "/nix/store/ss2p4wmxijn652haqyd7dckxwl4c7hxx-bar.drv"
        );
        assert!(drv.check_outputs(&dir, no_inputs).unwrap().is_empty());
    }

    #[test]
    fn cycle_detected() {
        let dir = StoreDir::default();
        let a = StorePath::from_base_name("00bgd045z0d4icpbc2yyz4gx48ak44la-a.drv").unwrap();
        let drv = Derivation {
            name: "a".into(),
            outputs: [("out".to_owned(), DerivationOutput::Deferred)].into(),
            input_drvs: [(a.clone(), ["out".to_owned()].into())].into(),
            ..Default::default()
        };
        let mut hashes = DrvHashes::new(dir, |_: &StorePath| Ok::<_, LookupError>(drv.clone()));
        assert!(matches!(hashes.get(&a), Err(HashingError::Cycle(_))));
    }
}
