//! The Linux build sandbox: what builders see and what they cannot reach.
//!
//! Builders need a shell inside the sandbox: the static `/bin/busybox`
//! (`apt-get install busybox-static`, as `.ci/run` does) is bound at `/bin/sh`.
//! Every test skips, saying why, when busybox or the kernel's namespaces are
//! missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{drv, open, Recorder};
use rix_build::builder::BuildOutcome;
use rix_build::sandbox::{parse_sandbox_paths, SandboxMode};
use rix_build::{realise, BuildError, BuildSettings, RealiseOptions};
use rix_formats::derivation::{Derivation, DerivationOutput};
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_testutil::TempStore;

const BUSYBOX: &str = "/bin/busybox";

fn usable() -> bool {
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipping: {BUSYBOX} missing (apt-get install busybox-static)");
        return false;
    }
    if let Err(why) = rix_build::sandbox::available() {
        eprintln!("skipping: the sandbox is not available: {why}");
        return false;
    }
    true
}

fn settings() -> BuildSettings {
    BuildSettings {
        sandbox: SandboxMode::On,
        sandbox_fallback: false,
        sandbox_paths: parse_sandbox_paths(&[format!("/bin/sh={BUSYBOX}")]).unwrap(),
        ..Default::default()
    }
}

fn opts(settings: BuildSettings) -> RealiseOptions {
    RealiseOptions {
        max_jobs: 2,
        settings,
        ..Default::default()
    }
}

/// Builds `drvs`; the single error, or the outputs of the first.
fn build_with(
    store: &LocalStore,
    drvs: &[StorePath],
    settings: BuildSettings,
) -> Result<BTreeMap<String, StorePath>, BuildError> {
    let mut report = realise(store, drvs, &opts(settings), &Recorder::default())?;
    if let Some((_, e)) = report.failed.pop() {
        return Err(e);
    }
    Ok(report.outputs[&drvs[0]].clone())
}

fn build(store: &LocalStore, d: &StorePath) -> Result<BTreeMap<String, StorePath>, BuildError> {
    build_with(store, std::slice::from_ref(d), settings())
}

fn read_out(store: &LocalStore, outs: &BTreeMap<String, StorePath>) -> String {
    std::fs::read_to_string(store.real_path(&outs["out"])).unwrap()
}

#[track_caller]
fn fails_with(store: &LocalStore, d: &StorePath, needle: &str) -> String {
    let e = build(store, d)
        .expect_err("the build must fail")
        .to_string();
    assert!(e.contains(needle), "expected {needle:?} in:\n{e}");
    assert!(!store.is_valid(&out_of(store, d)).unwrap());
    e
}

fn out_of(store: &LocalStore, d: &StorePath) -> StorePath {
    let drv = rix_build::plan::read_derivation(store, d).unwrap();
    rix_build::plan::output_paths(store, d, &drv).unwrap()["out"].clone()
}

#[test]
fn builder_sees_nixs_sandbox() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(
        &store,
        "view",
        "{ id -u; id -g; id -un; hostname; echo $$; pwd; echo $NIX_BUILD_TOP $TMPDIR $HOME $NIX_STORE; \
         ls /; ls /dev; cat /etc/passwd /etc/group /etc/hosts; ls -ld /tmp | cut -c1-10; \
         echo x > /tmp/t && echo tmp-writable; echo y > /dev/null && echo null-writable; \
         ls /proc/1/exe >/dev/null && echo proc; } > $out",
        &[],
        &["out"],
    );
    let outs = build(&store, &d).unwrap();
    let text = read_out(&store, &outs);
    let store_dir = store.store_dir().as_str();
    // `/` holds exactly these, plus the store directory's top directory.
    let mut root: BTreeSet<&str> = ["bin", "build", "dev", "etc", "proc", "tmp"].into();
    root.insert(store_dir.split('/').nth(1).unwrap());
    let root: String = root.iter().map(|e| format!("{e}\n")).collect();
    let expected = format!(
        "1000\n100\nnixbld\nlocalhost\n1\n/build\n/build /build /homeless-shelter {store_dir}\n{root}"
    );
    assert!(text.starts_with(&expected), "got:\n{text}");
    assert!(text.contains(
        "nixbld:x:1000:100:Nix build user:/build:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n\
         root:x:0:\nnixbld:!:100:\nnogroup:x:65534:\n127.0.0.1 localhost\n::1 localhost\ndrwxrwxrwt\n\
         tmp-writable\nnull-writable\nproc\n"
    ), "got:\n{text}");
    for dev in [
        "full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero", "fd",
    ] {
        assert!(
            text.lines().any(|l| l == dev),
            "/dev/{dev} missing:\n{text}"
        );
    }
}

#[test]
fn host_files_are_out_of_reach() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    for (name, script, needle) in [
        (
            "hostname",
            "cat /etc/hostname > $out",
            "can't open '/etc/hostname'",
        ),
        ("root", "ls /root > $out", "/root"),
        ("home", "ls $HOME > $out", "/homeless-shelter"),
        (
            "state",
            &*format!("ls {} > $out", store.layout().state_dir.display()),
            "No such file",
        ),
        ("rootfs", "ls /usr > $out", "No such file"),
    ] {
        let d = drv(&store, name, script, &[], &["out"]);
        fails_with(&store, &d, needle);
    }
}

#[test]
fn inputs_are_read_only_and_other_paths_stay_inside() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let dep = drv(
        &store,
        "dep",
        "mkdir $out; echo original > $out/f",
        &[],
        &["out"],
    );
    let dep_out = build(&store, &dep).unwrap()["out"].clone();
    let f = store.real_path(&dep_out).join("f");
    // Writing into an input fails with "Read-only file system".
    let w = drv(
        &store,
        "writer",
        "echo changed > $in0/f && echo done > $out",
        &[&dep],
        &["out"],
    );
    fails_with(&store, &w, "Read-only file system");
    let rm = drv(
        &store,
        "remover",
        "chmod u+w $in0 && rm -rf $in0/f && echo done > $out",
        &[&dep],
        &["out"],
    );
    build(&store, &rm).expect_err("removing an input");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "original\n");
    // A path the builder makes up in the store directory stays in the sandbox.
    let evil = format!(
        "{}/00000000000000000000000000000000-evil",
        store.store_dir()
    );
    let e = drv(
        &store,
        "evil",
        &format!("echo evil > {evil}; cat $in0/f > $out"),
        &[&dep],
        &["out"],
    );
    let outs = build(&store, &e).unwrap();
    assert_eq!(read_out(&store, &outs), "original\n");
    assert!(!store
        .layout()
        .real_store_dir
        .join("00000000000000000000000000000000-evil")
        .exists());
    // Paths outside the input closure are not there at all.
    let other = drv(&store, "other", "echo other > $out", &[], &["out"]);
    let other_out = build(&store, &other).unwrap()["out"].clone();
    let peek = drv(
        &store,
        "peek",
        &format!("cat {} > $out", store.print(&other_out)),
        &[],
        &["out"],
    );
    fails_with(&store, &peek, "No such file or directory");
}

#[test]
fn loopback_of_the_host_is_unreachable_but_fixed_output_builds_have_the_network() {
    if !usable() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(
        &store,
        "net",
        &format!("echo hi | nc 127.0.0.1 {port} && echo connected > $out"),
        &[],
        &["out"],
    );
    fails_with(&store, &d, "failed with exit code");
    assert!(
        listener.accept().is_err(),
        "the sandboxed builder reached the host"
    );
    // A fixed-output derivation shares the host's network.
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut s, b"fetched\n").unwrap();
    });
    let fod = fixed_output(
        &store,
        "fetch",
        &format!("nc 127.0.0.1 {port} < /dev/null > $out; cat /etc/resolv.conf >/dev/null"),
        "sha256-9uN5sGOQVMUYBv1dZ5SMvK69NUsOkadoOTKwQ8XDujI=",
    );
    let outs = build(&store, &fod).unwrap();
    assert_eq!(read_out(&store, &outs), "fetched\n");
    server.join().unwrap();
}

/// A flat sha256 fixed-output derivation running `script`.
fn fixed_output(store: &LocalStore, name: &str, script: &str, sri: &str) -> StorePath {
    let hash = rix_formats::Hash::parse_any(sri, None).unwrap();
    let mut env: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (k, v) in [
        ("name", name),
        ("builder", "/bin/sh"),
        ("system", "x86_64-linux"),
        ("outputHashMode", "flat"),
        ("outputHashAlgo", "sha256"),
        ("outputHash", sri),
        ("out", ""),
    ] {
        env.insert(k.into(), v.into());
    }
    let d = Derivation {
        name: name.to_owned(),
        outputs: BTreeMap::from([(
            "out".to_owned(),
            DerivationOutput::CAFixed {
                method: rix_formats::derivation::CaMethod::Flat,
                hash,
            },
        )]),
        input_drvs: BTreeMap::new(),
        input_srcs: BTreeSet::new(),
        system: b"x86_64-linux".to_vec(),
        builder: b"/bin/sh".to_vec(),
        args: vec![b"-c".to_vec(), script.as_bytes().to_vec()],
        env,
    };
    common::add(store, d)
}

#[test]
fn fixed_output_hash_mismatch_shows_both_hashes_and_registers_nothing() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let d = fixed_output(
        &store,
        "wrong",
        "echo hello > $out",
        "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let e = fails_with(&store, &d, "hash mismatch in fixed-output derivation");
    assert!(
        e.contains("specified: sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            && e.contains("got:    sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM="),
        "{e}"
    );
    assert!(!store.real_path(&out_of(&store, &d)).exists());
}

/// Whether a process whose command line contains `marker` is running.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
            })
            .unwrap_or(false)
    })
}

#[test]
fn a_daemon_left_behind_dies_with_the_build() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(
        &store,
        "daemon",
        "sleep 86401 & sleep 86401 </dev/null >/dev/null 2>&1 & echo started > $out",
        &[],
        &["out"],
    );
    let start = Instant::now();
    build(&store, &d).unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!running("sleep 86401"), "a daemon survived its build");
}

#[test]
fn time_and_log_limits_kill_the_whole_sandbox() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let slow = drv(
        &store,
        "slow",
        "sleep 86402 & echo started; sleep 86402; echo > $out",
        &[],
        &["out"],
    );
    let start = Instant::now();
    let e = build_with(
        &store,
        std::slice::from_ref(&slow),
        BuildSettings {
            timeout: Some(Duration::from_secs(1)),
            ..settings()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("timed out after 1 seconds"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(20));
    let silent = drv(
        &store,
        "silent",
        "sleep 86403 & sleep 86403; echo > $out",
        &[],
        &["out"],
    );
    let e = build_with(
        &store,
        std::slice::from_ref(&silent),
        BuildSettings {
            max_silent_time: Some(Duration::from_secs(1)),
            ..settings()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("timed out after 1 seconds of silence"), "{e}");
    let chatty = drv(
        &store,
        "chatty",
        "sleep 86404 & while true; do echo 0123456789; done",
        &[],
        &["out"],
    );
    let e = build_with(
        &store,
        std::slice::from_ref(&chatty),
        BuildSettings {
            max_log_size: Some(1000),
            ..settings()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("killed after writing more than 1000 bytes of log output"),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(200));
    for m in ["sleep 86402", "sleep 86403", "sleep 86404"] {
        assert!(!running(m), "'{m}' survived");
    }
}

#[test]
fn check_reports_identical_and_differing_outputs() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let same = drv(
        &store,
        "same",
        "mkdir $out; echo same > $out/f; ln -s f $out/l",
        &[],
        &["out"],
    );
    let random = drv(
        &store,
        "random",
        "cat /proc/sys/kernel/random/uuid > $out",
        &[],
        &["out"],
    );
    build_with(&store, &[same.clone(), random.clone()], settings()).unwrap();
    let check = |d: &StorePath| {
        let o = RealiseOptions {
            check: true,
            ..opts(settings())
        };
        let r = realise(&store, std::slice::from_ref(d), &o, &Recorder::default()).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        r.nondeterministic
    };
    assert!(check(&same).is_empty());
    let diff = check(&random);
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].1[0].output, "out");
    assert_eq!(diff[0].1[0].path, store.print(&out_of(&store, &random)));
    let _ = BuildOutcome::AlreadyValid; // (the type is part of the public API)
}

#[test]
fn concurrent_builds_share_no_writable_state() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let script = "for f in /tmp/x /build/x /dev/shm/x; do echo $name > $f; done; sleep 1; \
                  for f in /tmp/x /build/x /dev/shm/x; do read v < $f; [ \"$v\" = \"$name\" ] || exit 1; done; \
                  echo $name > $out";
    let a = drv(&store, "a", script, &[], &["out"]);
    let b = drv(&store, "b", script, &[], &["out"]);
    let report = realise(&store, &[a, b], &opts(settings()), &Recorder::default()).unwrap();
    assert!(report.succeeded(), "{:?}", report.failed);
    assert_eq!(report.built.len(), 2);
}

/// `sandbox-paths` as Nix binds them: `target=source` and `path`, files and
/// directories, `?` for optional ones, recursively and not read-only (the
/// files' modes decide what the builder may change).
#[test]
fn sandbox_paths_optional_and_missing() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(
        &store,
        "paths",
        "{ cat /data/f /single; [ ! -e /nothing ] && echo no-nothing; \
         echo x > /data/f || echo f-refused; echo from-builder > /data/rw/new && echo rw-ok; \
         [ -d /proc/self ] && echo proc; } > $out 2>&1",
        &[],
        &["out"],
    );
    let data = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = data.path().join("f");
    std::fs::write(&f, "from the host\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444)).unwrap();
    let single = data.path().join("single");
    std::fs::write(&single, "a single file\n").unwrap();
    let rw = data.path().join("rw");
    std::fs::create_dir(&rw).unwrap();
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut s = settings();
    s.sandbox_paths.extend(
        parse_sandbox_paths(&[
            format!("/data={}", data.path().display()),
            format!("/single={}", single.display()),
            "/nothing=/does/not/exist?".to_owned(),
            // Skipped, as by Nix: the sandbox has its own.
            "/proc".to_owned(),
        ])
        .unwrap(),
    );
    let outs = build_with(&store, std::slice::from_ref(&d), s.clone()).unwrap();
    let text = read_out(&store, &outs);
    assert!(
        text.starts_with("from the host\na single file\nno-nothing\n")
            && text.contains("Permission denied\nf-refused\nrw-ok\nproc\n"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "from the host\n");
    assert_eq!(
        std::fs::read_to_string(rw.join("new")).unwrap(),
        "from-builder\n"
    );
    // A missing non-optional path fails before the builder starts.
    let w = drv(&store, "paths-missing", "echo > $out", &[], &["out"]);
    s.sandbox_paths
        .extend(parse_sandbox_paths(&["/x=/does/not/exist"]).unwrap());
    let e = build_with(&store, std::slice::from_ref(&w), s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/does/not/exist"), "{e}");
}

/// `filter-syscalls` (on by default, as in Nix): set-user-ID and set-group-ID
/// modes fail with EPERM, extended attributes with ENOTSUP (perl's `syscall`
/// from the host's /usr calls setxattr directly); `filter-syscalls = false`
/// lets the modes through.
#[test]
fn setuid_modes_and_extended_attributes_are_refused() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let perl = cfg!(target_arch = "x86_64") && Path::new("/usr/bin/perl").exists();
    let xattr = if perl {
        // setxattr is system call 188 on x86_64.
        "/usr/bin/perl -e 'my ($f, $n, $v) = ($ARGV[0], \"user.rix\", \"1\"); \
         syscall(188, $f, $n, $v, 1, 0) == -1 and print \"setxattr: $!\\n\"' $out/f"
    } else {
        "echo 'setxattr: Operation not supported'"
    };
    let script = format!(
        "mkdir $out; touch $out/f; {{ \
         chmod u+s $out/f && echo suid-allowed; chmod g+s $out/f && echo sgid-allowed; \
         chmod 4755 $out/f && echo 4755-allowed; chmod u-s,g-s $out/f; \
         chmod 1755 $out/f && echo sticky-ok; chmod 644 $out/f && echo plain-ok; {xattr}; echo $?; \
         }} > $out/log 2>&1"
    );
    let d = drv(&store, "setuid", &script, &[], &["out"]);
    let mut s = settings();
    s.sandbox_paths
        .extend(parse_sandbox_paths(&["/usr", "/lib?", "/lib64?"]).unwrap());
    let outs = build_with(&store, std::slice::from_ref(&d), s.clone()).unwrap();
    let log = std::fs::read_to_string(store.real_path(&outs["out"]).join("log")).unwrap();
    assert!(!log.contains("allowed"), "{log}");
    assert_eq!(log.matches("Operation not permitted").count(), 3, "{log}");
    assert!(
        log.contains("sticky-ok\nplain-ok\nsetxattr: Operation not supported\n0\n"),
        "{log}"
    );

    // Builders outside the sandbox get the filter too (as in Nix).
    let d = drv(
        &store,
        "setuid-unsandboxed",
        ": > $out; /bin/chmod u+s $out 2>/dev/null && echo suid-allowed > $out; /bin/chmod 644 $out",
        &[],
        &["out"],
    );
    let outs = build_with(
        &store,
        std::slice::from_ref(&d),
        BuildSettings {
            sandbox: SandboxMode::Off,
            ..settings()
        },
    )
    .unwrap();
    assert_eq!(read_out(&store, &outs), "");

    // Without the filter the modes go through (the output's are reset after).
    let d = drv(&store, "setuid-unfiltered", &script, &[], &["out"]);
    s.filter_syscalls = false;
    let outs = build_with(&store, std::slice::from_ref(&d), s).unwrap();
    let log = std::fs::read_to_string(store.real_path(&outs["out"]).join("log")).unwrap();
    assert!(
        log.contains("suid-allowed\nsgid-allowed\n4755-allowed\nsticky-ok\nplain-ok\n"),
        "{log}"
    );
}

/// `sandbox-dev-shm-size` sizes the sandbox's own `/dev/shm` (a tmpfs).
#[test]
fn dev_shm_has_the_configured_size() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    let d = drv(
        &store,
        "shm",
        "df -k /dev/shm | tail -1 | awk '{ print $2 }' > $out",
        &[],
        &["out"],
    );
    let outs = build_with(
        &store,
        std::slice::from_ref(&d),
        BuildSettings {
            sandbox_shm_size: "2m".to_owned(),
            ..settings()
        },
    )
    .unwrap();
    assert_eq!(read_out(&store, &outs), "2048\n");
}

/// `no_new_privs` as Nix sets it: with the filter unless `allow-new-privileges`
/// (and not at all without `filter-syscalls`).
#[test]
fn no_new_privs_follows_allow_new_privileges() {
    if !usable() {
        return;
    }
    let t = TempStore::new();
    let store = open(&t);
    for (name, filter, allow, expected) in [
        ("nnp-default", true, false, "1"),
        ("nnp-allowed", true, true, "0"),
        ("nnp-unfiltered", false, false, "0"),
    ] {
        let d = drv(
            &store,
            name,
            "grep NoNewPrivs /proc/self/status | cut -f2 > $out",
            &[],
            &["out"],
        );
        let outs = build_with(
            &store,
            std::slice::from_ref(&d),
            BuildSettings {
                filter_syscalls: filter,
                allow_new_privileges: allow,
                ..settings()
            },
        )
        .unwrap();
        assert_eq!(read_out(&store, &outs), format!("{expected}\n"), "{name}");
    }
}
