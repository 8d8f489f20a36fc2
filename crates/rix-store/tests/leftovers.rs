//! Temporaries that a killed writer leaves (`<hash>-rix-tmp-<pid>-<n>`): the
//! next writer of their path removes them, never a live writer's, and
//! `verify` reports the remaining ones as leftovers, not as damage.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command};

use rix_formats::hash::HashAlgo;
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::local_store::{temp_name, LocalStore};
use rix_store::verify::{verify_store, Quiet, VerifyOptions};
use rix_testutil::TempStore;

fn open(t: &TempStore) -> LocalStore {
    LocalStore::open(StoreLayout::from_url(&t.url()).unwrap()).unwrap()
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c.id()
}

struct Alive(Child);

impl Drop for Alive {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alive() -> Alive {
    Alive(Command::new("sleep").arg("600").spawn().unwrap())
}

/// `<hash of path>-rix-tmp-<pid>-<n>`, as a directory with a file in it, and
/// the path's lock file, as a writer that was killed leaves them.
fn leftover(store: &LocalStore, path: &StorePath, pid: u32) -> PathBuf {
    let mut lock = store.real_path(path).into_os_string();
    lock.push(".lock");
    std::fs::write(lock, "").unwrap();
    let name =
        temp_name(path, 7).replace(&format!("-{}-", std::process::id()), &format!("-{pid}-"));
    let dir = store.layout().real_store_dir.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("half"), "written").unwrap();
    dir
}

fn text_path(store: &LocalStore, name: &str, contents: &[u8]) -> StorePath {
    store
        .store_dir()
        .make_text_path(name, &HashAlgo::Sha256.digest(contents), [])
        .unwrap()
}

#[test]
fn the_next_writer_of_a_path_removes_its_dead_temporaries_only() {
    let t = TempStore::new();
    let store = open(&t);
    let x = text_path(&store, "x", b"X");
    let y = text_path(&store, "y", b"Y");
    let live = alive();
    let dead_x = leftover(&store, &x, dead_pid());
    let live_x = leftover(&store, &x, live.0.id());
    let dead_y = leftover(&store, &y, dead_pid());
    assert_eq!(store.add_text("x", b"X", &BTreeSet::new()).unwrap(), x);
    assert!(!dead_x.exists(), "the killed writer's temporary stays");
    assert!(live_x.exists(), "a live writer's temporary was removed");
    assert!(dead_y.exists(), "only the writer of its path removes it");
}

/// Without a lock file left behind no writer died mid-write: the store
/// directory is not listed (a temporary with a dead pid but no lock file stays
/// for the collector).
#[test]
fn writers_look_for_dead_temporaries_only_after_a_failure() {
    let t = TempStore::new();
    let store = open(&t);
    let x = text_path(&store, "x", b"X");
    let dead_x = leftover(&store, &x, dead_pid());
    let mut lock = store.real_path(&x).into_os_string();
    lock.push(".lock");
    std::fs::remove_file(lock).unwrap();
    assert_eq!(store.add_text("x", b"X", &BTreeSet::new()).unwrap(), x);
    assert!(dead_x.exists());
}

#[test]
fn verify_reports_dead_temporaries_as_leftovers() {
    let t = TempStore::new();
    let store = open(&t);
    let x = text_path(&store, "x", b"X");
    let live = alive();
    let dead = leftover(&store, &x, dead_pid());
    leftover(&store, &x, live.0.id());
    let report = verify_store(&store, VerifyOptions::default(), &Quiet).unwrap();
    let name = dead.file_name().unwrap().to_string_lossy();
    let printed = format!("{}/{name}", store.layout().store_dir);
    assert_eq!(report.leftovers, vec![printed]);
    assert!(report.garbage.is_empty(), "{:?}", report.garbage);
    assert!(report.is_consistent());
}
