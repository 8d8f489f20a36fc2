//! The evaluation cache: `rix eval FLAKE#ATTR` and `rix build FLAKE#ATTR`
//! repeated on an unchanged flake answer without evaluating (no trace is
//! printed), and a change to the flake's source or to a locked input gives a
//! fresh answer.

use std::path::Path;
use std::process::Command;

mod rixcmd;
use rixcmd::TempStore;

struct Run {
    stdout: String,
    evaluated: bool,
}

fn rix(store: &TempStore, cache: &Path, dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "--option", "sandbox", "false"])
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        evaluated: stderr.contains("trace: evaluating"),
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const FLAKE: &str = r#"{
  inputs.dep.url = "path:./dep";
  outputs = { self, dep }: builtins.trace "evaluating" {
    x = dep.v + 1;
    packages.x86_64-linux.default = derivation {
      name = "p"; system = "x86_64-linux"; builder = "/bin/sh";
      args = [ "-c" "echo ${toString dep.v} > $out" ];
    };
  };
}
"#;

#[test]
fn a_path_flake_answers_from_the_cache_until_it_changes() {
    let store = TempStore::new();
    let cache = store.dir.path().join("cache");
    let dir = store.dir.path().join("flake");
    write(&dir.join("flake.nix"), FLAKE);
    write(
        &dir.join("dep/flake.nix"),
        "{ outputs = _: { v = 41; }; }\n",
    );
    // The first run writes flake.lock (a new source): not cached.
    let first = rix(&store, &cache, &dir, &["eval", ".#x"]);
    assert_eq!(first.stdout, "42\n");
    assert!(first.evaluated);
    let second = rix(&store, &cache, &dir, &["eval", ".#x"]);
    assert!(second.evaluated);
    let third = rix(&store, &cache, &dir, &["eval", ".#x"]);
    assert_eq!(third.stdout, "42\n");
    assert!(!third.evaluated, "answered from the cache");
    // Another question is another answer.
    let json = rix(&store, &cache, &dir, &["eval", "--json", ".#x"]);
    assert!(json.evaluated);

    // A locked input changes: its new lock is a new answer.
    write(&dir.join("dep/flake.nix"), "{ outputs = _: { v = 1; }; }\n");
    rix(&store, &cache, &dir, &["flake", "update"]);
    let updated = rix(&store, &cache, &dir, &["eval", ".#x"]);
    assert_eq!(updated.stdout, "2\n");
    assert!(updated.evaluated);
    assert!(!rix(&store, &cache, &dir, &["eval", ".#x"]).evaluated);

    // The source changes.
    write(
        &dir.join("flake.nix"),
        &FLAKE.replace("dep.v + 1", "dep.v + 2"),
    );
    let edited = rix(&store, &cache, &dir, &["eval", ".#x"]);
    assert_eq!(edited.stdout, "3\n");
    assert!(edited.evaluated);

    // rix build: the derivation from the cache, the same output.
    let built = rix(
        &store,
        &cache,
        &dir,
        &["build", ".#", "--no-link", "--print-out-paths"],
    );
    assert!(built.evaluated);
    let again = rix(
        &store,
        &cache,
        &dir,
        &["build", ".#", "--no-link", "--print-out-paths"],
    );
    assert!(!again.evaluated);
    assert_eq!(again.stdout, built.stdout);
}

#[test]
fn a_git_flake_answers_from_the_cache_until_its_tracked_files_change() {
    let store = TempStore::new();
    let cache = store.dir.path().join("cache");
    let dir = store.dir.path().join("repo");
    write(
        &dir.join("flake.nix"),
        "{ outputs = { self }: builtins.trace \"evaluating\" { x = import ./x.nix; }; }\n",
    );
    write(&dir.join("x.nix"), "1\n");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "rix")
            .env("GIT_AUTHOR_EMAIL", "rix@example.org")
            .env("GIT_COMMITTER_NAME", "rix")
            .env("GIT_COMMITTER_EMAIL", "rix@example.org")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "a"]);
    assert!(rix(&store, &cache, &dir, &["eval", ".#x"]).evaluated);
    let hit = rix(&store, &cache, &dir, &["eval", ".#x"]);
    assert_eq!(hit.stdout, "1\n");
    assert!(!hit.evaluated);
    // An untracked file is not part of the source.
    write(&dir.join("notes.txt"), "x\n");
    assert!(!rix(&store, &cache, &dir, &["eval", ".#x"]).evaluated);
    // A tracked file edited (not committed) is.
    write(&dir.join("x.nix"), "2\n");
    let dirty = rix(&store, &cache, &dir, &["eval", ".#x"]);
    assert_eq!(dirty.stdout, "2\n");
    assert!(dirty.evaluated);
    // Committed: HEAD moved, the contents are the same: evaluated again
    // (`self.rev` and `lastModified` changed).
    git(&["commit", "-q", "-am", "b"]);
    assert!(rix(&store, &cache, &dir, &["eval", ".#x"]).evaluated);
    assert!(!rix(&store, &cache, &dir, &["eval", ".#x"]).evaluated);
}
