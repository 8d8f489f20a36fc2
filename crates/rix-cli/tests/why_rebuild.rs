//! `rix why-rebuild` against nix-diff's own golden files (its
//! `golden-tests`, copied into tests/vectors/nix-diff: the derivations are
//! Nix's, so their paths are the ones in nix-diff's expected output), and
//! `rix build --explain` from rix's record of earlier builds.

use std::path::Path;
use std::process::{Command, Output};

mod rixcmd;
use rixcmd::{ok_str as ok, TempStore};

fn rix(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", store])
        .args([
            "--option",
            "sandbox",
            "false",
            "--option",
            "substituters",
            "",
        ])
        .args(args)
        .output()
        .expect("run rix")
}

const OLD: &str = "/nix/store/2bwmj0qp4m6fiah2b39qwpf1lw0l1a4v-drv.drv";
const NEW: &str = "/nix/store/bg0lxf2d20a3sif8vpfmxcl6hch8ls8h-drv.drv";

/// The pair of nix-diff's golden tests, instantiated into a fresh rooted store.
fn golden_store() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let simple = rix_testutil::vectors("nix-diff/derivations/simple");
    for side in ["old", "new"] {
        let file = simple.join(side).join("drv.nix");
        let printed = ok(rix(r, &["instantiate", file.to_str().unwrap()]));
        assert_eq!(printed.trim(), if side == "old" { OLD } else { NEW });
    }
    root
}

#[test]
fn human_readable_output_is_nix_diffs() {
    let root = golden_store();
    let r = root.path().to_str().unwrap();
    let out = ok(rix(
        r,
        &["why-rebuild", "--environment", "--color", "never", OLD, NEW],
    ));
    let expected = std::fs::read_to_string(rix_testutil::vectors(
        "nix-diff/expected-outputs/human-readable",
    ))
    .unwrap();
    assert_eq!(out, expected);
}

#[test]
fn json_output_is_nix_diffs() {
    let root = golden_store();
    let r = root.path().to_str().unwrap();
    let out = ok(rix(
        r,
        &["why-rebuild", "--environment", "--json", OLD, NEW],
    ));
    let expected =
        std::fs::read_to_string(rix_testutil::vectors("nix-diff/expected-outputs/json")).unwrap();
    assert_eq!(out, expected);
}

#[test]
fn without_environment_the_environment_below_a_changed_input_is_skipped() {
    let root = golden_store();
    let r = root.path().to_str().unwrap();
    let out = ok(rix(r, &["why-rebuild", "--color", "never", OLD, NEW]));
    // The top derivation descended into inputs: its environment is skipped;
    // `soft_from_SW` descended into none: its environment is shown.
    assert!(
        out.ends_with("• Skipping environment comparison\n"),
        "{out}"
    );
    assert!(
        out.contains("    • The environments do not match:\n        - missingEnvVaribale=value\n")
    );
    assert!(!out.contains("derivations=''"), "{out}");
}

/// A chain a ← b ← c whose `a` carries `version = v`.
const CHAIN: &str = r#"
{ v }:
let
  mk = name: attrs: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name} > $out" ];
  } // attrs);
  a = mk "a" { version = v; };
  b = mk "b" { dep = a; };
in mk "c" { dep = b; }
"#;

fn build(t: &TempStore, file: &Path, v: &str, extra: &[&str]) -> Output {
    let url = t.url();
    let mut args = vec!["build", file.to_str().unwrap(), "--argstr", "v", v];
    args.extend_from_slice(extra);
    let link = t.dir.path().join(format!("result-v{v}"));
    args.extend_from_slice(&["-o", link.to_str().unwrap()]);
    let mut all = vec!["--option", "sandbox", "false"];
    all.extend_from_slice(&args);
    rix(&url, &all)
}

fn explained(out: Output) -> Vec<serde_json::Value> {
    let text = ok(out);
    let line = text.lines().next().expect("the explanations' line");
    serde_json::from_str::<Vec<serde_json::Value>>(line).expect("JSON")
}

fn drv_of(t: &TempStore, file: &Path, v: &str, attr: Option<&str>) -> String {
    let mut args = vec!["instantiate", file.to_str().unwrap(), "--argstr", "v", v];
    if let Some(a) = attr {
        args.extend(["-A", a]);
    }
    ok(rix(&t.url(), &args)).trim().to_owned()
}

#[test]
fn explain_names_the_changed_input_from_the_last_build() {
    let t = TempStore::new();
    let file = t.dir.path().join("chain.nix");
    std::fs::write(&file, CHAIN).unwrap();

    // First build: nothing recorded before.
    let first = explained(build(&t, &file, "1", &["--explain", "--json"]));
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|e| e["kind"] == "neverBuilt"), "{first:?}");

    // Change `a`: all three rebuild, each because of `a`'s variable.
    let second = explained(build(&t, &file, "2", &["--explain", "--json", "--dry-run"]));
    let c_new = drv_of(&t, &file, "2", None);
    assert_eq!(second.len(), 3, "{second:?}");
    let by_name = |n: &str| {
        second
            .iter()
            .find(|e| {
                e["drvPath"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("-{n}.drv"))
            })
            .unwrap_or_else(|| panic!("{n} in {second:?}"))
            .clone()
    };
    let (a, b, c) = (by_name("a"), by_name("b"), by_name("c"));
    assert_eq!(c["drvPath"], c_new.as_str());
    assert_eq!(a["kind"], "changed");
    assert_eq!(a["changedInput"], serde_json::Value::Null);
    assert_eq!(
        a["differences"],
        serde_json::json!(["environment variable `version` differs"])
    );
    for e in [&b, &c] {
        assert_eq!(e["kind"], "changed");
        assert_eq!(e["changedInput"], a["drvPath"], "{e}");
        assert_eq!(e["differences"], a["differences"]);
        assert_eq!(
            e["reason"].as_str().unwrap(),
            format!(
                "input {} changed: environment variable `version` differs",
                a["drvPath"].as_str().unwrap()
            )
        );
    }
    // The text form: one line per derivation, dependencies first.
    let text = build(&t, &file, "2", &["--explain", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&text.stderr).into_owned();
    assert!(text.status.success(), "{stderr}");
    let why: Vec<&str> = stderr
        .lines()
        .skip_while(|l| *l != "why each derivation will be built:")
        .skip(1)
        .take(3)
        .collect();
    assert_eq!(why.len(), 3, "{stderr}");
    assert!(
        why[0].contains("-a.drv: changed since its last build ("),
        "{stderr}"
    );
    assert!(
        why[2].starts_with(&format!("  {c_new}: input ")),
        "{stderr}"
    );

    // `--rebuild` forces the derivation asked for (as `--check`, only it).
    let forced = explained(build(
        &t,
        &file,
        "1",
        &["--explain", "--json", "--rebuild", "--dry-run"],
    ));
    assert_eq!(forced.len(), 1, "{forced:?}");
    assert_eq!(forced[0]["reason"], "forced by --rebuild");
    assert_eq!(forced[0]["drvPath"], drv_of(&t, &file, "1", None).as_str());
}

#[test]
fn why_rebuild_follows_result_links_and_remembers_the_last_build() {
    let t = TempStore::new();
    let file = t.dir.path().join("chain.nix");
    std::fs::write(&file, CHAIN).unwrap();
    ok(build(&t, &file, "1", &[]));
    ok(build(&t, &file, "2", &[]));
    let (l1, l2) = (
        t.dir.path().join("result-v1"),
        t.dir.path().join("result-v2"),
    );
    let out = ok(rix(
        &t.url(),
        &[
            "why-rebuild",
            "--color",
            "never",
            l1.to_str().unwrap(),
            l2.to_str().unwrap(),
        ],
    ));
    let (c1, c2) = (drv_of(&t, &file, "1", None), drv_of(&t, &file, "2", None));
    assert!(
        out.starts_with(&format!(
            "- {c1}:{{out}}\n+ {c2}:{{out}}\n• The input derivation named `b` differs\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("    • The environments do not match:\n        version=←1←→2→\n"),
        "{out}"
    );

    // One argument: compared with the last other build of its name.
    let one = ok(rix(&t.url(), &["why-rebuild", "--color", "never", &c2]));
    assert_eq!(one, out);

    // Not a store path nor an installable.
    let bad = rix(&t.url(), &["why-rebuild", "/nonexistent/x", &c2]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("neither a store path nor an installable")
    );
}
