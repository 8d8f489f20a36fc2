//! What the realisation engine reports while it works. The CLI turns these into a
//! live display on a terminal, plain lines otherwise, or JSON.

use std::time::Duration;

use rix_formats::StorePath;

/// One thing that happened.
#[derive(Debug)]
pub enum BuildEvent<'a> {
    /// The plan: derivations to build, in no particular order.
    Planned { to_build: &'a [StorePath] },
    /// A builder was started.
    Started { drv: &'a StorePath, reason: &'a str },
    /// One line of a builder's output (without the newline).
    Log { drv: &'a StorePath, line: &'a str },
    /// A builder finished (`error` is `None` on success).
    Finished {
        drv: &'a StorePath,
        elapsed: Duration,
        error: Option<&'a str>,
    },
    /// Fetching from binary caches (see [`crate::substitute`]).
    Substitution(rix_substitute::SubstEvent<'a>),
    /// Another process (rix or Nix) holds the lock on an output of `drv`; the
    /// build waits for it (and then usually finds the output valid).
    WaitingForLock { drv: &'a StorePath, path: &'a str },
    /// A failed build's directory was kept (`--keep-failed`) at `path`.
    KeptBuildDir {
        drv: &'a StorePath,
        path: &'a std::path::Path,
    },
    /// A derivation with content-addressed inputs was resolved (its inputs
    /// replaced by their realised outputs) to the derivation `resolved`.
    Resolved {
        drv: &'a StorePath,
        resolved: &'a StorePath,
    },
    /// A derivation was not built because the derivation it resolved to is
    /// realised already: its rebuilt inputs came out unchanged ("cut off").
    CutOff {
        drv: &'a StorePath,
        resolved: &'a StorePath,
    },
    /// A derivation was not attempted because a dependency failed.
    Skipped {
        drv: &'a StorePath,
        failed_dep: &'a StorePath,
    },
}

/// Receives events; called from several threads.
pub trait Observer: Send + Sync {
    fn event(&self, event: BuildEvent<'_>);
}

/// Discards everything.
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: BuildEvent<'_>) {}
}
