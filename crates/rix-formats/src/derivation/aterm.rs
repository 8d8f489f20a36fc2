//! The `.drv` ATerm: `Derive([outputs],[inputDrvs],[inputSrcs],system,builder,[args],[env])`.
//!
//! Mirrors `parseDerivation` and `Derivation::unparse` in Nix's `derivations.cc`.
//! Printing is exactly Nix's: builder, arguments and environment are quoted with
//! the escapes `\"`, `\\`, `\n`, `\r`, `\t` (every other byte verbatim); output
//! names, paths, hash fields, system and input output names are printed between
//! quotes without escaping.
//!
//! Parsing accepts what Nix writes and rejects what Nix rejects (unknown hash
//! algorithms, paths outside the store, `DrvWithVersion(...)` formats, a fixed
//! output whose path does not match its hash). It is deliberately stricter than
//! Nix 2.8 where Nix would silently lose data or could not print the result back:
//! duplicate outputs, input derivations, input sources, input output names or
//! environment keys (Nix keeps one of each), stray commas in lists, escapes in
//! fields Nix prints unquoted, a hash with an empty `hashAlgo`, and bytes after
//! the final `)` are errors. Unsorted lists are accepted, as in Nix (they are
//! printed sorted). Every error carries the byte offset where it was found.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::{
    check_drv_name, fixed_output_path, is_valid_output_name, CaMethod, Derivation, DerivationError,
    DerivationOutput,
};
use crate::hash::{Hash, HashAlgo, HashError};
use crate::store_path::{StoreDir, StorePath, StorePathError};

/// Why a `.drv` file could not be parsed. Offsets count bytes from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AtermError {
    #[error("derivation: expected {expected} at byte {offset}, found {}", describe(*found))]
    Expected {
        offset: usize,
        expected: &'static str,
        found: Option<u8>,
    },
    #[error("derivation: unsupported format '{version}' at byte {offset} (rix reads only 'Derive(...)'; dynamic derivations are not supported)")]
    UnsupportedVersion { offset: usize, version: String },
    #[error("derivation: escape sequence at byte {offset} in {field}, which Nix prints without escaping")]
    EscapeInUnquoted { offset: usize, field: &'static str },
    #[error("derivation: invalid store path '{path}' at byte {offset}: {source}")]
    InvalidPath {
        offset: usize,
        path: String,
        source: StorePathError,
    },
    #[error("derivation: invalid output name '{name}' at byte {offset}")]
    InvalidOutputName { offset: usize, name: String },
    #[error("derivation: duplicate {what} '{item}' at byte {offset}")]
    Duplicate {
        offset: usize,
        what: &'static str,
        item: String,
    },
    #[error("derivation: unknown hash algorithm '{algo}' of output '{output}' at byte {offset}")]
    InvalidHashAlgo {
        offset: usize,
        output: String,
        algo: String,
    },
    #[error("derivation: invalid hash '{hash}' of output '{output}' at byte {offset}: {source}")]
    InvalidHash {
        offset: usize,
        output: String,
        hash: String,
        source: HashError,
    },
    #[error("derivation: output '{output}' at byte {offset} must have an empty {field}")]
    UnexpectedField {
        offset: usize,
        output: String,
        field: &'static str,
    },
    #[error("derivation: fixed output '{output}' at byte {offset} has path '{path}' but its hash gives '{expected}'")]
    WrongFixedOutputPath {
        offset: usize,
        output: String,
        path: String,
        expected: String,
    },
    #[error("derivation: unexpected data after the end at byte {offset}")]
    TrailingData { offset: usize },
    #[error("derivation has no name: pass the .drv path's name, or set env 'name'")]
    NoName,
    #[error("derivation: {0}")]
    Derivation(#[from] DerivationError),
}

impl AtermError {
    /// Byte offset of the error, when it points into the input.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Self::Expected { offset, .. }
            | Self::UnsupportedVersion { offset, .. }
            | Self::EscapeInUnquoted { offset, .. }
            | Self::InvalidPath { offset, .. }
            | Self::InvalidOutputName { offset, .. }
            | Self::Duplicate { offset, .. }
            | Self::InvalidHashAlgo { offset, .. }
            | Self::InvalidHash { offset, .. }
            | Self::UnexpectedField { offset, .. }
            | Self::WrongFixedOutputPath { offset, .. }
            | Self::TrailingData { offset } => Some(*offset),
            Self::NoName | Self::Derivation(_) => None,
        }
    }
}

fn describe(found: Option<u8>) -> String {
    match found {
        None => "end of input".to_owned(),
        Some(b) if b.is_ascii_graphic() || b == b' ' => format!("'{}'", char::from(b)),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Derivation {
    /// Parses a `.drv` file. `name` is the derivation name (the `.drv` file name
    /// minus `.drv`, see [`Derivation::name_from_drv_path`]); when `None`, the
    /// environment's `name` (or, with structured attributes, `__json`'s `name`) is
    /// used. Mirrors `parseDerivation`.
    pub fn from_aterm(
        bytes: &[u8],
        store_dir: &StoreDir,
        name: Option<&str>,
    ) -> Result<Self, AtermError> {
        parse(bytes, store_dir, name)
    }

    /// Parses the `.drv` file at store path `drv_path`, naming it after the path.
    pub fn from_aterm_at(
        bytes: &[u8],
        store_dir: &StoreDir,
        drv_path: &StorePath,
    ) -> Result<Self, AtermError> {
        let name = Self::name_from_drv_path(drv_path).ok_or(AtermError::NoName)?;
        parse(bytes, store_dir, Some(name))
    }

    /// The ATerm bytes Nix writes for this derivation. Fails only when a fixed
    /// output's path cannot be computed (invalid name). Mirrors `Derivation::unparse`.
    pub fn to_aterm(&self, store_dir: &StoreDir) -> Result<Vec<u8>, DerivationError> {
        unparse(self, store_dir, false, None)
    }
}

/// An output as written, resolved once the derivation name is known.
struct RawOutput<'a> {
    name: String,
    path: &'a [u8],
    path_offset: usize,
    algo: &'a [u8],
    algo_offset: usize,
    hash: &'a [u8],
    hash_offset: usize,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

type Result<T, E = AtermError> = std::result::Result<T, E>;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn error(&self, expected: &'static str) -> AtermError {
        AtermError::Expected {
            offset: self.pos,
            expected,
            found: self.peek(),
        }
    }

    fn expect(&mut self, c: u8, expected: &'static str) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn eat_str(&mut self, s: &[u8]) -> bool {
        let hit = self.input[self.pos..].starts_with(s);
        if hit {
            self.pos += s.len();
        }
        hit
    }

    /// A quoted string with Nix's escapes: `\n`, `\r`, `\t`, and `\c` for any other
    /// byte `c` (as Nix's `parseString`).
    fn string(&mut self) -> Result<Vec<u8>> {
        self.expect(b'"', "'\"'")?;
        let mut out = Vec::new();
        loop {
            let rest = &self.input[self.pos..];
            let Some(i) = rest.iter().position(|&c| c == b'"' || c == b'\\') else {
                self.pos = self.input.len();
                return Err(self.error("'\"'"));
            };
            out.extend_from_slice(&rest[..i]);
            self.pos += i + 1;
            if rest[i] == b'"' {
                return Ok(out);
            }
            let Some(c) = self.peek() else {
                return Err(self.error("an escaped character"));
            };
            self.pos += 1;
            out.push(match c {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                c => c,
            });
        }
    }

    /// A quoted string in a field Nix prints without escaping: escapes are refused
    /// so that printing it back gives the same bytes. Returns its offset too.
    fn unquoted(&mut self, field: &'static str) -> Result<(usize, &'a [u8])> {
        let start = self.pos;
        self.expect(b'"', "'\"'")?;
        let rest = &self.input[self.pos..];
        match rest.iter().position(|&c| c == b'"' || c == b'\\') {
            Some(i) if rest[i] == b'"' => {
                self.pos += i + 1;
                Ok((start, &rest[..i]))
            }
            Some(i) => Err(AtermError::EscapeInUnquoted {
                offset: self.pos + i,
                field,
            }),
            None => {
                self.pos = self.input.len();
                Err(self.error("'\"'"))
            }
        }
    }

    fn store_path(
        &mut self,
        store_dir: &StoreDir,
        field: &'static str,
    ) -> Result<(usize, StorePath)> {
        let (offset, raw) = self.unquoted(field)?;
        parse_path(store_dir, raw, offset).map(|p| (offset, p))
    }

    fn output_name(&mut self, field: &'static str) -> Result<(usize, String)> {
        let (offset, raw) = self.unquoted(field)?;
        if !is_valid_output_name(raw) {
            return Err(AtermError::InvalidOutputName {
                offset,
                name: lossy(raw),
            });
        }
        Ok((offset, lossy(raw)))
    }

    /// `[item,item,...]`, with commas exactly between items.
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.expect(b'[', "'['")?;
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            item(self)?;
            if self.eat(b']') {
                return Ok(());
            }
            self.expect(b',', "',' or ']'")?;
        }
    }
}

fn parse_path(store_dir: &StoreDir, raw: &[u8], offset: usize) -> Result<StorePath> {
    let invalid = |source| AtermError::InvalidPath {
        offset,
        path: lossy(raw),
        source,
    };
    let s = std::str::from_utf8(raw).map_err(|_| {
        invalid(StorePathError::NotInStore(
            lossy(raw),
            store_dir.to_string(),
        ))
    })?;
    store_dir.parse(s).map_err(invalid)
}

fn duplicate(offset: usize, what: &'static str, item: impl Into<String>) -> AtermError {
    AtermError::Duplicate {
        offset,
        what,
        item: item.into(),
    }
}

/// Parses a `.drv` file; see [`Derivation::from_aterm`].
pub fn parse(bytes: &[u8], store_dir: &StoreDir, name: Option<&str>) -> Result<Derivation> {
    let mut p = Parser {
        input: bytes,
        pos: 0,
    };
    if p.eat_str(b"DrvWithVersion(") {
        let offset = p.pos;
        let version = p.string()?;
        return Err(AtermError::UnsupportedVersion {
            offset,
            version: lossy(&version),
        });
    }
    if !p.eat_str(b"Derive(") {
        return Err(p.error("'Derive('"));
    }

    let mut raw_outputs: Vec<RawOutput> = Vec::new();
    let mut seen_outputs = BTreeSet::new();
    p.list(|p| {
        p.expect(b'(', "'('")?;
        let (offset, name) = p.output_name("an output name")?;
        if !seen_outputs.insert(name.clone()) {
            return Err(duplicate(offset, "output", name));
        }
        p.expect(b',', "','")?;
        let (path_offset, path) = p.unquoted("an output path")?;
        p.expect(b',', "','")?;
        let (algo_offset, algo) = p.unquoted("an output hash algorithm")?;
        p.expect(b',', "','")?;
        let (hash_offset, hash) = p.unquoted("an output hash")?;
        p.expect(b')', "')'")?;
        raw_outputs.push(RawOutput {
            name,
            path,
            path_offset,
            algo,
            algo_offset,
            hash,
            hash_offset,
        });
        Ok(())
    })?;

    p.expect(b',', "','")?;
    let mut input_drvs = BTreeMap::new();
    p.list(|p| {
        p.expect(b'(', "'('")?;
        let (offset, path) = p.store_path(store_dir, "an input derivation path")?;
        p.expect(b',', "','")?;
        let mut outputs = BTreeSet::new();
        p.list(|p| {
            let (offset, name) = p.output_name("an input derivation output name")?;
            if outputs.contains(&name) {
                return Err(duplicate(offset, "output name of input derivation", name));
            }
            outputs.insert(name);
            Ok(())
        })?;
        p.expect(b')', "')'")?;
        if input_drvs.contains_key(&path) {
            return Err(duplicate(offset, "input derivation", path.to_string()));
        }
        input_drvs.insert(path, outputs);
        Ok(())
    })?;

    p.expect(b',', "','")?;
    let mut input_srcs = BTreeSet::new();
    p.list(|p| {
        let (offset, path) = p.store_path(store_dir, "an input source path")?;
        if input_srcs.contains(&path) {
            return Err(duplicate(offset, "input source", path.to_string()));
        }
        input_srcs.insert(path);
        Ok(())
    })?;

    p.expect(b',', "','")?;
    let system = p.unquoted("the system")?.1.to_vec();
    p.expect(b',', "','")?;
    let builder = p.string()?;
    p.expect(b',', "','")?;
    let mut args = Vec::new();
    p.list(|p| {
        args.push(p.string()?);
        Ok(())
    })?;

    p.expect(b',', "','")?;
    let mut env = BTreeMap::new();
    p.list(|p| {
        p.expect(b'(', "'('")?;
        let offset = p.pos;
        let key = p.string()?;
        p.expect(b',', "','")?;
        let value = p.string()?;
        p.expect(b')', "')'")?;
        if env.contains_key(&key) {
            return Err(duplicate(offset, "environment variable", lossy(&key)));
        }
        env.insert(key, value);
        Ok(())
    })?;
    p.expect(b')', "')'")?;
    if p.pos != bytes.len() {
        return Err(AtermError::TrailingData { offset: p.pos });
    }

    let name = match name {
        Some(n) => n.to_owned(),
        None => name_from_env(&env).ok_or(AtermError::NoName)?,
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
    for raw in raw_outputs {
        let out = resolve_output(&raw, &drv, store_dir)?;
        drv.outputs.insert(raw.name, out);
    }
    Ok(drv)
}

/// The `name` environment variable, or `name` in structured attributes' `__json`.
pub(crate) fn name_from_env(env: &BTreeMap<Vec<u8>, Vec<u8>>) -> Option<String> {
    if let Some(n) = env.get(b"name".as_slice()) {
        return String::from_utf8(n.clone()).ok();
    }
    let json: serde_json::Value = serde_json::from_slice(env.get(b"__json".as_slice())?).ok()?;
    json.get("name")?.as_str().map(str::to_owned)
}

/// Turns the four strings of an output tuple into an output. Mirrors
/// `parseDerivationOutput`, validating a fixed output's path as newer Nix does.
fn resolve_output(
    raw: &RawOutput,
    drv: &Derivation,
    store_dir: &StoreDir,
) -> Result<DerivationOutput> {
    let unexpected = |offset, field| AtermError::UnexpectedField {
        offset,
        output: raw.name.clone(),
        field,
    };
    if raw.algo.is_empty() {
        if !raw.hash.is_empty() {
            return Err(unexpected(
                raw.hash_offset,
                "hash (its hash algorithm is empty)",
            ));
        }
        if raw.path.is_empty() {
            return Ok(DerivationOutput::Deferred);
        }
        let path = parse_path(store_dir, raw.path, raw.path_offset)?;
        return Ok(DerivationOutput::InputAddressed { path });
    }
    let algo_str = lossy(raw.algo);
    let (method, algo_name) = CaMethod::split_prefix(&algo_str);
    let algo: HashAlgo = algo_name.parse().map_err(|_| AtermError::InvalidHashAlgo {
        offset: raw.algo_offset,
        output: raw.name.clone(),
        algo: algo_str.clone(),
    })?;
    if raw.hash == b"impure" || raw.hash.is_empty() {
        if !raw.path.is_empty() {
            return Err(unexpected(raw.path_offset, "path"));
        }
        return Ok(if raw.hash.is_empty() {
            DerivationOutput::CAFloating { method, algo }
        } else {
            DerivationOutput::Impure { method, algo }
        });
    }
    let hash_str = lossy(raw.hash);
    let hash =
        Hash::parse_digest(&hash_str, algo, false).map_err(|source| AtermError::InvalidHash {
            offset: raw.hash_offset,
            output: raw.name.clone(),
            hash: hash_str.clone(),
            source,
        })?;
    let expected = fixed_output_path(store_dir, &drv.name, &raw.name, method, &hash)?;
    let expected = store_dir.display(&expected);
    if raw.path != expected.as_bytes() {
        return Err(AtermError::WrongFixedOutputPath {
            offset: raw.path_offset,
            output: raw.name.clone(),
            path: lossy(raw.path),
            expected,
        });
    }
    Ok(DerivationOutput::CAFixed { method, hash })
}

/// `"s"` with Nix's escapes. Mirrors `printString`.
fn print_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// `"s"` verbatim. Mirrors `printUnquotedString`.
fn print_unquoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

fn print_list<I, T>(out: &mut Vec<u8>, items: I, mut print: impl FnMut(&mut Vec<u8>, T))
where
    I: IntoIterator<Item = T>,
{
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        print(out, item);
    }
    out.push(b']');
}

/// Prints the ATerm. With `mask_outputs`, output paths and the environment
/// variables named after outputs are blanked; `actual_inputs` replaces the input
/// derivations (by their modulo hashes). Mirrors `Derivation::unparse`.
pub(crate) fn unparse(
    drv: &Derivation,
    store_dir: &StoreDir,
    mask_outputs: bool,
    actual_inputs: Option<&BTreeMap<String, BTreeSet<String>>>,
) -> Result<Vec<u8>, DerivationError> {
    let mut s = Vec::with_capacity(1024);
    s.extend_from_slice(b"Derive(");
    let mut outputs = Vec::with_capacity(drv.outputs.len());
    for (name, out) in &drv.outputs {
        let path = match out {
            _ if mask_outputs => String::new(),
            DerivationOutput::InputAddressed { path } => store_dir.display(path),
            DerivationOutput::CAFixed { method, hash } => store_dir.display(&fixed_output_path(
                store_dir, &drv.name, name, *method, hash,
            )?),
            _ => String::new(),
        };
        let hash = match out {
            DerivationOutput::CAFixed { hash, .. } => hash.to_base16(),
            DerivationOutput::Impure { .. } => "impure".to_owned(),
            _ => String::new(),
        };
        outputs.push((name, path, out.hash_algo_field(), hash));
    }
    print_list(&mut s, outputs, |s, (name, path, algo, hash)| {
        s.push(b'(');
        print_unquoted(s, name.as_bytes());
        for field in [path, algo, hash] {
            s.push(b',');
            print_unquoted(s, field.as_bytes());
        }
        s.push(b')');
    });

    s.push(b',');
    let print_input = |s: &mut Vec<u8>, (key, outs): (&str, &BTreeSet<String>)| {
        s.push(b'(');
        print_unquoted(s, key.as_bytes());
        s.push(b',');
        print_list(s, outs, |s, o| print_unquoted(s, o.as_bytes()));
        s.push(b')');
    };
    match actual_inputs {
        Some(inputs) => print_list(
            &mut s,
            inputs.iter().map(|(k, v)| (k.as_str(), v)),
            print_input,
        ),
        None => {
            let paths: Vec<(String, &BTreeSet<String>)> = drv
                .input_drvs
                .iter()
                .map(|(p, outs)| (store_dir.display(p), outs))
                .collect();
            print_list(
                &mut s,
                paths.iter().map(|(k, v)| (k.as_str(), *v)),
                print_input,
            );
        }
    }

    s.push(b',');
    print_list(&mut s, &drv.input_srcs, |s, p| {
        print_unquoted(s, store_dir.display(p).as_bytes())
    });
    s.push(b',');
    print_unquoted(&mut s, &drv.system);
    s.push(b',');
    print_string(&mut s, &drv.builder);
    s.push(b',');
    print_list(&mut s, &drv.args, |s, a| print_string(s, a));
    s.push(b',');
    print_list(&mut s, &drv.env, |s, (k, v)| {
        s.push(b'(');
        print_string(s, k);
        s.push(b',');
        let masked =
            mask_outputs && std::str::from_utf8(k).is_ok_and(|k| drv.outputs.contains_key(k));
        print_string(s, if masked { b"" } else { v });
        s.push(b')');
    });
    s.push(b')');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &str = r#"Derive([("out","/nix/store/pzr7lsd3q9pqsnb42r9b23jc5sh8irvn-nested-json","","")],[],[],":",":",[],[("builder",":"),("json","{\"hello\":\"moto\\n\"}"),("name","nested-json"),("out","/nix/store/pzr7lsd3q9pqsnb42r9b23jc5sh8irvn-nested-json"),("system",":")])"#;

    fn parse_str(s: &str) -> Result<Derivation> {
        parse(s.as_bytes(), &StoreDir::default(), None)
    }

    #[test]
    fn roundtrip_simple() {
        let drv = parse_str(SIMPLE).unwrap();
        assert_eq!(drv.name, "nested-json");
        assert_eq!(drv.env_var("json").unwrap(), br#"{"hello":"moto\n"}"#);
        assert_eq!(
            drv.to_aterm(&StoreDir::default()).unwrap(),
            SIMPLE.as_bytes()
        );
    }

    #[test]
    fn escapes() {
        let s = r#"Derive([],[],[],"x","a\"b\\c\nd\re\tf\qg",[],[("name","n")])"#;
        let drv = parse_str(s).unwrap();
        assert_eq!(drv.builder, b"a\"b\\c\nd\re\tfqg");
        let printed = String::from_utf8(drv.to_aterm(&StoreDir::default()).unwrap()).unwrap();
        assert!(printed.contains(r#""a\"b\\c\nd\re\tfqg""#), "{printed}");
    }

    #[test]
    fn errors_carry_offsets() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("Derive(", 7),
            ("Derive([", 8),
            ("Derive([],", 10),
            ("Derive([],[],[],\"x\",\"y\",[],[])x", 30),
            ("Derive([],[],[],\"x\",\"y\",[,],[])", 25),
            ("Derive([],[],[],\"x\",\"y\",[\"a\",],[])", 29),
            ("Derive([],[],[],\"x\\\"\",\"y\",[],[])", 18),
            ("Derive([],[],[\"/tmp/x\"],\"x\",\"y\",[],[])", 14),
            ("DrvWithVersion(\"xp-dyn-drv\",[])", 15),
        ];
        for (input, offset) in cases {
            let err = parse_str(input).unwrap_err();
            assert_eq!(err.offset(), Some(*offset), "{input}: {err}");
        }
    }

    #[test]
    fn duplicates_rejected() {
        let env_dup = r#"Derive([],[],[],"x","y",[],[("a","1"),("a","2")])"#;
        assert!(matches!(
            parse_str(env_dup),
            Err(AtermError::Duplicate {
                what: "environment variable",
                ..
            })
        ));
        let out_dup =
            r#"Derive([("out","","",""),("out","","","")],[],[],"x","y",[],[("name","n")])"#;
        assert!(matches!(
            parse_str(out_dup),
            Err(AtermError::Duplicate { what: "output", .. })
        ));
    }

    #[test]
    fn unsorted_accepted_and_sorted_on_print() {
        let s = r#"Derive([],[],[],"x","y",[],[("name","n"),("a","1")])"#;
        let drv = parse_str(s).unwrap();
        let printed = drv.to_aterm(&StoreDir::default()).unwrap();
        assert_eq!(
            printed,
            br#"Derive([],[],[],"x","y",[],[("a","1"),("name","n")])"#
        );
    }

    #[test]
    fn no_name() {
        let s = r#"Derive([],[],[],"x","y",[],[])"#;
        assert_eq!(parse_str(s), Err(AtermError::NoName));
        let sa = r#"Derive([],[],[],"x","y",[],[("__json","{\"name\":\"sa\"}")])"#;
        assert_eq!(parse_str(sa).unwrap().name, "sa");
    }
}
