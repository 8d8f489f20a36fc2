//! Binary caches between rix and real Nix 2.8, both ways.

mod common;

use common::*;
use rix_testutil::nix;

#[test]
fn rix_substitutes_what_nix_copied_to_a_file_cache() {
    let (Some(nix_build), Some(nix_store), Some(nix_cmd)) =
        (nix("nix-build"), nix("nix-store"), nix("nix"))
    else {
        return;
    };
    let src = Root::new();
    let out = nix_build_closure(&src, &nix_build);
    let work = tempfile::tempdir().unwrap();
    let (key, public) = nix_key(&nix_store, work.path(), "nix-test-1");
    for compression in ["xz", "zstd", "bzip2", "none"] {
        let cache = work.path().join(format!("cache-{compression}"));
        let url = format!(
            "file://{}?compression={compression}&secret-key={}",
            cache.display(),
            key.display()
        );
        src.nix(&nix_cmd, &["copy", "--to", &url, &out], "");
        let dst = Root::new();
        let store = dst.open();
        let subst = substituter(&[format!("file://{}", cache.display())], &public, true);
        let report = subst.substitute(&store, &[sp(&out)], quiet()).unwrap();
        assert!(
            report.succeeded(),
            "{compression}: {}",
            report.problem(store.store_dir())
        );
        let closure = src.nix(&nix_store, &["-qR", &out], "");
        assert_eq!(
            report.substituted.len(),
            closure.lines().count(),
            "{compression}"
        );
        // Same NAR hashes, references, signatures and derivers as Nix recorded.
        for p in closure.lines() {
            let ours = store.query_path_info(&sp(p)).unwrap().expect("substituted");
            let theirs = src.nix(&nix_store, &["-q", "--hash", p], "");
            assert_eq!(ours.nar_hash.to_string(), theirs.trim(), "{p}");
            let refs = src.nix(&nix_store, &["-q", "--references", p], "");
            let mut want: Vec<&str> = refs.lines().collect();
            want.sort_unstable();
            let got: Vec<String> = ours
                .references
                .iter()
                .map(|r| format!("/nix/store/{r}"))
                .collect();
            assert_eq!(got, want, "{p}");
            assert!(
                !ours.sigs.is_empty() || ours.ca.is_some(),
                "{p} has neither signature nor CA"
            );
        }
        // Nix checks the substituted store.
        dst.nix(&nix_store, &["--verify", "--check-contents"], "");
        let deriver = dst.nix(&nix_store, &["-q", "--deriver", &out], "");
        assert!(deriver.trim().ends_with("-d.drv"), "{deriver}");
    }
}

fn rix_key() -> (rix_formats::signature::SecretKey, String) {
    let k = rix_formats::signature::SecretKey::generate("rix-test-1").unwrap();
    let p = k.to_public().to_string();
    (k, p)
}

/// Nix substitutes `out` into a fresh store from `url` trusting `public`, then
/// verifies the store's contents.
fn nix_substitutes(nix_store: &std::path::Path, url: &str, public: &str, out: &str) {
    let dst = Root::new();
    let config =
        format!("substituters = {url}\ntrusted-public-keys = {public}\nrequire-sigs = true\n");
    dst.nix(nix_store, &["-r", out], &config);
    dst.nix(nix_store, &["--verify", "--check-contents"], "");
    let closure = dst.nix(nix_store, &["-qR", out], "");
    assert!(closure.lines().count() >= 4, "{closure}");
}

#[test]
fn nix_substitutes_what_rix_copied_and_accepts_its_signatures() {
    let (Some(nix_build), Some(nix_store)) = (nix("nix-build"), nix("nix-store")) else {
        return;
    };
    let src = Root::new();
    let out = nix_build_closure(&src, &nix_build);
    let store = src.open();
    let (key, public) = rix_key();
    let work = tempfile::tempdir().unwrap();
    for compression in ["zstd", "xz", "none", "bzip2"] {
        let dir = work.path().join(compression);
        let url = rix_substitute::CacheUrl::parse(&format!(
            "file://{}?compression={compression}",
            dir.display()
        ))
        .unwrap();
        let cache = rix_substitute::cache::open(&url, &Default::default()).unwrap();
        let opts =
            rix_substitute::upload::UploadOptions::from_url(&url, vec![key.clone()]).unwrap();
        let report =
            rix_substitute::upload::copy_to(&store, cache.as_ref(), &[sp(&out)], &opts, quiet())
                .unwrap();
        assert_eq!(report.uploaded.len(), 4, "{compression}");
        // A second copy finds everything there.
        let again =
            rix_substitute::upload::copy_to(&store, cache.as_ref(), &[sp(&out)], &opts, quiet())
                .unwrap();
        assert!(again.uploaded.is_empty() && again.present.len() == 4);
        nix_substitutes(
            &nix_store,
            &format!("file://{}", dir.display()),
            &public,
            &out,
        );
        // Nix refuses it with another trusted key.
        let dst = Root::new();
        let (_, other) = rix_key();
        let st = std::process::Command::new(&nix_store)
            .args(["--store", &dst.url(), "-r", &out])
            .env(
                "NIX_CONFIG",
                format!(
                    "substituters = file://{}\ntrusted-public-keys = {other}\n",
                    dir.display()
                ),
            )
            .output()
            .unwrap();
        assert!(
            !st.status.success(),
            "Nix accepted a path signed by an untrusted key"
        );
    }
}

#[test]
fn nix_substitutes_from_rix_serve_and_rix_from_itself() {
    let (Some(nix_build), Some(nix_store)) = (nix("nix-build"), nix("nix-store")) else {
        return;
    };
    let src = Root::new();
    let out = nix_build_closure(&src, &nix_build);
    let (key, public) = rix_key();
    for compression in [
        rix_substitute::Compression::Zstd,
        rix_substitute::Compression::None,
        rix_substitute::Compression::Xz,
    ] {
        let opts = rix_substitute::serve::ServeOptions {
            keys: vec![key.clone()],
            compression,
            ..Default::default()
        };
        let server =
            rix_substitute::serve::Server::start(src.open().layout().clone(), "127.0.0.1:0", opts)
                .unwrap();
        nix_substitutes(&nix_store, &server.url(), &public, &out);
        // rix's HTTP client against rix's server.
        let dst = Root::new();
        let store = dst.open();
        let subst = substituter(&[server.url()], &public, true);
        let report = subst.substitute(&store, &[sp(&out)], quiet()).unwrap();
        assert!(report.succeeded(), "{}", report.problem(store.store_dir()));
        assert_eq!(report.substituted.len(), 4);
        dst.nix(&nix_store, &["--verify", "--check-contents"], "");
        server.stop();
    }
}
