//! `rix copy`, `rix serve` and `rix store sign` against real Nix: Nix substitutes
//! what rix wrote or serves, and accepts its signatures.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod rixcmd;
use rixcmd::{nix, ok_str as ok};

/// A store rooted at a temporary directory (paths are `/nix/store/...`).
fn root() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rix-copy-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run_nix(tool: &Path, store: &Path, args: &[&str], config: &str) -> Output {
    Command::new(tool)
        .arg("--store")
        .arg(store)
        .args(args)
        .env(
            "NIX_CONFIG",
            format!("experimental-features = nix-command\nsubstituters =\nsandbox = true\nsandbox-paths = /bin /lib /lib64 /usr\n{config}"),
        )
        .output()
        .expect("run nix")
}

fn rix(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("XDG_CACHE_HOME", store.join("xdg-cache"))
        .output()
        .expect("run rix")
}

/// Nix builds a small closure (text files, a derivation output) in `dir`.
fn nix_closure(dir: &Path) -> Option<String> {
    let nix_build = nix("nix-build")?;
    let expr = dir.join("c.nix");
    std::fs::write(
        &expr,
        r#"let a = builtins.toFile "a" "A"; b = builtins.toFile "b" "B ${a}";
in derivation { name = "d"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "echo ${b} ${a} > $out" ]; }"#,
    )
    .unwrap();
    Some(
        ok(run_nix(
            &nix_build,
            dir,
            &["--no-out-link", expr.to_str().unwrap()],
            "",
        ))
        .trim()
        .to_owned(),
    )
}

fn keys(dir: &Path) -> (String, String) {
    let sec = dir.join("key.sec");
    let out = ok(Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["key", "generate", "rix-cli-1"])
        .output()
        .unwrap());
    std::fs::write(&sec, &out).unwrap();
    let public = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["key", "public"])
        .stdin(std::fs::File::open(&sec).unwrap())
        .output()
        .unwrap();
    (
        sec.to_str().unwrap().to_owned(),
        ok(public).trim().to_owned(),
    )
}

/// Nix substitutes `out` from `url`, trusting `public`, and checks the result.
fn nix_substitutes(nix_store: &Path, url: &str, public: &str, out: &str) {
    let dst = root();
    let config = format!("substituters = {url}\ntrusted-public-keys = {public}\n");
    ok(run_nix(nix_store, dst.path(), &["-r", out], &config));
    ok(run_nix(
        nix_store,
        dst.path(),
        &["--verify", "--check-contents"],
        "",
    ));
    assert_eq!(
        ok(run_nix(nix_store, dst.path(), &["-qR", out], ""))
            .lines()
            .count(),
        3
    );
}

#[test]
fn rix_copy_to_a_file_cache_with_a_key_and_nix_substitutes() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let src = root();
    let Some(out) = nix_closure(src.path()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (sec, public) = keys(work.path());
    let cache = work.path().join("cache");
    for compression in ["zstd", "xz"] {
        let dir = cache.join(compression);
        let url = format!(
            "file://{}?compression={compression}&secret-key={sec}",
            dir.display()
        );
        ok(rix(src.path(), &["copy", "--to", &url, &out]));
        assert!(dir.join("nix-cache-info").exists());
        nix_substitutes(
            &nix_store,
            &format!("file://{}", dir.display()),
            &public,
            &out,
        );
    }
    // --from: back into an empty store, checked by Nix.
    let dst = root();
    ok(rix(
        dst.path(),
        &[
            "--option",
            "trusted-public-keys",
            &public,
            "copy",
            "--from",
            &format!("file://{}", cache.join("zstd").display()),
            &out,
        ],
    ));
    ok(run_nix(
        &nix_store,
        dst.path(),
        &["--verify", "--check-contents"],
        "",
    ));
    // An untrusted key is refused.
    let other = root();
    let res = rix(
        other.path(),
        &[
            "copy",
            "--from",
            &format!("file://{}", cache.join("zstd").display()),
            &out,
        ],
    );
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("not signed by any of the keys"));
}

#[test]
fn nix_substitutes_from_rix_serve() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let src = root();
    let Some(out) = nix_closure(src.path()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (sec, public) = keys(work.path());
    let mut server = Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(src.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--sign-key", &sec])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    nix_substitutes(&nix_store, &url, &public, &out);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn rix_store_sign_adds_signatures_nix_sees() {
    let Some(nix_cmd) = nix("nix") else { return };
    let src = root();
    let Some(out) = nix_closure(src.path()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (sec, public) = keys(work.path());
    ok(rix(src.path(), &["store", "sign", "-k", &sec, &out]));
    let json = ok(run_nix(
        &nix_cmd,
        src.path(),
        &["path-info", "--json", "--sigs", &out],
        "",
    ));
    assert!(json.contains("rix-cli-1:"), "{json}");
    // Nix checks the signature with the public key.
    let verify = run_nix(
        &nix_cmd,
        src.path(),
        &[
            "store",
            "verify",
            "--no-contents",
            "--sigs-needed",
            "1",
            &out,
        ],
        &format!("trusted-public-keys = {public}\n"),
    );
    ok(verify);
}

/// `len` bytes no compressor can shrink (xorshift), in `dir/data`.
fn incompressible(dir: &Path, len: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(dir.join("data"), data).unwrap();
}

/// Peak resident memory (VmHWM, MiB) of a process, read until it exits.
fn peak_rss_mib(child: &mut std::process::Child) -> (u64, std::process::ExitStatus) {
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (peak, status);
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                peak = peak.max(kb / 1024);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn rix_copy_to_streams_a_big_nar_in_bounded_memory() {
    const NAR_MIB: usize = 200;
    let src = root();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("big");
    incompressible(&dir, NAR_MIB << 20);
    let out = ok(rix(src.path(), &["store", "add", dir.to_str().unwrap()]));
    let out = out.trim().to_owned();
    let cache = work.path().join("cache");
    let url = format!("file://{}", cache.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(src.path())
        .args(["copy", "--to", &url, &out])
        .env("XDG_CACHE_HOME", src.path().join("xdg-cache"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (peak, status) = peak_rss_mib(&mut child);
    assert!(status.success(), "rix copy failed: {status}");
    assert!(
        peak > 0 && peak < 100,
        "copying a {NAR_MIB} MiB NAR took {peak} MiB"
    );

    // FileHash and FileSize describe the file written; nothing else is left.
    let hash_part = &out.rsplit('/').next().unwrap()[..32];
    let narinfo = std::fs::read_to_string(cache.join(format!("{hash_part}.narinfo"))).unwrap();
    let field = |name: &str| {
        narinfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    let nar = std::fs::read(cache.join(field("URL: "))).unwrap();
    assert_eq!(field("FileSize: "), nar.len().to_string());
    let file_hash = rix_formats::HashAlgo::Sha256.digest(&nar);
    assert_eq!(
        field("FileHash: "),
        format!("sha256:{}", file_hash.to_nix32())
    );
    assert_eq!(std::fs::read_dir(cache.join("nar")).unwrap().count(), 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&cache.join(field("URL: "))),
        mode(&cache.join("nix-cache-info")),
        "the NAR is as readable as the cache's other files"
    );

    // To an HTTP cache: the NAR is PUT from the spool file, in pieces.
    let server = PutServer::start();
    let spool = work.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rix"))
        .arg("--store")
        .arg(src.path())
        .args(["copy", "--to", &server.url, &out])
        .env("XDG_CACHE_HOME", src.path().join("xdg-cache"))
        .env("TMPDIR", &spool)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (peak, status) = peak_rss_mib(&mut child);
    assert!(status.success(), "rix copy --to http failed: {status}");
    assert!(
        peak > 0 && peak < 100,
        "uploading a {NAR_MIB} MiB NAR took {peak} MiB"
    );
    let files = server.files.lock().unwrap();
    let put_narinfo = String::from_utf8(files[&format!("{hash_part}.narinfo")].2.clone()).unwrap();
    assert_eq!(put_narinfo, narinfo);
    let (len, hash, _) = &files[&field("URL: ")];
    assert_eq!((*len, *hash), (nar.len() as u64, file_hash));
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    drop(files);

    // Real Nix substitutes it (and checks the NAR hash).
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let dst = root();
    let config = format!("substituters = {url}\nrequire-sigs = false\n");
    ok(run_nix(&nix_store, dst.path(), &["-r", &out], &config));
    ok(run_nix(
        &nix_store,
        dst.path(),
        &["--verify-path", &out],
        "",
    ));
}

/// Files PUT: key -> (length, SHA-256, contents if under 1 MiB).
type Files = std::sync::Mutex<std::collections::HashMap<String, (u64, rix_formats::Hash, Vec<u8>)>>;

/// A binary cache over HTTP that only takes PUTs (with a Content-Length), and
/// remembers each file's length, SHA-256 and (when small) contents.
struct PutServer {
    url: String,
    files: std::sync::Arc<Files>,
}

impl PutServer {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let shared = files.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let files = shared.clone();
                std::thread::spawn(move || Self::serve(conn.unwrap(), &files));
            }
        });
        Self { url, files }
    }

    fn serve(conn: std::net::TcpStream, files: &Files) {
        use std::io::{Read, Write};
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        loop {
            let mut request = String::new();
            if reader.read_line(&mut request).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = request.split_whitespace();
            let (method, key) = (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap()[1..].to_owned(),
            );
            let mut len = None;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                let lower = line.to_lowercase();
                assert!(!lower.starts_with("transfer-encoding"), "{line}");
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = Some(v.trim().parse::<u64>().unwrap());
                }
            }
            if method == "PUT" {
                let len = len.expect("a PUT with a Content-Length");
                let mut hasher = rix_formats::hash::Hasher::new(rix_formats::HashAlgo::Sha256);
                let mut small = Vec::new();
                let mut left = len;
                let mut buf = vec![0; 1 << 16];
                while left > 0 {
                    let n = reader.read(&mut buf[..left.min(1 << 16) as usize]).unwrap();
                    assert!(n > 0, "short PUT body");
                    hasher.update(&buf[..n]);
                    if len < 1 << 20 {
                        small.extend_from_slice(&buf[..n]);
                    }
                    left -= n as u64;
                }
                files
                    .lock()
                    .unwrap()
                    .insert(key, (len, hasher.finish(), small));
                conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .unwrap();
            } else {
                conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .unwrap();
            }
        }
    }
}
