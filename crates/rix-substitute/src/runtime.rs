//! The process's shared Tokio runtime for HTTP and S3 transfers, and a bridge
//! from an async byte stream to a blocking [`Read`] so that downloading (on the
//! runtime) overlaps with decompressing, hashing and writing (on the caller's
//! thread).

use std::io::{self, Read};
use std::sync::OnceLock;

use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// The shared runtime (two worker threads: transfers are I/O-bound).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        install_crypto();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rix-transfer")
            .enable_all()
            .build()
            .expect("cannot start the transfer runtime")
    })
}

/// Installs rustls's ring provider as the process default (once).
pub fn install_crypto() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Chunks in flight between the downloading task and the reader.
const CHANNEL_CHUNKS: usize = 32;

/// The sending half: an async task pushes chunks (or a final error) here.
pub type ChunkSender = mpsc::Sender<io::Result<Bytes>>;

/// A blocking reader fed by an async task through a bounded channel.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    done: bool,
}

/// A connected pair: give the sender to a task on [`runtime`], read the reader
/// on a plain thread (never inside the runtime).
pub fn channel() -> (ChunkSender, ChannelReader) {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    (
        tx,
        ChannelReader {
            rx,
            current: Bytes::new(),
            done: false,
        },
    )
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
