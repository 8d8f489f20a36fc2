//! Binary cache `.narinfo` files: a store object's metadata as `Key: value` lines.
//!
//! ```text
//! StorePath: /nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf
//! URL: nar/0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c.nar.xz
//! Compression: xz
//! FileHash: sha256:0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c
//! FileSize: 3020
//! NarHash: sha256:1bb3srw3x77mnck1gk0cbnf1a9915fdrqdjb27y7rxmmlrb3dzjw
//! NarSize: 11408
//! References: 0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf arsnax0avamwiml7qrwn9wzbic33pyk9-polkit-0.113
//! Deriver: lzydd5cyykz34jpbchk6psv23kgmx1f2-dbus-conf.drv
//! Sig: cache.nixos.org-1:gegnOA5CqLYaCIgcQ843KvfYZBzn2cKGzC2hcSrZHRt4Nj+uJaVNV06iARZ39zJtbnuyq7+5KCPcl3zB0hoyBA==
//! ```
//!
//! A [`NarInfo`] keeps the lines it was parsed from next to their typed values, so
//! printing gives back the input byte for byte (hashes in hex, unsorted references,
//! `Deriver: unknown-deriver`, unknown fields, repeated fields...), while the
//! accessors give parsed values. Setters rewrite only the lines they change, placing
//! new lines where Nix would; a `NarInfo` built with [`NarInfo::new`] and the setters
//! prints exactly what Nix's `NarInfo::to_string` prints for the same data, and
//! [`NarInfo::canonical`] gives that form for any `NarInfo`.
//!
//! Parsing follows Nix's `NarInfo::NarInfo` (in `nar-info.cc`): unknown fields are
//! ignored (kept here), later single-valued fields override earlier ones, `Sig` repeats,
//! a second non-empty `References` or `CA` is an error, a missing or empty
//! `Compression` means `bzip2`, and `StorePath`, `NarHash`, a non-empty `URL` and a
//! non-zero `NarSize` are required. Stricter than Nix, which scans for `:` across line
//! ends: every line must be `Key: value` and end in `\n`.
//!
//! Signatures are over the [`fingerprint`], as `ValidPathInfo::fingerprint`.

use std::fmt;

use thiserror::Error;

use crate::content_address::{ContentAddress, ContentAddressError};
use crate::hash::{Hash, HashError};
use crate::signature::{verify_detached, PublicKey, SecretKey, Signature};
use crate::store_path::{StoreDir, StorePath, StorePathError};

/// What Nix writes in `Deriver:` when the deriver is not known (and reads as "none").
pub const UNKNOWN_DERIVER: &str = "unknown-deriver";
/// Compression assumed when the field is missing or empty.
pub const DEFAULT_COMPRESSION: &str = "bzip2";

const STORE_PATH: &str = "StorePath";
const URL: &str = "URL";
const COMPRESSION: &str = "Compression";
const FILE_HASH: &str = "FileHash";
const FILE_SIZE: &str = "FileSize";
const NAR_HASH: &str = "NarHash";
const NAR_SIZE: &str = "NarSize";
const REFERENCES: &str = "References";
const DERIVER: &str = "Deriver";
const SYSTEM: &str = "System";
const SIG: &str = "Sig";
const CA: &str = "CA";

/// Known fields in the order Nix prints them (`System` where Nix 1.x put it).
const FIELD_ORDER: [&str; 12] = [
    STORE_PATH,
    URL,
    COMPRESSION,
    FILE_HASH,
    FILE_SIZE,
    NAR_HASH,
    NAR_SIZE,
    REFERENCES,
    DERIVER,
    SYSTEM,
    SIG,
    CA,
];

fn rank(key: &str) -> Option<usize> {
    FIELD_ORDER.iter().position(|k| *k == key)
}

/// Why a narinfo could not be parsed or built. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NarInfoError {
    #[error("line {line}: expected 'Key: value', got {text:?}")]
    MissingColon { line: usize, text: String },
    #[error("line {line}: last line does not end in a newline")]
    MissingNewline { line: usize },
    #[error("line {line}: invalid {field}: {source}")]
    StorePath {
        line: usize,
        field: &'static str,
        source: StorePathError,
    },
    #[error("line {line}: invalid {field}: {source}")]
    Hash {
        line: usize,
        field: &'static str,
        source: HashError,
    },
    #[error("line {line}: invalid {field} {value:?}: expected a non-negative integer")]
    Number {
        line: usize,
        field: &'static str,
        value: String,
    },
    #[error("line {line}: NarSize is zero")]
    ZeroNarSize { line: usize },
    #[error("line {line}: URL is empty")]
    EmptyUrl { line: usize },
    #[error("line {line}: extra References")]
    ExtraReferences { line: usize },
    #[error("line {line}: extra CA")]
    ExtraCa { line: usize },
    #[error("line {line}: invalid CA: {source}")]
    ContentAddress {
        line: usize,
        source: ContentAddressError,
    },
    #[error("{0} missing")]
    MissingField(&'static str),
    #[error("{field} value {value:?} cannot be written to a narinfo")]
    InvalidValue { field: &'static str, value: String },
    #[error("cannot calculate fingerprint of path '{path}' because its size is not known")]
    UnknownNarSize { path: String },
}

impl NarInfoError {
    /// The 1-based line the error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::MissingColon { line, .. }
            | Self::MissingNewline { line }
            | Self::StorePath { line, .. }
            | Self::Hash { line, .. }
            | Self::Number { line, .. }
            | Self::ZeroNarSize { line }
            | Self::EmptyUrl { line }
            | Self::ExtraReferences { line }
            | Self::ExtraCa { line }
            | Self::ContentAddress { line, .. } => Some(*line),
            Self::MissingField(_) | Self::InvalidValue { .. } | Self::UnknownNarSize { .. } => None,
        }
    }
}

/// The string a store object's signatures sign:
/// `1;<store path>;<narHash as algo:nix32>;<narSize>;<comma-separated references>`,
/// the references as full paths, sorted and without duplicates.
/// Mirrors `ValidPathInfo::fingerprint`, which does not require SHA-256 and refuses a
/// zero NAR size.
pub fn fingerprint<'a>(
    store_dir: &StoreDir,
    path: &StorePath,
    nar_hash: &Hash,
    nar_size: u64,
    references: impl IntoIterator<Item = &'a StorePath>,
) -> Result<String, NarInfoError> {
    if nar_size == 0 {
        return Err(NarInfoError::UnknownNarSize {
            path: store_dir.display(path),
        });
    }
    let mut refs: Vec<String> = references
        .into_iter()
        .map(|r| store_dir.display(r))
        .collect();
    refs.sort_unstable();
    refs.dedup();
    Ok(format!(
        "1;{};{nar_hash};{nar_size};{}",
        store_dir.display(path),
        refs.join(",")
    ))
}

/// One `Key: value` line, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    key: String,
    value: String,
}

/// A parsed `.narinfo`: typed fields plus the lines they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    store_dir: StoreDir,
    store_path: StorePath,
    url: String,
    /// Effective compression (`bzip2` when missing or empty).
    compression: String,
    file_hash: Option<Hash>,
    file_size: Option<u64>,
    nar_hash: Hash,
    nar_size: u64,
    references: Vec<StorePath>,
    deriver: Option<StorePath>,
    system: Option<String>,
    /// `Sig` values as written, in order; not validated (as in Nix).
    sigs: Vec<String>,
    ca: Option<ContentAddress>,
    lines: Vec<Line>,
}

/// Fields gathered while reading lines, before the required ones are checked.
#[derive(Default)]
struct Partial {
    store_path: Option<StorePath>,
    url: Option<(usize, String)>,
    compression: String,
    file_hash: Option<Hash>,
    file_size: Option<u64>,
    nar_hash: Option<Hash>,
    nar_size: Option<(usize, u64)>,
    references: Vec<StorePath>,
    deriver: Option<StorePath>,
    system: Option<String>,
    sigs: Vec<String>,
    ca: Option<ContentAddress>,
}

fn parse_hash(line: usize, field: &'static str, value: &str) -> Result<Hash, NarInfoError> {
    Hash::parse_prefixed(value).map_err(|source| NarInfoError::Hash {
        line,
        field,
        source,
    })
}

fn parse_number(line: usize, field: &'static str, value: &str) -> Result<u64, NarInfoError> {
    value.parse().map_err(|_| NarInfoError::Number {
        line,
        field,
        value: value.to_owned(),
    })
}

fn parse_base_name(
    line: usize,
    field: &'static str,
    value: &str,
) -> Result<StorePath, NarInfoError> {
    StorePath::from_base_name(value).map_err(|source| NarInfoError::StorePath {
        line,
        field,
        source,
    })
}

fn parse_full_path(dir: &StoreDir, line: usize, value: &str) -> Result<StorePath, NarInfoError> {
    dir.parse(value).map_err(|source| NarInfoError::StorePath {
        line,
        field: STORE_PATH,
        source,
    })
}

/// Splits `text` into `Key: value` lines, each ending in `\n`.
fn split_lines(text: &str) -> Result<Vec<Line>, NarInfoError> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let n = lines.len() + 1;
        let (line, after, terminated) = match rest.split_once('\n') {
            Some((line, after)) => (line, after, true),
            None => (rest, "", false),
        };
        let (key, value) = line
            .split_once(':')
            .and_then(|(k, v)| Some((k, v.strip_prefix(' ')?)))
            .ok_or_else(|| NarInfoError::MissingColon {
                line: n,
                text: line.to_owned(),
            })?;
        if !terminated {
            return Err(NarInfoError::MissingNewline { line: n });
        }
        lines.push(Line {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        rest = after;
    }
    Ok(lines)
}

/// Rejects values that would not survive a round trip through a line.
fn check_value(field: &'static str, value: &str) -> Result<(), NarInfoError> {
    if value.contains('\n') {
        return Err(NarInfoError::InvalidValue {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn join_refs<'a>(refs: impl IntoIterator<Item = &'a StorePath>) -> String {
    refs.into_iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

impl NarInfo {
    /// Parses a narinfo whose `StorePath` must lie in `store_dir`.
    /// Mirrors `NarInfo::NarInfo(store, s, whence)`.
    pub fn parse(store_dir: &StoreDir, text: &str) -> Result<Self, NarInfoError> {
        let lines = split_lines(text)?;
        let mut p = Partial::default();
        for (i, Line { key, value }) in lines.iter().enumerate() {
            let n = i + 1;
            match key.as_str() {
                STORE_PATH => p.store_path = Some(parse_full_path(store_dir, n, value)?),
                URL => p.url = Some((n, value.clone())),
                COMPRESSION => p.compression = value.clone(),
                FILE_HASH => p.file_hash = Some(parse_hash(n, FILE_HASH, value)?),
                FILE_SIZE => p.file_size = Some(parse_number(n, FILE_SIZE, value)?),
                NAR_HASH => p.nar_hash = Some(parse_hash(n, NAR_HASH, value)?),
                NAR_SIZE => p.nar_size = Some((n, parse_number(n, NAR_SIZE, value)?)),
                REFERENCES => {
                    if !p.references.is_empty() {
                        return Err(NarInfoError::ExtraReferences { line: n });
                    }
                    p.references = value
                        .split(' ')
                        .filter(|r| !r.is_empty())
                        .map(|r| parse_base_name(n, REFERENCES, r))
                        .collect::<Result<_, _>>()?;
                }
                // `unknown-deriver` leaves an earlier Deriver in place, as in Nix.
                DERIVER if value != UNKNOWN_DERIVER => {
                    p.deriver = Some(parse_base_name(n, DERIVER, value)?);
                }
                SYSTEM => p.system = Some(value.clone()),
                SIG => p.sigs.push(value.clone()),
                CA => {
                    if p.ca.is_some() {
                        return Err(NarInfoError::ExtraCa { line: n });
                    }
                    if !value.is_empty() {
                        p.ca = Some(
                            value
                                .parse()
                                .map_err(|source| NarInfoError::ContentAddress {
                                    line: n,
                                    source,
                                })?,
                        );
                    }
                }
                _ => {}
            }
        }
        let store_path = p.store_path.ok_or(NarInfoError::MissingField(STORE_PATH))?;
        let nar_hash = p.nar_hash.ok_or(NarInfoError::MissingField(NAR_HASH))?;
        let url = match p.url {
            None => return Err(NarInfoError::MissingField(URL)),
            Some((line, url)) if url.is_empty() => return Err(NarInfoError::EmptyUrl { line }),
            Some((_, url)) => url,
        };
        let nar_size = match p.nar_size {
            None => return Err(NarInfoError::MissingField(NAR_SIZE)),
            Some((line, 0)) => return Err(NarInfoError::ZeroNarSize { line }),
            Some((_, size)) => size,
        };
        if p.compression.is_empty() {
            p.compression = DEFAULT_COMPRESSION.to_owned();
        }
        Ok(Self {
            store_dir: store_dir.clone(),
            store_path,
            url,
            compression: p.compression,
            file_hash: p.file_hash,
            file_size: p.file_size,
            nar_hash,
            nar_size,
            references: p.references,
            deriver: p.deriver,
            system: p.system,
            sigs: p.sigs,
            ca: p.ca,
            lines,
        })
    }

    /// A narinfo with the required fields and empty `References`; add the rest with
    /// the setters. `url` must be non-empty and `nar_size` non-zero.
    pub fn new(
        store_dir: &StoreDir,
        store_path: StorePath,
        url: &str,
        nar_hash: Hash,
        nar_size: u64,
    ) -> Result<Self, NarInfoError> {
        let mut info = Self {
            store_dir: store_dir.clone(),
            store_path: store_path.clone(),
            url: String::new(),
            compression: DEFAULT_COMPRESSION.to_owned(),
            file_hash: None,
            file_size: None,
            nar_hash,
            nar_size: 1,
            references: Vec::new(),
            deriver: None,
            system: None,
            sigs: Vec::new(),
            ca: None,
            lines: Vec::new(),
        };
        info.set_store_path(store_path);
        info.set_url(url)?;
        info.set_nar_hash(nar_hash);
        info.set_nar_size(nar_size)?;
        info.set_references([]);
        Ok(info)
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    pub fn store_path(&self) -> &StorePath {
        &self.store_path
    }

    /// Where the (compressed) NAR is, usually relative to the cache: `nar/<hash>.nar.xz`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The NAR's compression: `xz`, `zstd`, `none`...; `bzip2` when not given.
    pub fn compression(&self) -> &str {
        &self.compression
    }

    /// Hash of the file at [`NarInfo::url`].
    pub fn file_hash(&self) -> Option<&Hash> {
        self.file_hash.as_ref()
    }

    /// Size of the file at [`NarInfo::url`].
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }

    pub fn nar_hash(&self) -> &Hash {
        &self.nar_hash
    }

    pub fn nar_size(&self) -> u64 {
        self.nar_size
    }

    /// References in the order written (Nix writes them sorted).
    pub fn references(&self) -> &[StorePath] {
        &self.references
    }

    /// `None` when absent or `unknown-deriver`.
    pub fn deriver(&self) -> Option<&StorePath> {
        self.deriver.as_ref()
    }

    /// The obsolete `System` field some old narinfos carry.
    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// `Sig` values as written, unvalidated (Nix keeps them as strings too).
    pub fn sigs(&self) -> &[String] {
        &self.sigs
    }

    /// The `Sig` values that parse as signatures; malformed ones are skipped.
    pub fn signatures(&self) -> impl Iterator<Item = Signature> + '_ {
        self.sigs.iter().filter_map(|s| s.parse().ok())
    }

    pub fn ca(&self) -> Option<&ContentAddress> {
        self.ca.as_ref()
    }

    /// Fields this parser does not know, in order, as `(key, value)`.
    pub fn extra_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines
            .iter()
            .filter(|l| rank(&l.key).is_none())
            .map(|l| (l.key.as_str(), l.value.as_str()))
    }

    /// The signed fingerprint of this object (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        // NarSize is never zero in a NarInfo.
        fingerprint(
            &self.store_dir,
            &self.store_path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
        .unwrap_or_default()
    }

    /// Signs the fingerprint with `key` and adds the signature (unless already there).
    /// Mirrors `ValidPathInfo::sign`.
    pub fn sign(&mut self, key: &SecretKey) -> Signature {
        let sig = key.sign(self.fingerprint().as_bytes());
        self.add_signature(&sig);
        sig
    }

    /// How many distinct signatures verify with a trusted key of the same name.
    /// Malformed `Sig` values count as invalid. Mirrors `ValidPathInfo::checkSignatures`
    /// (without its content-address shortcut: see [`NarInfo::is_content_addressed`]).
    pub fn check_signatures(&self, trusted: &[PublicKey]) -> usize {
        let fp = self.fingerprint();
        let mut sigs: Vec<&String> = self.sigs.iter().collect();
        sigs.sort_unstable();
        sigs.dedup();
        sigs.into_iter()
            .filter_map(|s| s.parse::<Signature>().ok())
            .filter(|s| verify_detached(fp.as_bytes(), s, trusted))
            .count()
    }

    /// Whether the `CA` field, with the references, really yields the store path: such
    /// objects need no signature. Mirrors `ValidPathInfo::isContentAddressed`.
    pub fn is_content_addressed(&self) -> bool {
        let Some(ca) = &self.ca else {
            return false;
        };
        let self_ref = self.references.contains(&self.store_path);
        if self_ref && matches!(ca, ContentAddress::Text(_)) {
            return false;
        }
        let others = self.references.iter().filter(|r| **r != self.store_path);
        self.store_dir
            .make_path_from_ca(self.store_path.name(), ca, others, self_ref)
            .is_ok_and(|p| p == self.store_path)
    }

    /// The narinfo as Nix's `NarInfo::to_string` would print it: fields in Nix's
    /// order, hashes as `algo:nix32`, references and signatures sorted without
    /// duplicates, `Compression` always present, no `unknown-deriver`, and neither
    /// `System` nor unknown fields (Nix drops them).
    pub fn canonical(&self) -> Self {
        let mut c = Self {
            lines: Vec::new(),
            system: None,
            sigs: Vec::new(),
            ..self.clone()
        };
        c.set_store_path(self.store_path.clone());
        c.set_line(URL, Some(self.url.clone()));
        c.set_line(COMPRESSION, Some(self.compression.clone()));
        c.set_file_hash(self.file_hash);
        c.set_file_size(self.file_size);
        c.set_nar_hash(self.nar_hash);
        c.set_line(NAR_SIZE, Some(self.nar_size.to_string()));
        c.set_references(self.references.iter().cloned());
        c.set_deriver(self.deriver.clone());
        let mut sigs = self.sigs.clone();
        sigs.sort_unstable();
        sigs.dedup();
        for sig in sigs {
            c.lines.push(Line {
                key: SIG.to_owned(),
                value: sig,
            });
        }
        c.sync_sigs();
        c.set_ca(self.ca);
        c
    }

    /// Sets the value of `key`: replaces the first such line (dropping any others) or
    /// inserts one where Nix puts it; `None` removes every such line.
    fn set_line(&mut self, key: &'static str, value: Option<String>) {
        let first = self.lines.iter().position(|l| l.key == key);
        let mut i = 0;
        self.lines.retain(|l| {
            i += 1;
            l.key != key || Some(i - 1) == first
        });
        match (value, first) {
            (Some(value), Some(at)) => self.lines[at].value = value,
            (Some(value), None) => {
                let at = self.insert_position(key);
                self.lines.insert(
                    at,
                    Line {
                        key: key.to_owned(),
                        value,
                    },
                );
            }
            (None, Some(at)) => {
                self.lines.remove(at);
            }
            (None, None) => {}
        }
    }

    /// Before the first known field that Nix prints after `key`, else at the end.
    fn insert_position(&self, key: &str) -> usize {
        let r = rank(key);
        self.lines
            .iter()
            .position(|l| rank(&l.key) > r)
            .unwrap_or(self.lines.len())
    }

    fn sync_sigs(&mut self) {
        self.sigs = self
            .lines
            .iter()
            .filter(|l| l.key == SIG)
            .map(|l| l.value.clone())
            .collect();
    }

    pub fn set_store_path(&mut self, path: StorePath) {
        self.set_line(STORE_PATH, Some(self.store_dir.display(&path)));
        self.store_path = path;
    }

    /// Fails when `url` is empty or has a newline.
    pub fn set_url(&mut self, url: &str) -> Result<(), NarInfoError> {
        if url.is_empty() {
            return Err(NarInfoError::InvalidValue {
                field: URL,
                value: String::new(),
            });
        }
        check_value(URL, url)?;
        self.set_line(URL, Some(url.to_owned()));
        self.url = url.to_owned();
        Ok(())
    }

    /// `None` removes the field (meaning `bzip2`). Fails on a newline.
    pub fn set_compression(&mut self, compression: Option<&str>) -> Result<(), NarInfoError> {
        if let Some(c) = compression {
            check_value(COMPRESSION, c)?;
        }
        self.set_line(COMPRESSION, compression.map(str::to_owned));
        self.compression = compression
            .filter(|c| !c.is_empty())
            .unwrap_or(DEFAULT_COMPRESSION)
            .to_owned();
        Ok(())
    }

    pub fn set_file_hash(&mut self, hash: Option<Hash>) {
        self.set_line(FILE_HASH, hash.map(|h| h.to_string()));
        self.file_hash = hash;
    }

    pub fn set_file_size(&mut self, size: Option<u64>) {
        self.set_line(FILE_SIZE, size.map(|s| s.to_string()));
        self.file_size = size;
    }

    pub fn set_nar_hash(&mut self, hash: Hash) {
        self.set_line(NAR_HASH, Some(hash.to_string()));
        self.nar_hash = hash;
    }

    /// Fails on zero.
    pub fn set_nar_size(&mut self, size: u64) -> Result<(), NarInfoError> {
        if size == 0 {
            return Err(NarInfoError::InvalidValue {
                field: NAR_SIZE,
                value: "0".to_owned(),
            });
        }
        self.set_line(NAR_SIZE, Some(size.to_string()));
        self.nar_size = size;
        Ok(())
    }

    /// Sets the references, sorted and without duplicates as Nix writes them.
    pub fn set_references(&mut self, refs: impl IntoIterator<Item = StorePath>) {
        let mut refs: Vec<(String, StorePath)> =
            refs.into_iter().map(|r| (r.to_string(), r)).collect();
        refs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        refs.dedup_by(|a, b| a.0 == b.0);
        let refs: Vec<StorePath> = refs.into_iter().map(|(_, r)| r).collect();
        self.set_line(REFERENCES, Some(join_refs(&refs)));
        self.references = refs;
    }

    /// `None` removes the field.
    pub fn set_deriver(&mut self, deriver: Option<StorePath>) {
        self.set_line(DERIVER, deriver.as_ref().map(|d| d.to_string()));
        self.deriver = deriver;
    }

    /// `None` removes the field. Fails on a newline.
    pub fn set_system(&mut self, system: Option<&str>) -> Result<(), NarInfoError> {
        if let Some(s) = system {
            check_value(SYSTEM, s)?;
        }
        self.set_line(SYSTEM, system.map(str::to_owned));
        self.system = system.map(str::to_owned);
        Ok(())
    }

    /// `None` removes the field.
    pub fn set_ca(&mut self, ca: Option<ContentAddress>) {
        self.set_line(CA, ca.map(|c| c.to_string()));
        self.ca = ca;
    }

    /// Adds a `Sig` line, keeping sorted signatures sorted as Nix does; returns false
    /// when an identical one is already there.
    pub fn add_signature(&mut self, sig: &Signature) -> bool {
        let value = sig.to_string();
        if self.sigs.contains(&value) {
            return false;
        }
        let at = self
            .lines
            .iter()
            .position(|l| l.key == SIG && l.value > value)
            .or_else(|| self.lines.iter().rposition(|l| l.key == SIG).map(|i| i + 1))
            .unwrap_or_else(|| self.insert_position(SIG));
        self.lines.insert(
            at,
            Line {
                key: SIG.to_owned(),
                value,
            },
        );
        self.sync_sigs();
        true
    }

    /// Removes every `Sig` line.
    pub fn clear_signatures(&mut self) {
        self.lines.retain(|l| l.key != SIG);
        self.sigs.clear();
    }
}

/// The narinfo text: the parsed lines as they were, with any setter changes.
impl fmt::Display for NarInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for Line { key, value } in &self.lines {
            writeln!(f, "{key}: {value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlgo;

    const EXAMPLE: &str = "\
StorePath: /nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf
URL: nar/0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c.nar.xz
Compression: xz
FileHash: sha256:0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c
FileSize: 3020
NarHash: sha256:1bb3srw3x77mnck1gk0cbnf1a9915fdrqdjb27y7rxmmlrb3dzjw
NarSize: 11408
References: 0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf arsnax0avamwiml7qrwn9wzbic33pyk9-polkit-0.113
Deriver: lzydd5cyykz34jpbchk6psv23kgmx1f2-dbus-conf.drv
Sig: cache.nixos.org-1:gegnOA5CqLYaCIgcQ843KvfYZBzn2cKGzC2hcSrZHRt4Nj+uJaVNV06iARZ39zJtbnuyq7+5KCPcl3zB0hoyBA==
";

    fn parse(s: &str) -> Result<NarInfo, NarInfoError> {
        NarInfo::parse(&StoreDir::default(), s)
    }

    #[test]
    fn parses_fields() {
        let n = parse(EXAMPLE).unwrap();
        assert_eq!(n.store_path().name(), "dbus-conf");
        assert_eq!(n.compression(), "xz");
        assert_eq!(n.file_size(), Some(3020));
        assert_eq!(n.nar_size(), 11408);
        assert_eq!(n.nar_hash().algo(), HashAlgo::Sha256);
        assert_eq!(n.references().len(), 2);
        assert_eq!(n.deriver().unwrap().name(), "dbus-conf.drv");
        assert_eq!(n.sigs().len(), 1);
        assert_eq!(n.to_string(), EXAMPLE);
        assert_eq!(n.canonical().to_string(), EXAMPLE);
        assert!(n.fingerprint().starts_with(
            "1;/nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-dbus-conf;sha256:1bb3srw3x77mnck1gk0cbnf1a9915fdrqdjb27y7rxmmlrb3dzjw;11408;/nix/store/0a3y"
        ));
    }

    #[test]
    fn setters_keep_other_lines() {
        let mut n = parse(&EXAMPLE.replace("Deriver: ", "X-Extra: 1\nDeriver: ")).unwrap();
        n.set_deriver(None);
        n.set_compression(None).unwrap();
        assert_eq!(n.compression(), "bzip2");
        let text = n.to_string();
        assert!(!text.contains("Deriver") && !text.contains("Compression"));
        assert!(text.contains("X-Extra: 1\nSig: "));
        assert_eq!(parse(&text).unwrap(), n);
        n.set_compression(Some("zstd")).unwrap();
        assert!(n.to_string().contains("URL: nar/0i1dmr7f1pliycq471wfgifwrkbii2ky9gb35zsvv46ld1rl2m2c.nar.xz\nCompression: zstd\nFileHash"));
        assert_eq!(parse(&n.to_string()).unwrap(), n);
    }

    #[test]
    fn line_numbers() {
        let cases: &[(&str, usize)] = &[
            ("StorePath: /nix/store/x\n", 1),
            ("URL: a\nFileSize: -1\n", 2),
            ("URL: a\nNarSize: 1\nNarHash: md5:xyz\n", 3),
            ("URL: a\nno colon here\n", 2),
            ("URL:a\n", 1),
            ("URL: a\nURL: b", 2),
            ("References: \nReferences: a\n", 2),
            ("CA: fixed:\n", 1),
        ];
        for (text, line) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line(), Some(*line), "{text:?}: {e}");
        }
        assert_eq!(
            parse("").unwrap_err(),
            NarInfoError::MissingField("StorePath")
        );
        let no_size = EXAMPLE.replace("NarSize: 11408\n", "");
        assert_eq!(
            parse(&no_size).unwrap_err(),
            NarInfoError::MissingField("NarSize")
        );
        let zero = EXAMPLE.replace("NarSize: 11408", "NarSize: 0");
        assert_eq!(
            parse(&zero).unwrap_err(),
            NarInfoError::ZeroNarSize { line: 7 }
        );
    }
}
