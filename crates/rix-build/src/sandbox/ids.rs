//! Who the builder is, outside its user namespace.
//!
//! Inside, the builder is uid 1000 / gid 100 (`nixbld`), as in Nix; when root
//! builds without a user namespace (the kernel refuses one), it is its build uid
//! and gid below on both sides, as Nix's build users then. Outside:
//! - rix running unprivileged: the calling user (the only mapping a user may
//!   write). Store objects then belong to the builder too, which is why every
//!   input is mounted read-only.
//! - rix running as root: a uid of its own for each concurrent build, taken from
//!   the range Nix's `auto-allocate-uids` uses (872415232 + 65536 × slot), each
//!   slot held with a lock on `<state>/userpool2/slot-<n>` so that concurrent
//!   builds (of any rix process) never share a uid. Never root: uid 0 owns the
//!   host's files, and `/proc/sys` trusts it without capabilities.

use std::fs::File;
use std::path::Path;

use rix_store::lock::{lock_file, open_lock_file, LockKind};

/// First uid of the automatically allocated range (Nix's `start-id`).
pub const START_ID: u32 = 872_415_232;
/// Ids reserved per slot (Nix's `max-ids-per-build`).
const IDS_PER_SLOT: u32 = 1 << 16;
/// How many builds may run at once as root.
const SLOTS: u32 = 1024;

/// The sandbox's user and group inside (Nix's `sandboxUid` / `sandboxGid`).
pub const SANDBOX_UID: u32 = 1000;
pub const SANDBOX_GID: u32 = 100;

/// The outside identity of one build.
#[derive(Debug)]
pub struct BuildIds {
    pub uid: u32,
    pub gid: u32,
    /// Whether rix is root (it can map any id and must chown outputs back).
    pub privileged: bool,
    _slot: Option<File>,
}

impl BuildIds {
    /// The identity for one build (see the module docs).
    pub fn allocate(state_dir: &Path) -> std::io::Result<Self> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid != 0 {
            return Ok(Self {
                uid: euid,
                gid: nix::unistd::getegid().as_raw(),
                privileged: false,
                _slot: None,
            });
        }
        let dir = state_dir.join("userpool2");
        std::fs::create_dir_all(&dir)?;
        for slot in 0..SLOTS {
            let file = open_lock_file(&dir.join(format!("slot-{slot}")))?;
            if lock_file(&file, LockKind::Exclusive, false)? {
                let id = START_ID + slot * IDS_PER_SLOT;
                return Ok(Self {
                    uid: id,
                    gid: id,
                    privileged: true,
                    _slot: Some(file),
                });
            }
        }
        Err(std::io::Error::other(format!(
            "all {SLOTS} build uid slots in {} are in use",
            dir.display()
        )))
    }

    /// `/proc/PID/uid_map`, `setgroups`, `gid_map` contents.
    pub fn maps(&self) -> (String, Option<&'static str>, String) {
        (
            format!("{SANDBOX_UID} {} 1", self.uid),
            (!self.privileged).then_some("deny"),
            format!("{SANDBOX_GID} {} 1", self.gid),
        )
    }
}
