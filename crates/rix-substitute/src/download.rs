//! One download of a URL into a sink, as Nix's `FileTransfer::download`
//! (`filetransfer.cc`): `http(s)://` through the same reqwest + rustls client
//! setup and Tokio runtime as the HTTP binary caches, `file://` from the file
//! system. The body is streamed to the caller's [`Write`] (never held whole in
//! memory), with Nix's conditional requests (`If-None-Match` with a cached
//! ETag; a `304`, or a `200` carrying the expected ETag, means "unchanged"),
//! `netrc-file` credentials, the lockable-tarball `Link: <…>; rel="immutable"`
//! header, the redirect chain, retries of transient failures while nothing
//! has been written (`download-attempts`, Nix's warnings), and Nix's error
//! messages (`unable to download '…': HTTP error 404`, response bodies).
//!
//! The fetchers (`rix-fetch`: `builtins.fetchurl`, `fetchTarball`, the
//! `tarball`/`file` inputs) and the `builtin:fetchurl` builder use it.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{Client, StatusCode};

use crate::netrc::Netrc;
use crate::runtime::{channel, runtime};

/// What to download, and how.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub url: &'a str,
    /// The ETag of the copy the caller has: the server may answer "unchanged".
    pub expected_etag: Option<&'a str>,
    /// `netrc-file`: credentials for the URL's host, when it has some.
    pub netrc_file: Option<&'a Path>,
    /// `connect-timeout` (none: the client's default).
    pub connect_timeout: Option<Duration>,
    /// `download-attempts` (at least one).
    pub attempts: u32,
    /// Extra request headers (a forge's access token).
    pub headers: Vec<(String, String)>,
}

/// What a download gave besides its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The server said the caller's copy (`expected_etag`) is current: nothing
    /// was written to the sink.
    pub cached: bool,
    /// The `ETag` header (quotes included), empty when there is none.
    pub etag: String,
    /// The URL asked for, then the one that answered if redirected.
    pub urls: Vec<String>,
    /// `Link: <URL>; rel="immutable"` (the lockable tarball protocol).
    pub immutable_url: Option<String>,
    /// Bytes written to the sink.
    pub size: u64,
}

/// How a download failed (Nix's `FileTransfer::Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Forbidden,
    /// Worth another attempt (connection failures, 5xx, 408, 429).
    Transient,
    Misc,
    /// The sink refused the data.
    Sink,
}

/// A failed download, in Nix's words (`unable to download '…': …`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DownloadError {
    pub message: String,
    pub kind: ErrorKind,
}

impl DownloadError {
    fn new(kind: ErrorKind, message: String) -> Self {
        DownloadError { message, kind }
    }
}

/// The process's client for downloads (one per connect timeout): pooled,
/// rustls, redirects followed (at most 10, as curl is told by Nix).
fn client(connect_timeout: Option<Duration>) -> Result<Client, String> {
    static PLAIN: OnceLock<Result<Client, String>> = OnceLock::new();
    let build = |t: Option<Duration>| {
        crate::runtime::install_crypto();
        let mut b = Client::builder()
            .user_agent(concat!("rix/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        if let Some(t) = t {
            b = b.connect_timeout(t);
        }
        b.build()
            .map_err(|e| format!("cannot create an HTTP client: {e}"))
    };
    match connect_timeout {
        None => PLAIN.get_or_init(|| build(None)).clone(),
        Some(t) => build(Some(t)),
    }
}

/// Downloads `req.url` into `sink` (see the module docs). Must not be called
/// from inside the transfer runtime.
pub fn download(req: &Request<'_>, sink: &mut dyn Write) -> Result<Response, DownloadError> {
    let scheme = req.url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "file" => download_file(req.url, sink),
        "http" | "https" => download_http(req, sink),
        _ => Err(DownloadError::new(
            ErrorKind::Misc,
            format!(
                "unable to download '{}': Unsupported protocol (1) Protocol \"{scheme}\" not supported",
                req.url
            ),
        )),
    }
}

/// A `file://` URL: the file at its (percent-decoded) path.
fn download_file(url: &str, sink: &mut dyn Write) -> Result<Response, DownloadError> {
    let rest = &url["file://".len()..];
    // `file://localhost/x` and `file:///x` name /x.
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = percent_decode(path);
    let fail = || {
        DownloadError::new(
            ErrorKind::Misc,
            format!(
                "unable to download '{url}': Could not read a file:// file (37) Couldn't open file {path}"
            ),
        )
    };
    let mut file = std::fs::File::open(&path).map_err(|_| fail())?;
    if file.metadata().map_err(|_| fail())?.is_dir() {
        return Err(fail());
    }
    let size = copy(&mut file, sink, url)?;
    Ok(Response {
        cached: false,
        etag: String::new(),
        urls: vec![url.to_owned()],
        immutable_url: None,
        size,
    })
}

fn copy(src: &mut dyn Read, sink: &mut dyn Write, url: &str) -> Result<u64, DownloadError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DownloadError::new(
                    ErrorKind::Transient,
                    format!("unable to download '{url}': {e}"),
                ))
            }
        };
        sink.write_all(&buf[..n]).map_err(|e| {
            DownloadError::new(
                ErrorKind::Sink,
                format!("unable to download '{url}': writing the data: {e}"),
            )
        })?;
        total += n as u64;
    }
}

/// One attempt's outcome before the body is read.
enum Opened {
    /// Unchanged (304, or 200 with the expected ETag).
    Unchanged(Response),
    Body(reqwest::Response, Response),
}

fn download_http(req: &Request<'_>, sink: &mut dyn Write) -> Result<Response, DownloadError> {
    let client = client(req.connect_timeout).map_err(|m| DownloadError::new(ErrorKind::Misc, m))?;
    let credentials = req
        .netrc_file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| {
            let host = url_host(req.url)?;
            Netrc::parse(&text).lookup(&host)
        });
    let attempts = req.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = attempt_http(&client, req, credentials.as_ref(), sink);
        match result {
            Ok(r) => return Ok(r),
            Err((e, written)) => {
                if e.kind != ErrorKind::Transient || attempt >= attempts || written > 0 {
                    return Err(e);
                }
                // Nix: 250 ms × 2^(attempt-1), times a random factor in [1, 2).
                let jitter =
                    1.0 + f64::from(std::process::id() % 997 + attempt * 131 % 997) / 997.0;
                let ms = (250.0 * f64::from(1u32 << (attempt - 1).min(16)) * jitter) as u64;
                eprintln!("warning: error: {}; retrying in {ms} ms", e.message);
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
    }
}

/// One attempt: the error and how many bytes reached the sink before it.
fn attempt_http(
    client: &Client,
    req: &Request<'_>,
    credentials: Option<&(String, String)>,
    sink: &mut dyn Write,
) -> Result<Response, (DownloadError, u64)> {
    let url = req.url;
    let rt = runtime();
    let opened = rt.block_on(async {
        let mut r = client.get(url);
        if let Some(etag) = req.expected_etag.filter(|e| !e.is_empty()) {
            r = r.header("If-None-Match", etag);
        }
        for (k, v) in &req.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        if let Some((login, password)) = credentials {
            r = r.basic_auth(login, Some(password));
        }
        let resp = r.send().await.map_err(|e| connect_error(url, &e))?;
        let status = resp.status();
        let mut info = Response {
            urls: vec![url.to_owned()],
            ..Response::default()
        };
        let effective = resp.url().as_str();
        if effective != url {
            info.urls.push(effective.to_owned());
        }
        if let Some(etag) = resp.headers().get("etag").and_then(|v| v.to_str().ok()) {
            info.etag = etag.trim().to_owned();
        }
        for name in ["link", "x-amz-meta-link"] {
            for v in resp.headers().get_all(name) {
                if let Some(u) = v.to_str().ok().and_then(immutable_link) {
                    info.immutable_url = Some(u);
                }
            }
        }
        let expected = req.expected_etag.filter(|e| !e.is_empty());
        if status == StatusCode::NOT_MODIFIED
            || (status == StatusCode::OK && expected.is_some() && expected == Some(&info.etag))
        {
            info.cached = true;
            if status == StatusCode::NOT_MODIFIED {
                info.etag = expected.unwrap_or_default().to_owned();
            }
            return Ok(Opened::Unchanged(info));
        }
        if !status.is_success() {
            let code = status.as_u16();
            let kind = match code {
                404 | 410 => ErrorKind::NotFound,
                401 | 403 | 407 => ErrorKind::Forbidden,
                408 | 429 | 500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Misc,
            };
            let body = resp.bytes().await.unwrap_or_default();
            let body = String::from_utf8_lossy(&body);
            let mut message = format!("unable to download '{url}': HTTP error {code}");
            if !body.is_empty() && (body.len() < 1024 || body.contains("<html>")) {
                message.push_str("\n\nresponse body:\n\n");
                message.push_str(chomp(&body));
            }
            return Err(DownloadError::new(kind, message));
        }
        Ok(Opened::Body(resp, info))
    });
    let (mut resp, mut info) = match opened.map_err(|e| (e, 0))? {
        Opened::Unchanged(info) => return Ok(info),
        Opened::Body(resp, info) => (resp, info),
    };
    // The body, pumped on the runtime into a bounded channel and written to
    // the sink on this thread: downloading overlaps with what the sink does.
    let (tx, mut reader) = channel();
    let what = url.to_owned();
    rt.spawn(async move {
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let msg = format!("unable to download '{what}': {}", error_chain(&e));
                    let _ = tx.send(Err(io::Error::other(msg))).await;
                    return;
                }
            }
        }
    });
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err((
                    DownloadError::new(ErrorKind::Transient, e.to_string()),
                    info.size,
                ))
            }
        };
        sink.write_all(&buf[..n]).map_err(|e| {
            (
                DownloadError::new(
                    ErrorKind::Sink,
                    format!("unable to download '{url}': writing the data: {e}"),
                ),
                info.size,
            )
        })?;
        info.size += n as u64;
    }
    Ok(info)
}

/// A failure before any response, worded as curl's errors are in Nix's messages.
fn connect_error(url: &str, e: &reqwest::Error) -> DownloadError {
    let chain = error_chain(e);
    let (host, port) = url_host_port(url);
    if e.is_connect() {
        if chain.contains("dns error") {
            return DownloadError::new(
                ErrorKind::Transient,
                format!(
                    "unable to download '{url}': Could not resolve hostname (6) Could not resolve host: {host}"
                ),
            );
        }
        return DownloadError::new(
            ErrorKind::Transient,
            format!(
                "unable to download '{url}': Could not connect to server (7) Failed to connect to {host} port {port} after 0 ms: Could not connect to server"
            ),
        );
    }
    if e.is_timeout() {
        return DownloadError::new(
            ErrorKind::Transient,
            format!("unable to download '{url}': Timeout was reached (28) {chain}"),
        );
    }
    if e.is_redirect() {
        return DownloadError::new(
            ErrorKind::Misc,
            format!(
                "unable to download '{url}': Number of redirects hit maximum amount (47) {chain}"
            ),
        );
    }
    if e.is_builder() {
        return DownloadError::new(
            ErrorKind::Misc,
            format!("unable to download '{url}': URL using bad/illegal format or missing URL (3) {chain}"),
        );
    }
    DownloadError::new(
        ErrorKind::Transient,
        format!("unable to download '{url}': {chain}"),
    )
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

/// `<URL>; rel="immutable"` (the whole value, case-insensitive), as Nix's `linkRegex`.
fn immutable_link(value: &str) -> Option<String> {
    let v = value.trim();
    let rest = v.strip_prefix('<')?;
    let (target, params) = rest.split_once('>')?;
    if target.contains('>') || !params.eq_ignore_ascii_case("; rel=\"immutable\"") {
        return None;
    }
    Some(target.to_owned())
}

/// Trailing white space removed (Nix's `chomp`).
fn chomp(s: &str) -> &str {
    s.trim_end_matches([' ', '\n', '\r', '\t'])
}

/// The host of an `http(s)://` URL, for `netrc` (lower-cased, no port).
fn url_host(url: &str) -> Option<String> {
    let (host, _) = url_host_port(url);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn url_host_port(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let default_port = if scheme == "https" { "443" } else { "80" };
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').unwrap_or((v6, ""));
        let port = p.strip_prefix(':').unwrap_or(default_port);
        return (h.to_owned(), port.to_owned());
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.to_owned()),
        None => (authority.to_owned(), default_port.to_owned()),
    }
}

pub use crate::url::percent_decode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            immutable_link("<http://x/y.tar.gz?rev=1>; rel=\"immutable\"").as_deref(),
            Some("http://x/y.tar.gz?rev=1")
        );
        assert_eq!(immutable_link("<http://x/y>; rel=\"next\""), None);
        assert_eq!(immutable_link("http://x/y"), None);
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            url_host_port("http://u:p@127.0.0.1:8080/x"),
            ("127.0.0.1".into(), "8080".into())
        );
        assert_eq!(url_host_port("https://h/x"), ("h".into(), "443".into()));
        assert_eq!(
            url_host_port("http://[::1]:9/x"),
            ("::1".into(), "9".into())
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b/%zz%4"), "/a b/%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a b");
        std::fs::write(&p, "data").unwrap();
        let url = format!("file://{}", dir.path().join("a%20b").display());
        let mut out = Vec::new();
        let r = download(
            &Request {
                url: &url,
                ..Request::default()
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"data");
        assert_eq!(r.size, 4);
        let missing = format!("file://{}/nope", dir.path().display());
        let e = download(
            &Request {
                url: &missing,
                ..Request::default()
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "unable to download '{missing}': Could not read a file:// file (37) Couldn't open file {}/nope",
                dir.path().display()
            )
        );
    }
}
