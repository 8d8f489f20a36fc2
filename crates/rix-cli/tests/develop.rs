//! `rix develop` and `rix print-dev-env` against Nix 2.26's `nix develop`
//! and `nix print-dev-env` on the same store: the environment derivation
//! (the same path, so the same `get-env.sh` and the same rewriting), the
//! captured JSON (built by rix, then rebuilt by Nix), the variables a
//! command sees inside the shell, phases, `--ignore-environment`/`--keep`/
//! `--unset`, flakes (`devShells` first), the environment cache (a second
//! entry evaluates and writes nothing), `--profile`, and the errors (a
//! failing input, a builder that is not bash). The project is a small fake
//! stdenv written here: a `setup` script defining a variable and functions.
//! Differential parts need the current Nix (`RIX_NIX_CURRENT`) and are
//! skipped without it.

mod rixcmd;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use rixcmd::{RixDaemon, TempStore};

const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nflake-registry =\nbuild-hook =";

/// A project: `default.nix` (a function of `system`) with a fake stdenv, a
/// tool on PATH, two outputs, a shell hook and a multi-line variable; a
/// flake whose `devShells` and `packages` differ.
fn project(dir: &Path, fail_dep: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let dep_cmd = if fail_dep {
        "echo dep-failed-on-purpose >&2; exit 1"
    } else {
        "export PATH=/usr/bin:/bin; mkdir -p $out/bin; printf '#!/bin/sh\\necho dep-tool\\n' > $out/bin/dep-tool; chmod +x $out/bin/dep-tool"
    };
    std::fs::write(
        dir.join("default.nix"),
        format!(
            r#"{{ system ? builtins.currentSystem, name ? "hello" }}:
let
  stdenv = derivation {{
    name = "fake-stdenv";
    inherit system;
    builder = "/bin/bash";
    args = [ "-c" ''
      export PATH=/usr/bin:/bin
      mkdir $out
      cat > $out/setup <<'SETUP'
      export FROM_SETUP=yes
      declare -a anArray=(one "two words")
      runHook() {{ local h=$1; "$h"; }}
      buildPhase() {{ echo "building in $PWD with out=$out"; }}
      greet() {{ echo "hello from setup"; }}
      SETUP
    '' ];
  }};
  dep = derivation {{
    name = "dep";
    inherit system;
    builder = "/bin/bash";
    args = [ "-c" "{dep_cmd}" ];
  }};
in derivation {{
  inherit name system stdenv;
  builder = "/bin/bash";
  args = [ "-c" "source $stdenv/setup; echo > $out; echo > $dev" ];
  outputs = [ "out" "dev" ];
  PATH = "${{dep}}/bin";
  shellHook = "echo shell-hook-ran >&2";
  multi = "a\nb 'c'";
  allowedReferences = [ ];
}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        r#"{
  outputs = { self }: {
    devShells.x86_64-linux.default = import ./default.nix { system = "x86_64-linux"; name = "devshell"; };
    packages.x86_64-linux.default = import ./default.nix { system = "x86_64-linux"; };
  };
}
"#,
    )
    .unwrap();
}

fn rix(store: &TempStore, cwd: &Path, args: &[&str]) -> Output {
    rix_at(store, &store.url(), cwd, args)
}

/// `rix` with the store given as `url` (a daemon's), `store`'s directories
/// for the rest.
fn rix_at(store: &TempStore, url: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(url)
        .args(["--option", "sandbox", "false"])
        .args(args)
        .current_dir(cwd)
        .env("HOME", store.dir.path())
        .env("XDG_CONFIG_HOME", store.dir.path().join("config"))
        .env("XDG_CACHE_HOME", store.dir.path().join("rix-cache"))
        .env("TMPDIR", store.dir.path())
        .env("FOO", "foo-value")
        .output()
        .unwrap()
}

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
            .env("TMPDIR", store.dir.path())
            .env("FOO", "foo-value")
            .output()
            .unwrap(),
    )
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The store paths in the store directory whose names end with `suffix`.
fn paths_ending(store: &TempStore, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.store_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// `env -0`'s `NAME=VALUE` entries as a map, without what differs by run
/// (temporary directories) and what the test gives each tool its own of.
fn env_map(text: &str) -> BTreeMap<String, String> {
    const DIFFER: &[&str] = &[
        "NIX_BUILD_TOP",
        "TMP",
        "TMPDIR",
        "TEMP",
        "TEMPDIR",
        "XDG_CACHE_HOME",
        "NIX_CONFIG",
    ];
    text.split('\0')
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !DIFFER.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The captured JSON without the variables bash sets from the build user's
/// passwd entry (Nix builds as a `nixbld` user, rix here as the caller).
fn comparable(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    let vars = v["variables"].as_object_mut().unwrap();
    // And the build directory, whose number depends on other builds.
    for k in [
        "BASH",
        "SHELL",
        "NIX_BUILD_TOP",
        "TMP",
        "TMPDIR",
        "TEMP",
        "TEMPDIR",
    ] {
        vars.remove(k);
    }
    v
}

/// The environment derivation is Nix's (same path), and what it captures,
/// built by rix and then rebuilt by Nix, is the same JSON; `--json` is
/// printed as Nix prints it.
#[test]
fn print_dev_env_json_is_nixs() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    let ours = ok(rix(
        &store,
        &dir,
        &["print-dev-env", "-f", "default.nix", "--json"],
    ));
    assert!(ours.ends_with("}\n"));
    let env = paths_ending(&store, "-hello-env");
    assert_eq!(env.len(), 1, "{env:?}");
    let v: serde_json::Value = serde_json::from_str(&ours).unwrap();
    assert_eq!(v["variables"]["FROM_SETUP"]["type"], "exported");
    assert_eq!(
        v["variables"]["anArray"]["value"],
        serde_json::json!(["one", "two words"])
    );
    assert!(v["bashFunctions"]["greet"].is_string());
    // Nothing was built but the inputs and the environment.
    assert!(paths_ending(&store, "-hello").is_empty());

    let Some(same) = nix(
        &store,
        &dir,
        &["print-dev-env", "-f", "default.nix", "--json"],
    ) else {
        eprintln!("skipped the comparison: no Nix 2.26");
        return;
    };
    // Nix prints the environment rix captured byte for byte.
    assert_eq!(ok(same), ours);
    // Nix rebuilds it (the same derivation: no other `-env` path appears).
    let deleted = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "store", "delete"])
        .arg(store.store_dir().join(&env[0]))
        .output()
        .unwrap();
    ok(deleted);
    let theirs = ok(nix(
        &store,
        &dir,
        &["print-dev-env", "-f", "default.nix", "--json"],
    )
    .unwrap());
    assert_eq!(paths_ending(&store, "-hello-env"), env);
    assert_eq!(comparable(&theirs), comparable(&ours));
}

/// The bash script: the same as Nix's for the same environment, once the
/// temporary directory's name is set aside.
#[test]
fn print_dev_env_script_is_nixs() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    let ours = ok(rix(&store, &dir, &["print-dev-env", "-f", "default.nix"]));
    let outputs = dir.join("outputs");
    assert!(ours.contains(&format!("out='{}/out'\nexport out\n", outputs.display())));
    assert!(ours.contains("multi=$'") || ours.contains("multi='a\nb '\\''c'\\'''\n"));
    assert!(!ours.contains("\nHOME="));
    let Some(theirs) = nix(&store, &dir, &["print-dev-env", "-f", "default.nix"]) else {
        return;
    };
    assert_eq!(ours, ok(theirs));
}

/// What a command sees in the shell is what it sees in Nix's.
#[test]
fn develop_command_env_is_nixs() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    let ours = rix(
        &store,
        &dir,
        &["develop", "-f", "default.nix", "-c", "env", "-0"],
    );
    let err = String::from_utf8_lossy(&ours.stderr).into_owned();
    assert!(err.contains("shell-hook-ran"), "{err}");
    let ours = env_map(&ok(ours));
    assert_eq!(ours["FROM_SETUP"], "yes");
    assert_eq!(ours["FOO"], "foo-value");
    assert!(ours["NIX_GCROOT"].ends_with("-hello-env"));
    assert!(ours["PATH"].contains("-dep/bin:"));
    let Some(theirs) = nix(
        &store,
        &dir,
        &["develop", "-f", "default.nix", "-c", "env", "-0"],
    ) else {
        return;
    };
    assert_eq!(ours, env_map(&ok(theirs)));
}

/// `--phase`, `--build`, arguments of `--command`, `--ignore-environment`
/// with `--keep`, `--unset`, and the usage errors.
#[test]
fn develop_phases_and_environment_flags() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    let f = ["develop", "-f", "default.nix"];
    let out = ok(rix(&store, &dir, &[&f[..], &["--build"]].concat()));
    assert_eq!(
        out,
        format!(
            "building in {} with out={}/outputs/out\n",
            dir.display(),
            dir.display()
        )
    );
    let same = ok(rix(&store, &dir, &[&f[..], &["--phase", "build"]].concat()));
    assert_eq!(same, out);
    let args = ok(rix(
        &store,
        &dir,
        &[&f[..], &["-c", "printf", "<%s>", "a b", "it's", "$HOME"]].concat(),
    ));
    assert_eq!(args, "<a b><it's><$HOME>");
    let kept = ok(rix(
        &store,
        &dir,
        &[&f[..], &["-i", "-k", "FOO", "-c", "/usr/bin/env", "-0"]].concat(),
    ));
    let kept = env_map(&kept);
    assert_eq!(kept["FOO"], "foo-value");
    assert!(!kept.contains_key("XDG_CACHE_HOME"));
    let unset = env_map(&ok(rix(
        &store,
        &dir,
        &[&f[..], &["-u", "FOO", "-c", "env", "-0"]].concat(),
    )));
    assert!(!unset.contains_key("FOO"));
    let both = rix(&store, &dir, &[&f[..], &["--build", "-c", "true"]].concat());
    assert!(String::from_utf8_lossy(&both.stderr)
        .contains("error: you cannot use both '--command' and '--phase'"));
    let keep = rix(
        &store,
        &dir,
        &[&f[..], &["-k", "FOO", "-c", "true"]].concat(),
    );
    assert!(String::from_utf8_lossy(&keep.stderr)
        .contains("--keep does not make sense without --ignore-environment"));
}

/// A flake: `devShells.<system>.default` first, a package by name, and a
/// second entry answered from the cache, which neither evaluates (the
/// deleted `.drv` is not written again) nor rebuilds anything.
#[test]
fn develop_flake_and_instant_reentry() {
    let store = TempStore::new();
    let dir = store.dir.path().join("flake");
    project(&dir, false);
    let shell = env_map(&ok(rix(&store, &dir, &["develop", "-c", "env", "-0"])));
    assert_eq!(shell["name"], "devshell-env");
    let pkg = env_map(&ok(rix(
        &store,
        &dir,
        &["develop", ".#default", "-c", "env", "-0"],
    )));
    assert_eq!(pkg["name"], "devshell-env");
    let pkg = env_map(&ok(rix(
        &store,
        &dir,
        &[
            "develop",
            ".#packages.x86_64-linux.default",
            "-c",
            "env",
            "-0",
        ],
    )));
    assert_eq!(pkg["name"], "hello-env");
    if let Some(o) = nix(&store, &dir, &["develop", "-c", "env", "-0"]) {
        assert_eq!(env_map(&ok(o)), shell);
    }

    // The cache: with the derivation gone from the store, entering again
    // does not write it back (no evaluation happened).
    let drv = paths_ending(&store, "-devshell.drv");
    assert_eq!(drv.len(), 1);
    ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "store", "delete"])
        .arg(store.store_dir().join(&drv[0]))
        .output()
        .unwrap());
    let again = env_map(&ok(rix(&store, &dir, &["develop", "-c", "env", "-0"])));
    assert_eq!(again, shell);
    assert!(paths_ending(&store, "-devshell.drv").is_empty());
    // A change to the flake is a new evaluation.
    let text = std::fs::read_to_string(dir.join("flake.nix")).unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        text.replace("\"devshell\"", "\"devshell2\""),
    )
    .unwrap();
    let changed = env_map(&ok(rix(&store, &dir, &["develop", "-c", "env", "-0"])));
    assert_eq!(changed["name"], "devshell2-env");
}

/// `--profile P` makes the environment a generation of P.
#[test]
fn develop_profile() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    let profile = store.dir.path().join("profiles/dev");
    let p = profile.display().to_string();
    ok(rix(
        &store,
        &dir,
        &[
            "develop",
            "-f",
            "default.nix",
            "--profile",
            &p,
            "-c",
            "true",
        ],
    ));
    ok(rix(
        &store,
        &dir,
        &[
            "develop",
            "-f",
            "default.nix",
            "--profile",
            &p,
            "-c",
            "true",
        ],
    ));
    assert_eq!(
        std::fs::read_link(&profile).unwrap(),
        Path::new("dev-1-link")
    );
    let target = std::fs::read_link(store.dir.path().join("profiles/dev-1-link")).unwrap();
    assert!(target.display().to_string().ends_with("-hello-env"));
    assert!(!store.dir.path().join("profiles/dev-2-link").exists());
}

/// A failing input stops with the builder's error, as Nix's; a builder
/// that is not bash is refused with Nix's message.
#[test]
fn develop_errors() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, true);
    let out = rix(
        &store,
        &dir,
        &["develop", "-f", "default.nix", "-c", "true"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("dep-failed-on-purpose"), "{err}");
    assert!(err.contains("-dep.drv' failed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    if let Some(o) = nix(
        &store,
        &dir,
        &["develop", "-f", "default.nix", "-c", "true"],
    ) {
        assert_eq!(o.status.code(), out.status.code());
    }

    let expr =
        "derivation { name = \"x\"; system = builtins.currentSystem; builder = \"/bin/sh\"; }";
    let out = rix(&store, &dir, &["develop", "--expr", expr, "-c", "true"]);
    let err = rixcmd::fails(out);
    assert!(
        err.contains(
            "error: 'nix develop' only works on derivations that use 'bash' as their builder"
        ),
        "{err}"
    );
}

/// A derivation with structured attributes: the captured JSON has them
/// (`structuredAttrs`), and the script points `NIX_ATTRS_*_FILE` at copies
/// in a temporary directory, as Nix's.
#[test]
fn structured_attrs_are_nixs() {
    let store = TempStore::new();
    let dir = store.dir.path().join("sa");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("default.nix"),
        r#"derivation {
  name = "sa";
  system = builtins.currentSystem;
  builder = "/bin/bash";
  args = [ "-c" "echo > $out" ];
  __structuredAttrs = true;
  outputs = [ "out" "lib" ];
  list = [ 1 "two" ];
  env.FOO = "bar";
}
"#,
    )
    .unwrap();
    let json = ok(rix(
        &store,
        &dir,
        &["print-dev-env", "-f", "default.nix", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["structuredAttrs"][".attrs.json"]
        .as_str()
        .unwrap()
        .contains("\"list\":[1,\"two\"]"));
    assert_eq!(v["variables"]["outputs"]["type"], "associative");
    let script = ok(rix(&store, &dir, &["print-dev-env", "-f", "default.nix"]));
    assert!(script.contains("NIX_ATTRS_JSON_FILE='/"), "{script}");
    let mask = |s: &str| -> String {
        s.lines()
            .map(|l| {
                if l.starts_with("NIX_ATTRS_") {
                    l.split_once('=').unwrap().0.to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(o) = nix(
        &store,
        &dir,
        &["print-dev-env", "-f", "default.nix", "--json"],
    ) {
        assert_eq!(ok(o), json);
        let theirs = ok(nix(&store, &dir, &["print-dev-env", "-f", "default.nix"]).unwrap());
        assert_eq!(mask(&theirs), mask(&script));
    }
}

/// Through a daemon (`rix daemon` serving the store on a socket): the
/// environment derivation is written through it and built by it (the same
/// path as when rix opens the store itself), and the shell, the script and
/// the JSON are the same as direct; a second entry is answered from the
/// cache; `--profile` makes the generation an indirect root the daemon
/// registered (it survives a collection); and when the client cannot see
/// the store's files (`real=` elsewhere), the JSON is read from the daemon
/// as a NAR.
#[test]
fn develop_through_a_daemon() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    let shell = ["develop", "-f", "default.nix", "-c", "env", "-0"];
    let json = ["print-dev-env", "-f", "default.nix", "--json"];
    let script = ["print-dev-env", "-f", "default.nix"];
    let direct = env_map(&ok(rix(&store, &dir, &shell)));
    let direct_json = ok(rix(&store, &dir, &json));
    let direct_script = ok(rix(&store, &dir, &script));
    let env = paths_ending(&store, "-hello-env");
    assert_eq!(env.len(), 1, "{env:?}");
    // Gone, and the cache emptied: the daemon captures it again.
    ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "store", "delete"])
        .arg(store.store_dir().join(&env[0]))
        .output()
        .unwrap());
    std::fs::remove_dir_all(store.dir.path().join("rix-cache")).unwrap();

    let daemon = RixDaemon::start(&store);
    let url = daemon.url();
    let through = rix_at(&store, &url, &dir, &shell);
    let err = String::from_utf8_lossy(&through.stderr).into_owned();
    assert!(err.contains("shell-hook-ran"), "{err}");
    assert_eq!(env_map(&ok(through)), direct);
    assert_eq!(paths_ending(&store, "-hello-env"), env);
    // The build directory is the daemon's (its TMPDIR).
    let through_json = ok(rix_at(&store, &url, &dir, &json));
    assert_eq!(comparable(&through_json), comparable(&direct_json));
    assert_eq!(ok(rix_at(&store, &url, &dir, &script)), direct_script);
    // Again, from the cache.
    assert_eq!(env_map(&ok(rix_at(&store, &url, &dir, &shell))), direct);

    // `--profile`: the link made here, registered with the daemon.
    let profile = store.dir.path().join("profiles/dev");
    let p = profile.display().to_string();
    let with_profile = [
        "develop",
        "-f",
        "default.nix",
        "--profile",
        &p,
        "-c",
        "true",
    ];
    ok(rix_at(&store, &url, &dir, &with_profile));
    let generation = store.dir.path().join("profiles/dev-1-link");
    assert_eq!(
        std::fs::read_link(&profile).unwrap(),
        Path::new("dev-1-link")
    );
    assert_eq!(
        std::fs::read_link(&generation).unwrap(),
        store.store_dir().join(&env[0])
    );
    let auto: Vec<_> = std::fs::read_dir(store.dir.path().join("state/gcroots/auto"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_link(e.path()).unwrap())
        .collect();
    assert!(auto.contains(&generation), "{auto:?}");
    ok(rix_at(&store, &url, &dir, &["store", "gc"]));
    assert_eq!(paths_ending(&store, "-hello-env"), env);

    // The store's files not visible here: the JSON comes as a NAR.
    let hidden = format!(
        "{url}&real={}",
        store.dir.path().join("elsewhere").display()
    );
    assert_eq!(ok(rix_at(&store, &hidden, &dir, &json)), through_json);
}

/// Nix 2.26's `nix-daemon` serving the store: rix develops through it as
/// through its own daemon (the environment built by Nix's daemon is the
/// one rix captures directly).
#[test]
fn develop_through_nix_daemon() {
    let Some(mut daemon) = rix_testutil::nix_current("nix-daemon") else {
        eprintln!("skipped: no Nix 2.26");
        return;
    };
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    let shell = ["develop", "-f", "default.nix", "-c", "env", "-0"];
    let direct = env_map(&ok(rix(&store, &dir, &shell)));
    let env = paths_ending(&store, "-hello-env");
    ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "store", "delete"])
        .arg(store.store_dir().join(&env[0]))
        .output()
        .unwrap());
    std::fs::remove_dir_all(store.dir.path().join("rix-cache")).unwrap();
    let sock = store.dir.path().join("nix-daemon.sock");
    let mut child = daemon
        .env("NIX_DAEMON_SOCKET_PATH", &sock)
        .args(["--option", "store", &store.url()])
        .args(["--option", "sandbox", "false"])
        .args(["--option", "substituters", ""])
        .args(["--option", "build-hook", ""])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    rix_testutil::wait_for(
        "the Nix daemon's socket",
        std::time::Duration::from_secs(60),
        || sock.exists().then_some(()),
    );
    let url = format!(
        "unix://{}?store={}",
        sock.display(),
        store.store_dir().display()
    );
    let through = rix_at(&store, &url, &dir, &shell);
    let _ = child.kill();
    let _ = child.wait();
    // Nix's daemon runs the environment's builder as a build user, whose
    // login shell (`SHELL`, /usr/sbin/nologin) the captured environment keeps.
    let mut through = env_map(&ok(through));
    let mut direct = direct;
    through.remove("SHELL");
    direct.remove("SHELL");
    assert_eq!(through, direct);
    assert_eq!(paths_ending(&store, "-hello-env"), env);
}

/// `--redirect INSTALLABLE DIR`: the installable's paths are replaced by
/// the directory in the script (a relative one made absolute), and a path
/// the environment does not use is warned about, as Nix's.
#[test]
fn redirect_is_nixs() {
    let store = TempStore::new();
    let dir = store.dir.path().join("proj");
    project(&dir, false);
    ok(rix(&store, &dir, &["print-dev-env", "-f", "default.nix"]));
    let path = |suffix: &str| {
        let found = paths_ending(&store, suffix);
        assert_eq!(found.len(), 1, "{suffix}: {found:?}");
        store.store_dir().join(&found[0]).display().to_string()
    };
    let (drv, dep, stdenv) = (path("-hello.drv"), path("-dep"), path("-fake-stdenv"));
    std::fs::write(dir.join("unused.txt"), "not in the environment").unwrap();
    let unused = ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "store", "add"])
        .arg(dir.join("unused.txt"))
        .output()
        .unwrap())
    .trim()
    .to_owned();
    let args = [
        "print-dev-env",
        &drv,
        "--redirect",
        &dep,
        "dep-here",
        "--redirect",
        &stdenv,
        "/elsewhere/stdenv",
        "--redirect",
        &unused,
        "/unused",
    ];
    let out = rix(&store, &dir, &args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let script = ok(out);
    let here = dir.join("dep-here").display().to_string();
    assert!(script.contains(&format!("PATH='{here}/bin'")), "{script}");
    assert!(script.contains("stdenv='/elsewhere/stdenv'"), "{script}");
    assert!(!script.contains(&dep) && !script.contains(&stdenv));
    for line in [
        format!("redirecting '{dep}' to '{here}'"),
        format!("warning: '{unused}' (path '{unused}') is not used by this build environment"),
    ] {
        assert!(err.contains(&line), "{line}\n{err}");
    }
    if let Some(theirs) = nix(&store, &dir, &args) {
        let theirs_err = String::from_utf8_lossy(&theirs.stderr).into_owned();
        assert_eq!(ok(theirs), script);
        assert!(
            theirs_err.contains(&format!("redirecting '{dep}' to '{here}'")),
            "{theirs_err}"
        );
    }
}
