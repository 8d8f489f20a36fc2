//! Copying store paths to a binary cache, as `nix copy --to`: whole closures,
//! skipping what the cache has; each NAR compressed (`zstd` unless the URL says
//! `?compression=xz|bzip2|none`, at `?compression-level=N`) into a temporary
//! file as it is serialised (memory stays bounded), stored as
//! `nar/<FileHash nix32>.nar.<ext>`, then `<hash>.narinfo` with `FileHash` and
//! `FileSize`, signed with every given key. A narinfo is written only after the
//! narinfos of its references, so the cache never advertises a path whose closure
//! it lacks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use rix_formats::cache_info::CacheInfo;
use rix_formats::hash::{Hash, HashAlgo, Hasher};
use rix_formats::narinfo::NarInfo;
use rix_formats::signature::{SecretKey, Signature};
use rix_formats::StorePath;
use rix_store::archive;
use rix_store::local_store::LocalStore;
use rix_store::path_info::ValidPathInfo;
use tempfile::TempPath;

use crate::cache::{self, BinaryCache, CACHE_INFO_MIME, NARINFO_MIME, NAR_MIME};
use crate::compression::Compression;
use crate::error::{Result, SubstError};
use crate::observer::{SubstEvent, SubstObserver};
use crate::url::CacheUrl;
use crate::util::par_map;

/// How to write to a cache.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub compression: Compression,
    /// `None`: the method's default.
    pub level: Option<i32>,
    /// Keys to sign narinfos with.
    pub keys: Vec<SecretKey>,
    /// Paths compressed and uploaded at once.
    pub jobs: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Zstd,
            level: None,
            keys: Vec::new(),
            jobs: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
        }
    }
}

impl UploadOptions {
    /// Options from a cache URL's `compression`, `compression-level` and
    /// `secret-key` parameters, plus `extra_keys`.
    pub fn from_url(url: &CacheUrl, extra_keys: Vec<SecretKey>) -> Result<Self> {
        let mut opts = Self {
            keys: extra_keys,
            ..Self::default()
        };
        if let Some(c) = url.param("compression") {
            opts.compression = c.parse().map_err(|e: String| SubstError::Url {
                url: url.display(),
                message: e,
            })?;
        }
        if let Some(l) = url.param("compression-level") {
            let level: i32 = l.parse().map_err(|_| SubstError::Url {
                url: url.display(),
                message: format!("compression-level '{l}' is not an integer"),
            })?;
            opts.level = (level >= 0).then_some(level);
        }
        if let Some(k) = url.param("secret-key") {
            opts.keys.extend(crate::substituter::read_secret_keys([k])?);
        }
        Ok(opts)
    }
}

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub uploaded: Vec<StorePath>,
    /// Paths the cache had already.
    pub present: Vec<StorePath>,
    /// Bytes written (compressed) and NAR bytes they hold.
    pub file_bytes: u64,
    pub nar_bytes: u64,
}

/// Writes `StoreDir` into a cache that has no `nix-cache-info`; refuses a cache
/// made for another store directory.
pub fn ensure_cache_info(cache: &dyn BinaryCache, store: &LocalStore) -> Result<()> {
    match cache::cache_info(cache)? {
        Some(info) => info
            .check_store_dir(store.store_dir())
            .map_err(|e| SubstError::Open {
                cache: cache.url().to_owned(),
                message: e.to_string(),
            }),
        None => Ok(cache.put(
            "nix-cache-info",
            CacheInfo::new(store.store_dir()).to_string().into_bytes(),
            CACHE_INFO_MIME,
        )?),
    }
}

/// A writer that hashes (SHA-256) and counts what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressed NAR of `info.path`, spooled to a temporary file in
/// `spool_dir` (deleted when the returned path is dropped), and its narinfo
/// (unsigned, without the signatures of `info`). Memory stays bounded whatever
/// the NAR's size: the NAR is hashed, compressed, hashed again and written as it
/// is serialised. Checks the NAR against the database's hash.
pub fn make_nar(
    store: &LocalStore,
    info: &ValidPathInfo,
    opts: &UploadOptions,
    spool_dir: &Path,
) -> Result<(TempPath, NarInfo)> {
    let printed = store.print(&info.path);
    std::fs::create_dir_all(spool_dir).map_err(SubstError::io(format!(
        "cannot create '{}' for compressed NARs",
        spool_dir.display()
    )))?;
    // As any file the cache writes: readable by all unless the umask says not.
    let (spool, spool_path) = tempfile::Builder::new()
        .prefix(".tmp-nar-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(spool_dir)
        .map_err(SubstError::io(format!(
            "cannot create a temporary file in '{}'",
            spool_dir.display()
        )))?
        .into_parts();
    let writing = format!(
        "writing the compressed NAR of '{printed}' to '{}'",
        spool_path.display()
    );
    let file = HashingWriter {
        inner: io::BufWriter::with_capacity(256 * 1024, spool),
        hasher: Hasher::new(HashAlgo::Sha256),
        count: 0,
    };
    let enc = opts
        .compression
        .encoder(file, opts.level)
        .map_err(SubstError::io(format!("compressing '{printed}'")))?;
    let mut nar = HashingWriter {
        inner: io::BufWriter::with_capacity(256 * 1024, enc),
        hasher: Hasher::new(HashAlgo::Sha256),
        count: 0,
    };
    archive::dump_to(&store.real_path(&info.path), &mut nar)
        .map_err(|e| SubstError::Other(format!("cannot serialise '{printed}': {e}")))?;
    let (nar_hash, nar_size) = (nar.hasher.finish(), nar.count);
    let enc = nar
        .inner
        .into_inner()
        .map_err(|e| SubstError::io(writing.clone())(e.into_error()))?;
    let mut file = enc.finish().map_err(SubstError::io(writing.clone()))?;
    file.flush().map_err(SubstError::io(writing))?;
    if nar_hash != info.nar_hash || (info.nar_size != 0 && nar_size != info.nar_size) {
        return Err(SubstError::Other(format!(
            "'{printed}' is corrupt: its NAR hash is {nar_hash} ({nar_size} bytes), the database says {} ({} bytes)",
            info.nar_hash, info.nar_size
        )));
    }
    let file_hash: Hash = file.hasher.finish();
    let url = format!(
        "nar/{}{}",
        file_hash.to_nix32(),
        opts.compression.nar_extension()
    );
    let bad = |e: rix_formats::narinfo::NarInfoError| {
        SubstError::Other(format!("narinfo of '{printed}': {e}"))
    };
    let mut ni = NarInfo::new(
        store.store_dir(),
        info.path.clone(),
        &url,
        nar_hash,
        nar_size,
    )
    .map_err(bad)?;
    ni.set_compression(Some(opts.compression.name()))
        .map_err(bad)?;
    ni.set_file_hash(Some(file_hash));
    ni.set_file_size(Some(file.count));
    ni.set_references(info.references.iter().cloned());
    ni.set_deriver(info.deriver.clone());
    ni.set_ca(info.ca);
    Ok((spool_path, ni))
}

/// Adds the store's signatures of `info` and new ones by `keys`.
pub fn sign_narinfo(ni: &mut NarInfo, info: &ValidPathInfo, keys: &[SecretKey]) {
    for s in &info.sigs {
        if let Ok(sig) = s.parse::<Signature>() {
            ni.add_signature(&sig);
        }
    }
    for k in keys {
        ni.sign(k);
    }
}

/// Copies the closures of `paths` to `cache` (see the module docs).
pub fn copy_to(
    store: &LocalStore,
    cache: &dyn BinaryCache,
    paths: &[StorePath],
    opts: &UploadOptions,
    observer: &dyn SubstObserver,
) -> Result<CopyReport> {
    ensure_cache_info(cache, store)?;
    let graph = store.closure_graph(paths.iter().cloned())?;
    let order: Vec<StorePath> = graph.topo_order().into_iter().cloned().collect();
    let present: Vec<Result<bool>> = par_map(&order, 16, |p| {
        Ok(cache.exists(&cache::narinfo_key(p.hash_part()))?)
    });
    let mut report = CopyReport::default();
    let mut todo = Vec::new();
    for (p, has) in order.iter().zip(present) {
        if has? {
            report.present.push(p.clone());
        } else {
            todo.push(p.clone());
        }
    }
    if todo.is_empty() {
        return Ok(report);
    }
    let todo_set: BTreeSet<&StorePath> = todo.iter().collect();
    let next = AtomicUsize::new(0);
    let jobs = opts.jobs.clamp(1, todo.len());
    let mut first_error: Option<SubstError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<(NarInfo, u64, u64, Instant)>)>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let (todo, next) = (&todo, &next);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = todo.get(i) else { break };
                let started = Instant::now();
                let result = (|| {
                    let info = store.path_info(path)?;
                    let (spooled, mut ni) = make_nar(store, &info, opts, &cache.spool_dir())?;
                    sign_narinfo(&mut ni, &info, &opts.keys);
                    let size = ni.file_size().unwrap_or(0);
                    if !cache.exists(ni.url())? {
                        cache.put_spooled(ni.url(), spooled, NAR_MIME)?;
                    }
                    Ok((ni, size, info.nar_size, started))
                })();
                let failed = result.is_err();
                if tx.send((i, result)).is_err() || failed {
                    break;
                }
            });
        }
        drop(tx);
        // Write narinfos once their references' narinfos exist.
        let mut waiting: BTreeMap<usize, (NarInfo, u64, u64, Instant)> = BTreeMap::new();
        let mut written: HashSet<StorePath> = HashSet::new();
        for (i, result) in rx {
            match result {
                Ok(item) => {
                    waiting.insert(i, item);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                    continue;
                }
            }
            loop {
                let ready: Vec<usize> = waiting
                    .iter()
                    .filter(|(_, (ni, ..))| {
                        ni.references().iter().all(|r| {
                            r == ni.store_path() || !todo_set.contains(r) || written.contains(r)
                        })
                    })
                    .map(|(i, _)| *i)
                    .collect();
                if ready.is_empty() {
                    break;
                }
                for i in ready {
                    let (ni, size, nar_size, started) =
                        waiting.remove(&i).expect("ready is waiting");
                    let key = cache::narinfo_key(ni.store_path().hash_part());
                    if let Err(e) = cache.put(&key, ni.to_string().into_bytes(), NARINFO_MIME) {
                        first_error.get_or_insert(e.into());
                        continue;
                    }
                    observer.event(SubstEvent::Uploaded {
                        path: ni.store_path(),
                        cache: cache.url(),
                        file_size: size,
                        nar_size,
                        elapsed: started.elapsed(),
                    });
                    report.file_bytes += size;
                    report.nar_bytes += nar_size;
                    written.insert(ni.store_path().clone());
                    report.uploaded.push(ni.store_path().clone());
                }
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
