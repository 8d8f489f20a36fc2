//! `rix build` on derivations written by real Nix: interop both ways, many
//! processes building one DAG, and `kill -9` in the middle of a build.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

mod rixcmd;
use rixcmd::{nix, ok_str as ok, TempStore};

/// Runs rix without the sandbox, like the Nix it is compared with (these builders
/// use host programs and write outside the store).
fn rix(store: &TempStore, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(store.url())
        .args(["--option", "sandbox", "false"])
        .args(args)
        .output()
        .expect("run rix")
}

/// A DAG where every builder appends its name to `counter` (outside the store,
/// to count how often each ran) and then writes its output.
const DAG: &str = r#"
{ counter, sleep ? "0" }:
let
  mk = name: deps: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name} >> ${counter}; /bin/sleep ${sleep}; echo ${name} ${toString deps} > $out" ];
  };
  a = mk "a" [ ];
  b = mk "b" [ a ];
  c = mk "c" [ a ];
  d = mk "d" [ b c ];
  multi = derivation {
    name = "multi";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    outputs = [ "out" "dev" ];
    args = [ "-c" "echo multi >> ${counter}; echo ${d} > $out; echo $out > $dev" ];
  };
in mk "top" [ d multi.dev ]
"#;

fn instantiate(t: &TempStore, counter: &Path, sleep: &str) -> String {
    let inst = nix("nix-instantiate").unwrap();
    let file = t.dir.path().join("dag.nix");
    std::fs::write(&file, DAG).unwrap();
    empty_counter(counter);
    t.run_nix(
        &inst,
        &[
            file.to_str().unwrap(),
            "--argstr",
            "counter",
            counter.to_str().unwrap(),
            "--argstr",
            "sleep",
            sleep,
        ],
    )
    .trim()
    .to_owned()
}

/// Creates `counter` empty and writable by all: Nix builds as the nixbld users,
/// who must be able to append too.
fn empty_counter(counter: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(counter, "").unwrap();
    std::fs::set_permissions(counter, std::fs::Permissions::from_mode(0o666)).unwrap();
}

fn count_lines(counter: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(counter)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn builds_what_nix_instantiated_and_nix_accepts_the_result() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let counter = t.dir.path().join("counter");
    let drv = instantiate(&t, &counter, "0");
    let out = ok(rix(
        &t,
        &["build", &drv, "--no-link", "--print-out-paths", "-j", "2"],
    ));
    assert_eq!(count_lines(&counter), ["a", "b", "c", "d", "multi", "top"]);
    let top = out.trim();
    assert!(top.ends_with("-top"), "{out}");
    // Nix agrees the store is consistent and sees the closure rix registered.
    t.run_nix(&nix_store, &["--verify", "--check-contents"]);
    let closure = t.run_nix(&nix_store, &["-qR", top]);
    assert_eq!(closure.lines().count(), 7, "{closure}"); // top, d, b, c, a, multi-dev, multi
                                                         // Nix finds nothing to build, so it runs no builder.
    t.run_nix(&nix_store, &["--realise", &drv]);
    assert_eq!(count_lines(&counter).len(), 6);
    // And a second rix build runs no builder either.
    ok(rix(&t, &["build", &drv, "--no-link"]));
    assert_eq!(count_lines(&counter).len(), 6);
}

#[test]
fn reuses_what_nix_built() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let counter = t.dir.path().join("counter");
    let drv = instantiate(&t, &counter, "0");
    let nix_out = t.run_nix(&nix_store, &["--realise", &drv]);
    assert_eq!(count_lines(&counter).len(), 6);
    let rix_out = ok(rix(&t, &["build", &drv, "--no-link", "--print-out-paths"]));
    assert_eq!(rix_out.trim(), nix_out.trim());
    assert_eq!(
        count_lines(&counter).len(),
        6,
        "rix rebuilt something Nix had built"
    );
}

#[test]
fn eight_processes_build_each_derivation_once() {
    if nix("nix-instantiate").is_none() {
        return;
    }
    let t = TempStore::new();
    let counter = t.dir.path().join("counter");
    let drv = instantiate(&t, &counter, "0.2");
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_rix"))
                .arg("--store")
                .arg(t.url())
                .args(["--option", "sandbox", "false"])
                .args(["build", &drv, "--no-link", "-j", "2"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count_lines(&counter), ["a", "b", "c", "d", "multi", "top"]);
}

#[test]
fn kill_9_during_a_build_leaves_a_store_that_recovers() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let counter = t.dir.path().join("counter");
    let drv = instantiate(&t, &counter, "30");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(t.url())
        .args(["--option", "sandbox", "false"])
        .args(["build", &drv, "--no-link"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first builder has started (and is sleeping).
    let start = std::time::Instant::now();
    while count_lines(&counter).is_empty() {
        assert!(start.elapsed().as_secs() < 30, "builder never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    t.run_nix(&nix_store, &["--verify", "--check-contents"]);
    // The killed builder's output is not valid; the next build redoes it quickly.
    std::fs::remove_file(&counter).unwrap();
    let file = t.dir.path().join("dag.nix");
    let fast = t.run_nix(
        &nix("nix-instantiate").unwrap(),
        &[
            file.to_str().unwrap(),
            "--argstr",
            "counter",
            counter.to_str().unwrap(),
            "--argstr",
            "sleep",
            "0",
        ],
    );
    ok(rix(&t, &["build", fast.trim(), "--no-link"]));
    t.run_nix(&nix_store, &["--verify", "--check-contents"]);
}

/// Builders print their whole environment (and the files Nix writes for them);
/// Nix and rix must give them the same bytes.
const ENV_DUMP: &str = r#"
let
  dump = extra: derivation ({
    name = "envdump";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "out=${builtins.placeholder "out"}; echo dev > ${builtins.placeholder "dev"} 2>/dev/null; export > $out; for f in .attr-* .attrs.json .attrs.sh; do [ -e \"$f\" ] && { echo \"== $f\"; while IFS= read -r l || [ -n \"$l\" ]; do echo \"$l\"; done < \"$f\"; } >> $out; done; true" ];
    placeholderInEnv = "prefix=${builtins.placeholder "out"}/share";
  } // extra);
in {
  plain = dump { outputs = [ "out" "dev" ]; foo = true; bar = false; n = null; l = [ 1 "a" ]; s = "with 'quotes' and\nnewline"; };
  passAsFile = dump { outputs = [ "out" "dev" ]; passAsFile = [ "big" ]; big = "contents of big"; other = "x"; };
  structured = dump { __structuredAttrs = true; outputs = [ "out" "dev" ]; foo = true; l = [ 1 "a" ]; s = { x = 1.5; y = 2; }; dev_ = builtins.placeholder "dev"; };
}
"#;

#[test]
fn builder_environment_is_nixs() {
    let (Some(nix_store), Some(inst)) = (nix("nix-store"), nix("nix-instantiate")) else {
        return;
    };
    let file_dir = TempStore::new();
    let file = file_dir.dir.path().join("env.nix");
    std::fs::write(&file, ENV_DUMP).unwrap();
    for attr in ["plain", "passAsFile", "structured"] {
        let t = TempStore::new();
        let drv = t
            .run_nix(&inst, &[file.to_str().unwrap(), "-A", attr])
            .trim()
            .to_owned();
        let outs = t.run_nix(&nix_store, &["--realise", &drv]);
        let outs: Vec<&str> = outs.lines().collect();
        let out = outs
            .iter()
            .find(|o| !o.ends_with("-dev"))
            .unwrap()
            .to_string();
        let by_nix = std::fs::read(&out).unwrap();
        let mut delete = vec!["--delete"];
        delete.extend(outs.iter().copied());
        t.run_nix(&nix_store, &delete);
        let rix_out = ok(rix(
            &t,
            &[
                "build",
                &drv,
                "--no-link",
                "--print-out-paths",
                "--cores",
                "0",
            ],
        ));
        assert!(rix_out.lines().any(|l| l == out), "{rix_out}");
        let by_rix = std::fs::read(&out).unwrap();
        assert_eq!(
            normalise_build_dir(&String::from_utf8_lossy(&by_rix)),
            normalise_build_dir(&String::from_utf8_lossy(&by_nix)),
            "environment of '{attr}' differs"
        );
    }
}

/// Both tools name the build directory `nix-build-<drv name>-<n>` with the first
/// free `n`, which depends on what else is building on the machine: compare
/// without it.
fn normalise_build_dir(text: &str) -> String {
    let marker = "nix-build-envdump.drv-";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = rest[i + marker.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

/// A derivation whose builder records that it started, then waits for `go` to exist.
fn instantiate_gated(t: &TempStore, counter: &Path, go: &Path) -> String {
    let inst = nix("nix-instantiate").unwrap();
    empty_counter(counter);
    let expr = format!(
        r#"derivation {{
          name = "gated";
          system = builtins.currentSystem;
          builder = "/bin/sh";
          args = [ "-c" "echo started >> {}; while [ ! -e {} ]; do sleep 0.1; done; echo done > $out" ];
        }}"#,
        counter.display(),
        go.display()
    );
    t.run_nix(&inst, &["-E", &expr]).trim().to_owned()
}

/// Starts `holder` building the gated derivation, then `waiter` on the same one:
/// the waiter must report that it waits for the output's lock and must not start
/// the builder; once the holder finishes, both give the same output and the
/// builder ran once.
fn one_builds_while_the_other_waits(
    counter: &Path,
    go: &Path,
    mut holder: Command,
    mut waiter: Command,
) {
    use std::io::BufRead;
    use std::process::Stdio;
    // However this ends, let the gated builders finish rather than spin forever.
    struct OpenGate<'a>(&'a Path);
    impl Drop for OpenGate<'_> {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0, "");
        }
    }
    let _gate = OpenGate(go);
    let holder = holder
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    rix_testutil::wait_for(
        "the first builder to start",
        Duration::from_secs(120),
        || (!count_lines(counter).is_empty()).then_some(()),
    );
    let mut waiter = waiter
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = waiter.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("waiting for lock on") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the second process never said it waits for the lock");
    assert_eq!(
        count_lines(counter),
        ["started"],
        "both builders ran at once"
    );
    std::fs::write(go, "").unwrap();
    let holder = holder.wait_with_output().unwrap();
    let waiter_out = waiter.wait_with_output().unwrap();
    let waiter_err = reader.join().unwrap();
    assert!(holder.status.success());
    assert!(waiter_out.status.success(), "{waiter_err}");
    assert_eq!(
        String::from_utf8_lossy(&holder.stdout).trim(),
        String::from_utf8_lossy(&waiter_out.stdout).trim()
    );
    assert_eq!(
        count_lines(counter),
        ["started"],
        "the output was built twice"
    );
}

#[test]
fn nix_waits_for_an_output_rix_is_building() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let (counter, go) = (t.dir.path().join("counter"), t.dir.path().join("go"));
    let drv = instantiate_gated(&t, &counter, &go);
    let mut holder = Command::new(env!("CARGO_BIN_EXE_rix"));
    holder.args(["--store", &t.url(), "--option", "sandbox", "false"]);
    holder.args(["build", &drv, "--no-link", "--print-out-paths"]);
    let mut waiter = Command::new(&nix_store);
    waiter.args(["--store", &t.url(), "--realise", &drv]);
    waiter.env("NIX_CONFIG", "sandbox = false\nsubstituters =");
    one_builds_while_the_other_waits(&counter, &go, holder, waiter);
    t.run_nix(&nix_store, &["--verify", "--check-contents"]);
}

#[test]
fn rix_waits_for_an_output_nix_is_building() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let (counter, go) = (t.dir.path().join("counter"), t.dir.path().join("go"));
    let drv = instantiate_gated(&t, &counter, &go);
    let mut holder = Command::new(&nix_store);
    holder.args(["--store", &t.url(), "--realise", &drv]);
    holder.env("NIX_CONFIG", "sandbox = false\nsubstituters =");
    let mut waiter = Command::new(env!("CARGO_BIN_EXE_rix"));
    waiter.args(["--store", &t.url(), "--option", "sandbox", "false"]);
    waiter.args(["build", &drv, "--no-link", "--print-out-paths"]);
    one_builds_while_the_other_waits(&counter, &go, holder, waiter);
}

/// `top` depends on `a` (fails), `s` (succeeds) and `c` (depends on `s`, fails).
const FAIL_SUCCEED_FAIL: &str = r#"
{ salt }:
let
  mk = name: ok: deps: derivation {
    inherit name salt;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ("echo ${toString deps} > $out; " + (if ok then "" else "exit 1")) ];
  };
  s = mk "s" true [ ];
in { a = mk "a" false [ ]; inherit s; top = mk "top" true [ (mk "a" false [ ]) s (mk "c" false [ s ]) ]; }
"#;

/// With `--keep-going` and one builder, `a` fails, then `s` succeeds, then `c`
/// fails: `top` is skipped once, and the summary counts 4 builds, not 5.
#[test]
fn keep_going_summary_counts_each_build_once() {
    let Some(inst) = nix("nix-instantiate") else {
        return;
    };
    let t = TempStore::new();
    let file = t.dir.path().join("fsf.nix");
    std::fs::write(&file, FAIL_SUCCEED_FAIL).unwrap();
    let hash = |p: &str| Path::new(p).file_name().unwrap().to_string_lossy()[..32].to_owned();
    // Builds start in the order of their .drv paths: find a salt that runs `a` first.
    let top = (0..64)
        .find_map(|salt| {
            let out = t.run_nix(
                &inst,
                &[
                    file.to_str().unwrap(),
                    "-A",
                    "a",
                    "-A",
                    "s",
                    "-A",
                    "top",
                    "--argstr",
                    "salt",
                    &salt.to_string(),
                ],
            );
            let paths: Vec<&str> = out.lines().collect();
            (hash(paths[0]) < hash(paths[1])).then(|| paths[2].to_owned())
        })
        .expect("a salt that orders a before s");
    let out = rix(&t, &["build", "--no-link", "--keep-going", "-j", "1", &top]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "error: 2 of 4 builds failed and 1 were not attempted"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("not building").count(), 1, "{stderr}");
}

/// A store rooted at a temporary directory (its paths are `/nix/store/...`, so
/// two such stores share paths), and rix run on it with its own narinfo cache.
fn rooted() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rix-build-")
        .tempdir()
        .unwrap()
}

fn rix_rooted(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(root)
        .args(args)
        .env("XDG_CACHE_HOME", root.join("xdg-cache"))
        .output()
        .expect("run rix")
}

/// `rix build PATH` and `rix store realise PATH` of a plain store path fetch it
/// (with its closure) from a cache, as `nix build PATH` does; a valid path is its
/// own result; a path no cache has is Nix's error, exit code 1.
#[test]
fn a_plain_store_path_is_substituted_or_is_the_result() {
    let src = rooted();
    let dep = ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args([
            "--store",
            src.path().to_str().unwrap(),
            "store",
            "add-text",
            "dep",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap());
    let dep = dep.trim().to_owned();
    let text = src.path().join("text");
    std::fs::write(&text, format!("refers to {dep}")).unwrap();
    let top = ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args([
            "--store",
            src.path().to_str().unwrap(),
            "store",
            "add-text",
            "top",
        ])
        .args(["--reference", &dep])
        .stdin(std::fs::File::open(&text).unwrap())
        .output()
        .unwrap());
    let top = top.trim().to_owned();
    let cache = src.path().join("cache");
    let cache_url = format!("file://{}", cache.display());
    ok(rix_rooted(src.path(), &["copy", "--to", &cache_url, &top]));

    let dst = rooted();
    let subst = [
        "--substituters",
        &cache_url,
        "--option",
        "require-sigs",
        "false",
    ];
    let link = dst.path().join("result");
    let mut args = vec!["build", "-o", link.to_str().unwrap(), &top];
    args.extend(subst);
    ok(rix_rooted(dst.path(), &args));
    let real = |p: &str| dst.path().join(p.trim_start_matches('/'));
    assert_eq!(std::fs::read_link(&link).unwrap(), real(&top));
    assert_eq!(
        std::fs::read_to_string(&link).unwrap(),
        format!("refers to {dep}")
    );
    assert!(real(&dep).exists(), "the closure was fetched");

    // Valid now: the result with no cache at all.
    let out = ok(rix_rooted(
        dst.path(),
        &["store", "realise", "--offline", &top],
    ));
    assert_eq!(out, format!("{top}\n"));

    // No cache has it.
    let missing = "/nix/store/00000000000000000000000000000000-missing";
    for offline in [false, true] {
        let mut args = vec!["store", "realise", missing];
        if offline {
            args.push("--offline");
        } else {
            args.extend(subst);
        }
        let out = rix_rooted(dst.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "error: path '{missing}' is required, but there is no substituter that can build it"
            )),
            "{stderr}"
        );
    }
}

/// A NUL byte (possible only in a configuration file) in `sandbox-paths` or
/// `sandbox-dev-shm-size` is a settings error naming the setting, not a panic.
#[test]
fn a_nul_byte_in_a_sandbox_setting_is_a_settings_error() {
    let Some(inst) = nix("nix-instantiate") else {
        return;
    };
    let t = TempStore::new();
    let file = t.dir.path().join("one.nix");
    std::fs::write(
        &file,
        r#"derivation { name = "one"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }"#,
    )
    .unwrap();
    let drv = t
        .run_nix(&inst, &[file.to_str().unwrap()])
        .trim()
        .to_owned();
    for (setting, value) in [
        ("sandbox-paths", "/bin/sh=/bin/s\0h"),
        ("sandbox-dev-shm-size", "50\0%"),
    ] {
        let conf = t.dir.path().join("xdg/rix");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("rix.conf"), format!("{setting} = {value}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rix"))
            .args(["--store", &t.url(), "build", "--no-link", &drv])
            .env("XDG_CONFIG_HOME", t.dir.path().join("xdg"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("invalid setting '{setting}'"))
                && stderr.contains("contains a NUL byte")
                && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

/// A builder printing 300 MB without a newline under `max-build-log-size` of
/// 100 MiB is killed with Nix's error, and rix's peak memory stays far below
/// what it printed (it used to hold the unfinished line, and whatever the pipe
/// reader had queued, in memory).
#[test]
fn a_chatty_builder_is_killed_at_the_log_limit_in_bounded_memory() {
    let Some(inst) = nix("nix-instantiate") else {
        return;
    };
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("skipping: /usr/bin/time (GNU time) is not installed");
        return;
    }
    let t = TempStore::new();
    let file = t.dir.path().join("chatty.nix");
    std::fs::write(
        &file,
        r#"derivation { name = "chatty"; system = builtins.currentSystem; builder = "/bin/sh";
             args = [ "-c" "/usr/bin/head -c 300000000 /dev/zero; echo > $out" ]; }"#,
    )
    .unwrap();
    let drv = t
        .run_nix(&inst, &[file.to_str().unwrap()])
        .trim()
        .to_owned();
    let limit = (100u64 << 20).to_string();
    let report = t.dir.path().join("time");
    let out = Command::new(time)
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "--option", "sandbox", "false"])
        .args(["build", "--no-link", "--max-build-log-size", &limit, &drv])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "killed after writing more than {limit} bytes of log output"
        )),
        "{stderr}"
    );
    let report = std::fs::read_to_string(&report).unwrap();
    let peak_kib: u64 = report
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS in {report:?}"));
    assert!(
        peak_kib < 64 * 1024,
        "rix's peak RSS was {peak_kib} KiB for a 100 MiB log limit"
    );
}
