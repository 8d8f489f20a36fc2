//! `rix eval` prints values as Nix 2.26's `nix eval` does: forced through,
//! errors of parts in their place, derivations by their `.drv` path,
//! functions by their position, repeated sets and lists marked.

use std::process::Command;

const CASES: &[&str] = &[
    "{ a = 1; b = [ 1 2 ]; c = \"x\"; }",
    "{ a = { b = { c = [ 1 { d = 2; } ]; }; }; }",
    "{ a = abort \"x\"; b = [ (throw \"y\") ]; c = { x = 1; }.y; }",
    "let f = x: x; in { inherit f; g = a: b: a; h = builtins.add 1; i = builtins.head; }",
    "{ \"a b\" = 1; \"if\" = 2; \"x-y\" = 3; \"1a\" = 4; }",
    "{ a = {}; b = []; c = { a = {}; }; }",
    "let x = [ 1 2 ]; in [ x x ]",
    "let x = [ 1 2 3 ]; in [ x x ]",
    "let x = { a = 1; }; in [ x x ]",
    "let d = builtins.derivation { name = \"x\"; system = \"x\"; builder = \"x\"; }; in { inherit d; l = [ d ]; }",
    "x: x",
    "[ (x: x) null true 1.5 1.0e30 \"a\\nb\\${\" ]",
    "let a = { x = a; }; in a",
    "{ type = \"derivation\"; }",
];

fn rix_eval(expr: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["eval", "--expr", expr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn values_print_as_nix_eval_prints_them() {
    assert_eq!(
        rix_eval(CASES[2]),
        "{ a = «error: evaluation aborted with the following error message: 'x'»; \
         b = [ «error: y» ]; c = «error: attribute 'y' missing»; }\n"
    );
    assert_eq!(
        rix_eval(CASES[5]),
        "{ a = { }; b = [ ]; c = { a = «repeated»; }; }\n"
    );
    for expr in CASES {
        let Some(mut nix) = rix_testutil::nix_current("nix") else {
            return;
        };
        let out = nix
            .args([
                "--extra-experimental-features",
                "nix-command",
                "eval",
                "--expr",
                expr,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            rix_eval(expr),
            String::from_utf8(out.stdout).unwrap(),
            "{expr}"
        );
    }
}

/// `rix eval -f FILE ATTRPATH`, as `nix eval --file FILE ATTRPATH`.
#[test]
fn eval_file_with_an_attribute_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.nix");
    std::fs::write(&file, "{ a = { b = [ 1 2 ]; }; }\n").unwrap();
    let file = file.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["eval", "-f", file, "a.b"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8(out.stdout).unwrap();
    assert_eq!(ours, "[ 1 2 ]\n");
    let Some(mut nix) = rix_testutil::nix_current("nix") else {
        return;
    };
    let out = nix
        .args([
            "--extra-experimental-features",
            "nix-command",
            "eval",
            "-f",
            file,
            "a.b",
        ])
        .output()
        .unwrap();
    assert_eq!(ours, String::from_utf8(out.stdout).unwrap());
}
