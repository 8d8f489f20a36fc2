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
