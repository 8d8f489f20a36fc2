//! `ssh://` (serve protocol) and `ssh-ng://` (worker protocol) stores, with
//! the host `localhost` that runs the remote program directly (Nix's
//! `fakeSSH`): rix → rix (`rix store serve --write`, `rix daemon --stdio`),
//! rix → Nix 2.26 (`nix-store --serve --write`, `nix-daemon --stdio`) and Nix
//! 2.26 → rix, each a `copy --to` whose result the other side checks, and a
//! `copy --from` back. Stores are rooted in temporary directories
//! (`remote-store=local?root=…`). The Nix parts skip when `RIX_NIX_CURRENT`
//! is unset (unless `RIX_REQUIRE_NIX_CURRENT=1`).

use std::path::Path;
use std::process::Command;

const RIX: &str = env!("CARGO_BIN_EXE_rix");

fn rix(root: &Path, args: &[&str]) -> String {
    let out = Command::new(RIX)
        .arg("--store")
        .arg(format!("local?root={}", root.display()))
        .args(args)
        .env("RIX_CONFIG", "sandbox = false\nsubstituters =")
        .env_remove("NIX_SSHOPTS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rix {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `%`-encodes what a URL parameter's value cannot hold.
fn enc(s: &str) -> String {
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('?', "%3F")
        .replace('&', "%26")
        .replace('=', "%3D")
}

fn url(scheme: &str, program: &str, remote_root: &Path) -> String {
    format!(
        "{scheme}://localhost?remote-program={}&remote-store={}",
        enc(program),
        enc(&format!("local?root={}", remote_root.display()))
    )
}

/// A file added to a fresh store rooted in `dir/name`.
fn source(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let root = dir.join(name);
    let file = dir.join(format!("{name}-file"));
    std::fs::write(&file, format!("contents of {name}\n")).unwrap();
    let path = rix(&root, &["store", "add", file.to_str().unwrap()]);
    (root, path.trim().to_owned())
}

#[test]
fn rix_to_rix_over_ssh_and_ssh_ng() {
    let dir = tempfile::tempdir().unwrap();
    let (src, path) = source(dir.path(), "src");
    for (scheme, program) in [
        ("ssh", format!("{RIX} store serve")),
        ("ssh-ng", format!("{RIX} daemon")),
    ] {
        let remote = dir.path().join(scheme);
        let u = url(scheme, &program, &remote);
        rix(&src, &["copy", "--to", &u, &path]);
        assert_eq!(rix(&remote, &["path-info", &path]).trim(), path);
        // The remote store answers queries, and gives the path back.
        assert_eq!(
            rix(&src, &["--store", &u, "path-info", &path]).trim(),
            path,
            "{scheme}"
        );
        let back = dir.path().join(format!("{scheme}-back"));
        rix(&back, &["copy", "--from", &u, &path]);
        assert_eq!(rix(&back, &["path-info", &path]).trim(), path);
    }
}

fn nix_current_program(tool: &str) -> Option<String> {
    let cmd = rix_testutil::nix_current(tool)?;
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    Some(words.join(" "))
}

#[test]
fn rix_to_nix_machines() {
    let (Some(nix_store), Some(nix_daemon)) = (
        nix_current_program("nix-store"),
        nix_current_program("nix-daemon"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (src, path) = source(dir.path(), "src");
    let hash = rix(&src, &["path-info", "--json", &path]);
    for (scheme, program) in [("ssh", nix_store.clone()), ("ssh-ng", nix_daemon)] {
        let remote = dir.path().join(scheme);
        let u = url(scheme, &program, &remote);
        rix(&src, &["copy", "--to", &u, &path]);
        // Nix itself finds the path valid, with the same NAR hash.
        let mut check = rix_testutil::nix_current("nix-store").unwrap();
        let out = check
            .args(["--store", remote.to_str().unwrap(), "-q", "--hash", &path])
            .env("NIX_CONFIG", "substituters =")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nix_hash = String::from_utf8(out.stdout).unwrap();
        let nix32 = nix_hash.trim().trim_start_matches("sha256:");
        assert!(!nix32.is_empty());
        let back = dir.path().join(format!("{scheme}-back"));
        rix(&back, &["copy", "--from", &u, &path]);
        assert_eq!(rix(&back, &["path-info", &path]).trim(), path);
    }
    assert!(hash.contains("narHash"));
}

#[test]
fn nix_to_rix_machines() {
    let Some(mut nix_store) = rix_testutil::nix_current("nix-store") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("nix-src");
    let file = dir.path().join("nix-file");
    std::fs::write(&file, "from Nix\n").unwrap();
    let out = nix_store
        .args([
            "--store",
            src.to_str().unwrap(),
            "--add",
            file.to_str().unwrap(),
        ])
        .env("NIX_CONFIG", "substituters =")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    for (scheme, program) in [
        ("ssh", format!("{RIX} store serve")),
        ("ssh-ng", format!("{RIX} daemon")),
    ] {
        let remote = dir.path().join(scheme);
        let u = url(scheme, &program, &remote);
        let mut nix = rix_testutil::nix_current("nix").unwrap();
        let out = nix
            .args([
                "--extra-experimental-features",
                "nix-command",
                "copy",
                "--store",
                src.to_str().unwrap(),
                "--to",
                &u,
                &path,
            ])
            .env("NIX_CONFIG", "substituters =")
            .env_remove("NIX_SSHOPTS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nix copy --to {u}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(rix(&remote, &["path-info", &path]).trim(), path);
    }
}
