//! The NAR hash of a file system object, as `nix-hash --type ALGO PATH` prints it.
//!
//! Hashing is sequential, so it gets a thread of its own: the calling thread
//! walks the tree and reads files straight into fixed-size blocks of NAR bytes,
//! a second thread hashes them, and used blocks go back to the walker (a bounded
//! pipeline: at most [`BLOCKS_IN_FLIGHT`] blocks wait, so memory stays small
//! whatever the tree). Closing a file costs about as much as reading a small one,
//! so the walker hands its files to the hashing thread to close, unless that
//! thread is the one behind (its queue is full): then the walker closes them
//! itself while it would otherwise wait. Small single files are hashed on the
//! calling thread.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use rix_formats::hash::Hasher;
use rix_formats::{Hash, HashAlgo};

use super::dump::{dump_to, dump_with, CopyFail, DumpSink};
use super::ArchiveError;

/// Bytes per block handed to the hashing thread.
pub const BLOCK_LEN: usize = 256 * 1024;
/// Full blocks that may wait for the hashing thread.
pub const BLOCKS_IN_FLIGHT: usize = 4;
/// Regular files and symlinks up to this size are hashed without a second thread.
const INLINE_LIMIT: u64 = 256 * 1024;
/// Files waiting to be closed before a block is sent regardless of its fill. With
/// the blocks in flight this bounds the open files to a few hundred, well under
/// the usual limit of 1024.
const MAX_OPEN: usize = 32;

/// The NAR hash of the file system object at `path` and the NAR's size.
pub fn hash_path(path: &Path, algo: HashAlgo) -> Result<(Hash, u64), ArchiveError> {
    let small = std::fs::symlink_metadata(path)
        .map(|m| !m.is_dir() && m.len() <= INLINE_LIMIT)
        .unwrap_or(true); // let the dump report the error
    if small {
        let mut hasher = Hasher::new(algo);
        let size = dump_to(path, &mut hasher)?;
        return Ok((hasher.finish(), size));
    }
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(BLOCKS_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
        let hashing = scope.spawn(move || {
            let mut hasher = Hasher::new(algo);
            for mut batch in full_rx {
                hasher.update(&batch.block[..batch.filled]);
                batch.to_close.clear();
                // The walker may be gone (it failed); then the batch is dropped.
                let _ = empty_tx.send(batch);
            }
            hasher.finish()
        });
        let sink = BlockSink {
            batch: Batch::new(),
            full: full_tx,
            empty: empty_rx,
        };
        let result = dump_with(path, sink).and_then(|(size, mut sink)| {
            sink.send_block().map_err(ArchiveError::Write)?;
            Ok(size)
        });
        // Dropping the sink (here or in dump_with) closes the channel and so ends
        // the hashing thread's loop.
        let hash = match hashing.join() {
            Ok(hash) => hash,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        result.map(|size| (hash, size))
    })
}

/// A block of NAR bytes for the hashing thread, and files for it to close.
struct Batch {
    /// Always `BLOCK_LEN` long (initialised once, so files can be read into it).
    block: Vec<u8>,
    filled: usize,
    to_close: Vec<File>,
}

impl Batch {
    fn new() -> Self {
        Self {
            block: vec![0; BLOCK_LEN],
            filled: 0,
            to_close: Vec::new(),
        }
    }
}

/// The walker's end of the pipeline.
struct BlockSink {
    batch: Batch,
    full: SyncSender<Batch>,
    empty: Receiver<Batch>,
}

impl BlockSink {
    fn send_block(&mut self) -> io::Result<()> {
        if self.batch.filled == 0 && self.batch.to_close.is_empty() {
            return Ok(());
        }
        let next = match self.empty.try_recv() {
            Ok(mut b) => {
                b.filled = 0;
                b
            }
            Err(_) => Batch::new(),
        };
        let batch = std::mem::replace(&mut self.batch, next);
        let stopped = || io::Error::other("the hashing thread stopped");
        match self.full.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(mut batch)) => {
                // The hashing thread is behind: close the files here, while
                // waiting for it anyway.
                batch.to_close.clear();
                self.full.send(batch).map_err(|_| stopped())
            }
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }
}

impl Write for BlockSink {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let b = &mut self.batch;
            let n = (BLOCK_LEN - b.filled).min(buf.len());
            b.block[b.filled..b.filled + n].copy_from_slice(&buf[..n]);
            b.filled += n;
            buf = &buf[n..];
            if b.filled == BLOCK_LEN {
                self.send_block()?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl DumpSink for BlockSink {
    /// Reads the file straight into the blocks, then queues it for closing.
    fn copy_file(&mut self, mut file: File, size: u64, _buf: &mut [u8]) -> Result<(), CopyFail> {
        let mut left = size;
        while left > 0 {
            if self.batch.filled == BLOCK_LEN {
                self.send_block().map_err(CopyFail::Sink)?;
            }
            let b = &mut self.batch;
            let want = (BLOCK_LEN - b.filled).min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut b.block[b.filled..b.filled + want]) {
                Ok(0) => return Err(CopyFail::Short { read: size - left }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyFail::Read(e)),
            };
            b.filled += n;
            left -= n as u64;
        }
        self.batch.to_close.push(file);
        if self.batch.to_close.len() >= MAX_OPEN {
            self.send_block().map_err(CopyFail::Sink)?;
        }
        Ok(())
    }
}
