//! `rix shell-nix` (and rix called as `nix-shell`) against Nix 2.26's
//! `nix-shell` on the same store: the environment a command sees (impure
//! and `--pure`, `shell.nix` found before `default.nix`, `inNixShell`,
//! `-A`, `--arg`, `--argstr`, `-p` against a `<nixpkgs>` written here),
//! `#! nix-shell` script lines, and the usage errors. The shell is
//! `NIX_BUILD_SHELL=/bin/bash` for both (neither has a `<nixpkgs>` with
//! `bashInteractive` here). Differential parts need the current Nix
//! (`RIX_NIX_CURRENT`) and are skipped without it.

mod rixcmd;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use rixcmd::{RixDaemon, TempStore};

const NIX_CONFIG: &str =
    "experimental-features = nix-command\nsandbox = false\nsubstituters =\nbuild-hook =";

/// `default.nix` (a function: a fake stdenv whose setup defines a variable
/// and a shell hook's runner, a tool on PATH, a `passAsFile` attribute),
/// `shell.nix` (taking `inNixShell` and `who`), `multi.nix` (two
/// derivations, for `-A`), and a fake `nixpkgs` with `runCommand`.
fn project(dir: &Path) {
    std::fs::create_dir_all(dir.join("nixpkgs")).unwrap();
    std::fs::write(
        dir.join("default.nix"),
        r#"{ name ? "plain", extra ? "" }:
let
  system = builtins.currentSystem;
  stdenv = derivation {
    name = "fake-stdenv";
    inherit system;
    builder = "/bin/bash";
    args = [ "-c" ''
      export PATH=/usr/bin:/bin
      mkdir $out
      cat > $out/setup <<'SETUP'
      export FROM_SETUP=yes
      runHook() { local h=$1; eval "''${!h:-}"; }
      SETUP
    '' ];
  };
  dep = derivation {
    name = "dep";
    inherit system;
    builder = "/bin/bash";
    args = [ "-c" "export PATH=/usr/bin:/bin; mkdir -p $out/bin; printf '#!/bin/sh\\necho dep-tool\\n' > $out/bin/dep-tool; chmod +x $out/bin/dep-tool" ];
  };
in derivation {
  inherit name system stdenv extra;
  builder = "/bin/bash";
  args = [ "-c" "echo > $out" ];
  buildInputs = [ dep ];
  PATH = "${dep}/bin";
  shellHook = "export HOOKED=yes";
  big = "passed as a file";
  passAsFile = [ "big" ];
}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("shell.nix"),
        r#"{ inNixShell ? false, who ? "nobody" }:
import ./default.nix { name = if inNixShell then "in-shell" else "no-shell"; extra = who; }
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("multi.nix"),
        r#"{ n ? 1 }: { a = import ./default.nix { name = "a${toString n}"; }; b = import ./default.nix { name = "b"; }; }"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("nixpkgs/default.nix"),
        r#"{ ... }:
let self = {
  pkgs = self;
  hello = import ../default.nix { name = "hello"; };
  runCommand = name: env: cmd: derivation (env // {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/bash";
    args = [ "-c" cmd ];
  });
}; in self
"#,
    )
    .unwrap();
}

fn rix(store: &TempStore, cwd: &Path, args: &[&str]) -> Output {
    rix_at(store, &store.url(), cwd, args)
}

/// `rix shell-nix` with the store given as `url` (a daemon's).
fn rix_at(store: &TempStore, url: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(url)
        .args(["--option", "sandbox", "false", "shell-nix"])
        .args(args)
        .current_dir(cwd)
        .envs(common_env(store))
        .output()
        .unwrap()
}

fn nix_shell(store: &TempStore, cwd: &Path, args: &[&str]) -> Option<Output> {
    let mut cmd = rix_testutil::nix_current("nix-shell")?;
    Some(
        cmd.arg("--store")
            .arg(store.url())
            .args(args)
            .current_dir(cwd)
            .envs(common_env(store))
            .env("NIX_CONFIG", NIX_CONFIG)
            .output()
            .unwrap(),
    )
}

fn common_env(store: &TempStore) -> Vec<(&'static str, String)> {
    let d = store.dir.path().display();
    vec![
        ("HOME", d.to_string()),
        ("XDG_CONFIG_HOME", format!("{d}/config")),
        ("XDG_CACHE_HOME", format!("{d}/cache")),
        // The shells' temporary directories go with the store.
        ("TMPDIR", d.to_string()),
        ("NIX_BUILD_SHELL", "/bin/bash".into()),
        ("NIX_PATH", String::new()),
        ("FOO", "foo-value".into()),
    ]
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `env -0`'s entries, without the temporary directory (named by process)
/// and the configuration only Nix is given.
fn env_map(text: &str) -> BTreeMap<String, String> {
    const DIFFER: &[&str] = &[
        "NIX_BUILD_TOP",
        "TMP",
        "TMPDIR",
        "TEMP",
        "TEMPDIR",
        "NIX_CONFIG",
        "bigPath",
    ];
    text.split('\0')
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !DIFFER.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs the same arguments with both tools and compares the environment a
/// command sees (`--run 'env -0'`); returns rix's.
#[track_caller]
fn same_env(store: &TempStore, cwd: &Path, args: &[&str]) -> BTreeMap<String, String> {
    let all = [args, &["--run", "env -0; cat \"${bigPath:-/dev/null}\""]].concat();
    let ours = ok(rix(store, cwd, &all));
    let (env, big) = ours.rsplit_once('\0').unwrap();
    if !args.contains(&"-p") {
        assert_eq!(big, "passed as a file");
    }
    let ours = env_map(env);
    if let Some(theirs) = nix_shell(store, cwd, &all) {
        let theirs = ok(theirs);
        assert_eq!(
            ours,
            env_map(theirs.rsplit_once('\0').unwrap().0),
            "{args:?}"
        );
    }
    ours
}

#[test]
fn environment_is_nix_shells() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir);
    // `shell.nix` first, called with `inNixShell = true`.
    let env = same_env(&store, &dir, &[]);
    assert_eq!(env["name"], "in-shell");
    assert_eq!(env["IN_NIX_SHELL"], "impure");
    assert_eq!(env["FROM_SETUP"], "yes");
    assert_eq!(env["HOOKED"], "yes");
    assert_eq!(env["FOO"], "foo-value");
    let pure = same_env(&store, &dir, &["--pure", "--argstr", "who", "me"]);
    assert_eq!(pure["IN_NIX_SHELL"], "pure");
    assert_eq!(pure["extra"], "me");
    assert!(!pure.contains_key("FOO"));
    let kept = same_env(&store, &dir, &["--pure", "--keep", "FOO"]);
    assert_eq!(kept["FOO"], "foo-value");
    // `default.nix` named, `-A` into a set, `--arg`.
    let plain = same_env(&store, &dir, &["default.nix"]);
    assert_eq!(plain["name"], "plain");
    let a = same_env(
        &store,
        &dir,
        &["multi.nix", "-A", "a", "--arg", "n", "1 + 1"],
    );
    assert_eq!(a["name"], "a2");
    // `-p` against `<nixpkgs>`.
    let nixpkgs = format!("nixpkgs={}", dir.join("nixpkgs").display());
    let p = same_env(&store, &dir, &["-I", &nixpkgs, "-p", "hello"]);
    assert_eq!(p["name"], "shell");
    assert!(p["buildInputs"].ends_with("-hello"), "{}", p["buildInputs"]);
}

/// `#! nix-shell` lines of a script: its arguments (relative to the
/// script's directory), `-i` the interpreter, the script's arguments after.
#[test]
fn shebang_scripts() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir);
    let script = dir.join("script.sh");
    std::fs::write(
        &script,
        "#! /usr/bin/env nix-shell\n#! nix-shell -i bash shell.nix --argstr who \"the script\"\necho \"name=$name who=$extra args=$# $*\"\n",
    )
    .unwrap();
    let s = script.display().to_string();
    let elsewhere = store.dir.path();
    let ours = ok(rix(&store, elsewhere, &[&s, "x", "y z"]));
    assert_eq!(ours, "name=in-shell who=the script args=2 x y z\n");
    // Nix sees a script only as its first argument: the store is set
    // through the configuration.
    if let Some(mut nix) = rix_testutil::nix_current("nix-shell") {
        let theirs = nix
            .args([&s, "x", "y z"])
            .current_dir(elsewhere)
            .envs(common_env(&store))
            .env(
                "NIX_CONFIG",
                format!("{NIX_CONFIG}\nstore = {}", store.url()),
            )
            .output()
            .unwrap();
        assert_eq!(ok(theirs), ours);
    }
}

/// rix called as `nix-shell` is `rix shell-nix`.
#[test]
fn called_as_nix_shell() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir);
    let link = store.dir.path().join("nix-shell");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rix"), &link).unwrap();
    let out = Command::new(&link)
        .args(["--store", &store.url(), "--option", "sandbox", "false"])
        .args(["--run", "echo $name"])
        .current_dir(&dir)
        .envs(common_env(&store))
        .output()
        .unwrap();
    assert_eq!(ok(out), "in-shell\n");
}

#[test]
fn usage_errors() {
    let store = TempStore::new();
    let empty = store.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = rixcmd::fails(rix(&store, &empty, &["--run", "true"]));
    assert!(err.contains("error: no argument specified and no 'shell.nix' or 'default.nix' file found in the working directory"), "{err}");
    let dir = store.dir.path().join("proj");
    project(&dir);
    let err = rixcmd::fails(rix(&store, &dir, &["multi.nix", "--run", "true"]));
    assert!(
        err.contains("nix-shell requires a single derivation"),
        "{err}"
    );
    let err = rixcmd::fails(rix(&store, &dir, &["-p", "x", "-E", "y"]));
    assert!(
        err.contains("'-p' and '-E' are mutually exclusive"),
        "{err}"
    );

    // Without NIX_BUILD_SHELL nor a `<nixpkgs>`, bash is looked up on the
    // derivation's PATH, where it is not: Nix's messages.
    let no_shell = |mut c: Command| {
        c.current_dir(&dir)
            .envs(common_env(&store))
            .env_remove("NIX_BUILD_SHELL")
            .args(["--run", "true"])
            .output()
            .unwrap()
    };
    let mut ours = Command::new(env!("CARGO_BIN_EXE_rix"));
    ours.args([
        "--store",
        &store.url(),
        "--option",
        "sandbox",
        "false",
        "shell-nix",
    ]);
    let err = rixcmd::fails(no_shell(ours));
    let expected = [
        "error: file 'nixpkgs' was not found in the Nix search path (add it using $NIX_PATH or -I)",
        "will use bash from your environment",
        "error: executing shell 'bash': No such file or directory",
    ];
    for line in expected {
        assert!(err.lines().any(|l| l.trim() == line), "{line}\n{err}");
    }
    if let Some(mut theirs) = rix_testutil::nix_current("nix-shell") {
        theirs
            .args(["--store", &store.url()])
            .env("NIX_CONFIG", NIX_CONFIG);
        let out = no_shell(theirs);
        let theirs = String::from_utf8_lossy(&out.stderr);
        for line in expected {
            assert!(theirs.lines().any(|l| l.trim() == line), "{line}\n{theirs}");
        }
    }
}

/// Through a daemon (`rix daemon` serving the store on a socket), which
/// builds the inputs: the environment a command sees is the one it sees
/// when rix opens the store itself.
#[test]
fn through_a_daemon() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir);
    let daemon = RixDaemon::start(&store);
    let run = ["--argstr", "who", "me", "--run", "env -0; cat \"$bigPath\""];
    let through = ok(rix_at(&store, &daemon.url(), &dir, &run));
    let (env, big) = through.rsplit_once('\0').unwrap();
    assert_eq!(big, "passed as a file");
    let through = env_map(env);
    assert_eq!(through["extra"], "me");
    assert_eq!(through["FROM_SETUP"], "yes");
    let direct = ok(rix(&store, &dir, &run));
    assert_eq!(env_map(direct.rsplit_once('\0').unwrap().0), through);
}
