//! Optimisation: identical files share one inode through `.links` with Nix's
//! names, so that Nix's verifier is content and Nix's optimiser finds nothing
//! left to do; the collector then removes links nobody uses.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use rix_formats::hash::HashAlgo;
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::StorePath;
use rix_store::gc::{collect_garbage, GcAction, GcOptions, Quiet};
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::optimise::{optimise_store, StderrWarnings};
use rix_store::verify::{verify_store, VerifyOptions};
use rix_testutil::{nix, TempStore};

fn open(t: &TempStore) -> LocalStore {
    LocalStore::open(StoreLayout::from_url(&t.url()).unwrap()).unwrap()
}

/// A tree with a shared file, an executable with the same bytes (must stay
/// apart), a symlink, and a file unique to `name`.
fn add_tree(store: &LocalStore, dir: &Path, name: &str) -> StorePath {
    let src = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/shared"), "the same bytes\n".repeat(100)).unwrap();
    std::fs::write(src.join("exe"), "the same bytes\n".repeat(100)).unwrap();
    std::fs::set_permissions(src.join("exe"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/shared", src.join("link")).unwrap();
    std::fs::write(src.join("own"), name).unwrap();
    store
        .add_path(&src, name, FileIngestionMethod::Recursive, HashAlgo::Sha256)
        .unwrap()
}

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn identical_files_are_linked_and_nix_agrees() {
    let t = TempStore::new();
    let store = open(&t);
    let a = add_tree(&store, t.dir.path(), "a");
    let b = add_tree(&store, t.dir.path(), "b");
    let c = add_tree(&store, t.dir.path(), "c");
    // A top-level file with the shared bytes.
    let f = store
        .add_text(
            "f",
            "the same bytes\n".repeat(100).as_bytes(),
            &BTreeSet::new(),
        )
        .unwrap();
    let stats = optimise_store(&store, &StderrWarnings).unwrap();
    // Of a, b, c and f: shared ×4 → 3 linked, exe ×3 → 2, link ×3 → 2.
    assert_eq!(stats.files_linked, 7, "{stats:?}");
    assert_eq!(
        stats.bytes_freed,
        3 * 1500 + 2 * 1500 + 2 * "sub/shared".len() as u64
    );
    let layout = store.layout().clone();
    let r = |p: &StorePath, rel: &str| layout.real_path(p).join(rel);
    assert_eq!(ino(&r(&a, "sub/shared")), ino(&r(&b, "sub/shared")));
    assert_eq!(ino(&r(&a, "sub/shared")), ino(&store.real_path(&f)));
    assert_ne!(ino(&r(&a, "sub/shared")), ino(&r(&a, "exe")));
    assert_eq!(ino(&r(&a, "link")), ino(&r(&c, "link")));
    assert_ne!(ino(&r(&a, "own")), ino(&r(&b, "own")));
    // Directories stay canonical.
    let sub = std::fs::metadata(r(&a, "sub")).unwrap();
    assert_eq!((sub.mode() & 0o777, sub.mtime()), (0o555, 1));

    // A second run has nothing to do.
    assert_eq!(
        optimise_store(&store, &StderrWarnings)
            .unwrap()
            .files_linked,
        0
    );
    let report = verify_store(
        &store,
        VerifyOptions {
            check_contents: true,
        },
        &rix_store::verify::Quiet,
    )
    .unwrap();
    assert!(report.is_consistent(), "{:?}", report.problems);
    assert!(report.garbage.is_empty(), "{:?}", report.garbage);

    if let Some(nix_store) = nix("nix-store") {
        let run = |args: &[&str]| {
            let out = Command::new(&nix_store)
                .args(["--store", &t.url()])
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            stderr
        };
        let verify = run(&["--verify", "--check-contents"]);
        assert!(!verify.contains("modified"), "{verify}");
        // Every link is named by the file's NAR hash as nix-hash prints it.
        let links = store.layout().real_store_dir.join(".links");
        let nix_hash = nix("nix-hash").unwrap();
        for entry in std::fs::read_dir(&links).unwrap() {
            let entry = entry.unwrap();
            let out = Command::new(&nix_hash)
                .args(["--type", "sha256", "--base32"])
                .arg(entry.path())
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                entry.file_name().to_string_lossy()
            );
        }
        let names_before: BTreeSet<_> = std::fs::read_dir(&links)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let optimise = run(&["--optimise"]);
        let names_after: BTreeSet<_> = std::fs::read_dir(&links)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names_before, names_after);
        assert!(
            optimise.contains("0.00 MiB freed by hard-linking 0 files"),
            "{optimise}"
        );
    }

    // Collecting a and b keeps the links c and f still use; collecting
    // everything empties .links.
    drop(store);
    let store = open(&t);
    let links = store.layout().real_store_dir.join(".links");
    let count = || std::fs::read_dir(&links).unwrap().count();
    let before = count();
    collect_garbage(
        &store,
        &GcOptions::new(GcAction::DeleteSpecific(vec![a.clone(), b.clone()])),
        &Quiet,
    )
    .unwrap();
    // a's and b's own files were linked too (unique contents): those links go.
    assert_eq!(count(), before - 2);
    assert_eq!(
        std::fs::read_to_string(r(&c, "sub/shared")).unwrap(),
        "the same bytes\n".repeat(100)
    );
    let res = collect_garbage(&store, &GcOptions::new(GcAction::DeleteDead), &Quiet).unwrap();
    assert_eq!(count(), 0);
    assert!(res.links_saving.is_some());
}

#[test]
fn auto_optimise_links_as_paths_are_added() {
    let t = TempStore::new();
    let store = open(&t);
    store.set_auto_optimise(true);
    let a = add_tree(&store, t.dir.path(), "a");
    let b = add_tree(&store, t.dir.path(), "b");
    let r = |p: &StorePath, rel: &str| store.real_path(p).join(rel);
    assert_eq!(ino(&r(&a, "sub/shared")), ino(&r(&b, "sub/shared")));
    assert_eq!(ino(&r(&a, "exe")), ino(&r(&b, "exe")));
    assert_eq!(
        optimise_store(&store, &StderrWarnings)
            .unwrap()
            .files_linked,
        0
    );
    let report = verify_store(
        &store,
        VerifyOptions {
            check_contents: true,
        },
        &rix_store::verify::Quiet,
    )
    .unwrap();
    assert!(report.is_consistent(), "{:?}", report.problems);
}
