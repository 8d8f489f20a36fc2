//! `rix instantiate`, `rix eval` and `rix build FILE.nix` as programs: the
//! Nix language test suite run through the binary exactly as Nix runs it
//! (flags from the `.flags` files, `NIX_PATH`, `HOME`, `TEST_VAR`), and
//! differential tests against `nix-instantiate` (printing, JSON, XML,
//! `--parse`, `.drv` paths and files in a temporary store, `--add-root`).

mod rixcmd;

use std::path::{Path, PathBuf};
use std::process::Command;

use rixcmd::*;

/// `rix instantiate` on one suite case, from the directory holding `lang`.
fn run_case(dir: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let flags = std::fs::read_to_string(dir.join(format!("lang/{name}.flags"))).unwrap_or_default();
    // Nix's functional tests enable `flakes` in their nix.conf.
    let mut args: Vec<String> = vec![
        "instantiate".into(),
        "--extra-experimental-features".into(),
        "flakes".into(),
    ];
    args.extend(flags.split_whitespace().map(str::to_owned));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("lang/{name}.nix"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rix"));
    cmd.args(&args)
        .current_dir(dir)
        .env("NIX_PATH", "lang/dir3:lang/dir4")
        .env("HOME", "/fake-home")
        .env("TEST_VAR", "foo");
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hung case must not hang the suite.
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn nix_language_suite_through_the_binary() {
    let tmp = rix_testutil::nix_lang_suite();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let lang = dir.join("lang");
    let pwd = dir.display().to_string();
    let mut names: Vec<String> = std::fs::read_dir(&lang)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".nix").map(str::to_owned))
        .collect();
    names.sort();
    let (mut okay, mut okay_total, mut fail, mut fail_total) = (0, 0, 0, 0);
    let mut failing = Vec::new();
    for name in names {
        let stem = lang.join(&name);
        if name.starts_with("eval-okay-") {
            if Path::new(&format!("{}.exp-disabled", stem.display())).exists() {
                continue;
            }
            let xml = PathBuf::from(format!("{}.exp.xml", stem.display()));
            let (exp, extra): (PathBuf, &[&str]) = if xml.exists() {
                (xml, &["--eval", "--strict", "--xml", "--no-location"])
            } else {
                (
                    PathBuf::from(format!("{}.exp", stem.display())),
                    &["--eval", "--strict"],
                )
            };
            let Ok(expected) = std::fs::read_to_string(&exp) else {
                continue;
            };
            okay_total += 1;
            let out = run_case(&dir, &name, extra);
            let got = String::from_utf8_lossy(&out.stdout)
                .replace(&format!("{pwd}/lang"), "/pwd/lang")
                .replace(&pwd, "/pwd");
            if out.status.success() && got.trim_end() == expected.trim_end() {
                okay += 1;
            } else {
                failing.push(name);
            }
        } else if name.starts_with("eval-fail-") {
            fail_total += 1;
            let out = run_case(&dir, &name, &["--eval", "--strict"]);
            if !out.status.success() && out.stderr.starts_with(b"error:") {
                fail += 1;
            } else {
                failing.push(name);
            }
        }
    }
    println!(
        "through `rix instantiate`: eval-okay {okay}/{okay_total}, eval-fail {fail}/{fail_total}"
    );
    println!("failing: {}", failing.join(" "));
    // Same floors as the in-process runner (crates/rix-eval/tests/nix_lang.rs).
    assert!(okay >= 148, "eval-okay: {okay} passed");
    assert_eq!(fail, fail_total, "every eval-fail case must fail");
}

/// Expressions printed by both (`--eval`, `--strict`, `--json`, `--xml`,
/// `--parse`): against Nix 2.26 when it is there (the oracle rix follows),
/// else Nix 2.8.
#[test]
fn eval_output_matches_nix_instantiate() {
    let current = rix_testutil::nix_current("nix-instantiate").is_some();
    let nix28 = nix("nix-instantiate");
    if !current && nix28.is_none() {
        return;
    }
    let oracle = |args: &[&str]| -> std::process::Output {
        match rix_testutil::nix_current("nix-instantiate") {
            Some(mut cmd) => cmd
                .args(args)
                .env("NIX_CONFIG", NIX_CONFIG)
                .output()
                .expect("run Nix 2.26"),
            None => nix_with(nix28.as_ref().expect("Nix 2.8"), args, b""),
        }
    };
    let exprs = [
        "{ a = 1; b = [ true null 1.5 \"s\" ]; c = { d = ./Cargo.toml; }; }",
        "let f = { x ? 1, ... }@a: x; in f",
        "builtins.toFile \"x\" \"y\"",
        "(derivation { name = \"d\"; system = \"x\"; builder = \"/b\"; }).drvPath",
        "[ (y: y) builtins.map (builtins.map (x: x)) ] ++ [ (builtins.unsafeGetAttrPos \"a\" { a = 1; }) __curPos ]",
        "with builtins; concatStringsSep \"-\" (map toString (genList (x: x * x) 5))",
        // What is still a thunk when printed without --strict
        "rec { a = 1; b = a; c = 1 + 1; d = c; l = [ (1 + 1) ]; e = 2 < 3; }",
        "let a = 1 + 2; in builtins.seq a { inherit a; b = a; c = { }; }",
        "({ a ? 1 + 1, b ? a }: { inherit a b; }) { }",
        "derivation { name = \"a\"; system = \"x\"; builder = \"/b\"; outputs = [ \"out\" \"dev\" ]; }",
        "(derivation { name = \"a\"; system = \"x\"; builder = \"/b\"; outputs = [ \"out\" \"dev\" ]; }).dev",
        "{ a = 1; b = \"x\"; c = [ 1 ]; }",
    ];
    let modes: [&[&str]; 7] = [
        &["--eval"],
        &["--eval", "--json"],
        &["--eval", "--strict"],
        &["--eval", "--strict", "--json"],
        &["--eval", "--strict", "--xml"],
        &["--eval", "--xml", "--no-location"],
        &["--parse"],
    ];
    let mut diffs = Vec::new();
    for e in exprs {
        for m in modes {
            // `--parse` prints `inherit` in later Nix's layout (docs/compatibility.md).
            if m == ["--parse"] && e.contains("inherit") {
                continue;
            }
            let mut args = m.to_vec();
            args.extend(["-E", e]);
            let n = oracle(&args);
            let mut rargs = vec!["instantiate"];
            rargs.extend(&args);
            let r = rix(&rargs);
            let (ns, rs) = (
                String::from_utf8_lossy(&n.stdout),
                String::from_utf8_lossy(&r.stdout),
            );
            if n.status.success() != r.status.success() || (n.status.success() && ns != rs) {
                diffs.push(format!(
                    "{args:?}\n  nix: {ns}{}\n  rix: {rs}{}",
                    String::from_utf8_lossy(&n.stderr),
                    String::from_utf8_lossy(&r.stderr)
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}

/// Instantiating into a store: the same `.drv` paths printed (with
/// `!output` for other outputs), the same files, `--add-root` links.
#[test]
fn instantiate_matches_nix_instantiate() {
    let Some(nix) = nix("nix-instantiate") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("default.nix");
    std::fs::write(work.path().join("src.txt"), "source\n").unwrap();
    std::fs::write(
        &file,
        r#"{ salt ? "" }: let
          mk = name: attrs: derivation ({ inherit name salt; system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
          a = mk "a" { src = ./src.txt; outputs = [ "out" "dev" ]; };
        in {
          inherit a;
          b = mk "b" { dep = a.dev; };
          dev = a.dev;
          nested = { recurseForDerivations = true; c = mk "c" { }; skipped = [ (mk "x" { }) ]; };
          notRecursed = { d = mk "d" { }; };
          "bad name" = mk "e" { };
        }"#,
    )
    .unwrap();
    let file_s = file.display().to_string();
    for args in [
        vec![file_s.as_str()],
        vec![file_s.as_str(), "-A", "b"],
        vec![file_s.as_str(), "-A", "a.dev", "-A", "nested"],
        vec![file_s.as_str(), "--argstr", "salt", "x"],
    ] {
        let ns = TempStore::new();
        let rs_dir = TempStore::new();
        let n = ok_str(nix_in(&ns, &nix, &args, b""));
        // rix into a fresh store at the same path: move Nix's aside first.
        std::fs::rename(
            ns.dir.path().join("store"),
            rs_dir.dir.path().join("nix-store"),
        )
        .unwrap();
        std::fs::rename(
            ns.dir.path().join("state"),
            rs_dir.dir.path().join("nix-state"),
        )
        .unwrap();
        let mut rargs = vec!["instantiate"];
        rargs.extend(&args);
        let r = ok_str(rix_in(&ns, &rargs, b""));
        assert_eq!(r, n, "{args:?}");
        for line in n.lines() {
            let p = line.split('!').next().unwrap();
            let name = Path::new(p).file_name().unwrap();
            let nix_bytes = std::fs::read(rs_dir.dir.path().join("nix-store").join(name)).unwrap();
            assert_eq!(std::fs::read(p).unwrap(), nix_bytes, "{p}");
        }
    }
    // --add-root: the link is printed, and points to the .drv.
    let t = TempStore::new();
    let root = work.path().join("root");
    let root_s = root.display().to_string();
    let out = ok_str(rix_in(
        &t,
        &["instantiate", &file_s, "-A", "a", "--add-root", &root_s],
        b"",
    ));
    assert_eq!(out.trim(), root_s);
    let target = std::fs::read_link(&root).unwrap();
    assert!(target.to_string_lossy().ends_with("-a.drv"), "{target:?}");
}

/// `rix eval` and errors: positions, code, `--show-trace`.
#[test]
fn eval_and_errors() {
    assert_eq!(ok_str(rix(&["eval", "--expr", "1 + 2"])), "3\n");
    assert_eq!(
        ok_str(rix(&["eval", "--raw", "--expr", "\"a\\nb\""])),
        "a\nb"
    );
    assert_eq!(
        ok_str(rix(&["eval", "--json", "--expr", "{ a = [ 1 2.5 ]; }"])),
        "{\"a\":[1,2.5]}\n"
    );
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("err.nix");
    std::fs::write(
        &f,
        "let\n  f = x: x.foo + 1;\n  g = y: f y;\nin g { foo = \"a\"; }\n",
    )
    .unwrap();
    let out = rix(&["eval", &f.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let path = f.display().to_string();
    // As Nix 2.26 prints it: the frames, then the message.
    let segment = format!(
        "       … while evaluating a path segment\n         at {path}:2:18:\n            1| let\n            2|   f = x: x.foo + 1;\n             |                  ^\n            3|   g = y: f y;\n\n       error: cannot coerce an integer to a string: 1\n"
    );
    assert_eq!(err, format!("error:\n{segment}"));
    let out = rix(&["eval", "--show-trace", &path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error:\n       … from call site\n         at {path}:4:4:\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "       … while calling 'g'\n         at {path}:3:7:\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "       … while calling 'f'\n         at {path}:2:7:\n"
        )),
        "{err}"
    );
    assert!(err.ends_with(&segment), "{err}");
}

/// `rix build FILE.nix` evaluates and builds, leaving `result`.
#[test]
fn build_nix_file() {
    let t = TempStore::new();
    let work = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.nix");
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "--option", "sandbox", "false", "build"])
        .arg(&example)
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(work.path().join("result")).unwrap();
    assert!(text.starts_with("Hello, world! (built from "), "{text}");
}

/// `rix repl` on standard input: bindings, printing depth, `:p`, `:t`, `:l`,
/// continuation lines, `:b`.
#[test]
fn repl_session() {
    let t = TempStore::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.nix");
    let input = format!(
        "x = 1 + 2\nx * 2\n{{ a = {{ b = 1; }}; c = [ 1 2 ]; }}\n:p {{ a = {{ b = 1; }}; }}\n:t x\n:l {}\nname\n{{ a =\n1; }}\n:b derivation {{ name = \"r\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [ \"-c\" \"echo hi > $out\" ]; }}\n:q\n",
        example.display()
    );
    let out = rix_in(
        &t,
        &["--option", "sandbox", "false", "repl"],
        input.as_bytes(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected_start = "6\n{ a = { ... }; c = [ ... ]; }\n{ a = { b = 1; }; }\nan integer\nAdded 12 variables.\n\"hello\"\n{ a = 1; }\n";
    assert!(
        text.starts_with(expected_start),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("This derivation produced the following outputs:\n  out -> "),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A chroot store (`--store DIR`): store paths are `/nix/store/...` to the
/// evaluation but live under DIR. Reading them (`readFile`, `import`,
/// `pathExists`, `readDir`, `hashFile`, copying a store path) must look
/// there, as Nix does, not in the host's `/nix/store`.
#[test]
fn chroot_store_reads_its_own_files() {
    let Some(nix) = nix("nix-instantiate") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file.txt"), "hi\n").unwrap();
    let exprs = [
        r#"builtins.readFile (builtins.toFile "a" "x")"#,
        r#"import (builtins.toFile "x.nix" "1 + 2")"#,
        r#"builtins.pathExists "${./file.txt}""#,
        r#"builtins.readDir "${./.}""#,
        r#"builtins.hashFile "sha256" "${./file.txt}""#,
        r#"builtins.path { path = "${./.}"; name = "copy"; }"#,
    ];
    let mut diffs = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        let (n_root, r_root) = (
            tmp.path().join(format!("n{i}")),
            tmp.path().join(format!("r{i}")),
        );
        let args = |root: &Path| {
            vec![
                "--store".to_owned(),
                root.display().to_string(),
                "--read-write-mode".into(),
                "--eval".into(),
                "--strict".into(),
                "-E".into(),
                e.to_string(),
            ]
        };
        let n = Command::new(&nix)
            .args(args(&n_root))
            .current_dir(&src)
            .env("NIX_CONFIG", NIX_CONFIG)
            .output()
            .unwrap();
        let r = Command::new(env!("CARGO_BIN_EXE_rix"))
            .arg("instantiate")
            .args(args(&r_root))
            .current_dir(&src)
            .output()
            .unwrap();
        assert!(
            n.status.success(),
            "nix: {e}: {}",
            String::from_utf8_lossy(&n.stderr)
        );
        if r.stdout != n.stdout || !r.status.success() {
            diffs.push(format!(
                "{e}\n  nix: {}  rix: {}{}",
                String::from_utf8_lossy(&n.stdout),
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            ));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}

/// `nix-instantiate`'s refusals on output: a derivation whose `drvPath` is
/// missing or outside the store, and a root that would clobber a link out of
/// the store; a root in a directory that does not exist yet is created.
#[test]
fn instantiate_refuses_as_nix_does() {
    let Some(nix) = nix("nix-instantiate") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let drv = r#"derivation { name = "a"; system = "x"; builder = "/b"; }"#;
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("n-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("r-link")).unwrap();
    let bad_ref = r#"derivation { name = "bad-ref"; system = "x"; builder = "/b";
        src = builtins.appendContext "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-foo"
          { "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-foo" = { path = true; }; }; }"#;
    let cases: [(&str, &[&str]); 5] = [
        (bad_ref, &[]),
        (
            r#"{ type = "derivation"; name = "f"; outputName = "out"; drvPath = "/tmp/x.drv"; }"#,
            &[],
        ),
        (
            r#"{ type = "derivation"; name = "f"; outputName = "out"; }"#,
            &[],
        ),
        (drv, &["--add-root", "TOOL-link"]),
        (drv, &["--add-root", "new/dir/TOOL-root"]),
    ];
    for (i, (expr, extra)) in cases.iter().enumerate() {
        let run = |tool: &str, cmd: &mut Command| {
            let extra: Vec<String> = extra.iter().map(|a| a.replace("TOOL", tool)).collect();
            let store = tmp.path().join(format!("{tool}-store-{i}"));
            cmd.arg("--store")
                .arg(&store)
                .args(["-E", expr])
                .args(&extra)
                .current_dir(tmp.path())
                .env("NIX_CONFIG", NIX_CONFIG)
                .output()
                .unwrap()
        };
        let n = run("n", &mut Command::new(&nix));
        let r = run(
            "r",
            Command::new(env!("CARGO_BIN_EXE_rix")).arg("instantiate"),
        );
        assert_eq!(
            n.status.success(),
            r.status.success(),
            "{expr} {extra:?}\n  nix: {}\n  rix: {}",
            String::from_utf8_lossy(&n.stderr),
            String::from_utf8_lossy(&r.stderr)
        );
        let rename = |o: &[u8]| String::from_utf8_lossy(o).replace("/n-", "/X-");
        assert_eq!(rename(&n.stdout), rename(&r.stdout).replace("/r-", "/X-"));
    }
    assert!(tmp.path().join("new/dir/r-root").is_symlink());
    // The failed write left nothing in the store: no `.drv`, no lock file.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("r-store-0/nix/store"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the store: {left:?}");
}

/// A reader that goes away (`rix instantiate ... | head -c1`) ends rix quietly
/// and successfully, as it ends Nix; it used to panic on the failed write.
#[test]
fn closed_stdout_is_not_a_crash() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["instantiate", "--eval", "--strict", "-E"])
        .arg("builtins.genList (x: x) 1000000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Nix's common flags that evaluation does not use are accepted (scripts
/// written for nix-instantiate pass them), and `--system` sets
/// `builtins.currentSystem` as in Nix.
#[test]
fn nix_common_flags_are_accepted() {
    let out = rix(&[
        "instantiate",
        "-Q",
        "-j",
        "2",
        "--cores",
        "1",
        "-K",
        "-k",
        "--fallback",
        "--timeout",
        "5",
        "--no-substitute",
        "--system",
        "riscv64-linux",
        "--eval",
        "-E",
        "builtins.currentSystem",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"riscv64-linux\"\n");
    let bad = rix(&["instantiate", "--no-such-flag", "-E", "1"]);
    assert_eq!(bad.status.code(), Some(1), "usage errors exit 1, as Nix's");
}
