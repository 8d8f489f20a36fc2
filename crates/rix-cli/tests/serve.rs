//! `rix serve` under clients that ask for a big NAR and then read nothing: the
//! server's memory stays bounded while they stall, and comes back when they go.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod rixcmd;
use rixcmd::{ok_str, rix_in, TempStore};

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

/// (VmRSS, VmHWM) of a process, in MiB.
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The body of `GET path` (small answers only).
fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{path}: {raw}");
    raw.split_once("\r\n\r\n").unwrap().1.to_owned()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stalled_clients_leave_the_server_memory_bounded() {
    const CLIENTS: usize = 200;
    let store = TempStore::new();
    let dir = store.dir.path().join("big");
    incompressible(&dir, 50 << 20);
    let path = ok_str(rix_in(
        &store,
        &["store", "add", dir.to_str().unwrap()],
        b"",
    ));
    let hash_part = path.trim().rsplit('/').next().unwrap()[..32].to_owned();

    // Default settings: zstd, the default cap on NAR streams.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Serving(child);
    let pid = server.0.id();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    let narinfo = get(&addr, &format!("/{hash_part}.narinfo"));
    let url = narinfo
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap()
        .to_owned();
    let (baseline, _) = memory_mib(pid);

    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(s, "GET /{url} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    // Give the server time to fill whatever it buffers (an unbounded one holds
    // over 1 GiB here within a second).
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(5) {
        peak = peak.max(memory_mib(pid).1);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        peak < 400,
        "{CLIENTS} stalled clients took the server to {peak} MiB (baseline {baseline} MiB)"
    );

    drop(clients);
    rix_testutil::wait_for(
        "the server's memory to come back after the clients went",
        Duration::from_secs(60),
        || (memory_mib(pid).0 < baseline + 100).then_some(()),
    );
    // And it still serves.
    get(&addr, &format!("/{hash_part}.narinfo"));
}

#[test]
fn the_stream_cap_is_a_setting_and_a_flag() {
    let store = TempStore::new();
    ok_str(rix_in(&store, &["store", "add-text", "x"], b"x"));
    let out = rix_in(
        &store,
        &["--option", "serve-max-nar-streams", "0", "serve"],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("serve-max-nar-streams must be at least 1"),
        "{err}"
    );
    assert!(!err.contains("unknown setting"), "{err}");
    let out = rix_in(&store, &["serve", "--max-nar-streams", "0"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-nar-streams"));
}
