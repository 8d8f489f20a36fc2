//! A `.drv` whose declared output paths are not the ones computed from it would
//! take over another derivation's outputs. Every way a `.drv` enters the store
//! (adding text, import, copy from a cache, instantiation) refuses it, as Nix's
//! `registerValidPaths` does, and building checks again.

use std::path::Path;

mod rixcmd;
use rix_formats::hash::{Encoding, HashAlgo};
use rix_formats::nar::NarWriter;
use rix_formats::store_path::{StoreDir, StorePath};
use rixcmd::{fails, ok_str, rix_in, TempStore};

const HELLO: &str = r#"derivation {
  name = "hello";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo hi > $out" ];
}"#;

fn rix(t: &TempStore, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--option", "sandbox", "false"];
    all.extend_from_slice(args);
    rix_in(t, &all, b"")
}

/// The honest derivation's path, ATerm and output path.
fn honest(t: &TempStore) -> (String, Vec<u8>, String) {
    let drv = ok_str(rix(t, &["instantiate", "-E", HELLO]));
    let drv = drv.trim().to_owned();
    let aterm = std::fs::read(&drv).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok_str(rix(t, &["derivation", "show", &drv]))).unwrap();
    let out = json[&drv]["outputs"]["out"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    (drv, aterm, out)
}

/// The honest ATerm with another builder script: same declared output path.
fn forge(aterm: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(aterm.to_vec()).unwrap();
    assert!(text.contains(from), "{text}");
    text.replace(from, to).into_bytes()
}

/// Where the store would put a `.drv` with these contents (no references).
fn text_path(t: &TempStore, contents: &[u8]) -> String {
    let dir = StoreDir::new(t.store_dir().to_str().unwrap()).unwrap();
    let p = dir
        .make_text_path(
            "hello.drv",
            &HashAlgo::Sha256.digest(contents),
            std::iter::empty::<&StorePath>(),
        )
        .unwrap();
    dir.display(&p)
}

fn nar_of_file(contents: &[u8]) -> Vec<u8> {
    let mut w = NarWriter::new(Vec::new());
    w.file(false, contents).unwrap();
    w.finish().unwrap()
}

fn assert_refused(stderr: &str, forged_out: &str, expected_out: Option<&str>) {
    let want = match expected_out {
        Some(e) => format!("has incorrect output '{forged_out}', should be '{e}'"),
        None => "has incorrect".to_owned(),
    };
    assert!(stderr.contains(&want), "wanted '{want}' in: {stderr}");
}

/// After a refused entry: the forged path is neither valid nor left on disk, and
/// the honest derivation still builds its own output.
fn assert_store_clean(t: &TempStore, forged_path: &str, honest_drv: &str) {
    assert!(
        !Path::new(forged_path).exists(),
        "{forged_path} left on disk"
    );
    let info = rix(t, &["path-info", forged_path]);
    assert!(!info.status.success(), "{forged_path} is valid");
    let out = ok_str(rix(
        t,
        &["build", "--no-link", "--print-out-paths", honest_drv],
    ));
    assert_eq!(std::fs::read_to_string(out.trim()).unwrap(), "hi\n");
    let verify = rix(t, &["store", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn add_text_refuses_a_wrong_output_path() {
    let t = TempStore::new();
    let (drv, aterm, out) = honest(&t);
    // Same declared path and `out` variable, another recipe: the output path
    // computed from this file is another one.
    let evil = forge(&aterm, "echo hi", "echo EVIL");
    let forged_path = text_path(&t, &evil);
    let err = fails(rix_in(&t, &["store", "add-text", "hello.drv"], &evil));
    assert_refused(&err, &out, None);
    assert!(err.contains(&forged_path), "{err}");
    assert_store_clean(&t, &forged_path, &drv);
}

#[test]
fn add_text_refuses_a_wrong_output_variable() {
    let t = TempStore::new();
    let (drv, aterm, out) = honest(&t);
    // The declared output is right, the `out` variable the builder writes to is not.
    let other = out.replace("-hello", "-other");
    let evil = forge(
        &aterm,
        &format!("(\"out\",\"{out}\"),(\"system\""),
        &format!("(\"out\",\"{other}\"),(\"system\""),
    );
    let forged_path = text_path(&t, &evil);
    let err = fails(rix_in(&t, &["store", "add-text", "hello.drv"], &evil));
    assert!(
        err.contains("has incorrect environment variable 'out', should be"),
        "{err}"
    );
    assert_store_clean(&t, &forged_path, &drv);
}

#[test]
fn import_refuses_a_forged_derivation() {
    let t = TempStore::new();
    let (drv, aterm, out) = honest(&t);
    let evil = forge(&aterm, "echo hi", "echo EVIL");
    let forged_path = text_path(&t, &evil);
    let stream = export_stream(&forged_path, &evil);
    let err = fails(rix_in(&t, &["store", "import"], &stream));
    assert_refused(&err, &out, None);
    assert_store_clean(&t, &forged_path, &drv);
}

/// `nix-store --export` format: one path (a text file), no references, no deriver.
fn export_stream(path: &str, contents: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    let u64le = |s: &mut Vec<u8>, n: u64| s.extend_from_slice(&n.to_le_bytes());
    let string = |s: &mut Vec<u8>, b: &[u8]| {
        s.extend_from_slice(&(b.len() as u64).to_le_bytes());
        s.extend_from_slice(b);
        s.resize(s.len().next_multiple_of(8), 0);
    };
    u64le(&mut stream, 1);
    stream.extend_from_slice(&nar_of_file(contents));
    u64le(&mut stream, 0x4558_494e);
    string(&mut stream, path.as_bytes());
    u64le(&mut stream, 0);
    string(&mut stream, b"");
    u64le(&mut stream, 0);
    u64le(&mut stream, 0);
    stream
}

/// Real Nix refuses the same forged import, with the message rix gives: the
/// output it names and the one it should be.
#[test]
fn nix_refuses_the_same_forged_import_with_the_same_words() {
    let Some(nix_store) = rixcmd::nix("nix-store") else {
        return;
    };
    let t = TempStore::new();
    let (_, aterm, out) = honest(&t);
    let evil = forge(&aterm, "echo hi", "echo EVIL");
    let forged_path = text_path(&t, &evil);
    let stream = export_stream(&forged_path, &evil);
    let nix = rixcmd::nix_in(&t, &nix_store, &["--import"], &stream);
    assert!(!nix.status.success(), "Nix imported the forged derivation");
    let nix_err = String::from_utf8_lossy(&nix.stderr).into_owned();
    let rix_err = fails(rix_in(&t, &["store", "import"], &stream));
    let info = rix(&t, &["path-info", &forged_path]);
    assert!(!info.status.success(), "{forged_path} became valid");
    // Nix: "derivation '<drv>' has incorrect output '<out>', should be '<path>'".
    let words = |e: &str| -> Option<String> {
        let at = e.find("has incorrect output")?;
        Some(
            e[at..]
                .lines()
                .next()?
                .trim_end_matches(['\'', '.'])
                .to_owned(),
        )
    };
    let (Some(n), Some(r)) = (words(&nix_err), words(&rix_err)) else {
        panic!("nix: {nix_err}\nrix: {rix_err}");
    };
    assert!(n.contains(&out), "{n}");
    assert_eq!(n, r, "nix: {nix_err}\nrix: {rix_err}");
}

#[test]
fn copy_from_a_cache_refuses_a_forged_derivation() {
    let t = TempStore::new();
    let (drv, aterm, out) = honest(&t);
    let evil = forge(&aterm, "echo hi", "echo EVIL");
    let forged_path = text_path(&t, &evil);
    let cache = t.dir.path().join("cache");
    std::fs::create_dir_all(cache.join("nar")).unwrap();
    std::fs::write(
        cache.join("nix-cache-info"),
        format!("StoreDir: {}\n", t.store_dir().display()),
    )
    .unwrap();
    let nar = nar_of_file(&evil);
    let nar_hash = HashAlgo::Sha256
        .digest(&nar)
        .to_typed_string(Encoding::Nix32);
    let base = Path::new(&forged_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let hash_part = &base[..32];
    std::fs::write(cache.join(format!("nar/{hash_part}.nar")), &nar).unwrap();
    std::fs::write(
        cache.join(format!("{hash_part}.narinfo")),
        format!(
            "StorePath: {forged_path}\nURL: nar/{hash_part}.nar\nCompression: none\n\
             NarHash: {nar_hash}\nNarSize: {}\nReferences: \n",
            nar.len()
        ),
    )
    .unwrap();
    let url = format!("file://{}", cache.display());
    let res = rix(
        &t,
        &[
            "--option",
            "require-sigs",
            "false",
            "copy",
            "--from",
            &url,
            &forged_path,
        ],
    );
    let err = fails(res);
    assert_refused(&err, &out, None);
    assert_store_clean(&t, &forged_path, &drv);
}

/// A store that something else filled without checking (an older rix, a
/// hand-edited database): the build itself refuses the derivation.
#[test]
fn build_refuses_a_forged_derivation_already_registered() {
    let t = TempStore::new();
    let (drv, aterm, out) = honest(&t);
    let evil = forge(&aterm, "echo hi", "echo EVIL");
    let forged_path = text_path(&t, &evil);
    {
        let store = rix_store::local_store::LocalStore::open(
            rix_store::layout::StoreLayout::from_url(&t.url()).unwrap(),
        )
        .unwrap();
        let sp = store.parse_path(&forged_path).unwrap();
        std::fs::write(store.real_path(&sp), &evil).unwrap();
        let nar = nar_of_file(&evil);
        let info = rix_store::path_info::ValidPathInfo::new(
            sp,
            HashAlgo::Sha256.digest(&nar),
            nar.len() as u64,
        );
        // The database directly, as the store's own registration would refuse it.
        store.db().register(&[info], &[]).unwrap();
    }
    let err = fails(rix(&t, &["build", "--no-link", &forged_path]));
    assert_refused(&err, &out, None);
    assert!(!Path::new(&out).exists(), "the forged builder ran");
    let built = ok_str(rix(&t, &["build", "--no-link", "--print-out-paths", &drv]));
    assert_eq!(std::fs::read_to_string(built.trim()).unwrap(), "hi\n");
}

/// The honest path: instantiation and `rix derivation add` write derivations
/// whose outputs check, and record them (`DerivationOutputs`).
#[test]
fn honest_derivations_enter_and_build() {
    let t = TempStore::new();
    let (drv, _, out) = honest(&t);
    let built = ok_str(rix(&t, &["build", "--no-link", "--print-out-paths", &drv]));
    assert_eq!(built.trim(), out);
    let store = rix_store::local_store::LocalStore::open(
        rix_store::layout::StoreLayout::from_url(&t.url()).unwrap(),
    )
    .unwrap();
    let drv = store.parse_path(&drv).unwrap();
    let rows = store.db().derivation_outputs(&drv).unwrap();
    assert_eq!(
        rows,
        vec![("out".to_owned(), store.parse_path(&out).unwrap())]
    );
}
