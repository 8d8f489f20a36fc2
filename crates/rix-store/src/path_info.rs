//! What the store knows about a valid path. Mirrors `ValidPathInfo` in Nix.

use std::collections::BTreeSet;

use rix_formats::content_address::ContentAddress;
use rix_formats::{Hash, StorePath};

/// Metadata of a valid store path, as recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPathInfo {
    pub path: StorePath,
    /// The derivation that produced it, when known.
    pub deriver: Option<StorePath>,
    /// SHA-256 of the NAR serialisation.
    pub nar_hash: Hash,
    pub nar_size: u64,
    /// Store paths whose hash part occurs in the contents (may include `path` itself).
    pub references: BTreeSet<StorePath>,
    /// Seconds since the epoch.
    pub registration_time: i64,
    /// Built locally (trusted without signatures).
    pub ultimate: bool,
    /// `name:base64` signatures.
    pub sigs: BTreeSet<String>,
    pub ca: Option<ContentAddress>,
}

impl ValidPathInfo {
    /// A fresh record with no deriver, signatures or CA, registered now.
    pub fn new(path: StorePath, nar_hash: Hash, nar_size: u64) -> Self {
        Self {
            path,
            deriver: None,
            nar_hash,
            nar_size,
            references: BTreeSet::new(),
            registration_time: now(),
            ultimate: false,
            sigs: BTreeSet::new(),
            ca: None,
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
