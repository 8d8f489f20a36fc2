//! Cryptographic hashes as Nix names and prints them.
//!
//! A [`Hash`] is an algorithm plus its digest. Nix prints digests in four encodings
//! (base16, nix32, base64, SRI) and parses any of them, telling them apart by length.
//! Mirrors `Hash::parseAny`, `Hash::parseSRI` and `Hash::to_string` in Nix's `hash.cc`.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use md5::Digest as _;
use thiserror::Error;

use crate::nixbase32;

/// A hash algorithm Nix supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 4] = [Self::Md5, Self::Sha1, Self::Sha256, Self::Sha512];

    /// Digest size in bytes.
    pub const fn size(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Hashes `data` in one go.
    pub fn digest(self, data: impl AsRef<[u8]>) -> Hash {
        let mut h = Hasher::new(self);
        h.update(data.as_ref());
        h.finish()
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgo {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| HashError::UnknownAlgo(s.to_owned()))
    }
}

/// How a digest is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Base16,
    Nix32,
    Base64,
    /// `algo-base64`, Subresource Integrity.
    Sri,
}

impl FromStr for Encoding {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        match s {
            "base16" => Ok(Self::Base16),
            "nix32" | "base32" => Ok(Self::Nix32),
            "base64" => Ok(Self::Base64),
            "sri" => Ok(Self::Sri),
            _ => Err(HashError::UnknownEncoding(s.to_owned())),
        }
    }
}

/// Why a hash string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    #[error("unknown hash algorithm '{0}' (expected md5, sha1, sha256 or sha512)")]
    UnknownAlgo(String),
    #[error("unknown hash encoding '{0}' (expected base16, nix32, base64 or sri)")]
    UnknownEncoding(String),
    #[error("hash '{0}' does not include a type (write it as 'sha256:...' or in SRI form)")]
    MissingAlgo(String),
    #[error("hash '{hash}' has wrong length for hash type '{algo}'")]
    WrongLength { hash: String, algo: HashAlgo },
    #[error("invalid base-16 hash '{0}'")]
    InvalidBase16(String),
    #[error("invalid nix32 hash '{hash}': {source}")]
    InvalidNix32 {
        hash: String,
        source: nixbase32::DecodeError,
    },
    #[error("invalid base-64 hash '{0}'")]
    InvalidBase64(String),
    #[error("hash '{hash}' should have type '{expected}' but has '{actual}'")]
    AlgoMismatch {
        hash: String,
        expected: HashAlgo,
        actual: HashAlgo,
    },
}

/// A digest together with the algorithm that made it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    algo: HashAlgo,
    bytes: [u8; 64],
}

/// Base64 as Nix 2.8's `base64Decode` reads it (hashes, keys, signatures):
/// decoding stops at the first `=`, newlines are skipped, and bits left over
/// at the end are dropped (so padding is optional and a non-canonical last
/// character is accepted). Hand-written because strict decoders
/// (`data-encoding`, `base64`) refuse exactly the inputs Nix accepts; the
/// length is checked by the caller.
pub(crate) fn nix_base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let digit = match c {
            b'=' => break,
            b'\n' => continue,
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6 | u32::from(digit)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl Hash {
    /// Builds a hash from raw digest bytes; `None` if the length does not fit `algo`.
    pub fn from_bytes(algo: HashAlgo, digest: &[u8]) -> Option<Self> {
        if digest.len() != algo.size() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..digest.len()].copy_from_slice(digest);
        Some(Self { algo, bytes })
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn digest(&self) -> &[u8] {
        &self.bytes[..self.algo.size()]
    }

    /// Parses `algo:digest` or SRI `algo-base64`.
    pub fn parse_prefixed(s: &str) -> Result<Self, HashError> {
        if let Some((algo, rest)) = s.split_once(':') {
            return Self::parse_digest(rest, algo.parse()?, false);
        }
        if let Some((algo, rest)) = s.split_once('-') {
            if let Ok(algo) = algo.parse() {
                return Self::parse_digest(rest, algo, true);
            }
        }
        Err(HashError::MissingAlgo(s.to_owned()))
    }

    /// Parses a hash that may be prefixed or SRI; an unprefixed one needs `algo`.
    /// When both are present they must agree. Mirrors `Hash::parseAny`.
    pub fn parse_any(s: &str, algo: Option<HashAlgo>) -> Result<Self, HashError> {
        let prefixed = s.contains(':')
            || s.split_once('-')
                .is_some_and(|(a, _)| a.parse::<HashAlgo>().is_ok());
        match (prefixed, algo) {
            (true, expected) => {
                let h = Self::parse_prefixed(s)?;
                match expected {
                    Some(e) if e != h.algo => Err(HashError::AlgoMismatch {
                        hash: s.to_owned(),
                        expected: e,
                        actual: h.algo,
                    }),
                    _ => Ok(h),
                }
            }
            (false, Some(algo)) => Self::parse_digest(s, algo, false),
            (false, None) => Err(HashError::MissingAlgo(s.to_owned())),
        }
    }

    /// Parses an unprefixed digest of known algorithm in base16, nix32 or base64,
    /// chosen by its length (or base64 only, for SRI).
    pub fn parse_digest(s: &str, algo: HashAlgo, sri: bool) -> Result<Self, HashError> {
        let size = algo.size();
        let b64_len = size.div_ceil(3) * 4;
        let bytes = if !sri && s.len() == size * 2 {
            HEXLOWER_PERMISSIVE
                .decode(s.as_bytes())
                .map_err(|_| HashError::InvalidBase16(s.to_owned()))?
        } else if !sri && s.len() == nixbase32::encoded_len(size) {
            nixbase32::decode(s.as_bytes()).map_err(|source| HashError::InvalidNix32 {
                hash: s.to_owned(),
                source,
            })?
        } else if sri || s.len() == b64_len {
            nix_base64_decode(s).ok_or_else(|| HashError::InvalidBase64(s.to_owned()))?
        } else {
            return Err(HashError::WrongLength {
                hash: s.to_owned(),
                algo,
            });
        };
        Self::from_bytes(algo, &bytes).ok_or_else(|| HashError::WrongLength {
            hash: s.to_owned(),
            algo,
        })
    }

    /// The digest alone in `encoding` (SRI includes its `algo-` prefix by definition).
    pub fn encode(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Base16 => data_encoding::HEXLOWER.encode(self.digest()),
            Encoding::Nix32 => nixbase32::encode(self.digest()),
            Encoding::Base64 => BASE64.encode(self.digest()),
            Encoding::Sri => self.to_sri(),
        }
    }

    /// `algo:digest` in `encoding`; SRI is printed as SRI.
    pub fn to_typed_string(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Sri => self.to_sri(),
            e => format!("{}:{}", self.algo, self.encode(e)),
        }
    }

    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algo, BASE64.encode(self.digest()))
    }

    pub fn to_base16(&self) -> String {
        self.encode(Encoding::Base16)
    }

    pub fn to_nix32(&self) -> String {
        self.encode(Encoding::Nix32)
    }
}

/// `algo:nix32`, the form Nix uses in narinfo files and its database.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_typed_string(Encoding::Nix32))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_typed_string(Encoding::Base16))
    }
}

impl FromStr for Hash {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        Self::parse_prefixed(s)
    }
}

/// An incremental hasher for any [`HashAlgo`]; also an [`std::io::Write`] sink.
#[derive(Clone)]
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: HashAlgo) -> Self {
        match algo {
            HashAlgo::Md5 => Self::Md5(Default::default()),
            HashAlgo::Sha1 => Self::Sha1(Default::default()),
            HashAlgo::Sha256 => Self::Sha256(Default::default()),
            HashAlgo::Sha512 => Self::Sha512(Default::default()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Hash {
        let (algo, out): (HashAlgo, Vec<u8>) = match self {
            Self::Md5(h) => (HashAlgo::Md5, h.finalize().to_vec()),
            Self::Sha1(h) => (HashAlgo::Sha1, h.finalize().to_vec()),
            Self::Sha256(h) => (HashAlgo::Sha256, h.finalize().to_vec()),
            Self::Sha512(h) => (HashAlgo::Sha512, h.finalize().to_vec()),
        };
        Hash::from_bytes(algo, &out).expect("digest length matches its algorithm")
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Shortens a digest to `size` bytes by XOR-folding, as Nix's `compressHash`.
pub fn compress_hash(digest: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    for (i, b) in digest.iter().enumerate() {
        out[i % size] ^= b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Expected values from Nix's own unit tests (src/libutil-tests/hash.cc).
    #[test]
    fn known_digests() {
        let abc = HashAlgo::Sha256.digest("abc");
        assert_eq!(
            abc.to_typed_string(Encoding::Base16),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            abc.to_typed_string(Encoding::Nix32),
            "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
        );
        assert_eq!(
            abc.to_sri(),
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        assert_eq!(
            HashAlgo::Md5.digest("abc").to_base16(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            HashAlgo::Sha1.digest("abc").to_base16(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            HashAlgo::Sha512.digest("abc").to_base16(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn parse_every_encoding() {
        let h = HashAlgo::Sha1.digest("abc");
        for e in [
            Encoding::Base16,
            Encoding::Nix32,
            Encoding::Base64,
            Encoding::Sri,
        ] {
            let s = h.to_typed_string(e);
            assert_eq!(Hash::parse_any(&s, None).unwrap(), h, "{s}");
            assert_eq!(Hash::parse_any(&s, Some(HashAlgo::Sha1)).unwrap(), h);
            if e != Encoding::Sri {
                assert_eq!(
                    Hash::parse_any(&h.encode(e), Some(HashAlgo::Sha1)).unwrap(),
                    h
                );
            }
        }
        // Upper-case base16 is accepted, as in Nix.
        let upper = h.to_base16().to_uppercase();
        assert_eq!(
            Hash::parse_digest(&upper, HashAlgo::Sha1, false).unwrap(),
            h
        );
    }

    #[test]
    fn base64_is_read_as_nix_reads_it() {
        let h = HashAlgo::Sha256.digest("");
        let sri = h.encode(Encoding::Sri);
        let b64 = sri.trim_start_matches("sha256-");
        assert_eq!(b64, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        let unpadded = b64.trim_end_matches('=');
        let with_newline = format!("{}\n{}", &b64[..10], &b64[10..]);
        let non_canonical = b64.replace("FU=", "FV=");
        for ok in [
            format!("sha256-{unpadded}"),
            format!("sha256-{b64}="),
            format!("sha256-{b64}!!junk"),
            format!("sha256-{non_canonical}"),
            format!("sha256:{non_canonical}"),
            format!("sha256-{with_newline}"),
        ] {
            assert_eq!(Hash::parse_any(&ok, None).unwrap(), h, "{ok:?}");
        }
        // Without SRI, base64 is told apart by its length (44 for sha256).
        assert!(Hash::parse_any(&format!("sha256:{unpadded}"), None).is_err());
        assert_eq!(Hash::parse_any(&format!("sha256:{b64}"), None).unwrap(), h);
        assert!(Hash::parse_any("sha256-4*DEQ", None).is_err());
        assert!(Hash::parse_any(&format!("sha256-{}", &unpadded[4..]), None).is_err());
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            Hash::parse_any("sha256:abc", None),
            Err(HashError::WrongLength { .. })
        ));
        assert!(matches!(
            Hash::parse_any("foo:abc", None),
            Err(HashError::UnknownAlgo(_))
        ));
        assert!(matches!(
            Hash::parse_any("abc", None),
            Err(HashError::MissingAlgo(_))
        ));
        let h = HashAlgo::Sha1.digest("x").to_typed_string(Encoding::Nix32);
        assert!(matches!(
            Hash::parse_any(&h, Some(HashAlgo::Sha256)),
            Err(HashError::AlgoMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn roundtrip(data in proptest::collection::vec(any::<u8>(), 0..64), a in 0usize..4, e in 0usize..4) {
            let algo = HashAlgo::ALL[a];
            let enc = [Encoding::Base16, Encoding::Nix32, Encoding::Base64, Encoding::Sri][e];
            let h = algo.digest(&data);
            prop_assert_eq!(Hash::parse_any(&h.to_typed_string(enc), None).unwrap(), h);
        }
        #[test]
        fn parse_never_panics(s in "\\PC{0,140}") {
            let _ = Hash::parse_any(&s, None);
            let _ = Hash::parse_any(&s, Some(HashAlgo::Sha256));
        }
    }
}
