//! Re-encoding an archive event by event: read, validate and write it out again.
//! For a valid archive the output is the input, byte for byte (the grammar leaves
//! no freedom). Mirrors Nix's `copyNAR` in `archive.cc`.

use std::io::{Read, Write};

use thiserror::Error;

use super::reader::{Event, NarReadError, NarReader};
use super::writer::{NarWriteError, NarWriter};

/// Why [`copy`] failed: reading the input or writing the output.
#[derive(Debug, Error)]
pub enum CopyError {
    #[error(transparent)]
    Read(#[from] NarReadError),
    #[error(transparent)]
    Write(#[from] NarWriteError),
}

/// Copies the rest of the archive from `reader` to `writer`, streaming file
/// contents in 64 KiB chunks. Returns the number of bytes written.
pub fn copy<R: Read, W: Write>(
    reader: &mut NarReader<R>,
    writer: &mut NarWriter<W>,
) -> Result<u64, CopyError> {
    let start = writer.position();
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(event) = reader.next()? {
        match event {
            Event::Regular {
                executable, size, ..
            } => {
                writer.begin_regular(executable, size)?;
                let mut contents = reader.contents();
                loop {
                    let offset = contents.remaining();
                    let n = match contents.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(NarReadError::from_io(e, offset).into()),
                    };
                    writer.write_contents(&buf[..n])?;
                }
                writer.end_regular()?;
            }
            Event::Symlink { target } => writer.symlink(target)?,
            Event::Directory => writer.begin_directory()?,
            Event::Entry { name } => writer.entry(name)?,
            Event::EndDirectory => writer.end_directory()?,
        }
    }
    Ok(writer.position() - start)
}
