//! nixpkgs' `lib` test suites (tests/vectors/nixpkgs-lib) with rix as
//! `nix-instantiate`, run as nixpkgs runs them (`lib/tests/test-with-nix.nix`):
//! the tree copied to a temporary directory, a `nix-instantiate` first on
//! `PATH` that runs `rix instantiate`, a store of its own in that directory.
//! The `.nix` suites must print `[ ]`, `modules.sh` must pass every check but
//! the known failures below, and the other scripts must succeed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A copy of the snapshot's `lib` and what the scripts run in.
struct Tree {
    tmp: tempfile::TempDir,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::Builder::new()
            .prefix("rix-nixpkgs-lib-")
            .tempdir()
            .unwrap();
        let root = tmp.path();
        copy_tree(&rix_testutil::vectors("nixpkgs-lib/lib"), &root.join("lib"));
        for d in ["bin", "home", "tmp", "etc", "config", "data", "cache"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let wrapper = root.join("bin/nix-instantiate");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' instantiate \"$@\"\n",
                env!("CARGO_BIN_EXE_rix")
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Tree { tmp }
    }

    fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.tmp.path()).unwrap()
    }

    /// A command in the tree's root with the environment nixpkgs' test
    /// derivation sets up: `TEST_LIB`, a fresh `HOME` and temporary directory,
    /// rix's configuration selecting the tree's own store.
    fn command(&self, program: &str) -> Command {
        let root = self.root();
        let d = root.display();
        let path = format!(
            "{d}/bin:{}",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        // `nix-instantiate` is the wrapper (named by path: which program runs
        // must not depend on how the lookup treats the changed PATH).
        let mut cmd = match program {
            "nix-instantiate" => Command::new(root.join("bin/nix-instantiate")),
            _ => Command::new(program),
        };
        cmd.current_dir(&root)
            .env("PATH", path)
            .env("TEST_LIB", root.join("lib"))
            .env("HOME", root.join("home"))
            .env("TMPDIR", root.join("tmp"))
            .env("RIX_CONF_DIR", root.join("etc"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_CACHE_HOME", root.join("cache"))
            .env(
                "RIX_CONFIG",
                format!("store = local?store={d}/store&state={d}/state&log={d}/log"),
            )
            .env("PAGER", "cat")
            .env_remove("NIX_PATH")
            .env_remove("NIX_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `program ARGS`, killed after `limit`.
    fn run(&self, program: &str, args: &[&str], limit: Duration) -> Output {
        let start = Instant::now();
        let mut child = self.command(program).args(args).spawn().unwrap();
        // Drain the pipes while waiting: the scripts write more than a pipe holds.
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let read = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let (out, err) = (read(Box::new(out)), read(Box::new(err)));
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!("{program} {args:?} took longer than {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        };
        eprintln!(
            "{program} {}: {:?} in {:.1} s",
            args.join(" "),
            output.status,
            start.elapsed().as_secs_f64()
        );
        output
    }

    /// Runs a script of the suite with bash; it must succeed.
    #[track_caller]
    fn script_passes(&self, script: &str, args: &[&str]) {
        let mut all = vec![script];
        all.extend_from_slice(args);
        let out = self.run("bash", &all, Duration::from_secs(900));
        assert!(
            out.status.success(),
            "{script} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `nix-instantiate --eval --strict` of the `.nix` suites prints `[ ]`; the
/// path library's unit tests evaluate; `lib.version` evaluates on its own.
#[test]
fn nix_suites_print_empty_lists() {
    let tree = Tree::new();
    for suite in ["misc", "systems", "fetchers"] {
        let file = format!("lib/tests/{suite}.nix");
        let out = tree.run(
            "nix-instantiate",
            &["--eval", "--strict", &file],
            Duration::from_secs(300),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "[ ]\n",
            "{file} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success());
    }
    let libpath = tree.root().join("lib").display().to_string();
    let out = tree.run(
        "nix-instantiate",
        &[
            "--eval",
            "--show-trace",
            "--argstr",
            "libpath",
            &libpath,
            "lib/path/tests/unit.nix",
        ],
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "lib/path/tests/unit.nix: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tree.run(
        "nix-instantiate",
        &["lib", "-A", "version", "--eval"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with('"'));
}

/// The checks of `modules.sh` (by line) allowed to fail: none. (Kept as a
/// list so that a known, explained failure can be named here rather than
/// the test loosened.)
const MODULES_KNOWN_FAILURES: &[u32] = &[];

/// How many checks `modules.sh` of the snapshot makes.
const MODULES_CHECKS: u32 = 407;

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn modules_sh() {
    let tree = Tree::new();
    let out = tree.run("bash", &["lib/tests/modules.sh"], Duration::from_secs(1800));
    let stdout = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    let count = |what: &str| -> u32 {
        stdout
            .lines()
            .find_map(|l| l.strip_suffix(what)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '{what}' line:\n{stdout}\n{stderr}"))
    };
    let (pass, fail) = (count(" Pass"), count(" Fail"));
    let failed: BTreeSet<u32> = stdout
        .lines()
        .chain(stderr.lines())
        .filter_map(|l| {
            l.split_once("TEST FAILED at lib/tests/modules.sh:")?
                .1
                .trim()
                .parse()
                .ok()
        })
        .collect();
    let known: BTreeSet<u32> = MODULES_KNOWN_FAILURES.iter().copied().collect();
    let unexpected: Vec<_> = failed.difference(&known).collect();
    assert!(
        unexpected.is_empty(),
        "modules.sh checks failing at lines {unexpected:?} ({pass} Pass, {fail} Fail):\n{stdout}"
    );
    assert_eq!(fail as usize, failed.len(), "{stdout}");
    assert_eq!(pass + fail, MODULES_CHECKS, "{stdout}");
    assert_eq!(out.status.success(), fail == 0, "{stdout}");
}

/// The path library's property tests, with a fixed seed (`jq` reads the
/// results).
#[test]
fn path_prop_sh() {
    let jq = Command::new("jq").arg("--version").output();
    assert!(
        jq.is_ok_and(|o| o.status.success()),
        "lib/path/tests/prop.sh needs jq on PATH"
    );
    Tree::new().script_passes("lib/path/tests/prop.sh", &["42"]);
}

/// `lib.filesystem`, `lib.sources` (copies sources to the store), `lib.debug`
/// and `lib.network`.
#[test]
fn small_scripts() {
    let tree = Tree::new();
    for s in ["filesystem", "sources", "debug", "network"] {
        tree.script_passes(&format!("lib/tests/{s}.sh"), &[]);
    }
}

/// `lib.fileset`: needs `git` (`gitTracked` uses `builtins.fetchGit` on
/// working trees and their submodules). Without `inotifywait` it does not
/// check that excluded files are left unread, and says so.
#[test]
fn fileset_tests_sh() {
    let git = Command::new("git").arg("--version").output();
    assert!(
        git.is_ok_and(|o| o.status.success()),
        "lib/fileset/tests.sh needs git on PATH"
    );
    Tree::new().script_passes("lib/fileset/tests.sh", &[]);
}
