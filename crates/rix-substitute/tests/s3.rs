//! `s3://` caches against a local S3-compatible server (moto's, from PyPI:
//! `pip install 'moto[server]'`), on 127.0.0.1 only. Skipped when moto is
//! missing, unless `RIX_REQUIRE_NIX=1` (CI), where its absence fails.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rix_formats::signature::SecretKey;
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::HashAlgo;
use rix_substitute::upload::{copy_to, UploadOptions};
use rix_substitute::CacheUrl;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_command() -> Option<Command> {
    let found = Command::new("python3")
        .args(["-c", "import moto.server, flask, werkzeug"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("RIX_REQUIRE_NIX").as_deref() == Ok("1") {
            panic!("moto's S3 server is not installed but RIX_REQUIRE_NIX=1: pip install 'moto[server]'");
        }
        eprintln!("skipping: moto's S3 server not found (pip install 'moto[server]')");
        return None;
    }
    let mut c = Command::new("python3");
    c.args(["-m", "moto.server"]);
    Some(c)
}

/// One raw HTTP/1.1 request; returns the status line.
fn http(addr: &str, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.lines().next().unwrap_or_default().to_owned())
}

/// A HEAD request's status line and headers.
fn http_head(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "HEAD {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn start_moto() -> Option<(Moto, String)> {
    let mut cmd = moto_command()?;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = cmd
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let moto = Moto(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(&addr, "GET", "/").is_err() {
        assert!(Instant::now() < deadline, "moto did not start on {addr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Some((moto, addr))
}

#[test]
fn copy_to_and_substitute_from_s3() {
    let Some((_moto, addr)) = start_moto() else {
        return;
    };
    // moto accepts any credentials.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let status = http(&addr, "PUT", "/rix-cache").unwrap();
    assert!(status.contains("200"), "creating the bucket: {status}");

    let src = Root::new();
    let store = src.open();
    let a = store.add_text("a", b"A", &BTreeSet::new()).unwrap();
    let b = store
        .add_text(
            "b",
            format!("B {}", store.print(&a)).as_bytes(),
            &BTreeSet::from([a.clone()]),
        )
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    // Incompressible and over one part: uploaded in parts.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..20 << 17)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(work.path().join("big"), noise).unwrap();
    let big = store
        .add_path(
            &work.path().join("big"),
            "big",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
        )
        .unwrap();
    let key = SecretKey::generate("s3-test-1").unwrap();
    let url = format!("s3://rix-cache?region=us-east-1&endpoint=http://{addr}&scheme=http");
    let parsed = CacheUrl::parse(&url).unwrap();
    let cache = rix_substitute::cache::open(&parsed, &Default::default()).unwrap();
    let opts = UploadOptions::from_url(&parsed, vec![key.clone()]).unwrap();
    let report = copy_to(
        &store,
        cache.as_ref(),
        &[b.clone(), big.clone()],
        &opts,
        quiet(),
    )
    .unwrap();
    assert_eq!(report.uploaded.len(), 3);
    // S3 gives an object uploaded in N parts the ETag "<md5>-N".
    let narinfo = cache
        .get(&format!("{}.narinfo", big.hash_part()))
        .unwrap()
        .unwrap();
    let narinfo = String::from_utf8(narinfo).unwrap();
    let nar = narinfo
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap();
    let head = http_head(&addr, &format!("/rix-cache/{nar}")).unwrap();
    let etag = head
        .lines()
        .find_map(|l| l.to_lowercase().strip_prefix("etag: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no ETag (of a multipart upload) in {head}"));
    assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    assert!(cache.exists("nix-cache-info").unwrap());
    assert!(cache.exists(&format!("{}.narinfo", b.hash_part())).unwrap());
    assert!(!cache.exists("nope.narinfo").unwrap());
    let again = copy_to(
        &store,
        cache.as_ref(),
        std::slice::from_ref(&b),
        &opts,
        quiet(),
    )
    .unwrap();
    assert_eq!((again.uploaded.len(), again.present.len()), (0, 2));

    let dst = Root::new();
    let dstore = dst.open();
    let subst = substituter(&[url], &key.to_public().to_string(), true);
    let report = subst
        .substitute(&dstore, &[b.clone(), big.clone()], quiet())
        .unwrap();
    assert!(report.succeeded(), "{}", report.problem(dstore.store_dir()));
    assert_eq!(report.substituted.len(), 3);
    for p in [&a, &b, &big] {
        let theirs = store.query_path_info(p).unwrap().unwrap();
        let ours = dstore.query_path_info(p).unwrap().unwrap();
        assert_eq!(
            (ours.nar_hash, &ours.references),
            (theirs.nar_hash, &theirs.references)
        );
    }
    // A missing bucket is a cache that cannot be opened.
    let missing = substituter(
        &[format!(
            "s3://no-such-bucket?region=us-east-1&endpoint=http://{addr}&scheme=http"
        )],
        "",
        false,
    );
    let report = missing
        .substitute(&Root::new().open(), &[a], quiet())
        .unwrap();
    assert!(!report.succeeded());
    assert!(report.problem(&nix_store_dir()).contains("no-such-bucket"));
}

#[test]
fn s3_reads_are_bounded() {
    let Some((_moto, addr)) = start_moto() else {
        return;
    };
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let status = http(&addr, "PUT", "/rix-bounded").unwrap();
    assert!(status.contains("200"), "creating the bucket: {status}");
    let url = format!("s3://rix-bounded?region=us-east-1&endpoint=http://{addr}&scheme=http");
    let cache =
        rix_substitute::cache::open(&CacheUrl::parse(&url).unwrap(), &Default::default()).unwrap();
    let max = rix_substitute::cache::MAX_SMALL_FILE;
    cache
        .put(
            "x.narinfo",
            vec![b'a'; max as usize + 1],
            "text/x-nix-narinfo",
        )
        .unwrap();
    let e = cache.get("x.narinfo").unwrap_err();
    assert!(
        e.to_string().contains("more than the 4194304 expected"),
        "{e}"
    );
    cache
        .put("nar/x.nar", vec![b'n'; 5000], "application/x-nix-nar")
        .unwrap();
    let e = cache.open("nar/x.nar", Some(1000)).err().unwrap();
    assert!(
        e.to_string().contains("5000 bytes, more than the 1000"),
        "{e}"
    );
    let mut out = Vec::new();
    let whole = cache.open("nar/x.nar", Some(5000)).unwrap().unwrap();
    std::io::Read::read_to_end(&mut { whole }, &mut out).unwrap();
    assert_eq!(out.len(), 5000);
}
