//! `http://` and `https://` binary caches through one pooled reqwest client per
//! cache: at most `http-connections` requests in flight, `connect-timeout`, and
//! retries with exponential backoff for transient failures (connection errors,
//! time-outs, HTTP 5xx and 429).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Body, Client, Method, Response, StatusCode};
use tokio::io::AsyncReadExt as _;
use tokio::sync::Semaphore;

use super::{
    capped, check_announced, check_key, BinaryCache, Stream, TransportOptions, MAX_SMALL_FILE,
};
use crate::error::{CacheError, SubstError};
use crate::runtime::{channel, runtime};

pub struct HttpCache {
    base: String,
    client: Client,
    slots: Arc<Semaphore>,
    attempts: u32,
}

/// The outcome of one attempt.
enum Attempt {
    Done(Response),
    Absent,
    Failed { message: String, transient: bool },
}

impl HttpCache {
    pub fn new(base: &str, opts: &TransportOptions) -> Result<Self, SubstError> {
        crate::runtime::install_crypto();
        let conns = opts.http_connections.max(1);
        let mut builder = Client::builder()
            .pool_max_idle_per_host(conns)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("rix/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true);
        if let Some(t) = opts.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        let client = builder.build().map_err(|e| SubstError::Open {
            cache: base.to_owned(),
            message: format!("cannot create an HTTP client: {e}"),
        })?;
        Ok(Self {
            base: base.to_owned(),
            client,
            slots: Arc::new(Semaphore::new(conns)),
            attempts: opts.attempts.max(1),
        })
    }

    fn url_of(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// Sends a request, retrying transient failures with backoff
    /// (100 ms, 200 ms, 400 ms... with jitter).
    async fn request(
        &self,
        method: Method,
        key: &str,
        body: Option<&Payload<'_>>,
        content_type: &str,
    ) -> Result<Option<Response>, CacheError> {
        let op = match method {
            Method::PUT => "upload",
            Method::HEAD => "probe",
            _ => "download",
        };
        let url = self.url_of(key);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.client.request(method.clone(), &url);
            if let Some(payload) = body {
                let (b, len) = payload
                    .body()
                    .await
                    .map_err(|e| CacheError::new(&self.base, op, key, e.to_string(), false))?;
                req = req
                    .header("content-type", content_type)
                    .header("content-length", len)
                    .body(b);
            }
            let outcome = match req.send().await {
                Ok(resp) => classify(resp, method == Method::PUT),
                Err(e) => Attempt::Failed {
                    transient: !is_dns_failure(&e) && (e.is_connect() || e.is_timeout()),
                    message: error_chain(&e),
                },
            };
            match outcome {
                Attempt::Done(r) => return Ok(Some(r)),
                Attempt::Absent => return Ok(None),
                Attempt::Failed { message, transient } => {
                    if !transient || attempt >= self.attempts {
                        let message = if attempt > 1 {
                            format!("{message} (after {attempt} attempts)")
                        } else {
                            message
                        };
                        return Err(CacheError::new(&self.base, op, key, message, transient));
                    }
                    let jitter = u64::from(std::process::id() % 50) + u64::from(attempt) * 7;
                    tokio::time::sleep(Duration::from_millis(100 * (1 << (attempt - 1)) + jitter))
                        .await;
                }
            }
        }
    }
}

/// What a PUT sends: bytes in memory, or a file read in pieces as it is sent
/// (opened again for each attempt).
enum Payload<'a> {
    Bytes(bytes::Bytes),
    File(&'a Path),
}

/// Pieces a file is sent in.
const FILE_PIECE: usize = 256 * 1024;

impl Payload<'_> {
    /// A fresh body and its length.
    async fn body(&self) -> std::io::Result<(Body, u64)> {
        match self {
            Self::Bytes(b) => Ok((Body::from(b.clone()), b.len() as u64)),
            Self::File(path) => {
                let file = tokio::fs::File::open(path).await?;
                let len = file.metadata().await?.len();
                let pieces = futures_util::stream::try_unfold(file, |mut file| async move {
                    let mut buf = bytes::BytesMut::with_capacity(FILE_PIECE);
                    let n = file.read_buf(&mut buf).await?;
                    Ok::<_, std::io::Error>((n > 0).then(|| (buf.freeze(), file)))
                });
                Ok((Body::wrap_stream(pieces), len))
            }
        }
    }
}

impl HttpCache {
    fn upload(
        &self,
        key: &str,
        payload: Payload<'_>,
        content_type: &str,
    ) -> Result<(), CacheError> {
        check_key(&self.base, "upload", key)?;
        runtime().block_on(async {
            let _slot = self
                .slots
                .acquire()
                .await
                .expect("semaphore is never closed");
            match self
                .request(Method::PUT, key, Some(&payload), content_type)
                .await?
            {
                Some(_) => Ok(()),
                None => Err(CacheError::new(&self.base, "upload", key, "refused", false)),
            }
        })
    }
}

fn classify(resp: Response, is_put: bool) -> Attempt {
    let status = resp.status();
    if status.is_success() {
        return Attempt::Done(resp);
    }
    if !is_put
        && matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::GONE
        )
    {
        return Attempt::Absent;
    }
    Attempt::Failed {
        message: format!("HTTP error {status}"),
        transient: status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT,
    }
}

/// A name that does not resolve will not resolve a moment later either.
fn is_dns_failure(e: &reqwest::Error) -> bool {
    error_chain(e).contains("dns error")
}

fn error_chain(e: &dyn std::error::Error) -> String {
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

impl BinaryCache for HttpCache {
    fn url(&self) -> &str {
        &self.base
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        check_key(&self.base, "download", key)?;
        runtime().block_on(async {
            let _slot = self
                .slots
                .acquire()
                .await
                .expect("semaphore is never closed");
            let Some(mut resp) = self.request(Method::GET, key, None, "").await? else {
                return Ok(None);
            };
            let limit = Some(MAX_SMALL_FILE);
            check_announced(&self.base, "download", key, resp.content_length(), limit)?;
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| CacheError::new(&self.base, "download", key, error_chain(&e), true))?
            {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > MAX_SMALL_FILE {
                    let message = format!("the file is bigger than {MAX_SMALL_FILE} bytes");
                    return Err(CacheError::new(&self.base, "download", key, message, false));
                }
            }
            Ok(Some(body))
        })
    }

    fn open(&self, key: &str, limit: Option<u64>) -> Result<Option<Stream>, CacheError> {
        check_key(&self.base, "download", key)?;
        let rt = runtime();
        let (slot, resp) = rt.block_on(async {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            Ok::<_, CacheError>((slot, self.request(Method::GET, key, None, "").await?))
        })?;
        let Some(mut resp) = resp else {
            return Ok(None);
        };
        check_announced(&self.base, "download", key, resp.content_length(), limit)?;
        let (tx, reader) = channel();
        let what = format!("{}: download '{key}'", self.base);
        rt.spawn(async move {
            let _slot = slot;
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            return; // the reader gave up
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let msg = format!("{what}: {}", error_chain(&e));
                        let _ = tx.send(Err(std::io::Error::other(msg))).await;
                        return;
                    }
                }
            }
        });
        Ok(Some(capped(&self.base, key, Box::new(reader), limit)))
    }

    fn put(&self, key: &str, data: Vec<u8>, content_type: &str) -> Result<(), CacheError> {
        self.upload(key, Payload::Bytes(data.into()), content_type)
    }

    fn put_file(&self, key: &str, file: &Path, content_type: &str) -> Result<(), CacheError> {
        self.upload(key, Payload::File(file), content_type)
    }

    fn exists(&self, key: &str) -> Result<bool, CacheError> {
        check_key(&self.base, "probe", key)?;
        runtime().block_on(async {
            let _slot = self
                .slots
                .acquire()
                .await
                .expect("semaphore is never closed");
            Ok(self.request(Method::HEAD, key, None, "").await?.is_some())
        })
    }
}
