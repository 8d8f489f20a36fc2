//! A loopback HTTP/1.1 server for the fetcher tests: files from a directory
//! with an `ETag` (answering `If-None-Match` with 304), per-path extra
//! headers (`Link: <…>; rel="immutable"`), paths that need Basic
//! credentials, and a count of the requests each path got.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    headers: HashMap<String, Vec<String>>,
    auth: HashMap<String, String>,
    hits: HashMap<String, usize>,
    not_modified: HashMap<String, usize>,
}

pub struct Server {
    pub addr: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Serves `root` on 127.0.0.1 until the test process ends.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let (root, st) = (root.to_path_buf(), state.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (root, st) = (root.clone(), st.clone());
                std::thread::spawn(move || {
                    let _ = answer(conn, &root, &st);
                });
            }
        });
        Server { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Sends `header` (a whole `Name: value` line) with `path`.
    pub fn add_header(&self, path: &str, header: &str) {
        let mut s = self.state.lock().unwrap();
        s.headers
            .entry(format!("/{}", path.trim_start_matches('/')))
            .or_default()
            .push(header.to_owned());
    }

    /// `path` needs `Authorization: Basic <base64>` (`user:password` given).
    pub fn require_auth(&self, path: &str, user_password: &str) {
        let mut s = self.state.lock().unwrap();
        s.auth.insert(
            format!("/{}", path.trim_start_matches('/')),
            base64(user_password.as_bytes()),
        );
    }

    /// Requests of `path` so far, and how many were answered 304.
    pub fn hits(&self, path: &str) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        let p = format!("/{}", path.trim_start_matches('/'));
        (
            s.hits.get(&p).copied().unwrap_or(0),
            s.not_modified.get(&p).copied().unwrap_or(0),
        )
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A cheap content tag (FNV-1a).
fn etag(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}\"")
}

fn answer(conn: TcpStream, root: &Path, st: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut if_none_match = None;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "if-none-match" => if_none_match = Some(v.trim().to_owned()),
                "authorization" => authorization = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let mut out = conn;
    let (extra, auth) = {
        let mut s = st.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        (
            s.headers.get(&path).cloned().unwrap_or_default(),
            s.auth.get(&path).cloned(),
        )
    };
    if let Some(want) = auth {
        if authorization.as_deref() != Some(&format!("Basic {want}")) {
            return out.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
    let file: Option<PathBuf> = Some(root.join(path.trim_start_matches('/')))
        .filter(|_| !path.split('/').any(|c| c == ".."))
        .filter(|p| p.is_file());
    let Some(file) = file else {
        let body = "no such file\n";
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let mut data = Vec::new();
    std::fs::File::open(&file)?.read_to_end(&mut data)?;
    let tag = etag(&data);
    let mut head = String::new();
    for h in &extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if if_none_match.as_deref() == Some(tag.as_str()) {
        *st.lock().unwrap().not_modified.entry(path).or_default() += 1;
        return write!(
            out,
            "HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\n{head}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    write!(
        out,
        "HTTP/1.1 200 OK\r\nETag: {tag}\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )?;
    out.write_all(&data)
}
