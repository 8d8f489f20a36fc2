//! Progress of substitutions and uploads, for a live display or a log.

use std::time::Duration;

use rix_formats::StorePath;

/// One thing that happened while fetching or uploading.
#[derive(Debug, Clone, Copy)]
pub enum SubstEvent<'a> {
    /// Paths about to be fetched, with the bytes to download and to unpack.
    Planned {
        paths: &'a [StorePath],
        download_bytes: u64,
        nar_bytes: u64,
    },
    /// A download started.
    Started {
        path: &'a StorePath,
        cache: &'a str,
        download_size: Option<u64>,
        nar_size: u64,
    },
    /// Bytes downloaded so far (reported about every MiB).
    Progress {
        path: &'a StorePath,
        downloaded: u64,
    },
    /// A download finished (`error` is `None` on success): the path is valid.
    Finished {
        path: &'a StorePath,
        cache: &'a str,
        downloaded: u64,
        elapsed: Duration,
        error: Option<&'a str>,
    },
    /// A path was uploaded to a cache.
    Uploaded {
        path: &'a StorePath,
        cache: &'a str,
        file_size: u64,
        nar_size: u64,
        elapsed: Duration,
    },
    /// Something the user should know (a cache ignored, a signature refused...).
    Warning { message: &'a str },
}

/// Receives events; called from several threads.
pub trait SubstObserver: Send + Sync {
    fn event(&self, event: SubstEvent<'_>);
}

/// Discards everything.
pub struct Quiet;

impl SubstObserver for Quiet {
    fn event(&self, _: SubstEvent<'_>) {}
}

/// Prints warnings and failures on stderr, nothing else.
pub struct Stderr;

impl SubstObserver for Stderr {
    fn event(&self, event: SubstEvent<'_>) {
        match event {
            SubstEvent::Warning { message } => eprintln!("warning: {message}"),
            SubstEvent::Finished { error: Some(e), .. } => eprintln!("error: {e}"),
            _ => {}
        }
    }
}
