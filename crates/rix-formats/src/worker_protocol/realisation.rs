//! Derivation outputs and their realisations (content-addressed derivations).
//! Mirrors `DrvOutput` and `Realisation` in Nix's `realisation.hh`/`realisation.cc`
//! and their serialisers in `common-protocol.cc`: a `DrvOutput` travels as
//! `sha256:<base16>!<output>`, a `Realisation` as a JSON string.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read, Write};

use serde_json::Value;

use super::serialise::{Ctx, Serialise};
use super::wire::{read_string, write_bytes, WireError};
use crate::hash::{Encoding, Hash};
use crate::store_path::StorePath;

/// One output of a derivation, named by the derivation's hash modulo and the
/// output's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DrvOutput {
    pub drv_hash: Hash,
    pub output_name: String,
}

impl DrvOutput {
    /// Parses `<algo>:<digest>!<output>` (or an SRI hash before the `!`), as
    /// `DrvOutput::parse`: the first `!` separates them.
    pub fn parse(s: &str) -> Result<DrvOutput, String> {
        let (hash, name) = s
            .split_once('!')
            .ok_or_else(|| format!("invalid derivation output id '{s}'"))?;
        let drv_hash = Hash::parse_prefixed(hash).map_err(|e| e.to_string())?;
        Ok(DrvOutput {
            drv_hash,
            output_name: name.to_owned(),
        })
    }
}

/// `sha256:<base16>!<output>`, as `DrvOutput::to_string`.
impl fmt::Display for DrvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}!{}",
            self.drv_hash.to_typed_string(Encoding::Base16),
            self.output_name
        )
    }
}

/// Nix's order (`GENERATE_CMP(DrvOutput, drvHash, outputName)` with
/// `Hash::operator<=>`: digest size, digest bytes, algorithm), which decides the
/// order of a `std::map<DrvOutput, _>` on the wire.
impl Ord for DrvOutput {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.drv_hash, &other.drv_hash);
        a.digest()
            .len()
            .cmp(&b.digest().len())
            .then_with(|| a.digest().cmp(b.digest()))
            .then_with(|| a.algo().cmp(&b.algo()))
            .then_with(|| self.output_name.cmp(&other.output_name))
    }
}

impl PartialOrd for DrvOutput {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialise for DrvOutput {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let s = read_string(r, &ctx.limits, "derivation output")?;
        DrvOutput::parse(&s).map_err(|e| WireError::invalid("derivation output", e))
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_bytes(w, self.to_string().as_bytes())
    }
}

/// Where a derivation output ended up, with signatures and the realisations it
/// depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realisation {
    pub id: DrvOutput,
    pub out_path: StorePath,
    /// Free-form strings on the wire (`name:base64` when well formed).
    pub signatures: BTreeSet<String>,
    pub dependent_realisations: BTreeMap<DrvOutput, StorePath>,
}

impl Realisation {
    /// The JSON Nix sends (`Realisation::toJSON().dump()`): keys sorted, no
    /// spaces, store paths without the store directory. Written by hand because
    /// the object's key order must not depend on serde_json's features.
    pub fn to_json(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("strings always serialise");
        let mut deps: Vec<(String, String)> = self
            .dependent_realisations
            .iter()
            .map(|(id, path)| (id.to_string(), path.to_string()))
            .collect();
        deps.sort();
        let deps: Vec<String> = deps
            .iter()
            .map(|(k, v)| format!("{}:{}", q(k), q(v)))
            .collect();
        let sigs: Vec<String> = self.signatures.iter().map(|s| q(s)).collect();
        format!(
            "{{\"dependentRealisations\":{{{}}},\"id\":{},\"outPath\":{},\"signatures\":[{}]}}",
            deps.join(","),
            q(&self.id.to_string()),
            q(&self.out_path.to_string()),
            sigs.join(",")
        )
    }

    /// What a signature of this realisation signs: its JSON without the
    /// signatures. Mirrors `Realisation::fingerprint`.
    pub fn fingerprint(&self) -> String {
        let json = self.to_json();
        let cut = json
            .rfind(",\"signatures\":[")
            .expect("to_json writes the signatures last");
        format!("{}}}", &json[..cut])
    }

    /// Signs the fingerprint with `key`, adding the signature. Mirrors
    /// `Realisation::sign`.
    pub fn sign(&mut self, key: &crate::signature::SecretKey) {
        let sig = key.sign(self.fingerprint().as_bytes());
        self.signatures.insert(sig.to_string());
    }

    /// Whether a signature verifies with one of `trusted`. Mirrors
    /// `Realisation::checkSignatures` (at least one).
    pub fn is_signed_by(&self, trusted: &[crate::signature::PublicKey]) -> bool {
        let fp = self.fingerprint();
        self.signatures.iter().any(|s| {
            s.parse::<crate::signature::Signature>().is_ok_and(|sig| {
                trusted
                    .iter()
                    .any(|k| k.name() == sig.name() && k.verify(fp.as_bytes(), &sig))
            })
        })
    }

    /// Parses Nix's JSON form (`Realisation::fromJSON`): `id` and `outPath` are
    /// required, `signatures` and `dependentRealisations` optional, other keys
    /// ignored.
    pub fn from_json(json: &str) -> Result<Realisation, String> {
        let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let obj = value
            .as_object()
            .ok_or("realisation is not a JSON object")?;
        let string_field = |name: &str| -> Result<&str, String> {
            match obj.get(name) {
                Some(Value::String(s)) => Ok(s),
                Some(_) => Err(format!("realisation field '{name}' is not a string")),
                None => Err(format!("realisation is missing field '{name}'")),
            }
        };
        let base_name = |s: &str| StorePath::from_base_name(s).map_err(|e| e.to_string());
        let id = DrvOutput::parse(string_field("id")?)?;
        let out_path = base_name(string_field("outPath")?)?;
        let mut signatures = BTreeSet::new();
        if let Some(sigs) = obj.get("signatures") {
            let sigs = sigs.as_array().ok_or("'signatures' is not an array")?;
            for sig in sigs {
                let sig = sig.as_str().ok_or("a signature is not a string")?;
                signatures.insert(sig.to_owned());
            }
        }
        let mut dependent_realisations = BTreeMap::new();
        if let Some(deps) = obj.get("dependentRealisations") {
            let deps = deps
                .as_object()
                .ok_or("'dependentRealisations' is not an object")?;
            for (k, v) in deps {
                let v = v
                    .as_str()
                    .ok_or("a dependent realisation is not a string")?;
                dependent_realisations.insert(DrvOutput::parse(k)?, base_name(v)?);
            }
        }
        Ok(Realisation {
            id,
            out_path,
            signatures,
            dependent_realisations,
        })
    }
}

impl Serialise for Realisation {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let s = read_string(r, &ctx.limits, "realisation")?;
        Realisation::from_json(&s).map_err(|e| WireError::invalid("realisation", e))
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, _: &Ctx) -> io::Result<()> {
        write_bytes(w, self.to_json().as_bytes())
    }
}
