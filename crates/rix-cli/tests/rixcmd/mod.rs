//! Running the built `rix` binary and real Nix tools in CLI tests.
#![allow(dead_code, unused_imports)] // each test crate uses a part

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

#[allow(unused_imports)]
pub use rix_testutil::{nix, TempStore};

/// The Nix configuration differential tests run Nix with.
pub const NIX_CONFIG: &str = "experimental-features = nix-command\nsandbox = false\nsubstituters =";

/// Runs `rix ARGS` with `stdin` as standard input.
pub fn rix_with(args: &[&str], stdin: &[u8]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_rix")).args(args), stdin)
}

/// Runs `rix ARGS` with empty standard input.
pub fn rix(args: &[&str]) -> Output {
    rix_with(args, b"")
}

/// Runs `rix --store URL ARGS`.
pub fn rix_in(store: &TempStore, args: &[&str], stdin: &[u8]) -> Output {
    let url = store.url();
    let mut all = vec!["--store", url.as_str()];
    all.extend_from_slice(args);
    rix_with(&all, stdin)
}

/// Runs a Nix tool (with [`NIX_CONFIG`]) with `stdin` as standard input.
pub fn nix_with(tool: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run(
        Command::new(tool).args(args).env("NIX_CONFIG", NIX_CONFIG),
        stdin,
    )
}

/// Runs a Nix tool against `store` (`--store URL ARGS`).
pub fn nix_in(store: &TempStore, tool: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let url = store.url();
    let mut all = vec!["--store", url.as_str()];
    all.extend_from_slice(args);
    nix_with(tool, &all, stdin)
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

/// Standard output of a command that must succeed.
#[track_caller]
pub fn ok(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "command failed ({}):\nstderr: {}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// Standard output of a command that must succeed, as text.
#[track_caller]
pub fn ok_str(out: Output) -> String {
    String::from_utf8(ok(out)).expect("UTF-8 output")
}

/// Standard error of a command that must fail cleanly (exit 1: an error, not a
/// panic, which exits 101, nor a usage error, which exits 2).
#[track_caller]
pub fn fails(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean failure, got {}:\nstderr: {stderr}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    stderr
}

/// A tree with every kind of NAR node: files (empty, executable, non-UTF-8
/// contents), symlinks (relative, absolute, dangling), empty and nested
/// directories, names that sort differently as bytes and as text.
pub fn sample_tree(dir: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    std::fs::create_dir_all(dir.join("sub/deeper/deepest")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("a"), "hello\n").unwrap();
    std::fs::write(dir.join("Z"), "upper\n").unwrap();
    std::fs::write(dir.join("empty-file"), "").unwrap();
    std::fs::write(dir.join("bin"), b"\x7fELF\x00\xff\xfe binary").unwrap();
    std::fs::set_permissions(dir.join("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("sub/deeper/deepest/f"), "x".repeat(10_000)).unwrap();
    std::fs::write(dir.join("sub/é"), "accent").unwrap();
    symlink("../a", dir.join("sub/rel")).unwrap();
    symlink("/nonexistent/target", dir.join("dangling")).unwrap();
}

/// Runs `rix --store URL ARGS`.
pub fn rix_url(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut all = vec!["--store", url];
    all.extend_from_slice(args);
    rix_with(&all, stdin)
}

/// Runs a Nix tool with `--store URL ARGS`.
pub fn nix_url(tool: &Path, url: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut all = vec!["--store", url];
    all.extend_from_slice(args);
    nix_with(tool, &all, stdin)
}

/// `rix daemon` serving `store` on a socket beside it (killed when dropped).
pub struct RixDaemon {
    pub sock: std::path::PathBuf,
    store_dir: std::path::PathBuf,
    child: std::process::Child,
}

impl RixDaemon {
    /// Starts the daemon (builds without the sandbox, no substituters).
    pub fn start(store: &TempStore) -> RixDaemon {
        let sock = store.dir.path().join("daemon.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_rix"))
            .args(["--store", &store.url(), "daemon", "--socket"])
            .arg(&sock)
            .env("RIX_CONFIG", "sandbox = false\nsubstituters =")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rix_testutil::wait_for(
            "the daemon's socket",
            std::time::Duration::from_secs(30),
            || sock.exists().then_some(()),
        );
        RixDaemon {
            sock,
            store_dir: store.store_dir(),
            child,
        }
    }

    /// The client's store URL (the store directory the daemon's).
    pub fn url(&self) -> String {
        format!(
            "unix://{}?store={}",
            self.sock.display(),
            self.store_dir.display()
        )
    }
}

impl Drop for RixDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
