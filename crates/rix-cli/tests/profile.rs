//! `rix profile` against Nix 2.26's `nix profile` on one temporary store:
//! the same profile store path and `manifest.json` bytes for the same
//! elements (flake installables, `--file` attributes, store paths), the same
//! generation links after install, remove and rollback, `list` (text and
//! `--json`), `history` and `diff-closures` output; each tool reads and
//! changes a profile the other made; a collision explained as Nix explains
//! it; every generation stays a GC root for `rix store gc` and Nix's
//! `nix-store --gc` until `wipe-history`. Needs the current Nix
//! (`RIX_NIX_CURRENT`); skipped without it.

mod rixcmd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rixcmd::TempStore;

const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nflake-registry =\nbuild-hook =";

fn nix_tool(tool: &str, store: &TempStore, cwd: &Path, args: &[&str]) -> Option<Output> {
    nix_tool_env(tool, store, cwd, args, &[])
}

fn nix_tool_env(
    tool: &str,
    store: &TempStore,
    cwd: &Path,
    args: &[&str],
    env: &[(&str, PathBuf)],
) -> Option<Output> {
    let mut cmd = rix_testutil::nix_current(tool)?;
    Some(
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .arg("--store")
            .arg(store.url())
            .args(args)
            .current_dir(cwd)
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("HOME", store.dir.path())
            .env("XDG_CONFIG_HOME", store.dir.path().join("config"))
            .env("XDG_CACHE_HOME", store.dir.path().join("nix-cache"))
            .output()
            .unwrap(),
    )
}

fn nix(store: &TempStore, cwd: &Path, args: &[&str]) -> Option<Output> {
    nix_tool("nix", store, cwd, args)
}

fn rix(store: &TempStore, cwd: &Path, args: &[&str]) -> Output {
    rix_env(store, cwd, args, &[])
}

fn rix_env(store: &TempStore, cwd: &Path, args: &[&str], env: &[(&str, PathBuf)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--store")
        .arg(store.url())
        .args(["--option", "sandbox", "false"])
        .args(args)
        .current_dir(cwd)
        .env("HOME", store.dir.path())
        .env("XDG_CONFIG_HOME", store.dir.path().join("config"))
        .env("XDG_CACHE_HOME", store.dir.path().join("rix-cache"))
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A flake of small packages (shell scripts written by their builders), and
/// `pkgs.nix` with one more.
fn write_sources(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
      script = name: prog: text: derivation {
        inherit name text prog;
        system = "x86_64-linux";
        builder = "/bin/sh";
        args = [ "-c" "/bin/mkdir -p $out/bin && printf '#!/bin/sh\\n%s\\n' \"$text\" > $out/bin/$prog && /bin/chmod +x $out/bin/$prog" ];
      };"#;
    std::fs::write(
        dir.join("flake.nix"),
        format!(
            r#"{{
  outputs = {{ self }}:
    let {script}
    in {{
      packages.x86_64-linux = {{
        hello = script "hello-1.0" "hello" "echo hello";
        greeter = script "greeter-2.0" "greet" "echo greetings";
        hello2 = script "hello-2.0" "hello" "echo hello two";
      }};
    }};
}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("pkgs.nix"),
        format!("let {script} in {{ tool = script \"tool-3.1\" \"tool\" \"echo tool\"; }}\n"),
    )
    .unwrap();
}

fn link(p: &Path) -> PathBuf {
    std::fs::read_link(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn generations(dir: &Path, name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}-")) && n.ends_with("-link"))
        .collect();
    v.sort();
    v
}

#[test]
fn profiles_as_nix() {
    let t = TempStore::new();
    let src = t.dir.path().join("src");
    write_sources(&src);
    let profs = t.dir.path().join("profiles");
    std::fs::create_dir_all(&profs).unwrap();
    let r = profs.join("r");
    let n = profs.join("n");
    let (rs, ns) = (r.to_str().unwrap(), n.to_str().unwrap());

    // rix builds and installs first; Nix installs the same into its profile.
    ok(rix(
        &t,
        &src,
        &[
            "profile",
            "install",
            "--profile",
            rs,
            ".#hello",
            ".#greeter",
        ],
    ));
    let Some(o) = nix(
        &t,
        &src,
        &[
            "profile",
            "install",
            "--profile",
            ns,
            ".#hello",
            ".#greeter",
        ],
    ) else {
        return;
    };
    ok(o);
    assert_eq!(link(&r), Path::new("r-1-link"));
    assert_eq!(link(&profs.join("r-1-link")), link(&profs.join("n-1-link")));
    assert_eq!(
        std::fs::read(r.join("manifest.json")).unwrap(),
        std::fs::read(n.join("manifest.json")).unwrap()
    );
    assert_eq!(link(&r.join("bin/hello")), link(&n.join("bin/hello")));

    // `list` and `list --json`, each tool on the other's profile.
    let list = ok(nix(&t, &src, &["profile", "list", "--profile", rs]).unwrap());
    assert!(
        list.contains("Flake attribute:    packages.x86_64-linux.hello"),
        "{list}"
    );
    assert_eq!(
        ok(rix(&t, &src, &["profile", "list", "--profile", ns])),
        list
    );
    assert_eq!(
        ok(rix(
            &t,
            &src,
            &["profile", "list", "--profile", rs, "--json"]
        )),
        ok(nix(&t, &src, &["profile", "list", "--profile", rs, "--json"]).unwrap())
    );

    // Installing it again changes nothing, with Nix's warning.
    let again = rix(
        &t,
        &src,
        &["profile", "install", "--profile", rs, ".#hello"],
    );
    assert!(
        stderr(&again).contains("warning: 'hello' is already installed"),
        "{}",
        stderr(&again)
    );
    ok(again);
    assert_eq!(generations(&profs, "r"), ["r-1-link"]);

    // Each removes from the other's profile.
    ok(nix(&t, &src, &["profile", "remove", "--profile", rs, "hello"]).unwrap());
    let removed = rix(&t, &src, &["profile", "remove", "--profile", ns, "hello"]);
    assert!(
        stderr(&removed)
            .ends_with("#packages.x86_64-linux.hello'\nremoved 1 packages, kept 1 packages\n"),
        "{}",
        stderr(&removed)
    );
    ok(removed);
    assert_eq!(link(&profs.join("r-2-link")), link(&profs.join("n-2-link")));

    // A `--file` attribute with a priority.
    ok(rix(
        &t,
        &src,
        &[
            "profile",
            "install",
            "--profile",
            rs,
            "-f",
            "./pkgs.nix",
            "tool",
            "--priority",
            "4",
        ],
    ));
    ok(nix(
        &t,
        &src,
        &[
            "profile",
            "install",
            "--profile",
            ns,
            "-f",
            "./pkgs.nix",
            "tool",
            "--priority",
            "4",
        ],
    )
    .unwrap());
    assert_eq!(link(&profs.join("r-3-link")), link(&profs.join("n-3-link")));
    assert_eq!(
        std::fs::read(r.join("manifest.json")).unwrap(),
        std::fs::read(n.join("manifest.json")).unwrap()
    );

    // `history` and `diff-closures`.
    assert_eq!(
        ok(rix(&t, &src, &["profile", "history", "--profile", rs])),
        ok(nix(&t, &src, &["profile", "history", "--profile", rs]).unwrap())
    );
    assert_eq!(
        ok(rix(
            &t,
            &src,
            &["profile", "diff-closures", "--profile", rs]
        )),
        ok(nix(&t, &src, &["profile", "diff-closures", "--profile", rs]).unwrap())
    );

    // Rollback: to the previous version, then to a given one.
    let rb = rix(&t, &src, &["profile", "rollback", "--profile", rs]);
    let nb = nix(&t, &src, &["profile", "rollback", "--profile", ns]).unwrap();
    assert_eq!(stderr(&rb), stderr(&nb));
    assert_eq!(link(&r), Path::new("r-2-link"));
    assert_eq!(link(&n), Path::new("n-2-link"));
    ok(rix(
        &t,
        &src,
        &["profile", "rollback", "--profile", ns, "--to", "3"],
    ));
    assert_eq!(link(&n), Path::new("n-3-link"));
    let missing = rix(
        &t,
        &src,
        &["profile", "rollback", "--profile", rs, "--to", "9"],
    );
    let nix_missing = nix(
        &t,
        &src,
        &["profile", "rollback", "--profile", rs, "--to", "9"],
    )
    .unwrap();
    assert!(!missing.status.success());
    assert_eq!(stderr(&missing), stderr(&nix_missing));

    // A collision at the same priority, explained as Nix explains it.
    let rc = rix(
        &t,
        &src,
        &["profile", "install", "--profile", rs, ".#hello", ".#hello2"],
    );
    let nc = nix(
        &t,
        &src,
        &["profile", "install", "--profile", ns, ".#hello", ".#hello2"],
    )
    .unwrap();
    assert!(!rc.status.success() && !nc.status.success());
    let tail = |o: &Output| {
        let s = stderr(o);
        s[s.find("error:").unwrap_or(0)..]
            .replace(ns, rs)
            .replace("n-", "r-")
    };
    assert_eq!(tail(&rc), tail(&nc));

    // wipe-history keeps the current version only.
    let rw = rix(&t, &src, &["profile", "wipe-history", "--profile", rs]);
    let nw = nix(&t, &src, &["profile", "wipe-history", "--profile", ns]).unwrap();
    ok(nw);
    assert!(
        stderr(&rw).contains("removing profile version 1"),
        "{}",
        stderr(&rw)
    );
    ok(rw);
    assert_eq!(generations(&profs, "r"), ["r-2-link"]);
    assert_eq!(generations(&profs, "n"), ["n-3-link"]);
}

#[test]
fn store_paths_and_gc_roots() {
    let t = TempStore::new();
    let work = t.dir.path().join("work");
    let profs = t.dir.path().join("profiles");
    std::fs::create_dir_all(&profs).unwrap();
    let mut paths = Vec::new();
    for (name, file) in [("foo-2.3", "bin/foo"), ("bar-1.0", "share/bar")] {
        let d = work.join(name);
        std::fs::create_dir_all(d.join(file).parent().unwrap()).unwrap();
        std::fs::write(d.join(file), name).unwrap();
        let out = ok(rix(&t, &work, &["store", "add", d.to_str().unwrap()]));
        paths.push(out.trim().to_owned());
    }
    let r = profs.join("r");
    let n = profs.join("n");
    let (rs, ns) = (r.to_str().unwrap(), n.to_str().unwrap());
    ok(rix(
        &t,
        &work,
        &["profile", "install", "--profile", rs, &paths[0]],
    ));
    ok(rix(
        &t,
        &work,
        &["profile", "install", "--profile", rs, &paths[1]],
    ));
    ok(rix(
        &t,
        &work,
        &["profile", "remove", "--profile", rs, &paths[0]],
    ));
    let Some(o) = nix(
        &t,
        &work,
        &["profile", "install", "--profile", ns, &paths[0]],
    ) else {
        return;
    };
    ok(o);
    ok(nix(
        &t,
        &work,
        &["profile", "install", "--profile", ns, &paths[1]],
    )
    .unwrap());
    ok(nix(&t, &work, &["profile", "remove", "--profile", ns, "foo"]).unwrap());
    for g in 1..=3 {
        assert_eq!(
            link(&profs.join(format!("r-{g}-link"))),
            link(&profs.join(format!("n-{g}-link")))
        );
    }
    assert_eq!(
        ok(rix(&t, &work, &["profile", "list", "--profile", rs])),
        ok(nix(&t, &work, &["profile", "list", "--profile", ns]).unwrap())
    );
    assert_eq!(
        ok(rix(&t, &work, &["profile", "history", "--profile", ns])),
        ok(nix(&t, &work, &["profile", "history", "--profile", ns]).unwrap())
    );

    // Every generation, and what it refers to, survives both collectors.
    let gen_paths: Vec<PathBuf> = (1..=3)
        .map(|g| link(&profs.join(format!("r-{g}-link"))))
        .collect();
    ok(rix(&t, &work, &["store", "gc"]));
    ok(nix_tool("nix-store", &t, &work, &["--gc"]).unwrap());
    for p in gen_paths
        .iter()
        .chain(paths.iter().map(PathBuf::from).collect::<Vec<_>>().iter())
    {
        assert!(p.exists(), "{} was collected", p.display());
    }
    // Without its older generations, the first profile path goes.
    ok(rix(
        &t,
        &work,
        &["profile", "wipe-history", "--profile", rs],
    ));
    ok(nix(&t, &work, &["profile", "wipe-history", "--profile", ns]).unwrap());
    ok(rix(&t, &work, &["store", "gc"]));
    assert!(!gen_paths[0].exists());
    assert!(gen_paths[2].exists());
    assert!(Path::new(&paths[1]).exists());
    assert!(!Path::new(&paths[0]).exists());

    // A `nix-env` profile (`manifest.nix`) read, and converted on install.
    for e in ["e", "f"] {
        let p = profs.join(e);
        ok(nix_tool(
            "nix-env",
            &t,
            &work,
            &["-p", p.to_str().unwrap(), "-i", &paths[1]],
        )
        .unwrap());
    }
    let (e, f) = (profs.join("e"), profs.join("f"));
    let (es, fs) = (e.to_str().unwrap(), f.to_str().unwrap());
    assert_eq!(
        ok(rix(&t, &work, &["profile", "list", "--profile", es])),
        ok(nix(&t, &work, &["profile", "list", "--profile", es]).unwrap())
    );
    ok(rix(
        &t,
        &work,
        &["profile", "install", "--profile", es, &paths[1]],
    ));
    ok(nix(
        &t,
        &work,
        &["profile", "install", "--profile", fs, &paths[1]],
    )
    .unwrap());
    assert_eq!(link(&profs.join("e-2-link")), link(&profs.join("f-2-link")));
}

/// `builtin:buildenv` (what `nix-env` builds user environments with): rix
/// builds it, and Nix's `--check` rebuilds it and finds the same output.
#[test]
fn builtin_buildenv_as_nix() {
    let t = TempStore::new();
    let work = t.dir.path().join("work");
    for (pkg, file, text) in [
        ("a", "bin/t", "a"),
        ("b", "bin/t", "b"),
        ("b", "bin/u", "c"),
        ("a", "share/x/f", "1"),
        ("b", "share/y/g", "2"),
    ] {
        let p = work.join(pkg).join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::write(
        work.join("env.nix"),
        r#"let
  a = builtins.path { path = ./a; name = "a-1.0"; };
  b = builtins.path { path = ./b; name = "b-2.0"; };
in derivation {
  name = "user-environment";
  system = "builtin";
  builder = "builtin:buildenv";
  manifest = builtins.toFile "manifest.nix" "[ ]";
  derivations = [ "true" 5 1 a "true" 4 1 b "false" 3 1 a ];
}
"#,
    )
    .unwrap();
    let out = ok(rix(
        &t,
        &work,
        &["build", "-f", "env.nix", "--no-link", "--print-out-paths"],
    ));
    let out = PathBuf::from(out.trim());
    assert!(link(&out.join("bin/t"))
        .to_string_lossy()
        .ends_with("-b-2.0/bin/t"));
    assert!(link(&out.join("share/x"))
        .to_string_lossy()
        .ends_with("-a-1.0/share/x"));
    assert!(link(&out.join("manifest.nix"))
        .to_string_lossy()
        .ends_with("-manifest.nix"));
    let Some(drv) = nix_tool("nix-instantiate", &t, &work, &["env.nix"]) else {
        return;
    };
    let drv = ok(drv);
    ok(nix_tool(
        "nix-store",
        &t,
        &work,
        &["--realise", "--check", drv.trim()],
    )
    .unwrap());
}

/// Without `--profile`: the default profile where Nix puts it (root's
/// under the state directory, with `profiles/default`; others' under
/// `$XDG_STATE_HOME/nix/profiles`), reached through `~/.nix-profile`.
#[test]
fn default_profile_as_nix() {
    let t = TempStore::new();
    let work = t.dir.path().join("work");
    let home = t.dir.path().to_path_buf();
    let env = [
        ("NIX_STATE_DIR", home.join("nixstate")),
        ("XDG_STATE_HOME", home.join("xdg-state")),
    ];
    let mut paths = Vec::new();
    for name in ["foo-1.0", "bar-2.0"] {
        let d = work.join(name).join("bin");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), name).unwrap();
        let out = ok(rix(
            &t,
            &work,
            &["store", "add", work.join(name).to_str().unwrap()],
        ));
        paths.push(out.trim().to_owned());
    }
    ok(rix_env(&t, &work, &["profile", "install", &paths[0]], &env));
    let root = nix::unistd::geteuid().is_root();
    let profile = if root {
        home.join("nixstate/profiles/per-user/root/profile")
    } else {
        home.join("xdg-state/nix/profiles/profile")
    };
    assert_eq!(link(&home.join(".nix-profile")), profile);
    if root {
        assert_eq!(link(&home.join("nixstate/profiles/default")), profile);
    }
    assert_eq!(link(&profile), Path::new("profile-1-link"));
    let Some(o) = nix_tool_env("nix", &t, &work, &["profile", "install", &paths[1]], &env) else {
        return;
    };
    ok(o);
    assert_eq!(link(&profile), Path::new("profile-2-link"));
    assert_eq!(
        ok(rix_env(&t, &work, &["profile", "list"], &env)),
        ok(nix_tool_env("nix", &t, &work, &["profile", "list"], &env).unwrap())
    );
}

/// `upgrade` of a flake element after its flake changed, and of an element
/// not from a flake.
#[test]
fn upgrade_as_nix() {
    let t = TempStore::new();
    let src = t.dir.path().join("src");
    write_sources(&src);
    let profs = t.dir.path().join("profiles");
    std::fs::create_dir_all(&profs).unwrap();
    let (r, n) = (profs.join("r"), profs.join("n"));
    let (rs, ns) = (r.to_str().unwrap(), n.to_str().unwrap());
    ok(rix(
        &t,
        &src,
        &["profile", "install", "--profile", rs, ".#hello"],
    ));
    let Some(o) = nix(
        &t,
        &src,
        &["profile", "install", "--profile", ns, ".#hello"],
    ) else {
        return;
    };
    ok(o);
    let flake = std::fs::read_to_string(src.join("flake.nix")).unwrap();
    std::fs::write(
        src.join("flake.nix"),
        flake.replace("echo hello\"", "echo hello again\""),
    )
    .unwrap();
    let ru = rix(&t, &src, &["profile", "upgrade", "--profile", rs, "hello"]);
    let nu = nix(&t, &src, &["profile", "upgrade", "--profile", ns, "hello"]).unwrap();
    // (rix built the new package; Nix found it built.)
    assert_eq!(stderr(&ru).lines().next(), stderr(&nu).lines().next());
    ok(ru);
    assert_eq!(link(&profs.join("r-2-link")), link(&profs.join("n-2-link")));
    assert_eq!(
        std::fs::read(r.join("manifest.json")).unwrap(),
        std::fs::read(n.join("manifest.json")).unwrap()
    );
}
