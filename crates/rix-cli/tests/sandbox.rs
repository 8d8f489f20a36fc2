//! `rix build` in the sandbox against Nix 2.8's sandbox, builds in stores rooted
//! outside `/` (the store seen at `/nix/store` through the mount namespace),
//! `rix run` / `rix shell` there, flags and settings, and rix run by an
//! unprivileged user.
//!
//! Builders get a static shell: `/bin/busybox` (`apt-get install
//! busybox-static`, as `.ci/run` does) bound at `/bin/sh`.

mod rixcmd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rixcmd::{nix, ok_str};

const BUSYBOX: &str = "/bin/busybox";
const SH: &str = "/bin/sh=/bin/busybox";

/// These tests are about rix's defaults: the host's Nix configuration (Debian's
/// `/etc/nix/nix.conf` says `sandbox = false`) is kept out.
const HERMETIC: [(&str, &str); 2] = [
    ("NIX_CONF_DIR", "/nonexistent/rix-test"),
    ("NIX_USER_CONF_FILES", "/nonexistent/rix-test/nix.conf"),
];

/// The rix under test, without the host's Nix configuration.
fn rix_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rix"));
    cmd.envs(HERMETIC);
    cmd
}

fn usable() -> bool {
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipping: {BUSYBOX} missing (apt-get install busybox-static)");
        return false;
    }
    let probe = rix_command()
        .args(["--option", "sandbox-fallback", "false", "build", "--help"])
        .output()
        .unwrap();
    assert!(probe.status.success());
    true
}

/// A directory for chroot stores, traversable by Nix's build users.
fn root() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("rix-sandbox-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn rix(store: &Path, args: &[&str]) -> Output {
    rix_command()
        .arg("--store")
        .arg(store)
        .args([
            "--option",
            "sandbox-paths",
            SH,
            "--option",
            "sandbox-fallback",
            "false",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// What a builder can observe about its sandbox, and a small closure on top.
const VIEW: &str = r#"
let
  sh = "/bin/sh";
  view = derivation {
    name = "view";
    system = builtins.currentSystem;
    builder = sh;
    outputs = [ "out" "dev" ];
    args = [ "-c" ''
      { id; hostname; umask; pwd; echo "$0 $$"; export; ls /; ls /dev /dev/pts; ls -la /etc | cut -c1-10;
        cat /etc/passwd /etc/group /etc/hosts; ls -ld /tmp /build $NIX_STORE | cut -c1-10;
        ls /proc/1/exe && echo proc; echo x > /dev/null && echo null; } > $out
      echo dev > $dev
    '' ];
  };
  dep = derivation {
    name = "dep";
    system = builtins.currentSystem;
    builder = sh;
    args = [ "-c" "mkdir -p $out/share; cat ${view} > $out/share/view; echo ${view.dev} > $out/ref; ln -s share/view $out/link" ];
  };
in derivation {
  name = "top";
  system = builtins.currentSystem;
  builder = sh;
  args = [ "-c" "cat ${dep}/link ${dep}/ref > $out" ];
}
"#;

/// NAR hash of `path` in the store rooted at `r`, as Nix reports it.
fn nar_hash(nix_store: &Path, r: &Path, path: &str) -> String {
    let out = Command::new(nix_store)
        .arg("--store")
        .arg(r)
        .args(["-q", "--hash", path])
        .env("NIX_CONFIG", "substituters =")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn instantiate(r: &Path, file: &Path) -> String {
    let out = Command::new(nix("nix-instantiate").unwrap())
        .arg("--store")
        .arg(r)
        .arg(file)
        .env("NIX_CONFIG", "substituters =")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn rooted_store_builds_match_nixs_sandbox() {
    let (Some(nix_build), Some(nix_store)) = (nix("nix-build"), nix("nix-store")) else {
        return;
    };
    if !usable() {
        return;
    }
    let dir = root();
    let file = dir.path().join("view.nix");
    std::fs::write(&file, VIEW).unwrap();
    let (rix_root, nix_root) = (dir.path().join("rix"), dir.path().join("nix"));
    let drv = instantiate(&rix_root, &file);
    assert_eq!(instantiate(&nix_root, &file), drv);
    assert!(drv.starts_with("/nix/store/"));
    let by_rix = ok_str(rix(
        &rix_root,
        &["build", &drv, "--no-link", "--print-out-paths"],
    ));
    let out = Command::new(nix_build)
        .arg("--store")
        .arg(&nix_root)
        .args([
            "--option",
            "sandbox",
            "true",
            "--option",
            "sandbox-paths",
            SH,
        ])
        .args(["--option", "substituters", "", "--no-out-link", &drv])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_nix = String::from_utf8(out.stdout).unwrap();
    assert_eq!(by_rix, by_nix);
    let top = by_rix.trim();
    // Every output, byte for byte (the view first, for a readable diff).
    let outputs = |r: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(r.join("nix/store"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && !n.ends_with(".drv") && !n.ends_with(".lock"))
            .map(|n| format!("/nix/store/{n}"))
            .collect();
        v.sort();
        v
    };
    let paths = outputs(&rix_root);
    assert_eq!(paths, outputs(&nix_root));
    assert_eq!(paths.len(), 4, "{paths:?}");
    let view = paths.iter().find(|p| p.ends_with("-view")).unwrap();
    let real = |r: &Path, p: &str| r.join(p.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(real(&rix_root, view)).unwrap(),
        std::fs::read_to_string(real(&nix_root, view)).unwrap(),
        "the builder saw a different sandbox"
    );
    for p in &paths {
        assert_eq!(
            nar_hash(&nix_store, &rix_root, p),
            nar_hash(&nix_store, &nix_root, p),
            "{p}"
        );
    }
    assert!(top.ends_with("-top"));
    // Nix accepts the store rix built.
    let verify = Command::new(&nix_store)
        .arg("--store")
        .arg(&rix_root)
        .args(["--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

const HELLO: &str = r#"
derivation {
  name = "hello-2.12";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "mkdir -p $out/bin; printf '#!/bin/sh\necho \"hello from $0: $*\"\n' > $out/bin/hello; chmod +x $out/bin/hello" ];
}
"#;

#[test]
fn rix_run_and_shell_see_a_rooted_store_at_its_logical_path() {
    if nix("nix-instantiate").is_none() || !usable() {
        return;
    }
    let dir = root();
    let file = dir.path().join("hello.nix");
    std::fs::write(&file, HELLO).unwrap();
    let r = dir.path().join("r");
    let drv = instantiate(&r, &file);
    let out = ok_str(rix(&r, &["build", &drv, "--no-link", "--print-out-paths"]));
    let out = out.trim();
    assert!(!Path::new(out).join("bin/hello").exists() || Path::new("/nix/store").exists());
    let ran = ok_str(rix(&r, &["run", out, "--", "a", "-b"]));
    assert_eq!(ran, format!("hello from {out}/bin/hello: a -b\n"));
    let via_drv = ok_str(rix(&r, &["run", &format!("{drv}^out")]));
    assert_eq!(via_drv, format!("hello from {out}/bin/hello: \n"));
    let shell = ok_str(rix(&r, &["shell", out, "--command", "hello", "x"]));
    assert_eq!(shell, format!("hello from {out}/bin/hello: x\n"));
    // The real location works too; a path that is not valid does not.
    let real = r.join(out.trim_start_matches('/'));
    let ran = ok_str(rix(&r, &["run", real.join("bin/hello").to_str().unwrap()]));
    assert_eq!(ran, format!("hello from {out}/bin/hello: \n"));
    let e = fails(rix(
        &r,
        &["run", "/nix/store/00000000000000000000000000000000-nothing"],
    ));
    assert!(e.contains("not valid"), "{e}");
    // The namespace's root was mounted on a directory kept in the state directory.
    let run_root = r.join("nix/var/nix/sandbox/run-root");
    assert_eq!(std::fs::read_dir(&run_root).unwrap().count(), 0);
    // The process's working directory is kept.
    let pwd = rix_command()
        .arg("--store")
        .arg(&r)
        .args(["shell", out, "--command", "pwd"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pwd.stdout).trim(),
        dir.path().to_str().unwrap()
    );
}

/// Standard error of a command that must fail with an error (exit 1, no panic).
#[track_caller]
fn fails(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Nix's build statuses (100 failed, 101 timed out, ...), 1 for anything else.
    assert!(
        matches!(out.status.code(), Some(1 | 100..=111)),
        "expected a failure: {:?} {stderr}",
        out.status
    );
    assert!(
        stderr.contains("error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

fn relocated(dir: &Path) -> String {
    let d = dir.display();
    format!("local?store={d}/store&state={d}/state&log={d}/log")
}

/// Writes `expr` and instantiates it into the relocated store in `dir`.
fn instantiate_relocated(dir: &Path, expr: &str) -> String {
    let file = dir.join("e.nix");
    std::fs::write(&file, expr).unwrap();
    let out = Command::new(nix("nix-instantiate").unwrap())
        .args(["--store", &relocated(dir)])
        .arg(&file)
        .env("NIX_CONFIG", "substituters =")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn rix_relocated(dir: &Path, args: &[&str]) -> Output {
    rix(Path::new(&relocated(dir)), args)
}

#[test]
fn flags_and_settings() {
    if nix("nix-instantiate").is_none() || !usable() {
        return;
    }
    let dir = root();
    let peek = instantiate_relocated(
        dir.path(),
        r#"{
  peek = derivation { name = "peek"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "/bin/cat /etc/hostname > $out" ]; };
  chatty = derivation { name = "chatty"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "while true; do echo 0123456789; done" ]; };
  impure = derivation { name = "impure"; system = builtins.currentSystem; builder = "/bin/sh";
    __noChroot = true; args = [ "-c" "/bin/cat /etc/hostname > $out" ]; };
}.peek"#,
    );
    // On by default: the host's files are not there.
    let e = fails(rix_relocated(dir.path(), &["build", &peek, "--no-link"]));
    assert!(
        e.contains("/bin/cat: not found") || e.contains("No such file"),
        "{e}"
    );
    // --no-sandbox (and sandbox = false) build on the host.
    ok_str(rix_relocated(
        dir.path(),
        &["build", &peek, "--no-link", "--no-sandbox"],
    ));
    let text = std::fs::read_to_string(dir.path().join("e.nix")).unwrap();
    let attr =
        |a: &str| instantiate_relocated(dir.path(), &text.replace("}.peek", &format!("}}.{a}")));
    for (a, args, needle) in [
        (
            "chatty",
            vec!["--max-build-log-size", "2000"],
            "killed after writing more than 2000 bytes of log output",
        ),
        (
            "chatty",
            vec!["--option", "max-build-log-size", "3000"],
            "killed after writing more than 3000 bytes of log output",
        ),
        (
            "impure",
            vec!["--sandbox"],
            "'__noChroot' set, but that's not allowed when 'sandbox' is 'true'",
        ),
        (
            "peek",
            vec!["--option", "sandbox", "maybe"],
            "'maybe' is not 'true', 'false' or 'relaxed'",
        ),
    ] {
        let drv = attr(a);
        // Options go before the subcommand: clap lets a global `--option` after
        // it replace the earlier ones instead of adding to them.
        let (opts, flags): (Vec<&str>, Vec<&str>) = if args[0] == "--option" {
            (args, vec![])
        } else {
            (vec![], args)
        };
        let mut all = opts;
        all.extend(["build", drv.as_str(), "--no-link"]);
        all.extend(flags);
        let e = fails(rix_relocated(dir.path(), &all));
        assert!(e.contains(needle), "{a}: expected {needle:?} in {e}");
    }
    // sandbox = relaxed builds __noChroot derivations on the host.
    let drv = attr("impure");
    ok_str(rix_relocated(
        dir.path(),
        &["--option", "sandbox", "relaxed", "build", &drv, "--no-link"],
    ));
}

/// The user `nobody` can run the rix binary under test (its directories may not
/// be reachable).
fn nobody_can_run_rix() -> bool {
    Command::new("runuser")
        .args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_rix"), "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn unprivileged_user_builds_in_the_sandbox() {
    if !::nix::unistd::geteuid().is_root() || nix("nix-instantiate").is_none() || !usable() {
        return;
    }
    if !nobody_can_run_rix() {
        eprintln!(
            "skipping: user nobody cannot run {}",
            env!("CARGO_BIN_EXE_rix")
        );
        return;
    }
    let dir = root();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let file = dir.path().join("hello.nix");
    std::fs::write(&file, HELLO).unwrap();
    let r: PathBuf = dir.path().join("r");
    let as_nobody = |prog: &str, args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "nobody", "--", "env"])
            .args(HERMETIC.map(|(k, v)| format!("{k}={v}")))
            .arg(format!("HOME={}", dir.path().display()))
            .arg("NIX_CONFIG=substituters =")
            .arg(prog)
            .args(args)
            .output()
            .unwrap()
    };
    let inst = as_nobody(
        nix("nix-instantiate").unwrap().to_str().unwrap(),
        &["--store", r.to_str().unwrap(), file.to_str().unwrap()],
    );
    assert!(
        inst.status.success(),
        "{}",
        String::from_utf8_lossy(&inst.stderr)
    );
    let drv = String::from_utf8(inst.stdout).unwrap().trim().to_owned();
    let rix_bin = env!("CARGO_BIN_EXE_rix");
    let store = r.to_str().unwrap();
    let common = [
        "--store",
        store,
        "--option",
        "sandbox-paths",
        SH,
        "--option",
        "sandbox-fallback",
        "false",
    ];
    let mut build = common.to_vec();
    build.extend(["build", &drv, "--no-link", "--print-out-paths"]);
    let out = ok_str(as_nobody(rix_bin, &build));
    let mut run = common.to_vec();
    run.extend(["run", out.trim(), "--", "unprivileged"]);
    assert_eq!(
        ok_str(as_nobody(rix_bin, &run)),
        format!("hello from {}/bin/hello: unprivileged\n", out.trim())
    );
}

/// The README's main job run by an ordinary user with nothing configured: the
/// store is under their home, so not at its logical path, and every build is
/// in the sandbox (with the host's static shell at `/bin/sh`), as Nix builds
/// for such a store; `--no-sandbox` says it does not apply.
#[test]
fn ordinary_user_runs_the_readme_job_in_the_sandbox() {
    if !::nix::unistd::geteuid().is_root() || !nobody_can_run_rix() {
        eprintln!("skipping: needs root, and user nobody able to run the rix under test");
        return;
    }
    let dir = root();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::create_dir(dir.path().join("hello")).unwrap();
    for f in ["hello.nix", "hello/greeting.txt"] {
        std::fs::copy(examples.join(f), dir.path().join(f)).unwrap();
    }
    // The host's /usr is there only when the builder sees the host.
    for name in ["host", "host-sandboxed"] {
        std::fs::write(
            dir.path().join(format!("{name}.nix")),
            format!(r#"derivation {{ name = "{name}"; system = builtins.currentSystem; builder = "/bin/sh";
                 args = [ "-c" "if test -d /usr/bin; then echo host > $out; else echo sandbox > $out; fi" ]; }}"#),
        )
        .unwrap();
    }
    let chown = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let as_nobody_output = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "nobody", "--", "env"])
            .args(HERMETIC.map(|(k, v)| format!("{k}={v}")))
            .arg(format!("HOME={}", dir.path().display()))
            .arg("NIX_CONFIG=substituters =")
            .arg(env!("CARGO_BIN_EXE_rix"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let as_nobody = |args: &[&str]| ok_str(as_nobody_output(args));
    let line = |out: &str| {
        assert!(
            out.starts_with("Hello, world! (built from /nix/store/")
                && out.ends_with("-hello-greeting)\n"),
            "{out}"
        );
    };
    let printed = as_nobody(&[
        "build",
        "--no-sandbox",
        "hello.nix",
        "--print-out-paths",
        "--no-link",
    ]);
    let out_path = printed.trim();
    let real = |p: &str| {
        dir.path()
            .join(".local/share/rix/root")
            .join(p.trim_start_matches('/'))
    };
    line(&std::fs::read_to_string(real(out_path)).unwrap());
    let host = as_nobody_output(&[
        "build",
        "--no-sandbox",
        "host.nix",
        "--print-out-paths",
        "--no-link",
    ]);
    let stderr = String::from_utf8_lossy(&host.stderr).into_owned();
    assert!(
        stderr.contains("warning: building in the sandbox anyway"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(real(ok_str(host).trim())).unwrap(),
        "sandbox\n"
    );
    if rix_store::settings::static_shell().is_none() {
        eprintln!("skipping the sandboxed half: no static shell (apt-get install busybox-static)");
        return;
    }
    let sandboxed = as_nobody(&[
        "build",
        "hello.nix",
        "--print-out-paths",
        "--no-link",
        "--check",
    ]);
    assert_eq!(sandboxed.trim(), out_path);
    let host = as_nobody(&[
        "build",
        "host-sandboxed.nix",
        "--print-out-paths",
        "--no-link",
    ]);
    assert_eq!(
        std::fs::read_to_string(real(host.trim())).unwrap(),
        "sandbox\n"
    );
}

/// Makes the command's process unable to create namespaces, as a kernel or
/// container that forbids them does: a seccomp filter, installed between fork
/// and exec, fails `clone` and `unshare` with any `CLONE_NEW*` flag with EPERM,
/// and `clone3` (whose flags a filter cannot read) with ENOSYS, so that the C
/// library falls back to `clone`. No global change: only this process tree.
fn without_namespaces(cmd: &mut Command) -> bool {
    use ::nix::libc;
    refusing_namespaces(
        cmd,
        (libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWCGROUP) as u32,
    )
}

/// As [`without_namespaces`], for the namespaces of `ns` (`CLONE_NEW*` flags).
#[allow(unsafe_code)]
fn refusing_namespaces(cmd: &mut Command, ns: u32) -> bool {
    use ::nix::libc;
    use rix_build::sandbox::seccomp::{self, ArchRules, Check, Program, Rule};
    let (arch, clone, unshare) = if cfg!(target_arch = "x86_64") {
        (seccomp::AUDIT_ARCH_X86_64, 56, 272)
    } else if cfg!(target_arch = "aarch64") {
        (seccomp::AUDIT_ARCH_AARCH64, 220, 97)
    } else {
        eprintln!("skipping: no system call numbers for this architecture");
        return false;
    };
    let refuse = |nr| Rule {
        nr,
        check: Check::ArgAnyBit { arg: 0, mask: ns },
        errno: libc::EPERM,
    };
    let prog = Program::compile(&[ArchRules {
        arch,
        nr_clear: 0,
        rules: vec![
            refuse(clone),
            refuse(unshare),
            Rule {
                nr: 435,
                check: Check::Always,
                errno: libc::ENOSYS,
            },
        ],
    }]);
    let with_filter = |cmd: &mut Command, prog: Program| {
        // SAFETY: the closure runs between fork and exec and only makes prctl
        // calls on the program prepared here (no allocation, no lock).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                seccomp::install(Some(&prog), true).map_err(std::io::Error::from)
            });
        }
    };
    // Where filters cannot be installed (a container forbidding seccomp), skip.
    let mut probe = Command::new("/bin/sh");
    probe.args(["-c", "true"]);
    with_filter(&mut probe, prog.clone());
    if !probe.status().is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot install a seccomp filter here");
        return false;
    }
    with_filter(cmd, prog);
    true
}

/// `sandbox-fallback` when namespaces are not available, as Nix 2.8's: on
/// (the default), the build runs without the sandbox, with a warning; off, it
/// fails and says how to go on; `sandbox = false` builds without a word. Nix
/// 2.8, under the same filter, does the same.
#[test]
fn without_namespaces_the_sandbox_falls_back_or_fails_as_configured() {
    let dir = root();
    let expr = |name: &str| {
        format!(
            r#"derivation {{ name = "{name}"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "test -d /usr/bin && test ! -e /build && echo unsandboxed > $out" ]; }}"#
        )
    };
    let rix_without_ns = |name: &str, opts: &[&str], flags: &[&str]| {
        let file = dir.path().join(format!("{name}.nix"));
        std::fs::write(&file, expr(name)).unwrap();
        let mut cmd = rix_command();
        cmd.args(["--store", &relocated(&dir.path().join("rix"))])
            .args(opts)
            .args(["build", "--no-link", "--print-out-paths"])
            .args(flags)
            .arg(&file);
        without_namespaces(&mut cmd).then(|| cmd.output().unwrap())
    };
    // Default settings: a warning, then the build on the host.
    let Some(out) = rix_without_ns("fallback", &[], &[]) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the build sandbox is not available")
            && stderr.contains("Operation not permitted")
            && stderr.contains("building without it"),
        "{stderr}"
    );
    let path = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(path.trim()).unwrap(),
        "unsandboxed\n"
    );

    let out = rix_without_ns("strict", &["--option", "sandbox-fallback", "false"], &[]).unwrap();
    let e = fails(out);
    assert!(
        e.contains("the sandbox is not available")
            && e.contains("Operation not permitted")
            && e.contains("--no-sandbox")
            && e.contains("sandbox-fallback"),
        "{e}"
    );
    assert!(!e.contains("warning"), "{e}");

    for (name, opts, flags) in [
        ("off", &["--option", "sandbox", "false"][..], &[][..]),
        (
            "no-sandbox",
            &["--option", "sandbox-fallback", "false"][..],
            &["--no-sandbox"][..],
        ),
    ] {
        let out = rix_without_ns(name, opts, flags).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            !stderr.contains("warning") && !stderr.contains("not available"),
            "{stderr}"
        );
    }

    // Nix 2.8 under the same filter.
    let Some(nix_build) = nix("nix-build") else {
        return;
    };
    let nix_without_ns = |name: &str, fallback: &str| {
        let file = dir.path().join(format!("{name}.nix"));
        let mut cmd = Command::new(&nix_build);
        cmd.args(["--store", &relocated(&dir.path().join("nix"))])
            .args(["--option", "sandbox", "true"])
            .args(["--option", "sandbox-fallback", fallback])
            .args(["--option", "substituters", "", "--no-out-link"])
            .arg(&file);
        without_namespaces(&mut cmd);
        cmd.output().unwrap()
    };
    let out = nix_without_ns("fallback", "true");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_nix = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(by_nix.trim()).unwrap(),
        "unsandboxed\n"
    );
    let out = nix_without_ns("strict", "false");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("cloning builder process")
            && stderr.contains("Operation not permitted"),
        "{stderr}"
    );
}

/// A collector running while a sandboxed build runs leaves the build's working
/// state alone: the `<drv>.chroot` directory in the store directory (its store,
/// holding the partial output) and the unrooted input the builder reads. rix's
/// collector and Nix 2.8's (`nix-store --gc`) both count it as the running
/// build's: its derivation is a temporary root, and `<drv>.chroot` shares its hash
/// part.
#[test]
fn a_collector_leaves_a_running_builds_sandbox_alone() {
    if !usable() {
        return;
    }
    let dir = root();
    let sync = dir.path().join("sync");
    std::fs::create_dir(&sync).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sync, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = dir.path().join("r");
    let store = r.to_str().unwrap();
    let paths = format!("{SH} /sync={}", sync.display());
    let rix_cmd = |args: &[&str]| {
        let mut c = rix_command();
        c.args(["--store", store, "--option", "sandbox-paths", &paths])
            .args(["--option", "sandbox-fallback", "false"])
            .args(args);
        c
    };
    let file = dir.path().join("gc.nix");
    std::fs::write(
        &file,
        r#"
let
  dep = derivation { name = "gc-dep"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo input > $out" ]; };
in {
  inherit dep;
  top = derivation { name = "gc-top"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "mkdir $out; cat ${dep} > $out/part; touch /sync/started; while [ ! -e /sync/go ]; do sleep 0.1; done; echo done > $out/done" ]; };
}
"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let dep = ok_str(
        rix_cmd(&["build", f, "-A", "dep", "--no-link", "--print-out-paths"])
            .output()
            .unwrap(),
    );
    let real = |p: &str| r.join(p.trim().trim_start_matches('/'));
    let dep_real = real(&dep);
    // Ends the build whatever happens to this test: lets the builder finish,
    // and kills rix (its builder dies with it) if the test fails first.
    struct Running(Option<std::process::Child>, PathBuf);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.1, "");
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut running = Running(
        Some(
            rix_cmd(&["build", f, "-A", "top", "--no-link", "--print-out-paths"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ),
        sync.join("go"),
    );
    let store_dir = r.join("nix/store");
    rix_testutil::wait_for(
        "the builder to start",
        std::time::Duration::from_secs(60),
        || sync.join("started").exists().then_some(()),
    );
    let chroot = std::fs::read_dir(&store_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-gc-top.drv.chroot"))
        .expect("the build's .chroot directory");
    let part = std::fs::read_dir(&chroot)
        .unwrap()
        .map(|e| e.unwrap().path().join("part"))
        .find(|p| p.exists())
        .expect("the partial output");
    let still_there = |who: &str| {
        assert!(part.exists(), "{who} deleted the partial output");
        assert_eq!(std::fs::read_to_string(&part).unwrap(), "input\n");
        assert!(dep_real.exists(), "{who} deleted the running build's input");
    };
    let gc = rix_cmd(&["store", "gc"]).output().unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    still_there("rix store gc");
    if let Some(nix_store) = nix("nix-store") {
        let gc = Command::new(nix_store)
            .args(["--store", store, "--gc"])
            .output()
            .unwrap();
        assert!(
            gc.status.success(),
            "{}",
            String::from_utf8_lossy(&gc.stderr)
        );
        still_there("nix-store --gc");
    }
    std::fs::write(&running.1, "").unwrap();
    let out = running.0.take().unwrap().wait_with_output().unwrap();
    let top = ok_str(out);
    assert_eq!(
        std::fs::read_to_string(real(&top).join("done")).unwrap(),
        "done\n"
    );
    assert!(!chroot.exists());
    // Now unrooted, everything goes.
    let gc = rix_cmd(&["store", "gc"]).output().unwrap();
    let said = String::from_utf8_lossy(&gc.stderr);
    assert!(gc.status.success(), "{said}");
    assert!(!real(&top).exists(), "{top} kept: {said}");
    assert!(!dep_real.exists(), "{dep} kept: {said}");
}

/// As root, when only user namespaces are refused, the sandbox is made without
/// one, as Nix 2.8 makes it: the builder runs as its build user (not root, not
/// uid 1000) and sees the sandbox, not the host; no fallback, no warning.
#[test]
fn root_sandboxes_without_user_namespaces() {
    if !::nix::unistd::geteuid().is_root() || !usable() {
        return;
    }
    let dir = root();
    let file = dir.path().join("nouserns.nix");
    std::fs::write(
        &file,
        r#"derivation { name = "nouserns"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "{ hostname; test ! -e /usr && echo no-usr; test $(id -u) != 0 && test $(id -u) != 1000 && echo build-user; grep -c \"^nixbld:x:$(id -u):$(id -g):\" /etc/passwd; echo $NIX_BUILD_TOP; } > $out" ]; }"#,
    )
    .unwrap();
    let userns = ::nix::libc::CLONE_NEWUSER as u32;
    let mut cmd = rix_command();
    cmd.args(["--store", dir.path().join("rix").to_str().unwrap()])
        .args(["--option", "sandbox-paths", SH])
        .args(["--option", "sandbox-fallback", "false"])
        .args(["build", "--no-link", "--print-out-paths"])
        .arg(&file);
    if !refusing_namespaces(&mut cmd, userns) {
        return;
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("warning"), "{stderr}");
    let by_rix = ok_str(out);
    let expected = "localhost\nno-usr\nbuild-user\n1\n/build\n";
    let real = |r: &str, p: &str| dir.path().join(r).join(p.trim().trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(real("rix", &by_rix)).unwrap(),
        expected
    );
    let Some(nix_build) = nix("nix-build") else {
        return;
    };
    let mut cmd = Command::new(nix_build);
    cmd.args(["--store", dir.path().join("nix").to_str().unwrap()])
        .args([
            "--option",
            "sandbox",
            "true",
            "--option",
            "sandbox-paths",
            SH,
        ])
        .args(["--option", "sandbox-fallback", "false"])
        .args(["--option", "substituters", "", "--no-out-link"])
        .arg(&file);
    refusing_namespaces(&mut cmd, userns);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_nix = String::from_utf8(out.stdout).unwrap();
    assert_eq!(by_nix, by_rix);
    assert_eq!(
        std::fs::read_to_string(real("nix", &by_nix)).unwrap(),
        expected
    );
}

/// `filter-syscalls` against Nix 2.8's: the same builder, trying set-user-ID and
/// set-group-ID modes and an extended attribute (perl's `syscall` from the
/// host's /usr), logs the same errors in both sandboxes.
#[test]
fn syscall_filter_matches_nixs() {
    if !cfg!(target_arch = "x86_64") || !Path::new("/usr/bin/perl").exists() || !usable() {
        return;
    }
    let Some(nix_build) = nix("nix-build") else {
        return;
    };
    let dir = root();
    let file = dir.path().join("filter.nix");
    std::fs::write(
        &file,
        r#"derivation { name = "filter"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" ''
    mkdir $out; touch $out/f
    { chmod u+s $out/f && echo suid-allowed; chmod g+s $out/f && echo sgid-allowed
      chmod 2755 $out/f && echo 2755-allowed; chmod 1755 $out/f && echo sticky-ok
      chmod 644 $out/f && echo plain-ok
      /usr/bin/perl -e 'my ($f, $n, $v) = ($ARGV[0], "user.rix", "1"); syscall(188, $f, $n, $v, 1, 0) == -1 and print "setxattr: $!\n"' $out/f
    } > $out/log 2>&1
  '' ]; }"#,
    )
    .unwrap();
    let paths = format!("{SH} /usr /lib? /lib64?");
    let by_rix = ok_str(
        rix_command()
            .args(["--store", dir.path().join("rix").to_str().unwrap()])
            .args(["--option", "sandbox-paths", &paths])
            .args(["--option", "sandbox-fallback", "false"])
            .args(["build", "--no-link", "--print-out-paths"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    let out = Command::new(nix_build)
        .args(["--store", dir.path().join("nix").to_str().unwrap()])
        .args([
            "--option",
            "sandbox",
            "true",
            "--option",
            "sandbox-paths",
            &paths,
        ])
        .args(["--option", "substituters", "", "--no-out-link"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), by_rix);
    let log = |r: &str| {
        let p = dir
            .path()
            .join(r)
            .join(by_rix.trim().trim_start_matches('/'));
        std::fs::read_to_string(p.join("log")).unwrap()
    };
    let (rix_log, nix_log) = (log("rix"), log("nix"));
    assert_eq!(rix_log, nix_log);
    assert!(
        rix_log.contains("Operation not permitted")
            && rix_log.contains("sticky-ok\nplain-ok\nsetxattr: Operation not supported\n"),
        "{rix_log}"
    );
}
