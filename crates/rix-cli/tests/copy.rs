//! `rix copy`, `rix serve` and `rix store sign` against real Nix: Nix substitutes
//! what rix wrote or serves, and accepts its signatures.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod rixcmd;
use rixcmd::{nix, ok_str as ok};

/// A store rooted at a temporary directory (paths are `/nix/store/...`).
fn root() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rix-copy-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run_nix(tool: &Path, store: &Path, args: &[&str], config: &str) -> Output {
    Command::new(tool)
        .arg("--store")
        .arg(store)
        .args(args)
        .env(
            "NIX_CONFIG",
            format!("experimental-features = nix-command\nsubstituters =\nsandbox = true\nsandbox-paths = /bin /lib /lib64 /usr\n{config}"),
        )
        .output()
        .expect("run nix")
}

fn rix(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("XDG_CACHE_HOME", store.join("xdg-cache"))
        .output()
        .expect("run rix")
}

/// Nix builds a small closure (text files, a derivation output) in `dir`.
fn nix_closure(dir: &Path) -> Option<String> {
    let nix_build = nix("nix-build")?;
    let expr = dir.join("c.nix");
    std::fs::write(
        &expr,
        r#"let a = builtins.toFile "a" "A"; b = builtins.toFile "b" "B ${a}";
in derivation { name = "d"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "echo ${b} ${a} > $out" ]; }"#,
    )
    .unwrap();
    Some(
        ok(run_nix(
            &nix_build,
            dir,
            &["--no-out-link", expr.to_str().unwrap()],
            "",
        ))
        .trim()
        .to_owned(),
    )
}

fn keys(dir: &Path) -> (String, String) {
    let sec = dir.join("key.sec");
    let out = ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["key", "generate", "rix-cli-1"])
        .output()
        .unwrap());
    std::fs::write(&sec, &out).unwrap();
    let public = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["key", "public"])
        .stdin(std::fs::File::open(&sec).unwrap())
        .output()
        .unwrap();
    (
        sec.to_str().unwrap().to_owned(),
        ok(public).trim().to_owned(),
    )
}

/// Nix substitutes `out` from `url`, trusting `public`, and checks the result.
fn nix_substitutes(nix_store: &Path, url: &str, public: &str, out: &str) {
    let dst = root();
    let config = format!("substituters = {url}\ntrusted-public-keys = {public}\n");
    ok(run_nix(nix_store, dst.path(), &["-r", out], &config));
    ok(run_nix(
        nix_store,
        dst.path(),
        &["--verify", "--check-contents"],
        "",
    ));
    assert_eq!(
        ok(run_nix(nix_store, dst.path(), &["-qR", out], ""))
            .lines()
            .count(),
        3
    );
}

#[test]
fn rix_copy_to_a_file_cache_with_a_key_and_nix_substitutes() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let src = root();
    let Some(out) = nix_closure(src.path()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (sec, public) = keys(work.path());
    let cache = work.path().join("cache");
    for compression in ["zstd", "xz"] {
        let dir = cache.join(compression);
        let url = format!(
            "file://{}?compression={compression}&secret-key={sec}",
            dir.display()
        );
        ok(rix(src.path(), &["copy", "--to", &url, &out]));
        assert!(dir.join("nix-cache-info").exists());
        nix_substitutes(
            &nix_store,
            &format!("file://{}", dir.display()),
            &public,
            &out,
        );
    }
    // --from: back into an empty store, checked by Nix.
    let dst = root();
    ok(rix(
        dst.path(),
        &[
            "--option",
            "trusted-public-keys",
            &public,
            "copy",
            "--from",
            &format!("file://{}", cache.join("zstd").display()),
            &out,
        ],
    ));
    ok(run_nix(
        &nix_store,
        dst.path(),
        &["--verify", "--check-contents"],
        "",
    ));
    // An untrusted key is refused.
    let other = root();
    let res = rix(
        other.path(),
        &[
            "copy",
            "--from",
            &format!("file://{}", cache.join("zstd").display()),
            &out,
        ],
    );
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("not signed by any of the keys"));
}

#[test]
fn nix_substitutes_from_rix_serve() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let src = root();
    let Some(out) = nix_closure(src.path()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (sec, public) = keys(work.path());
    let mut server = Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(src.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--sign-key", &sec])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    nix_substitutes(&nix_store, &url, &public, &out);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn rix_store_sign_adds_signatures_nix_sees() {
    let Some(nix_cmd) = nix("nix") else { return };
    let src = root();
    let Some(out) = nix_closure(src.path()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (sec, public) = keys(work.path());
    ok(rix(src.path(), &["store", "sign", "-k", &sec, &out]));
    let json = ok(run_nix(
        &nix_cmd,
        src.path(),
        &["path-info", "--json", "--sigs", &out],
        "",
    ));
    assert!(json.contains("rix-cli-1:"), "{json}");
    // Nix checks the signature with the public key.
    let verify = run_nix(
        &nix_cmd,
        src.path(),
        &[
            "store",
            "verify",
            "--no-contents",
            "--sigs-needed",
            "1",
            &out,
        ],
        &format!("trusted-public-keys = {public}\n"),
    );
    ok(verify);
}
