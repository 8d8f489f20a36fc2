//! Derivations: the build recipes Nix stores as `.drv` files.
//!
//! A [`Derivation`] mirrors Nix's `Derivation` (`derivations.hh`): outputs, input
//! derivations with the outputs used from each, input sources, system, builder,
//! arguments and environment. Strings that Nix copies verbatim from the evaluator
//! (system, builder, arguments, environment) are bytes, not UTF-8: `.drv` files
//! with Latin-1 environments exist and must round-trip.
//!
//! | module | what |
//! | --- | --- |
//! | [`aterm`] | the `Derive(...)` ATerm: parse and print, byte for byte |
//! | [`json`] | `nix show-derivation` JSON (Nix 2.8, byte for byte) and newer JSON forms |
//! | [`hashing`] | `hashDerivationModulo`, output paths, `.drv` path, output checks |
//!
//! The derivation's *name* is not part of the ATerm: it is the `.drv` file name
//! minus `.drv` (see [`Derivation::name_from_drv_path`]); it enters the paths of
//! fixed outputs and the `.drv` path itself.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::hash::{Hash, HashAlgo};
use crate::store_path::{
    check_name, output_path_name, FileIngestionMethod, StoreDir, StorePath, StorePathError,
};

pub mod aterm;
pub mod hashing;
pub mod json;

pub use aterm::AtermError;
pub use hashing::{DrvHash, DrvHashKind, DrvHashes, HashingError, ModuloInputs, OutputProblem};
pub use json::JsonError;

/// How a content-addressed output's contents are hashed: the `r:` / `text:` prefix
/// of an output's `hashAlgo`. Mirrors `ContentAddressMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaMethod {
    /// The file's bytes (`outputHashMode = "flat"`); no prefix.
    Flat,
    /// The NAR serialisation (`outputHashMode = "recursive"`); prefix `r:`.
    Recursive,
    /// A text file, as `builtins.toFile` (newer Nix only); prefix `text:`.
    Text,
}

impl CaMethod {
    /// `""`, `"r:"` or `"text:"`. Mirrors `makeFileIngestionPrefix` / `ContentAddressMethod::renderPrefix`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Flat => "",
            Self::Recursive => "r:",
            Self::Text => "text:",
        }
    }

    /// `flat`, `nar` or `text`, the names newer Nix uses in JSON (`"method"`).
    pub fn json_name(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Recursive => "nar",
            Self::Text => "text",
        }
    }

    /// Parses a [`CaMethod::json_name`].
    pub fn from_json_name(s: &str) -> Option<Self> {
        match s {
            "flat" => Some(Self::Flat),
            "nar" => Some(Self::Recursive),
            "text" => Some(Self::Text),
            _ => None,
        }
    }

    /// Splits `r:sha256` into the method and `sha256`. Mirrors `ContentAddressMethod::parsePrefix`.
    pub fn split_prefix(s: &str) -> (Self, &str) {
        if let Some(rest) = s.strip_prefix("r:") {
            (Self::Recursive, rest)
        } else if let Some(rest) = s.strip_prefix("text:") {
            (Self::Text, rest)
        } else {
            (Self::Flat, s)
        }
    }

    /// `<prefix><algo>`, e.g. `r:sha256`: an output's `hashAlgo` field.
    /// Mirrors `printMethodAlgo`.
    pub fn method_algo(self, algo: HashAlgo) -> String {
        format!("{}{}", self.prefix(), algo)
    }
}

impl From<FileIngestionMethod> for CaMethod {
    fn from(m: FileIngestionMethod) -> Self {
        match m {
            FileIngestionMethod::Flat => Self::Flat,
            FileIngestionMethod::Recursive => Self::Recursive,
        }
    }
}

/// One output of a derivation. Mirrors `DerivationOutput`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DerivationOutput {
    /// Path computed from the derivation's `hashDerivationModulo`.
    InputAddressed { path: StorePath },
    /// Fixed-output: the content hash is known in advance; the path follows from it.
    CAFixed { method: CaMethod, hash: Hash },
    /// Content-addressed with the hash known only after building (`ca-derivations`).
    CAFloating { method: CaMethod, algo: HashAlgo },
    /// Input-addressed, but the path cannot be computed yet because an input is
    /// content-addressed (floating or impure).
    Deferred,
    /// Impure derivation output (`impure-derivations`).
    Impure { method: CaMethod, algo: HashAlgo },
}

impl DerivationOutput {
    /// The output's store path when it is known without building: input-addressed
    /// paths as written, fixed-output paths as computed. Mirrors `DerivationOutput::path`.
    pub fn path(
        &self,
        store_dir: &StoreDir,
        drv_name: &str,
        output: &str,
    ) -> Result<Option<StorePath>, DerivationError> {
        match self {
            Self::InputAddressed { path } => Ok(Some(path.clone())),
            Self::CAFixed { method, hash } => {
                fixed_output_path(store_dir, drv_name, output, *method, hash).map(Some)
            }
            Self::CAFloating { .. } | Self::Deferred | Self::Impure { .. } => Ok(None),
        }
    }

    /// The `hashAlgo` field of the ATerm tuple and of Nix 2.8's JSON (empty for
    /// input-addressed and deferred outputs).
    pub fn hash_algo_field(&self) -> String {
        match self {
            Self::InputAddressed { .. } | Self::Deferred => String::new(),
            Self::CAFixed { method, hash } => method.method_algo(hash.algo()),
            Self::CAFloating { method, algo } | Self::Impure { method, algo } => {
                method.method_algo(*algo)
            }
        }
    }
}

/// Path of a fixed output. Mirrors `DerivationOutput::CAFixed::path` /
/// `makeFixedOutputPathFromCA`: text-hashed outputs are text paths without references.
pub fn fixed_output_path(
    store_dir: &StoreDir,
    drv_name: &str,
    output: &str,
    method: CaMethod,
    hash: &Hash,
) -> Result<StorePath, DerivationError> {
    let name = output_path_name(drv_name, output);
    let res = match method {
        CaMethod::Text => {
            if hash.algo() != HashAlgo::Sha256 {
                return Err(DerivationError::TextNotSha256 {
                    output: output.to_owned(),
                    algo: hash.algo(),
                });
            }
            store_dir.make_text_path(&name, hash, [])
        }
        CaMethod::Flat => {
            store_dir.make_fixed_output_path(&name, FileIngestionMethod::Flat, hash, [], false)
        }
        CaMethod::Recursive => {
            store_dir.make_fixed_output_path(&name, FileIngestionMethod::Recursive, hash, [], false)
        }
    };
    res.map_err(|source| DerivationError::OutputPath {
        output: output.to_owned(),
        source,
    })
}

/// What kind of derivation this is, decided by its outputs. Mirrors `DerivationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivationType {
    /// Input-addressed; `deferred` when the output paths are not known yet.
    InputAddressed {
        deferred: bool,
    },
    /// Content-addressed: `fixed` for fixed-output derivations, else floating.
    ContentAddressed {
        fixed: bool,
    },
    Impure,
}

impl DerivationType {
    pub fn is_fixed(self) -> bool {
        matches!(self, Self::ContentAddressed { fixed: true })
    }

    pub fn is_impure(self) -> bool {
        self == Self::Impure
    }

    /// Whether all output paths are known before building. Mirrors `hasKnownOutputPaths`.
    pub fn has_known_output_paths(self) -> bool {
        matches!(
            self,
            Self::InputAddressed { deferred: false } | Self::ContentAddressed { fixed: true }
        )
    }
}

/// Why a derivation is not well-formed (beyond its syntax).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DerivationError {
    #[error("invalid derivation name '{name}': {source}")]
    InvalidName {
        name: String,
        source: StorePathError,
    },
    #[error("invalid output name '{0}' (must be a non-empty store path name)")]
    InvalidOutputName(String),
    #[error("cannot compute the path of output '{output}': {source}")]
    OutputPath {
        output: String,
        source: StorePathError,
    },
    #[error("output '{output}' is text-hashed but uses {algo}; text hashing needs sha256")]
    TextNotSha256 { output: String, algo: HashAlgo },
    #[error("derivation must have at least one output")]
    NoOutputs,
    #[error("only one fixed output is allowed, found {0:?}")]
    MultipleFixedOutputs(Vec<String>),
    #[error("single fixed output must be named \"out\", not '{0}'")]
    FixedOutputNotOut(String),
    #[error("all floating outputs must use the same hash algorithm ({0} and {1} found)")]
    FloatingAlgoMismatch(HashAlgo, HashAlgo),
    #[error("can't mix derivation output types (outputs {0:?})")]
    MixedOutputTypes(Vec<String>),
}

/// A derivation, as Nix keeps it in memory. Mirrors `Derivation` (`derivations.hh`).
///
/// Maps are ordered as Nix orders them when printing ([`StorePath`]'s order is
/// Nix's: by base name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Derivation {
    /// The `.drv` file name without `.drv` (normally the `name` attribute).
    pub name: String,
    pub outputs: BTreeMap<String, DerivationOutput>,
    /// Input derivations and the outputs used from each.
    pub input_drvs: BTreeMap<StorePath, BTreeSet<String>>,
    pub input_srcs: BTreeSet<StorePath>,
    /// The `system` (Nix's `platform`), e.g. `x86_64-linux`.
    pub system: Vec<u8>,
    pub builder: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub env: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Derivation {
    /// The derivation name of a `.drv` store path: its name minus `.drv`, or `None`
    /// when it does not end in `.drv`. Mirrors `Derivation::nameFromPath`.
    pub fn name_from_drv_path(drv_path: &StorePath) -> Option<&str> {
        drv_path
            .name()
            .strip_suffix(".drv")
            .filter(|n| !n.is_empty())
    }

    /// An environment variable's value.
    pub fn env_var(&self, key: &str) -> Option<&[u8]> {
        self.env.get(key.as_bytes()).map(Vec::as_slice)
    }

    /// Whether `builder` is `builtin:...`. Mirrors `isBuiltin`.
    pub fn is_builtin(&self) -> bool {
        self.builder.starts_with(b"builtin:")
    }

    /// Classifies the derivation by its outputs. Mirrors `BasicDerivation::type`.
    pub fn derivation_type(&self) -> Result<DerivationType, DerivationError> {
        let (mut ia, mut fixed, mut floating, mut deferred, mut impure) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut floating_algo: Option<HashAlgo> = None;
        for (name, out) in &self.outputs {
            match out {
                DerivationOutput::InputAddressed { .. } => ia.push(name.clone()),
                DerivationOutput::CAFixed { .. } => fixed.push(name.clone()),
                DerivationOutput::CAFloating { algo, .. } => {
                    floating.push(name.clone());
                    match floating_algo {
                        None => floating_algo = Some(*algo),
                        Some(a) if a != *algo => {
                            return Err(DerivationError::FloatingAlgoMismatch(a, *algo))
                        }
                        Some(_) => {}
                    }
                }
                DerivationOutput::Deferred => deferred.push(name.clone()),
                DerivationOutput::Impure { .. } => impure.push(name.clone()),
            }
        }
        let kinds = [&ia, &fixed, &floating, &deferred, &impure];
        match kinds.iter().filter(|k| !k.is_empty()).count() {
            0 => Err(DerivationError::NoOutputs),
            1 if !ia.is_empty() => Ok(DerivationType::InputAddressed { deferred: false }),
            1 if !fixed.is_empty() => {
                if fixed.len() > 1 {
                    return Err(DerivationError::MultipleFixedOutputs(fixed));
                }
                if fixed[0] != "out" {
                    return Err(DerivationError::FixedOutputNotOut(fixed.remove(0)));
                }
                Ok(DerivationType::ContentAddressed { fixed: true })
            }
            1 if !floating.is_empty() => Ok(DerivationType::ContentAddressed { fixed: false }),
            1 if !deferred.is_empty() => Ok(DerivationType::InputAddressed { deferred: true }),
            1 => Ok(DerivationType::Impure),
            _ => Err(DerivationError::MixedOutputTypes(
                self.outputs.keys().cloned().collect(),
            )),
        }
    }

    /// Each output's path when known without building (see [`DerivationOutput::path`]).
    /// Mirrors `outputsAndOptPaths`.
    pub fn declared_output_paths(
        &self,
        store_dir: &StoreDir,
    ) -> Result<BTreeMap<String, Option<StorePath>>, DerivationError> {
        self.outputs
            .iter()
            .map(|(name, out)| Ok((name.clone(), out.path(store_dir, &self.name, name)?)))
            .collect()
    }

    /// The paths a `.drv` file references: input sources and input derivations.
    /// Mirrors the reference set of `writeDerivation`.
    pub fn references(&self) -> BTreeSet<&StorePath> {
        self.input_srcs
            .iter()
            .chain(self.input_drvs.keys())
            .collect()
    }

    /// Checks the name and the output names (the checks made while parsing).
    pub fn validate_names(&self) -> Result<(), DerivationError> {
        check_drv_name(&self.name)?;
        for name in self.outputs.keys() {
            if !is_valid_output_name(name.as_bytes()) {
                return Err(DerivationError::InvalidOutputName(name.clone()));
            }
        }
        Ok(())
    }
}

/// A derivation name must be a valid store path name, and so must `<name>.drv`.
pub(crate) fn check_drv_name(name: &str) -> Result<(), DerivationError> {
    check_name(name)
        .and_then(|()| check_name(&format!("{name}.drv")))
        .map_err(|source| DerivationError::InvalidName {
            name: name.to_owned(),
            source,
        })
}

/// Output names are used in store path names (`<name>-<output>`), so rix holds them
/// to the store path name alphabet; this also keeps them printable without escapes.
pub(crate) fn is_valid_output_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> StorePath {
        StorePath::from_base_name(s).unwrap()
    }

    #[test]
    fn method_prefixes() {
        assert_eq!(
            CaMethod::split_prefix("r:sha256"),
            (CaMethod::Recursive, "sha256")
        );
        assert_eq!(
            CaMethod::split_prefix("text:sha256"),
            (CaMethod::Text, "sha256")
        );
        assert_eq!(CaMethod::split_prefix("md5"), (CaMethod::Flat, "md5"));
        for m in [CaMethod::Flat, CaMethod::Recursive, CaMethod::Text] {
            assert_eq!(CaMethod::from_json_name(m.json_name()), Some(m));
            assert_eq!(
                CaMethod::split_prefix(&m.method_algo(HashAlgo::Sha1)),
                (m, "sha1")
            );
        }
    }

    #[test]
    fn types() {
        let h = HashAlgo::Sha256.digest("x");
        let ia = DerivationOutput::InputAddressed {
            path: path("00bgd045z0d4icpbc2yyz4gx48ak44la-x"),
        };
        let fixed = DerivationOutput::CAFixed {
            method: CaMethod::Flat,
            hash: h,
        };
        let floating = |algo| DerivationOutput::CAFloating {
            method: CaMethod::Recursive,
            algo,
        };
        let mk = |outs: Vec<(&str, DerivationOutput)>| Derivation {
            name: "x".into(),
            outputs: outs.into_iter().map(|(n, o)| (n.to_owned(), o)).collect(),
            ..Default::default()
        };
        use DerivationType as T;
        assert_eq!(
            mk(vec![]).derivation_type(),
            Err(DerivationError::NoOutputs)
        );
        assert_eq!(
            mk(vec![("out", ia.clone()), ("dev", ia.clone())]).derivation_type(),
            Ok(T::InputAddressed { deferred: false })
        );
        assert_eq!(
            mk(vec![("out", fixed.clone())]).derivation_type(),
            Ok(T::ContentAddressed { fixed: true })
        );
        assert!(matches!(
            mk(vec![("dev", fixed.clone())]).derivation_type(),
            Err(DerivationError::FixedOutputNotOut(_))
        ));
        assert!(matches!(
            mk(vec![("out", fixed.clone()), ("dev", fixed.clone())]).derivation_type(),
            Err(DerivationError::MultipleFixedOutputs(_))
        ));
        assert!(matches!(
            mk(vec![("out", ia), ("dev", DerivationOutput::Deferred)]).derivation_type(),
            Err(DerivationError::MixedOutputTypes(_))
        ));
        assert_eq!(
            mk(vec![
                ("out", floating(HashAlgo::Sha256)),
                ("a", floating(HashAlgo::Sha256))
            ])
            .derivation_type(),
            Ok(T::ContentAddressed { fixed: false })
        );
        assert!(matches!(
            mk(vec![
                ("out", floating(HashAlgo::Sha256)),
                ("a", floating(HashAlgo::Sha1))
            ])
            .derivation_type(),
            Err(DerivationError::FloatingAlgoMismatch(..))
        ));
        assert_eq!(
            mk(vec![("out", DerivationOutput::Deferred)]).derivation_type(),
            Ok(T::InputAddressed { deferred: true })
        );
    }

    #[test]
    fn names() {
        let p = path("00bgd045z0d4icpbc2yyz4gx48ak44la-hello-1.0.drv");
        assert_eq!(Derivation::name_from_drv_path(&p), Some("hello-1.0"));
        assert_eq!(
            Derivation::name_from_drv_path(&path("00bgd045z0d4icpbc2yyz4gx48ak44la-hello")),
            None
        );
        assert!(check_drv_name("hello").is_ok());
        assert!(check_drv_name("").is_err());
        assert!(check_drv_name(&"x".repeat(208)).is_err());
        assert!(is_valid_output_name(b"out"));
        assert!(!is_valid_output_name(b""));
        assert!(!is_valid_output_name(b"a\"b"));
        let mut drv = Derivation {
            name: "ok".into(),
            outputs: [("out".to_owned(), DerivationOutput::Deferred)].into(),
            ..Default::default()
        };
        assert_eq!(drv.validate_names(), Ok(()));
        drv.outputs.insert("b d".into(), DerivationOutput::Deferred);
        assert_eq!(
            drv.validate_names(),
            Err(DerivationError::InvalidOutputName("b d".into()))
        );
    }
}
