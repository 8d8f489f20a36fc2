//! What a cache sends is bounded by what its narinfo announces: a NAR that
//! decompresses beyond `NarSize` (a decompression bomb), a download beyond
//! `FileSize`, a narinfo of many MiB. Each is refused with a message naming the
//! path and the sizes, after reading at most one byte too many, and nothing is
//! left in the store directory.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use rix_formats::narinfo::NarInfo;
use rix_formats::signature::SecretKey;
use rix_formats::StorePath;
use rix_substitute::upload::{copy_to, UploadOptions};
use rix_substitute::{Compression, SubstituteReport};
use rix_testutil::http::{DirServer, ServeOptions};

/// A signed `file://` cache holding `a` (a small text) and `t` (a 100 kB file).
struct Fixture {
    _src: Root,
    cache: PathBuf,
    key: SecretKey,
    public: String,
    a: StorePath,
    t: StorePath,
}

fn fixture(work: &Path) -> Fixture {
    let src = Root::new();
    let store = src.open();
    let a = store.add_text("a", b"A", &BTreeSet::new()).unwrap();
    let t = store
        .add_text("t", &vec![b'x'; 100_000], &BTreeSet::new())
        .unwrap();
    let key = SecretKey::generate("test-1").unwrap();
    let public = key.to_public().to_string();
    let cache = work.join("cache");
    let url = rix_substitute::CacheUrl::parse(&format!("file://{}", cache.display())).unwrap();
    let c = rix_substitute::cache::open(&url, &Default::default()).unwrap();
    let opts = UploadOptions {
        compression: Compression::None,
        keys: vec![key.clone()],
        ..UploadOptions::default()
    };
    copy_to(&store, c.as_ref(), &[a.clone(), t.clone()], &opts, quiet()).unwrap();
    Fixture {
        _src: src,
        cache,
        key,
        public,
        a,
        t,
    }
}

impl Fixture {
    fn narinfo_path(&self, p: &StorePath) -> PathBuf {
        self.cache.join(format!("{}.narinfo", p.hash_part()))
    }

    /// Rewrites and re-signs a narinfo.
    fn edit(&self, p: &StorePath, f: impl FnOnce(&mut NarInfo)) {
        let text = std::fs::read_to_string(self.narinfo_path(p)).unwrap();
        let mut ni = NarInfo::parse(&nix_store_dir(), &text).unwrap();
        f(&mut ni);
        ni.clear_signatures();
        ni.sign(&self.key);
        std::fs::write(self.narinfo_path(p), ni.to_string()).unwrap();
    }

    /// Substitutes `p` into a fresh store while watching how many bytes its
    /// store directory holds; returns the report, the problem and the most
    /// the store directory held. Asserts that nothing is left there.
    fn substitute(&self, url: &str, p: &StorePath) -> (SubstituteReport, String, u64) {
        let dst = Root::new();
        let store = dst.open();
        let dir = dst.path().join("nix/store");
        let (done, most) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let watcher = {
            let (dir, done, most) = (dir.clone(), done.clone(), most.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    most.fetch_max(du(&dir), Ordering::Relaxed);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            })
        };
        let report = substituter(&[url.to_owned()], &self.public, true)
            .substitute(&store, std::slice::from_ref(p), quiet())
            .unwrap();
        done.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        let problem = report.problem(store.store_dir());
        assert!(!store.is_valid(p).unwrap());
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "left in the store: {left:?}");
        (report, problem, most.load(Ordering::Relaxed))
    }
}

/// Bytes of the regular files under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn nar_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    out.resize(out.len().next_multiple_of(8), 0);
}

const MIB: u64 = 1 << 20;

/// Writes a bomb: a NAR of one regular file announced as 2 GiB, followed by
/// `zeros_mib` MiB of zeros, compressed with `c` as concatenated streams (one
/// for the header, then the same compressed MiB of zeros again and again), so
/// that making it costs neither time nor memory. Returns its size.
fn write_bomb(file: &Path, c: Compression, zeros_mib: u64) -> u64 {
    let mut header = Vec::new();
    for s in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"regular",
        b"contents",
    ] {
        nar_str(&mut header, s);
    }
    header.extend_from_slice(&(2048 * MIB).to_le_bytes());
    let pack = |data: &[u8]| {
        let mut enc = c.encoder(Vec::new(), Some(1)).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    let zeros = pack(&vec![0u8; MIB as usize]);
    let mut out = BufWriter::new(File::create(file).unwrap());
    out.write_all(&pack(&header)).unwrap();
    for _ in 0..zeros_mib {
        out.write_all(&zeros).unwrap();
    }
    out.flush().unwrap();
    std::fs::metadata(file).unwrap().len()
}

fn assert_refused(problem: &str, p: &StorePath, what: &str) {
    assert!(
        problem.contains(&format!("/nix/store/{p}")),
        "path not named in: {problem}"
    );
    assert!(problem.contains(what), "'{what}' not in: {problem}");
}

#[test]
fn decompression_bombs_stop_one_byte_past_nar_size() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    for c in [Compression::Zstd, Compression::Xz, Compression::Bzip2] {
        let name = format!("nar/bomb{}", c.nar_extension());
        let size = write_bomb(&f.cache.join(&name), c, 512);
        assert!(size < 8 * MIB, "{c}: the bomb itself is {size} bytes");
        f.edit(&f.a, |ni| {
            ni.set_url(&name).unwrap();
            ni.set_compression(Some(c.name())).unwrap();
            ni.set_file_hash(None);
            ni.set_file_size(Some(size));
            ni.set_nar_size(120).unwrap();
        });
        let server = DirServer::start(&f.cache, ServeOptions::default());
        for url in [format!("file://{}", f.cache.display()), server.url()] {
            let (report, problem, most) = f.substitute(&url, &f.a);
            assert_eq!(report.failed.len(), 1, "{c} {url}: {problem}");
            assert_refused(
                &problem,
                &f.a,
                "decompresses to more than the 120 bytes of the narinfo's NarSize (stopped after 121 bytes)",
            );
            assert!(most < MIB, "{c} {url}: the store held {most} bytes");
        }
    }
}

#[test]
fn downloads_beyond_file_size_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    f.edit(&f.t, |ni| ni.set_file_size(Some(1000)));
    let file_url = format!("file://{}", f.cache.display());
    let announced = DirServer::start(&f.cache, ServeOptions::default());
    // The file's size (or Content-Length) says so before anything is read.
    for url in [&file_url, &announced.url()] {
        let (_, problem, most) = f.substitute(url, &f.t);
        assert_refused(&problem, &f.t, "more than the 1000 expected");
        assert!(most < 1001, "{url}: the store held {most} bytes");
    }
    // Unannounced: the stream stops one byte past FileSize.
    let unannounced = DirServer::start(
        &f.cache,
        ServeOptions {
            no_length: true,
            ..ServeOptions::default()
        },
    );
    let (_, problem, most) = f.substitute(&unannounced.url(), &f.t);
    assert_refused(
        &problem,
        &f.t,
        "the cache sent more than the 1000 bytes of the narinfo's FileSize (stopped after 1001 bytes)",
    );
    assert!(most < 1001, "the store held {most} bytes");
}

#[test]
fn narinfos_of_many_mib_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    // A valid narinfo followed by 5 MiB of a field Nix would ignore.
    let mut text = std::fs::read_to_string(f.narinfo_path(&f.a)).unwrap();
    for i in 0..(5 * MIB / 32) {
        text.push_str(&format!("Padding: {i:022}\n"));
    }
    std::fs::write(f.narinfo_path(&f.a), text).unwrap();
    let file_url = format!("file://{}", f.cache.display());
    let announced = DirServer::start(&f.cache, ServeOptions::default());
    let unannounced = DirServer::start(
        &f.cache,
        ServeOptions {
            no_length: true,
            ..ServeOptions::default()
        },
    );
    for url in [file_url, announced.url(), unannounced.url()] {
        let (report, problem, _) = f.substitute(&url, &f.a);
        assert!(!report.errors.is_empty(), "{url}: {problem}");
        assert!(
            problem.contains(&format!("{}.narinfo", f.a.hash_part()))
                && (problem.contains("bigger than 4194304 bytes")
                    || problem.contains("more than the 4194304 expected")),
            "{url}: {problem}"
        );
    }
}
