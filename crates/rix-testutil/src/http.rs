//! A tiny HTTP/1.1 server over a directory, for binary cache tests: `GET` and
//! `HEAD` of the files under it, one thread per connection, `Connection: close`.
//! It can leave out `Content-Length` (the body then ends when the connection
//! does) and send slowly, so that a client can be caught mid-download.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the server answers.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Send no `Content-Length`: the body ends when the connection closes.
    pub no_length: bool,
    /// Pause this long after every 64 KiB of a body (a slow cache).
    pub pause: Option<Duration>,
}

/// A running server; it stops serving when the test process ends.
pub struct DirServer {
    pub addr: String,
}

impl DirServer {
    pub fn start(root: &Path, options: ServeOptions) -> DirServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address").to_string();
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (root, options) = (root.clone(), options.clone());
                std::thread::spawn(move || {
                    let _ = answer(conn, &root, &options);
                });
            }
        });
        DirServer { addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer(conn: TcpStream, root: &Path, options: &ServeOptions) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut out = conn;
    let file: Option<PathBuf> = Some(root.join(target.trim_start_matches('/')))
        .filter(|_| !target.split('/').any(|c| c == ".."))
        .filter(|p| p.is_file());
    let Some(file) = file else {
        return out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let mut f = std::fs::File::open(&file)?;
    let length = if options.no_length {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", f.metadata()?.len())
    };
    write!(out, "HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n")?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        if let Some(p) = options.pause {
            std::thread::sleep(p);
        }
    }
}
