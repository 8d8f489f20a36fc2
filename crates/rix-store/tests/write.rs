//! The write protocol (`rix_store::write`): the path is a temporary root before
//! its lock file or temporary exists, whoever writes; a write that fails after
//! its temporary was made leaves nothing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rix_formats::hash::HashAlgo;
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use rix_testutil::TempStore;

fn open(t: &TempStore) -> LocalStore {
    LocalStore::open(StoreLayout::from_url(&t.url()).unwrap()).unwrap()
}

/// For each write that begins: the path, whether it was a temporary root of
/// this process, and whether its lock file or a temporary of it existed.
type Seen = Arc<Mutex<Vec<(StorePath, bool, bool)>>>;

fn watch(store: &LocalStore) -> Seen {
    let seen: Seen = Arc::default();
    let (layout, log) = (store.layout().clone(), seen.clone());
    store.observe_writes(move |path| {
        let roots = std::fs::read(layout.temproots_dir().join(std::process::id().to_string()))
            .unwrap_or_default();
        let printed = layout.print(path);
        let rooted = roots.split(|b| *b == 0).any(|r| r == printed.as_bytes());
        let made = std::fs::read_dir(&layout.real_store_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .any(|n| n.starts_with(path.hash_part()) && n != path.to_string());
        log.lock().unwrap().push((path.clone(), rooted, made));
    });
    seen
}

#[test]
fn every_write_is_a_temporary_root_before_its_lock_and_temporary_exist() {
    let t = TempStore::new();
    let store = open(&t);
    let seen = watch(&store);
    let text = store.add_text("t", b"T", &BTreeSet::new()).unwrap();
    let src = t.dir.path().join("src");
    std::fs::write(&src, "file").unwrap();
    let added = store
        .add_path(&src, "f", FileIngestionMethod::Recursive, HashAlgo::Sha256)
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(text, true, false), (added, true, false)],
        "(path, temporary root, lock or temporary already made)"
    );
}

#[test]
fn a_failed_commit_leaves_nothing() {
    let t = TempStore::new();
    let store = open(&t);
    let path = store
        .store_dir()
        .make_text_path("x", &HashAlgo::Sha256.digest(b"X"), [])
        .unwrap();
    let writer = store.begin_write(&path).unwrap().unwrap();
    std::fs::write(writer.tmp(), "X").unwrap();
    writer.canonicalise().unwrap();
    let (nar_hash, nar_size) =
        rix_store::archive::hash_path(writer.tmp(), HashAlgo::Sha256).unwrap();
    let mut info = ValidPathInfo::new(path.clone(), nar_hash, nar_size);
    // A reference that is not valid: registration fails after the rename.
    info.references.insert(
        store
            .store_dir()
            .make_text_path("missing", &HashAlgo::Sha256.digest(b"M"), [])
            .unwrap(),
    );
    let e = rix_store::write::commit(&store, vec![(writer, info)], false).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(!store.is_valid(&path).unwrap());
    let left: Vec<String> = std::fs::read_dir(&store.layout().real_store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(path.hash_part()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
