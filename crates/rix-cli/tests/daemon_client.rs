//! rix as a client of real Nix daemons (Nix 2.8 from PATH, Nix 2.26 through
//! `RIX_NIX_CURRENT`), compared with Nix's own client on the same daemon:
//! instantiate, eval, build (result links as roots, failing builds), path-info,
//! refs/referrers/closure, export, copy both ways, gc, log, verify, optimise,
//! sign, run/shell, why-depends, derivation show, and `--store auto` choosing
//! the daemon for a user who cannot write the state directory. Each daemon
//! version is skipped when it is absent (unless `RIX_REQUIRE_NIX=1` /
//! `RIX_REQUIRE_NIX_CURRENT=1`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use rix_testutil::TempStore;
use serde_json::Value;

/// Which Nix: its tools as commands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nix {
    V2_8,
    Current,
}

impl Nix {
    /// `name` of this Nix, or `None` when it is not installed (the test skips).
    fn tool(self, name: &str) -> Option<Command> {
        match self {
            Nix::V2_8 => rix_testutil::nix(name).map(Command::new),
            Nix::Current => rix_testutil::nix_current(name),
        }
    }
}

/// A real Nix daemon on a temporary store.
struct Daemon {
    nix: Nix,
    store: TempStore,
    sock: PathBuf,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(nix: Nix) -> Option<Daemon> {
    let mut cmd = nix.tool("nix-daemon")?;
    let store = TempStore::new();
    let sock = store.dir.path().join("sock");
    cmd.env("NIX_DAEMON_SOCKET_PATH", &sock)
        .args(["--option", "store", &store.url()])
        .args(["--option", "sandbox", "false"])
        .args(["--option", "substituters", ""]);
    if nix == Nix::Current {
        cmd.args(["--option", "build-hook", ""]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    rix_testutil::wait_for(
        "the Nix daemon's socket",
        std::time::Duration::from_secs(60),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the Nix daemon ({nix:?}) exited: {status}");
            }
            sock.exists().then_some(())
        },
    );
    Some(Daemon {
        nix,
        store,
        sock,
        child,
    })
}

/// Settings for Nix's clients in these tests.
const NIX_CONFIG: &str = "experimental-features = nix-command\nsubstituters =\nsandbox = false";

impl Daemon {
    fn url(&self) -> String {
        format!(
            "unix://{}?store={}",
            self.sock.display(),
            self.store.store_dir().display()
        )
    }

    fn dir(&self) -> &Path {
        self.store.dir.path()
    }

    fn log_dir(&self) -> PathBuf {
        self.dir().join("log")
    }

    /// Nix's tool `name` against the daemon.
    fn nix_cmd(&self, name: &str) -> Command {
        let mut c = self.nix.tool(name).expect("this Nix is installed");
        c.arg("--store")
            .arg(self.url())
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("NIX_LOG_DIR", self.log_dir())
            .current_dir(self.dir());
        c
    }

    /// rix against the daemon.
    fn rix_cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rix"));
        c.arg("--store")
            .arg(self.url())
            .env("RIX_CONFIG", "substituters =")
            .env("NIX_LOG_DIR", self.log_dir())
            .env("NO_COLOR", "1")
            .current_dir(self.dir());
        c
    }

    fn nix(&self, name: &str, args: &[&str]) -> String {
        ok(self.nix_cmd(name).args(args))
    }

    fn rix(&self, args: &[&str]) -> String {
        ok(self.rix_cmd().args(args))
    }

    fn valid(&self, path: &str) -> bool {
        self.nix_cmd("nix-store")
            .args(["--check-validity", path])
            .output()
            .unwrap()
            .status
            .success()
    }
}

/// Runs `c`, requiring success; its standard output.
fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    assert!(!out.status.success(), "{c:?} succeeded");
    out
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `nix path-info --json` of Nix 2.8 (a list) or 2.26 (an object by path), as
/// path → the fields both print (registration times and empty `ca`/signature
/// fields left out where the versions differ).
fn path_infos(json: &str) -> std::collections::BTreeMap<String, Value> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let entries: Vec<(String, Value)> = match v {
        Value::Array(list) => list
            .into_iter()
            .map(|o| (o["path"].as_str().unwrap().to_owned(), o))
            .collect(),
        Value::Object(map) => map.into_iter().collect(),
        other => panic!("not path-info JSON: {other}"),
    };
    entries
        .into_iter()
        .map(|(path, mut o)| {
            let m = o.as_object_mut().unwrap();
            m.remove("path");
            m.remove("registrationTime");
            m.retain(|_, v| {
                !(v.is_null() || v.as_array().is_some_and(|a| a.is_empty()) || *v == false)
            });
            (path, o)
        })
        .collect()
}

/// Small derivations built with /bin/sh: `dep`, `top` (refers to `dep`, has
/// `bin/top`), and `fail` (prints two lines, exits 3).
fn write_nix_file(d: &Daemon, marker: &str) -> PathBuf {
    let f = d.dir().join("a.nix");
    let text = r#"
let mk = name: script: derivation {
      inherit name;
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [ "-c" script ];
      PATH = "/bin:/usr/bin";
      marker = "MARKER";
    };
    dep = mk "dep" "echo dep > $out";
in {
  inherit dep;
  top = mk "top" ''
    mkdir -p $out/bin
    echo ${dep} > $out/ref
    printf '#!/bin/sh\necho hello from top\n' > $out/bin/top
    chmod +x $out/bin/top
    echo building top
  '';
  fail = mk "fail" "echo line1; echo line2; exit 3";
}
"#
    .replace("MARKER", marker);
    std::fs::write(&f, text).unwrap();
    f
}

/// A local store in `t` whose paths are named with the daemon's store
/// directory (kept in `t`: `real=`), so that paths copy between them.
fn same_store_dir(d: &Daemon, t: &TempStore) -> String {
    let p = t.dir.path().display();
    format!(
        "local?store={}&real={p}/store&state={p}/state&log={p}/log",
        d.store.store_dir().display()
    )
}

fn differential(nix: Nix) {
    let Some(d) = start(nix) else { return };
    let file = write_nix_file(&d, &format!("{nix:?}"));
    let file = file.to_str().unwrap();
    let dir = d.dir().to_owned();
    let at = |name: &str| dir.join(name).to_str().unwrap().to_owned();

    // instantiate: the same .drv, valid in the daemon's store; --add-root
    // makes a link the daemon knows as a root.
    let nix_drv = d.nix("nix-instantiate", &[file, "-A", "top"]);
    let rix_drv = d.rix(&["instantiate", file, "-A", "top"]);
    assert_eq!(rix_drv, nix_drv);
    let drv = rix_drv.trim().to_owned();
    assert!(d.valid(&drv));
    let drv_root = at("drv-root");
    let shown = d.rix(&["instantiate", file, "-A", "top", "--add-root", &drv_root]);
    assert_eq!(shown.trim(), drv_root);
    assert_eq!(std::fs::read_link(&drv_root).unwrap(), Path::new(&drv));
    let roots = d.nix("nix-store", &["--gc", "--print-roots"]);
    assert!(
        roots.contains(&format!("{drv_root} -> {drv}")),
        "{drv_root} is not a root: {roots}"
    );

    // eval writing to the store through the daemon.
    let expr = r#"builtins.toFile "hello.txt" "hello""#;
    let nix_eval = d.nix(
        "nix-instantiate",
        &["--eval", "--read-write-mode", "-E", expr],
    );
    let rix_eval = d.rix(&["eval", "--read-write-mode", "-E", expr]);
    assert_eq!(rix_eval, nix_eval);
    assert!(d.valid(rix_eval.trim().trim_matches('"')));

    // read-only evaluation names a source path without writing it, as Nix's.
    let expr = r#""${./a.nix}""#;
    let nix_eval = d.nix("nix-instantiate", &["--eval", "-E", expr]);
    assert_eq!(d.rix(&["eval", "-E", expr]), nix_eval);
    assert_eq!(d.rix(&["instantiate", "--eval", "-E", expr]), nix_eval);

    // build: the same outputs and contents; the result link is a root.
    let nix_result = at("nix-result");
    let rix_result = at("rix-result");
    d.nix("nix-build", &[file, "-A", "top", "-o", &nix_result]);
    d.rix(&["build", file, "-A", "top", "-o", &rix_result]);
    let out = std::fs::read_link(&rix_result).unwrap();
    assert_eq!(out, std::fs::read_link(&nix_result).unwrap());
    let out = out.to_str().unwrap().to_owned();
    let dep_out = std::fs::read_to_string(format!("{out}/ref")).unwrap();
    let dep_out = dep_out.trim().to_owned();
    assert_eq!(std::fs::read_to_string(&dep_out).unwrap(), "dep\n");
    let roots = d.nix("nix-store", &["--gc", "--print-roots"]);
    assert!(
        roots.contains(&format!("{rix_result} -> {out}")),
        "{rix_result} is not a root: {roots}"
    );
    // rix build of a .drv path (and `--print-out-paths`) agrees too.
    let printed = d.rix(&[
        "build",
        &format!("{drv}^out"),
        "--no-link",
        "--print-out-paths",
    ]);
    assert_eq!(printed.trim(), out);

    // path-info --json.
    let nix_json = d.nix("nix", &["path-info", "--json", "-r", &out]);
    let rix_json = d.rix(&["path-info", "--json", "-r", &out]);
    assert_eq!(path_infos(&rix_json), path_infos(&nix_json));
    let nix_paths = d.nix("nix", &["path-info", "-r", &out]);
    let rix_paths = d.rix(&["path-info", "-r", &out]);
    assert_eq!(lines(&rix_paths), lines(&nix_paths));

    // references, referrers, closure.
    for (rix_cmd, nix_flag, path) in [
        ("refs", "--references", &out),
        ("referrers", "--referrers", &dep_out),
        ("closure", "--requisites", &out),
        ("closure", "--requisites", &drv),
    ] {
        let n = d.nix("nix-store", &["-q", nix_flag, path]);
        let r = d.rix(&["store", rix_cmd, path]);
        assert_eq!(lines(&r), lines(&n), "rix store {rix_cmd} {path}");
    }

    // export: byte for byte.
    let n = d
        .nix_cmd("nix-store")
        .args(["--export", &out])
        .output()
        .unwrap();
    assert!(n.status.success());
    let r = d
        .rix_cmd()
        .args(["store", "export", "--no-closure", &out])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!n.stdout.is_empty());
    assert_eq!(
        r.stdout, n.stdout,
        "rix store export differs from nix-store --export"
    );

    // log: read from the log directory on this machine, as Nix's client does.
    let n = d.nix("nix-store", &["--read-log", &out]);
    let r = d.rix(&["log", &out]);
    assert!(n.contains("building top"), "{n}");
    assert_eq!(r, n);

    // a failing build: Nix's message with the builder's last lines, non-zero.
    let n = fails(
        d.nix_cmd("nix-build")
            .args([file, "-A", "fail", "--no-out-link"]),
    );
    let r = fails(d.rix_cmd().args(["build", file, "-A", "fail", "--no-link"]));
    let (n_err, r_err) = (
        String::from_utf8_lossy(&n.stderr),
        String::from_utf8_lossy(&r.stderr),
    );
    for needle in ["exit code 3", "> line1", "> line2"] {
        assert!(n_err.contains(needle), "nix-build: {n_err}");
        assert!(
            r_err.contains(needle),
            "rix build lacks '{needle}': {r_err}"
        );
    }
    // Through a daemon the worker's exit status (100) is lost: Nix's client
    // exits with 1, and so does rix's.
    assert_eq!(r.status.code(), n.status.code());
    assert_eq!(r.status.code(), Some(1));

    // an invalid path: an error naming it, as Nix's.
    let bogus = format!(
        "{}/00000000000000000000000000000000-bogus",
        d.store.store_dir().display()
    );
    let n = fails(d.nix_cmd("nix-store").args(["-q", "--references", &bogus]));
    let r = fails(d.rix_cmd().args(["store", "refs", &bogus]));
    assert!(String::from_utf8_lossy(&n.stderr).contains(&bogus));
    let r_err = String::from_utf8_lossy(&r.stderr);
    assert!(
        r_err.contains(&bogus) && r_err.contains("not valid"),
        "{r_err}"
    );
    let r = fails(d.rix_cmd().args(["path-info", &bogus]));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not valid"));

    // verify and optimise through the daemon (VerifyStore, OptimiseStore).
    d.nix("nix-store", &["--verify"]);
    d.rix(&["store", "verify"]);
    d.rix(&["store", "verify", "--check-contents"]);
    d.rix(&["store", "optimise"]);

    // sign (AddSignatures): Nix sees the signature.
    let key = dir.join("key.sec");
    let secret =
        ok(Command::new(env!("CARGO_BIN_EXE_rix")).args(["key", "generate", "rix-test-1"]));
    std::fs::write(&key, secret).unwrap();
    d.rix(&["store", "sign", "-k", key.to_str().unwrap(), &out]);
    let sigs = d.nix("nix", &["path-info", "--sigs", &out]);
    assert!(sigs.contains("rix-test-1:"), "{sigs}");

    // run and shell: programs at their logical paths; the output realised
    // through the daemon first when needed.
    let expected = ok(&mut Command::new(format!("{nix_result}/bin/top")));
    assert_eq!(d.rix(&["run", &format!("{drv}^out")]), expected);
    assert_eq!(d.rix(&["run", &rix_result]), expected);
    assert_eq!(d.rix(&["shell", &rix_result, "-c", "top"]), expected);

    // why-depends.
    let n = d.nix("nix", &["why-depends", &out, &dep_out]);
    let r = d.rix(&["why-depends", &out, &dep_out]);
    assert_eq!(strip_ansi(&r), strip_ansi(&n));

    // derivation show (Nix 2.8's show-derivation format).
    if nix == Nix::V2_8 {
        let n = d.nix("nix", &["show-derivation", &drv]);
        let r = d.rix(&["derivation", "show", &drv]);
        let (n, r): (Value, Value) = (
            serde_json::from_str(&n).unwrap(),
            serde_json::from_str(&r).unwrap(),
        );
        assert_eq!(r, n);
    }

    // copy --to the daemon from a local store; Nix verifies what arrived.
    let local = TempStore::new();
    let local_url = same_store_dir(&d, &local);
    let src = dir.join("copied.txt");
    std::fs::write(&src, format!("copied to the daemon ({nix:?})\n")).unwrap();
    let added = ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &local_url, "store", "add"])
        .arg(&src));
    let added = added.trim();
    assert!(!d.valid(added));
    ok(Command::new(env!("CARGO_BIN_EXE_rix")).args([
        "--store",
        &local_url,
        "copy",
        "--to",
        &d.url(),
        added,
    ]));
    d.nix("nix-store", &["--verify-path", added]);
    let mut local_info = nix.tool("nix").unwrap();
    let local_info = ok(local_info
        .args(["--store", &local_url, "path-info", "--json", added])
        .env("NIX_CONFIG", NIX_CONFIG));
    let daemon_info = d.nix("nix", &["path-info", "--json", added]);
    let (l, r) = (path_infos(&local_info), path_infos(&daemon_info));
    assert_eq!(l[added]["narHash"], r[added]["narHash"]);
    assert_eq!(l[added]["ca"], r[added]["ca"]);

    // copy --from the daemon into a local store: the closure, checked by Nix.
    let into = TempStore::new();
    let into_url = same_store_dir(&d, &into);
    ok(Command::new(env!("CARGO_BIN_EXE_rix")).args([
        "--store",
        &into_url,
        "copy",
        "--no-check-sigs",
        "--from",
        &d.url(),
        &out,
    ]));
    let mut check = nix.tool("nix-store").unwrap();
    ok(check
        .args(["--store", &into_url, "--verify-path", &out, &dep_out])
        .env("NIX_CONFIG", NIX_CONFIG));
    let mut q = nix.tool("nix-store").unwrap();
    let copied = ok(q
        .args(["--store", &into_url, "-q", "--requisites", &out])
        .env("NIX_CONFIG", NIX_CONFIG));
    assert_eq!(
        lines(&copied),
        lines(&d.nix("nix-store", &["-q", "--requisites", &out]))
    );

    // gc: rix deletes what Nix says is dead, and nothing else.
    let garbage = dir.join("garbage.txt");
    std::fs::write(&garbage, "garbage\n").unwrap();
    let garbage = d.nix("nix-store", &["--add", garbage.to_str().unwrap()]);
    let garbage = garbage.trim();
    let dead = lines(&d.nix("nix-store", &["--gc", "--print-dead"]));
    assert!(dead.contains(garbage), "{garbage} is not dead: {dead:?}");
    let before = lines(&d.rix(&["path-info", "--all"]));
    d.rix(&["store", "gc"]);
    for p in &dead {
        assert!(!d.valid(p), "{p} survived rix store gc");
    }
    let after = lines(&d.rix(&["path-info", "--all"]));
    let expected: BTreeSet<String> = before.difference(&dead).cloned().collect();
    assert_eq!(after, expected);
    assert!(d.valid(&out) && d.valid(&drv));
    assert!(lines(&d.nix("nix-store", &["--gc", "--print-dead"])).is_empty());

    // repl: `:b` builds through the daemon and names the outputs as nix repl does.
    let mut repl = d.rix_cmd();
    repl.arg("repl")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = repl.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, ":b (import {file}).top").unwrap();
    }
    let got = child.wait_with_output().unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let got = String::from_utf8(got.stdout).unwrap();
    assert!(
        got.contains("This derivation produced the following outputs:")
            && got.contains(&format!("  out -> {out}\n")),
        "{got}"
    );

    // verify finding an error it cannot fix: a path gone that another refers
    // to; both clients fail, rix showing the daemon's report.
    std::fs::remove_file(&dep_out).unwrap();
    let n = fails(d.nix_cmd("nix-store").arg("--verify"));
    let r = fails(d.rix_cmd().args(["store", "verify"]));
    assert_eq!(r.status.code(), n.status.code());
    let (n_err, r_err) = (
        String::from_utf8_lossy(&n.stderr),
        String::from_utf8_lossy(&r.stderr),
    );
    let report = format!("path '{dep_out}' disappeared");
    assert!(n_err.contains(&report), "{n_err}");
    assert!(r_err.contains(&report), "{r_err}");
}

#[test]
fn against_nix_2_8_daemon() {
    differential(Nix::V2_8);
}

#[test]
fn against_nix_current_daemon() {
    differential(Nix::Current);
}

/// `--store auto` and the default: a user who cannot write the state
/// directory uses the daemon whose socket exists (Nix's rule).
#[test]
fn auto_store_is_the_daemon_for_an_unprivileged_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root (to run rix as another user)");
        return;
    }
    let Some(d) = start(Nix::V2_8) else { return };
    let Some(runuser) = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipping: runuser not found");
        return;
    };
    // Something for the user to find.
    let f = d.dir().join("shared.txt");
    std::fs::write(&f, "shared\n").unwrap();
    let path = d.nix("nix-store", &["--add", f.to_str().unwrap()]);
    let path = path.trim();
    let root = d.dir().join("shared-root");
    d.nix(
        "nix-store",
        &[
            "-r",
            path,
            "--add-root",
            root.to_str().unwrap(),
            "--indirect",
        ],
    );
    // A state directory the user cannot write.
    let state = d.dir().join("root-only-state");
    std::fs::create_dir(&state).unwrap();
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(1001), Some(1001)).unwrap();
    let as_user = |args: &[&str]| {
        let mut c = Command::new(runuser);
        c.args(["-u", "rixuser", "--", env!("CARGO_BIN_EXE_rix")])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("NIX_STATE_DIR", &state)
            .env("NIX_DAEMON_SOCKET_PATH", &d.sock)
            .env("NIX_STORE_DIR", d.store.store_dir())
            .current_dir(home.path());
        c
    };
    for store_args in [&["--store", "auto"][..], &[][..]] {
        let mut args = store_args.to_vec();
        args.extend(["store", "info"]);
        let info = ok(&mut as_user(&args));
        assert!(info.contains("daemon:"), "{args:?}: {info}");
        assert!(
            info.contains(&d.store.store_dir().display().to_string()),
            "{info}"
        );
        let mut args = store_args.to_vec();
        args.extend(["path-info", path]);
        assert_eq!(ok(&mut as_user(&args)).trim(), path);
    }
    // Nix's client, as that user, finds the same.
    let mut nix_store = Command::new(runuser);
    let nix_store = ok(nix_store
        .args(["-u", "rixuser", "--"])
        .arg(rix_testutil::nix("nix-store").unwrap())
        .args(["-q", "--references", path])
        .env_clear()
        .env("HOME", home.path())
        .env("NIX_STATE_DIR", &state)
        .env("NIX_DAEMON_SOCKET_PATH", &d.sock)
        .env("NIX_STORE_DIR", d.store.store_dir())
        .current_dir(home.path()));
    assert_eq!(ok(&mut as_user(&["store", "refs", path])), nix_store);
}
