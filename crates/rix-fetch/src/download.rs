//! Downloads into the store, cached in the fetcher cache: Nix's
//! `downloadFile` (a file added flat, as `builtins.fetchurl` and the `file`
//! inputs take it) and `downloadTarball` (an archive unpacked to a tree, as
//! `builtins.fetchTarball`, the `tarball` inputs and the forges' archives take
//! it), in `libfetchers/tarball.cc`. The transfer itself is
//! `rix_substitute::download` (the binary caches' HTTP client).
//!
//! Cache entries, as Nix keys them: domain `file`, key `{url, name, store}`
//! → `{etag, url, immutableUrl?, storePath}`; domain `tarball`, key `{url,
//! store}` → `{etag, narHash, lastModified, immutableUrl?, storePath}` (Nix
//! keeps the tree in a Git repository and records its tree hash; rix keeps
//! the tree in the store and records its NAR hash). An entry younger than
//! `tarball-ttl` is used without asking the server; an older one is
//! revalidated with its ETag (`If-None-Match`), and used, with a warning, when
//! the server cannot be reached. Every URL of the redirect chain gets an entry.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rix_formats::content_address::ContentAddress;
use rix_formats::flake_ref::{AttrValue, Attrs};
use rix_formats::hash::Hasher;
use rix_formats::store_path::{FileIngestionMethod, StorePath};
use rix_formats::{Hash, HashAlgo};
use rix_store::path_info::ValidPathInfo;
use rix_store::store_api::AddFlags;
use rix_substitute::download::{self as transfer, DownloadError, Request, Response};

use crate::error::{FetchError, Result};
use crate::unpack;
use crate::Fetcher;

/// A file downloaded into the store (Nix's `DownloadFileResult`).
#[derive(Debug, Clone)]
pub struct DownloadedFile {
    pub store_path: StorePath,
    pub etag: String,
    pub effective_url: String,
    pub immutable_url: Option<String>,
}

/// A tarball unpacked into the store (Nix's `DownloadTarballResult`, with
/// the tree as a store path under the name asked for).
#[derive(Debug, Clone)]
pub struct DownloadedTarball {
    pub store_path: StorePath,
    pub nar_hash: Hash,
    pub last_modified: u64,
    pub immutable_url: Option<String>,
}

fn str_attrs(pairs: &[(&str, &str)]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), AttrValue::Str((*v).to_owned())))
        .collect()
}

fn get_str(attrs: &Attrs, name: &str) -> Option<String> {
    match attrs.get(name) {
        Some(AttrValue::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

impl Fetcher<'_> {
    fn request<'u>(
        &'u self,
        url: &'u str,
        etag: Option<&'u str>,
        headers: &[(String, String)],
    ) -> Request<'u> {
        Request {
            url,
            expected_etag: etag,
            netrc_file: self.settings.netrc_file.as_deref(),
            connect_timeout: (self.settings.connect_timeout > 0)
                .then(|| Duration::from_secs(self.settings.connect_timeout)),
            attempts: self.settings.download_attempts,
            headers: headers.to_vec(),
        }
    }

    /// Nix's `downloadFile`: `url` as the flat file `name` in the store.
    pub fn download_file(
        &self,
        url: &str,
        name: &str,
        headers: &[(String, String)],
    ) -> Result<DownloadedFile> {
        let mut key = str_attrs(&[("url", url), ("name", name)]);
        let cached = self.cache.lookup_store_path("file", &key, self.store)?;
        let from_cache = |hit: &crate::cache::StorePathHit| DownloadedFile {
            store_path: hit.store_path.clone(),
            etag: get_str(&hit.value, "etag").unwrap_or_default(),
            effective_url: get_str(&hit.value, "url").unwrap_or_else(|| url.to_owned()),
            immutable_url: get_str(&hit.value, "immutableUrl"),
        };
        if let Some(hit) = cached.as_ref().filter(|h| !h.expired) {
            return Ok(from_cache(hit));
        }
        let etag = cached.as_ref().and_then(|h| get_str(&h.value, "etag"));
        let tmp = tempfile::Builder::new().prefix("rix-download-").tempdir()?;
        let file_path = tmp.path().join("file");
        let mut file = std::fs::File::create(&file_path)?;
        let res = match transfer::download(&self.request(url, etag.as_deref(), headers), &mut file)
        {
            Ok(r) => r,
            Err(e) => {
                if let Some(hit) = &cached {
                    eprintln!("warning: {}; using cached version", e.message);
                    return Ok(from_cache(hit));
                }
                return Err(FetchError::msg(e.message));
            }
        };
        file.flush()?;
        drop(file);
        let store_path = match (&res.cached, &cached) {
            (true, Some(hit)) => hit.store_path.clone(),
            _ => self.add_flat(&file_path, name)?,
        };
        let mut info = str_attrs(&[("etag", &res.etag)]);
        if let Some(u) = &res.immutable_url {
            info.insert("immutableUrl".into(), AttrValue::Str(u.clone()));
        }
        let last = res.urls.last().cloned().unwrap_or_else(|| url.to_owned());
        info.insert("url".into(), AttrValue::Str(last.clone()));
        for u in &res.urls {
            key.insert("url".into(), AttrValue::Str(u.clone()));
            self.cache
                .upsert_store_path("file", &key, self.store, &info, &store_path)?;
        }
        Ok(DownloadedFile {
            store_path,
            etag: res.etag,
            effective_url: last,
            immutable_url: res.immutable_url,
        })
    }

    /// Adds the file at `src` as a flat SHA-256 content-addressed path.
    fn add_flat(&self, src: &Path, name: &str) -> Result<StorePath> {
        Ok(self
            .store
            .add_path(src, name, FileIngestionMethod::Flat, HashAlgo::Sha256)?)
    }

    /// Nix's `downloadTarball_` followed by `fetchToStore`: `url` unpacked,
    /// its tree in the store as `name`.
    pub fn download_tarball(
        &self,
        url: &str,
        name: &str,
        headers: &[(String, String)],
    ) -> Result<DownloadedTarball> {
        let mut key = str_attrs(&[("url", url)]);
        let cached = self.cache.lookup_store_path("tarball", &key, self.store)?;
        let from_cache = |hit: &crate::cache::StorePathHit| -> Result<DownloadedTarball> {
            let nar_hash = get_str(&hit.value, "narHash")
                .and_then(|h| Hash::parse_any(&h, Some(HashAlgo::Sha256)).ok())
                .ok_or_else(|| FetchError::msg("fetcher cache: a tarball entry without narHash"))?;
            let store_path = self.store_as(&hit.store_path, &nar_hash, name)?;
            Ok(DownloadedTarball {
                store_path,
                nar_hash,
                last_modified: match hit.value.get("lastModified") {
                    Some(AttrValue::Int(i)) => *i,
                    _ => 0,
                },
                immutable_url: get_str(&hit.value, "immutableUrl"),
            })
        };
        if let Some(hit) = cached.as_ref().filter(|h| !h.expired) {
            return from_cache(hit);
        }
        let etag = cached.as_ref().and_then(|h| get_str(&h.value, "etag"));
        let tmp = tempfile::Builder::new().prefix("rix-tarball-").tempdir()?;
        let dest = tmp.path().join("unpacked");
        std::fs::create_dir(&dest)?;
        let request = self.request(url, etag.as_deref(), headers);
        let (downloaded, unpacked) = download_and_unpack(&request, &dest);
        let res = match downloaded {
            Ok(r) => r,
            // The unpacker stopped reading: its error is the one.
            Err(e) if e.error.kind == transfer::ErrorKind::Sink && unpacked.is_err() => {
                return Err(unpacked.expect_err("checked"));
            }
            Err(e) if e.written == 0 => {
                // Nix reads the archive from the download: libarchive reports it.
                // Its message holds the transfer's as rendered (`error: …`,
                // further lines indented).
                let inner: Vec<String> = e
                    .error
                    .message
                    .split('\n')
                    .enumerate()
                    .map(|(i, l)| match (i, l.is_empty()) {
                        (0, _) | (_, true) => l.to_owned(),
                        _ => format!("       {l}"),
                    })
                    .collect();
                return Err(FetchError::msg(format!(
                    "Failed to open archive (Source threw exception: error: {})",
                    inner.join("\n")
                )));
            }
            Err(e) => return Err(FetchError::msg(e.error.message)),
        };
        let (info, store_path) = match (res.cached, &cached) {
            (true, Some(hit)) => (hit.value.clone(), hit.store_path.clone()),
            _ => {
                let unpacked = unpacked?;
                let (path, nar_hash) = self.add_tree_hashed(&unpacked.root, name)?;
                let mut info = str_attrs(&[("etag", &res.etag), ("narHash", &nar_hash.to_sri())]);
                info.insert(
                    "lastModified".into(),
                    AttrValue::Int(unpacked.last_modified),
                );
                if let Some(u) = &res.immutable_url {
                    info.insert("immutableUrl".into(), AttrValue::Str(u.clone()));
                }
                (info, path)
            }
        };
        for u in &res.urls {
            key.insert("url".into(), AttrValue::Str(u.clone()));
            self.cache
                .upsert_store_path("tarball", &key, self.store, &info, &store_path)?;
        }
        from_cache(&crate::cache::StorePathHit {
            expired: false,
            value: info,
            store_path,
        })
    }

    /// Adds a tree (recursive, SHA-256) and returns its path and NAR hash.
    fn add_tree_hashed(&self, root: &Path, name: &str) -> Result<(StorePath, Hash)> {
        let path = self.add_tree(root, name)?;
        let info = self.store.path_info(&path)?;
        Ok((path, info.nar_hash))
    }

    /// The tree of valid `from` (NAR hash `nar_hash`) as a path named `name`:
    /// `from` itself when the name is the same, else a copy through its NAR.
    pub fn store_as(&self, from: &StorePath, nar_hash: &Hash, name: &str) -> Result<StorePath> {
        let ca = ContentAddress::Fixed(FileIngestionMethod::Recursive, *nar_hash);
        let path = self
            .store
            .store_dir()
            .make_path_from_ca(name, &ca, [], false)
            .map_err(|e| FetchError::msg(e.to_string()))?;
        if &path == from {
            return Ok(path);
        }
        self.store.add_temp_root(&path)?;
        if self.store.is_valid(&path)? {
            return Ok(path);
        }
        let src_info = self.store.path_info(from)?;
        let mut info = ValidPathInfo::new(path.clone(), *nar_hash, src_info.nar_size);
        info.ca = Some(ca);
        let (mut reader, mut writer) = std::io::pipe()?;
        let store = self.store;
        std::thread::scope(|s| -> Result<()> {
            let dumper = s.spawn(move || {
                let r = store.nar_from_path(from, &mut writer);
                drop(writer);
                r
            });
            let added = store.add_to_store_nar(&info, &mut reader, AddFlags::default());
            drop(reader);
            let dumped = dumper.join().unwrap_or_else(|_| {
                Err(rix_store::local_store::StoreError::Io {
                    path: from.to_string().into(),
                    source: std::io::Error::other("the NAR writer panicked"),
                })
            });
            added?;
            dumped?;
            Ok(())
        })?;
        Ok(path)
    }
}

/// A download that failed after `written` bytes.
struct Failed {
    error: DownloadError,
    written: u64,
}

/// Downloads `req` and unpacks it into `dest` at the same time: the transfer
/// writes into a pipe that an unpacking thread reads.
fn download_and_unpack(
    req: &Request<'_>,
    dest: &Path,
) -> (
    std::result::Result<Response, Failed>,
    Result<unpack::Unpacked>,
) {
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            return (
                Err(Failed {
                    error: DownloadError {
                        message: e.to_string(),
                        kind: transfer::ErrorKind::Misc,
                    },
                    written: 0,
                }),
                Err(e.into()),
            )
        }
    };
    std::thread::scope(|s| {
        let unpacker = s.spawn(move || {
            let mut reader = reader;
            let r = unpack::unpack(Box::new(&mut reader), dest);
            if r.is_ok() {
                // What follows the archive's end is read, not refused.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            }
            r
        });
        let mut sink = CountingWriter {
            inner: writer,
            count: 0,
        };
        let downloaded = transfer::download(req, &mut sink).map_err(|error| Failed {
            error,
            written: sink.count,
        });
        drop(sink);
        let unpacked = unpacker
            .join()
            .unwrap_or_else(|_| Err(FetchError::msg("the unpacking thread panicked")));
        (downloaded, unpacked)
    })
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 of a file's contents (Nix's `hashFile`).
pub fn hash_file(path: &Path) -> Result<Hash> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::new(HashAlgo::Sha256);
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finish())
}
