//! Bad caches: every problem is refused with a message naming the path and the
//! cache, and nothing unchecked is registered.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::*;
use rix_formats::narinfo::NarInfo;
use rix_formats::signature::SecretKey;
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::{HashAlgo, StorePath};
use rix_substitute::upload::{copy_to, UploadOptions};
use rix_substitute::{Compression, SubstituteReport};

/// A source store with `a` (text), `b` (text → a) and `t` (a tree), copied to a
/// signed `file://` cache without compression.
struct Fixture {
    _src: Root,
    cache: PathBuf,
    key: SecretKey,
    public: String,
    a: StorePath,
    b: StorePath,
    t: StorePath,
    started: Started,
}

/// Records the paths whose download started.
#[derive(Default)]
struct Started(std::sync::Mutex<Vec<StorePath>>);

impl rix_substitute::SubstObserver for Started {
    fn event(&self, event: rix_substitute::SubstEvent<'_>) {
        if let rix_substitute::SubstEvent::Started { path, .. } = event {
            self.0.lock().unwrap().push(path.clone());
        }
    }
}

impl Started {
    fn contains(&self, p: &StorePath) -> bool {
        self.0.lock().unwrap().contains(p)
    }
}

fn fixture(work: &Path) -> Fixture {
    let src = Root::new();
    let store = src.open();
    let a = store.add_text("a", b"A", &BTreeSet::new()).unwrap();
    let b = store
        .add_text(
            "b",
            format!("B {}", store.print(&a)).as_bytes(),
            &BTreeSet::from([a.clone()]),
        )
        .unwrap();
    let tree = work.join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/f"), vec![b'x'; 100_000]).unwrap();
    let t = store
        .add_path(
            &tree,
            "tree",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
        )
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
    copy_to(&store, c.as_ref(), &[b.clone(), t.clone()], &opts, quiet()).unwrap();
    Fixture {
        _src: src,
        cache,
        key,
        public,
        a,
        b,
        t,
        started: Started::default(),
    }
}

impl Fixture {
    fn url(&self) -> String {
        format!("file://{}", self.cache.display())
    }

    fn narinfo_path(&self, p: &StorePath) -> PathBuf {
        self.cache.join(format!("{}.narinfo", p.hash_part()))
    }

    fn narinfo(&self, p: &StorePath) -> NarInfo {
        NarInfo::parse(
            &nix_store_dir(),
            &std::fs::read_to_string(self.narinfo_path(p)).unwrap(),
        )
        .unwrap()
    }

    fn nar_file(&self, p: &StorePath) -> PathBuf {
        self.cache.join(self.narinfo(p).url())
    }

    /// Rewrites a narinfo, re-signing it with the cache's key when `sign`.
    fn edit(&self, p: &StorePath, sign: bool, f: impl FnOnce(&mut NarInfo)) {
        let mut ni = self.narinfo(p);
        f(&mut ni);
        ni.clear_signatures();
        if sign {
            ni.sign(&self.key);
        }
        std::fs::write(self.narinfo_path(p), ni.to_string()).unwrap();
    }

    /// Substitutes `p` into a fresh store; returns the report and whether `p` became valid.
    fn substitute(
        &self,
        urls: &[String],
        p: &StorePath,
        require_sigs: bool,
        public: &str,
    ) -> (SubstituteReport, bool, String) {
        let dst = Root::new();
        let store = dst.open();
        let report = substituter(urls, public, require_sigs)
            .substitute(&store, std::slice::from_ref(p), &self.started)
            .unwrap();
        let valid = store.is_valid(p).unwrap();
        let problem = report.problem(store.store_dir());
        // Nothing half-written stays behind: every entry is a valid path (or a lock).
        let leftovers: Vec<String> = std::fs::read_dir(dst.path().join("nix/store"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .filter(|n| {
                StorePath::from_base_name(n).map_or(true, |sp| !store.is_valid(&sp).unwrap())
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        (report, valid, problem)
    }
}

fn assert_names(problem: &str, p: &StorePath, cache: &str, what: &str) {
    assert!(
        problem.contains(&format!("/nix/store/{p}")),
        "path not named in: {problem}"
    );
    assert!(
        problem.contains(cache.split('?').next().unwrap()),
        "cache not named in: {problem}"
    );
    assert!(problem.contains(what), "'{what}' not in: {problem}");
}

#[test]
fn good_cache_works_and_ca_paths_need_no_signature() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    let (report, valid, problem) = f.substitute(&[f.url()], &f.b, true, &f.public);
    assert!(valid && report.succeeded(), "{problem}");
    assert_eq!(report.substituted.len(), 2);
    // Unsigned, but content-addressed with a CA that yields the path: accepted.
    f.edit(&f.a, false, |_| {});
    f.edit(&f.b, false, |_| {});
    let (report, valid, problem) = f.substitute(&[f.url()], &f.b, true, &f.public);
    assert!(valid && report.succeeded(), "{problem}");
}

#[test]
fn tampered_nar_is_a_hash_mismatch() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    let nar = f.nar_file(&f.t);
    let mut bytes = std::fs::read(&nar).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] = b'y';
    std::fs::write(&nar, bytes).unwrap();
    let (report, valid, problem) = f.substitute(&[f.url()], &f.t, true, &f.public);
    assert!(!valid && !report.succeeded());
    assert_names(&problem, &f.t, &f.url(), "hash mismatch");
}

#[test]
fn truncated_download_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    let nar = f.nar_file(&f.t);
    let bytes = std::fs::read(&nar).unwrap();
    std::fs::write(&nar, &bytes[..bytes.len() / 2]).unwrap();
    let (_, valid, problem) = f.substitute(&[f.url()], &f.t, true, &f.public);
    assert!(!valid);
    assert_names(&problem, &f.t, &f.url(), "truncated");
}

#[test]
fn wrong_nar_size_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    f.edit(&f.t, true, |ni| {
        let n = ni.nar_size();
        ni.set_nar_size(n + 8).unwrap();
    });
    let (_, valid, problem) = f.substitute(&[f.url()], &f.t, true, &f.public);
    assert!(!valid);
    assert_names(&problem, &f.t, &f.url(), "bytes, but the narinfo says");
}

#[test]
fn missing_or_bad_signatures_are_refused_unless_not_required() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    // Not content-addressed any more, and unsigned.
    f.edit(&f.t, false, |ni| ni.set_ca(None));
    let (_, valid, problem) = f.substitute(&[f.url()], &f.t, true, &f.public);
    assert!(!valid);
    assert_names(&problem, &f.t, &f.url(), "not signed by any of the keys");
    // Signed by a key nobody trusts.
    let stranger = SecretKey::generate("test-1").unwrap();
    let mut ni = f.narinfo(&f.t);
    ni.sign(&stranger);
    std::fs::write(f.narinfo_path(&f.t), ni.to_string()).unwrap();
    let (_, valid, problem) = f.substitute(&[f.url()], &f.t, true, &f.public);
    assert!(!valid);
    assert_names(&problem, &f.t, &f.url(), "no signature matches");
    // require-sigs = false takes it.
    let (report, valid, problem) = f.substitute(&[f.url()], &f.t, false, "");
    assert!(valid && report.succeeded(), "{problem}");
    // A trusted=1 cache too.
    let (_, valid, problem) =
        f.substitute(&[format!("{}?trusted=1", f.url())], &f.t, true, &f.public);
    assert!(valid, "{problem}");
}

#[test]
fn narinfo_for_another_store_dir_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    let text = std::fs::read_to_string(f.narinfo_path(&f.t)).unwrap();
    std::fs::write(
        f.narinfo_path(&f.t),
        text.replace("StorePath: /nix/store/", "StorePath: /other/store/"),
    )
    .unwrap();
    let (_, valid, problem) = f.substitute(&[f.url()], &f.t, true, &f.public);
    assert!(!valid);
    assert_names(&problem, &f.t, &f.url(), "invalid narinfo");
    // And a whole cache made for another store directory is not used at all.
    std::fs::write(f.cache.join("nix-cache-info"), "StoreDir: /other/store\n").unwrap();
    let (_, valid, problem) = f.substitute(&[f.url()], &f.b, true, &f.public);
    assert!(!valid);
    assert_names(&problem, &f.b, &f.url(), "not '/nix/store'");
}

#[test]
fn missing_nar_and_references_failing() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    // b's reference a cannot be fetched: b is not registered either.
    std::fs::remove_file(f.nar_file(&f.a)).unwrap();
    let (report, valid, problem) = f.substitute(&[f.url()], &f.b, true, &f.public);
    assert!(!valid);
    assert_eq!(report.failed.len(), 2, "{problem}");
    assert_names(&problem, &f.a, &f.url(), "is missing from the cache");
    assert!(problem.contains("its reference"), "{problem}");
}

#[test]
fn referrers_of_a_path_no_cache_has_are_not_downloaded() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    // No cache has a: b, which refers to it, must not be fetched (it could not
    // be registered, and would stay on disk as garbage).
    std::fs::remove_file(f.narinfo_path(&f.a)).unwrap();
    let (report, valid, problem) = f.substitute(&[f.url()], &f.b, true, &f.public);
    assert!(!valid && !report.succeeded());
    assert!(!f.started.contains(&f.b), "b was downloaded: {problem}");
    assert!(
        problem.contains(&format!(
            "cannot substitute '/nix/store/{}': its reference '/nix/store/{}' could not be substituted",
            f.b, f.a
        )),
        "{problem}"
    );
}

#[test]
fn referrers_wait_for_their_references() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    // a fails its hash check; b must not have started meanwhile, whatever
    // the number of downloads at once.
    let nar = f.nar_file(&f.a);
    let mut bytes = std::fs::read(&nar).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    std::fs::write(&nar, bytes).unwrap();
    let (report, valid, problem) = f.substitute(&[f.url()], &f.b, true, &f.public);
    assert!(!valid && report.failed.len() == 2, "{problem}");
    assert!(f.started.contains(&f.a));
    assert!(!f.started.contains(&f.b), "b was downloaded: {problem}");
}

#[test]
fn substituted_paths_are_temporary_roots_before_their_lock_and_temporary_exist() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    let dst = Root::new();
    let store = dst.open();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(StorePath, bool, bool)>>> = Default::default();
    let (layout, log) = (store.layout().clone(), seen.clone());
    store.observe_writes(move |path| {
        let roots = std::fs::read(layout.temproots_dir().join(std::process::id().to_string()))
            .unwrap_or_default();
        let printed = layout.print(path);
        let rooted = roots.split(|b| *b == 0).any(|r| r == printed.as_bytes());
        let made = std::fs::read_dir(&layout.real_store_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .any(|n| n.starts_with(path.hash_part()) && n != path.to_string());
        log.lock().unwrap().push((path.clone(), rooted, made));
    });
    let report = substituter(&[f.url()], &f.public, true)
        .substitute(&store, std::slice::from_ref(&f.b), quiet())
        .unwrap();
    assert!(report.succeeded(), "{}", report.problem(store.store_dir()));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(f.a.clone(), true, false), (f.b.clone(), true, false)],
        "(path, temporary root, lock or temporary already made)"
    );
}

/// A server that answers `nix-cache-info` and then `status` to everything.
fn broken_server(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let body = "StoreDir: /nix/store\n";
            let resp = if req.starts_with("GET /nix-cache-info") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            };
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    format!("http://{addr}")
}

#[test]
fn cache_answering_500_is_an_error_naming_path_and_cache() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    let url = broken_server("500 Internal Server Error");
    let (report, valid, problem) = f.substitute(std::slice::from_ref(&url), &f.t, true, &f.public);
    assert!(!valid && !report.errors.is_empty());
    assert_names(&problem, &f.t, &url, "HTTP error 500");
    assert!(problem.contains("after 3 attempts"), "{problem}");
    // Another cache that has it wins.
    let (report, valid, problem) = f.substitute(&[url, f.url()], &f.t, true, &f.public);
    assert!(valid && report.succeeded(), "{problem}");
}

#[test]
fn cache_that_is_down_is_ignored_with_a_message() {
    let work = tempfile::tempdir().unwrap();
    let f = fixture(work.path());
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (report, valid, problem) = f.substitute(std::slice::from_ref(&url), &f.t, true, &f.public);
    assert!(!valid && !report.unavailable.is_empty());
    assert_names(&problem, &f.t, &url, "ignoring substituter");
    let (_, valid, _) = f.substitute(&[url, f.url()], &f.t, true, &f.public);
    assert!(valid);
}
