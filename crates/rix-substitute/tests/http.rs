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

/// `len` bytes no compressor can shrink (xorshift), in `dir/data`.
fn incompressible(dir: &std::path::Path, len: usize) {
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

/// Reads a response's status line and headers, or `None` if they do not come
/// before the socket's read timeout.
fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("connection closed after {head:?}"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(head.is_empty(), "half a head: {head:?}");
                return None;
            }
            Err(e) => panic!("{e}"),
        }
    }
    Some(String::from_utf8(head).unwrap())
}

#[test]
fn nar_streams_beyond_the_cap_wait_for_a_free_one() {
    let src = Root::new();
    let store = src.open();
    let dir = src.path().join("big");
    // Far more than the server and both sockets buffer, so a stream whose
    // client reads nothing stays open.
    incompressible(&dir, 48 << 20);
    let big = store
        .add_path(
            &dir,
            "big",
            rix_formats::store_path::FileIngestionMethod::Recursive,
            rix_formats::HashAlgo::Sha256,
        )
        .unwrap();
    let info = store.path_info(&big).unwrap();
    let server = Server::start(
        store.layout().clone(),
        "127.0.0.1:0",
        ServeOptions {
            compression: rix_substitute::Compression::None,
            max_nar_streams: 1,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let addr = server.addr().to_string();
    let (_, _, body) = request(&addr, "GET", &format!("/{}.narinfo", big.hash_part()));
    let ni =
        rix_formats::narinfo::NarInfo::parse(&nix_store_dir(), std::str::from_utf8(&body).unwrap())
            .unwrap();
    let get = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ni.url()
    );

    // The first client takes the only stream and reads nothing more.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(get.as_bytes()).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(read_head(&mut stalled).unwrap().contains("200"));

    // The second waits (other requests are still answered)...
    let mut waiting = TcpStream::connect(&addr).unwrap();
    waiting.write_all(get.as_bytes()).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(read_head(&mut waiting), None);
    let (status, _, _) = request(&addr, "GET", &format!("/{}.narinfo", big.hash_part()));
    assert!(status.contains("200"), "{status}");

    // ... until the first goes away; then it gets the whole NAR.
    drop(stalled);
    waiting
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert!(read_head(&mut waiting).unwrap().contains("200"));
    let mut nar = Vec::new();
    waiting.read_to_end(&mut nar).unwrap();
    assert_eq!(nar.len() as u64, info.nar_size);
    assert_eq!(rix_formats::HashAlgo::Sha256.digest(&nar), info.nar_hash);
    server.stop();
}

#[test]
fn a_stalled_client_is_cut_off_and_frees_its_stream() {
    let src = Root::new();
    let store = src.open();
    let dir = src.path().join("big");
    incompressible(&dir, 48 << 20);
    let big = store
        .add_path(
            &dir,
            "big",
            rix_formats::store_path::FileIngestionMethod::Recursive,
            rix_formats::HashAlgo::Sha256,
        )
        .unwrap();
    let info = store.path_info(&big).unwrap();
    let server = Server::start(
        store.layout().clone(),
        "127.0.0.1:0",
        ServeOptions {
            compression: rix_substitute::Compression::None,
            max_nar_streams: 1,
            stall_timeout: Duration::from_secs(1),
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let addr = server.addr().to_string();
    let (_, _, body) = request(&addr, "GET", &format!("/{}.narinfo", big.hash_part()));
    let ni =
        rix_formats::narinfo::NarInfo::parse(&nix_store_dir(), std::str::from_utf8(&body).unwrap())
            .unwrap();
    let get = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ni.url()
    );
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(get.as_bytes()).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(read_head(&mut stalled).unwrap().contains("200"));

    // The next client gets the only stream once the first is cut off.
    let mut next = TcpStream::connect(&addr).unwrap();
    next.write_all(get.as_bytes()).unwrap();
    next.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert!(read_head(&mut next).unwrap().contains("200"));
    let mut nar = Vec::new();
    next.read_to_end(&mut nar).unwrap();
    assert_eq!(rix_formats::HashAlgo::Sha256.digest(&nar), info.nar_hash);

    // The stalled client, reading at last, finds its NAR cut short.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!((rest.len() as u64) < info.nar_size, "{}", rest.len());
    server.stop();
}

#[test]
fn serve_never_writes_the_store_database() {
    use std::os::unix::fs::PermissionsExt;
    let src = Root::new();
    let store = src.open();
    let a = store.add_text("a", b"hello", &BTreeSet::new()).unwrap();
    let layout = store.layout().clone();
    drop(store);
    // A database as Nix leaves it: without rix's own table. A writer would
    // create it again on opening.
    let db_file = layout.db_dir().join("db.sqlite");
    let conn = rusqlite::Connection::open(&db_file).unwrap();
    conn.execute_batch("drop table RixBuilds").unwrap();
    drop(conn);
    std::fs::set_permissions(&db_file, std::fs::Permissions::from_mode(0o444)).unwrap();

    let server = Server::start(layout.clone(), "127.0.0.1:0", ServeOptions::default()).unwrap();
    let addr = server.addr().to_string();
    let (status, _, body) = request(&addr, "GET", &format!("/{}.narinfo", a.hash_part()));
    assert!(
        status.contains("200"),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    let ni =
        rix_formats::narinfo::NarInfo::parse(&nix_store_dir(), std::str::from_utf8(&body).unwrap())
            .unwrap();
    let (status, _, _) = request(&addr, "GET", &format!("/{}", ni.url()));
    assert!(status.contains("200"), "{status}");
    server.stop();

    let conn =
        rusqlite::Connection::open_with_flags(&db_file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: i64 = conn
        .query_row(
            "select count(*) from sqlite_master where name = 'RixBuilds'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "the server changed the database's schema");
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
