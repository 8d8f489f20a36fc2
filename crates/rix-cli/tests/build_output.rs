//! What `rix build` tells the user, as Nix 2.26's `nix-build` does: the
//! derivations it will build, dependencies first, worded in the singular
//! for one.

use std::process::Command;

mod rixcmd;
use rixcmd::TempStore;

const DAG: &str = r#"
let
  mk = name: deps: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name} ${toString deps} > $out" ];
  };
  a = mk "a" [ ];
  b = mk "b" [ a ];
  c = mk "c" [ a ];
  d = mk "d" [ b c ];
  z = mk "z" [ ];
in { top = mk "top" [ d z ]; inherit a; }
"#;

/// The "will be built" block of stderr, with the store directory replaced.
fn plan_block(stderr: &str, store: &TempStore) -> String {
    let dir = store.store_dir().display().to_string();
    let mut out = String::new();
    let mut inside = false;
    for l in stderr.lines() {
        if l.ends_with("will be built:") {
            inside = true;
        } else if !l.starts_with("  ") {
            inside = false;
        }
        if inside {
            out.push_str(&l.replace(&dir, "STORE"));
            out.push('\n');
        }
    }
    out
}

fn rix_dry_run(t: &TempStore, file: &str, attr: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "build", "--dry-run", "-f", file, attr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plan_block(&String::from_utf8_lossy(&out.stderr), t)
}

fn rix_build(t: &TempStore, file: &str, attr: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "--option", "sandbox", "false"])
        .args(["build", "--no-link", "-f", file, attr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plan_block(&String::from_utf8_lossy(&out.stderr), t)
}

#[test]
fn will_be_built_lists_dependencies_first_as_nix_does() {
    let tr = TempStore::new();
    let file = tr.dir.path().join("dag.nix");
    std::fs::write(&file, DAG).unwrap();
    let file = file.to_str().unwrap();
    let dry = rix_dry_run(&tr, file, "top");
    let names: Vec<&str> = dry
        .lines()
        .skip(1)
        .map(|l| l.rsplit('-').next().unwrap())
        .collect();
    assert_eq!(
        dry.lines().next(),
        Some("these 6 derivations will be built:")
    );
    // Every derivation after those it depends on.
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        at("a.drv") < at("b.drv") && at("a.drv") < at("c.drv"),
        "{dry}"
    );
    assert!(
        at("b.drv") < at("d.drv") && at("d.drv") < at("top.drv"),
        "{dry}"
    );
    let single = rix_dry_run(&tr, file, "a");
    assert_eq!(
        single.lines().next(),
        Some("this derivation will be built:")
    );
    // The build itself announces the same list (in a store of its own: the
    // other stays unbuilt for Nix's dry run).
    let tb = TempStore::new();
    let planned = rix_dry_run(&tb, file, "top");
    assert_eq!(rix_build(&tb, file, "top"), planned);

    let Some(mut nix) = rix_testutil::nix_current("nix-build") else {
        return;
    };
    // Nix on the same store: the same .drv paths, so the same order.
    let out = nix
        .args([
            "--store",
            &tr.url(),
            "--option",
            "build-hook",
            "",
            "--option",
            "substituters",
            "",
        ])
        .args(["--dry-run", file, "-A", "top"])
        .output()
        .unwrap();
    let nix_block = plan_block(&String::from_utf8_lossy(&out.stderr), &tr);
    assert_eq!(dry, nix_block);
    let out = rix_testutil::nix_current("nix-build")
        .unwrap()
        .args([
            "--store",
            &tr.url(),
            "--option",
            "build-hook",
            "",
            "--option",
            "substituters",
            "",
        ])
        .args(["--dry-run", file, "-A", "a"])
        .output()
        .unwrap();
    assert_eq!(
        single,
        plan_block(&String::from_utf8_lossy(&out.stderr), &tr)
    );
}

const FAILING: &str = r#"
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };
in {
  fail = mk "fail" "echo failing; exit 1";
  two = mk "two" "echo ${mk "f1" "echo one; exit 1"} ${mk "f2" "echo two; exit 2"} > $out";
}
"#;

fn rix_fails(t: &TempStore, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "--option", "sandbox", "false"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_failed_build_is_reported_once_when_it_fails() {
    let t = TempStore::new();
    let file = t.dir.path().join("failing.nix");
    std::fs::write(&file, FAILING).unwrap();
    let file = file.to_str().unwrap();
    let (code, err) = rix_fails(&t, &["build", "--no-link", "-f", file, "fail"]);
    assert_eq!(code, 100, "{err}");
    assert_eq!(err.matches("error: builder for").count(), 1, "{err}");
    assert!(err.contains("> failing"), "{err}");
    // The hint names the store the build used.
    assert!(
        err.contains(&format!("run 'rix --store \"{}\" log ", t.url())),
        "{err}"
    );

    // With --keep-going each failure shows when it happens, before the
    // dependent is skipped, and the summary closes.
    let (code, err) = rix_fails(
        &t,
        &[
            "build",
            "--no-link",
            "--keep-going",
            "-j",
            "1",
            "-f",
            file,
            "two",
        ],
    );
    assert_eq!(code, 100, "{err}");
    assert_eq!(err.matches("error: builder for").count(), 2, "{err}");
    let first_error = err.find("error: builder for").unwrap();
    let skipped = err.find("not building").unwrap();
    assert!(first_error < skipped, "{err}");
    assert!(
        err.trim_end()
            .ends_with("error: 2 of 3 builds failed and 1 were not attempted"),
        "{err}"
    );
}

#[test]
fn keep_failed_says_where_the_build_directory_is() {
    let t = TempStore::new();
    let file = t.dir.path().join("failing.nix");
    std::fs::write(&file, FAILING).unwrap();
    let build_dir = t.dir.path().join("builds");
    std::fs::create_dir(&build_dir).unwrap();
    let (code, err) = rix_fails(
        &t,
        &[
            "--option",
            "build-dir",
            build_dir.to_str().unwrap(),
            "build",
            "--no-link",
            "-K",
            "-f",
            file.to_str().unwrap(),
            "fail",
        ],
    );
    assert_eq!(code, 100, "{err}");
    let kept = err
        .lines()
        .find_map(|l| l.strip_prefix("note: keeping build directory '"))
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(kept.starts_with(build_dir.to_str().unwrap()), "{err}");
    assert!(std::path::Path::new(kept).is_dir(), "{kept}");
}

/// `rix build` with nothing named builds `./default.nix` and, as `nix-build`
/// does for files, prints the output paths.
#[test]
fn no_arguments_build_default_nix_and_print_the_output() {
    let t = TempStore::new();
    let dir = t.dir.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("default.nix"),
        r#"derivation { name = "x"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo x > $out" ]; }"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "--option", "sandbox", "false", "build"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let link = std::fs::read_link(dir.join("result")).unwrap();
    assert_eq!(printed, format!("{}\n", link.display()));
    assert!(printed.ends_with("-x\n"), "{printed}");
}

/// Ctrl-C in the middle of a build: the builder is stopped, and rix ends as
/// Nix does, "interrupted by the user" with exit status 1.
#[test]
fn ctrl_c_ends_with_interrupted_by_the_user() {
    let t = TempStore::new();
    let started = t.dir.path().join("started");
    let file = t.dir.path().join("slow.nix");
    std::fs::write(
        &file,
        format!(
            r#"derivation {{ name = "slow"; system = builtins.currentSystem; builder = "/bin/sh";
                args = [ "-c" "echo > {}; /bin/sleep 60; echo > $out" ]; }}"#,
            started.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "--option", "sandbox", "false"])
        .args(["build", "--no-link", file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    rix_testutil::wait_for(
        "the builder to start",
        std::time::Duration::from_secs(60),
        || started.exists().then_some(()),
    );
    ::nix::sys::signal::kill(
        ::nix::unistd::Pid::from_raw(child.id() as i32),
        ::nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.trim_end().ends_with("error: interrupted by the user"),
        "{err}"
    );
    assert!(
        !err.contains("cancelled") && !err.contains("builder for"),
        "{err}"
    );
}

/// A function where a value was expected: Nix's hint about `--arg`.
#[test]
fn a_function_needing_arguments_gets_nixs_hint() {
    let t = TempStore::new();
    let file = t.dir.path().join("f.nix");
    std::fs::write(&file, "{ x }: x\n").unwrap();
    let (code, err) = rix_fails(&t, &["build", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("passed explicitly with '--arg' or '--argstr'"),
        "{err}"
    );
    let Some(mut nix) = rix_testutil::nix_current("nix-build") else {
        return;
    };
    let out = nix
        .args(["--store", &t.url(), file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(err, String::from_utf8(out.stderr).unwrap());
}

/// A Nix file built with `max-jobs = 0`: `nix-build`'s lowercase heading for
/// one derivation, then Nix's refusal, byte for byte, exit status 1.
#[test]
fn max_jobs_zero_refuses_as_nix_build() {
    let t = TempStore::new();
    let file = t.dir.path().join("one.nix");
    std::fs::write(
        &file,
        "derivation { name = \"one\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [ \"-c\" \"echo > $out\" ]; }\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let rix = Command::new(env!("CARGO_BIN_EXE_rix"))
        .env("NIX_CONF_DIR", "/nonexistent")
        .args(["--store", &t.url(), "build", "-j0", "--no-link", file])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&rix.stderr).into_owned();
    assert_eq!(rix.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("this derivation will be built:\n"),
        "{stderr}"
    );
    assert!(stderr.contains("error:\n                           Unable to start any build;\n"));
    let Some(mut nix) = rix_testutil::nix_current("nix-build") else {
        return;
    };
    let out = nix
        .args([
            "--store",
            &t.url(),
            "--option",
            "build-hook",
            "",
            "--option",
            "substituters",
            "",
        ])
        .args(["-j0", "--no-out-link", file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), rix.status.code());
    assert_eq!(String::from_utf8_lossy(&out.stderr), stderr);
}
