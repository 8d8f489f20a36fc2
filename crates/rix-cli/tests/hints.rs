//! Errors with the hints Nix gives: "Did you mean …?" for a mistyped
//! attribute path, and a nested I/O error said once.

use std::process::Command;

mod rixcmd;
use rixcmd::TempStore;

#[test]
fn a_mistyped_attribute_path_gets_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.nix");
    std::fs::write(&file, "{ hello = 1; world = 2; }\n").unwrap();
    let file = file.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["instantiate", "--eval", file, "-A", "hellp"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        "error: attribute 'hellp' in selection path 'hellp' not found\n       Did you mean hello?\n"
    );
    let Some(mut nix) = rix_testutil::nix_current("nix-instantiate") else {
        return;
    };
    let out = nix.args(["--eval", file, "-A", "hellp"]).output().unwrap();
    assert_eq!(err, String::from_utf8(out.stderr).unwrap());
}

#[test]
fn a_nested_io_error_is_said_once() {
    let t = TempStore::new();
    let missing = t.dir.path().join("missing");
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "store", "add"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}
