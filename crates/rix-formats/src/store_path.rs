//! Store paths: `<store dir>/<32 nix32 chars>-<name>`, and how Nix computes them.
//!
//! The digest is the first 160 bits (XOR-folded) of a SHA-256 over a fingerprint
//! `type:sha256:<inner hash base16>:<store dir>:<name>` (see the manual's
//! `protocols/store-path.md`). The store directory is always a parameter: paths
//! computed for `/nix/store` and for `/tmp/x/store` differ.
//! Mirrors `makeStorePath`, `makeFixedOutputPath` and `makeTextPath` in Nix.

use std::fmt;

use thiserror::Error;

use crate::hash::{compress_hash, Hash, HashAlgo};
use crate::nixbase32;

/// Bytes in a store path digest.
pub const DIGEST_SIZE: usize = 20;
/// Characters of the digest as printed.
pub const HASH_PART_LEN: usize = 32;
/// Longest allowed name, as `StorePath::MaxPathLen` in Nix.
pub const MAX_NAME_LEN: usize = 211;

/// Why a store path or name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorePathError {
    #[error("path '{0}' is not in the Nix store {1}")]
    NotInStore(String, String),
    #[error("store path '{0}' is too short to hold a hash and a name")]
    TooShort(String),
    #[error("store path '{path}' has an invalid hash part: {source}")]
    InvalidHash {
        path: String,
        source: nixbase32::DecodeError,
    },
    #[error("store path '{0}' has no '-' between hash and name")]
    MissingDash(String),
    #[error("store path name '{0}' is empty")]
    EmptyName(String),
    #[error("store path name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    #[error("store path name '{name}' has invalid character {:?} at offset {offset}", char::from(*byte))]
    InvalidNameChar {
        name: String,
        offset: usize,
        byte: u8,
    },
    #[error("store directory '{0}' must be an absolute path without a trailing slash")]
    InvalidStoreDir(String),
}

/// Checks a store path name: 1..=211 chars of `[A-Za-z0-9+-._?=]`. Mirrors Nix
/// 2.8's `checkName`, which (unlike later versions) accepts `.` and `..`.
pub fn check_name(name: &str) -> Result<(), StorePathError> {
    if name.is_empty() {
        return Err(StorePathError::EmptyName(name.to_owned()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StorePathError::NameTooLong);
    }
    if let Some((offset, &byte)) = name
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, &c)| !(c.is_ascii_alphanumeric() || b"+-._?=".contains(&c)))
    {
        return Err(StorePathError::InvalidNameChar {
            name: name.to_owned(),
            offset,
            byte,
        });
    }
    Ok(())
}

/// A store directory such as `/nix/store`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreDir(String);

impl StoreDir {
    pub fn new(dir: impl Into<String>) -> Result<Self, StorePathError> {
        let dir = dir.into();
        if !dir.starts_with('/') || (dir.len() > 1 && dir.ends_with('/')) {
            return Err(StorePathError::InvalidStoreDir(dir));
        }
        Ok(Self(dir))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a full path `<dir>/<hash>-<name>`; anything after the store path's own
    /// component is an error (use [`StoreDir::parse_prefix`] for paths inside one).
    pub fn parse(&self, path: &str) -> Result<StorePath, StorePathError> {
        let base = path
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| !r.contains('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_owned(), self.0.clone()))?;
        StorePath::from_base_name(base)
    }

    /// Splits `<dir>/<hash>-<name>/rest` into the store path and `rest` (may be empty).
    pub fn parse_prefix<'a>(&self, path: &'a str) -> Result<(StorePath, &'a str), StorePathError> {
        let rel = path
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_owned(), self.0.clone()))?;
        let (base, rest) = rel.split_at(rel.find('/').unwrap_or(rel.len()));
        Ok((StorePath::from_base_name(base)?, rest))
    }

    /// `<dir>/<hash>-<name>`.
    pub fn display(&self, path: &StorePath) -> String {
        format!("{}/{}", self.0, path)
    }

    /// Computes a store path from a fingerprint type, an inner hash and a name.
    /// Mirrors `makeStorePath`.
    pub fn make_store_path(
        &self,
        ty: &str,
        inner: &Hash,
        name: &str,
    ) -> Result<StorePath, StorePathError> {
        check_name(name)?;
        let fingerprint = format!(
            "{ty}:{}:{}:{}:{name}",
            inner.algo(),
            inner.to_base16(),
            self.0
        );
        let digest = compress_hash(HashAlgo::Sha256.digest(fingerprint).digest(), DIGEST_SIZE);
        StorePath::from_parts(digest.try_into().expect("compressed to 20 bytes"), name)
    }

    /// `text:<refs>` or `source:<refs>[:self]`, the type prefix of content-addressed paths.
    fn make_type<'a>(
        &self,
        base: &str,
        refs: impl IntoIterator<Item = &'a StorePath>,
        self_ref: bool,
    ) -> String {
        let mut ty = base.to_owned();
        let mut printed: Vec<String> = refs.into_iter().map(|r| self.display(r)).collect();
        printed.sort();
        for r in printed {
            ty.push(':');
            ty.push_str(&r);
        }
        if self_ref {
            ty.push_str(":self");
        }
        ty
    }

    /// Path of a text file added to the store (`builtins.toFile`, `.drv` files):
    /// `hash` is the SHA-256 of its contents. Mirrors `makeTextPath`.
    pub fn make_text_path<'a>(
        &self,
        name: &str,
        hash: &Hash,
        refs: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<StorePath, StorePathError> {
        self.make_store_path(&self.make_type("text", refs, false), hash, name)
    }

    /// Path of a fixed-output / content-addressed object. Mirrors `makeFixedOutputPath`:
    /// recursive SHA-256 uses the `source` type (which may carry references); every
    /// other combination goes through a `fixed:out:` intermediate hash.
    pub fn make_fixed_output_path<'a>(
        &self,
        name: &str,
        method: FileIngestionMethod,
        hash: &Hash,
        refs: impl IntoIterator<Item = &'a StorePath>,
        self_ref: bool,
    ) -> Result<StorePath, StorePathError> {
        if method == FileIngestionMethod::Recursive && hash.algo() == HashAlgo::Sha256 {
            return self.make_store_path(&self.make_type("source", refs, self_ref), hash, name);
        }
        let inner = format!(
            "fixed:out:{}{}:",
            method.prefix(),
            hash.to_typed_string(crate::hash::Encoding::Base16)
        );
        self.make_store_path("output:out", &HashAlgo::Sha256.digest(inner), name)
    }

    /// Path of a content-addressed object described by `ca`.
    pub fn make_path_from_ca<'a>(
        &self,
        name: &str,
        ca: &crate::content_address::ContentAddress,
        refs: impl IntoIterator<Item = &'a StorePath>,
        self_ref: bool,
    ) -> Result<StorePath, StorePathError> {
        use crate::content_address::ContentAddress;
        match ca {
            ContentAddress::Text(h) => self.make_text_path(name, h, refs),
            ContentAddress::Fixed(method, h) => {
                self.make_fixed_output_path(name, *method, h, refs, self_ref)
            }
        }
    }

    /// Output path of an input-addressed derivation output: `drv_hash` is the
    /// derivation's `hashDerivationModulo`. Mirrors `makeOutputPath`.
    pub fn make_output_path(
        &self,
        output: &str,
        drv_hash: &Hash,
        drv_name: &str,
    ) -> Result<StorePath, StorePathError> {
        self.make_store_path(
            &format!("output:{output}"),
            drv_hash,
            &output_path_name(drv_name, output),
        )
    }
}

impl Default for StoreDir {
    fn default() -> Self {
        Self("/nix/store".to_owned())
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name` for output `out`, `name-<output>` otherwise. Mirrors `outputPathName`.
pub fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" {
        drv_name.to_owned()
    } else {
        format!("{drv_name}-{output}")
    }
}

/// How a file system object is turned into bytes to hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileIngestionMethod {
    /// The file's contents (a regular file only).
    Flat,
    /// The NAR serialisation.
    Recursive,
}

impl FileIngestionMethod {
    /// `""` or `"r:"`, as written in content addresses and `outputHashMode`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Flat => "",
            Self::Recursive => "r:",
        }
    }
}

/// A store path without its directory: a 20-byte digest and a name.
///
/// Kept as the printed hash part so that the derived order is Nix's (by base name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    hash: [u8; HASH_PART_LEN],
    name: String,
}

impl StorePath {
    /// Parses `<hash>-<name>`.
    pub fn from_base_name(base: &str) -> Result<Self, StorePathError> {
        if base.len() < HASH_PART_LEN + 2 {
            return Err(StorePathError::TooShort(base.to_owned()));
        }
        // Split as bytes: a multi-byte character may straddle the boundary.
        let (hash, rest) = base.as_bytes().split_at(HASH_PART_LEN);
        let name = rest
            .strip_prefix(b"-")
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(|| StorePathError::MissingDash(base.to_owned()))?;
        nixbase32::decode_fixed::<DIGEST_SIZE>(hash).map_err(|source| {
            StorePathError::InvalidHash {
                path: base.to_owned(),
                source,
            }
        })?;
        check_name(name)?;
        Ok(Self {
            hash: hash.try_into().expect("split at HASH_PART_LEN"),
            name: name.to_owned(),
        })
    }

    /// Builds a path from parts, validating the name.
    pub fn from_parts(digest: [u8; DIGEST_SIZE], name: &str) -> Result<Self, StorePathError> {
        check_name(name)?;
        Ok(Self {
            hash: nixbase32::encode(&digest)
                .into_bytes()
                .try_into()
                .expect("32 characters"),
            name: name.to_owned(),
        })
    }

    pub fn digest(&self) -> [u8; DIGEST_SIZE] {
        nixbase32::decode_fixed(&self.hash).expect("validated on construction")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-character nix32 hash part.
    pub fn hash_part(&self) -> &str {
        std::str::from_utf8(&self.hash).expect("nix32 is ASCII")
    }

    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }
}

/// `<hash>-<name>`, without the store directory.
impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hash_part(), self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Encoding;
    use proptest::prelude::*;

    #[test]
    fn parse_and_print() {
        let dir = StoreDir::default();
        let p = dir
            .parse("/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-1.0")
            .unwrap();
        assert_eq!(p.name(), "foo-1.0");
        assert_eq!(p.hash_part(), "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q");
        assert_eq!(
            dir.display(&p),
            "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-1.0"
        );
        let (q, rest) = dir
            .parse_prefix("/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-1.0/bin/sh")
            .unwrap();
        assert_eq!((q, rest), (p, "/bin/sh"));
    }

    #[test]
    fn rejects_bad_paths() {
        let dir = StoreDir::default();
        let h = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q";
        for bad in [
            format!("/nix/store/{h}"),
            format!("/nix/store/{h}-"),
            format!("/nix/store/{h}xfoo"),
            format!("/nix/store/{h}-foo/bar"),
            format!("/nix/store/{h}-fo o"),
            format!("/nix/store/{h}-{}", "x".repeat(212)),
            "/nix/store/e1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo".to_owned(),
            format!("/other/{h}-foo"),
        ] {
            assert!(dir.parse(&bad).is_err(), "{bad}");
        }
        assert!(dir
            .parse(&format!("/nix/store/{h}-{}", "x".repeat(211)))
            .is_ok());
        assert!(dir.parse(&format!("/nix/store/{h}-.foo")).is_ok());
        // Nix 2.8's checkName accepts `.` and `..` (later versions refuse them).
        assert!(dir.parse(&format!("/nix/store/{h}-.")).is_ok());
        assert!(dir.parse(&format!("/nix/store/{h}-..-x")).is_ok());
    }

    // Expected values restated from Tvix's unit tests (nix-compat store_path tests).
    #[test]
    fn text_paths_match_nix() {
        let dir = StoreDir::default();
        let foo = dir
            .make_text_path("foo", &HashAlgo::Sha256.digest("bar"), [])
            .unwrap();
        assert_eq!(
            dir.display(&foo),
            "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo"
        );
        let content = dir.display(&foo);
        let baz = dir
            .make_text_path("baz", &HashAlgo::Sha256.digest(&content), [&foo])
            .unwrap();
        assert_eq!(
            dir.display(&baz),
            "/nix/store/5xd714cbfnkz02h2vbsj4fm03x3f15nf-baz"
        );
    }

    #[test]
    fn fixed_output_paths_match_nix() {
        let dir = StoreDir::default();
        let sha1 = Hash::parse_any("sha1:0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33", None).unwrap();
        let p = dir
            .make_fixed_output_path("bar", FileIngestionMethod::Recursive, &sha1, [], false)
            .unwrap();
        assert_eq!(
            dir.display(&p),
            "/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar"
        );
        let sha256 = Hash::parse_any(
            "sha256:1xqkzcb3909fp07qngljr4wcdnrh1gdam1m2n29i6hhrxlmkgkv1",
            None,
        )
        .unwrap();
        let foo = dir
            .parse("/nix/store/dxwkwjzdaq7ka55pkk252gh32bgpmql4-foo")
            .unwrap();
        let p = dir
            .make_fixed_output_path(
                "baz",
                FileIngestionMethod::Recursive,
                &sha256,
                [&foo],
                false,
            )
            .unwrap();
        assert_eq!(
            dir.display(&p),
            "/nix/store/s89y431zzhmdn3k8r96rvakryddkpv2v-baz"
        );
    }

    #[test]
    fn fixed_output_paths() {
        let dir = StoreDir::default();
        let h = Hash::parse_any(
            "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
            None,
        )
        .unwrap();
        // Flat and recursive differ; the recursive sha256 one is the "source" type.
        let flat = dir
            .make_fixed_output_path("x", FileIngestionMethod::Flat, &h, [], false)
            .unwrap();
        let rec = dir
            .make_fixed_output_path("x", FileIngestionMethod::Recursive, &h, [], false)
            .unwrap();
        assert_ne!(flat, rec);
        let src = dir.make_store_path("source", &h, "x").unwrap();
        assert_eq!(rec, src);
        let _ = h.to_typed_string(Encoding::Base16);
    }

    proptest! {
        #[test]
        fn roundtrip(digest in any::<[u8; 20]>(), name in "[a-zA-Z0-9+_?=][a-zA-Z0-9+._?=-]{0,50}") {
            let p = StorePath::from_parts(digest, &name).unwrap();
            let dir = StoreDir::default();
            prop_assert_eq!(dir.parse(&dir.display(&p)).unwrap(), p);
        }
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = StoreDir::default().parse(&s);
            let _ = StorePath::from_base_name(&s);
        }
    }
}
