//! `rix store verify --check-contents --repair`: a deliberately corrupted file
//! and a deleted path are found, then fixed from a `file://` binary cache, after
//! which both rix's and Nix's verifiers are content.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use rix_testutil::{nix, TempStore};

fn rix(t: &TempStore, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(t.url())
        .args(args)
        .output()
        .expect("run rix")
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\nstderr: {}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
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
