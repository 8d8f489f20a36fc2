//! A full disk: adding fails with a clear error, nothing is registered, and no
//! temporary file is left behind. Needs root (to mount a small tmpfs); skipped
//! otherwise.

use std::process::Command;

use rix_formats::hash::HashAlgo;
use rix_formats::store_path::FileIngestionMethod;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn add_to_a_full_store_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&store_dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _mount = Mount(store_dir.clone());
    let d = dir.path().display();
    let url = format!("local?store={d}/store&state={d}/state&log={d}/log");
    let store = LocalStore::open(StoreLayout::from_url(&url).unwrap()).unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![7u8; 1 << 20]).unwrap();
    let err = store
        .add_path(
            &big,
            "big",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(store.db().all_valid_paths().unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(&store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The store still works for what fits.
    let small = dir.path().join("small");
    std::fs::write(&small, "ok").unwrap();
    let p = store
        .add_path(
            &small,
            "small",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
        )
        .unwrap();
    assert!(store.is_valid(&p).unwrap());
}
