//! `rix hash path|file|convert` against `nix hash path|file|to-*` and `nix-hash`
//! of Nix 2.8, for every algorithm and encoding.

mod rixcmd;

use std::path::Path;

use rixcmd::*;

const ALGOS: [&str; 4] = ["md5", "sha1", "sha256", "sha512"];
const ENCODINGS: [&str; 4] = ["--base16", "--base32", "--base64", "--sri"];

fn trees(dir: &Path) -> Vec<String> {
    let tree = dir.join("tree");
    sample_tree(&tree);
    let big = dir.join("big");
    std::fs::write(
        &big,
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "").unwrap();
    [
        tree.clone(),
        tree.join("a"),
        tree.join("bin"),
        tree.join("sub/rel"),
        big,
        empty,
    ]
    .iter()
    .map(|p| p.to_str().unwrap().to_owned())
    .collect()
}

fn text(out: std::process::Output) -> String {
    ok_str(out)
}

#[test]
fn hash_path_and_file_match_nix_hash() {
    let Some(nix_bin) = nix("nix") else { return };
    let t = tempfile::tempdir().unwrap();
    let paths = trees(t.path());
    let files: Vec<&String> = paths
        .iter()
        .filter(|p| Path::new(p).is_file() && !Path::new(p).is_symlink())
        .collect();
    let mut compared = 0;
    for algo in ALGOS {
        for enc in ENCODINGS.iter().map(|e| Some(*e)).chain([None]) {
            let mut args = vec!["--type", algo];
            args.extend(enc);
            // nix hash path / file, all paths at once.
            for (sub, list) in [
                ("path", paths.iter().collect::<Vec<_>>()),
                ("file", files.clone()),
            ] {
                let mut a = vec!["hash", sub];
                a.extend(&args);
                a.extend(list.iter().map(|s| s.as_str()));
                assert_eq!(text(rix(&a)), text(nix_with(&nix_bin, &a, b"")), "{a:?}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 40);
}

#[test]
fn matches_legacy_nix_hash() {
    let Some(nix_hash) = nix("nix-hash") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let paths = trees(t.path());
    for algo in ALGOS {
        for p in &paths {
            // nix-hash prints base16 by default, --base32 on request; --flat hashes contents.
            let want16 = text(nix_with(&nix_hash, &["--type", algo, p], b""));
            assert_eq!(
                text(rix(&["hash", "path", "--type", algo, "--base16", p])),
                want16,
                "{algo} {p}"
            );
            let want32 = text(nix_with(&nix_hash, &["--type", algo, "--base32", p], b""));
            assert_eq!(
                text(rix(&["hash", "path", "--type", algo, "--base32", p])),
                want32,
                "{algo} {p}"
            );
            if Path::new(p).is_file() && !Path::new(p).is_symlink() {
                let flat = text(nix_with(&nix_hash, &["--flat", "--type", algo, p], b""));
                assert_eq!(
                    text(rix(&["hash", "file", "--type", algo, "--base16", p])),
                    flat,
                    "{algo} {p}"
                );
            }
        }
    }
}

#[test]
fn convert_matches_nix_hash_to() {
    let Some(nix_bin) = nix("nix") else { return };
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("f");
    std::fs::write(&file, "convert me\n").unwrap();
    let f = file.to_str().unwrap();
    let mut compared = 0;
    for algo in ALGOS {
        // The same hash in every form Nix accepts.
        let b16 = text(rix(&["hash", "file", "--type", algo, "--base16", f]))
            .trim()
            .to_owned();
        let b32 = text(rix(&["hash", "file", "--type", algo, "--base32", f]))
            .trim()
            .to_owned();
        let b64 = text(rix(&["hash", "file", "--type", algo, "--base64", f]))
            .trim()
            .to_owned();
        let sri = text(rix(&["hash", "file", "--type", algo, "--sri", f]))
            .trim()
            .to_owned();
        let typed: Vec<String> = [&b16, &b32, &b64]
            .iter()
            .map(|h| format!("{algo}:{h}"))
            .collect();
        for (to, nix_cmd) in [
            ("base16", "to-base16"),
            ("base32", "to-base32"),
            ("nix32", "to-base32"),
            ("base64", "to-base64"),
            ("sri", "to-sri"),
        ] {
            // Bare hashes need the algorithm; prefixed and SRI ones carry it.
            for h in [&b16, &b32, &b64] {
                let ours = text(rix(&[
                    "hash",
                    "convert",
                    "--to",
                    to,
                    "--hash-algo",
                    algo,
                    h,
                ]));
                let theirs = text(nix_with(
                    &nix_bin,
                    &["hash", nix_cmd, "--type", algo, h],
                    b"",
                ));
                assert_eq!(ours, theirs, "{to} {algo} {h}");
                compared += 1;
            }
            let mut all: Vec<&str> = typed.iter().map(String::as_str).collect();
            all.push(&sri);
            let mut a = vec!["hash", "convert", "--to", to];
            a.extend(&all);
            let mut n = vec!["hash", nix_cmd];
            n.extend(&all);
            assert_eq!(
                text(rix(&a)),
                text(nix_with(&nix_bin, &n, b"")),
                "{to} {algo}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 80);
    // Bad input: a clean error naming it.
    let err = fails(rix(&["hash", "convert", "--to", "sri", "sha256:nothex"]));
    assert!(err.contains("sha256:nothex"), "{err}");
    let err = fails(rix(&["hash", "path", "/nonexistent/x"]));
    assert!(err.contains("/nonexistent/x"), "{err}");
}
