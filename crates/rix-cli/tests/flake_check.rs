//! `rix flake check` and `rix flake init|new` against Nix 2.26: the same
//! lines for the same flake (activities off a terminal, warnings, errors with
//! their traces under `--keep-going`), checks built, templates copied with
//! Nix's conflict rules. Both tools share one temporary store, so paths in
//! the output compare as they are. The differential parts need the current
//! Nix (`RIX_NIX_CURRENT`) and are skipped without it.

mod rixcmd;

use std::path::Path;
use std::process::{Command, Output};

use rixcmd::TempStore;

const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nflake-registry =\nbuild-hook =";

fn env(cmd: &mut Command, store: &TempStore, cwd: &Path, cache: &str) {
    cmd.current_dir(cwd)
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("HOME", store.dir.path())
        .env("XDG_CONFIG_HOME", store.dir.path().join("config"))
        .env("XDG_CACHE_HOME", store.dir.path().join(cache));
}

fn nix(store: &TempStore, cwd: &Path, args: &[&str]) -> Option<Output> {
    let mut cmd = rix_testutil::nix_current("nix")?;
    cmd.arg("--store").arg(store.url()).args(args);
    env(&mut cmd, store, cwd, "nix-cache");
    Some(cmd.output().unwrap())
}

fn rix(store: &TempStore, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rix"));
    cmd.arg("--store").arg(store.url()).args(args);
    env(&mut cmd, store, cwd, "rix-cache");
    cmd.output().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every kind of output Nix checks, some wrong: an overlay whose argument
/// is not `final`, an app without `meta`, a package of another system, a
/// `foo` Nix does not know, a deprecated `overlay`, a template without a
/// description, a check that is not a derivation.
const FLAKE: &str = r#"{
  outputs = { self }: let
    mk = name: cmd: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" cmd ]; };
  in {
    packages.x86_64-linux.default = mk "pkg" "echo hi > $out";
    packages.aarch64-linux.default = mk "pkg" "echo hi > $out";
    checks.x86_64-linux.ok = mk "check-ok" "echo ok > $out";
    checks.x86_64-linux.notDrv = 42;
    apps.x86_64-linux.default = { type = "app"; program = "${self.packages.x86_64-linux.default}"; };
    overlays.default = final: prev: { };
    overlay = self: super: { };
    nixosModules.default = { ... }: { };
    foo = 1;
    templates.default = { path = ./.; description = "t"; };
    templates.bad = { path = ./.; };
    formatter.x86_64-linux = mk "fmt" "echo > $out";
    hydraJobs.pkg.x86_64-linux = mk "pkg" "echo hi > $out";
    lib = { };
  };
}
"#;

#[test]
fn check_reports_what_nix_reports() {
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    let t = TempStore::new();
    let dir = t.dir.path().join("f");
    write(&dir.join("flake.nix"), FLAKE);
    let r = rix(&t, &dir, &["flake", "check", "--keep-going", "--no-build"]);
    let Some(n) = nix(&t, &dir, &["flake", "check", "--keep-going", "--no-build"]) else {
        return;
    };
    assert_eq!(r.status.code(), n.status.code(), "{}", stderr(&r));
    assert_eq!(stderr(&r), stderr(&n));
    assert!(stderr(&r).contains("error (ignored): error:"));

    // Without --keep-going the first error ends it, as Nix.
    let r = rix(&t, &dir, &["flake", "check", "--no-build"]);
    let n = nix(&t, &dir, &["flake", "check", "--no-build"]).unwrap();
    assert_eq!(r.status.code(), n.status.code());
    assert_eq!(stderr(&r), stderr(&n));
}

#[test]
fn check_builds_the_checks_of_this_system() {
    let t = TempStore::new();
    let dir = t.dir.path().join("f");
    let marker = t.dir.path().join("ran");
    write(
        &dir.join("flake.nix"),
        &format!(
            r#"{{ outputs = {{ self }}: {{
  checks.${{builtins.currentSystem}}.a = derivation {{
    name = "a"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo ran >> {m}; echo > $out" ];
  }};
  checks.other-system.b = derivation {{
    name = "b"; system = "other-system"; builder = "/bin/sh"; args = [ ];
  }};
}}; }}
"#,
            m = marker.display()
        ),
    );
    let out = rix(&t, &dir, &["flake", "check", "--impure"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
    assert!(stderr(&out).contains(
        "warning: The check omitted these incompatible systems: other-system\nUse '--all-systems' to check all."
    ));
    // --no-build: evaluated, not built again (it is valid anyway), and a
    // failing check fails the command.
    write(
        &dir.join("flake.nix"),
        r#"{ outputs = { self }: {
  checks.${builtins.currentSystem}.fails = derivation {
    name = "fails"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "exit 3" ];
  };
}; }
"#,
    );
    let out = rix(&t, &dir, &["flake", "check", "--impure", "--no-build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = rix(&t, &dir, &["flake", "check", "--impure"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("fails.drv"), "{}", stderr(&out));
}

#[test]
fn init_and_new_copy_templates_as_nix() {
    let t = TempStore::new();
    let tpl = t.dir.path().join("tpl");
    write(
        &tpl.join("flake.nix"),
        r#"{ outputs = { self }: {
  templates.default = { path = ./t1; description = "one"; };
  templates.other = { path = ./t1; description = "two"; };
}; }
"#,
    );
    write(&tpl.join("t1/a.txt"), "a\n");
    write(&tpl.join("t1/sub/b.txt"), "b\n");
    std::os::unix::fs::symlink("a.txt", tpl.join("t1/link")).unwrap();
    let run = |tool: &str, name: &str| -> Option<String> {
        let dir = t.dir.path().join(name);
        write(&dir.join("a.txt"), "different\n");
        let mut log = String::new();
        for args in [
            &["flake", "init", "-t", "../tpl"][..],
            &["flake", "init", "-t", "../tpl#other"][..],
            &["flake", "new", "../new-DIR", "-t", "../tpl#other"][..],
        ] {
            let args: Vec<String> = args.iter().map(|a| a.replace("DIR", name)).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = if tool == "rix" {
                rix(&t, &dir, &args)
            } else {
                nix(&t, &dir, &args)?
            };
            log += &format!("{:?}\n{}", o.status.code(), stderr(&o).replace(name, "DIR"));
        }
        Some(log)
    };
    let r = run("rix", "rixdir").unwrap();
    assert!(r.contains("refusing to overwrite existing file"), "{r}");
    assert!(r.contains("skipping identical file:"), "{r}");
    assert_eq!(
        std::fs::read_to_string(t.dir.path().join("new-rixdir/sub/b.txt")).unwrap(),
        "b\n"
    );
    assert_eq!(
        std::fs::read_link(t.dir.path().join("new-rixdir/link")).unwrap(),
        Path::new("a.txt")
    );
    if let Some(n) = run("nix", "nixdir") {
        assert_eq!(r, n);
    }
}

#[test]
fn archive_to_copies_the_flake_and_its_inputs() {
    let t = TempStore::new();
    let root = t.dir.path();
    write(
        &root.join("dep/flake.nix"),
        "{ outputs = { self }: { v = 1; }; }\n",
    );
    write(
        &root.join("top/flake.nix"),
        &format!(
            "{{ inputs.dep.url = \"path:{}/dep\"; outputs = {{ self, dep }}: {{ }}; }}\n",
            root.display()
        ),
    );
    let cache = root.join("cache");
    let to = format!("file://{}", cache.display());
    let out = rix(
        &t,
        &root.join("top"),
        &["flake", "archive", "--json", "--to", &to],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths = [
        j["path"].as_str().unwrap().to_owned(),
        j["inputs"]["dep"]["path"].as_str().unwrap().to_owned(),
    ];
    for p in paths {
        let hash = &Path::new(&p).file_name().unwrap().to_str().unwrap()[..32];
        assert!(
            cache.join(format!("{hash}.narinfo")).exists(),
            "{p} not in the cache: {}",
            stderr(&out)
        );
    }
    // --dry-run copies nothing.
    let cache2 = root.join("cache2");
    let to2 = format!("file://{}", cache2.display());
    let out = rix(
        &t,
        &root.join("top"),
        &["flake", "archive", "--dry-run", "--to", &to2],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!cache2.exists());
}
