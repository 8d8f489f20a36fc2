//! Serving the local store as a Nix binary cache over HTTP (`rix serve`):
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /nix-cache-info` | `StoreDir`, `WantMassQuery: 1`, `Priority` |
//! | `GET /<hash>.narinfo` | the path's narinfo, signed on the fly (`text/x-nix-narinfo`) |
//! | `GET /nar/<hash>-<narhash>.nar[.zst\|.xz\|.bz2]` | the NAR, streamed while it is serialised (`application/x-nix-nar`) |
//!
//! `HEAD` answers the same headers without a body; anything else is a 404 (or
//! 405 for other methods). Request paths are parsed strictly (base-32 hash
//! parts only), so no request names a file: paths come from the database,
//! read on read-only connections.
//!
//! Memory is bounded whatever the clients do: at most `max_nar_streams` NARs
//! are produced at once (further requests wait), each through a small bounded
//! channel that blocks its compressor and file reads while the client does not
//! read, and a connection that takes no byte for `stall_timeout` is closed
//! (`serve/stall.rs`), which ends its stream.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use rix_formats::cache_info::CacheInfo;
use rix_formats::narinfo::NarInfo;
use rix_formats::signature::SecretKey;
use rix_store::db::Db;
use rix_store::layout::StoreLayout;
use rix_store::path_info::ValidPathInfo;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::cache::{CACHE_INFO_MIME, NARINFO_MIME, NAR_MIME};
use crate::compression::Compression;
use crate::error::{Result, SubstError};
use crate::upload::sign_narinfo;

mod stall;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Keys narinfos are signed with.
    pub keys: Vec<SecretKey>,
    /// Compression of the NARs advertised in narinfos.
    pub compression: Compression,
    /// `Priority` in `nix-cache-info`.
    pub priority: i32,
    /// NARs streamed at once (`serve-max-nar-streams`); further NAR requests
    /// wait for a stream to end. Each stream holds its compressor's state
    /// (about 3 MiB for zstd; xz at level 6 reserves 94 MiB and touches about
    /// 20 MiB before a stalled client blocks it) and at most `STREAM_BUFFER`
    /// bytes of output.
    pub max_nar_streams: usize,
    /// A connection whose client takes no byte for this long is closed (its
    /// NAR stream ends and frees its slot). Nix's `stalled-download-timeout`.
    pub stall_timeout: Duration,
}

/// What one NAR stream holds between its compressor and the connection: the
/// chunk being filled and the chunks queued (hyper buffers some more).
pub const STREAM_BUFFER: usize = CHUNK * (CHANNEL_CHUNKS + 1);

/// Default of [`ServeOptions::max_nar_streams`].
pub const DEFAULT_MAX_NAR_STREAMS: usize = 32;

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            compression: Compression::Zstd,
            priority: 30,
            max_nar_streams: DEFAULT_MAX_NAR_STREAMS,
            stall_timeout: Duration::from_secs(300),
        }
    }
}

struct ServeState {
    layout: StoreLayout,
    opts: ServeOptions,
    cache_info: String,
    /// One permit per NAR stream that may run.
    streams: Arc<Semaphore>,
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    CacheInfo,
    NarInfo {
        hash_part: &'a str,
    },
    Nar {
        hash_part: &'a str,
        nar_hash: &'a str,
        compression: Compression,
    },
}

fn is_nix32(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| rix_formats::nixbase32::ALPHABET.contains(&b))
}

/// Parses a request path; `None` for anything that is not one of ours.
pub fn parse_request(path: &str) -> Option<Request<'_>> {
    if path == "/nix-cache-info" {
        return Some(Request::CacheInfo);
    }
    if let Some(name) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix(".narinfo"))
    {
        return is_nix32(name, 32).then_some(Request::NarInfo { hash_part: name });
    }
    let name = path.strip_prefix("/nar/")?;
    let (stem, compression) = [
        (".nar", Compression::None),
        (".nar.zst", Compression::Zstd),
        (".nar.xz", Compression::Xz),
        (".nar.bz2", Compression::Bzip2),
    ]
    .into_iter()
    .find_map(|(ext, c)| name.strip_suffix(ext).map(|s| (s, c)))?;
    let (hash_part, nar_hash) = stem.split_once('-')?;
    (is_nix32(hash_part, 32) && is_nix32(nar_hash, 52)).then_some(Request::Nar {
        hash_part,
        nar_hash,
        compression,
    })
}

thread_local! {
    /// Each blocking thread's own read-only connection to the database.
    static DB: RefCell<Option<Db>> = const { RefCell::new(None) };
}

/// The valid path with this hash part, and its metadata.
fn lookup(
    layout: &StoreLayout,
    hash_part: &str,
) -> std::result::Result<Option<ValidPathInfo>, String> {
    DB.with(|cell| {
        let mut slot = cell.borrow_mut();
        let db = match &mut *slot {
            Some(db) => db,
            empty => empty.insert(
                Db::open_read_only(&layout.db_dir(), layout.store_dir.clone())
                    .map_err(|e| e.to_string())?,
            ),
        };
        db.in_read_transaction(|db| match db.query_path_from_hash_part(hash_part)? {
            Some(path) => db.query_path_info(&path),
            None => Ok(None),
        })
        .map_err(|e| e.to_string())
    })
}

fn text(status: StatusCode, content_type: &'static str, body: String, head: bool) -> Response {
    let len = body.len();
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body)
    });
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn not_found(head: bool) -> Response {
    text(
        StatusCode::NOT_FOUND,
        "text/plain",
        "not found\n".into(),
        head,
    )
}

fn narinfo_for(state: &ServeState, info: &ValidPathInfo) -> std::result::Result<String, String> {
    let c = state.opts.compression;
    let url = format!(
        "nar/{}-{}{}",
        info.path.hash_part(),
        info.nar_hash.to_nix32(),
        c.nar_extension()
    );
    let mut ni = NarInfo::new(
        &state.layout.store_dir,
        info.path.clone(),
        &url,
        info.nar_hash,
        info.nar_size,
    )
    .map_err(|e| e.to_string())?;
    ni.set_compression(Some(c.name()))
        .map_err(|e| e.to_string())?;
    if c == Compression::None {
        ni.set_file_hash(Some(info.nar_hash));
        ni.set_file_size(Some(info.nar_size));
    }
    ni.set_references(info.references.iter().cloned());
    ni.set_deriver(info.deriver.clone());
    ni.set_ca(info.ca);
    sign_narinfo(&mut ni, info, &state.opts.keys);
    Ok(ni.to_string())
}

/// Sends what is written, in chunks, to the response body. A full channel
/// blocks the writer (and so the compressor and the file reads behind it); a
/// closed one (the client went away) fails it.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

/// Size of the chunks sent to the connection.
const CHUNK: usize = 64 * 1024;
/// Chunks queued between a NAR's producer and its connection.
const CHANNEL_CHUNKS: usize = 4;

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Streams the NAR of `info` on a blocking thread that holds `permit` until it
/// ends: when the NAR is sent, or as soon as the client is gone.
fn stream_nar(
    state: &Arc<ServeState>,
    info: ValidPathInfo,
    compression: Compression,
    permit: OwnedSemaphorePermit,
) -> Body {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let real = state.layout.real_path(&info.path);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let err_tx = tx.clone();
        let result = (|| -> io::Result<()> {
            let w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let mut enc = compression.encoder(w, None)?;
            rix_store::archive::dump_to(&real, &mut enc).map_err(io::Error::other)?;
            let mut w = enc.finish()?;
            w.flush()
        })();
        if let Err(e) = result {
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

async fn handle(State(state): State<Arc<ServeState>>, method: Method, uri: Uri) -> Response {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
            false,
        );
    }
    let Some(req) = parse_request(uri.path()) else {
        return not_found(head);
    };
    let hash_part = match req {
        Request::CacheInfo => {
            return text(
                StatusCode::OK,
                CACHE_INFO_MIME,
                state.cache_info.clone(),
                head,
            )
        }
        Request::NarInfo { hash_part } | Request::Nar { hash_part, .. } => hash_part.to_owned(),
    };
    let st = state.clone();
    let found = tokio::task::spawn_blocking(move || lookup(&st.layout, &hash_part)).await;
    let info = match found {
        Ok(Ok(Some(info))) => info,
        Ok(Ok(None)) => return not_found(head),
        Ok(Err(e)) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
                head,
            )
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
                head,
            )
        }
    };
    match req {
        Request::CacheInfo => unreachable!("answered above"),
        Request::NarInfo { .. } => match narinfo_for(&state, &info) {
            Ok(body) => text(StatusCode::OK, NARINFO_MIME, body, head),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
                head,
            ),
        },
        Request::Nar {
            nar_hash,
            compression,
            ..
        } => {
            if info.nar_hash.to_nix32() != nar_hash {
                return not_found(head);
            }
            let mut r = Response::new(Body::empty());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(NAR_MIME));
            if compression == Compression::None {
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(info.nar_size));
            }
            if !head {
                // Waits for a free stream: a queued request costs nothing,
                // and Nix clients see a slow answer rather than an error.
                let permit = state
                    .streams
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                *r.body_mut() = stream_nar(&state, info, compression, permit);
            }
            r
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Binds `listen` (`HOST:PORT`; port 0 picks one) and serves the store of
    /// `layout` on a thread of its own until [`Server::stop`].
    pub fn start(layout: StoreLayout, listen: &str, opts: ServeOptions) -> Result<Self> {
        let mut info = CacheInfo::new(&layout.store_dir);
        info.want_mass_query = Some(true);
        info.priority = Some(opts.priority);
        let state = Arc::new(ServeState {
            cache_info: info.to_string(),
            streams: Arc::new(Semaphore::new(opts.max_nar_streams.max(1))),
            layout,
            opts,
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("rix-serve")
            .enable_all()
            .build()
            .map_err(SubstError::io("cannot start the server runtime"))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(listen))
            .map_err(SubstError::io(format!("cannot listen on {listen}")))?;
        let addr = listener
            .local_addr()
            .map_err(SubstError::io("local address"))?;
        let listener = stall::StallListener {
            inner: listener,
            timeout: state.opts.stall_timeout,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(state);
        let thread = std::thread::Builder::new()
            .name("rix-serve-main".into())
            .spawn(move || {
                rt.block_on(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await
                })
            })
            .map_err(SubstError::io("cannot start the server thread"))?;
        Ok(Self {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the process ends (or the server fails).
    pub fn wait(mut self) -> Result<()> {
        let t = self.thread.take().expect("running");
        match t.join() {
            Ok(r) => r.map_err(SubstError::io("server")),
            Err(_) => Err(SubstError::Other("the server thread panicked".into())),
        }
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_strictly() {
        let h = "0a3yijp35sygmy51cnrrz11vimwapz7c";
        let n = "1bb3srw3x77mnck1gk0cbnf1a9915fdrqdjb27y7rxmmlrb3dzjw";
        assert_eq!(parse_request("/nix-cache-info"), Some(Request::CacheInfo));
        assert_eq!(
            parse_request(&format!("/{h}.narinfo")),
            Some(Request::NarInfo { hash_part: h })
        );
        assert_eq!(
            parse_request(&format!("/nar/{h}-{n}.nar.zst")),
            Some(Request::Nar {
                hash_part: h,
                nar_hash: n,
                compression: Compression::Zstd
            })
        );
        for bad in [
            "/",
            "",
            "/nix-cache-info/",
            "/../etc/passwd",
            "/nar/../../etc/passwd",
            &format!("/{h}x.narinfo"),
            &format!("/{}.narinfo", &h[..31]),
            "/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.narinfo", // 'e' is not in nixbase32
            &format!("/nar/{h}-{n}.nar.gz"),
            &format!("/nar/{h}{n}.nar"),
            &format!("/nar/{h}-{n}-x.nar"),
            "/nar/\u{e9}\u{e9}.nar",
            "/log/x",
        ] {
            assert_eq!(parse_request(bad), None, "{bad}");
        }
    }

    #[test]
    fn parse_request_never_panics() {
        // A cheap deterministic fuzz: every prefix and byte-mangled variant.
        let seed = "/nar/0a3yijp35sygmy51cnrrz11vimwapz7c-1bb3srw3x77mnck1gk0cbnf1a9915fdrqdjb27y7rxmmlrb3dzjw.nar.xz";
        let chars: Vec<char> = seed.chars().chain("é/.-%\0\u{10ffff}".chars()).collect();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 120) as usize;
            let s: String = (0..len)
                .map(|i| chars[((x >> (i % 50)) as usize + i) % chars.len()])
                .collect();
            let _ = parse_request(&s);
        }
        for i in 0..seed.len() {
            let _ = parse_request(&seed[..i]);
        }
    }
}
