//! `rix path-info`, `rix store refs|referrers|closure|ls|cat|verify|export|import`,
//! `rix why-depends` and `rix log` against Nix 2.8 on a store Nix built.

mod rixcmd;

use rixcmd::*;

/// A small DAG whose outputs refer to each other in files, symlinks and
/// directories, with build logs; plus a source and a text file with a reference.
const EXPR: &str = r#"
let
  sh = "/bin/sh";
  leaf = derivation { name = "leaf"; system = "x86_64-linux"; builder = sh;
    args = ["-c" "echo building leaf; echo leaf > $out"]; };
  fixed = derivation { name = "fixed"; system = "x86_64-linux"; builder = sh; args = ["-c" "printf hello > $out"];
    outputHashMode = "flat"; outputHashAlgo = "sha256";
    outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  mid = derivation { name = "mid"; system = "x86_64-linux"; builder = sh; outputs = ["out" "lib"];
    args = ["-c" "echo building mid >&2; /bin/mkdir -p $out/bin $lib; echo 'exec ${leaf}' > $out/bin/run; /bin/ln -s ${leaf} $out/leaf-link; echo ${fixed} > $lib/data"]; };
  src = builtins.toFile "src.txt" "source text";
  top = derivation { name = "top"; system = "x86_64-linux"; builder = sh;
    args = ["-c" "/bin/mkdir $out; echo ${mid} ${src} > $out/refs; echo ${mid.lib}/data >> $out/refs; echo ${leaf} > $out/direct"]; };
in top
"#;

struct Built {
    store: TempStore,
    drv: String,
    top: String,
}

impl Built {
    fn dir(&self) -> String {
        self.store.store_dir().to_str().unwrap().to_owned()
    }

    /// The store path whose name ends with `-suffix`.
    fn named(&self, suffix: &str) -> String {
        let mut found: Vec<String> = std::fs::read_dir(self.store.store_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(&format!("-{suffix}")) && !n.ends_with(".lock"))
            .collect();
        assert_eq!(found.len(), 1, "{suffix}: {found:?}");
        format!("{}/{}", self.dir(), found.remove(0))
    }
}

fn build() -> Option<Built> {
    let nix_inst = nix("nix-instantiate")?;
    let nix_store = nix("nix-store")?;
    let store = TempStore::new();
    let expr = store.dir.path().join("dag.nix");
    std::fs::write(&expr, EXPR).unwrap();
    let drv = ok_str(nix_in(&store, &nix_inst, &[expr.to_str().unwrap()], b""))
        .trim()
        .to_owned();
    let top = ok_str(nix_in(&store, &nix_store, &["-r", &drv], b""))
        .trim()
        .to_owned();
    Some(Built { store, drv, top })
}

fn all_valid(b: &Built) -> Vec<String> {
    let nix_store = nix("nix-store").unwrap();
    let out = ok_str(nix_in(
        &b.store,
        &nix_store,
        &["-q", "--requisites", &b.top, &b.drv],
        b"",
    ));
    out.lines().map(str::to_owned).collect()
}

#[track_caller]
fn same(ours: Vec<u8>, theirs: Vec<u8>, what: &str) {
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs),
        "{what}"
    );
}

#[test]
fn path_info_matches_nix() {
    let Some(b) = build() else { return };
    let nix_bin = nix("nix").unwrap();
    let mid = b.named("mid");
    let src = b.named("src.txt");
    let cases: Vec<Vec<&str>> = vec![
        vec![&b.top],
        vec!["-r", &b.top],
        vec!["-rs", &b.top],
        vec!["-rsS", &b.top],
        vec!["-r", "-s", "-S", "-h", &b.top],
        vec!["--sigs", "-r", &b.top],
        vec![&src, &mid, &b.top],
        vec!["--json", &b.top],
        vec!["--json", "-r", &b.top],
        vec!["--json", "-rS", &b.top],
        vec!["--json", "--all"],
        vec!["--json", "-S", "--all"],
        vec![&b.drv],
        vec!["--json", &b.drv],
        vec!["-r", "--derivation", &b.drv],
        vec!["--json", "-r", "--derivation", &b.drv],
    ];
    for args in &cases {
        let mut nix_args = vec!["path-info"];
        nix_args.extend(args);
        let mut rix_args = vec!["path-info"];
        rix_args.extend(args);
        same(
            ok(rix_in(&b.store, &rix_args, b"")),
            ok(nix_in(&b.store, &nix_bin, &nix_args, b"")),
            &format!("{args:?}"),
        );
    }
    // A path inside a store object, and a symlink to one, name it.
    let link = b.store.dir.path().join("result");
    std::os::unix::fs::symlink(&b.top, &link).unwrap();
    let inside = format!("{}/refs", b.top);
    for arg in [inside.as_str(), link.to_str().unwrap()] {
        assert_eq!(
            ok_str(rix_in(&b.store, &["path-info", arg], b"")),
            format!("{}\n", b.top)
        );
    }
    // Invalid paths: in JSON as Nix shows them, an error otherwise.
    let bogus = format!("{}/00000000000000000000000000000000-nope", b.dir());
    same(
        ok(rix_in(&b.store, &["path-info", "--json", &bogus], b"")),
        ok(nix_in(
            &b.store,
            &nix_bin,
            &["path-info", "--json", &bogus],
            b"",
        )),
        "invalid",
    );
    let err = fails(rix_in(&b.store, &["path-info", &bogus], b""));
    assert!(err.contains(&bogus) && err.contains("not valid"), "{err}");
    let err = fails(rix_in(&b.store, &["path-info", "/etc/passwd"], b""));
    assert!(err.contains("not in the store"), "{err}");
}

#[test]
fn queries_match_nix_store_q() {
    let Some(b) = build() else { return };
    let nix_store = nix("nix-store").unwrap();
    let paths = all_valid(&b);
    assert!(paths.len() >= 10, "{paths:?}");
    let mut compared = 0;
    for (ours, theirs) in [
        ("refs", "--references"),
        ("referrers", "--referrers"),
        ("closure", "--requisites"),
    ] {
        let mut arg_sets: Vec<Vec<&str>> = paths.iter().map(|p| vec![p.as_str()]).collect();
        arg_sets.push(paths.iter().map(String::as_str).collect());
        arg_sets.push(vec![&b.top, &b.drv]);
        for args in arg_sets {
            let mut r = vec!["store", ours];
            r.extend(&args);
            let mut n = vec!["-q", theirs];
            n.extend(&args);
            same(
                ok(rix_in(&b.store, &r, b"")),
                ok(nix_in(&b.store, &nix_store, &n, b"")),
                &format!("{ours} {args:?}"),
            );
            compared += 1;
        }
    }
    assert!(compared >= 36);
    let err = fails(rix_in(
        &b.store,
        &[
            "store",
            "refs",
            &format!("{}/00000000000000000000000000000000-x", b.dir()),
        ],
        b"",
    ));
    assert!(err.contains("not valid"), "{err}");
}

#[test]
fn why_depends_matches_nix() {
    let Some(b) = build() else { return };
    let nix_bin = nix("nix").unwrap();
    let leaf = b.named("leaf");
    let fixed = b.named("fixed");
    let mid = b.named("mid");
    let src = b.named("src.txt");
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for dep in [&leaf, &fixed, &mid, &src, &b.top] {
        for flags in [&[][..], &["-a"], &["--precise"], &["--precise", "--all"]] {
            let mut args: Vec<&str> = flags.to_vec();
            args.extend([b.top.as_str(), dep.as_str()]);
            cases.push(args);
        }
    }
    for args in &cases {
        let mut n = vec!["why-depends"];
        n.extend(args);
        let mut r = vec!["why-depends"];
        r.extend(args);
        same(
            ok(rix_in(&b.store, &r, b"")),
            ok(nix_in(&b.store, &nix_bin, &n, b"")),
            &format!("{args:?}"),
        );
    }
    // The chain without colours, as text.
    let out = rix_in(&b.store, &["why-depends", &b.top, &leaf], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("└───{leaf}")));
    // No dependency: an error (Nix says so on stderr, but exits 0).
    let err = fails(rix_in(&b.store, &["why-depends", &leaf, &b.top], b""));
    assert!(err.contains("does not depend on"), "{err}");
}

#[test]
fn ls_and_cat_match_nix() {
    let Some(b) = build() else { return };
    let nix_bin = nix("nix").unwrap();
    let mid = b.named("mid");
    let src = b.named("src.txt");
    let bin = format!("{mid}/bin");
    let run = format!("{mid}/bin/run");
    let link = format!("{mid}/leaf-link");
    for path in [&mid, &bin, &run, &link, &src, &b.top] {
        for flags in [
            &[][..],
            &["-l"],
            &["-R"],
            &["-lR"],
            &["-d"],
            &["--json"],
            &["--json", "-R"],
        ] {
            let mut n = vec!["store", "ls"];
            n.extend(flags);
            n.push(path);
            same(
                ok(rix_in(&b.store, &n, b"")),
                ok(nix_in(&b.store, &nix_bin, &n, b"")),
                &format!("{n:?}"),
            );
        }
    }
    for path in [&run, &src, &format!("{}/refs", b.top)] {
        let n = ["store", "cat", path.as_str()];
        same(
            ok(rix_in(&b.store, &n, b"")),
            ok(nix_in(&b.store, &nix_bin, &n, b"")),
            path,
        );
    }
    let err = fails(rix_in(&b.store, &["store", "cat", &bin], b""));
    assert!(err.contains("not a regular file"), "{err}");
    let err = fails(rix_in(
        &b.store,
        &["store", "ls", &format!("{mid}/nope")],
        b"",
    ));
    assert!(err.contains("does not exist"), "{err}");
}

/// `rix derivation show` of an output path shows its deriver, as Nix does.
#[test]
fn derivation_show_of_an_output() {
    let Some(b) = build() else { return };
    let nix_bin = nix("nix").unwrap();
    let mid = b.named("mid");
    for p in [&b.top, &mid] {
        same(
            ok(rix_in(&b.store, &["derivation", "show", p], b"")),
            ok(nix_in(&b.store, &nix_bin, &["show-derivation", p], b"")),
            p,
        );
    }
    let src = b.named("src.txt");
    let err = fails(rix_in(&b.store, &["derivation", "show", &src], b""));
    assert!(err.contains("no derivation that produced it"), "{err}");
}

#[test]
fn log_matches_nix() {
    let Some(b) = build() else { return };
    let nix_store = nix("nix-store").unwrap();
    let leaf = b.named("leaf");
    let mid = b.named("mid");
    let leaf_drv = b.named("leaf.drv");
    for p in [&leaf, &leaf_drv, &mid] {
        let ours = ok(rix_in(&b.store, &["log", p], b""));
        same(
            ours.clone(),
            ok(nix_in(&b.store, &nix_store, &["--read-log", p], b"")),
            p,
        );
        assert!(String::from_utf8_lossy(&ours).contains("building"), "{p}");
    }
    let src = b.named("src.txt");
    let err = fails(rix_in(&b.store, &["log", &src], b""));
    assert!(err.contains("no build log"), "{err}");
}

#[test]
fn verify_finds_problems() {
    let Some(b) = build() else { return };
    ok(rix_in(
        &b.store,
        &["store", "verify", "--check-contents"],
        b"",
    ));
    let dir = b.store.store_dir();
    // Temporaries of live processes, lock files and .links are not problems.
    std::fs::write(dir.join(format!(".rix-tmp-{}-0-x", std::process::id())), "").unwrap();
    std::fs::write(dir.join("00000000000000000000000000000000-x.lock"), "").unwrap();
    std::fs::create_dir_all(dir.join(".links")).unwrap();
    ok(rix_in(&b.store, &["store", "verify"], b""));
    // A stray file, a modified path, a missing path; a dead process's
    // temporary is a leftover, not a problem.
    std::fs::write(dir.join("stray"), "").unwrap();
    std::fs::write(dir.join(".rix-tmp-999999999-0-x"), "").unwrap();
    let fixed = b.named("fixed");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fixed, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&fixed, "HELLO").unwrap();
    let src = b.named("src.txt");
    std::fs::remove_file(&src).unwrap();
    // Without --check-contents the modification goes unnoticed.
    let out = rix_in(&b.store, &["store", "verify"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = fails(out);
    assert!(err.contains("2 problem"), "{err}\n{stdout}");
    assert!(
        err.contains("1 temporary file(s) of rix processes killed mid-write"),
        "{err}"
    );
    let out = rix_in(&b.store, &["store", "verify", "--check-contents"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = fails(out);
    assert!(err.contains("3 problem"), "{err}\n{stdout}");
    assert!(
        stdout.contains(&format!("path '{fixed}' was modified")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "path '{src}' disappeared, but it still has valid referrers"
        )) && stdout.contains(&b.drv),
        "{stdout}"
    );
    assert!(
        stdout.contains("/stray' in the store directory is not a store path"),
        "{stdout}"
    );
    assert!(!stdout.contains(".rix-tmp-999999999-0-x"), "{stdout}");
    // --repair removes it.
    let out = rix_in(&b.store, &["store", "verify", "--repair"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(".rix-tmp-999999999-0-x' (left by a killed rix process)"),
        "{stdout}"
    );
    assert!(!dir.join(".rix-tmp-999999999-0-x").exists());
}

/// The closure of `top` and its `.drv`, for export.
fn export_closure(b: &Built) -> Vec<String> {
    all_valid(b)
}

#[test]
fn export_is_byte_identical_and_imports_both_ways() {
    let Some(b) = build() else { return };
    let nix_store = nix("nix-store").unwrap();
    let nix_bin = nix("nix").unwrap();
    let closure = export_closure(&b);
    let mut nix_args = vec!["--export"];
    nix_args.extend(closure.iter().map(String::as_str));
    let theirs = ok(nix_in(&b.store, &nix_store, &nix_args, b""));
    let ours = ok(rix_in(&b.store, &["store", "export", &b.top, &b.drv], b""));
    assert!(
        ours == theirs,
        "rix store export differs from nix-store --export"
    );
    let single = ok(rix_in(
        &b.store,
        &["store", "export", "--no-closure", &b.top],
        b"",
    ));
    assert!(single == ok(nix_in(&b.store, &nix_store, &["--export", &b.top], b"")));
    // Other stores with the same store directory (and their own files).
    let other = |name: &str| {
        let root = b.store.dir.path().join(name);
        format!(
            "local?store={}&real={}/store&state={}/state&log={}/log",
            b.dir(),
            root.display(),
            root.display(),
            root.display()
        )
    };
    let info = |url: &str, tool: bool| {
        let args = ["path-info", "--json", "-r", &b.top, &b.drv];
        let out = if tool {
            ok(nix_url(&nix_bin, url, &args, b""))
        } else {
            ok(rix_url(url, &args, b""))
        };
        let mut v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for p in v.as_array_mut().unwrap() {
            let o = p.as_object_mut().unwrap();
            o.remove("registrationTime");
            o.remove("ultimate");
        }
        v
    };
    // The export format has no content addresses: Nix's import drops them.
    let mut want = info(&b.store.url(), true);
    for p in want.as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("ca");
    }
    // rix's export into Nix, Nix's into rix, rix's into rix.
    for (name, data, importer_is_nix) in [
        ("a", &ours, true),
        ("b", &theirs, false),
        ("c", &ours, false),
    ] {
        let url = other(name);
        let printed = if importer_is_nix {
            ok_str(nix_url(&nix_store, &url, &["--import"], data))
        } else {
            ok_str(rix_url(&url, &["store", "import"], data))
        };
        assert_eq!(printed.lines().count(), closure.len(), "{name}: {printed}");
        ok(nix_url(
            &nix_store,
            &url,
            &["--verify", "--check-contents"],
            b"",
        ));
        ok(rix_url(&url, &["store", "verify", "--check-contents"], b""));
        assert_eq!(info(&url, true), want, "{name}");
        // Importing again changes nothing.
        ok(rix_url(&url, &["store", "import"], data));
    }
}

#[test]
fn bad_imports_are_clean_errors() {
    let Some(b) = build() else { return };
    let good = ok(rix_in(&b.store, &["store", "export", &b.top], b""));
    let target = TempStore::new();
    let url = format!(
        "local?store={}&real={}/store&state={}/state&log={}/log",
        b.dir(),
        target.dir.path().display(),
        target.dir.path().display(),
        target.dir.path().display()
    );
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in (0..good.len()).step_by(good.len() / 25) {
        bad.push((format!("cut at {cut}"), good[..cut].to_vec()));
    }
    // A wrong magic number after the first NAR.
    let mut wrong_magic = good.clone();
    let pos = good
        .windows(8)
        .position(|w| w == 0x4558_494eu64.to_le_bytes())
        .unwrap();
    wrong_magic[pos] ^= 1;
    bad.push(("wrong magic".into(), wrong_magic));
    // The closure without its first path: a missing reference.
    let first_len = pos + 8;
    let path_len = u64::from_le_bytes(good[first_len..first_len + 8].try_into().unwrap()) as usize;
    let mut after = first_len + 8 + path_len.div_ceil(8) * 8;
    let refs = u64::from_le_bytes(good[after..after + 8].try_into().unwrap()) as usize;
    after += 8;
    for _ in 0..refs {
        let l = u64::from_le_bytes(good[after..after + 8].try_into().unwrap()) as usize;
        after += 8 + l.div_ceil(8) * 8;
    }
    let l = u64::from_le_bytes(good[after..after + 8].try_into().unwrap()) as usize;
    after += 8 + l.div_ceil(8) * 8 + 8;
    // (First: the cut streams below import the complete paths before the cut.)
    bad.insert(0, ("missing reference".into(), good[after..].to_vec()));
    bad.push(("garbage".into(), b"garbage!".to_vec()));
    for (what, data) in &bad {
        if data.is_empty() {
            continue;
        }
        let err = fails(rix_url(&url, &["store", "import"], data));
        assert!(
            err.contains("byte") || err.contains("is not valid"),
            "{what}: {err}"
        );
    }
    // Nothing half-imported is left valid or on disk but the complete paths before
    // the error.
    ok(rix_url(&url, &["store", "verify", "--check-contents"], b""));
}

#[test]
fn help_is_there() {
    for args in [
        &["path-info", "--help"][..],
        &["why-depends", "--help"],
        &["log", "--help"],
        &["store", "refs", "--help"],
        &["store", "referrers", "--help"],
        &["store", "closure", "--help"],
        &["store", "ls", "--help"],
        &["store", "cat", "--help"],
        &["store", "verify", "--help"],
        &["store", "export", "--help"],
        &["store", "import", "--help"],
    ] {
        let out = ok_str(rix(args));
        assert!(out.contains("Usage: rix"), "{out}");
    }
}
