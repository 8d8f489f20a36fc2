//! `s3://BUCKET[/PREFIX]?region=..&endpoint=..&scheme=..&profile=..`: a binary
//! cache in an S3 bucket, on AWS or any S3-compatible service, through
//! `object_store`. Credentials come from `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else from the profile
//! (`profile=` or `AWS_PROFILE`, default `default`) in `~/.aws/credentials`
//! (`AWS_SHARED_CREDENTIALS_FILE`); without any, requests go unsigned (public
//! buckets).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStoreExt as _, PutPayload, RetryConfig, WriteMultipart};

use super::{
    capped, check_announced, check_key, BinaryCache, Stream, TransportOptions, MAX_SMALL_FILE,
};
use crate::error::{CacheError, SubstError};
use crate::runtime::{channel, runtime};
use crate::url::{CacheUrl, Location};

/// Parts of a multipart upload (S3 wants at least 5 MiB but for the last).
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once: the memory of one upload is about this many parts.
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3Cache {
    store: AmazonS3,
    prefix: String,
    url: String,
}

impl S3Cache {
    pub fn new(url: &CacheUrl, opts: &TransportOptions) -> Result<Self, SubstError> {
        let Location::S3 { bucket, prefix } = &url.location else {
            unreachable!("S3Cache::new on a non-S3 URL")
        };
        crate::runtime::install_crypto();
        let shown = url.display();
        let mut client =
            ClientOptions::new().with_pool_max_idle_per_host(opts.http_connections.max(1));
        if let Some(t) = opts.connect_timeout {
            client = client.with_connect_timeout(t);
        }
        let scheme = url.param("scheme").unwrap_or("https");
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(url.param("region").unwrap_or("us-east-1"))
            .with_allow_http(scheme == "http")
            .with_retry(RetryConfig {
                max_retries: opts.attempts.saturating_sub(1) as usize,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = url.param("endpoint") {
            let endpoint = if endpoint.contains("://") {
                endpoint.to_owned()
            } else {
                format!("{scheme}://{endpoint}")
            };
            client = client.with_allow_http(endpoint.starts_with("http://"));
            b = b
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        b = b.with_client_options(client);
        match credentials(url.param("profile")) {
            Some((id, secret, token)) => {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(t) = token {
                    b = b.with_token(t);
                }
            }
            None => b = b.with_skip_signature(true),
        }
        let store = b.build().map_err(|e| SubstError::Open {
            cache: shown.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            store,
            prefix: prefix.clone(),
            url: shown,
        })
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self, op: &'static str, key: &str, e: &object_store::Error) -> CacheError {
        let transient = !matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        );
        CacheError::new(&self.url, op, key, e.to_string(), transient)
    }
}

/// Access key id, secret and session token.
fn credentials(profile: Option<&str>) -> Option<(String, String, Option<String>)> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Some((id, secret, std::env::var("AWS_SESSION_TOKEN").ok()));
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = profile
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".to_owned());
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == profile;
        } else if in_section {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().to_owned();
                match k.trim() {
                    "aws_access_key_id" => id = Some(v),
                    "aws_secret_access_key" => secret = Some(v),
                    "aws_session_token" => token = Some(v),
                    _ => {}
                }
            }
        }
    }
    Some((id?, secret?, token))
}

impl BinaryCache for S3Cache {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        check_key(&self.url, "download", key)?;
        runtime().block_on(async {
            let result = match self.store.get(&self.path(key)).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.err("download", key, &e)),
            };
            let limit = Some(MAX_SMALL_FILE);
            check_announced(&self.url, "download", key, Some(result.meta.size), limit)?;
            let mut body = Vec::new();
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk.map_err(|e| self.err("download", key, &e))?);
                if body.len() as u64 > MAX_SMALL_FILE {
                    let message = format!("the file is bigger than {MAX_SMALL_FILE} bytes");
                    return Err(CacheError::new(&self.url, "download", key, message, false));
                }
            }
            Ok(Some(body))
        })
    }

    fn open(&self, key: &str, limit: Option<u64>) -> Result<Option<Stream>, CacheError> {
        check_key(&self.url, "download", key)?;
        let rt = runtime();
        let result = rt.block_on(async {
            match self.store.get(&self.path(key)).await {
                Ok(r) => Ok(Some(r)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("download", key, &e)),
            }
        })?;
        let Some(result) = result else {
            return Ok(None);
        };
        check_announced(&self.url, "download", key, Some(result.meta.size), limit)?;
        let (tx, reader) = channel();
        let what = format!("{}: download '{key}'", self.url);
        rt.spawn(async move {
            let mut stream = result.into_stream();
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| std::io::Error::other(format!("{what}: {e}")));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Some(capped(&self.url, key, Box::new(reader), limit)))
    }

    fn put(&self, key: &str, data: Vec<u8>, _content_type: &str) -> Result<(), CacheError> {
        check_key(&self.url, "upload", key)?;
        runtime().block_on(async {
            self.store
                .put(&self.path(key), PutPayload::from(data))
                .await
                .map(drop)
                .map_err(|e| self.err("upload", key, &e))
        })
    }

    /// Small files in one request; larger ones as a multipart upload read
    /// from the file part by part, a few parts in flight.
    fn put_file(&self, key: &str, file: &Path, content_type: &str) -> Result<(), CacheError> {
        check_key(&self.url, "upload", key)?;
        let io_err =
            |e: std::io::Error| CacheError::new(&self.url, "upload", key, e.to_string(), false);
        let mut f = std::fs::File::open(file).map_err(io_err)?;
        let len = f.metadata().map_err(io_err)?.len();
        if len <= PART_SIZE as u64 {
            let mut data = Vec::with_capacity(len as usize);
            f.read_to_end(&mut data).map_err(io_err)?;
            return self.put(key, data, content_type);
        }
        runtime().block_on(async {
            let upload = self
                .store
                .put_multipart(&self.path(key))
                .await
                .map_err(|e| self.err("upload", key, &e))?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut buf = vec![0; 1 << 20];
            let sent = async {
                loop {
                    parts.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                    // A local file: reading it blocks briefly, as the caller's
                    // thread does anyway while this runs.
                    let n = f.read(&mut buf).map_err(|e| object_store::Error::Generic {
                        store: "local file",
                        source: Box::new(e),
                    })?;
                    if n == 0 {
                        return Ok::<_, object_store::Error>(());
                    }
                    parts.write(&buf[..n]);
                }
            }
            .await;
            match sent {
                Ok(()) => parts.finish().await.map(drop),
                Err(e) => {
                    let _ = parts.abort().await;
                    Err(e)
                }
            }
            .map_err(|e| self.err("upload", key, &e))
        })
    }

    fn exists(&self, key: &str) -> Result<bool, CacheError> {
        check_key(&self.url, "probe", key)?;
        runtime().block_on(async {
            match self.store.head(&self.path(key)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(self.err("probe", key, &e)),
            }
        })
    }
}
