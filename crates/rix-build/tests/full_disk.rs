//! A builder that fills the disk: the error is the builder's (its own "No space
//! left on device" in the log's tail), not the log file's, which failed to be
//! written to the same full disk. Needs root (to mount a small tmpfs); skipped
//! otherwise.

mod common;

use std::process::Command;

use rix_build::{realise, BuildError, RealiseOptions};
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_blamed_on_the_output_not_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _mount = Mount(disk.clone());
    // The store and the logs on the small disk, the database beside it.
    let url = format!(
        "local?store={}/store&state={}/state&log={}/log",
        disk.display(),
        dir.path().display(),
        disk.display()
    );
    let store = LocalStore::open(StoreLayout::from_url(&url).unwrap()).unwrap();
    let fill = common::drv(
        &store,
        "fill",
        "echo starting; /usr/bin/head -c 2000000 /dev/urandom > $out; exit 1",
        &[],
        &["out"],
    );
    let opts = RealiseOptions {
        settings: rix_build::BuildSettings {
            sandbox: rix_build::sandbox::SandboxMode::Off,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = realise(
        &store,
        std::slice::from_ref(&fill),
        &opts,
        &common::Recorder::default(),
    )
    .unwrap();
    let (_, err) = &report.failed[0];
    let msg = err.to_string();
    assert!(matches!(err, BuildError::BuilderFailed { .. }), "{msg}");
    assert!(
        msg.contains("failed with exit code 1") && msg.contains("No space left on device"),
        "{msg}"
    );
    // The log could not be written either (it used to be the whole error): noted
    // after the builder's failure.
    assert!(
        msg.lines()
            .last()
            .unwrap()
            .starts_with("(and cannot write the build log '"),
        "{msg}"
    );
}
