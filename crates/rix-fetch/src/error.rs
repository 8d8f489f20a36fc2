//! Why a fetch failed, in Nix's words, with the trace of what was being
//! fetched ("while fetching the input '…'").

use std::fmt;

/// A fetch error: Nix's message and the trace lines that lead to it
/// (innermost first, as Nix adds them).
#[derive(Debug)]
pub struct FetchError {
    pub message: String,
    pub trace: Vec<String>,
    /// The fetch needs a network this process cannot reach or is not
    /// allowed to use.
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Other,
    /// A hash (`narHash`, `sha256`, `hash`) was given and the content has another.
    HashMismatch,
    /// Fetching in pure mode what is not locked, or other forbidden access.
    Restricted,
}

pub type Result<T, E = FetchError> = std::result::Result<T, E>;

impl FetchError {
    pub fn msg(message: impl Into<String>) -> Self {
        FetchError {
            message: message.into(),
            trace: Vec::new(),
            kind: ErrorKind::Other,
        }
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Adds an outer trace line (Nix's `addTrace`).
    pub fn with_trace(mut self, line: impl Into<String>) -> Self {
        self.trace.push(line.into());
        self
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

impl From<std::io::Error> for FetchError {
    fn from(e: std::io::Error) -> Self {
        FetchError::msg(e.to_string())
    }
}

impl From<rix_store::local_store::StoreError> for FetchError {
    fn from(e: rix_store::local_store::StoreError) -> Self {
        FetchError::msg(e.to_string())
    }
}

impl From<rusqlite::Error> for FetchError {
    fn from(e: rusqlite::Error) -> Self {
        FetchError::msg(format!("fetcher cache: {e}"))
    }
}
