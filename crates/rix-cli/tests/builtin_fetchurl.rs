//! `builtin:fetchurl` (what `<nix/fetchurl.nix>` builds with) against a
//! loopback server: the same `.drv` and output paths as Nix 2.26 (when
//! `RIX_NIX_CURRENT` names its launcher), with the sandbox off and on (when
//! the kernel allows it); `executable`, `unpack` (a NAR, plain or `.xz`);
//! a hash mismatch exits with 102 and Nix's message; a download that fails
//! fails the build with the transfer's error in its log.

mod httpserve;
mod rixcmd;

use std::process::{Command, Output};

use rixcmd::*;

fn rix_build(store: &TempStore, sandbox: &str, e: &str) -> Output {
    let url = store.url();
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &url, "--option", "sandbox", sandbox])
        .args(["--option", "sandbox-fallback", "true"])
        .args(["build", "--no-link", "--print-out-paths", "--expr", e])
        .output()
        .unwrap()
}

fn nix_instantiate(store: &TempStore, e: &str) -> Option<String> {
    let mut nix = rix_testutil::nix_current("nix-instantiate")?;
    let out = nix
        .args(["--store", &store.url(), "--expr", e])
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8(out.stdout).unwrap())
}

fn rix_instantiate(store: &TempStore, e: &str) -> String {
    let url = store.url();
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &url, "instantiate", "--expr", e])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The NAR of a directory holding an executable and a file, made by rix.
fn nar_of_tree(dir: &std::path::Path) -> Vec<u8> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        tree.join("bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(tree.join("data"), "data\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["nar", "dump"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

fn hash(args: &[&str], path: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["hash"])
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn builtin_fetchurl_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    std::fs::write(srv.join("f.txt"), "fetched\n").unwrap();
    let nar = nar_of_tree(tmp.path());
    std::fs::write(srv.join("t.nar"), &nar).unwrap();
    let mut xz = Command::new("xz")
        .args(["-c"])
        .stdin(std::fs::File::open(srv.join("t.nar")).unwrap())
        .output()
        .unwrap();
    assert!(xz.status.success());
    std::fs::write(srv.join("t.nar.xz"), std::mem::take(&mut xz.stdout)).unwrap();
    let server = httpserve::Server::start(&srv);
    let flat = hash(
        &["file", "--type", "sha256", "--base32"],
        &srv.join("f.txt"),
    );
    // The output of `executable = true`: the file, executable, as a NAR.
    let exe = tmp.path().join("exe");
    std::fs::write(&exe, "fetched\n").unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rec = hash(&["path", "--type", "sha256", "--base32"], &exe);
    let tree = hash(
        &["path", "--type", "sha256", "--base32"],
        &tmp.path().join("tree"),
    );
    let cases = [
        format!("import <nix/fetchurl.nix> {{ url = \"{}\"; sha256 = \"{flat}\"; }}", server.url("f.txt")),
        format!(
            "import <nix/fetchurl.nix> {{ url = \"{}\"; sha256 = \"{rec}\"; executable = true; }}",
            server.url("f.txt")
        ),
        format!(
            "import <nix/fetchurl.nix> {{ url = \"{}\"; sha256 = \"{tree}\"; unpack = true; }}",
            server.url("t.nar")
        ),
        format!(
            "import <nix/fetchurl.nix> {{ url = \"{}\"; sha256 = \"{tree}\"; unpack = true; name = \"t\"; }}",
            server.url("t.nar.xz")
        ),
    ];
    for sandbox in ["false", "true"] {
        let store = TempStore::new();
        for (i, e) in cases.iter().enumerate() {
            let out = rix_build(&store, sandbox, e);
            assert!(out.status.success(), "{e}: {out:?}");
            let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            match i {
                0 => assert_eq!(std::fs::read_to_string(&path).unwrap(), "fetched\n"),
                1 => {
                    let m = std::fs::metadata(&path).unwrap();
                    assert_eq!(
                        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
                        0o555
                    );
                }
                _ => assert_eq!(
                    std::fs::read_to_string(format!("{path}/data")).unwrap(),
                    "data\n"
                ),
            }
            // The same derivation as Nix's.
            if let Some(nix_drv) = nix_instantiate(&store, e) {
                assert_eq!(rix_instantiate(&store, e), nix_drv, "{e}");
            }
        }
    }
}

#[test]
fn builtin_fetchurl_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    std::fs::write(srv.join("f.txt"), "fetched\n").unwrap();
    let server = httpserve::Server::start(&srv);
    let zeros = "0".repeat(52);
    let store = TempStore::new();
    let e = format!(
        "import <nix/fetchurl.nix> {{ url = \"{}\"; sha256 = \"{zeros}\"; }}",
        server.url("f.txt")
    );
    let out = rix_build(&store, "false", &e);
    assert_eq!(out.status.code(), Some(102), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    let drv = rix_instantiate(&store, &e);
    let expected = format!(
        "error: hash mismatch in fixed-output derivation '{}':\n         specified: sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n            got:    sha256-",
        drv.trim()
    );
    assert!(err.contains(&expected), "{err}");
    if let Some(mut nix) = rix_testutil::nix_current("nix-build") {
        let n = nix
            .args([
                "--store",
                &store.url(),
                "--no-out-link",
                "--option",
                "build-hook",
                "",
                "--expr",
                &e,
            ])
            .env("NIX_CONFIG", NIX_CONFIG)
            .output()
            .unwrap();
        assert_eq!(n.status.code(), Some(102));
        let nix_err = String::from_utf8(n.stderr).unwrap();
        let tail = |s: &str| s[s.find("error: hash mismatch").unwrap()..].to_owned();
        assert_eq!(tail(&err), tail(&nix_err));
    }
    let e = format!(
        "import <nix/fetchurl.nix> {{ url = \"{}\"; sha256 = \"{zeros}\"; }}",
        server.url("missing.txt")
    );
    let out = rix_build(&store, "false", &e);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!(
            "unable to download '{}': HTTP error 404",
            server.url("missing.txt")
        )),
        "{err}"
    );
}
