//! File system objects to and from NAR: [`dump`] a tree, [`hash_path`] it (the
//! NAR hash Nix records for every store object), [`restore`] an archive.
//!
//! | module | concept |
//! | --- | --- |
//! | [`dump`](mod@dump) | walking a tree into a [`NarWriter`](rix_formats::nar::NarWriter) |
//! | [`hash`](mod@hash) | NAR hash and size, walking and hashing on two threads |
//! | [`restore`](mod@restore) | creating a tree from a [`NarReader`](rix_formats::nar::NarReader) |
//!
//! Mirrors `dumpPath` and `restorePath` in Nix's `archive.cc`. Directories are
//! walked relative to open file descriptors (`openat` with `O_NOFOLLOW`), so a
//! symlink is never followed, neither when dumping nor when restoring.

pub mod dump;
pub mod hash;
pub mod restore;

use std::io;
use std::path::PathBuf;

use rix_formats::nar::{NarReadError, NarWriteError};
use thiserror::Error;

pub use dump::{dump, dump_to};
pub use hash::hash_path;
pub use restore::{restore, restore_from};

/// Why dumping, hashing or restoring failed; names the file concerned.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("{op} '{}': {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("file '{}' has an unsupported type ({kind})", path.display())]
    UnsupportedType { path: PathBuf, kind: &'static str },
    #[error("file '{}' shrank while being archived: {size} bytes expected, {read} read", path.display())]
    FileChanged { path: PathBuf, size: u64, read: u64 },
    #[error("cannot archive '{}': {source}", path.display())]
    Encode {
        path: PathBuf,
        source: NarWriteError,
    },
    #[error("writing the NAR failed: {0}")]
    Write(#[source] io::Error),
    #[error("cannot restore to '{}': it already exists", path.display())]
    TargetExists { path: PathBuf },
    #[error("restoring '{}': {source}", path.display())]
    Nar { path: PathBuf, source: NarReadError },
}

impl ArchiveError {
    /// For a rejected archive, the byte offset at which the problem was found.
    pub fn nar_offset(&self) -> Option<u64> {
        match self {
            Self::Nar { source, .. } => Some(source.offset()),
            _ => None,
        }
    }
}

/// Name of a file type, for [`ArchiveError::UnsupportedType`].
fn type_name(t: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType as T;
    match t {
        T::RegularFile => "regular file",
        T::Directory => "directory",
        T::Symlink => "symlink",
        T::Fifo => "fifo",
        T::Socket => "socket",
        T::CharacterDevice => "character device",
        T::BlockDevice => "block device",
        _ => "unknown",
    }
}
