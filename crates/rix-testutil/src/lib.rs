//! Test support: the real Nix as an oracle for differential tests.
//!
//! Differential tests call [`nix`] to get the path of a Nix tool. When Nix is
//! absent the test is skipped (it prints why and returns), unless
//! `RIX_REQUIRE_NIX=1` is set, as `.ci/run` does: then a missing Nix fails.

pub mod http;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of the Nix tool `name` (`nix-store`, `nix-hash`, `nix-instantiate`, ...),
/// or `None` when Nix is not installed and `RIX_REQUIRE_NIX` is not set.
///
/// # Panics
/// When the tool is missing and `RIX_REQUIRE_NIX=1`.
pub fn nix(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("RIX_REQUIRE_NIX").as_deref() == Ok("1") {
            panic!("{name} not found on PATH but RIX_REQUIRE_NIX=1: install nix-bin");
        }
        eprintln!("skipping: {name} not found (install nix-bin, or set RIX_REQUIRE_NIX=1 to fail)");
    }
    found
}

/// A command running the current Nix's tool `name` (Nix 2.26: `nix-store`,
/// `nix-daemon`, `nix`, ...) through the launcher named by `RIX_NIX_CURRENT`
/// (`.ci/run` sets it when the launcher is there), or `None` when that variable
/// is unset. Arguments follow `name`.
///
/// # Panics
/// When `RIX_NIX_CURRENT` is unset and `RIX_REQUIRE_NIX_CURRENT=1`.
pub fn nix_current(name: &str) -> Option<Command> {
    match std::env::var_os("RIX_NIX_CURRENT") {
        Some(launcher) => {
            let mut cmd = Command::new(launcher);
            cmd.arg(name);
            Some(cmd)
        }
        None => {
            if std::env::var("RIX_REQUIRE_NIX_CURRENT").as_deref() == Ok("1") {
                panic!("RIX_NIX_CURRENT is not set but RIX_REQUIRE_NIX_CURRENT=1: point it at a Nix 2.26 launcher");
            }
            eprintln!("skipping: RIX_NIX_CURRENT not set (the current Nix's launcher)");
            None
        }
    }
}

/// A throw-away Nix store in a temporary directory, addressed with a
/// `local?store=...&state=...&log=...` URL so that neither Nix nor rix needs
/// privileges. Paths in it hash with `<tmp>/store` as their store directory.
pub struct TempStore {
    pub dir: tempfile::TempDir,
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rix-test-")
            .tempdir()
            .unwrap();
        // Nix, running as root, builds as nixbld users who need to traverse this.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The store URL both Nix and rix accept.
    pub fn url(&self) -> String {
        let d = self.dir.path().display();
        format!("local?store={d}/store&state={d}/state&log={d}/log")
    }

    /// Runs a Nix tool against this store (`--store URL` is added) and returns stdout.
    /// Panics with Nix's stderr when it fails.
    pub fn run_nix(&self, tool: &Path, args: &[&str]) -> String {
        let out = Command::new(tool)
            .arg("--store")
            .arg(self.url())
            .args(args)
            .env(
                "NIX_CONFIG",
                "experimental-features = nix-command\nsandbox = false\nsubstituters =",
            )
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

impl Default for TempStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The repository's test vectors folder, `tests/vectors/` (see its README.md).
///
/// Found from the crate under test (cargo sets `CARGO_MANIFEST_DIR` when it
/// runs a test, and every crate is at `crates/<name>`), not from where this
/// crate was compiled: two checkouts sharing a target directory share this
/// crate's compiled code, and each must read its own vectors.
fn vectors_dir() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir.join("../../tests/vectors")
}

/// Path of `tests/vectors/<rel>`, the test data kept in the repository.
///
/// # Panics
/// When that file or folder is not there: a missing vector fails the test, it
/// never skips it.
pub fn vectors(rel: &str) -> PathBuf {
    let path = vectors_dir().join(rel);
    assert!(
        path.exists(),
        "test vector {} is missing (tests/vectors/{rel})",
        path.display()
    );
    path
}

/// Files of Nix's language test suite that are symbolic links in Nix's
/// repository; the copy in tests/vectors holds them as files naming their targets.
const NIX_LANG_LINKS: &[&str] = &[
    "readDir/ldir",
    "readDir/linked",
    "symlink-resolution/foo/overlays",
    "symlink-resolution/broken",
];

/// Nix's language test suite (`tests/vectors/nix-lang`) as Nix has it: copied
/// into `<tmp>/lang`, its symbolic links restored.
///
/// # Panics
/// When the suite is not there.
pub fn nix_lang_suite() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        let meta = std::fs::symlink_metadata(from).unwrap();
        if meta.is_dir() {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                copy(&e.path(), &to.join(e.file_name()));
            }
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(from).unwrap(), to).unwrap();
        } else {
            std::fs::write(to, std::fs::read(from).unwrap()).unwrap();
        }
    }
    let from = vectors("nix-lang");
    let tmp = tempfile::tempdir().unwrap();
    let lang = tmp.path().join("lang");
    copy(&from, &lang);
    for l in NIX_LANG_LINKS {
        let p = lang.join(l);
        let is_link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        if let (false, Ok(target)) = (is_link, std::fs::read_to_string(&p)) {
            std::fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink(target.trim_end_matches('\n'), &p).unwrap();
        }
    }
    tmp
}

/// Polls `f` every 50 ms until it gives something; panics naming `what` once
/// `timeout` has passed.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh clone has its vectors: they are inside the repository, not beside it.
    #[test]
    fn vectors_live_in_the_repository() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .unwrap();
        for rel in ["", "nix-lang", "nix-libstore", "generated", "generate.sh"] {
            let path = vectors(rel).canonicalize().unwrap();
            assert!(
                path.starts_with(&repo),
                "{} is outside {}",
                path.display(),
                repo.display()
            );
        }
        assert!(repo.join("tests/vectors/README.md").is_file());
    }

    #[test]
    #[should_panic(expected = "is missing")]
    fn a_missing_vector_fails() {
        vectors("no/such/vector");
    }

    #[test]
    fn nix_lang_suite_has_its_links() {
        let tmp = nix_lang_suite();
        for l in NIX_LANG_LINKS {
            let meta = std::fs::symlink_metadata(tmp.path().join("lang").join(l)).unwrap();
            assert!(meta.file_type().is_symlink(), "{l}");
        }
    }
}
