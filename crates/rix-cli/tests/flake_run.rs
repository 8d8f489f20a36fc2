//! `rix run` and `rix shell` of flake installables against Nix 2.26's `nix
//! run` and `nix shell --command`: the attribute search order (`apps`, then
//! `packages`, then `legacyPackages`; `apps.<system>.default` then
//! `packages.<system>.default`), apps (`type = "app"`, a program in the
//! store whose context is built first), packages run as
//! `bin/<meta.mainProgram, pname or name>`, flakes named by `.`, `path:`
//! and `git+file://` references, and the failures (a program outside the
//! store, an app of the wrong type, no such attribute). rix runs first on
//! a shared temporary store, so it builds what is needed; Nix then runs the
//! same things on that store and the programs' output must be the same.
//! Needs the current Nix (`RIX_NIX_CURRENT`); skipped without it.

mod rixcmd;

use std::path::Path;
use std::process::{Command, Output};

use rixcmd::TempStore;

const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nflake-registry =\nbuild-hook =";

fn nix(store: &TempStore, cwd: &Path, args: &[&str]) -> Option<Output> {
    let mut cmd = rix_testutil::nix_current("nix")?;
    Some(
        cmd.arg("--store")
            .arg(store.url())
            .args(args)
            .current_dir(cwd)
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("HOME", store.dir.path())
            .env("XDG_CONFIG_HOME", store.dir.path().join("config"))
            .env("XDG_CACHE_HOME", store.dir.path().join("nix-cache"))
            .output()
            .unwrap(),
    )
}

fn rix(store: &TempStore, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(store.url())
        .args(["--option", "sandbox", "false"])
        .args(args)
        .current_dir(cwd)
        .env("HOME", store.dir.path())
        .env("XDG_CONFIG_HOME", store.dir.path().join("config"))
        .env("XDG_CACHE_HOME", store.dir.path().join("rix-cache"))
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The last line of standard error of a command that failed.
#[track_caller]
fn error_line(o: Output) -> String {
    assert!(!o.status.success(), "succeeded: {o:?}");
    let s = String::from_utf8_lossy(&o.stderr);
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A flake whose packages are shell scripts written by their builders, and
/// apps that run them.
fn write_flake(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        r#"{
  outputs = { self }:
    let
      system = "x86_64-linux";
      script = name: prog: text: derivation {
        inherit name system text prog;
        builder = "/bin/sh";
        args = [ "-c" "/bin/mkdir -p $out/bin && printf '#!/bin/sh\\n%s\\n' \"$text\" > $out/bin/$prog && /bin/chmod +x $out/bin/$prog" ];
      };
      pkgs = self.packages.${system};
    in {
      packages.${system} = {
        hello = script "hello-1.0" "hello" "echo hello from $0: \"$@\"";
        greeter = script "greeter-2.0" "greet" "echo greetings: \"$@\"" // { meta.mainProgram = "greet"; };
        named = script "named-3" "tool" "echo named tool" // { pname = "tool"; };
        default = pkgs.hello;
        both = script "both" "both" "echo package both";
      };
      legacyPackages.${system}.legacy = script "legacy" "legacy" "echo legacy";
      apps.${system} = {
        app = { type = "app"; program = "${pkgs.greeter}/bin/greet"; };
        both = { type = "app"; program = "${pkgs.hello}/bin/hello"; };
        default = { type = "app"; program = "${pkgs.named}/bin/tool"; };
        outside = { type = "app"; program = "/bin/sh"; };
        wrongType = { type = "derivation"; program = "${pkgs.hello}/bin/hello"; };
        noType = { program = "${pkgs.hello}/bin/hello"; };
      };
    };
}
"#,
    )
    .unwrap();
}

#[test]
fn run_follows_nix_s_search_order() {
    let store = TempStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let flake = root.join("f");
    write_flake(&flake);
    if rix_testutil::nix_current("nix").is_none() {
        eprintln!("skipping: no current Nix");
        return;
    }
    let cases: &[&[&str]] = &[
        &["run", ".#app", "--", "a", "b"],
        &["run", ".#both"],
        &["run", ".#hello", "--", "x"],
        &["run", ".#greeter"],
        &["run", ".#named"],
        &["run", ".#legacy"],
        &["run", ".#packages.x86_64-linux.both"],
        &["run"],
        &["run", "."],
    ];
    for args in cases {
        let ours = ok(rix(&store, &flake, args));
        let theirs = ok(nix(&store, &flake, args).unwrap());
        assert_eq!(ours, theirs, "{args:?}");
    }
    // Other references to the same flake.
    let path_ref = format!("path:{}#app", flake.display());
    let ours = ok(rix(&store, &root, &["run", &path_ref, "--", "p"]));
    let theirs = ok(nix(&store, &root, &["run", &path_ref, "--", "p"]).unwrap());
    assert_eq!(ours, theirs);
    assert_eq!(ours, "greetings: p\n");
}

#[test]
fn run_failures_as_nix() {
    let store = TempStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let flake = std::fs::canonicalize(tmp.path()).unwrap();
    write_flake(&flake);
    if rix_testutil::nix_current("nix").is_none() {
        return;
    }
    for attr in [".#outside", ".#wrongType", ".#noType", ".#nothing"] {
        let ours = error_line(rix(&store, &flake, &["run", attr]));
        let theirs = error_line(nix(&store, &flake, &["run", attr]).unwrap());
        assert_eq!(ours, theirs, "{attr}");
    }
}

#[test]
fn shell_puts_flake_packages_on_path() {
    let store = TempStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let flake = std::fs::canonicalize(tmp.path()).unwrap();
    write_flake(&flake);
    let Some(_) = rix_testutil::nix_current("nix") else {
        return;
    };
    let args = [
        "shell",
        ".#hello",
        "path:.#greeter",
        "--command",
        "/bin/sh",
        "-c",
        "hello 1 && greet 2",
    ];
    let ours = ok(rix(&store, &flake, &args));
    let theirs = ok(nix(&store, &flake, &args).unwrap());
    assert_eq!(ours, theirs);
    assert!(ours.ends_with("greetings: 2\n"), "{ours}");
}

/// A flake in a Git repository, named `git+file://`.
#[test]
fn run_from_a_git_repository() {
    let store = TempStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(tmp.path()).unwrap();
    write_flake(&repo);
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "rix")
            .env("GIT_AUTHOR_EMAIL", "rix@example.org")
            .env("GIT_COMMITTER_NAME", "rix")
            .env("GIT_COMMITTER_EMAIL", "rix@example.org")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "a"]);
    let Some(_) = rix_testutil::nix_current("nix") else {
        return;
    };
    let url = format!("git+file://{}#both", repo.display());
    let ours = ok(rix(&store, tmp.path(), &["run", &url]));
    let theirs = ok(nix(&store, tmp.path(), &["run", &url]).unwrap());
    assert_eq!(ours, theirs);
    let args = ["shell", &url, "--command", "both"];
    let ours = ok(rix(&store, tmp.path(), &args));
    let theirs = ok(nix(&store, tmp.path(), &args).unwrap());
    assert_eq!(ours, theirs);
    assert_eq!(ours, "package both\n");
}
