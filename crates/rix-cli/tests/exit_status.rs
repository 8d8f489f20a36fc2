//! Nix's exit statuses for builds (`Worker::failingExitStatus`): 100 for a
//! failed build, 101 for a timeout, 102 for a hash mismatch, 104 for a
//! `--check` that found a difference, combined bit by bit (a fixed-output
//! derivation's builder failing is transient: 1); compared with
//! Nix 2.26's `nix-build` on the same derivations.

use std::process::Command;

mod rixcmd;
use rixcmd::TempStore;

const DRVS: &str = r#"
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };
  fod = name: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name} > $out" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "0000000000000000000000000000000000000000000000000000";
  };
in {
  ok = mk "ok" "echo ok > $out";
  fail = mk "fail" "exit 1";
  slow = mk "slow" "/bin/sleep 30; echo > $out";
  mismatch = fod "mismatch";
  nondet = mk "nondet" "echo $RANDOM$$ > $out";
  fodFails = derivation {
    name = "fod-fails";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "exit 1" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "0000000000000000000000000000000000000000000000000000";
  };
  failAndMismatch = mk "both" "echo ${mk "fail2" "exit 1"} ${fod "mismatch2"} > $out";
  slowAndMismatch = mk "both2" "echo ${mk "slow2" "/bin/sleep 30; echo > $out"} ${fod "mismatch3"} > $out";
}
"#;

/// The exit status of `rix build` of `attr`.
fn rix(t: &TempStore, file: &str, attr: &str, extra: &[&str]) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "--option", "sandbox", "false"])
        .args(["build", "--no-link", "-f", file, attr])
        .args(extra)
        .output()
        .unwrap();
    out.status.code().unwrap_or(-1)
}

/// The exit status of Nix 2.26's `nix-build` of `attr`.
fn nix(t: &TempStore, file: &str, attr: &str, extra: &[&str]) -> Option<i32> {
    let mut cmd = rix_testutil::nix_current("nix-build")?;
    let out = cmd
        .args(["--store", &t.url()])
        .args(["--option", "build-hook", ""])
        .args(["--option", "sandbox", "false"])
        .args(["--option", "substituters", ""])
        .args(["--no-out-link", file, "-A", attr])
        .args(extra)
        .output()
        .unwrap();
    Some(out.status.code().unwrap_or(-1))
}

#[test]
fn build_exit_statuses_are_nixs() {
    let (tr, tn) = (TempStore::new(), TempStore::new());
    let file = tr.dir.path().join("drvs.nix");
    std::fs::write(&file, DRVS).unwrap();
    let file = file.to_str().unwrap();
    let cases: &[(&str, &[&str], i32)] = &[
        ("ok", &[], 0),
        ("fail", &[], 100),
        ("slow", &["--timeout", "1"], 101),
        ("mismatch", &[], 102),
        // A fixed-output builder failing is transient for Nix: status 1.
        ("fodFails", &[], 1),
        ("failAndMismatch", &["--keep-going"], 102),
        ("slowAndMismatch", &["--keep-going", "--timeout", "1"], 103),
        ("nondet", &[], 0),
        ("nondet", &["--check"], 104),
    ];
    for (attr, extra, want) in cases {
        let got = rix(&tr, file, attr, extra);
        assert_eq!(got, *want, "rix build {attr} {extra:?}");
        if let Some(n) = nix(&tn, file, attr, extra) {
            assert_eq!(n, *want, "Nix 2.26's nix-build {attr} {extra:?}");
        }
    }
}
