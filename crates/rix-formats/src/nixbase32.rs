//! Nix's base-32 encoding ("nix32"), used in store paths and hashes.
//!
//! It is not RFC 4648 base32: the alphabet omits `e o u t` and the bytes are read
//! from the end, so the last character encodes the lowest bits of the first byte.
//! Mirrors `printHash32`/`parseHash32` in Nix's `hash.cc`; written by hand because
//! no crate implements this bit order.

use thiserror::Error;

/// The 32 characters, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Why a nix32 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("invalid nix32 character {:?} at offset {offset}", char::from(*byte))]
    InvalidCharacter { offset: usize, byte: u8 },
    #[error("nix32 string of {0} characters encodes no whole number of bytes")]
    InvalidLength(usize),
    #[error("nix32 string has non-zero padding bits")]
    NonZeroPadding,
}

/// Number of characters needed to encode `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len * 8 - 1) / 5 + 1
    }
}

/// Number of bytes a string of `len` characters decodes to.
pub const fn decoded_len(len: usize) -> usize {
    len * 5 / 8
}

/// Each byte's digit, or `NOT_A_DIGIT` (a table: decoding store paths and
/// hashes is on the daemon's path for every query).
const DIGITS: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NOT_A_DIGIT: u8 = 0xff;

fn digit(byte: u8) -> Option<u8> {
    let d = DIGITS[usize::from(byte)];
    (d != NOT_A_DIGIT).then_some(d)
}

/// Encodes `input` in nix32.
pub fn encode(input: &[u8]) -> String {
    let len = encoded_len(input.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let low = input[i] >> j;
        let high = if i + 1 < input.len() {
            // Widened to u16 so that j == 0 (a shift by 8) drops the byte instead of overflowing.
            (u16::from(input[i + 1]) << (8 - j)) as u8
        } else {
            0
        };
        out.push(ALPHABET[usize::from((low | high) & 0x1f)] as char);
    }
    out
}

/// Decodes a nix32 string.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let size = decoded_len(input.len());
    if encoded_len(size) != input.len() {
        return Err(DecodeError::InvalidLength(input.len()));
    }
    let mut out = vec![0u8; size];
    for (n, &byte) in input.iter().rev().enumerate() {
        let offset = input.len() - n - 1;
        let d = digit(byte).ok_or(DecodeError::InvalidCharacter { offset, byte })?;
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        out[i] |= ((u16::from(d) << j) & 0xff) as u8;
        let carry = (u16::from(d) >> (8 - j)) as u8;
        if i + 1 < size {
            out[i + 1] |= carry;
        } else if carry != 0 {
            return Err(DecodeError::NonZeroPadding);
        }
    }
    Ok(out)
}

/// Decodes into a fixed-size array, for digests of known length.
pub fn decode_fixed<const N: usize>(input: &[u8]) -> Result<[u8; N], DecodeError> {
    if input.len() != encoded_len(N) {
        return Err(DecodeError::InvalidLength(input.len()));
    }
    let v = decode(input)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&v);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        // From Nix's unit tests (tests/unit/libutil/hash.cc): sha256 of "abc".
        let bytes = data_encoding::HEXLOWER
            .decode(b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
            .unwrap();
        assert_eq!(
            encode(&bytes),
            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
        );
        assert_eq!(
            decode(b"1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s").unwrap(),
            bytes
        );
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            decode(b"0e"),
            Err(DecodeError::InvalidCharacter {
                offset: 1,
                byte: b'e'
            })
        );
        assert_eq!(decode(b"012"), Err(DecodeError::InvalidLength(3)));
        // "zz" would need 10 bits for one byte: the top bits must be zero.
        assert_eq!(decode(b"zz"), Err(DecodeError::NonZeroPadding));
    }

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let s = encode(&bytes);
            prop_assert_eq!(s.len(), encoded_len(bytes.len()));
            prop_assert_eq!(decode(s.as_bytes()).unwrap(), bytes);
        }
        #[test]
        fn decode_never_panics(s in "[0-9a-z]{0,60}") {
            let _ = decode(s.as_bytes());
        }
    }
}
