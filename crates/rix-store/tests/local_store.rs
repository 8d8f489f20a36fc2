//! The local store against real Nix: a store rix writes is one Nix accepts, and
//! the other way round.

use std::collections::BTreeSet;
use std::path::Path;

use rix_formats::hash::HashAlgo;
use rix_formats::store_path::FileIngestionMethod;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_testutil::{nix, TempStore};

fn open(t: &TempStore) -> LocalStore {
    LocalStore::open(StoreLayout::from_url(&t.url()).unwrap()).unwrap()
}

fn write_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/file"), "hello\n").unwrap();
    std::fs::write(dir.join("exe"), "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("exe"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/file", dir.join("link")).unwrap();
}

#[test]
fn add_is_idempotent_and_survives_reopen() {
    let t = TempStore::new();
    let src = t.dir.path().join("src");
    write_tree(&src);
    let store = open(&t);
    let p = store
        .add_path(
            &src,
            "tree",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
        )
        .unwrap();
    assert_eq!(
        p,
        store
            .add_path(
                &src,
                "tree",
                FileIngestionMethod::Recursive,
                HashAlgo::Sha256
            )
            .unwrap()
    );
    drop(store);
    let store = open(&t);
    let info = store.path_info(&p).unwrap();
    assert_eq!(
        info.nar_hash,
        rix_store::archive::hash_path(&src, HashAlgo::Sha256)
            .unwrap()
            .0
    );
    let text = store
        .add_text(
            "hello.txt",
            b"references tree",
            &BTreeSet::from([p.clone()]),
        )
        .unwrap();
    assert_eq!(
        store.closure([text.clone()]).unwrap(),
        BTreeSet::from([p.clone(), text.clone()])
    );
    assert_eq!(store.db().referrers(&p).unwrap(), BTreeSet::from([text]));
}

#[test]
fn nix_accepts_what_rix_wrote() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let src = t.dir.path().join("src");
    write_tree(&src);
    let store = open(&t);
    let tree = store
        .add_path(
            &src,
            "src",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
        )
        .unwrap();
    let flat = store
        .add_path(
            &src.join("sub/file"),
            "file",
            FileIngestionMethod::Flat,
            HashAlgo::Sha1,
        )
        .unwrap();
    let text = store
        .add_text("t", b"x", &BTreeSet::from([tree.clone()]))
        .unwrap();
    drop(store);
    // Nix computes the same paths for the same inputs...
    let nix_tree = t.run_nix(&nix_store, &["--add", src.to_str().unwrap()]);
    let tree_printed = format!("{}/{}", t.store_dir().display(), tree);
    assert_eq!(nix_tree.trim(), tree_printed);
    let nix_flat = t.run_nix(
        &nix_store,
        &[
            "--add-fixed",
            "sha1",
            src.join("sub/file").to_str().unwrap(),
        ],
    );
    assert_eq!(
        nix_flat.trim(),
        format!("{}/{}", t.store_dir().display(), flat)
    );
    // ...and finds rix's store consistent, closure included.
    t.run_nix(&nix_store, &["--verify", "--check-contents"]);
    let text_printed = format!("{}/{}", t.store_dir().display(), text);
    let closure = t.run_nix(&nix_store, &["-qR", &text_printed]);
    let mut got: Vec<&str> = closure.lines().collect();
    got.sort();
    let mut want = vec![tree_printed.as_str(), text_printed.as_str()];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn rix_reads_what_nix_wrote() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let src = t.dir.path().join("hello.txt");
    std::fs::write(&src, "hi\n").unwrap();
    let printed = t.run_nix(&nix_store, &["--add", src.to_str().unwrap()]);
    let store = open(&t);
    let p = store.parse_path(printed.trim()).unwrap();
    let info = store.path_info(&p).unwrap();
    assert_eq!(
        info.nar_hash,
        rix_store::archive::hash_path(&store.real_path(&p), HashAlgo::Sha256)
            .unwrap()
            .0
    );
    assert!(info.ca.is_some());
    // rix adds the same file to the same, already valid path.
    assert_eq!(
        store
            .add_path(
                &src,
                "hello.txt",
                FileIngestionMethod::Recursive,
                HashAlgo::Sha256
            )
            .unwrap(),
        p
    );
}

#[test]
fn read_only_db_finds_paths_by_hash_part_and_never_writes() {
    use rix_store::db::Db;
    let t = TempStore::new();
    let store = open(&t);
    let a = store.add_text("a", b"A", &BTreeSet::new()).unwrap();
    let b = store.add_text("b", b"B", &BTreeSet::new()).unwrap();
    let layout = store.layout().clone();
    drop(store);

    let mut db = Db::open_read_only(&layout.db_dir(), layout.store_dir.clone()).unwrap();
    for p in [&a, &b] {
        assert_eq!(
            db.query_path_from_hash_part(p.hash_part())
                .unwrap()
                .as_ref(),
            Some(p)
        );
    }
    // The first path after an unknown hash part is not its match.
    assert_eq!(
        db.query_path_from_hash_part("00000000000000000000000000000000")
            .unwrap(),
        None
    );
    // Writes through the connection fail, and nothing changed.
    assert!(db.invalidate(&a).is_err());
    drop(db);
    assert!(open(&t).is_valid(&a).unwrap());

    // No database: an error, and nothing is created.
    let empty = tempfile::tempdir().unwrap();
    assert!(Db::open_read_only(empty.path(), layout.store_dir.clone()).is_err());
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}
