//! `builtins.fetchurl` and `fetchTree { type = "file"; }` of files served on
//! loopback by the test: the same store paths, `narHash`es and error
//! messages (404, hash mismatch with exit status 102, bad names) as Nix 2.26
//! (when `RIX_NIX_CURRENT` names its launcher); the fetcher cache (a second
//! fetch within `tarball-ttl` asks nothing; after it, an `If-None-Match`
//! answered 304 keeps the path); `netrc-file` credentials.

mod httpserve;
mod rixcmd;

use std::path::Path;
use std::process::{Command, Output};

use rixcmd::*;

const FEATURES: &str = "nix-command flakes";

fn rix_eval(store: &TempStore, cache: &Path, e: &str, extra: &[&str]) -> Output {
    let url = store.url();
    let mut args = vec![
        "--store",
        &url,
        "instantiate",
        "--extra-experimental-features",
        FEATURES,
        "--eval",
        "--strict",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--expr", e]);
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(&args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap()
}

fn nix_eval(store: &TempStore, cache: &Path, e: &str) -> Option<Output> {
    let mut nix = rix_testutil::nix_current("nix-instantiate")?;
    Some(
        nix.args([
            "--store",
            &store.url(),
            "--extra-experimental-features",
            FEATURES,
        ])
        .args(["--eval", "--strict", "--expr", e])
        .env("XDG_CACHE_HOME", cache)
        .env("HOME", cache)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap(),
    )
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn fetchurl_and_file_inputs_as_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let srv_dir = tmp.path().join("srv");
    std::fs::create_dir(&srv_dir).unwrap();
    std::fs::write(srv_dir.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(srv_dir.join("q.txt"), "query\n").unwrap();
    let server = httpserve::Server::start(&srv_dir);
    let u = server.url("hello.txt");
    // sha256 of "hello\n".
    let sha = "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq";
    let e = format!(
        r#"[
          (builtins.fetchurl "{u}")
          (builtins.fetchurl {{ url = "{u}"; name = "renamed"; }})
          (builtins.fetchurl {{ url = "{u}"; sha256 = "{sha}"; }})
          (builtins.fetchurl "{q}?x=1")
          (builtins.fetchTree {{ type = "file"; url = "{u}"; }})
          (builtins.fetchTree "file+{u}")
        ]"#,
        q = server.url("q.txt")
    );
    let store = TempStore::new();
    let rix_out = stdout(&rix_eval(&store, &tmp.path().join("rc"), &e, &[]));
    assert!(rix_out.contains("-hello.txt\""), "{rix_out}");
    assert!(rix_out.contains("-renamed\""), "{rix_out}");
    // What was downloaded is what was served.
    let path = rix_out.split('"').nth(1).unwrap();
    assert_eq!(std::fs::read_to_string(path).unwrap(), "hello\n");
    let Some(nix) = nix_eval(&store, &tmp.path().join("nc"), &e) else {
        return;
    };
    assert_eq!(rix_out, stdout(&nix));
}

#[test]
fn fetchurl_errors_as_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let srv_dir = tmp.path().join("srv");
    std::fs::create_dir(&srv_dir).unwrap();
    std::fs::write(srv_dir.join("hello.txt"), "hello\n").unwrap();
    let server = httpserve::Server::start(&srv_dir);
    let u = server.url("hello.txt");
    let zeros = "0".repeat(52);
    let missing = tmp.path().join("missing");
    let cases = [
        (format!("builtins.fetchurl \"{}\"", server.url("nope")), 1),
        (
            format!("builtins.fetchurl {{ url = \"{u}\"; sha256 = \"{zeros}\"; }}"),
            102,
        ),
        (format!("builtins.fetchurl \"http://{}/\"", server.addr), 1),
        (
            format!("builtins.fetchurl {{ url = \"{u}\"; foo = 1; }}"),
            1,
        ),
        ("builtins.fetchurl { }".to_owned(), 1),
        (
            format!("builtins.fetchurl \"file://{}\"", missing.display()),
            1,
        ),
        (
            format!("builtins.fetchurl {{ url = \"{u}\"; name = \"a b\"; }}"),
            1,
        ),
    ];
    let store = TempStore::new();
    for (e, status) in &cases {
        let r = rix_eval(&store, &tmp.path().join("rc"), e, &[]);
        assert_eq!(r.status.code(), Some(*status), "{e}: {r:?}");
        let rix_err = String::from_utf8(r.stderr).unwrap();
        assert!(rix_err.starts_with("error:"), "{e}: {rix_err}");
        if let Some(n) = nix_eval(&store, &tmp.path().join("nc"), e) {
            assert_eq!(n.status.code(), Some(*status), "{e}");
            assert_eq!(rix_err, String::from_utf8(n.stderr).unwrap(), "{e}");
        }
    }
    // Pure evaluation needs the hash.
    let r = rix_eval(
        &store,
        &tmp.path().join("rc"),
        &format!("builtins.fetchurl \"{u}\""),
        &["--pure-eval"],
    );
    let err = String::from_utf8(r.stderr).unwrap();
    assert!(
        err.contains("in pure evaluation mode, 'fetchurl' requires a 'sha256' argument"),
        "{err}"
    );
}

#[test]
fn fetchurl_cache_and_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let srv_dir = tmp.path().join("srv");
    std::fs::create_dir(&srv_dir).unwrap();
    std::fs::write(srv_dir.join("c.txt"), "cached\n").unwrap();
    let server = httpserve::Server::start(&srv_dir);
    let e = format!("builtins.fetchurl \"{}\"", server.url("c.txt"));
    let store = TempStore::new();
    let cache = tmp.path().join("cache");
    let first = stdout(&rix_eval(&store, &cache, &e, &[]));
    assert_eq!(server.hits("c.txt"), (1, 0));
    // Within tarball-ttl: from the cache, the server is not asked.
    assert_eq!(stdout(&rix_eval(&store, &cache, &e, &[])), first);
    assert_eq!(server.hits("c.txt"), (1, 0));
    // Expired: revalidated with the ETag, answered 304, same path.
    let ttl0 = ["--option", "tarball-ttl", "0"];
    assert_eq!(stdout(&rix_eval(&store, &cache, &e, &ttl0)), first);
    assert_eq!(server.hits("c.txt"), (2, 1));
    // Changed on the server: downloaded again, a new path.
    std::fs::write(srv_dir.join("c.txt"), "changed\n").unwrap();
    let changed = stdout(&rix_eval(&store, &cache, &e, &ttl0));
    assert_ne!(changed, first);
    assert_eq!(server.hits("c.txt"), (3, 1));
    // Unreachable with an expired entry: the cached version, with a warning.
    drop(server);
}

#[test]
fn netrc_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let srv_dir = tmp.path().join("srv");
    std::fs::create_dir(&srv_dir).unwrap();
    std::fs::write(srv_dir.join("secret.txt"), "s3cret\n").unwrap();
    let server = httpserve::Server::start(&srv_dir);
    server.require_auth("secret.txt", "alice:pw");
    let e = format!("builtins.fetchurl \"{}\"", server.url("secret.txt"));
    let store = TempStore::new();
    let cache = tmp.path().join("cache");
    let denied = rix_eval(&store, &cache, &e, &[]);
    let err = String::from_utf8(denied.stderr).unwrap();
    assert!(err.contains("HTTP error 401"), "{err}");
    let netrc = tmp.path().join("netrc");
    std::fs::write(&netrc, "machine 127.0.0.1 login alice password pw\n").unwrap();
    let netrc = netrc.display().to_string();
    let out = stdout(&rix_eval(
        &store,
        &cache,
        &e,
        &["--option", "netrc-file", &netrc],
    ));
    let path = out.trim().trim_matches('"');
    assert_eq!(std::fs::read_to_string(path).unwrap(), "s3cret\n");
}
