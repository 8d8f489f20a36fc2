//! Shared helpers: chroot-style stores (logical `/nix/store`, real directory
//! under a temporary root) that Nix and rix can both use, so that a binary
//! cache made from one can fill the other.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rix_formats::store_path::StoreDir;
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_substitute::{Quiet, Substituter, SubstituterConfig};

/// A store rooted at a temporary directory: paths are `/nix/store/...`.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rix-subst-")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        self.dir.path().display().to_string()
    }

    pub fn open(&self) -> LocalStore {
        LocalStore::open(StoreLayout::rooted(self.dir.path())).unwrap()
    }

    /// Runs a Nix tool on this store with `config` appended to a quiet base config.
    pub fn nix(&self, tool: &Path, args: &[&str], config: &str) -> String {
        let out = Command::new(tool)
            .arg("--store")
            .arg(self.url())
            .args(args)
            .env(
                "NIX_CONFIG",
                format!(
                    "experimental-features = nix-command\nsubstituters =\nsandbox = true\nsandbox-paths = /bin /lib /lib64 /usr\n{config}"
                ),
            )
            .env("XDG_CACHE_HOME", self.dir.path().join("xdg-cache"))
            .output()
            .expect("run nix");
        assert!(
            out.status.success(),
            "{} {:?} failed: {}",
            tool.display(),
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

pub fn nix_store_dir() -> StoreDir {
    StoreDir::new("/nix/store").unwrap()
}

pub fn sp(s: &str) -> StorePath {
    nix_store_dir().parse(s.trim()).unwrap()
}

/// Builds a small closure with Nix: text files `a`, `b` (→ a), a directory tree,
/// and the input-addressed output `d` (→ a, b, tree) with a deriver.
pub const CLOSURE_NIX: &str = r#"
let a = builtins.toFile "a" "A";
    b = builtins.toFile "b" "B ${a}";
    tree = builtins.path { path = ./tree; name = "tree"; };
in derivation {
  name = "d"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; echo ${b} ${a} ${tree} > $out/refs; /bin/ln -s refs $out/link; i=0; while [ $i -lt 2000 ]; do echo line $i >> $out/big; i=$((i+1)); done" ];
}
"#;

/// Builds [`CLOSURE_NIX`] in `root` with Nix; returns the output path.
pub fn nix_build_closure(root: &Root, nix_build: &Path) -> String {
    let tree = root.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("file"), "hello\n").unwrap();
    std::fs::write(tree.join("sub/exe"), "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.join("sub/exe"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let expr = root.path().join("closure.nix");
    std::fs::write(&expr, CLOSURE_NIX).unwrap();
    root.nix(nix_build, &["--no-out-link", expr.to_str().unwrap()], "")
        .trim()
        .to_owned()
}

/// A substituter for `urls` with no disk cache.
pub fn substituter(urls: &[String], keys: &str, require_sigs: bool) -> Substituter {
    let config = SubstituterConfig {
        urls: urls.to_vec(),
        trusted_keys: rix_formats::signature::parse_public_keys(keys).unwrap(),
        require_sigs,
        disk_cache: None,
        ..SubstituterConfig::default()
    };
    Substituter::new(config, nix_store_dir())
}

pub fn quiet() -> &'static Quiet {
    &Quiet
}

/// `nix-store --generate-binary-cache-key`: (secret file, public key text).
pub fn nix_key(nix_store: &Path, dir: &Path, name: &str) -> (PathBuf, String) {
    let sec = dir.join(format!("{name}.sec"));
    let public = dir.join(format!("{name}.pub"));
    let st = Command::new(nix_store)
        .args(["--generate-binary-cache-key", name])
        .arg(&sec)
        .arg(&public)
        .status()
        .unwrap();
    assert!(st.success());
    (
        sec,
        std::fs::read_to_string(public).unwrap().trim().to_owned(),
    )
}
