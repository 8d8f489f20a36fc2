//! `rix nar dump|restore|ls|cat` against `nix-store --dump/--restore` and
//! `nix nar ls|cat` of Nix 2.8, and on bad archives.

mod rixcmd;

use std::path::Path;

use rixcmd::*;

fn nar_of(dir: &Path) -> Vec<u8> {
    ok(rix(&["nar", "dump", dir.to_str().unwrap()]))
}

#[test]
fn dump_is_nix_store_dump() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    sample_tree(&tree);
    let ours = nar_of(&tree);
    // The alias Nix uses works too.
    assert_eq!(ok(rix(&["nar", "dump-path", tree.to_str().unwrap()])), ours);
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    for p in [
        tree.clone(),
        tree.join("a"),
        tree.join("sub/rel"),
        tree.join("empty"),
        tree.join("bin"),
    ] {
        let theirs = ok(nix_with(&nix_store, &["--dump", p.to_str().unwrap()], b""));
        assert_eq!(nar_of(&p), theirs, "{}", p.display());
    }
}

#[test]
fn restore_round_trips_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    sample_tree(&tree);
    let nar = nar_of(&tree);
    let out = t.path().join("out");
    ok(rix_with(&["nar", "restore", out.to_str().unwrap()], &nar));
    assert_eq!(nar_of(&out), nar);
    // Restoring over an existing path fails and leaves it alone.
    let err = fails(rix_with(&["nar", "restore", out.to_str().unwrap()], &nar));
    assert!(err.contains("already exists"), "{err}");
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    // Nix unpacks what rix wrote, and rix what Nix wrote, to the same tree.
    let by_nix = t.path().join("by-nix");
    ok(nix_with(
        &nix_store,
        &["--restore", by_nix.to_str().unwrap()],
        &nar,
    ));
    let nix_nar = ok(nix_with(
        &nix_store,
        &["--dump", by_nix.to_str().unwrap()],
        b"",
    ));
    assert_eq!(nix_nar, nar);
    let by_rix = t.path().join("by-rix");
    ok(rix_with(
        &["nar", "restore", by_rix.to_str().unwrap()],
        &nix_nar,
    ));
    assert_eq!(
        ok(nix_with(
            &nix_store,
            &["--dump", by_rix.to_str().unwrap()],
            b""
        )),
        nar
    );
}

#[test]
fn ls_is_byte_identical_to_nix() {
    let Some(nix_bin) = nix("nix") else { return };
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    sample_tree(&tree);
    let nar_path = t.path().join("tree.nar");
    std::fs::write(&nar_path, nar_of(&tree)).unwrap();
    let single = t.path().join("single.nar");
    std::fs::write(&single, nar_of(&tree.join("bin"))).unwrap();
    let flag_sets: &[&[&str]] = &[
        &[],
        &["-l"],
        &["-R"],
        &["-l", "-R"],
        &["-d"],
        &["-d", "-R", "-l"],
        &["--json"],
        &["--json", "-R"],
        &["--long", "--recursive", "--directory"],
    ];
    let cases: &[(&Path, &[&str])] = &[
        (
            &nar_path,
            &[
                "/",
                "/a",
                "/sub",
                "/sub/rel",
                "/sub/deeper",
                "/empty",
                "/dangling",
                "/sub/é",
                "/bin",
            ],
        ),
        (&single, &["/"]),
    ];
    let mut compared = 0;
    for (nar, paths) in cases {
        for path in *paths {
            for flags in flag_sets {
                let mut args = vec!["nar", "ls"];
                args.extend_from_slice(flags);
                args.extend([nar.to_str().unwrap(), *path]);
                let ours = ok(rix(&args));
                let theirs = ok(nix_with(&nix_bin, &args, b""));
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs),
                    "rix {args:?}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 90);
    // Standard input works as the NAR file.
    let stdin = ok(rix_with(
        &["nar", "ls", "-R", "-", "/"],
        &std::fs::read(&nar_path).unwrap(),
    ));
    assert_eq!(
        stdin,
        ok(rix(&["nar", "ls", "-R", nar_path.to_str().unwrap(), "/"]))
    );
}

#[test]
fn cat_matches_nix() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    sample_tree(&tree);
    let nar_path = t.path().join("tree.nar");
    std::fs::write(&nar_path, nar_of(&tree)).unwrap();
    let nar = nar_path.to_str().unwrap();
    for (path, want) in [
        ("/a", b"hello\n".to_vec()),
        ("/empty-file", vec![]),
        ("/bin", std::fs::read(tree.join("bin")).unwrap()),
        ("/sub/deeper/deepest/f", "x".repeat(10_000).into_bytes()),
        ("/sub/é", b"accent".to_vec()),
    ] {
        assert_eq!(ok(rix(&["nar", "cat", nar, path])), want, "{path}");
        if let Some(nix_bin) = nix("nix") {
            assert_eq!(
                ok(nix_with(&nix_bin, &["nar", "cat", nar, path], b"")),
                want
            );
        }
    }
    let single = t.path().join("single.nar");
    std::fs::write(&single, nar_of(&tree.join("a"))).unwrap();
    assert_eq!(
        ok(rix(&["nar", "cat", single.to_str().unwrap(), "/"])),
        b"hello\n"
    );
    // Not regular files, missing paths, relative paths: clear errors.
    for (path, says) in [
        ("/sub", "is a directory"),
        ("/sub/rel", "is a symlink"),
        ("/nope", "does not exist"),
        ("/a/b", "does not exist"),
        ("a", "not an absolute path"),
    ] {
        let err = fails(rix(&["nar", "cat", nar, path]));
        assert!(err.contains(says) && err.contains(path), "{path}: {err}");
    }
    for (path, says) in [("/nope", "does not exist"), ("sub", "not an absolute path")] {
        let err = fails(rix(&["nar", "ls", nar, path]));
        assert!(err.contains(says), "{path}: {err}");
    }
    let err = fails(rix(&["nar", "ls", "/nonexistent.nar", "/"]));
    assert!(err.contains("/nonexistent.nar"), "{err}");
}

/// NAR tokens, for hand-made (bad) archives.
fn nar_tokens(tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        out.extend_from_slice(&(t.len() as u64).to_le_bytes());
        out.extend_from_slice(t);
        out.resize(out.len() + (8 - t.len() % 8) % 8, 0);
    }
    out
}

/// A directory holding one entry `name` that is a regular file.
fn nar_with_entry(name: &[u8]) -> Vec<u8> {
    nar_tokens(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
        name,
        b"node",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"pwned",
        b")",
        b")",
        b")",
    ])
}

/// Every command that reads an archive fails cleanly on bad input: exit 1, an
/// error naming the file (or standard input) and the byte offset, no panic, and
/// nothing written outside (or left at) the target.
#[test]
fn bad_archives_are_clean_errors() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    sample_tree(&tree);
    let good = nar_of(&tree);
    let mut bad: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        (
            "garbage".into(),
            b"this is not a NAR at all, not even close".to_vec(),
        ),
        ("dot-dot".into(), nar_with_entry(b"..")),
        ("dot".into(), nar_with_entry(b".")),
        ("slash".into(), nar_with_entry(b"../../escape")),
        ("nul".into(), nar_with_entry(b"a\0b")),
        ("empty-name".into(), nar_with_entry(b"")),
        (
            "trailing".into(),
            [good.clone(), b"extra".to_vec()].concat(),
        ),
    ];
    for cut in (0..good.len())
        .step_by(good.len() / 40)
        .chain([good.len() - 1, good.len() - 8])
    {
        bad.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    let mut flipped = good.clone();
    flipped[200] ^= 0x55;
    bad.push(("flipped byte".into(), flipped));
    for (what, nar) in &bad {
        let file = t.path().join("bad.nar");
        std::fs::write(&file, nar).unwrap();
        let f = file.to_str().unwrap();
        let err = fails(rix(&["nar", "ls", "-R", f, "/"]));
        assert!(err.contains(f) && err.contains("offset"), "{what}: {err}");
        let err = fails(rix(&["nar", "cat", f, "/sub/deeper/deepest/f"]));
        assert!(
            err.contains("offset") || err.contains("does not exist"),
            "{what}: {err}"
        );
        let work = t.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let target = work.join("out");
        let err = fails(rix_with(&["nar", "restore", target.to_str().unwrap()], nar));
        assert!(
            err.contains("offset") && err.contains("out"),
            "{what}: {err}"
        );
        assert!(!target.exists(), "{what}: partial restore left behind");
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "{what}: wrote outside the target"
        );
        std::fs::remove_dir(&work).unwrap();
    }
    assert!(!t.path().join("escape").exists());
}

#[test]
fn help_is_there() {
    for sub in ["dump", "restore", "ls", "cat"] {
        let out = ok_str(rix(&["nar", sub, "--help"]));
        assert!(out.contains("Usage: rix nar"), "{out}");
    }
}

/// A tree 2,000 directories deep (past the old limit of 512, within the
/// ~2,040 levels `PATH_MAX` lets Nix restore), dumped by `nix-store --dump`:
/// `rix nar restore` unpacks it with few file descriptors (at most 256 open),
/// to the tree Nix restores from the same archive.
#[test]
fn a_nar_2000_directories_deep_restores_as_with_nix() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("t");
    let mut bottom = tree.clone();
    for _ in 0..2000 {
        bottom.push("a");
    }
    std::fs::create_dir_all(&bottom).unwrap();
    std::fs::write(bottom.join("f"), "bottom").unwrap();
    let nar = ok(nix_with(
        &nix_store,
        &["--dump", tree.to_str().unwrap()],
        b"",
    ));

    let by_rix = t.path().join("r");
    let mut child = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" nar restore \"$1\""])
        .arg(env!("CARGO_BIN_EXE_rix"))
        .arg(&by_rix)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&nar).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_nix = t.path().join("n");
    ok(nix_with(
        &nix_store,
        &["--restore", by_nix.to_str().unwrap()],
        &nar,
    ));
    for restored in [&by_rix, &by_nix] {
        let again = ok(nix_with(
            &nix_store,
            &["--dump", restored.to_str().unwrap()],
            b"",
        ));
        assert!(again == nar, "{} differs", restored.display());
    }
}
