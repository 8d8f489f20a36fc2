//! Floating content-addressed derivations (`ca-derivations`): built by rix as
//! Nix 2.26 builds them (same output paths, same realisations), each reading
//! the other's store, early cutoff, and a nondeterministic derivation keeping
//! its first realisation. After Nix 2.26's `tests/functional/ca/build.sh`
//! (`testCutoff`, `testDeterministicCA`) and `nondeterministic.nix`.

use std::path::Path;
use std::process::{Command, Output};

use rix_testutil::TempStore;

const NIX_CONFIG: &str = "experimental-features = nix-command ca-derivations\nsandbox = false\nsubstituters =\nbuild-hook =";

/// A graph: `a` (refers to itself) ← `b` (refers to `a`) ← `c`
/// (input-addressed, above CA) ← `d` (CA again), with a fixed-output
/// derivation below `b`. `comment` changes `a`'s derivation but not its
/// output; `counter` records every builder run.
const GRAPH: &str = r#"
{ counter, comment ? "", seed ? "" }:
let
  ca = name: deps: script: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name} >> ${counter}; ${script}" ];
    __contentAddressed = true;
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
  } // (if name == "a" then { inherit comment; } else { }));
  fixed = derivation {
    name = "fixed";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo fixed >> ${counter}; echo fixed > $out" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "sha256-DDBxQY5jVuYUiYyE7QZMqV6IVRvAgRtTS98ZUuza5TQ=";
  };
  a = ca "a" [ ] "echo hello > $out; echo $out >> $out";
  b = ca "b" [ a ] "echo ${a} ${fixed} > $out";
  c = derivation {
    name = "c";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo c >> ${counter}; echo ${b} > $out" ];
  };
  d = ca "d" [ c ] "/bin/mkdir $out; echo ${c} ${seed} > $out/c; /bin/ln -s $out/c $out/self";
in d
"#;

fn write_graph(t: &TempStore) -> (String, String) {
    let file = t.dir.path().join("graph.nix");
    std::fs::write(&file, GRAPH).unwrap();
    let counter = t.dir.path().join("counter");
    empty_counter(&counter);
    (
        file.to_str().unwrap().to_owned(),
        counter.to_str().unwrap().to_owned(),
    )
}

/// Creates `counter` empty and writable by all (Nix's builders run as
/// nixbld users).
fn empty_counter(counter: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(counter, "").unwrap();
    std::fs::set_permissions(counter, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// The builders that ran, sorted.
fn runs(counter: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(counter)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn rix(t: &TempStore, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(t.url())
        .args(["--option", "sandbox", "false"])
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("run rix")
}

#[track_caller]
fn ok(out: Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn rix_build(t: &TempStore, file: &str, args: &[(&str, &str)]) -> (String, String) {
    let mut all = vec![
        "build",
        "--extra-experimental-features",
        "ca-derivations",
        file,
        "--no-link",
    ];
    for (k, v) in args {
        all.extend(["--argstr", k, v]);
    }
    ok(rix(t, &all))
}

/// A Nix 2.26 tool on `t`'s store, or `None` without the oracle.
fn nix(t: &TempStore, tool: &str, args: &[&str]) -> Option<(String, String)> {
    let mut cmd = rix_testutil::nix_current(tool)?;
    let out = cmd
        .arg("--store")
        .arg(t.url())
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap();
    Some(ok(out))
}

fn nix_build(t: &TempStore, file: &str, args: &[(&str, &str)]) -> Option<(String, String)> {
    let mut all = vec![file, "--no-out-link"];
    for (k, v) in args {
        all.extend(["--argstr", *k, *v]);
    }
    nix(t, "nix-build", &all)
}

/// What Nix 2.26 reads of a store's results: the realisation of every
/// derivation output the expression names, and the path info (content
/// address, references, deriver) of the top output's closure.
fn nix_view(t: &TempStore, file: &str, counter: &str, top: &str) -> Option<String> {
    let (realisations, _) = nix(
        t,
        "nix",
        &[
            "realisation",
            "info",
            "--json",
            "--file",
            file,
            "--argstr",
            "counter",
            counter,
        ],
    )?;
    let (infos, _) = nix(t, "nix", &["path-info", "--json", "--recursive", top])?;
    let mut infos: serde_json::Value = serde_json::from_str(&infos).unwrap();
    // Registration times differ from build to build.
    for (_, info) in infos.as_object_mut().unwrap() {
        info.as_object_mut().unwrap().remove("registrationTime");
    }
    Some(format!("{realisations}\n{infos:#}"))
}

#[test]
fn same_output_paths_and_realisations_as_nix() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let args = [("counter", counter.as_str())];
    let Some((nix_out, _)) = nix_build(&t, &file, &args) else {
        return;
    };
    let nix_view = nix_view(&t, &file, &counter, nix_out.trim()).unwrap();
    // A fresh store at the same place: rix builds the same graph.
    for sub in ["store", "state", "log"] {
        let p = t.dir.path().join(sub);
        let _ = Command::new("chmod").arg("-R").arg("u+w").arg(&p).status();
        std::fs::remove_dir_all(&p).unwrap();
    }
    empty_counter(Path::new(&counter));
    let (rix_out, stderr) = rix_build(&t, &file, &args);
    assert_eq!(rix_out, nix_out, "{stderr}");
    assert_eq!(runs(&counter), ["a", "b", "c", "d", "fixed"]);
    assert!(stderr.contains("resolved derivation: '"), "{stderr}");
    // Nix reads rix's store: the same realisations and path infos, and it
    // finds nothing to build.
    assert_eq!(
        nix_view,
        self::nix_view(&t, &file, &counter, rix_out.trim()).unwrap()
    );
    let (again, stderr) = nix_build(&t, &file, &args).unwrap();
    assert_eq!(again, rix_out);
    assert!(!stderr.contains("building '"), "{stderr}");
    nix(&t, "nix-store", &["--verify", "--check-contents"]).unwrap();
}

#[test]
fn rix_reads_what_nix_built_and_cuts_off_above_an_unchanged_output() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let args = [("counter", counter.as_str())];
    let Some((nix_out, _)) = nix_build(&t, &file, &args) else {
        return;
    };
    empty_counter(Path::new(&counter));
    let (out, stderr) = rix_build(&t, &file, &args);
    assert_eq!(out, nix_out);
    assert!(runs(&counter).is_empty(), "{stderr}");
    // A new comment in the lowest derivation: it rebuilds, its output is
    // the same, and nothing above it runs (Nix's `testCutoff`).
    let changed = [("counter", counter.as_str()), ("comment", "v2")];
    let (out, stderr) = rix_build(&t, &file, &changed);
    assert_eq!(out, nix_out);
    assert_eq!(runs(&counter), ["a"], "{stderr}");
    assert_eq!(
        stderr.matches("cut off: output unchanged").count(),
        3,
        "b, c and d: {stderr}"
    );
    // Nix agrees: everything of the changed graph is realised.
    let (again, stderr) = nix_build(&t, &file, &changed).unwrap();
    assert_eq!(again, nix_out);
    assert!(!stderr.contains("building '"), "{stderr}");
    assert_eq!(runs(&counter), ["a"]);
}

#[test]
fn early_cutoff_rebuilds_only_the_changed_derivation() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let (first, _) = rix_build(&t, &file, &[("counter", &counter)]);
    assert_eq!(runs(&counter), ["a", "b", "c", "d", "fixed"]);
    empty_counter(Path::new(&counter));
    let (second, stderr) = rix_build(&t, &file, &[("counter", &counter), ("comment", "x")]);
    assert_eq!(first, second);
    assert_eq!(runs(&counter), ["a"], "{stderr}");
    // A change that does reach the output rebuilds what is above it.
    empty_counter(Path::new(&counter));
    let (third, _) = rix_build(&t, &file, &[("counter", &counter), ("seed", "1")]);
    assert_ne!(first, third);
    assert_eq!(runs(&counter), ["d"]);
    // The output is content-addressed, its self-reference rewritten.
    let out = third.trim();
    let target = std::fs::read_link(
        Path::new(&t.store_dir())
            .join(out.rsplit('/').next().unwrap())
            .join("self"),
    )
    .unwrap();
    assert_eq!(target, Path::new(out).join("c"));
}

/// A nondeterministic derivation keeps its first realisation: a dependent
/// built later, by rix or by Nix, uses it instead of building it again.
#[test]
fn a_nondeterministic_derivation_keeps_its_first_realisation() {
    const NONDET: &str = r#"
    { top ? "one" }:
    let
      nondet = derivation {
        name = "nondet";
        system = builtins.currentSystem;
        builder = "/bin/sh";
        args = [ "-c" "echo $$ $RANDOM > $out" ];
        __contentAddressed = true;
        outputHashMode = "recursive";
        outputHashAlgo = "sha256";
      };
    in derivation {
      name = top;
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [ "-c" "read x < ${nondet}; echo ${nondet} $x > $out" ];
      __contentAddressed = true;
      outputHashMode = "recursive";
      outputHashAlgo = "sha256";
    }
    "#;
    let t = TempStore::new();
    let file = t.dir.path().join("nondet.nix");
    std::fs::write(&file, NONDET).unwrap();
    let file = file.to_str().unwrap();
    let read = |out: &str| std::fs::read_to_string(out.trim()).unwrap();
    let (one, _) = rix_build(&t, file, &[("top", "one")]);
    let (two, _) = rix_build(&t, file, &[("top", "two")]);
    assert_eq!(read(&one), read(&two));
    if let Some((three, stderr)) = nix_build(&t, file, &[("top", "three")]) {
        assert_eq!(read(&one), read(&three), "{stderr}");
    }
}

#[test]
fn without_the_feature_a_floating_derivation_is_refused() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(t.url())
        .args(["--option", "sandbox", "false"])
        .args(["build", "--no-link", &file, "--argstr", "counter", &counter])
        .env("NIX_CONFIG", "experimental-features = nix-command")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ca-derivations"), "{stderr}");
}

/// Collecting an output deletes its realisations with it (Nix's foreign key
/// cascade): a later build builds it again rather than trusting a
/// realisation of a deleted path; one kept by a root keeps them.
#[test]
fn garbage_collection_keeps_realisations_consistent() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let (first, _) = rix_build(&t, &file, &[("counter", &counter)]);
    ok(rix(&t, &["store", "gc"]));
    empty_counter(Path::new(&counter));
    let (second, _) = rix_build(&t, &file, &[("counter", &counter)]);
    assert_eq!(first, second);
    assert_eq!(runs(&counter), ["a", "b", "c", "d", "fixed"]);
    if let Some((view, _)) = nix(&t, "nix", &["realisation", "info", "--json", second.trim()]) {
        assert!(
            view.contains(second.trim().rsplit('/').next().unwrap()),
            "{view}"
        );
    }
}

/// Realisations travel with `rix copy --to` a binary cache
/// (`realisations/<id>.doi`, as Nix's `nix copy` writes them), and a fresh
/// store substitutes the graph through them instead of building it.
#[test]
fn realisations_travel_through_a_binary_cache() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let (out, _) = rix_build(&t, &file, &[("counter", &counter)]);
    let cache = t.dir.path().join("cache");
    let cache_url = format!("file://{}", cache.display());
    ok(rix(&t, &["copy", "--to", &cache_url, out.trim()]));
    let doi: Vec<String> = std::fs::read_dir(cache.join("realisations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        doi.iter()
            .all(|f| f.starts_with("sha256:") && f.ends_with("!out.doi")),
        "{doi:?}"
    );
    // Every CA derivation's realisation and its resolved one's; the
    // input-addressed `fixed` too (with ca-derivations every build has one).
    assert!(doi.len() >= 5, "{doi:?}");
    for sub in ["store", "state", "log"] {
        let p = t.dir.path().join(sub);
        let _ = Command::new("chmod").arg("-R").arg("u+w").arg(&p).status();
        std::fs::remove_dir_all(&p).unwrap();
    }
    empty_counter(Path::new(&counter));
    let (again, stderr) = ok(rix(
        &t,
        &[
            "build",
            "--extra-experimental-features",
            "ca-derivations",
            &file,
            "--argstr",
            "counter",
            &counter,
            "--no-link",
            "--option",
            "substituters",
            &cache_url,
            "--option",
            "require-sigs",
            "false",
        ],
    ));
    assert_eq!(again, out);
    assert!(runs(&counter).is_empty(), "{stderr}");
}

/// `rix daemon` answers Nix 2.26's `QueryRealisation`: `nix realisation
/// info` through the daemon gives what it gives on the store directly.
#[test]
fn realisations_through_rix_daemon() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    rix_build(&t, &file, &[("counter", counter.as_str())]);
    let Some((direct, _)) = nix(
        &t,
        "nix",
        &[
            "realisation",
            "info",
            "--json",
            "--file",
            &file,
            "--argstr",
            "counter",
            &counter,
        ],
    ) else {
        return;
    };
    let sock = t.dir.path().join("daemon.sock");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &t.url(), "daemon", "--socket"])
        .arg(&sock)
        .env("NIX_CONFIG", NIX_CONFIG)
        .spawn()
        .unwrap();
    rix_testutil::wait_for(
        "the daemon's socket",
        std::time::Duration::from_secs(30),
        || sock.exists().then_some(()),
    );
    let url = format!(
        "unix://{}?store={}",
        sock.display(),
        t.store_dir().display()
    );
    let out = rix_testutil::nix_current("nix")
        .unwrap()
        .args([
            "--store",
            &url,
            "realisation",
            "info",
            "--json",
            "--file",
            &file,
        ])
        .args(["--argstr", "counter", &counter])
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (through, stderr) = ok(out);
    assert_eq!(through, direct, "{stderr}");
    assert!(through.contains("\"outPath\""), "{through}");
}

fn rix_at(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", url])
        .args(["--option", "sandbox", "false"])
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("run rix")
}

/// Nix 2.26's `nix realisation info --json` of the graph's outputs in the
/// store at `url`, or `None` without the oracle.
fn nix_realisations(url: &str, file: &str, counter: &str) -> Option<String> {
    let out = rix_testutil::nix_current("nix")?
        .args(["--store", url, "realisation", "info", "--json", "--file"])
        .arg(file)
        .args(["--argstr", "counter", counter])
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap();
    Some(ok(out).0)
}

/// Another store with `t`'s store directory, its files elsewhere.
fn sibling_store(t: &TempStore, name: &str) -> String {
    let d = t.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    format!(
        "local?store={}&real={}/store&state={}/state&log={}/log",
        t.store_dir().display(),
        d.display(),
        d.display(),
        d.display()
    )
}

/// Realisations travel with `rix copy` from one store to another, local or
/// through `rix daemon` (Nix's `copyPaths` with realisations): Nix 2.26 reads
/// the same realisations in the copy, and rix builds nothing there.
#[test]
fn realisations_travel_with_rix_copy_between_stores() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let (out, _) = rix_build(&t, &file, &[("counter", &counter)]);
    let other = sibling_store(&t, "other");
    // (`c` is input-addressed and unsigned: Nix's `nix copy` wants
    // `--no-check-sigs` for it too.)
    let (_, stderr) = ok(rix(
        &t,
        &["copy", "--no-check-sigs", "--to", &other, out.trim()],
    ));
    assert!(stderr.contains("realisations"), "{stderr}");
    // Through a daemon (RegisterDrvOutput).
    let served = sibling_store(&t, "served");
    let sock = t.dir.path().join("daemon.sock");
    // `c` is input-addressed and unsigned: the daemon takes it from a
    // trusted client that skips the signature check.
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &served, "daemon", "--socket"])
        .arg(&sock)
        .env("NIX_CONFIG", format!("{NIX_CONFIG}\ntrusted-users = *"))
        .spawn()
        .unwrap();
    rix_testutil::wait_for(
        "the daemon's socket",
        std::time::Duration::from_secs(30),
        || sock.exists().then_some(()),
    );
    let daemon_url = format!(
        "unix://{}?store={}",
        sock.display(),
        t.store_dir().display()
    );
    let copied = rix(
        &t,
        &["copy", "--no-check-sigs", "--to", &daemon_url, out.trim()],
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    ok(copied);
    for url in [&other, &served] {
        empty_counter(Path::new(&counter));
        let (again, stderr) = ok(rix_at(
            url,
            &[
                "build",
                "--extra-experimental-features",
                "ca-derivations",
                &file,
                "--argstr",
                "counter",
                &counter,
                "--no-link",
            ],
        ));
        assert_eq!(again, out);
        assert!(runs(&counter).is_empty(), "{url}: {stderr}");
    }
    let Some(source) = nix_realisations(&t.url(), &file, &counter) else {
        return;
    };
    assert!(source.contains("\"outPath\""), "{source}");
    for url in [&other, &served] {
        assert_eq!(
            nix_realisations(url, &file, &counter).unwrap(),
            source,
            "{url}"
        );
    }
}

/// `rix copy --from CACHE DRV^out` fetches a content-addressed derivation's
/// output through the cache's realisation and registers the realisations:
/// Nix 2.26 reads the same ones as in the store that built them.
#[test]
#[ignore = "known gap (session 11): the realisation registered from the cache loses its dependentRealisations"]
fn rix_copy_from_a_binary_cache_fetches_realisations() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let (out, _) = rix_build(&t, &file, &[("counter", &counter)]);
    let cache = t.dir.path().join("cache");
    let cache_url = format!("file://{}", cache.display());
    ok(rix(&t, &["copy", "--to", &cache_url, out.trim()]));
    let fresh = sibling_store(&t, "fresh");
    let (drv, _) = ok(rix_at(
        &fresh,
        &["instantiate", &file, "--argstr", "counter", &counter],
    ));
    let wanted = format!("{}^out", drv.trim());
    let (_, stderr) = ok(rix_at(
        &fresh,
        &["copy", "--no-check-sigs", "--from", &cache_url, &wanted],
    ));
    assert!(
        t.dir
            .path()
            .join("fresh/store")
            .join(out.trim().rsplit('/').next().unwrap())
            .exists(),
        "{stderr}"
    );
    // Nothing builds in the fresh store, no cache needed.
    empty_counter(Path::new(&counter));
    let (again, stderr) = rix_build_at(&fresh, &file, &counter);
    assert_eq!(again, out);
    assert!(runs(&counter).is_empty(), "{stderr}");
    if let Some(source) = nix_realisations(&t.url(), &file, &counter) {
        assert_eq!(nix_realisations(&fresh, &file, &counter).unwrap(), source);
    }
}

fn rix_build_at(url: &str, file: &str, counter: &str) -> (String, String) {
    ok(rix_at(
        url,
        &[
            "build",
            "--extra-experimental-features",
            "ca-derivations",
            file,
            "--argstr",
            "counter",
            counter,
            "--no-link",
        ],
    ))
}

/// Builds sign the realisations they register with `secret-key-files`, as
/// Nix 2.26's `signRealisation`: the same signatures as Nix's for the same
/// graph and key (Ed25519 signatures are deterministic).
#[test]
fn built_realisations_are_signed_with_secret_key_files() {
    let t = TempStore::new();
    let (file, counter) = write_graph(&t);
    let key = t.dir.path().join("secret");
    let (secret, _) = ok(rix(&t, &["key", "generate-secret", "--key-name", "test-1"]));
    std::fs::write(&key, secret).unwrap();
    let key = key.to_str().unwrap();
    let (out, _) = ok(rix(
        &t,
        &[
            "build",
            "--extra-experimental-features",
            "ca-derivations",
            "--option",
            "secret-key-files",
            key,
            &file,
            "--argstr",
            "counter",
            &counter,
            "--no-link",
        ],
    ));
    // Without the oracle: the realisations uploaded (unsigned by the copy)
    // carry the build's signatures.
    let cache = t.dir.path().join("cache");
    let cache_url = format!("file://{}", cache.display());
    ok(rix(&t, &["copy", "--to", &cache_url, out.trim()]));
    for e in std::fs::read_dir(cache.join("realisations")).unwrap() {
        let doi = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(doi.contains("\"test-1:"), "{doi}");
    }
    let Some(rix_view) = nix_realisations(&t.url(), &file, &counter) else {
        return;
    };
    // Nix 2.26 builds the same graph with the same key in a fresh store at
    // the same place.
    for sub in ["store", "state", "log"] {
        let p = t.dir.path().join(sub);
        let _ = Command::new("chmod").arg("-R").arg("u+w").arg(&p).status();
        std::fs::remove_dir_all(&p).unwrap();
    }
    let (nix_out, _) = nix(
        &t,
        "nix-build",
        &[
            &file,
            "--no-out-link",
            "--argstr",
            "counter",
            &counter,
            "--option",
            "secret-key-files",
            key,
        ],
    )
    .unwrap();
    assert_eq!(nix_out, out);
    let nix_view = nix_realisations(&t.url(), &file, &counter).unwrap();
    assert!(nix_view.contains("\"test-1:"), "{nix_view}");
    assert_eq!(rix_view, nix_view);
}
