//! Verification and repair at the library level: modified contents, missing
//! paths, corrupt `.links` entries and garbage are found; repair swaps fresh
//! copies in and Nix's own `--verify --check-contents` agrees afterwards.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rix_formats::hash::HashAlgo;
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use rix_store::verify::{repair, verify_store, Fetched, PathSource, Problem, Quiet, VerifyOptions};
use rix_testutil::{nix, TempStore};

fn open(t: &TempStore) -> LocalStore {
    LocalStore::open(StoreLayout::from_url(&t.url()).unwrap()).unwrap()
}

fn add_tree(store: &LocalStore, dir: &Path, name: &str, contents: &str) -> StorePath {
    let src = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file"), contents).unwrap();
    std::fs::write(src.join("common"), "shared bytes\n").unwrap();
    store
        .add_path(&src, name, FileIngestionMethod::Recursive, HashAlgo::Sha256)
        .unwrap()
}

/// Fresh copies from NARs taken while the store was sound (a cache stand-in).
struct Nars(HashMap<StorePath, Vec<u8>>);

impl Nars {
    fn of(store: &LocalStore, paths: &[&StorePath]) -> Self {
        Self(
            paths
                .iter()
                .map(|p| {
                    let mut nar = Vec::new();
                    rix_store::archive::dump(&store.real_path(p), &mut nar).unwrap();
                    ((*p).clone(), nar)
                })
                .collect(),
        )
    }
}

impl PathSource for Nars {
    fn fetch(&self, info: &ValidPathInfo, dest: &Path) -> Result<Fetched, String> {
        let Some(nar) = self.0.get(&info.path) else {
            return Ok(Fetched::Unavailable);
        };
        rix_store::archive::restore(&nar[..], dest).map_err(|e| e.to_string())?;
        Ok(Fetched::Copy)
    }
}

fn scribble(file: &Path, text: &str) {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(file, text).unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
}

fn nix_verify_clean(t: &TempStore) {
    if let Some(nix_store) = nix("nix-store") {
        let out = Command::new(nix_store)
            .args(["--store", &t.url(), "--verify", "--check-contents"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            !stderr.contains("modified") && !stderr.contains("disappeared"),
            "{stderr}"
        );
    }
}

fn contents(_: VerifyOptions) -> VerifyOptions {
    VerifyOptions {
        check_contents: true,
    }
}

#[test]
fn a_modified_file_is_found_and_repaired() {
    let t = TempStore::new();
    let store = open(&t);
    let a = add_tree(&store, t.dir.path(), "a", "alpha\n");
    let b = add_tree(&store, t.dir.path(), "b", "beta\n");
    let nars = Nars::of(&store, &[&a, &b]);
    let clean = verify_store(&store, contents(VerifyOptions::default()), &Quiet).unwrap();
    assert!(clean.is_consistent(), "{:?}", clean.problems);
    assert_eq!(clean.checked, 2);

    scribble(&store.real_path(&a).join("sub/file"), "ALPHA\n");
    // Without hashing nothing is noticed.
    assert!(verify_store(&store, VerifyOptions::default(), &Quiet)
        .unwrap()
        .is_consistent());
    let report = verify_store(&store, contents(VerifyOptions::default()), &Quiet).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        matches!(&report.problems[0], Problem::Modified { store_path, .. } if *store_path == a)
    );
    assert!(report.problems[0]
        .to_string()
        .contains("was modified! expected hash 'sha256:"));

    let fixed = repair(&store, &report, Some(&nars), &Quiet).unwrap();
    assert_eq!(fixed.repaired, [store.print(&a)]);
    assert!(fixed.failed.is_empty(), "{:?}", fixed.failed);
    assert_eq!(
        std::fs::read_to_string(store.real_path(&a).join("sub/file")).unwrap(),
        "alpha\n"
    );
    assert!(
        verify_store(&store, contents(VerifyOptions::default()), &Quiet)
            .unwrap()
            .is_consistent()
    );
    // Nothing left behind in the store directory.
    let names: BTreeSet<String> = std::fs::read_dir(&store.layout().real_store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && n != ".links")
        .collect();
    assert_eq!(names, BTreeSet::from([a.to_string(), b.to_string()]));
    nix_verify_clean(&t);
}

#[test]
fn a_copy_with_the_wrong_hash_is_refused() {
    let t = TempStore::new();
    let store = open(&t);
    let a = add_tree(&store, t.dir.path(), "a", "alpha\n");
    let other = add_tree(&store, t.dir.path(), "other", "other\n");
    // A "cache" that serves other's contents for a.
    let mut nars = Nars::of(&store, &[&other]);
    let wrong = nars.0.remove(&other).unwrap();
    nars.0.insert(a.clone(), wrong);
    scribble(&store.real_path(&a).join("sub/file"), "ALPHA\n");
    let report = verify_store(&store, contents(VerifyOptions::default()), &Quiet).unwrap();
    let fixed = repair(&store, &report, Some(&nars), &Quiet).unwrap();
    assert!(fixed.repaired.is_empty());
    assert_eq!(fixed.failed.len(), 1);
    assert!(
        fixed.failed[0].contains("hash mismatch") || fixed.failed[0].contains("hash"),
        "{:?}",
        fixed.failed
    );
    // The damaged copy is still there (nothing half swapped).
    assert_eq!(
        std::fs::read_to_string(store.real_path(&a).join("sub/file")).unwrap(),
        "ALPHA\n"
    );
}

#[test]
fn missing_paths_and_garbage() {
    let t = TempStore::new();
    let store = open(&t);
    let lone = store.add_text("lone", b"lone\n", &BTreeSet::new()).unwrap();
    let dep = store.add_text("dep", b"dep\n", &BTreeSet::new()).unwrap();
    let user = store
        .add_text("user", b"user\n", &BTreeSet::from([dep.clone()]))
        .unwrap();
    let nars = Nars::of(&store, &[&dep]);
    std::fs::remove_file(store.real_path(&lone)).unwrap();
    std::fs::remove_file(store.real_path(&dep)).unwrap();
    let junk = store
        .layout()
        .real_store_dir
        .join(format!("{}-junk", "7".repeat(32)));
    std::fs::write(&junk, "j").unwrap();

    let report = verify_store(&store, VerifyOptions::default(), &Quiet).unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    let msgs: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m == &format!("path '{}' disappeared", store.print(&lone))),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains(&store.print(&dep)) && m.contains(&store.print(&user))),
        "{msgs:?}"
    );
    assert_eq!(
        report.garbage,
        [format!("{}/{}-junk", store.store_dir(), "7".repeat(32))]
    );

    // Repair: dep comes back from the source; lone (no source, no referrer)
    // leaves the database, as Nix's verify does.
    let fixed = repair(&store, &report, Some(&nars), &Quiet).unwrap();
    assert_eq!(fixed.repaired, [store.print(&dep)]);
    assert_eq!(fixed.invalidated, [store.print(&lone)]);
    assert!(!store.is_valid(&lone).unwrap());
    let after = verify_store(&store, contents(VerifyOptions::default()), &Quiet).unwrap();
    assert!(after.is_consistent(), "{:?}", after.problems);
    nix_verify_clean(&t);
}

#[test]
fn corrupt_links_are_found_and_removed() {
    let t = TempStore::new();
    let store = open(&t);
    let a = add_tree(&store, t.dir.path(), "a", "alpha\n");
    let b = add_tree(&store, t.dir.path(), "b", "beta\n");
    let nars = Nars::of(&store, &[&a, &b]);
    let stats =
        rix_store::optimise::optimise_store(&store, &rix_store::optimise::StderrWarnings).unwrap();
    assert_eq!(stats.files_linked, 1);
    // `common` is one inode for a, b and .links: scribbling on it damages all three.
    scribble(&store.real_path(&a).join("common"), "damaged\n");
    let report = verify_store(&store, contents(VerifyOptions::default()), &Quiet).unwrap();
    let links = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::CorruptLink { .. }))
        .count();
    assert_eq!(links, 1, "{:?}", report.problems);
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
    let fixed = repair(&store, &report, Some(&nars), &Quiet).unwrap();
    assert_eq!(fixed.removed_links.len(), 1);
    assert_eq!(fixed.repaired.len(), 2, "{:?}", fixed.failed);
    assert!(
        verify_store(&store, contents(VerifyOptions::default()), &Quiet)
            .unwrap()
            .is_consistent()
    );
    nix_verify_clean(&t);
}
