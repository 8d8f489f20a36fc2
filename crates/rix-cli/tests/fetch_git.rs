//! `builtins.fetchGit` of repositories on this machine: a working tree as it
//! is on disk (tracked files only, dirty or clean, submodules), a commit by
//! `rev`, a bare repository; the same results as Nix 2.26 (when
//! `RIX_NIX_CURRENT` names its launcher).

mod rixcmd;

use std::path::Path;
use std::process::Command;

use rixcmd::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
        .output()
        .expect("git is needed by these tests");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn init(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["config", "user.name", "rix"]);
    git(dir, &["config", "user.email", "rix@example.org"]);
}

/// Each fetch as a set without `outPath` but with its path as `o`.
fn expr(fetches: &[String]) -> String {
    format!(
        "map (x: removeAttrs x [\"outPath\"] // {{ o = x.outPath; }}) [ ({}) ]",
        fetches.join(") (")
    )
}

fn rix_eval(store: &TempStore, cwd: &Path, e: &str) -> (String, String) {
    let url = store.url();
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args([
            "--store",
            &url,
            "instantiate",
            "--eval",
            "--strict",
            "--expr",
            e,
        ])
        .current_dir(cwd)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{e}: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

#[test]
fn fetch_git_working_trees_and_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let r = dir.join("r");
    init(&r);
    std::fs::create_dir_all(r.join("d")).unwrap();
    std::fs::write(r.join("d/a"), "a\n").unwrap();
    std::os::unix::fs::symlink("d/a", r.join("l")).unwrap();
    git(&r, &["add", "."]);
    git(&r, &["commit", "-q", "-m", "a"]);
    let first = git(&r, &["rev-parse", "HEAD"]);
    std::fs::write(r.join("untracked"), "u\n").unwrap();
    std::fs::write(r.join(".gitignore"), "ignored\n").unwrap();
    std::fs::write(r.join("ignored"), "i\n").unwrap();
    git(&r, &["add", ".gitignore"]);
    git(&r, &["commit", "-q", "-m", "b"]);
    let head = git(&r, &["rev-parse", "HEAD"]);
    git(&dir, &["clone", "-q", "--bare", "r", "b.git"]);

    let store = TempStore::new();
    let clean = [
        "builtins.fetchGit ./r".to_owned(),
        format!("builtins.fetchGit {{ url = ./r; rev = \"{first}\"; }}"),
        "builtins.fetchGit { url = ./r; ref = \"HEAD\"; name = \"n\"; }".to_owned(),
        "builtins.fetchGit ./b.git".to_owned(),
    ];
    let (out, err) = rix_eval(&store, &dir, &expr(&clean));
    assert!(!err.contains("dirty"), "{err}");
    assert!(
        out.contains(&format!("rev = \"{head}\"; revCount = 2;")),
        "{out}"
    );
    assert!(
        out.contains(&format!("rev = \"{first}\"; revCount = 1;")),
        "{out}"
    );
    assert!(
        out.contains("lastModifiedDate = \"20200101000000\""),
        "{out}"
    );
    // Tracked files only: no untracked, ignored or .git.
    let paths: Vec<&str> = out
        .split("o = \"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    let mut names: Vec<_> = std::fs::read_dir(paths[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".gitignore", "d", "l"]);

    // A change to a tracked file makes the tree dirty; a submodule is
    // included with `submodules = true` only.
    std::fs::write(r.join("d/a"), "changed\n").unwrap();
    let sub = r.join("sub");
    init(&sub);
    std::fs::write(sub.join("s"), "s\n").unwrap();
    git(&sub, &["add", "s"]);
    git(&sub, &["commit", "-q", "-m", "s"]);
    git(&r, &["submodule", "add", "-q", "./sub", "sub"]);
    let dirty = [
        "builtins.fetchGit ./r".to_owned(),
        "builtins.fetchGit { url = ./r; submodules = true; }".to_owned(),
    ];
    let (out, err) = rix_eval(&store, &dir, &expr(&dirty));
    assert!(
        err.contains(&format!("warning: Git tree '{}' is dirty", r.display())),
        "{err}"
    );
    assert!(
        out.contains(&format!("dirtyRev = \"{head}-dirty\"")),
        "{out}"
    );
    assert!(
        out.contains("rev = \"0000000000000000000000000000000000000000\""),
        "{out}"
    );
    let paths: Vec<&str> = out
        .split("o = \"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert!(!Path::new(paths[0]).join("sub").exists());
    assert_eq!(
        std::fs::read_to_string(Path::new(paths[0]).join("d/a")).unwrap(),
        "changed\n"
    );
    assert!(Path::new(paths[1]).join("sub/s").exists());
    assert!(!Path::new(paths[1]).join("sub/.git").exists());

    // The same sets and store paths as Nix 2.26.
    let Some(mut nix) = rix_testutil::nix_current("nix-instantiate") else {
        return;
    };
    let all: Vec<String> = clean.iter().chain(dirty.iter()).cloned().collect();
    let home = dir.join("home");
    let nix_out = nix
        .args(["--store", &store.url(), "--eval", "--strict", "--expr"])
        .arg(expr(&all))
        .current_dir(&dir)
        .env("HOME", &home)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap();
    assert!(nix_out.status.success(), "{nix_out:?}");
    let (rix_out, _) = rix_eval(&store, &dir, &expr(&all));
    assert_eq!(rix_out, String::from_utf8(nix_out.stdout).unwrap());
}
