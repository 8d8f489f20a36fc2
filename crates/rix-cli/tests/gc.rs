//! `rix store gc|delete|roots|optimise` against Nix on stores built by both: the
//! same dead and live sets, result links as roots, builds running in another
//! process (rix's or Nix's) surviving a concurrent collection of either tool,
//! and `kill -9` in the middle of a collection leaving a consistent store.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod rixcmd;
use rixcmd::{nix, ok_str as ok, TempStore};

const NIX_CONFIG: &str = "experimental-features = nix-command\nsandbox = false\nsubstituters =";

fn rix_cmd(t: &TempStore) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rix"));
    c.arg("--store")
        .arg(t.url())
        .args(["--option", "sandbox", "false"])
        .args(["--option", "substituters", ""]);
    c
}

fn rix(t: &TempStore, args: &[&str]) -> Output {
    rix_cmd(t).args(args).output().expect("run rix")
}

fn nix_cmd(t: &TempStore, tool: &Path) -> Command {
    let mut c = Command::new(tool);
    c.arg("--store").arg(t.url()).env("NIX_CONFIG", NIX_CONFIG);
    c
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `sleep` seconds in `slow`; `slow` depends on `dep`; `other` is unrelated.
const DAG: &str = r#"
{ sleep ? "0", salt ? "" }:
let
  mk = name: deps: script: derivation {
    inherit name salt;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "${script}; echo ${name} ${toString deps} > $out" ];
  };
  dep = mk "dep" [ ] "true";
  slow = mk "slow" [ dep ] "/bin/sleep ${sleep}";
  other = mk "other" [ ] "true";
in { inherit dep slow other; }
"#;

/// Instantiates the DAG with real Nix; returns attribute → .drv path.
fn instantiate(t: &TempStore, sleep: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let inst = nix("nix-instantiate")?;
    let file = t.dir.path().join("dag.nix");
    std::fs::write(&file, DAG).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for attr in ["dep", "slow", "other"] {
        let drv = ok(nix_cmd(t, &inst)
            .arg(&file)
            .args(["-A", attr, "--argstr", "sleep", sleep])
            .output()
            .unwrap());
        out.insert(attr.to_owned(), drv.trim().to_owned());
    }
    Some(out)
}

/// Whether `path` is valid, asked of Nix (the oracle).
fn valid(t: &TempStore, path: &str) -> bool {
    let nix_store = nix("nix-store").unwrap();
    nix_cmd(t, &nix_store)
        .args(["--check-validity", path])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn result_links_are_roots_and_dead_sets_agree_with_nix() {
    let t = TempStore::new();
    let Some(drvs) = instantiate(&t, "0") else {
        return;
    };
    let nix_store = nix("nix-store").unwrap();
    let result = t.dir.path().join("result");
    let slow_out = ok(rix(
        &t,
        &[
            "build",
            &drvs["slow"],
            "-o",
            result.to_str().unwrap(),
            "--print-out-paths",
        ],
    ));
    let other_out = ok(rix(
        &t,
        &["build", &drvs["other"], "--no-link", "--print-out-paths"],
    ));
    let slow_out = slow_out.trim();
    let other_out = other_out.trim();

    // The result link is an indirect root.
    let roots = ok(rix(&t, &["store", "roots"]));
    assert!(
        roots.contains(&format!("{} -> {slow_out}", result.display())),
        "{roots}"
    );
    let nix_roots = ok(nix_cmd(&t, &nix_store)
        .args(["--gc", "--print-roots"])
        .output()
        .unwrap());
    assert_eq!(lines(&roots), lines(&nix_roots));

    // Differential: the same dead and live paths as Nix.
    let rix_dead = ok(rix(&t, &["store", "gc", "--print-dead"]));
    let rix_live = ok(rix(&t, &["store", "gc", "--print-live"]));
    let nix_dead = ok(nix_cmd(&t, &nix_store)
        .args(["--gc", "--print-dead"])
        .output()
        .unwrap());
    let nix_live = ok(nix_cmd(&t, &nix_store)
        .args(["--gc", "--print-live"])
        .output()
        .unwrap());
    assert_eq!(lines(&rix_dead), lines(&nix_dead));
    assert_eq!(lines(&rix_live), lines(&nix_live));
    assert!(lines(&rix_dead).contains(other_out));
    assert!(lines(&rix_live).contains(slow_out));
    assert!(lines(&rix_live).contains(&drvs["dep"]), "keep-derivations");

    let gc = rix(&t, &["store", "gc"]);
    let stdout = ok(gc);
    let summary = stdout.trim();
    let expected = format!("{} store paths deleted, ", lines(&rix_dead).len());
    assert!(
        summary.starts_with(&expected) && summary.ends_with(" MiB freed"),
        "{summary}"
    );
    assert!(!valid(&t, other_out));
    assert!(valid(&t, slow_out));
    // Nothing dead is left, for either tool.
    assert_eq!(ok(rix(&t, &["store", "gc", "--print-dead"])), "");
    assert_eq!(
        ok(nix_cmd(&t, &nix_store)
            .args(["--gc", "--print-dead"])
            .output()
            .unwrap()),
        ""
    );

    // delete refuses a live path, naming the root.
    let refused = rix(&t, &["store", "delete", &drvs["dep"]]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("still alive") && err.contains("result"),
        "{err}"
    );
    // Without the link everything goes.
    std::fs::remove_file(&result).unwrap();
    ok(rix(&t, &["store", "gc"]));
    assert!(!valid(&t, slow_out));
    assert!(!valid(&t, &drvs["slow"]));
}

fn out_path(t: &TempStore, drv: &str) -> String {
    // The output path, from the derivation (as rix prints it).
    let json = ok(rix(t, &["derivation", "show", drv]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[drv]["outputs"]["out"]["path"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn wait_ok(child: Child) -> String {
    ok(child.wait_with_output().unwrap())
}

#[test]
fn a_running_rix_build_survives_concurrent_collections() {
    let t = TempStore::new();
    let Some(drvs) = instantiate(&t, "3") else {
        return;
    };
    let nix_store = nix("nix-store").unwrap();
    // dep is built and dead (no root) before slow starts.
    let dep_out = ok(rix(
        &t,
        &["build", &drvs["dep"], "--no-link", "--print-out-paths"],
    ));
    let dep_out = dep_out.trim().to_owned();
    let other_out = ok(rix(
        &t,
        &["build", &drvs["other"], "--no-link", "--print-out-paths"],
    ));
    let slow_out = out_path(&t, &drvs["slow"]);
    let build = rix_cmd(&t)
        .args(["build", &drvs["slow"], "--no-link", "--print-out-paths"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The build has started once its output is locked.
    let lock = format!("{slow_out}.lock");
    rix_testutil::wait_for(&lock, Duration::from_secs(20), || {
        Path::new(&lock).exists().then_some(())
    });
    // Its temporary roots name what it uses.
    let roots_file = StoreLayoutDirs::new(&t)
        .temproots
        .join(build.id().to_string());
    let recorded = std::fs::read(&roots_file).unwrap();
    let recorded: BTreeSet<String> = recorded
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    for p in [&drvs["slow"], &slow_out, &dep_out] {
        assert!(recorded.contains(p), "{p} not in {recorded:?}");
    }
    // A rix collection and a Nix collection while it builds.
    let rix_gc = ok(rix(&t, &["store", "gc"]));
    assert!(rix_gc.starts_with("1 store paths deleted") || rix_gc.contains("store paths deleted"));
    ok(nix_cmd(&t, &nix_store).arg("--gc").output().unwrap());
    assert!(
        !valid(&t, other_out.trim()),
        "an unrelated dead path is collected"
    );
    assert_eq!(wait_ok(build).trim(), slow_out);
    for p in [&drvs["slow"], &drvs["dep"], &dep_out, &slow_out] {
        assert!(valid(&t, p), "{p} was collected");
    }
    assert_eq!(
        std::fs::read_to_string(&slow_out).unwrap().trim(),
        format!("slow {dep_out}")
    );
}

#[test]
fn a_running_nix_build_survives_a_rix_collection() {
    let t = TempStore::new();
    let Some(drvs) = instantiate(&t, "3") else {
        return;
    };
    let nix_store = nix("nix-store").unwrap();
    let dep_out = ok(nix_cmd(&t, &nix_store)
        .args(["--realise", &drvs["dep"]])
        .output()
        .unwrap());
    let dep_out = dep_out.trim().to_owned();
    let slow_out = out_path(&t, &drvs["slow"]);
    let build = nix_cmd(&t, &nix_store)
        .args(["--realise", &drvs["slow"]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = format!("{slow_out}.lock");
    rix_testutil::wait_for(&lock, Duration::from_secs(30), || {
        Path::new(&lock).exists().then_some(())
    });
    ok(rix(&t, &["store", "gc"]));
    assert_eq!(wait_ok(build).trim(), slow_out);
    for p in [&drvs["slow"], &dep_out, &slow_out] {
        assert!(valid(&t, p), "{p} was collected");
    }
}

/// The directories of a `local?store=&state=` store.
struct StoreLayoutDirs {
    temproots: std::path::PathBuf,
}

impl StoreLayoutDirs {
    fn new(t: &TempStore) -> Self {
        Self {
            temproots: t.dir.path().join("state/temproots"),
        }
    }
}

#[test]
fn kill_9_during_a_collection_leaves_a_consistent_store() {
    let t = TempStore::new();
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let src = t.dir.path().join("src");
    let mut dirs = Vec::new();
    // Few paths (each add syncs the file system), many files (deletion takes a while).
    for i in 0..200 {
        let d = src.join(format!("p{i}"));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for j in 0..24 {
            std::fs::write(d.join(format!("sub/f{j}")), format!("{i} {j}\n").repeat(50)).unwrap();
        }
        dirs.push(d.to_string_lossy().into_owned());
    }
    let store_dir = t.store_dir();
    let mut killed = 0;
    let mut pending = 0;
    for delay_ms in [10u64, 150, 400] {
        let mut args = vec!["store", "add"];
        args.extend(dirs.iter().map(String::as_str));
        ok(rix(&t, &args));
        let mut gc = rix_cmd(&t)
            .args(["store", "gc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(gc.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let status = gc.wait().unwrap();
        if !status.success() {
            killed += 1;
        }
        // Every row has complete files: Nix's verifier finds nothing missing
        // or modified (and so changes nothing).
        let verify = nix_cmd(&t, &nix_store)
            .args(["--verify", "--check-contents"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success(), "{err}");
        assert!(
            !err.contains("disappeared") && !err.contains("modified"),
            "after kill -9 at {delay_ms} ms: {err}"
        );
        // rix's verifier agrees, right away: what the collector was deleting
        // is named in its journal, a pending deletion and not a problem.
        let verify = rix(&t, &["store", "verify", "--check-contents"]);
        let report = String::from_utf8_lossy(&verify.stdout).into_owned();
        let err = String::from_utf8_lossy(&verify.stderr).into_owned();
        assert!(
            verify.status.success() && report.is_empty(),
            "after kill -9 at {delay_ms} ms:\n{report}\n{err}"
        );
        if err.contains("pending deletion") {
            pending += 1;
            // `verify --repair` finishes them.
            let repaired = rix(&t, &["store", "verify", "--repair"]);
            let out = String::from_utf8_lossy(&repaired.stdout).into_owned();
            assert!(repaired.status.success(), "{out}");
            assert!(out.contains("deleted '"), "{out}");
            assert!(!t.dir.path().join("state/gc-pending").exists());
            let verify = rix(&t, &["store", "verify"]);
            let err = String::from_utf8_lossy(&verify.stderr).into_owned();
            assert!(verify.status.success() && !err.contains("pending"), "{err}");
        }
    }
    eprintln!("{killed} collections killed, {pending} left pending deletions");
    assert!(killed > 0, "no collection was interrupted");
    // The next collection removes the leftovers: nothing but .links remains.
    ok(rix(&t, &["store", "gc"]));
    let left: Vec<String> = std::fs::read_dir(&store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".links")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!t.dir.path().join("state/gc-pending").exists());
    ok(rix(&t, &["store", "verify", "--check-contents"]));
    let verify = nix_cmd(&t, &nix_store)
        .args(["--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(verify.status.success());
}

#[test]
fn optimise_frees_what_nix_would_and_leaves_nothing_for_nix() {
    let t = TempStore::new();
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let src = t.dir.path().join("src");
    let mut args = vec!["store".to_owned(), "add".to_owned()];
    for i in 0..5 {
        let d = src.join(format!("d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("same"), "x".repeat(1 << 20)).unwrap();
        std::fs::write(d.join("own"), format!("{i}")).unwrap();
        args.push(d.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(rix(&t, &args));
    let out = rix(&t, &["store", "optimise"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(
        err.contains("4.00 MiB freed by hard-linking 4 files"),
        "{err}"
    );
    let nix_out = nix_cmd(&t, &nix_store).arg("--optimise").output().unwrap();
    let nix_err = String::from_utf8_lossy(&nix_out.stderr);
    assert!(nix_out.status.success());
    assert!(
        nix_err.contains("0.00 MiB freed by hard-linking 0 files"),
        "{nix_err}"
    );
    let verify = nix_cmd(&t, &nix_store)
        .args(["--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(verify.status.success());
    // After collecting everything, no link is left.
    // (What deleting hard-linked files frees is counted as Nix counts it: a file
    // whose last link but one goes; deleted in parallel, that is approximate.)
    let gc = ok(rix(&t, &["store", "gc"]));
    assert!(gc.starts_with("5 store paths deleted, "), "{gc}");
    assert_eq!(
        std::fs::read_dir(t.store_dir().join(".links"))
            .unwrap()
            .count(),
        0
    );
}

/// Two outputs with one file of the same contents as a file of an added path.
const SAME: &str = r#"
{ salt }:
derivation {
  name = "same-${salt}";
  inherit salt;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  content = builtins.concatStringsSep "" (builtins.genList (_: "x") 4096);
  args = [ "-c" "/bin/mkdir $out; printf %s \"$content\" > $out/shared; echo $salt > $out/own" ];
}
"#;

fn ino(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn auto_optimise_store_links_added_built_and_substituted_paths() {
    let t = TempStore::new();
    let (Some(inst), Some(nix_store)) = (nix("nix-instantiate"), nix("nix-store")) else {
        return;
    };
    let auto = |args: &[&str]| {
        let mut c = rix_cmd(&t);
        c.args(["--option", "auto-optimise-store", "true"])
            .args(args);
        c.output().unwrap()
    };
    let src = t.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("shared"), "x".repeat(4096)).unwrap();
    std::fs::write(src.join("own"), "added").unwrap();
    let added = ok(auto(&["store", "add", src.to_str().unwrap()]));
    let file = t.dir.path().join("same.nix");
    std::fs::write(&file, SAME).unwrap();
    let drv = |salt: &str| {
        ok(nix_cmd(&t, &inst)
            .arg(&file)
            .args(["--argstr", "salt", salt])
            .output()
            .unwrap())
        .trim()
        .to_owned()
    };
    let (built_drv, fetched_drv) = (drv("built"), drv("fetched"));
    let built = ok(auto(&["store", "realise", &built_drv]));
    // The second output goes to a cache, leaves the store and comes back from
    // the cache.
    let fetched = ok(rix(&t, &["store", "realise", &fetched_drv]));
    let cache_url = format!(
        "file://{}?compression=zstd&store={}",
        t.dir.path().join("cache").display(),
        t.store_dir().display()
    );
    ok(rix(&t, &["copy", "--to", &cache_url, fetched.trim()]));
    ok(rix(&t, &["store", "delete", fetched.trim()]));
    let out = auto(&[
        "--option",
        "substituters",
        &cache_url,
        "--option",
        "require-sigs",
        "false",
        "store",
        "realise",
        &fetched_drv,
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("copying path '"),
        "substituted, not built: {err}"
    );
    assert_eq!(ok(out), fetched, "{err}");

    let links = t.store_dir().join(".links");
    let link_inodes: BTreeSet<u64> = std::fs::read_dir(&links)
        .unwrap()
        .map(|e| ino(&e.unwrap().path()))
        .collect();
    let shared: Vec<u64> = [&added, &built, &fetched]
        .iter()
        .map(|p| ino(&Path::new(p.trim()).join("shared")))
        .collect();
    assert!(shared.iter().all(|i| *i == shared[0]), "{shared:?}");
    assert!(link_inodes.contains(&shared[0]));
    // Every file went through .links (the own files too).
    for p in [&added, &built, &fetched] {
        assert!(link_inodes.contains(&ino(&Path::new(p.trim()).join("own"))));
    }
    // Nix finds nothing to link and nothing wrong.
    let nix_out = nix_cmd(&t, &nix_store).arg("--optimise").output().unwrap();
    let nix_err = String::from_utf8_lossy(&nix_out.stderr);
    assert!(nix_out.status.success(), "{nix_err}");
    assert!(
        nix_err.contains("freed by hard-linking 0 files"),
        "{nix_err}"
    );
    let verify = nix_cmd(&t, &nix_store)
        .args(["--verify", "--check-contents"])
        .output()
        .unwrap();
    let verify_err = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{verify_err}");
    assert!(!verify_err.contains("modified"), "{verify_err}");
}

/// `rix store add` (with auto-optimise-store: temporaries, links, `.links`)
/// while the real `nix-store --gc` runs again and again: every add succeeds,
/// and both verifiers find the store consistent.
#[test]
fn rix_adds_survive_a_loop_of_nix_collections() {
    let t = TempStore::new();
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let src = t.dir.path().join("src");
    let mut args = vec!["--option", "auto-optimise-store", "true", "store", "add"];
    let mut dirs = Vec::new();
    for i in 0..60 {
        let d = src.join(format!("p{i}"));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for j in 0..4 {
            // Shared contents across paths, so that .links entries are reused.
            std::fs::write(d.join(format!("sub/f{j}")), format!("{}\n", j).repeat(4096)).unwrap();
        }
        std::fs::write(d.join("own"), format!("{i}\n")).unwrap();
        dirs.push(d.to_string_lossy().into_owned());
    }
    args.extend(dirs.iter().map(String::as_str));
    ok(rix(&t, &["store", "verify"]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collections = {
        let (stop, nix_store, url) = (stop.clone(), nix_store.clone(), t.url());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new(&nix_store)
                    .args(["--store", &url, "--gc"])
                    .env("NIX_CONFIG", NIX_CONFIG)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                n += 1;
            }
            n
        })
    };
    let added = rix(&t, &args);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = collections.join().unwrap();
    eprintln!("{n} collections by Nix ran meanwhile");
    assert_eq!(ok(added).lines().count(), 60);
    let verify = nix_cmd(&t, &nix_store)
        .args(["--verify", "--check-contents"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{err}");
    assert!(
        !err.contains("modified") && !err.contains("disappeared"),
        "{err}"
    );
    ok(rix(&t, &["store", "verify", "--check-contents"]));
}
