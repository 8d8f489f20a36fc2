//! The Nix ARchive format (NAR): Nix's canonical serialisation of a file system
//! object (a regular file, a symlink or a directory tree), the input of every NAR
//! hash and the form store objects travel in.
//!
//! | module | concept |
//! | --- | --- |
//! | [`wire`] | tokens, strings and padding; name and target rules; [`Limits`] |
//! | [`writer`] | [`NarWriter`]: streaming writer with checked events |
//! | [`reader`] | [`NarReader`]: streaming, validating pull parser |
//! | [`copy`] | [`copy()`]: reader to writer (validates and re-encodes) |
//! | [`listing`] | `nix nar ls` and binary cache `.ls` listings |
//!
//! The grammar (see the manual's `protocols/nix-archive`) leaves no freedom: a
//! file system object has exactly one NAR, so a valid archive re-encodes to the
//! same bytes. This module works on bytes only; dumping and restoring file trees
//! live in `rix-store`'s `archive` module.

pub mod copy;
pub mod listing;
pub mod reader;
pub mod wire;
pub mod writer;

#[cfg(test)]
mod tests;

pub use copy::{copy, CopyError};
pub use reader::{Contents, Event, NarReadError, NarReader};
pub use wire::{Limits, NameError, TargetError};
pub use writer::{NarWriteError, NarWriter};

/// Reads and validates a whole archive (the input must end with it); returns its
/// size in bytes.
pub fn validate(nar: impl std::io::Read) -> Result<u64, NarReadError> {
    let mut reader = NarReader::new(nar);
    while reader.next()?.is_some() {}
    let size = reader.offset();
    reader.finish_at_eof()?;
    Ok(size)
}

/// The contents of an archive holding one regular file (a `.drv`, a text
/// file), or `None` when its root is a directory or a symlink.
pub fn regular_file(nar: impl std::io::Read) -> Result<Option<Vec<u8>>, NarReadError> {
    use std::io::Read;
    let mut reader = NarReader::new(nar);
    match reader.next()? {
        Some(Event::Regular { .. }) => {
            let mut bytes = Vec::new();
            let offset = reader.offset();
            reader
                .contents()
                .read_to_end(&mut bytes)
                .map_err(|e| NarReadError::from_io(e, offset))?;
            Ok(Some(bytes))
        }
        _ => Ok(None),
    }
}
