//! The NAR grammar's building blocks, shared by the writer and the reader.
//!
//! Every token, name, symlink target and file is a "string": a little-endian `u64`
//! length, the bytes, then zero bytes up to a multiple of 8. The fixed token runs
//! the writer emits (`( type regular contents`, ...) are encoded once at compile
//! time. Mirrors `narVersionMagic1`, `writePadding` and `readPadding` in Nix's
//! `archive.cc` / `serialise.cc`.

use std::io::{self, Write};

use thiserror::Error;

/// The archive's first string.
pub const MAGIC: &[u8] = b"nix-archive-1";

/// Longest entry name accepted by default: `NAME_MAX` on Linux. Nix itself has no
/// limit, but no file system it restores to takes a longer name.
pub const MAX_NAME_LEN: usize = 255;

/// Longest symlink target accepted by default: `PATH_MAX`, the most Linux holds.
pub const MAX_TARGET_LEN: usize = 4096;

/// Deepest directory nesting accepted by default (the root directory is depth 1).
///
/// Nix's parser has no limit, but Nix restores (`nix-store --restore`, imports,
/// substitution) by full path names, so `PATH_MAX` (4096) bounds what it can
/// unpack: every level adds at least two bytes (`/` and a one-byte name), and
/// Nix 2.8 fails with "File name too long" past about 2,040 levels. 4096 is
/// above anything Nix restores, and keeps the writer's recursion over a file
/// tree (`rix-store`'s dump) within a thread's stack. The reader and the
/// restorer are iterative and need no such bound.
pub const MAX_DEPTH: usize = 4096;

/// Longest token the grammar has (`nix-archive-1`), rounded up to a padding unit.
pub(crate) const MAX_TOKEN_LEN: usize = 16;

pub(crate) const OPEN: &[u8] = b"(";
pub(crate) const CLOSE: &[u8] = b")";
pub(crate) const TYPE: &[u8] = b"type";
pub(crate) const REGULAR: &[u8] = b"regular";
pub(crate) const DIRECTORY: &[u8] = b"directory";
pub(crate) const SYMLINK: &[u8] = b"symlink";
pub(crate) const EXECUTABLE: &[u8] = b"executable";
pub(crate) const CONTENTS: &[u8] = b"contents";
pub(crate) const TARGET: &[u8] = b"target";
pub(crate) const ENTRY: &[u8] = b"entry";
pub(crate) const NAME: &[u8] = b"name";
pub(crate) const NODE: &[u8] = b"node";

/// Limits the reader and the writer enforce. Nix enforces none of these; the
/// defaults are what a Linux file system can hold, so that any archive rix accepts
/// can be restored and anything rix writes can be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest entry name, in bytes.
    pub max_name_len: usize,
    /// Longest symlink target, in bytes.
    pub max_target_len: usize,
    /// Deepest directory nesting; the root directory is depth 1.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_name_len: MAX_NAME_LEN,
            max_target_len: MAX_TARGET_LEN,
            max_depth: MAX_DEPTH,
        }
    }
}

/// Why a directory entry name is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is '.'")]
    Dot,
    #[error("name is '..'")]
    DotDot,
    #[error("name contains '/' at byte {0}")]
    Slash(usize),
    #[error("name contains a NUL byte at byte {0}")]
    Nul(usize),
    #[error("name is {len} bytes long (at most {max} allowed)")]
    TooLong { len: u64, max: usize },
}

/// Why a symlink target is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TargetError {
    #[error("symlink target is empty")]
    Empty,
    #[error("symlink target contains a NUL byte at byte {0}")]
    Nul(usize),
    #[error("symlink target is {len} bytes long (at most {max} allowed)")]
    TooLong { len: u64, max: usize },
}

/// Checks an entry name as Nix's `parse` in `archive.cc` does (not empty, not `.`
/// or `..`, no `/` or NUL), plus the length limit.
pub fn check_name(name: &[u8], max_len: usize) -> Result<(), NameError> {
    if name.len() > max_len {
        return Err(NameError::TooLong {
            len: name.len() as u64,
            max: max_len,
        });
    }
    match name {
        b"" => return Err(NameError::Empty),
        b"." => return Err(NameError::Dot),
        b".." => return Err(NameError::DotDot),
        _ => {}
    }
    for (i, &b) in name.iter().enumerate() {
        match b {
            b'/' => return Err(NameError::Slash(i)),
            0 => return Err(NameError::Nul(i)),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a symlink target: not empty and no NUL (neither can exist in a file
/// system, and NUL would silently truncate the target when restored), bounded.
pub fn check_target(target: &[u8], max_len: usize) -> Result<(), TargetError> {
    if target.len() > max_len {
        return Err(TargetError::TooLong {
            len: target.len() as u64,
            max: max_len,
        });
    }
    if target.is_empty() {
        return Err(TargetError::Empty);
    }
    if let Some(i) = target.iter().position(|&b| b == 0) {
        return Err(TargetError::Nul(i));
    }
    Ok(())
}

/// Zero bytes that follow a string of `len` bytes.
pub const fn padding_len(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

/// Bytes a string of `len` bytes takes on the wire (length field, body, padding).
/// `None` if that does not fit in a `u64`.
pub const fn str_wire_len(len: u64) -> Option<u64> {
    len.checked_add(8 + padding_len(len) as u64)
}

pub(crate) const ZEROS: [u8; 8] = [0; 8];

/// Shows bytes in an error message: quoted like a Rust string when UTF-8,
/// escaped byte by byte otherwise.
pub(crate) fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("\"{}\"", bytes.escape_ascii()),
    }
}

/// Writes `s` as a NAR string.
pub fn write_str(out: &mut impl Write, s: &[u8]) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s)?;
    out.write_all(&ZEROS[..padding_len(s.len() as u64)])
}

/// Bytes a run of tokens takes on the wire.
const fn tokens_len(tokens: &[&[u8]]) -> usize {
    let mut total = 0;
    let mut i = 0;
    while i < tokens.len() {
        total += 8 + tokens[i].len() + padding_len(tokens[i].len() as u64);
        i += 1;
    }
    total
}

/// Encodes a run of tokens at compile time; `N` must be `tokens_len(tokens)`.
const fn encode_tokens<const N: usize>(tokens: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut pos = 0;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let len = (t.len() as u64).to_le_bytes();
        let mut j = 0;
        while j < 8 {
            out[pos + j] = len[j];
            j += 1;
        }
        pos += 8;
        j = 0;
        while j < t.len() {
            out[pos + j] = t[j];
            j += 1;
        }
        pos += t.len() + padding_len(t.len() as u64);
        i += 1;
    }
    assert!(pos == N, "encode_tokens: wrong output length");
    out
}

macro_rules! token_run {
    ($(#[$doc:meta])* $name:ident = [$($tok:expr),* $(,)?]) => {
        $(#[$doc])*
        pub(crate) const $name: [u8; tokens_len(&[$($tok),*])] = encode_tokens(&[$($tok),*]);
    };
}

token_run!(
    /// `nix-archive-1`.
    MAGIC_RUN = [MAGIC]
);
token_run!(
    /// A regular file up to its size: `( type regular contents`.
    REGULAR_RUN = [OPEN, TYPE, REGULAR, CONTENTS]
);
token_run!(
    /// An executable file up to its size: `( type regular executable "" contents`.
    EXECUTABLE_RUN = [OPEN, TYPE, REGULAR, EXECUTABLE, b"", CONTENTS]
);
token_run!(
    /// A symlink up to its target: `( type symlink target`.
    SYMLINK_RUN = [OPEN, TYPE, SYMLINK, TARGET]
);
token_run!(
    /// A directory's opening: `( type directory`.
    DIRECTORY_RUN = [OPEN, TYPE, DIRECTORY]
);
token_run!(
    /// An entry up to its name: `entry ( name`.
    ENTRY_RUN = [ENTRY, OPEN, NAME]
);
token_run!(
    /// Between an entry's name and its node: `node`.
    NODE_RUN = [NODE]
);
token_run!(
    /// `)`: closes a node or an entry.
    CLOSE_RUN = [CLOSE]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_padded() {
        let mut v = Vec::new();
        write_str(&mut v, b"").unwrap();
        assert_eq!(v, [0u8; 8]);
        v.clear();
        write_str(&mut v, b"abc").unwrap();
        assert_eq!(v, b"\x03\0\0\0\0\0\0\0abc\0\0\0\0\0");
        v.clear();
        write_str(&mut v, b"12345678").unwrap();
        assert_eq!(v.len(), 16);
        assert_eq!(str_wire_len(3), Some(16));
        assert_eq!(str_wire_len(8), Some(16));
        assert_eq!(str_wire_len(u64::MAX), None);
    }

    #[test]
    fn token_runs_match_write_str() {
        let mut v = Vec::new();
        for t in [OPEN, TYPE, REGULAR, EXECUTABLE, b"", CONTENTS] {
            write_str(&mut v, t).unwrap();
        }
        assert_eq!(&EXECUTABLE_RUN[..], &v[..]);
        let mut m = Vec::new();
        write_str(&mut m, MAGIC).unwrap();
        assert_eq!(&MAGIC_RUN[..], &m[..]);
    }

    #[test]
    fn names() {
        assert_eq!(check_name(b"a", 255), Ok(()));
        assert_eq!(check_name(b"...", 255), Ok(()));
        assert_eq!(check_name(b"", 255), Err(NameError::Empty));
        assert_eq!(check_name(b".", 255), Err(NameError::Dot));
        assert_eq!(check_name(b"..", 255), Err(NameError::DotDot));
        assert_eq!(check_name(b"a/b", 255), Err(NameError::Slash(1)));
        assert_eq!(check_name(b"ab\0", 255), Err(NameError::Nul(2)));
        assert_eq!(
            check_name(b"abc", 2),
            Err(NameError::TooLong { len: 3, max: 2 })
        );
        assert_eq!(check_target(b"", 10), Err(TargetError::Empty));
        assert_eq!(check_target(b"a\0", 10), Err(TargetError::Nul(1)));
        assert_eq!(check_target(b"../../etc", 10), Ok(()));
    }
}
