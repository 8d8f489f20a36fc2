//! Substitution under hostile conditions. `kill -9` of a `rix` process in the
//! middle of a substitution (a slow HTTP cache makes that moment certain): its
//! temporary stays, `rix store verify` calls it a leftover and succeeds, and
//! the next run of the same copy removes it. A repair from a cache whose NAR
//! is bigger than announced stops one byte past its NarSize.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rix_testutil::http::{DirServer, ServeOptions};
use rix_testutil::{wait_for, TempStore};

/// Standard output of a command that must succeed.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn rix_cmd(t: &TempStore) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rix"));
    c.arg("--store")
        .arg(t.url())
        .args(["--option", "substituters", ""])
        .env("XDG_CACHE_HOME", t.dir.path().join("xdg-cache"));
    c
}

fn rix(t: &TempStore, args: &[&str]) -> Output {
    rix_cmd(t).args(args).output().expect("run rix")
}

/// Names in the store directory that are rix temporaries.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-rix-tmp-"))
        .collect()
}

#[test]
fn killed_substitution_leaves_a_leftover_the_next_run_removes() {
    let t = TempStore::new();
    let file = t.dir.path().join("big");
    std::fs::write(
        &file,
        (0..8_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let path = ok(rix(&t, &["store", "add", file.to_str().unwrap()]))
        .trim()
        .to_owned();
    let cache = t.dir.path().join("cache");
    let to = format!(
        "file://{}?compression=none&store={}",
        cache.display(),
        t.store_dir().display()
    );
    ok(rix(&t, &["copy", "--to", &to, &path]));
    ok(rix(&t, &["store", "delete", &path]));

    // 64 KiB every 50 ms: the 8 MB NAR would take seconds.
    let slow = DirServer::start(
        &cache,
        ServeOptions {
            pause: Some(Duration::from_millis(50)),
            ..ServeOptions::default()
        },
    );
    let mut child = rix_cmd(&t)
        .args(["copy", "--no-check-sigs", "--from", &slow.url(), &path])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store_dir = t.store_dir();
    let tmp = wait_for("the download to start", Duration::from_secs(60), || {
        temporaries(&store_dir).pop()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(store_dir.join(&tmp).exists());

    // A leftover, not damage.
    let out = rix(&t, &["store", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "verify failed: {err}");
    assert!(err.contains("killed mid-write"), "{err}");

    let fast = DirServer::start(&cache, ServeOptions::default());
    ok(rix(
        &t,
        &["copy", "--no-check-sigs", "--from", &fast.url(), &path],
    ));
    assert!(Path::new(&path).exists());
    assert_eq!(temporaries(&store_dir), Vec::<String>::new());
    let out = rix(&t, &["store", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && !err.contains("killed mid-write"),
        "{err}"
    );
}

/// `rix store verify --repair` copies from a cache under the same bounds as
/// substitution: a NAR bigger than its narinfo's NarSize stops one byte past it.
#[test]
fn repair_from_a_cache_stops_at_the_nar_size() {
    use std::io::Write;
    let t = TempStore::new();
    let file = t.dir.path().join("f");
    std::fs::write(&file, "original contents").unwrap();
    let path = ok(rix(&t, &["store", "add", file.to_str().unwrap()]))
        .trim()
        .to_owned();
    let cache = t.dir.path().join("cache");
    let to = format!(
        "file://{}?compression=none&store={}",
        cache.display(),
        t.store_dir().display()
    );
    ok(rix(&t, &["copy", "--to", &to, &path]));
    // The narinfo now points at a NAR announcing a 2 GiB file, 64 MiB of it present.
    let mut nar = Vec::new();
    for s in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"regular",
        b"contents",
    ] {
        nar.extend_from_slice(&(s.len() as u64).to_le_bytes());
        nar.extend_from_slice(s);
        nar.resize(nar.len().next_multiple_of(8), 0);
    }
    nar.extend_from_slice(&(2u64 << 30).to_le_bytes());
    let mut bomb =
        std::io::BufWriter::new(std::fs::File::create(cache.join("nar/bomb.nar")).unwrap());
    bomb.write_all(&nar).unwrap();
    for _ in 0..64 {
        bomb.write_all(&[0u8; 1 << 20]).unwrap();
    }
    bomb.flush().unwrap();
    let hash = Path::new(&path).file_name().unwrap().to_string_lossy()[..32].to_owned();
    let narinfo = cache.join(format!("{hash}.narinfo"));
    let text: String = std::fs::read_to_string(&narinfo)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("FileSize:") && !l.starts_with("FileHash:") && !l.starts_with("Sig:")
        })
        .map(|l| {
            if l.starts_with("URL:") {
                "URL: nar/bomb.nar".to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&narinfo, text).unwrap();
    let nar_size: u64 = std::fs::read_to_string(&narinfo)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("NarSize: "))
        .unwrap()
        .parse()
        .unwrap();
    // Damage the path.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, "damaged contents!").unwrap();

    let url = format!("file://{}", cache.display());
    let out = rix_cmd(&t)
        .args([
            "--option",
            "substituters",
            &url,
            "--option",
            "require-sigs",
            "false",
        ])
        .args(["store", "verify", "--check-contents", "--repair"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "the NAR is bigger than the {nar_size} bytes announced (stopped after {} bytes)",
            nar_size + 1
        )),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
