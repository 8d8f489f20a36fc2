//! Substituting instead of building: runtime closures come from a binary cache,
//! build-only dependencies are neither built nor fetched, and `fallback` builds
//! what fails to download.

mod common;

use std::sync::Arc;

use common::{drv, open, Recorder};
use rix_build::{realise, BuildError, RealiseOptions};
use rix_formats::signature::SecretKey;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;
use rix_substitute::upload::{copy_to, UploadOptions};
use rix_substitute::{CacheUrl, Compression, Quiet, Substituter, SubstituterConfig};
use rix_testutil::TempStore;

struct Drvs {
    tool: StorePath,
    lib: StorePath,
    app: StorePath,
}

/// `app` uses `tool` only while building (copies its contents) and refers to `lib`.
fn drvs(store: &LocalStore) -> Drvs {
    let tool = drv(store, "tool", "echo tool-bytes > $out", &[], &["out"]);
    let lib = drv(store, "lib", "echo lib > $out", &[], &["out"]);
    let app = drv(
        store,
        "app",
        "read x < $in0; echo \"$x $in1\" > $out",
        &[&tool, &lib],
        &["out"],
    );
    Drvs { tool, lib, app }
}

fn out(store: &LocalStore, d: &StorePath) -> StorePath {
    let drv = rix_build::plan::read_derivation(store, d).unwrap();
    rix_build::plan::output_paths(store, d, &drv).unwrap()["out"].clone()
}

/// Builds everything, copies `app`'s closure to a cache, then empties the store
/// (same store directory) and writes the derivations again.
fn built_and_cached(t: &TempStore, cache: &std::path::Path, key: &SecretKey) -> (LocalStore, Drvs) {
    let store = open(t);
    let d = drvs(&store);
    let report = realise(
        &store,
        std::slice::from_ref(&d.app),
        &RealiseOptions::default(),
        &Recorder::default(),
    )
    .unwrap();
    assert!(report.succeeded());
    let url = CacheUrl::parse(&format!("file://{}", cache.display())).unwrap();
    let c = rix_substitute::cache::open(&url, &Default::default()).unwrap();
    let opts = UploadOptions {
        compression: Compression::Zstd,
        keys: vec![key.clone()],
        ..Default::default()
    };
    copy_to(&store, c.as_ref(), &[out(&store, &d.app)], &opts, &Quiet).unwrap();
    drop(store);
    for sub in ["store", "state"] {
        rix_store::canonicalise::delete_path(&t.dir.path().join(sub)).unwrap();
    }
    let store = open(t);
    let d = drvs(&store);
    (store, d)
}

fn with_cache(
    urls: Vec<String>,
    key: &SecretKey,
    fallback: bool,
    store: &LocalStore,
) -> RealiseOptions {
    let config = SubstituterConfig {
        urls,
        trusted_keys: vec![key.to_public()],
        fallback,
        disk_cache: None,
        ..Default::default()
    };
    RealiseOptions {
        substituter: Some(Arc::new(Substituter::new(
            config,
            store.store_dir().clone(),
        ))),
        ..Default::default()
    }
}

#[test]
fn substitutes_the_runtime_closure_and_skips_build_only_dependencies() {
    let t = TempStore::new();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let key = SecretKey::generate("k-1").unwrap();
    let (store, d) = built_and_cached(&t, &cache, &key);
    let rec = Recorder::default();
    let opts = with_cache(
        vec![format!("file://{}", cache.display())],
        &key,
        false,
        &store,
    );
    let report = realise(&store, std::slice::from_ref(&d.app), &opts, &rec).unwrap();
    assert!(report.succeeded());
    assert!(rec.started().is_empty(), "built {:?}", rec.started());
    assert_eq!(report.substituted.len(), 2);
    assert!(store.is_valid(&out(&store, &d.app)).unwrap());
    assert!(store.is_valid(&out(&store, &d.lib)).unwrap());
    assert!(
        !store.is_valid(&out(&store, &d.tool)).unwrap(),
        "a build-only dependency arrived"
    );
    // Nothing left to do the second time.
    let again = realise(&store, std::slice::from_ref(&d.app), &opts, &rec).unwrap();
    assert!(again.substituted.is_empty() && again.built.is_empty());
}

#[test]
fn failed_download_fails_without_fallback_and_builds_with_it() {
    let t = TempStore::new();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let key = SecretKey::generate("k-1").unwrap();
    let (store, d) = built_and_cached(&t, &cache, &key);
    // Break app's NAR.
    let app_out = out(&store, &d.app);
    let ni =
        std::fs::read_to_string(cache.join(format!("{}.narinfo", app_out.hash_part()))).unwrap();
    let url = ni.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
    std::fs::write(cache.join(url), b"garbage").unwrap();
    let urls = vec![format!("file://{}", cache.display())];

    let rec = Recorder::default();
    let err = realise(
        &store,
        std::slice::from_ref(&d.app),
        &with_cache(urls.clone(), &key, false, &store),
        &rec,
    )
    .unwrap_err();
    assert!(matches!(err, BuildError::Substitution(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("--fallback") && msg.contains(&store.print(&app_out)),
        "{msg}"
    );
    assert!(!store.is_valid(&app_out).unwrap());
    assert!(rec.started().is_empty());

    let rec = Recorder::default();
    let report = realise(
        &store,
        std::slice::from_ref(&d.app),
        &with_cache(urls, &key, true, &store),
        &rec,
    )
    .unwrap();
    assert!(report.succeeded());
    assert!(store.is_valid(&app_out).unwrap());
    let built = rec.started();
    assert!(
        built.contains(&d.app) && built.contains(&d.tool),
        "{built:?}"
    );
    assert!(
        !built.contains(&d.lib),
        "lib was fetched, not built: {built:?}"
    );
}

#[test]
fn unreachable_cache_means_building() {
    let t = TempStore::new();
    let store = open(&t);
    let d = drvs(&store);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = SecretKey::generate("k-1").unwrap();
    let rec = Recorder::default();
    let opts = with_cache(
        vec![format!("http://127.0.0.1:{port}")],
        &key,
        false,
        &store,
    );
    let report = realise(&store, std::slice::from_ref(&d.app), &opts, &rec).unwrap();
    assert!(report.succeeded() && report.substituted.is_empty());
    assert_eq!(rec.started().len(), 3);
}
