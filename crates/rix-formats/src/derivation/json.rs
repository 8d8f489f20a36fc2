//! Derivations as JSON.
//!
//! Printing follows `nix show-derivation` of Nix 2.8 (`src/nix/show-derivation.cc`
//! with the writer of `src/libutil/json.cc`), byte for byte:
//!
//! ```text
//! {
//!   "/nix/store/...-x.drv": {
//!     "outputs": { "out": { "path": ..., "hashAlgo": "r:sha256", "hash": <base16> } },
//!     "inputSrcs": [...], "inputDrvs": { "<path>": ["out"] },
//!     "system": ..., "builder": ..., "args": [...], "env": {...}
//!   }
//! }
//! ```
//!
//! with two-space indentation, `{}`/`[]` for empty containers, strings escaped as
//! Nix does (`\"`, `\\`, `\n`, `\r`, `\t`, other bytes below 0x20 as `\u00XX`, all
//! other bytes verbatim, so non-UTF-8 environments come out as the same raw bytes)
//! and a final newline. Floating outputs carry only `hashAlgo`, impure ones
//! `hashAlgo` and `"impure": true`, deferred ones nothing.
//!
//! Reading accepts that form (wrapped in its path-keyed object or not), the form of
//! later Nix versions (with `name`), and the versioned form of current Nix
//! (`"version": 3|4`, `inputs: {srcs, drvs}`, base-name paths, `method` + SRI `hash`,
//! `structuredAttrs`), as in `tests/vectors/nix-libstore/derivation/*.json`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use thiserror::Error;

use super::aterm::name_from_env;
use super::{
    check_drv_name, fixed_output_path, is_valid_output_name, CaMethod, Derivation, DerivationError,
    DerivationOutput,
};
use crate::hash::{Hash, HashAlgo, HashError};
use crate::store_path::{StoreDir, StorePath, StorePathError};

/// Why a JSON derivation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonError {
    #[error("derivation JSON: '{field}' must be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("derivation JSON: missing field '{0}'")]
    MissingField(String),
    #[error("derivation JSON: unknown field '{0}'")]
    UnknownField(String),
    #[error("derivation JSON: unsupported version {0} (rix reads versions up to 4)")]
    UnsupportedVersion(String),
    #[error("derivation JSON: invalid store path '{path}': {source}")]
    InvalidPath {
        path: String,
        source: StorePathError,
    },
    #[error("derivation JSON: invalid output name '{0}'")]
    InvalidOutputName(String),
    #[error(
        "derivation JSON: input derivation '{0}' has dynamic outputs, which rix does not support"
    )]
    DynamicOutputs(String),
    #[error("derivation JSON: output '{output}' has unknown hash algorithm '{algo}'")]
    InvalidHashAlgo { output: String, algo: String },
    #[error("derivation JSON: output '{output}' has unknown method '{method}'")]
    InvalidMethod { output: String, method: String },
    #[error("derivation JSON: output '{output}' has method '{method}' but hashAlgo '{algo}'")]
    MethodMismatch {
        output: String,
        method: String,
        algo: String,
    },
    #[error("derivation JSON: output '{output}' has invalid hash '{hash}': {source}")]
    InvalidHash {
        output: String,
        hash: String,
        source: HashError,
    },
    #[error("derivation JSON: output '{output}' is {kind} and cannot have a path")]
    UnexpectedPath { output: String, kind: &'static str },
    #[error("derivation JSON: fixed output '{output}' has path '{path}' but its hash gives '{expected}'")]
    WrongFixedOutputPath {
        output: String,
        path: String,
        expected: String,
    },
    #[error("derivation JSON: duplicate input '{0}'")]
    Duplicate(String),
    #[error("derivation JSON has no name: give it one, or set env 'name'")]
    NoName,
    #[error("derivation JSON: env '__json' and 'structuredAttrs' disagree")]
    StructuredAttrsConflict,
    #[error("derivation JSON: {0}")]
    Derivation(#[from] DerivationError),
}

/// A JSON value whose strings are bytes, printed the way Nix 2.8's `JSONWriter` does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Str(Vec<u8>),
    Bool(bool),
    Obj(Vec<(Vec<u8>, Node)>),
    Arr(Vec<Node>),
}

impl Node {
    fn str(s: impl AsRef<[u8]>) -> Self {
        Self::Str(s.as_ref().to_vec())
    }

    fn obj<K: AsRef<[u8]>>(entries: impl IntoIterator<Item = (K, Node)>) -> Self {
        Self::Obj(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v))
                .collect(),
        )
    }

    /// Lossy for non-UTF-8 strings (U+FFFD), like every JSON library.
    fn to_value(&self) -> Value {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Self::Str(b) => Value::String(s(b)),
            Self::Bool(b) => Value::Bool(*b),
            Self::Arr(v) => Value::Array(v.iter().map(Node::to_value).collect()),
            Self::Obj(v) => Value::Object(v.iter().map(|(k, v)| (s(k), v.to_value())).collect()),
        }
    }

    fn write(&self, out: &mut Vec<u8>, depth: usize) {
        let newline = |out: &mut Vec<u8>, depth: usize| {
            out.push(b'\n');
            out.resize(out.len() + depth * 2, b' ');
        };
        match self {
            Self::Str(s) => write_string(out, s),
            Self::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Self::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    newline(out, depth + 1);
                    item.write(out, depth + 1);
                }
                if !items.is_empty() {
                    newline(out, depth);
                }
                out.push(b']');
            }
            Self::Obj(entries) => {
                out.push(b'{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    newline(out, depth + 1);
                    write_string(out, k);
                    out.extend_from_slice(b": ");
                    v.write(out, depth + 1);
                }
                if !entries.is_empty() {
                    newline(out, depth);
                }
                out.push(b'}');
            }
        }
    }
}

/// A JSON string as Nix 2.8's `toJSON` writes it. Mirrors `toJSON(std::ostream&, const char*, const char*)`.
fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in s {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=31 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

impl Derivation {
    fn to_node(&self, store_dir: &StoreDir) -> Result<Node, DerivationError> {
        let mut outputs = Vec::new();
        for (name, out) in &self.outputs {
            let mut fields = Vec::new();
            if let Some(path) = out.path(store_dir, &self.name, name)? {
                fields.push(("path", Node::str(store_dir.display(&path))));
            }
            match out {
                DerivationOutput::InputAddressed { .. } | DerivationOutput::Deferred => {}
                DerivationOutput::CAFixed { hash, .. } => {
                    fields.push(("hashAlgo", Node::str(out.hash_algo_field())));
                    fields.push(("hash", Node::str(hash.to_base16())));
                }
                DerivationOutput::CAFloating { .. } => {
                    fields.push(("hashAlgo", Node::str(out.hash_algo_field())));
                }
                DerivationOutput::Impure { .. } => {
                    fields.push(("hashAlgo", Node::str(out.hash_algo_field())));
                    fields.push(("impure", Node::Bool(true)));
                }
            }
            outputs.push((name.as_bytes(), Node::obj(fields)));
        }
        let srcs = self
            .input_srcs
            .iter()
            .map(|p| Node::str(store_dir.display(p)))
            .collect();
        let drvs = self.input_drvs.iter().map(|(p, outs)| {
            (
                store_dir.display(p),
                Node::Arr(outs.iter().map(Node::str).collect()),
            )
        });
        Ok(Node::obj([
            ("outputs", Node::obj(outputs)),
            ("inputSrcs", Node::Arr(srcs)),
            ("inputDrvs", Node::obj(drvs)),
            ("system", Node::str(&self.system)),
            ("builder", Node::str(&self.builder)),
            ("args", Node::Arr(self.args.iter().map(Node::str).collect())),
            (
                "env",
                Node::obj(self.env.iter().map(|(k, v)| (k, Node::str(v)))),
            ),
        ]))
    }

    /// The derivation as `nix show-derivation` (Nix 2.8) shows it, without the
    /// outer object keyed by its path. Non-UTF-8 bytes become U+FFFD; use
    /// [`show_derivations`] for the exact bytes.
    pub fn to_json_value(&self, store_dir: &StoreDir) -> Result<Value, DerivationError> {
        Ok(self.to_node(store_dir)?.to_value())
    }

    /// Reads one derivation object in any supported JSON form (see the module
    /// docs). The name is the JSON's `name`, else `name`, else the environment's.
    /// Mirrors `Derivation::fromJSON`.
    pub fn from_json(
        value: &Value,
        store_dir: &StoreDir,
        name: Option<&str>,
    ) -> Result<Self, JsonError> {
        from_json(value, store_dir, name)
    }
}

fn show_node(
    store_dir: &StoreDir,
    drvs: &[(&StorePath, &Derivation)],
) -> Result<Node, DerivationError> {
    let mut entries: BTreeMap<String, &Derivation> = BTreeMap::new();
    for (p, d) in drvs {
        entries.insert(store_dir.display(p), d);
    }
    let entries = entries
        .into_iter()
        .map(|(p, d)| Ok((p, d.to_node(store_dir)?)))
        .collect::<Result<Vec<_>, DerivationError>>()?;
    Ok(Node::obj(entries))
}

/// The exact bytes `nix show-derivation` of Nix 2.8 prints for these derivations
/// (keyed and sorted by path, as Nix does; duplicates shown once), final newline
/// included.
pub fn show_derivations(
    store_dir: &StoreDir,
    drvs: &[(&StorePath, &Derivation)],
) -> Result<Vec<u8>, DerivationError> {
    let mut out = Vec::new();
    show_node(store_dir, drvs)?.write(&mut out, 0);
    out.push(b'\n');
    Ok(out)
}

/// [`show_derivations`] as a JSON value (lossy for non-UTF-8 strings).
pub fn show_derivations_value(
    store_dir: &StoreDir,
    drvs: &[(&StorePath, &Derivation)],
) -> Result<Value, DerivationError> {
    Ok(show_node(store_dir, drvs)?.to_value())
}

/// Reads `nix show-derivation` output: an object from `.drv` paths to derivations,
/// each named after its path.
pub fn parse_show_derivation(
    value: &Value,
    store_dir: &StoreDir,
) -> Result<Vec<(StorePath, Derivation)>, JsonError> {
    let obj = as_object(value, "(top level)")?;
    let mut res = Vec::with_capacity(obj.len());
    for (path, drv) in obj {
        let p = parse_path(path, store_dir)?;
        let name = Derivation::name_from_drv_path(&p).ok_or_else(|| JsonError::InvalidPath {
            path: path.clone(),
            source: StorePathError::InvalidStoreDir(format!("'{path}' is not a .drv path")),
        })?;
        let drv = from_json(drv, store_dir, Some(name))?;
        res.push((p, drv));
    }
    Ok(res)
}

fn wrong_type(field: &str, expected: &'static str) -> JsonError {
    JsonError::WrongType {
        field: field.to_owned(),
        expected,
    }
}

fn as_object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, JsonError> {
    v.as_object().ok_or_else(|| wrong_type(field, "an object"))
}

fn as_str<'a>(v: &'a Value, field: &str) -> Result<&'a str, JsonError> {
    v.as_str().ok_or_else(|| wrong_type(field, "a string"))
}

fn as_array<'a>(v: &'a Value, field: &str) -> Result<&'a [Value], JsonError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| wrong_type(field, "an array"))
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a Value, JsonError> {
    obj.get(key)
        .ok_or_else(|| JsonError::MissingField(key.to_owned()))
}

/// A full path in `store_dir`, or a bare `<hash>-<name>` (the newest JSON form).
fn parse_path(s: &str, store_dir: &StoreDir) -> Result<StorePath, JsonError> {
    let res = if s.starts_with('/') {
        store_dir.parse(s)
    } else {
        StorePath::from_base_name(s)
    };
    res.map_err(|source| JsonError::InvalidPath {
        path: s.to_owned(),
        source,
    })
}

fn output_names(v: &Value, field: &str) -> Result<BTreeSet<String>, JsonError> {
    let mut res = BTreeSet::new();
    for o in as_array(v, field)? {
        let o = as_str(o, field)?;
        if !is_valid_output_name(o.as_bytes()) {
            return Err(JsonError::InvalidOutputName(o.to_owned()));
        }
        if !res.insert(o.to_owned()) {
            return Err(JsonError::Duplicate(format!("{field} output {o}")));
        }
    }
    Ok(res)
}

const KNOWN_FIELDS: &[&str] = &[
    "name",
    "version",
    "outputs",
    "inputs",
    "inputSrcs",
    "inputDrvs",
    "system",
    "platform",
    "builder",
    "args",
    "env",
    "structuredAttrs",
];

fn from_json(
    value: &Value,
    store_dir: &StoreDir,
    name: Option<&str>,
) -> Result<Derivation, JsonError> {
    let obj = as_object(value, "derivation")?;
    if let Some(k) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(JsonError::UnknownField(k.clone()));
    }
    if let Some(v) = obj.get("version") {
        match v.as_u64() {
            Some(0..=4) => {}
            _ => return Err(JsonError::UnsupportedVersion(v.to_string())),
        }
    }

    let no_drvs = Value::Object(Map::new());
    let (srcs, drvs) = match obj.get("inputs") {
        // A resolved (basic) derivation: sources only.
        Some(srcs @ Value::Array(_)) => (srcs, &no_drvs),
        Some(inputs) => {
            let inputs = as_object(inputs, "inputs")?;
            (field(inputs, "srcs")?, field(inputs, "drvs")?)
        }
        None => (field(obj, "inputSrcs")?, field(obj, "inputDrvs")?),
    };
    let mut input_srcs = BTreeSet::new();
    for s in as_array(srcs, "inputSrcs")? {
        let s = as_str(s, "inputSrcs")?;
        if !input_srcs.insert(parse_path(s, store_dir)?) {
            return Err(JsonError::Duplicate(s.to_owned()));
        }
    }
    let mut input_drvs = BTreeMap::new();
    for (path, v) in as_object(drvs, "inputDrvs")? {
        let outputs = match v {
            Value::Object(o) => {
                let dynamic = o.get("dynamicOutputs");
                let empty = |d: &Value| d.as_object().is_some_and(Map::is_empty);
                if dynamic.is_some_and(|d| !empty(d)) {
                    return Err(JsonError::DynamicOutputs(path.clone()));
                }
                output_names(field(o, "outputs")?, path)?
            }
            v => output_names(v, path)?,
        };
        if input_drvs
            .insert(parse_path(path, store_dir)?, outputs)
            .is_some()
        {
            return Err(JsonError::Duplicate(path.clone()));
        }
    }

    let system = obj
        .get("system")
        .or_else(|| obj.get("platform"))
        .ok_or_else(|| JsonError::MissingField("system".into()))?;
    let system = as_str(system, "system")?.as_bytes().to_vec();
    let builder = as_str(field(obj, "builder")?, "builder")?
        .as_bytes()
        .to_vec();
    let args = as_array(field(obj, "args")?, "args")?
        .iter()
        .map(|a| Ok(as_str(a, "args")?.as_bytes().to_vec()))
        .collect::<Result<Vec<_>, JsonError>>()?;
    let mut env = BTreeMap::new();
    for (k, v) in as_object(field(obj, "env")?, "env")? {
        env.insert(k.as_bytes().to_vec(), as_str(v, k)?.as_bytes().to_vec());
    }
    if let Some(sa) = obj.get("structuredAttrs") {
        as_object(sa, "structuredAttrs")?;
        match env.get(b"__json".as_slice()) {
            // Both given: they must agree; the environment's bytes are kept.
            Some(json) => {
                if serde_json::from_slice::<Value>(json).ok().as_ref() != Some(sa) {
                    return Err(JsonError::StructuredAttrsConflict);
                }
            }
            None => {
                let json =
                    serde_json::to_string(&sorted_keys(sa)).expect("a JSON value serialises");
                env.insert(b"__json".to_vec(), json.into_bytes());
            }
        }
    }

    let name = match obj.get("name") {
        Some(n) => as_str(n, "name")?.to_owned(),
        None => match name {
            Some(n) => n.to_owned(),
            None => name_from_env(&env).ok_or(JsonError::NoName)?,
        },
    };
    check_drv_name(&name)?;

    let mut drv = Derivation {
        name,
        outputs: BTreeMap::new(),
        input_drvs,
        input_srcs,
        system,
        builder,
        args,
        env,
    };
    for (out_name, v) in as_object(field(obj, "outputs")?, "outputs")? {
        if !is_valid_output_name(out_name.as_bytes()) {
            return Err(JsonError::InvalidOutputName(out_name.clone()));
        }
        let out = output_from_json(out_name, v, &drv.name, store_dir)?;
        drv.outputs.insert(out_name.clone(), out);
    }
    Ok(drv)
}

/// `value` with every object's keys sorted, as Nix's `nlohmann::json` keeps them
/// (the `__json` of structured attributes is that object, printed compactly).
fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_keys).collect()),
        v => v.clone(),
    }
}

fn output_from_json(
    name: &str,
    v: &Value,
    drv_name: &str,
    store_dir: &StoreDir,
) -> Result<DerivationOutput, JsonError> {
    let obj = as_object(v, name)?;
    let get_str = |key: &str| -> Result<Option<&str>, JsonError> {
        obj.get(key).map(|v| as_str(v, key)).transpose()
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["path", "hashAlgo", "hash", "method", "impure"].contains(&k.as_str()))
    {
        return Err(JsonError::UnknownField(format!("outputs.{name}.{k}")));
    }
    let path = get_str("path")?.filter(|p| !p.is_empty());
    let hash = get_str("hash")?;
    let impure = match obj.get("impure") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| wrong_type("impure", "a boolean"))?,
    };

    // Method: from `method`, or from the `r:` / `text:` prefix of `hashAlgo`.
    let algo_field = get_str("hashAlgo")?;
    let (prefix_method, algo_name) = match algo_field {
        Some(a) => {
            let (m, rest) = CaMethod::split_prefix(a);
            (Some(m).filter(|_| rest.len() != a.len()), Some(rest))
        }
        None => (None, None),
    };
    let method = match get_str("method")? {
        Some(m) => {
            let m2 = CaMethod::from_json_name(m).ok_or_else(|| JsonError::InvalidMethod {
                output: name.to_owned(),
                method: m.to_owned(),
            })?;
            if prefix_method.is_some_and(|p| p != m2) {
                return Err(JsonError::MethodMismatch {
                    output: name.to_owned(),
                    method: m.to_owned(),
                    algo: algo_field.unwrap_or_default().to_owned(),
                });
            }
            Some(m2)
        }
        None => prefix_method,
    };
    let algo = algo_name
        .map(|a| {
            a.parse::<HashAlgo>()
                .map_err(|_| JsonError::InvalidHashAlgo {
                    output: name.to_owned(),
                    algo: algo_field.unwrap_or_default().to_owned(),
                })
        })
        .transpose()?;
    let no_path = |kind| match path {
        Some(_) => Err(JsonError::UnexpectedPath {
            output: name.to_owned(),
            kind,
        }),
        None => Ok(()),
    };
    let method_or_flat = method.unwrap_or(CaMethod::Flat);

    if let Some(h) = hash {
        let hash = Hash::parse_any(h, algo).map_err(|source| JsonError::InvalidHash {
            output: name.to_owned(),
            hash: h.to_owned(),
            source,
        })?;
        let expected = fixed_output_path(store_dir, drv_name, name, method_or_flat, &hash)?;
        if let Some(p) = path {
            if parse_path(p, store_dir)? != expected {
                return Err(JsonError::WrongFixedOutputPath {
                    output: name.to_owned(),
                    path: p.to_owned(),
                    expected: store_dir.display(&expected),
                });
            }
        }
        return Ok(DerivationOutput::CAFixed {
            method: method_or_flat,
            hash,
        });
    }
    if let Some(algo) = algo {
        if impure {
            no_path("impure")?;
            return Ok(DerivationOutput::Impure {
                method: method_or_flat,
                algo,
            });
        }
        no_path("floating content-addressed")?;
        return Ok(DerivationOutput::CAFloating {
            method: method_or_flat,
            algo,
        });
    }
    if impure {
        return Err(JsonError::MissingField(format!("outputs.{name}.hashAlgo")));
    }
    Ok(match path {
        Some(p) => DerivationOutput::InputAddressed {
            path: parse_path(p, store_dir)?,
        },
        None => DerivationOutput::Deferred,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_escapes_like_nix() {
        let mut out = Vec::new();
        write_string(&mut out, b"a\"b\\c\nd\re\tf\x01\x1f\x7f\xc5");
        assert_eq!(out, b"\"a\\\"b\\\\c\\nd\\re\\tf\\u0001\\u001f\x7f\xc5\"");
    }

    #[test]
    fn pretty_printing() {
        let n = Node::obj([
            ("a", Node::obj(Vec::<(&str, Node)>::new())),
            ("b", Node::Arr(vec![])),
            ("c", Node::Arr(vec![Node::str("x"), Node::str("y")])),
            ("d", Node::obj([("e", Node::Bool(true))])),
        ]);
        let mut out = Vec::new();
        n.write(&mut out, 0);
        let expected = "{\n  \"a\": {},\n  \"b\": [],\n  \"c\": [\n    \"x\",\n    \"y\"\n  ],\n  \"d\": {\n    \"e\": true\n  }\n}";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn outputs_in_every_form() {
        let dir = StoreDir::default();
        let parse = |j: &str| output_from_json("out", &serde_json::from_str(j).unwrap(), "x", &dir);
        let sri = "sha256-iUUXyRY8iW7DGirb0zwGgf1fRbLA7wimTJKgP7l/OQ8=";
        let hex = "894517c9163c896ec31a2adbd33c0681fd5f45b2c0ef08a64c92a03fb97f390f";
        let nar = parse(&format!(r#"{{"method":"nar","hash":"{sri}"}}"#)).unwrap();
        let old = parse(&format!(r#"{{"hashAlgo":"r:sha256","hash":"{hex}"}}"#)).unwrap();
        let v3 = parse(&format!(
            r#"{{"method":"nar","hashAlgo":"sha256","hash":"{hex}"}}"#
        ))
        .unwrap();
        assert_eq!(nar, old);
        assert_eq!(nar, v3);
        assert!(matches!(
            parse(&format!(
                r#"{{"method":"flat","hashAlgo":"r:sha256","hash":"{hex}"}}"#
            )),
            Err(JsonError::MethodMismatch { .. })
        ));
        assert_eq!(
            parse(r#"{"hashAlgo":"sha256","method":"nar"}"#).unwrap(),
            DerivationOutput::CAFloating {
                method: CaMethod::Recursive,
                algo: HashAlgo::Sha256
            }
        );
        assert_eq!(
            parse(r#"{"hashAlgo":"r:sha256","impure":true}"#).unwrap(),
            DerivationOutput::Impure {
                method: CaMethod::Recursive,
                algo: HashAlgo::Sha256
            }
        );
        assert_eq!(parse("{}").unwrap(), DerivationOutput::Deferred);
        assert!(matches!(
            parse(r#"{"pat":"x"}"#),
            Err(JsonError::UnknownField(_))
        ));
        assert!(matches!(
            parse(&format!(
                r#"{{"hashAlgo":"r:sha256","hash":"{hex}","path":"/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x"}}"#
            )),
            Err(JsonError::WrongFixedOutputPath { .. })
        ));
    }
}
