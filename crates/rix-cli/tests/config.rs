//! Configuration as a Nix user has it: Nix's files in Nix's order, rix's on
//! top, `--option` last; `rix config show` says where each value came from.
//! Nix 2.26's `nix config show` reads the same files and must agree on the
//! settings both know.

use std::process::Command;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "etc-nix/nix.conf",
            "max-jobs = 7\nbuild-cores = 3\nbuild-users-group = nixbld\nno-such-setting = 1\ntimeout = 11\n",
        );
        write("xdg-dirs/nix/nix.conf", "max-jobs = 6\nkeep-going = true\n");
        write("xdg-home/nix/nix.conf", "max-jobs = 5\n");
        write("etc-rix/rix.conf", "timeout = 9\n");
        Env { dir }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_owned()
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.env("NIX_CONF_DIR", self.path("etc-nix"))
            .env("XDG_CONFIG_DIRS", self.path("xdg-dirs"))
            .env("XDG_CONFIG_HOME", self.path("xdg-home"))
            .env("RIX_CONF_DIR", self.path("etc-rix"))
            .env("HOME", self.dir.path())
            .env_remove("NIX_USER_CONF_FILES")
            .env_remove("NIX_CONFIG")
            .env_remove("RIX_CONFIG");
    }

    fn rix(&self, args: &[&str], extra_env: &[(&str, &str)]) -> (String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rix"));
        self.apply(&mut cmd);
        cmd.envs(extra_env.iter().copied()).args(args);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn nix_files_then_rix_files_then_options() {
    let env = Env::new();
    let (out, err) = env.rix(&["config", "show", "--origins"], &[]);
    let nix_conf = format!("{}/nix.conf", env.path("etc-nix"));
    // XDG_CONFIG_HOME wins over XDG_CONFIG_DIRS, both over /etc/nix.
    assert_eq!(
        line_of(&out, "max-jobs"),
        format!("max-jobs = 5\t# {}/nix/nix.conf", env.path("xdg-home"))
    );
    assert_eq!(
        line_of(&out, "keep-going"),
        format!("keep-going = true\t# {}/nix/nix.conf", env.path("xdg-dirs"))
    );
    // Nix's old name sets the setting it stands for.
    assert_eq!(line_of(&out, "cores"), format!("cores = 3\t# {nix_conf}"));
    // rix's own files come after Nix's.
    assert_eq!(
        line_of(&out, "timeout"),
        format!("timeout = 9\t# {}/rix.conf", env.path("etc-rix"))
    );
    assert_eq!(line_of(&out, "fallback"), "fallback = false\t# default");
    // Only what neither Nix nor rix knows is warned about, once.
    assert_eq!(
        err.matches("warning: unknown setting 'no-such-setting'")
            .count(),
        1,
        "{err}"
    );
    assert!(!err.contains("build-users-group"), "{err}");

    // NIX_CONFIG after Nix's files, RIX_CONFIG after rix's, --option last.
    let (out, _) = env.rix(
        &["config", "show", "--origins"],
        &[
            ("NIX_CONFIG", "max-jobs = 4\ntimeout = 2"),
            ("RIX_CONFIG", "fallback = true"),
        ],
    );
    assert_eq!(line_of(&out, "max-jobs"), "max-jobs = 4\t# NIX_CONFIG");
    assert_eq!(
        line_of(&out, "timeout"),
        format!("timeout = 9\t# {}/rix.conf", env.path("etc-rix"))
    );
    assert_eq!(line_of(&out, "fallback"), "fallback = true\t# RIX_CONFIG");
    let (out, _) = env.rix(
        &["--option", "max-jobs", "3", "config", "show", "max-jobs"],
        &[],
    );
    assert_eq!(out, "3\n");

    // NIX_USER_CONF_FILES replaces the XDG files.
    let (out, _) = env.rix(
        &["config", "show", "max-jobs"],
        &[(
            "NIX_USER_CONF_FILES",
            &format!("{}/nix/nix.conf", env.path("xdg-dirs")),
        )],
    );
    assert_eq!(out, "6\n");

    let (json, _) = env.rix(&["config", "show", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["max-jobs"]["value"], "5");
    assert_eq!(v["max-jobs"]["defaultValue"], "1");
    assert_eq!(v["fallback"]["origin"], "default");
}

#[test]
fn nix_reads_the_same_files() {
    let Some(mut nix) = rix_testutil::nix_current("nix") else {
        return;
    };
    let env = Env::new();
    env.apply(&mut nix);
    let out = nix
        .args([
            "--extra-experimental-features",
            "nix-command",
            "config",
            "show",
        ])
        .output()
        .unwrap();
    let nix_out = String::from_utf8(out.stdout).unwrap();
    let (rix_out, _) = env.rix(&["config", "show"], &[]);
    for name in ["max-jobs", "cores", "keep-going", "fallback"] {
        assert_eq!(line_of(&rix_out, name), line_of(&nix_out, name), "{name}");
    }
    // rix's own file is rix's alone: Nix keeps /etc/nix's value.
    assert_eq!(line_of(&nix_out, "timeout"), "timeout = 11");
}
