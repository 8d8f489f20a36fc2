//! Why a realisation failed, worded so the user knows what to do next.

use std::path::PathBuf;

use rix_store::local_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BuildError {
    /// `max-jobs = 0` with something to build: nothing may build locally, and
    /// builds are not sent to other machines (Nix's words, laid out as Nix
    /// prints them: the message starts on the line after `error:`).
    #[error("\n                           Unable to start any build;\n                           either increase '--max-jobs' or enable remote builds.\n\n                           For more information run 'man nix.conf' and search for '/machines'.")]
    NoBuildSlots,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] rix_store::lock::LockError),
    #[error(transparent)]
    Db(#[from] rix_store::db::DbError),
    #[error(transparent)]
    Archive(#[from] rix_store::archive::ArchiveError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read derivation '{path}': {message}")]
    BadDerivation { path: String, message: String },
    #[error("derivation '{0}' is not in the store: add it first (rix derivation add, or nix-instantiate)")]
    MissingDerivation(String),
    #[error("cannot start builder '{builder}' of '{drv}': {source}")]
    Spawn {
        drv: String,
        builder: String,
        source: std::io::Error,
    },
    #[error(
        "builder for '{drv}' failed with {status};{}\n{}",
        format_tail(tail),
        log_error.as_ref().map_or_else(|| format!("For full logs, run '{log_command} {drv}'."), |e| format!("(and {e})"))
    )]
    BuilderFailed {
        drv: String,
        status: String,
        tail: Vec<String>,
        /// Why the log file is incomplete, if it is.
        log_error: Option<String>,
        /// The command that prints the whole log (`BuildSettings::log_command`).
        log_command: String,
    },
    #[error(transparent)]
    Log(#[from] crate::log::LogWriteError),
    #[error("builder for '{drv}' {reason}")]
    TimedOut { drv: String, reason: String },
    #[error("build of '{0}' was cancelled")]
    Cancelled(String),
    #[error("builder for '{drv}' failed to produce output path for output '{output}' at '{path}'")]
    MissingOutput {
        drv: String,
        output: String,
        path: String,
    },
    #[error("hash mismatch in fixed-output derivation '{drv}':\n  specified: {specified}\n     got:    {got}")]
    HashMismatch {
        drv: String,
        specified: String,
        got: String,
    },
    #[error("{0}")]
    Substitution(String),
    /// A store path (not a derivation) is missing and no cache has it. Nix 2.26's words.
    #[error("path '{0}' is required, but there is no substituter that can build it")]
    NoSubstituter(String),
    #[error("builder thread for '{drv}' died: {message}")]
    WorkerDied { drv: String, message: String },
    #[error("cannot build '{drv}': {reason}")]
    Unsupported { drv: String, reason: String },
    #[error("{failed} of {total} builds failed: {}", first.as_deref().unwrap_or(""))]
    Failed {
        failed: usize,
        total: usize,
        first: Option<String>,
    },
}

impl BuildError {
    /// A builder ran and failed (Nix's "permanent failure": exit status 100),
    /// as opposed to rix or the store failing around it.
    pub fn is_build_failure(&self) -> bool {
        matches!(
            self,
            BuildError::BuilderFailed { .. }
                | BuildError::MissingOutput { .. }
                | BuildError::TimedOut { .. }
                | BuildError::HashMismatch { .. }
                | BuildError::Failed { .. }
        )
    }
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

fn format_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = format!("\nlast {} log lines:", tail.len());
    for l in tail {
        s.push_str("\n> ");
        s.push_str(l);
    }
    s
}
