//! `rix derivation show|check|add` against `nix show-derivation` (Nix 2.8) and
//! `nix-instantiate` on the same `.drv` files.

mod rixcmd;

use std::path::Path;

use rixcmd::*;

/// Derivations of every kind Nix 2.8 writes: multiple outputs, fixed outputs
/// (flat and recursive), inputs of both kinds, environments with escapes and
/// non-ASCII text.
const EXPR: &str = r#"
let
  dep = derivation { name = "dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo dep > $out"]; };
  flat = derivation { name = "flat"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "printf hello > $out"];
    outputHashMode = "flat"; outputHashAlgo = "sha256";
    outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  recursive = derivation { name = "rec"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "mkdir $out"];
    outputHashMode = "recursive"; outputHashAlgo = "sha1"; outputHash = "0000000000000000000000000000000000000000"; };
  src = builtins.toFile "src.txt" "source";
in {
  top = derivation {
    name = "top"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = ["out" "dev" "doc"];
    args = ["-c" "echo ${dep} ${flat} ${src} > $out; echo > $dev; echo > $doc"];
    weird = "tab\there \"quoted\" back\\slash\nnewline é ∀ \r";
    empty = "";
    list = [1 2 "three" null true];
  };
  mid = derivation { name = "mid"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${recursive} > $out"]; };
}
"#;

struct Fixture {
    store: TempStore,
    /// The `.drv` paths of `top` and `mid`.
    drvs: Vec<String>,
}

fn instantiate() -> Option<Fixture> {
    let nix_inst = nix("nix-instantiate")?;
    let store = TempStore::new();
    let expr = store.dir.path().join("drvs.nix");
    std::fs::write(&expr, EXPR).unwrap();
    let out = ok_str(nix_in(
        &store,
        &nix_inst,
        &["-A", "top", "-A", "mid", expr.to_str().unwrap()],
        b"",
    ));
    let drvs = out.lines().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(drvs.len(), 2);
    Some(Fixture { store, drvs })
}

#[test]
fn show_is_byte_identical_to_nix() {
    let Some(f) = instantiate() else { return };
    let nix_bin = nix("nix").unwrap();
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for d in &f.drvs {
        cases.push(vec![d]);
        cases.push(vec!["-r", d]);
    }
    cases.push(f.drvs.iter().map(String::as_str).collect());
    let all_recursive: Vec<&str> = ["--recursive"]
        .into_iter()
        .chain(f.drvs.iter().map(String::as_str))
        .collect();
    cases.push(all_recursive);
    for args in cases {
        let mut nix_args = vec!["show-derivation"];
        nix_args.extend(&args);
        let theirs = ok(nix_in(&f.store, &nix_bin, &nix_args, b""));
        let mut rix_args = vec!["derivation", "show"];
        rix_args.extend(&args);
        let ours = ok(rix_in(&f.store, &rix_args, b""));
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{args:?}"
        );
    }
}

#[test]
fn show_works_on_files_outside_the_store() {
    let Some(f) = instantiate() else { return };
    let nix_bin = nix("nix").unwrap();
    let top = &f.drvs[0];
    let theirs = ok(nix_in(&f.store, &nix_bin, &["show-derivation", top], b""));
    let copy = f.store.dir.path().join("copy.drv");
    std::fs::copy(top, &copy).unwrap();
    // With the store selected, and without: its store directory is found from
    // its contents, its path computed.
    assert_eq!(
        ok(rix_in(
            &f.store,
            &["derivation", "show", copy.to_str().unwrap()],
            b""
        )),
        theirs
    );
    assert_eq!(
        ok(rix(&["derivation", "show", copy.to_str().unwrap()])),
        theirs
    );
    let err = fails(rix(&["derivation", "show", "/nonexistent/x.drv"]));
    assert!(err.contains("/nonexistent/x.drv"), "{err}");
}

#[test]
fn check_reports_each_output() {
    let Some(f) = instantiate() else { return };
    for d in &f.drvs {
        let out = ok_str(rix_in(&f.store, &["derivation", "check", d], b""));
        assert!(out.starts_with(&format!("{d}\n")), "{out}");
        assert!(out.contains("  .drv path: ok"), "{out}");
        assert!(!out.contains("WRONG"), "{out}");
    }
    let out = ok_str(rix_in(&f.store, &["derivation", "check", &f.drvs[0]], b""));
    for o in ["out", "dev", "doc"] {
        assert!(
            out.contains(&format!("  {o}: "))
                && out
                    .lines()
                    .any(|l| l.starts_with(&format!("  {o}: ")) && l.ends_with(" ok")),
            "{out}"
        );
    }
    // Tamper with the declared path of `out` (not its env var), then with the env var.
    let aterm = std::fs::read_to_string(&f.drvs[0]).unwrap();
    let text = &aterm;
    let start = text.find("(\"out\",\"").unwrap() + 8;
    let out_path = &text[start..start + text[start..].find('"').unwrap()];
    let base = Path::new(out_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let forged = format!(
        "{}{}",
        if base.starts_with('0') { "1" } else { "0" },
        &base[1..]
    );
    let forged_path = out_path.replace(&base, &forged);
    let bad_path = text.replacen(out_path, &forged_path, 1);
    let dir = f.store.dir.path();
    std::fs::write(dir.join("bad-path.drv"), &bad_path).unwrap();
    let out = rix_in(
        &f.store,
        &[
            "derivation",
            "check",
            dir.join("bad-path.drv").to_str().unwrap(),
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = fails(out);
    assert!(
        stdout.contains(&format!(
            "  out: WRONG path {forged_path}, should be {out_path}"
        )),
        "{stdout}"
    );
    assert!(err.contains("1 of 1 derivations"), "{err}");
    // The env var too: replace both occurrences.
    let bad_both = text.replace(out_path, &forged_path);
    std::fs::write(dir.join("bad-both.drv"), &bad_both).unwrap();
    let out = rix_in(
        &f.store,
        &[
            "derivation",
            "check",
            dir.join("bad-both.drv").to_str().unwrap(),
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    fails(out);
    assert!(
        stdout.contains("WRONG environment variable 'out'"),
        "{stdout}"
    );
    // A .drv in a store directory whose contents do not give its name.
    let fake_store = dir.join("fake");
    std::fs::create_dir(&fake_store).unwrap();
    let sd = f.store.store_dir();
    let sd = sd.to_str().unwrap();
    for entry in std::fs::read_dir(f.store.store_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().ends_with(".drv") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(
                fake_store.join(entry.file_name()),
                text.replace(sd, fake_store.to_str().unwrap()),
            )
            .unwrap();
        }
    }
    // `dep` has no inputs (fixed-output inputs, moved, would not parse).
    let named = std::fs::read_dir(&fake_store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-dep.drv"))
        .unwrap();
    let out = rix(&["derivation", "check", named.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    fails(out);
    assert!(stdout.contains(".drv path: WRONG"), "{stdout}");
    // Missing inputs: a clean error naming the input and where it was looked for.
    let lonely = tempfile::tempdir().unwrap();
    let moved = lonely.path().join("top.drv");
    std::fs::write(&moved, aterm.replace(sd, "/nonexistent/store")).unwrap();
    let err = fails(rix(&["derivation", "check", moved.to_str().unwrap()]));
    assert!(
        err.contains(".drv is in none of /") && err.contains("--store"),
        "{err}"
    );
}

/// `rix derivation add` computes the same `.drv` as `nix-instantiate` from the
/// JSON `nix show-derivation` prints, with output paths left out or given.
#[test]
fn add_recreates_what_nix_instantiated() {
    let Some(f) = instantiate() else { return };
    let nix_bin = nix("nix").unwrap();
    let nix_store = nix("nix-store").unwrap();
    for d in &f.drvs {
        let shown = ok(nix_in(&f.store, &nix_bin, &["show-derivation", d], b""));
        // Remove it (nothing refers to it and it was not built), then add it back.
        ok(nix_in(&f.store, &nix_store, &["--delete", d], b""));
        assert!(!Path::new(d).exists());
        assert_eq!(
            ok_str(rix_in(&f.store, &["derivation", "add"], &shown)).trim(),
            d
        );
        ok(nix_in(
            &f.store,
            &nix_store,
            &["--verify", "--check-contents"],
            b"",
        ));
        assert_eq!(
            ok(nix_in(&f.store, &nix_bin, &["show-derivation", d], b"")),
            shown
        );
        // The bare object, with output paths and their env vars blanked.
        let mut v: serde_json::Value = serde_json::from_slice(&shown).unwrap();
        let mut drv = v.as_object_mut().unwrap().remove(d.as_str()).unwrap();
        let outputs: Vec<String> = drv["outputs"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for o in &outputs {
            let out = drv["outputs"][o].as_object_mut().unwrap();
            if !out.contains_key("hash") {
                out.remove("path");
                drv["env"][o] = "".into();
            }
        }
        let bare = serde_json::to_vec(&drv).unwrap();
        assert_eq!(
            ok_str(rix_in(&f.store, &["derivation", "add"], &bare)).trim(),
            d
        );
    }
    // Errors: not JSON, unknown fields, inputs missing from the store.
    let err = fails(rix_in(&f.store, &["derivation", "add"], b"not json"));
    assert!(err.contains("not JSON"), "{err}");
    let err = fails(rix_in(&f.store, &["derivation", "add"], br#"{"x": 1}"#));
    assert!(err.contains("'x'"), "{err}");
    let shown = ok(nix_in(
        &f.store,
        &nix_bin,
        &["show-derivation", &f.drvs[0]],
        b"",
    ));
    let other = TempStore::new();
    let text = String::from_utf8(shown).unwrap().replace(
        f.store.store_dir().to_str().unwrap(),
        other.store_dir().to_str().unwrap(),
    );
    let err = fails(rix_in(&other, &["derivation", "add"], text.as_bytes()));
    assert!(
        err.contains("is not valid") && err.contains("add it first"),
        "{err}"
    );
}

#[test]
fn help_is_there() {
    for sub in ["show", "check", "add"] {
        let out = ok_str(rix(&["derivation", sub, "--help"]));
        assert!(out.contains("Usage: rix derivation"), "{out}");
    }
}

/// Newer Nix's JSON (`"version": 4`, base-name paths, `inputs`), from Nix's own
/// test data: the output paths rix fills in are the ones the vectors declare.
#[test]
fn add_reads_newer_json() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().to_str().unwrap();
    for (vector, kind) in [
        (
            "nix-libstore/derivation/ia/advanced-attributes-defaults.json",
            "ia",
        ),
        (
            "nix-libstore/derivation/ia/advanced-attributes-structured-attrs-defaults.json",
            "ia",
        ),
        (
            "nix-libstore/derivation/ca/advanced-attributes-defaults.json",
            "ca",
        ),
    ] {
        let json = std::fs::read(rix_testutil::vectors(vector)).unwrap();
        let out = ok_str(rix_with(&["--store", store, "derivation", "add"], &json));
        let drv = out.trim();
        assert!(
            drv.starts_with("/nix/store/") && drv.ends_with(".drv"),
            "{out}"
        );
        let check = ok_str(rix(&["--store", store, "derivation", "check", drv]));
        assert!(
            check.contains(".drv path: ok") && !check.contains("WRONG"),
            "{check}"
        );
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        for (name, o) in v["outputs"].as_object().unwrap() {
            match (kind, o.get("path").and_then(|p| p.as_str())) {
                ("ia", Some(p)) => assert!(
                    check.contains(&format!("  {name}: /nix/store/{p} ok")),
                    "{check}"
                ),
                _ => assert!(
                    check.contains(&format!("  {name}: content-addressed")),
                    "{check}"
                ),
            }
        }
    }
}

/// A derivation with thousands of outputs, every other one declaring a wrong
/// path: each output gets exactly its own verdict (the check used to compare
/// every output with every problem, quadratic in the outputs).
#[test]
fn check_of_many_outputs_reports_each_one() {
    let Some(nix_inst) = nix("nix-instantiate") else {
        return;
    };
    const N: usize = 3000;
    let store = TempStore::new();
    let expr = store.dir.path().join("many.nix");
    std::fs::write(
        &expr,
        format!(
            r#"derivation {{ name = "many"; system = "x86_64-linux"; builder = "/bin/sh";
                outputs = builtins.genList (i: "o${{toString i}}") {N}; }}"#
        ),
    )
    .unwrap();
    let out = ok_str(nix_in(&store, &nix_inst, &[expr.to_str().unwrap()], b""));
    let drv = out.trim().split('!').next().unwrap().to_owned();
    let aterm = std::fs::read_to_string(&drv).unwrap();
    let sd = store.store_dir();
    let sd = sd.to_str().unwrap();
    let bogus = "1".repeat(32);
    // Break the declared path of every even output (not its environment variable).
    let mut text = aterm.clone();
    for i in (0..N).step_by(2) {
        let key = format!("(\"o{i}\",\"{sd}/");
        let at = text.find(&key).unwrap() + key.len();
        text.replace_range(at..at + 32, &bogus);
    }
    let file = store.dir.path().join("wrong.drv");
    std::fs::write(&file, text).unwrap();
    let out = rix_in(
        &store,
        &["derivation", "check", file.to_str().unwrap()],
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = fails(out);
    assert!(
        err.contains("1 of 1 derivations declare wrong paths"),
        "{err}"
    );
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), N, "{stdout}");
    let mut seen = 0;
    for l in lines {
        let (name, verdict) = l.trim_start().split_once(": ").unwrap();
        let i: usize = name[1..].parse().unwrap();
        if i.is_multiple_of(2) {
            assert!(
                verdict.starts_with(&format!(
                    "WRONG path {sd}/{bogus}-many-o{i}, should be {sd}/"
                )) && verdict.ends_with(&format!("-many-o{i}")),
                "{l}"
            );
        } else {
            assert!(
                verdict.starts_with(&format!("{sd}/"))
                    && verdict.ends_with(&format!("-many-o{i} ok")),
                "{l}"
            );
        }
        seen += 1;
    }
    assert_eq!(seen, N);
}
