//! Garbage collection at the library level: roots of every kind keep their
//! closures and nothing else, leftovers go, temporary roots of other processes
//! (added before or during a collection) are respected, `delete` refuses live
//! paths and says why, and `--print-dead/--print-live` agree with Nix's.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};

use rix_formats::derivation::{Derivation, DerivationOutput, DrvHash};
use rix_formats::hash::HashAlgo;
use rix_formats::StorePath;
use rix_store::gc::{collect_garbage, GcAction, GcObserver, GcOptions, Quiet};
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use rix_testutil::{nix, TempStore};

fn open(t: &TempStore) -> LocalStore {
    LocalStore::open(StoreLayout::from_url(&t.url()).unwrap()).unwrap()
}

fn text(store: &LocalStore, name: &str, refs: &[&StorePath]) -> StorePath {
    let refs: BTreeSet<StorePath> = refs.iter().map(|p| (*p).clone()).collect();
    let body: String = refs.iter().map(|r| store.print(r) + "\n").collect();
    store
        .add_text(name, format!("{name}\n{body}").as_bytes(), &refs)
        .unwrap()
}

fn gc(t: &TempStore, action: GcAction) -> Vec<String> {
    let store = open(t);
    collect_garbage(&store, &GcOptions::new(action), &Quiet)
        .unwrap()
        .paths
}

fn names(paths: &[String]) -> BTreeSet<String> {
    paths
        .iter()
        .map(|p| {
            p.rsplit('/')
                .next()
                .unwrap()
                .split_once('-')
                .unwrap()
                .1
                .to_owned()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn valid_names(t: &TempStore) -> BTreeSet<String> {
    let store = open(t);
    let all: Vec<String> = store
        .db()
        .all_valid_paths()
        .unwrap()
        .iter()
        .map(|p| store.print(p))
        .collect();
    names(&all)
}

/// a ← b ← c (c refers to b refers to a), d alone, e ← f.
struct Chain {
    a: StorePath,
    b: StorePath,
    c: StorePath,
    d: StorePath,
    e: StorePath,
    f: StorePath,
}

fn populate(t: &TempStore) -> Chain {
    let store = open(t);
    let a = text(&store, "a", &[]);
    let b = text(&store, "b", &[&a]);
    let c = text(&store, "c", &[&b]);
    let d = text(&store, "d", &[]);
    let e = text(&store, "e", &[]);
    let f = text(&store, "f", &[&e]);
    Chain { a, b, c, d, e, f }
}

#[test]
fn roots_keep_their_closures_and_everything_else_goes() {
    let t = TempStore::new();
    let ch = populate(&t);
    let layout = StoreLayout::from_url(&t.url()).unwrap();
    let real = |p: &StorePath| layout.real_path(p);
    // A direct root on b, an indirect root (gcroots/auto → result link) on d,
    // a profile generation on f, and a stale indirect root.
    std::os::unix::fs::symlink(real(&ch.b), layout.gcroots_dir().join("b-root")).unwrap();
    let result = t.dir.path().join("result");
    std::os::unix::fs::symlink(real(&ch.d), &result).unwrap();
    std::fs::create_dir_all(layout.gcroots_dir().join("auto")).unwrap();
    std::os::unix::fs::symlink(&result, layout.gcroots_dir().join("auto/xyz")).unwrap();
    std::os::unix::fs::symlink(
        t.dir.path().join("gone"),
        layout.gcroots_dir().join("auto/stale"),
    )
    .unwrap();
    std::os::unix::fs::symlink(real(&ch.f), layout.profiles_dir().join("default-1-link")).unwrap();
    std::os::unix::fs::symlink("default-1-link", layout.profiles_dir().join("default")).unwrap();

    assert_eq!(names(&gc(&t, GcAction::ReturnDead)), set(&["c"]));
    assert_eq!(
        names(&gc(&t, GcAction::ReturnLive)),
        set(&["a", "b", "d", "e", "f"])
    );
    // The stale auto root was removed, the live one kept.
    assert!(!layout.gcroots_dir().join("auto/stale").exists());
    assert!(layout.gcroots_dir().join("auto/xyz").exists());

    let deleted = gc(&t, GcAction::DeleteDead);
    assert_eq!(names(&deleted), set(&["c"]));
    assert!(!real(&ch.c).exists());
    assert_eq!(valid_names(&t), set(&["a", "b", "d", "e", "f"]));

    // Drop the result link: d goes; drop the direct root: b and a go.
    std::fs::remove_file(&result).unwrap();
    std::fs::remove_file(layout.gcroots_dir().join("b-root")).unwrap();
    assert_eq!(names(&gc(&t, GcAction::DeleteDead)), set(&["a", "b", "d"]));
    assert!(!layout.gcroots_dir().join("auto/xyz").exists());
    assert_eq!(valid_names(&t), set(&["e", "f"]));
    for p in [&ch.a, &ch.b, &ch.d] {
        assert!(!real(p).exists());
    }
    assert!(real(&ch.e).exists() && real(&ch.f).exists());
}

#[test]
fn leftovers_and_stale_temporaries_are_deleted() {
    let t = TempStore::new();
    let ch = populate(&t);
    let layout = StoreLayout::from_url(&t.url()).unwrap();
    std::os::unix::fs::symlink(layout.real_path(&ch.c), layout.gcroots_dir().join("c")).unwrap();
    let dir = &layout.real_store_dir;
    // An invalid path (killed writer), a stale temporary of a dead process, the
    // lock file of an invalid path, junk; and a temporary of a live process.
    let invalid = format!("{}-leftover", "1".repeat(32));
    std::fs::create_dir_all(dir.join(&invalid).join("sub")).unwrap();
    std::fs::write(dir.join(&invalid).join("sub/x"), "x").unwrap();
    rix_store::canonicalise::canonicalise(&dir.join(&invalid)).unwrap();
    std::fs::write(
        dir.join(format!(".rix-tmp-999999999-0-{}", "2".repeat(32))),
        "x",
    )
    .unwrap();
    std::fs::write(dir.join(format!("{}-x.lock", "3".repeat(32))), "").unwrap();
    std::fs::write(dir.join("junk"), "j").unwrap();
    let live_tmp = format!(".rix-tmp-{}-0-{}", std::process::id(), "4".repeat(32));
    std::fs::write(dir.join(&live_tmp), "x").unwrap();

    let dead = gc(&t, GcAction::ReturnDead);
    assert!(dead.iter().any(|p| p.ends_with(&invalid)), "{dead:?}");
    assert!(!dead.iter().any(|p| p.ends_with(&live_tmp)), "{dead:?}");
    let store = open(&t);
    let res = collect_garbage(&store, &GcOptions::new(GcAction::DeleteDead), &Quiet).unwrap();
    // 4 invalid entries, and d, e, f.
    assert_eq!(res.paths.len(), 7, "{:?}", res.paths);
    assert!(res.bytes_freed >= 3 + 6, "{}", res.bytes_freed);
    let left: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = [&ch.a, &ch.b, &ch.c]
        .iter()
        .map(|p| p.to_string())
        .chain([live_tmp.clone()])
        .collect();
    assert_eq!(left, expected);
}

#[test]
fn keep_derivations_and_keep_outputs() {
    let t = TempStore::new();
    let layout = StoreLayout::from_url(&t.url()).unwrap();
    let (drv, out, src) = {
        let store = open(&t);
        let src = text(&store, "src", &[]);
        let mut d = Derivation {
            name: "x".into(),
            outputs: [("out".to_owned(), DerivationOutput::Deferred)].into(),
            input_srcs: [src.clone()].into(),
            system: b"x86_64-linux".to_vec(),
            builder: b"/bin/sh".to_vec(),
            // Empty, as the evaluator makes it before filling in the path.
            env: [(b"out".to_vec(), Vec::new())].into(),
            ..Default::default()
        };
        d.fill_in_output_paths(store.store_dir(), |_: &StorePath| {
            Err::<DrvHash, _>("no input derivations")
        })
        .unwrap();
        // The store records the derivation's output (`DerivationOutputs`).
        let drv = store.add_derivation(&d).unwrap();
        let out = d.declared_output_paths(store.store_dir()).unwrap()["out"]
            .clone()
            .unwrap();
        // An output built from drv, registered with its deriver.
        std::fs::write(store.real_path(&out), "out").unwrap();
        let (h, n) =
            rix_store::archive::hash_path(&store.real_path(&out), HashAlgo::Sha256).unwrap();
        let mut info = ValidPathInfo::new(out.clone(), h, n);
        info.deriver = Some(drv.clone());
        store.register(&[info]).unwrap();
        (drv, out, src)
    };
    let run = |keep_outputs: bool, keep_derivations: bool, action: GcAction| {
        let store = open(&t);
        let mut o = GcOptions::new(action);
        o.keep_outputs = keep_outputs;
        o.keep_derivations = keep_derivations;
        names(&collect_garbage(&store, &o, &Quiet).unwrap().paths)
    };
    // Rooting the output keeps its deriver (and the deriver's closure) only with keep-derivations.
    let root = layout.gcroots_dir().join("r");
    std::os::unix::fs::symlink(layout.real_path(&out), &root).unwrap();
    assert_eq!(run(false, true, GcAction::ReturnDead), set(&[]));
    assert_eq!(
        run(false, false, GcAction::ReturnDead),
        set(&["x.drv", "src"])
    );
    // Rooting the derivation keeps its output only with keep-outputs.
    std::fs::remove_file(&root).unwrap();
    std::os::unix::fs::symlink(layout.real_path(&drv), &root).unwrap();
    assert_eq!(run(false, true, GcAction::ReturnDead), set(&["x"]));
    assert_eq!(run(true, true, GcAction::ReturnDead), set(&[]));
    // Deleting the derivation alone is refused with keep-derivations while the
    // output is there, and says why.
    std::fs::remove_file(&root).unwrap();
    let store = open(&t);
    let err = collect_garbage(
        &store,
        &GcOptions::new(GcAction::DeleteSpecific(vec![drv.clone()])),
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("was built by it (keep-derivations)"), "{err}");
    let _ = src;
}

#[test]
fn delete_refuses_live_and_referenced_paths() {
    let t = TempStore::new();
    let ch = populate(&t);
    let layout = StoreLayout::from_url(&t.url()).unwrap();
    std::os::unix::fs::symlink(layout.real_path(&ch.c), layout.gcroots_dir().join("croot"))
        .unwrap();
    let store = open(&t);
    let delete = |paths: Vec<StorePath>| {
        collect_garbage(
            &store,
            &GcOptions::new(GcAction::DeleteSpecific(paths)),
            &Quiet,
        )
    };
    let err = delete(vec![ch.a.clone()]).unwrap_err().to_string();
    assert!(err.contains("still alive"), "{err}");
    assert!(err.contains("croot"), "{err}");
    assert!(err.contains(&store.print(&ch.b)), "{err}");
    // f is dead but e is referenced by it.
    let err = delete(vec![ch.e.clone()]).unwrap_err().to_string();
    assert!(
        err.contains(&format!("it is referenced by '{}'", store.print(&ch.f))),
        "{err}"
    );
    assert!(store.is_valid(&ch.e).unwrap());
    // Both together can go; d alone can.
    let res = delete(vec![ch.e.clone(), ch.f.clone(), ch.d.clone()]).unwrap();
    assert_eq!(names(&res.paths), set(&["d", "e", "f"]));
    // Referrer first.
    let pos = |p: &StorePath| res.paths.iter().position(|x| *x == store.print(p)).unwrap();
    assert!(pos(&ch.f) < pos(&ch.e));
    assert!(!store.is_valid(&ch.e).unwrap());
    assert!(store.is_valid(&ch.a).unwrap());
}

#[test]
fn max_freed_stops_early() {
    let t = TempStore::new();
    {
        let store = open(&t);
        for i in 0..50 {
            store
                .add_text(&format!("t{i}"), &vec![b'x'; 1000], &BTreeSet::new())
                .unwrap();
        }
    }
    let store = open(&t);
    let mut o = GcOptions::new(GcAction::DeleteDead);
    o.max_freed = 4500;
    let res = collect_garbage(&store, &o, &Quiet).unwrap();
    assert!(res.bytes_freed > 4500, "{}", res.bytes_freed);
    assert!(
        res.paths.len() < 50 && res.paths.len() >= 5,
        "{}",
        res.paths.len()
    );
    assert_eq!(
        store.db().all_valid_paths().unwrap().len(),
        50 - res.paths.len()
    );
}

/// The helper process of the temporary-root tests: opens the store given in
/// `RIX_GC_HELPER_STORE`, makes the path on its first line of input a temporary
/// root, says `ready`, and lives until its stdin closes. (The path does not go
/// through the environment, where the collector would find it as a runtime root.)
#[test]
fn temp_root_helper() {
    let Ok(url) = std::env::var("RIX_GC_HELPER_STORE") else {
        return;
    };
    let mut stdin = std::io::stdin().lock();
    let mut path = String::new();
    stdin.read_line(&mut path).unwrap();
    let store = LocalStore::open(StoreLayout::from_url(&url).unwrap()).unwrap();
    let p = store.parse_path(path.trim()).unwrap();
    store.add_temp_root(&p).unwrap();
    println!("rix-gc-helper-ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = stdin.read_line(&mut line);
}

struct Helper {
    child: std::process::Child,
}

impl Helper {
    /// Starts the helper; the receiver gets a message once the root is added.
    fn spawn(t: &TempStore, path: &str) -> (Self, std::sync::mpsc::Receiver<()>) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "temp_root_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RIX_GC_HELPER_STORE", t.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap(), "{path}").unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end: the helper's test harness still prints after.
            for line in BufReader::new(stdout).lines() {
                if line.unwrap().contains("rix-gc-helper-ready") {
                    let _ = tx.send(());
                }
            }
        });
        (Self { child }, ready)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn temporary_roots_of_live_processes_survive_and_dead_ones_do_not() {
    let t = TempStore::new();
    let ch = populate(&t);
    let store = open(&t);
    let c = store.print(&ch.c);
    drop(store);
    let (helper, ready) = Helper::spawn(&t, &c);
    ready.recv().expect("the helper added its root");
    // c and its closure are a live process's temporary roots.
    assert_eq!(names(&gc(&t, GcAction::DeleteDead)), set(&["d", "e", "f"]));
    assert_eq!(valid_names(&t), set(&["a", "b", "c"]));
    drop(helper);
    // The process is gone: its roots file is stale and its paths are garbage.
    assert_eq!(names(&gc(&t, GcAction::DeleteDead)), set(&["a", "b", "c"]));
    let layout = StoreLayout::from_url(&t.url()).unwrap();
    assert_eq!(
        std::fs::read_dir(layout.temproots_dir()).unwrap().count(),
        0
    );
}

/// Pauses the collector after it has found its roots (at "deleting garbage...")
/// until released.
struct Pause {
    state: Arc<(Mutex<(bool, bool)>, Condvar)>,
}

impl GcObserver for Pause {
    fn info(&self, message: &str) {
        if message == "deleting garbage..." {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().unwrap();
            s.0 = true;
            cv.notify_all();
            while !s.1 {
                s = cv.wait(s).unwrap();
            }
        }
    }
}

#[test]
fn a_root_added_during_a_collection_is_kept() {
    let t = TempStore::new();
    let ch = populate(&t);
    let c = open(&t).print(&ch.c);
    let state = Arc::new((Mutex::new((false, false)), Condvar::new()));
    let collector = {
        let (url, state) = (t.url(), state.clone());
        std::thread::spawn(move || {
            let store = LocalStore::open(StoreLayout::from_url(&url).unwrap()).unwrap();
            collect_garbage(
                &store,
                &GcOptions::new(GcAction::DeleteDead),
                &Pause { state },
            )
            .unwrap()
            .paths
        })
    };
    {
        let (lock, cv) = &*state;
        let mut s = lock.lock().unwrap();
        while !s.0 {
            s = cv.wait(s).unwrap();
        }
    }
    // The collector holds the GC lock and has decided c is dead: the helper
    // must hand its root over the collector's socket.
    let (helper, ready) = Helper::spawn(&t, &c);
    ready.recv().expect("the helper added its root");
    {
        let (lock, cv) = &*state;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
    let deleted = collector.join().unwrap();
    assert_eq!(names(&deleted), set(&["d", "e", "f"]));
    assert_eq!(valid_names(&t), set(&["a", "b", "c"]));
    drop(helper);
}

#[test]
fn print_dead_and_live_agree_with_nix() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let ch = populate(&t);
    let layout = StoreLayout::from_url(&t.url()).unwrap();
    std::os::unix::fs::symlink(layout.real_path(&ch.b), layout.gcroots_dir().join("b")).unwrap();
    let result = t.dir.path().join("result");
    std::os::unix::fs::symlink(layout.real_path(&ch.f), &result).unwrap();
    std::fs::create_dir_all(layout.gcroots_dir().join("auto")).unwrap();
    std::os::unix::fs::symlink(&result, layout.gcroots_dir().join("auto/r")).unwrap();
    // An invalid leftover named like a store path.
    std::fs::write(
        layout
            .real_store_dir
            .join(format!("{}-leftover", "5".repeat(32))),
        "x",
    )
    .unwrap();
    let sorted = |v: Vec<String>| -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().filter(|l| !l.is_empty()).collect();
        v.sort();
        v
    };
    let lines = |s: String| s.lines().map(str::to_owned).collect::<Vec<_>>();
    let rix_dead = sorted(gc(&t, GcAction::ReturnDead));
    let rix_live = sorted(gc(&t, GcAction::ReturnLive));
    let nix_dead = sorted(lines(t.run_nix(&nix_store, &["--gc", "--print-dead"])));
    let nix_live = sorted(lines(t.run_nix(&nix_store, &["--gc", "--print-live"])));
    assert_eq!(rix_dead, nix_dead);
    assert_eq!(rix_live, nix_live);
    assert_eq!(names(&rix_dead), set(&["c", "d", "leftover"]));
    let _ = Path::new("");
}

#[test]
fn nix_waits_for_a_running_rix_collection() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    populate(&t);
    let state = Arc::new((Mutex::new((false, false)), Condvar::new()));
    let collector = {
        let (url, state) = (t.url(), state.clone());
        std::thread::spawn(move || {
            let store = LocalStore::open(StoreLayout::from_url(&url).unwrap()).unwrap();
            collect_garbage(
                &store,
                &GcOptions::new(GcAction::DeleteDead),
                &Pause { state },
            )
            .unwrap()
            .paths
        })
    };
    {
        let (lock, cv) = &*state;
        let mut s = lock.lock().unwrap();
        while !s.0 {
            s = cv.wait(s).unwrap();
        }
    }
    // rix holds the GC lock: Nix's collector must wait for it.
    let mut nix_gc = Command::new(&nix_store)
        .args(["--store", &t.url(), "--gc"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        nix_gc.try_wait().unwrap().is_none(),
        "Nix collected while rix was collecting"
    );
    {
        let (lock, cv) = &*state;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
    assert_eq!(collector.join().unwrap().len(), 6);
    let out = nix_gc.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("waiting for the big garbage collector lock"),
        "{err}"
    );
}

/// Temporaries of paths being written (a tree, a file, a symlink to a
/// directory: whatever a NAR, an added path or a build can be) survive a
/// concurrent collection by the real `nix-store --gc` and by rix, because
/// they are named with the hash part of a temporary root; a dead process's
/// temporary goes.
#[test]
fn temporaries_survive_concurrent_collections_of_nix_and_rix() {
    let t = TempStore::new();
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let store = open(&t);
    let path = |name: &str| {
        store
            .store_dir()
            .make_text_path(
                name,
                &HashAlgo::Sha256.digest(name.as_bytes()),
                &BTreeSet::new(),
            )
            .unwrap()
    };
    // As LocalStore::add_atomically, substitution and repair do: temporary root
    // (inside temp_path), then the temporary name.
    let tree = store.temp_path(&path("tree"));
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/file"), "contents").unwrap();
    let file = store.temp_path(&path("file"));
    std::fs::write(&file, "contents").unwrap();
    let link = store.temp_path(&path("link"));
    std::os::unix::fs::symlink("/", &link).unwrap();
    for p in [&tree, &file, &link] {
        rix_store::canonicalise::canonicalise(p).unwrap();
    }
    let dir = store.layout().real_store_dir.clone();
    let stale = dir.join(format!("{}-rix-tmp-999999999-0", path("gone").hash_part()));
    std::fs::write(&stale, "left by a killed process").unwrap();

    let out = std::process::Command::new(&nix_store)
        .args(["--store", &t.url(), "--gc"])
        .env("NIX_CONFIG", "experimental-features = nix-command")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for p in [&tree, &file, &link] {
        assert!(
            p.symlink_metadata().is_ok(),
            "Nix deleted {}: {err}",
            p.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(tree.join("sub/file")).unwrap(),
        "contents"
    );
    assert!(!stale.exists(), "{err}");

    collect_garbage(&store, &GcOptions::new(GcAction::DeleteDead), &Quiet).unwrap();
    for p in [&tree, &file, &link] {
        assert!(p.symlink_metadata().is_ok(), "rix deleted {}", p.display());
    }
    // And they are not garbage for the verifier while this process lives.
    let report = rix_store::verify::verify_store(
        &store,
        rix_store::verify::VerifyOptions::default(),
        &rix_store::verify::Quiet,
    )
    .unwrap();
    assert!(report.garbage.is_empty(), "{:?}", report.garbage);
}
