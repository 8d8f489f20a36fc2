//! `rix serve` over HTTP (headers, HEAD, 404s, hostile paths, many clients) and
//! the persistent narinfo cache of HTTP caches.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rix_substitute::serve::{ServeOptions, Server};
use rix_substitute::{Quiet, Substituter, SubstituterConfig};

/// One request; returns (status line, headers lower-cased, body).
fn request(addr: &str, method: &str, path: &str) -> (String, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    (
        status.to_owned(),
        headers.to_lowercase(),
        raw[split + 4..].to_vec(),
    )
}

#[test]
fn serve_answers_like_a_binary_cache() {
    let src = Root::new();
    let store = src.open();
    let a = store.add_text("a", b"hello", &BTreeSet::new()).unwrap();
    let server = Server::start(
        store.layout().clone(),
        "127.0.0.1:0",
        ServeOptions {
            compression: rix_substitute::Compression::None,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let addr = server.addr().to_string();

    let (status, headers, body) = request(&addr, "GET", "/nix-cache-info");
    assert!(status.contains("200"), "{status}");
    assert!(headers.contains("content-type: text/x-nix-cache-info"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"
    );

    let (status, headers, body) = request(&addr, "GET", &format!("/{}.narinfo", a.hash_part()));
    assert!(status.contains("200"), "{status}");
    assert!(
        headers.contains("content-type: text/x-nix-narinfo"),
        "{headers}"
    );
    let text = String::from_utf8(body).unwrap();
    let ni = rix_formats::narinfo::NarInfo::parse(&nix_store_dir(), &text).unwrap();
    assert_eq!(ni.store_path(), &a);

    // The NAR, with its length, and the same headers for HEAD without a body.
    let (status, headers, body) = request(&addr, "GET", &format!("/{}", ni.url()));
    assert!(status.contains("200"), "{status}");
    assert!(headers.contains("content-type: application/x-nix-nar"));
    assert!(
        headers.contains(&format!("content-length: {}", ni.nar_size())),
        "{headers}"
    );
    assert_eq!(rix_formats::HashAlgo::Sha256.digest(&body), *ni.nar_hash());
    let (status, headers, body) = request(&addr, "HEAD", &format!("/{}", ni.url()));
    assert!(status.contains("200") && headers.contains("content-length") && body.is_empty());

    let missing = "00000000000000000000000000000000";
    for path in [
        format!("/{missing}.narinfo"),
        "/../../etc/passwd".to_owned(),
        "/nar/../db/db.sqlite".to_owned(),
        "/%2e%2e/etc/passwd".to_owned(),
        format!(
            "/nar/{}-{}.nar",
            a.hash_part(),
            "1bb3srw3x77mnck1gk0cbnf1a9915fdrqdjb27y7rxmmlrb3dzjw"
        ),
        "/nix-cache-info.bak".to_owned(),
        "/".to_owned(),
    ] {
        let (status, _, _) = request(&addr, "GET", &path);
        assert!(status.contains("404"), "{path}: {status}");
    }
    let (status, _, _) = request(&addr, "POST", "/nix-cache-info");
    assert!(status.contains("405"), "{status}");

    // Many clients at once.
    let ok = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..32 {
            let (addr, ok, url) = (&addr, ok.clone(), format!("/{}.narinfo", a.hash_part()));
            s.spawn(move || {
                for _ in 0..20 {
                    if request(addr, "GET", &url).0.contains("200") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(ok.load(Ordering::Relaxed), 640);
    server.stop();
}

/// A cache that has nothing and counts narinfo requests.
fn counting_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let body = "StoreDir: /nix/store\n";
            let resp = if req.starts_with("GET /nix-cache-info") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                if req.contains(".narinfo") {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    (format!("http://{addr}"), count)
}

#[test]
fn narinfo_disk_cache_remembers_absence_across_runs() {
    let (url, count) = counting_server();
    let work = tempfile::tempdir().unwrap();
    let config = |ttl: u64| SubstituterConfig {
        urls: vec![url.clone()],
        disk_cache: Some(work.path().join("binary-cache-v1.sqlite")),
        negative_ttl: Duration::from_secs(ttl),
        ..SubstituterConfig::default()
    };
    let dst = Root::new();
    let store = dst.open();
    let p = sp("/nix/store/0a3yijp35sygmy51cnrrz11vimwapz7c-x");
    for run in 0..3 {
        let s = Substituter::new(config(3600), nix_store_dir());
        let plan = s.plan(&store, std::slice::from_ref(&p), &Quiet).unwrap();
        assert_eq!(plan.unavailable.len(), 1);
        assert_eq!(count.load(Ordering::Relaxed), 1, "run {run} asked again");
    }
    // With a zero negative TTL it asks again.
    let s = Substituter::new(config(0), nix_store_dir());
    s.plan(&store, std::slice::from_ref(&p), &Quiet).unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 2);
}
