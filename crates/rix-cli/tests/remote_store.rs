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
        rix(&back, &["copy", "--no-check-sigs", "--from", &u, &path]);
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
        rix(&back, &["copy", "--no-check-sigs", "--from", &u, &path]);
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

/// `BuildDerivation` over `ssh://` (the request Nix's build hook sends for a
/// derivation whose `.drv` is not on the machine): `rix store serve --write`
/// builds it and registers its output with the derivation as deriver; the
/// output comes back with `copy --from`.
#[test]
fn build_derivation_on_a_rix_machine() {
    use rix_formats::derivation::{Derivation, DerivationOutput};
    use rix_formats::serve_protocol::BuildOptions;
    use rix_formats::worker_protocol::BuildStatus;
    use rix_formats::StoreDir;

    let dir = tempfile::tempdir().unwrap();
    let machine = dir.path().join("machine");
    let store_dir = StoreDir::default();
    let mut drv = Derivation {
        name: "remote-hello".into(),
        system: b"x86_64-linux".to_vec(),
        builder: b"/bin/sh".to_vec(),
        args: vec![b"-c".to_vec(), b"echo built remotely > $out".to_vec()],
        ..Derivation::default()
    };
    drv.outputs.insert("out".into(), DerivationOutput::Deferred);
    drv.env.insert(b"out".to_vec(), Vec::new());
    drv.env.insert(b"name".to_vec(), b"remote-hello".to_vec());
    drv.env.insert(b"system".to_vec(), b"x86_64-linux".to_vec());
    drv.env.insert(b"builder".to_vec(), b"/bin/sh".to_vec());
    let no_inputs = |_: &rix_formats::StorePath| -> Result<
        rix_formats::derivation::DrvHash,
        rix_formats::derivation::hashing::LookupError,
    > { Err("no inputs".into()) };
    drv.fill_in_output_paths(&store_dir, no_inputs).unwrap();
    let drv_path = drv.drv_path(&store_dir).unwrap();
    let out = match &drv.outputs["out"] {
        DerivationOutput::InputAddressed { path } => path.clone(),
        o => panic!("{o:?}"),
    };
    let config = rix_remote::ServeStoreConfig {
        remote_program: vec![RIX.to_owned(), "store".into(), "serve".into()],
        remote_store: Some(format!("local?root={}", machine.display())),
        max_connections: 1,
        ..Default::default()
    };
    std::env::set_var("RIX_CONFIG", "sandbox = false\nsubstituters =");
    let store = rix_remote::ServeStore::open("localhost", config, store_dir.clone()).unwrap();
    let result = store
        .build_derivation(&drv_path, &drv, BuildOptions::default())
        .unwrap();
    assert_eq!(result.status, BuildStatus::Built, "{}", result.error_msg);
    assert_eq!(result.built_outputs["out"].out_path, out);
    // Built once: asked again, the machine has it.
    let again = store
        .build_derivation(&drv_path, &drv, BuildOptions::default())
        .unwrap();
    assert_eq!(again.status, BuildStatus::AlreadyValid);
    let info = rix_store::store_api::Store::path_info(&store, &out).unwrap();
    assert_eq!(info.deriver.as_ref(), Some(&drv_path));
    let printed = store_dir.display(&out);
    let back = dir.path().join("back");
    let url = url("ssh", &format!("{RIX} store serve"), &machine);
    rix(
        &back,
        &["copy", "--no-check-sigs", "--from", &url, &printed],
    );
    let real = back.join(printed.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(real).unwrap(), "built remotely\n");
}
