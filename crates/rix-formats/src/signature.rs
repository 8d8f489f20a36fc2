//! Ed25519 keys and detached signatures in Nix's `name:base64` format.
//!
//! Nix names every key and signature: `cache.nixos.org-1:6NCHdD59X431o0gWy...=`.
//! A [`SecretKey`] holds libsodium's 64-byte secret key (32-byte seed followed by the
//! 32-byte public key), a [`PublicKey`] 32 bytes, a [`Signature`] 64 bytes. A signature
//! is only checked against a key of the same name.
//! Mirrors `SecretKey`, `PublicKey`, `verifyDetached` in Nix's `signature/local-keys.cc`.
//!
//! Parsing accepts what Nix accepts: Nix's base-64 decoder (`base64Decode`) skips
//! `'\n'` and stops at the first `'='`, so a trailing newline, missing padding or
//! anything after the padding is fine (`nix key convert-secret-to-public` reads a key
//! with its newline). Printing is canonical: padded base 64, no newline (as
//! `nix-store --generate-binary-cache-key` and `nix key generate-secret` write it).
//! Deliberately stricter than Nix: names may not contain whitespace or control
//! characters (such a key could never be listed in `trusted-public-keys` nor fit a
//! `Sig:` line), and a secret key whose public half does not belong to its seed is
//! rejected (libsodium would sign with it, producing signatures no key verifies).

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore as _};
use thiserror::Error;

/// Bytes in a libsodium secret key (seed + public key).
pub const SECRET_KEY_BYTES: usize = 64;
/// Bytes in a public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Bytes in a detached signature.
pub const SIGNATURE_BYTES: usize = 64;

/// Which of the three `name:base64` values an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    SecretKey,
    PublicKey,
    Signature,
}

impl KeyKind {
    fn expected_len(self) -> usize {
        match self {
            Self::SecretKey => SECRET_KEY_BYTES,
            Self::PublicKey => PUBLIC_KEY_BYTES,
            Self::Signature => SIGNATURE_BYTES,
        }
    }

    /// What an error may show of the input: never a secret key's payload.
    fn shown(self, s: &str) -> String {
        match self {
            Self::SecretKey => "<secret>".to_owned(),
            _ => s.to_owned(),
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SecretKey => "secret key",
            Self::PublicKey => "public key",
            Self::Signature => "signature",
        })
    }
}

/// Why a key or signature was rejected. Secret key payloads are never included.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("{kind} '{input}' is not of the form 'name:base64'")]
    MissingColon { kind: KeyKind, input: String },
    #[error("{kind} '{input}' has an empty name")]
    EmptyName { kind: KeyKind, input: String },
    #[error("{kind} name {name:?} contains whitespace or a control character")]
    BadName { kind: KeyKind, name: String },
    #[error("{kind} named '{name}' has an empty payload")]
    EmptyPayload { kind: KeyKind, name: String },
    #[error("{kind} named '{name}' has invalid base-64 payload '{payload}'")]
    InvalidBase64 {
        kind: KeyKind,
        name: String,
        payload: String,
    },
    #[error("{kind} named '{name}' is {len} bytes long, expected {}", kind.expected_len())]
    WrongLength {
        kind: KeyKind,
        name: String,
        len: usize,
    },
    #[error("secret key named '{name}' is corrupt: its public half does not match its seed")]
    InconsistentSecretKey { name: String },
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}

/// Checks a key name: non-empty, no whitespace or control characters. Nix only
/// requires non-empty (and no `:`, which the split guarantees).
fn check_name(kind: KeyKind, name: &str, input: &str) -> Result<(), SignatureError> {
    if name.is_empty() {
        return Err(SignatureError::EmptyName {
            kind,
            input: kind.shown(input),
        });
    }
    if name.contains(':') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SignatureError::BadName {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Splits and decodes `name:base64` into a name and exactly `N` bytes.
/// Mirrors `Key::Key` / `BorrowedCryptoValue::parse`.
fn parse_named<const N: usize>(
    kind: KeyKind,
    s: &str,
) -> Result<(String, [u8; N]), SignatureError> {
    let (name, payload) = s
        .split_once(':')
        .ok_or_else(|| SignatureError::MissingColon {
            kind,
            input: kind.shown(s),
        })?;
    check_name(kind, name, s)?;
    let err_name = || name.to_owned();
    if payload.is_empty() {
        return Err(SignatureError::EmptyPayload {
            kind,
            name: err_name(),
        });
    }
    let bytes =
        crate::hash::nix_base64_decode(payload).ok_or_else(|| SignatureError::InvalidBase64 {
            kind,
            name: err_name(),
            payload: kind.shown(payload),
        })?;
    let len = bytes.len();
    let arr = bytes.try_into().map_err(|_| SignatureError::WrongLength {
        kind,
        name: err_name(),
        len,
    })?;
    Ok((name.to_owned(), arr))
}

/// A detached ed25519 signature with the name of the key that made it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    name: String,
    bytes: [u8; SIGNATURE_BYTES],
}

impl Signature {
    pub fn new(name: &str, bytes: [u8; SIGNATURE_BYTES]) -> Result<Self, SignatureError> {
        check_name(KeyKind::Signature, name, name)?;
        Ok(Self {
            name: name.to_owned(),
            bytes,
        })
    }

    /// The name of the key that made this signature.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bytes(&self) -> &[u8; SIGNATURE_BYTES] {
        &self.bytes
    }
}

/// `name:base64`.
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(&self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, SignatureError> {
        let (name, bytes) = parse_named(KeyKind::Signature, s)?;
        Ok(Self { name, bytes })
    }
}

/// A named ed25519 public key. Any 32 bytes parse (as in Nix); bytes that are not a
/// valid curve point simply verify nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    name: String,
    bytes: [u8; PUBLIC_KEY_BYTES],
}

impl PublicKey {
    pub fn new(name: &str, bytes: [u8; PUBLIC_KEY_BYTES]) -> Result<Self, SignatureError> {
        check_name(KeyKind::PublicKey, name, name)?;
        Ok(Self {
            name: name.to_owned(),
            bytes,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bytes(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        &self.bytes
    }

    /// Whether `sig` was made by this key over `msg`: the names must be equal and the
    /// signature valid. Mirrors `PublicKey::verifyDetached`.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        sig.name == self.name && self.verify_anonymous(msg, &sig.bytes)
    }

    /// Checks the signature bytes alone, ignoring names. Mirrors `verifyDetachedAnon`.
    pub fn verify_anonymous(&self, msg: &[u8], sig: &[u8; SIGNATURE_BYTES]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.bytes) else {
            return false;
        };
        // Strict verification, like libsodium: rejects small-order keys and R values
        // and non-canonical S.
        key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }
}

/// `name:base64`.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(&self.bytes))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, SignatureError> {
        let (name, bytes) = parse_named(KeyKind::PublicKey, s)?;
        Ok(Self { name, bytes })
    }
}

/// Parses a whitespace-separated list of public keys, as in the `trusted-public-keys`
/// setting.
pub fn parse_public_keys(s: &str) -> Result<Vec<PublicKey>, SignatureError> {
    s.split_whitespace().map(str::parse).collect()
}

/// Whether `sig` over `msg` verifies with a trusted key of the same name.
/// Mirrors `verifyDetached` (which looks the key up by name; several trusted keys
/// sharing a name are all tried).
pub fn verify_detached<'a>(
    msg: &[u8],
    sig: &Signature,
    trusted: impl IntoIterator<Item = &'a PublicKey>,
) -> bool {
    trusted.into_iter().any(|k| k.verify(msg, sig))
}

/// A named ed25519 secret key. `Debug` does not show the key; `Display` does (it is
/// the key file format).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    /// A fresh random key from the operating system's generator.
    /// Mirrors `SecretKey::generate` (`nix key generate-secret`).
    pub fn generate(name: &str) -> Result<Self, SignatureError> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| SignatureError::Random(e.to_string()))?;
        let key = Self::from_seed(name, &seed);
        seed.fill(0);
        key
    }

    /// The key derived from a 32-byte seed (libsodium's `crypto_sign_seed_keypair`).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, SignatureError> {
        check_name(KeyKind::SecretKey, name, name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// libsodium's 64-byte form: seed then public key.
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_BYTES] {
        self.key.to_keypair_bytes()
    }

    /// The matching public key, with the same name. Mirrors `SecretKey::toPublicKey`.
    pub fn to_public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            bytes: self.key.verifying_key().to_bytes(),
        }
    }

    /// Signs `msg`; ed25519 is deterministic, so the same key and message always give
    /// the same signature (as libsodium's). Mirrors `SecretKey::signDetached`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature {
            name: self.name.clone(),
            bytes: self.key.sign(msg).to_bytes(),
        }
    }
}

/// `name:base64(64 bytes)`, the secret key file content (no newline).
impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(&self.to_bytes()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}:<secret>)", self.name)
    }
}

impl FromStr for SecretKey {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, SignatureError> {
        let (name, mut bytes) = parse_named::<SECRET_KEY_BYTES>(KeyKind::SecretKey, s)?;
        let key = SigningKey::from_keypair_bytes(&bytes);
        bytes.fill(0);
        match key {
            Ok(key) => Ok(Self { name, key }),
            Err(_) => Err(SignatureError::InconsistentSecretKey { name }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 8032 section 7.1, test 1 (the empty message).
    #[test]
    fn rfc8032_test_vector() {
        let seed = data_encoding::HEXLOWER
            .decode(b"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let sk = SecretKey::from_seed("rfc", &seed.try_into().unwrap()).unwrap();
        assert_eq!(
            data_encoding::HEXLOWER.encode(sk.to_public().bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = sk.sign(b"");
        assert_eq!(
            data_encoding::HEXLOWER.encode(sig.bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(sk.to_public().verify(b"", &sig));
        assert!(!sk.to_public().verify(b"x", &sig));
    }

    #[test]
    fn nix_base64_quirks() {
        let sk = SecretKey::from_seed("k", &[7; 32]).unwrap();
        let s = sk.to_string();
        let payload = s.strip_prefix("k:").unwrap();
        let unpadded = payload.trim_end_matches('=');
        let (a, b) = payload.split_at(10);
        for ok in [
            format!("{s}\n"),
            format!("{s}\n\n"),
            format!("{s}\r\n"),
            format!("{s}=garbage"),
            format!("k:{unpadded}"),
            format!("k:{a}\n{b}"),
        ] {
            assert_eq!(ok.parse::<SecretKey>().unwrap(), sk, "{ok:?}");
        }
        for bad in [
            format!("k:{a} {b}"),
            format!("k:{a}!{b}"),
            format!("k:{}", &payload[..84]),
            format!("k:k:{payload}"),
            format!(":{payload}"),
            "k:".to_owned(),
            payload.to_owned(),
            format!(" k:{payload}"),
        ] {
            assert!(bad.parse::<SecretKey>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_are_typed_and_hide_secrets() {
        let sk = SecretKey::from_seed("k", &[7; 32]).unwrap();
        let payload = sk.to_string()[2..].to_owned();
        let e = format!("k:{}", &payload[..40])
            .parse::<SecretKey>()
            .unwrap_err();
        assert!(matches!(
            e,
            SignatureError::WrongLength {
                kind: KeyKind::SecretKey,
                len: 30,
                ..
            }
        ));
        let e = format!("k:{}!", &payload[..40])
            .parse::<SecretKey>()
            .unwrap_err();
        assert!(!e.to_string().contains(&payload[..40]), "{e}");
        let e = payload.parse::<SecretKey>().unwrap_err();
        assert!(!e.to_string().contains(&payload[..40]), "{e}");
        assert!(!format!("{sk:?}").contains(&payload[..40]));
        assert!(matches!(
            "a b:AAAA".parse::<PublicKey>(),
            Err(SignatureError::BadName { .. })
        ));
        assert!(matches!(
            ":AAAA".parse::<PublicKey>(),
            Err(SignatureError::EmptyName { .. })
        ));
        assert!(matches!(
            "a:".parse::<Signature>(),
            Err(SignatureError::EmptyPayload { .. })
        ));
        assert!(matches!(
            "a".parse::<Signature>(),
            Err(SignatureError::MissingColon { .. })
        ));
        // Public half not matching the seed.
        let mut bytes = sk.to_bytes();
        bytes[40] ^= 1;
        let bad = format!("k:{}", BASE64.encode(&bytes));
        assert!(matches!(
            bad.parse::<SecretKey>(),
            Err(SignatureError::InconsistentSecretKey { .. })
        ));
    }

    #[test]
    fn names_must_match() {
        let a = SecretKey::from_seed("a", &[1; 32]).unwrap();
        let sig = a.sign(b"msg");
        let renamed = PublicKey::new("b", *a.to_public().bytes()).unwrap();
        assert!(!renamed.verify(b"msg", &sig));
        assert!(renamed.verify_anonymous(b"msg", sig.bytes()));
        let other = SecretKey::from_seed("a", &[2; 32]).unwrap().to_public();
        assert!(verify_detached(b"msg", &sig, [&other, &a.to_public()]));
        assert!(!verify_detached(b"msg", &sig, [&other, &renamed]));
        assert!(!verify_detached(b"msg", &sig, []));
    }

    #[test]
    fn invalid_point_verifies_nothing() {
        // y = 2 is not on the curve; Nix accepts the key, verification fails.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let pk = PublicKey::new("x", bytes).unwrap();
        let pk2: PublicKey = pk.to_string().parse().unwrap();
        assert_eq!(pk, pk2);
        assert!(!pk.verify(b"", &Signature::new("x", [0; 64]).unwrap()));
    }

    #[test]
    fn generate_and_list() {
        let a = SecretKey::generate("gen-1").unwrap();
        let b = SecretKey::generate("gen-1").unwrap();
        assert_ne!(a, b);
        let keys = parse_public_keys(&format!(" {}\n\t{} ", a.to_public(), b.to_public())).unwrap();
        assert_eq!(keys, vec![a.to_public(), b.to_public()]);
        assert!(verify_detached(b"m", &b.sign(b"m"), &keys));
    }

    proptest! {
        #[test]
        fn roundtrip(seed in any::<[u8; 32]>(), name in "[a-zA-Z0-9._-]{1,30}", msg in proptest::collection::vec(any::<u8>(), 0..100)) {
            let sk = SecretKey::from_seed(&name, &seed).unwrap();
            prop_assert_eq!(sk.to_string().parse::<SecretKey>().unwrap(), sk.clone());
            let pk = sk.to_public();
            prop_assert_eq!(pk.to_string().parse::<PublicKey>().unwrap(), pk.clone());
            let sig = sk.sign(&msg);
            prop_assert_eq!(sig.to_string().parse::<Signature>().unwrap(), sig.clone());
            prop_assert!(pk.verify(&msg, &sig));
            prop_assert_eq!(sig.to_string().len(), name.len() + 1 + 88);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = s.parse::<SecretKey>();
            let _ = s.parse::<PublicKey>();
            let _ = s.parse::<Signature>();
            let _ = parse_public_keys(&s);
        }

        #[test]
        fn decoder_agrees_with_strict_base64(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let enc = BASE64.encode(&data);
            prop_assert_eq!(crate::hash::nix_base64_decode(&enc).unwrap(), data.clone());
            prop_assert_eq!(crate::hash::nix_base64_decode(enc.trim_end_matches('=')).unwrap(), data);
        }
    }
}
