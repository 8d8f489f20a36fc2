//! Content addresses as Nix stores them in its database and narinfo `CA:` fields:
//! `text:sha256:<nix32>`, `fixed:sha1:<nix32>`, `fixed:r:sha256:<nix32>`.
//! Mirrors `renderContentAddress` / `parseContentAddress` in Nix's `content-address.cc`.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::hash::{Hash, HashAlgo, HashError};
use crate::store_path::FileIngestionMethod;

/// How a content-addressed store object's path was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// A text file (`builtins.toFile`, `.drv`): SHA-256 of its contents.
    Text(Hash),
    /// A fixed-output object: flat file hash or NAR hash, any algorithm.
    Fixed(FileIngestionMethod, Hash),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContentAddressError {
    #[error("content address '{0}' does not start with 'text:' or 'fixed:'")]
    UnknownPrefix(String),
    #[error("text content address '{0}' must use sha256")]
    TextNotSha256(String),
    #[error("invalid hash in content address '{ca}': {source}")]
    Hash { ca: String, source: HashError },
}

impl ContentAddress {
    pub fn hash(&self) -> &Hash {
        match self {
            Self::Text(h) | Self::Fixed(_, h) => h,
        }
    }

    /// `text`, `flat`, or `nar`: the method names Nix uses in JSON.
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Fixed(FileIngestionMethod::Flat, _) => "flat",
            Self::Fixed(FileIngestionMethod::Recursive, _) => "nar",
        }
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(h) => write!(f, "text:{h}"),
            Self::Fixed(m, h) => write!(f, "fixed:{}{h}", m.prefix()),
        }
    }
}

impl FromStr for ContentAddress {
    type Err = ContentAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hash_err = |source| ContentAddressError::Hash {
            ca: s.to_owned(),
            source,
        };
        // The algorithm always comes first ("sha256:..."), so parse the rest as prefixed.
        let parse = |rest: &str| -> Result<Hash, ContentAddressError> {
            let (algo, digest) = rest
                .split_once(':')
                .ok_or_else(|| hash_err(HashError::MissingAlgo(rest.to_owned())))?;
            let algo: HashAlgo = algo.parse().map_err(hash_err)?;
            Hash::parse_digest(digest, algo, false).map_err(hash_err)
        };
        if let Some(rest) = s.strip_prefix("text:") {
            let h = parse(rest)?;
            if h.algo() != HashAlgo::Sha256 {
                return Err(ContentAddressError::TextNotSha256(s.to_owned()));
            }
            Ok(Self::Text(h))
        } else if let Some(rest) = s.strip_prefix("fixed:") {
            match rest.strip_prefix("r:") {
                Some(r) => Ok(Self::Fixed(FileIngestionMethod::Recursive, parse(r)?)),
                None => Ok(Self::Fixed(FileIngestionMethod::Flat, parse(rest)?)),
            }
        } else {
            Err(ContentAddressError::UnknownPrefix(s.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/vectors/nix-libstore/content-address/*.json give a method and an SRI hash.
    #[test]
    fn golden_files_roundtrip() {
        let dir = rix_testutil::vectors("nix-libstore/content-address");
        for file in ["nar.json", "text.json"] {
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
            let hash = Hash::parse_any(json["hash"].as_str().unwrap(), None).unwrap();
            let ca = match json["method"].as_str().unwrap() {
                "text" => ContentAddress::Text(hash),
                "nar" => ContentAddress::Fixed(FileIngestionMethod::Recursive, hash),
                _ => ContentAddress::Fixed(FileIngestionMethod::Flat, hash),
            };
            assert_eq!(ca.method_name(), json["method"].as_str().unwrap());
            let printed = ca.to_string();
            assert_eq!(printed.parse::<ContentAddress>().unwrap(), ca, "{printed}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "text:",
            "fixed:r:",
            "foo:sha256:abc",
            "text:sha1:1ak2fnrdx7z9nhwvgqlqnlmiqyvp6hcz46b5bl4k",
        ] {
            assert!(bad.parse::<ContentAddress>().is_err(), "{bad}");
        }
    }
}
