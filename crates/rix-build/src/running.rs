//! The process groups of running builders, so that all of them can be killed at
//! once (Ctrl-C, or the first failure without `--keep-going`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

static RUNNING: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Deregisters a process group when dropped.
pub struct Registration(i32);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(set) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Records a running builder's process group.
pub fn register(pgid: i32) -> Registration {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(pgid);
    Registration(pgid)
}

/// Kills one process group (ignoring a group that is already gone).
pub fn kill_group(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

/// Kills every running builder and makes new ones fail as cancelled.
pub fn cancel_all() {
    CANCELLED.store(true, Ordering::SeqCst);
    if let Some(set) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        for &pgid in set {
            kill_group(pgid);
        }
    }
}

/// Whether any builder is running now.
pub fn any_running() -> bool {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| !s.is_empty())
}

/// Whether [`cancel_all`] was called.
pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}
