//! The NAR hash of a file system object, as `nix-hash --type ALGO PATH` prints it.
//!
//! Hashing is sequential, so it gets a thread of its own: the calling thread
//! walks the tree and reads files into fixed-size blocks of NAR bytes, a second
//! thread hashes them, and used blocks go back to the walker (a bounded pipeline:
//! at most [`BLOCKS_IN_FLIGHT`] blocks are queued, so memory stays small whatever
//! the tree). Small single files are hashed on the calling thread.

use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};

use rix_formats::hash::Hasher;
use rix_formats::{Hash, HashAlgo};

use super::{dump_to, ArchiveError};

/// Bytes per block handed to the hashing thread.
pub const BLOCK_LEN: usize = 256 * 1024;
/// Full blocks that may wait for the hashing thread.
pub const BLOCKS_IN_FLIGHT: usize = 4;
/// Regular files and symlinks up to this size are hashed without a second thread.
const INLINE_LIMIT: u64 = 256 * 1024;

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
        let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        let hashing = scope.spawn(move || {
            let mut hasher = Hasher::new(algo);
            for block in full_rx {
                hasher.update(&block);
                // The walker may be gone (it failed); then the block is dropped.
                let _ = empty_tx.send(block);
            }
            hasher.finish()
        });
        let mut sink = BlockSink {
            block: Vec::with_capacity(BLOCK_LEN),
            full: full_tx,
            empty: empty_rx,
        };
        let result = dump_to(path, &mut sink).and_then(|size| {
            sink.send_block().map_err(ArchiveError::Write)?;
            Ok(size)
        });
        // Closing the channel ends the hashing thread's loop.
        drop(sink);
        let hash = match hashing.join() {
            Ok(hash) => hash,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        result.map(|size| (hash, size))
    })
}

/// A [`Write`] that cuts its input into blocks for the hashing thread.
struct BlockSink {
    block: Vec<u8>,
    full: SyncSender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
}

impl BlockSink {
    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let next = match self.empty.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(BLOCK_LEN),
        };
        let block = std::mem::replace(&mut self.block, next);
        self.full
            .send(block)
            .map_err(|_| io::Error::other("the hashing thread stopped"))
    }
}

impl Write for BlockSink {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let room = BLOCK_LEN - self.block.len();
            let n = room.min(buf.len());
            self.block.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.block.len() == BLOCK_LEN {
                self.send_block()?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
