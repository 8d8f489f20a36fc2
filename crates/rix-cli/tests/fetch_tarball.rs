//! `builtins.fetchTarball` and `fetchTree { type = "tarball"; }` of archives
//! the test makes (tar; gzip, xz, bzip2, zstd or none) served on loopback:
//! the same store paths, `narHash` and `lastModified` as Nix 2.26 (when
//! `RIX_NIX_CURRENT` names its launcher), a single top-level directory taken
//! as the tree, executables, symbolic and hard links, empty directories;
//! hostile archives (`..`, absolute names, writing through a symbolic link)
//! unpacked inside the tree as Nix unpacks them, nothing written outside;
//! the lockable tarball protocol (`Link: <…>; rel="immutable"`); errors;
//! forge inputs (`github:`) locked or needing the network that is not there.

mod httpserve;
mod rixcmd;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

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
    std::fs::create_dir_all(cache.join("tmp")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(&args)
        .env("XDG_CACHE_HOME", cache)
        .env("TMPDIR", cache.join("tmp"))
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

enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A tar archive of `entries` (names written as they are, `..` included).
fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let mut h = tar::Header::new_gnu();
        let (name, kind, data, mode, link): (&str, _, &[u8], u32, &str) = match e {
            Entry::Dir(n) => (n, tar::EntryType::Directory, b"", 0o755, ""),
            Entry::File(n, d, m) => (n, tar::EntryType::Regular, d, *m, ""),
            Entry::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", 0o777, t),
            Entry::HardLink(n, t) => (n, tar::EntryType::Link, b"", 0o644, t),
        };
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000 + i as u64 * 1000);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `data` through a compressor program (`gzip`, `xz`, ...).
fn compress(program: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is needed by this test: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn sample() -> Vec<u8> {
    tar(&[
        Entry::Dir("pkg-1.0/"),
        Entry::File("pkg-1.0/README", b"read me\n", 0o644),
        Entry::Dir("pkg-1.0/bin/"),
        Entry::File("pkg-1.0/bin/run", b"#!/bin/sh\necho hi\n", 0o755),
        Entry::Dir("pkg-1.0/empty/"),
        Entry::Symlink("pkg-1.0/link", "README"),
        Entry::HardLink("pkg-1.0/hard", "pkg-1.0/README"),
    ])
}

#[test]
fn fetch_tarball_as_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    let t = sample();
    std::fs::write(srv.join("p.tar"), &t).unwrap();
    std::fs::write(srv.join("p.tar.gz"), compress("gzip", &t)).unwrap();
    std::fs::write(srv.join("p.tar.xz"), compress("xz", &t)).unwrap();
    std::fs::write(srv.join("p.tar.bz2"), compress("bzip2", &t)).unwrap();
    std::fs::write(srv.join("p.tar.zst"), compress("zstd", &t)).unwrap();
    // Two entries at the top: the tree is the archive's top.
    let two = tar(&[
        Entry::File("a", b"a\n", 0o644),
        Entry::File("./b", b"b\n", 0o600),
    ]);
    std::fs::write(srv.join("two.tgz"), compress("gzip", &two)).unwrap();
    let server = httpserve::Server::start(&srv);
    let gz = server.url("p.tar.gz");
    let mut parts: Vec<String> = [
        "p.tar",
        "p.tar.gz",
        "p.tar.xz",
        "p.tar.bz2",
        "p.tar.zst",
        "two.tgz",
    ]
    .iter()
    .map(|f| {
        format!(
            "(builtins.fetchTree {{ type = \"tarball\"; url = \"{}\"; }})",
            server.url(f)
        )
    })
    .collect();
    parts.extend([
        format!("(builtins.fetchTarball \"{gz}\")"),
        format!("(builtins.fetchTarball {{ url = \"{gz}\"; name = \"named\"; }})"),
        format!(
            "(builtins.fetchTarball {{ url = \"{gz}\"; sha256 = (builtins.fetchTree {{ type = \"tarball\"; url = \"{gz}\"; }}).narHash; }})"
        ),
        format!("(builtins.fetchTree \"{gz}\")"),
        format!("(builtins.readDir (builtins.fetchTarball \"{gz}\"))"),
        format!("(builtins.readFile ((builtins.fetchTarball \"{gz}\") + \"/hard\"))"),
    ]);
    let e = format!("[ {} ]", parts.join("\n"));
    let store = TempStore::new();
    let cache = tmp.path().join("rc");
    std::fs::create_dir_all(cache.join("tmp")).unwrap();
    let out = stdout(&rix_eval(&store, &cache, &e, &[]));
    assert!(out.contains("lastModified = 1600006000;"), "{out}");
    assert!(
        out.contains("empty = \"directory\"; hard = \"regular\"; link = \"symlink\";"),
        "{out}"
    );
    let tree = out
        .split("outPath = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mode = std::fs::metadata(Path::new(tree).join("bin/run")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o555
    );
    // The private temporary directories are gone.
    assert_eq!(std::fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
    let Some(nix) = nix_eval(&store, &tmp.path().join("nc"), &e) else {
        return;
    };
    assert_eq!(out, stdout(&nix));
}

#[test]
fn hostile_tarballs_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    let t = tar(&[
        Entry::File("../../escape", b"x\n", 0o644),
        Entry::File("/abs/file", b"y\n", 0o644),
        Entry::File("a/../../../b", b"z\n", 0o644),
        Entry::Symlink("up", "../../.."),
    ]);
    std::fs::write(srv.join("h.tar.gz"), compress("gzip", &t)).unwrap();
    let through = tar(&[
        Entry::Symlink("l", "/tmp"),
        Entry::File("l/through", b"w\n", 0o644),
    ]);
    std::fs::write(srv.join("through.tar"), &through).unwrap();
    let server = httpserve::Server::start(&srv);
    let e = format!(
        "let t = builtins.fetchTree {{ type = \"tarball\"; url = \"{}\"; }}; in [ t (builtins.readDir t) ]",
        server.url("h.tar.gz")
    );
    let store = TempStore::new();
    let cache = tmp.path().join("rc");
    std::fs::create_dir_all(cache.join("tmp")).unwrap();
    let out = stdout(&rix_eval(&store, &cache, &e, &[]));
    assert!(
        out.contains(
            "{ abs = \"directory\"; b = \"regular\"; escape = \"regular\"; up = \"symlink\"; }"
        ),
        "{out}"
    );
    let e2 = format!("builtins.fetchTarball \"{}\"", server.url("through.tar"));
    let through_out = rix_eval(&store, &cache, &e2, &[]);
    assert!(!through_out.status.success());
    assert!(!Path::new("/tmp/through").exists());
    for dir in [tmp.path(), &cache, &cache.join("tmp")] {
        for name in ["escape", "b", "abs", "through"] {
            assert!(!dir.join(name).exists(), "{} in {}", name, dir.display());
        }
    }
    let Some(nix) = nix_eval(&store, &tmp.path().join("nc"), &e) else {
        return;
    };
    assert_eq!(out, stdout(&nix));
    // Writing through a symbolic link: refused, as Nix refuses it.
    let nix2 = nix_eval(&store, &tmp.path().join("nc"), &e2).unwrap();
    let nix_err: String = String::from_utf8(nix2.stderr)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("into the Git cache"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(String::from_utf8(through_out.stderr).unwrap(), nix_err);
}

#[test]
fn lockable_tarball_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    std::fs::write(srv.join("latest.tar.gz"), compress("gzip", &sample())).unwrap();
    std::fs::write(srv.join("v1.tar.gz"), compress("gzip", &sample())).unwrap();
    let server = httpserve::Server::start(&srv);
    let rev = "0123456789abcdef0123456789abcdef01234567";
    server.add_header(
        "latest.tar.gz",
        &format!(
            "Link: <{}?rev={rev}&revCount=7&lastModified=1700000000>; rel=\"immutable\"",
            server.url("v1.tar.gz")
        ),
    );
    let e = format!(
        "builtins.fetchTree {{ type = \"tarball\"; url = \"{}\"; }}",
        server.url("latest.tar.gz")
    );
    let store = TempStore::new();
    let out = stdout(&rix_eval(&store, &tmp.path().join("rc"), &e, &[]));
    assert!(
        out.contains(&format!("rev = \"{rev}\"; revCount = 7;")),
        "{out}"
    );
    assert!(out.contains("lastModified = 1700000000;"), "{out}");
    let Some(nix) = nix_eval(&store, &tmp.path().join("nc"), &e) else {
        return;
    };
    assert_eq!(out, stdout(&nix));
}

#[test]
fn tarball_errors_as_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    std::fs::write(srv.join("text.txt"), "not an archive\n").unwrap();
    std::fs::write(srv.join("p.tar.gz"), compress("gzip", &sample())).unwrap();
    let server = httpserve::Server::start(&srv);
    let zeros = "0".repeat(52);
    let cases = [
        (format!("builtins.fetchTarball \"{}\"", server.url("text.txt")), 1),
        (format!("builtins.fetchTarball \"{}\"", server.url("nope.tar.gz")), 1),
        (
            format!(
                "builtins.fetchTarball {{ url = \"{}\"; sha256 = \"{zeros}\"; }}",
                server.url("p.tar.gz")
            ),
            102,
        ),
        (
            format!(
                "builtins.fetchTree {{ type = \"tarball\"; url = \"{}\"; narHash = \"sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"; }}",
                server.url("p.tar.gz")
            ),
            102,
        ),
    ];
    let store = TempStore::new();
    for (e, status) in &cases {
        let r = rix_eval(&store, &tmp.path().join("rc"), e, &[]);
        assert_eq!(r.status.code(), Some(*status), "{e}: {r:?}");
        let rix_err = String::from_utf8(r.stderr).unwrap();
        if let Some(n) = nix_eval(&store, &tmp.path().join("nc"), e) {
            let nix_err = String::from_utf8(n.stderr).unwrap();
            // Nix also reports its Git cache at work.
            let nix_err: String = nix_err
                .lines()
                .filter(|l| !l.contains("into the Git cache"))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(n.status.code(), Some(*status), "{e}");
            assert_eq!(rix_err, nix_err, "{e}");
        }
    }
}

#[test]
fn forge_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    std::fs::write(srv.join("p.tar.gz"), compress("gzip", &sample())).unwrap();
    let server = httpserve::Server::start(&srv);
    let store = TempStore::new();
    let cache = tmp.path().join("rc");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    // Unreachable forge: the error names the input.
    let e = format!("builtins.fetchTree \"github:owner/repo/{rev}\"");
    let r = rix_eval(&store, &cache, &e, &["--option", "download-attempts", "1"]);
    assert!(!r.status.success());
    let err = String::from_utf8(r.stderr).unwrap();
    assert!(
        err.contains(&format!(
            "while fetching the input 'github:owner/repo/{rev}'"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "unable to download 'https://github.com/owner/repo/archive/{rev}.tar.gz'"
        )),
        "{err}"
    );
    // A locked (final) input whose tree is in the store needs no network.
    let tree = stdout(&rix_eval(
        &store,
        &cache,
        &format!(
            "(builtins.fetchTree {{ type = \"tarball\"; url = \"{}\"; }}).narHash",
            server.url("p.tar.gz")
        ),
        &[],
    ));
    let nar_hash = tree.trim().trim_matches('"');
    let e = format!(
        "builtins.fetchFinalTree {{ type = \"gitlab\"; owner = \"o\"; repo = \"r\"; rev = \"{rev}\"; narHash = \"{nar_hash}\"; lastModified = 5; }}"
    );
    let out = stdout(&rix_eval(
        &store,
        &cache,
        &e,
        &["--option", "download-attempts", "1"],
    ));
    assert!(out.contains(&format!("narHash = \"{nar_hash}\";")), "{out}");
    assert!(out.contains(&format!("rev = \"{rev}\";")), "{out}");
}
