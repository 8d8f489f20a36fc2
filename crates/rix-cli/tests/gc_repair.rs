//! `rix store verify --check-contents --repair`: a deliberately corrupted file
//! and a deleted path are found, then fixed from a `file://` binary cache, after
//! which both rix's and Nix's verifiers are content.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

mod rixcmd;
use rixcmd::{nix, ok_str as ok, TempStore};

fn rix(t: &TempStore, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(t.url())
        .args(args)
        .output()
        .expect("run rix")
}

fn scribble(file: &Path, text: &str) {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(file, text).unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
}

#[test]
fn corrupted_and_missing_paths_are_repaired_from_a_file_cache() {
    let t = TempStore::new();
    let src = t.dir.path().join("src");
    for name in ["a", "b"] {
        std::fs::create_dir_all(src.join(name).join("sub")).unwrap();
        std::fs::write(src.join(name).join("sub/file"), format!("{name}\n")).unwrap();
    }
    let added = ok(rix(
        &t,
        &[
            "store",
            "add",
            src.join("a").to_str().unwrap(),
            src.join("b").to_str().unwrap(),
        ],
    ));
    let paths: Vec<&str> = added.lines().collect();
    let (a, b) = (paths[0], paths[1]);
    // c refers to b, so b cannot simply leave the database.
    let c = ok(rix(&t, &["store", "add-text", "c", "--reference", b]));
    let c = c.trim();
    let cache = t.dir.path().join("cache");
    let cache_url = format!(
        "file://{}?compression=zstd&store={}",
        cache.display(),
        t.store_dir().display()
    );
    ok(rix(&t, &["copy", "--to", &cache_url, a, b, c]));

    // Damage a, delete b.
    scribble(&Path::new(a).join("sub/file"), "damaged\n");
    let b_real = Path::new(b);
    std::fs::set_permissions(b_real, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(b_real).unwrap();

    let found = rix(&t, &["store", "verify", "--check-contents"]);
    assert!(!found.status.success());
    let report = String::from_utf8_lossy(&found.stdout);
    assert!(
        report.contains(&format!("path '{a}' was modified!")),
        "{report}"
    );
    assert!(
        report.contains(&format!("path '{b}' disappeared")),
        "{report}"
    );
    assert!(report.contains(c), "names the referrer: {report}");

    // Without a substituter nothing can be fetched: still broken, nothing lost.
    let no_source = rix(
        &t,
        &[
            "--option",
            "substituters",
            "",
            "store",
            "verify",
            "--check-contents",
            "--repair",
        ],
    );
    assert!(!no_source.status.success());
    assert_eq!(
        std::fs::read_to_string(Path::new(a).join("sub/file")).unwrap(),
        "damaged\n"
    );

    let repaired = ok(rix(
        &t,
        &[
            "--option",
            "substituters",
            &cache_url,
            "--option",
            "require-sigs",
            "false",
            "store",
            "verify",
            "--check-contents",
            "--repair",
        ],
    ));
    assert!(repaired.contains(&format!("repaired '{a}'")), "{repaired}");
    assert!(repaired.contains(&format!("repaired '{b}'")), "{repaired}");
    assert_eq!(
        std::fs::read_to_string(Path::new(a).join("sub/file")).unwrap(),
        "a\n"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(b).join("sub/file")).unwrap(),
        "b\n"
    );
    ok(rix(&t, &["store", "verify", "--check-contents"]));
    if let Some(nix_store) = nix("nix-store") {
        let out = Command::new(nix_store)
            .args(["--store", &t.url(), "--verify", "--check-contents"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            !err.contains("modified") && !err.contains("disappeared"),
            "{err}"
        );
    }
}

/// `dep` is deterministic; `top` copies a file of `dep`, refers to `dep` and
/// to itself and records a random number (a rebuild differs); `fixed` is
/// fixed-output.
const REBUILDABLE: &str = r#"
let
  mk = name: script: attrs: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  } // attrs);
  dep = mk "dep" "/bin/mkdir $out; echo dep > $out/file" { };
  top = mk "top" "/bin/mkdir $out; echo ${dep} > $out/dep; /bin/cat ${dep}/file > $out/copy; echo $out > $out/self; /bin/cat /proc/sys/kernel/random/uuid > $out/stamp" { };
  fixed = mk "fixed" "echo fixed > $out" {
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = builtins.hashString "sha256" "fixed\n";
  };
in { inherit dep top fixed; }
"#;

#[test]
fn broken_build_outputs_are_rebuilt_without_a_cache() {
    rebuilds(&["--option", "sandbox", "false"]);
}

/// The same in the sandbox, where the rebuild writes the outputs at their own
/// paths inside it (busybox provides the builders' tools).
#[test]
fn broken_build_outputs_are_rebuilt_in_the_sandbox() {
    if !Path::new("/bin/busybox").exists() || rix_build::sandbox::available().is_err() {
        eprintln!("skipping: no sandbox here, or no /bin/busybox (apt-get install busybox-static)");
        return;
    }
    rebuilds(&[
        "--option",
        "sandbox",
        "true",
        "--option",
        "sandbox-fallback",
        "false",
        "--option",
        "sandbox-paths",
        "/bin/sh=/bin/busybox /bin/mkdir=/bin/busybox /bin/cat=/bin/busybox",
    ]);
}

fn rebuilds(options: &[&str]) {
    let t = TempStore::new();
    let (Some(inst), Some(nix_store)) = (nix("nix-instantiate"), nix("nix-store")) else {
        return;
    };
    let file = t.dir.path().join("rebuildable.nix");
    std::fs::write(&file, REBUILDABLE).unwrap();
    let no_cache = |args: &[&str]| {
        let mut all = vec!["--option", "substituters", ""];
        all.extend_from_slice(options);
        all.extend_from_slice(args);
        rix(&t, &all)
    };
    let mut out = std::collections::BTreeMap::new();
    for attr in ["dep", "top", "fixed"] {
        let drv = Command::new(&inst)
            .args(["--store", &t.url(), "-A", attr])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            drv.status.success(),
            "{}",
            String::from_utf8_lossy(&drv.stderr)
        );
        let drv = String::from_utf8(drv.stdout).unwrap().trim().to_owned();
        let built = ok(no_cache(&["store", "realise", &drv]));
        out.insert(attr, built.trim().to_owned());
    }
    let (dep, top, fixed) = (&out["dep"], &out["top"], &out["fixed"]);
    let stamp = std::fs::read_to_string(Path::new(top).join("stamp")).unwrap();

    // Delete top, damage dep and fixed. The report names top first (missing
    // paths come first); its rebuild must wait for dep's repair.
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(top).unwrap();
    scribble(&Path::new(dep).join("file"), "damaged\n");
    scribble(Path::new(fixed), "damaged\n");
    let found = no_cache(&["store", "verify", "--check-contents"]);
    assert!(!found.status.success());
    let report = String::from_utf8_lossy(&found.stdout);
    for p in [dep, top, fixed] {
        assert!(report.contains(p.as_str()), "{p}: {report}");
    }

    let repaired = ok(no_cache(&[
        "store",
        "verify",
        "--check-contents",
        "--repair",
    ]));
    for p in [dep, top, fixed] {
        assert!(repaired.contains(&format!("repaired '{p}'")), "{repaired}");
    }
    // Rebuilt at a fallback path, the self-reference was rewritten back.
    assert_eq!(
        std::fs::read_to_string(Path::new(top).join("self")).unwrap(),
        format!("{top}\n")
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(dep).join("file")).unwrap(),
        "dep\n"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(top).join("copy")).unwrap(),
        "dep\n"
    );
    assert_eq!(std::fs::read_to_string(fixed).unwrap(), "fixed\n");
    // top's builder is not deterministic: its row took the rebuild's hash.
    assert_ne!(
        std::fs::read_to_string(Path::new(top).join("stamp")).unwrap(),
        stamp
    );
    ok(no_cache(&["store", "verify", "--check-contents"]));
    let out = Command::new(&nix_store)
        .args(["--store", &t.url(), "--verify", "--check-contents"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("modified") && !err.contains("disappeared"),
        "{err}"
    );
    let refs = Command::new(&nix_store)
        .args(["--store", &t.url(), "--query", "--references", top])
        .output()
        .unwrap();
    let refs = String::from_utf8_lossy(&refs.stdout);
    assert!(
        refs.contains(dep.as_str()) && refs.contains(top.as_str()),
        "{refs}"
    );
}
