//! Keys, signatures and narinfos against the real Nix: keys Nix generates parse and
//! convert like Nix's; narinfos `nix copy` writes print back byte for byte and their
//! signatures are the ones rix computes; keys rix generates are accepted by Nix.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rix_formats::cache_info::CacheInfo;
use rix_formats::narinfo::{fingerprint, NarInfo};
use rix_formats::signature::{PublicKey, SecretKey, Signature};
use rix_formats::{Hash, StoreDir, StorePath};
use rix_testutil::{nix, TempStore};

const NIX_CONFIG: &str = "experimental-features = nix-command\nsandbox = false\nsubstituters =";

/// Runs a Nix tool (no `--store` added), feeding `stdin`.
fn run(tool: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(tool)
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nix");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn run_ok(tool: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(tool, args, stdin);
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `nix-store --generate-binary-cache-key name` in `dir`: (secret, public) file texts.
fn nix_key_pair(nix_store: &Path, dir: &Path, name: &str) -> (PathBuf, String, String) {
    let (sec, public) = (
        dir.join(format!("{name}.sec")),
        dir.join(format!("{name}.pub")),
    );
    run_ok(
        nix_store,
        &[
            "--generate-binary-cache-key",
            name,
            sec.to_str().unwrap(),
            public.to_str().unwrap(),
        ],
        "",
    );
    let (s, p) = (
        std::fs::read_to_string(&sec).unwrap(),
        std::fs::read_to_string(&public).unwrap(),
    );
    (sec, s, p)
}

/// A store with an input-addressed output `d` (deriver, two references) whose closure
/// holds text paths `a`, `b`, `c`. Returns the store and `d`'s full path.
fn store_with_closure() -> Option<(TempStore, String)> {
    let nix_build = nix("nix-build")?;
    let store = TempStore::new();
    let expr = store.dir.path().join("d.nix");
    std::fs::write(
        &expr,
        r#"let a = builtins.toFile "a" "A"; b = builtins.toFile "b" "B"; c = builtins.toFile "c" "${a} ${b}";
in derivation { name = "d"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ${c} ${a} > $out" ]; }"#,
    )
    .unwrap();
    let out = store.run_nix(&nix_build, &["--no-out-link", expr.to_str().unwrap()]);
    Some((store, out.trim().to_owned()))
}

fn store_dir(store: &TempStore) -> StoreDir {
    StoreDir::new(store.store_dir().to_str().unwrap()).unwrap()
}

fn narinfo_file(cache: &Path, dir: &StoreDir, path: &str) -> PathBuf {
    cache.join(format!("{}.narinfo", dir.parse(path).unwrap().hash_part()))
}

/// The fingerprint of `path` computed from `nix path-info --json` output.
fn fingerprint_from_path_info(dir: &StoreDir, json: &str) -> (String, Vec<String>) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let info = &v[0];
    let path = dir.parse(info["path"].as_str().unwrap()).unwrap();
    let nar_hash = Hash::parse_any(info["narHash"].as_str().unwrap(), None).unwrap();
    let refs: Vec<StorePath> = info["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| dir.parse(r.as_str().unwrap()).unwrap())
        .collect();
    let sigs = info["signatures"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    let fp = fingerprint(
        dir,
        &path,
        &nar_hash,
        info["narSize"].as_u64().unwrap(),
        &refs,
    )
    .unwrap();
    (fp, sigs)
}

#[test]
fn nix_generated_keys() {
    let Some(nix_store) = nix("nix-store") else {
        return;
    };
    let tmp = TempStore::new();
    let (_, sec, public) = nix_key_pair(&nix_store, tmp.dir.path(), "rix-test-1");
    // Nix writes both files without a trailing newline.
    assert!(!sec.ends_with('\n') && !public.ends_with('\n'));
    let sk: SecretKey = sec.parse().unwrap();
    let pk: PublicKey = public.parse().unwrap();
    assert_eq!(sk.name(), "rix-test-1");
    assert_eq!(sk.to_public(), pk);
    assert_eq!(sk.to_string(), sec);
    assert_eq!(pk.to_string(), public);
    let sig = sk.sign(b"hello");
    assert!(pk.verify(b"hello", &sig));

    // `nix key generate-secret` prints the same format (without a newline either).
    let Some(nix_cmd) = nix("nix") else {
        return;
    };
    let generated = run_ok(
        &nix_cmd,
        &["key", "generate-secret", "--key-name", "gen-2"],
        "",
    );
    let sk2: SecretKey = generated.parse().unwrap();
    assert_eq!(sk2.to_string(), generated.trim_end());
    let public2 = run_ok(&nix_cmd, &["key", "convert-secret-to-public"], &generated);
    assert_eq!(sk2.to_public().to_string(), public2.trim_end());
}

#[test]
fn nix_signed_cache_roundtrips_and_verifies() {
    let (Some(nix_store), Some(nix_cmd)) = (nix("nix-store"), nix("nix")) else {
        return;
    };
    let Some((store, out)) = store_with_closure() else {
        return;
    };
    let dir = store_dir(&store);
    let (sec_file, sec, public) = nix_key_pair(&nix_store, store.dir.path(), "cache-1");
    let (sk, pk): (SecretKey, PublicKey) = (sec.parse().unwrap(), public.parse().unwrap());
    let cache = store.dir.path().join("cache");
    let to = format!(
        "file://{}?store={}&secret-key={}&compression=none",
        cache.display(),
        dir,
        sec_file.display()
    );
    store.run_nix(&nix_cmd, &["copy", "--to", &to, &out]);

    let cache_info = std::fs::read_to_string(cache.join("nix-cache-info")).unwrap();
    assert_eq!(cache_info, CacheInfo::new(&dir).to_string());
    assert_eq!(CacheInfo::parse(&cache_info).unwrap(), CacheInfo::new(&dir));

    let mut seen = 0;
    for entry in std::fs::read_dir(&cache).unwrap() {
        let file = entry.unwrap().path();
        if file.extension() != Some("narinfo".as_ref()) {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        let info = NarInfo::parse(&dir, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(info.to_string(), text);
        assert_eq!(info.canonical().to_string(), text);
        assert_eq!(
            info.check_signatures(std::slice::from_ref(&pk)),
            1,
            "{text}"
        );
        // ed25519 is deterministic: rix's signature is byte-identical to Nix's.
        let ours = sk.sign(info.fingerprint().as_bytes());
        assert_eq!(info.sigs(), [ours.to_string()]);
        // The text paths are content-addressed, the output is not.
        assert_eq!(info.is_content_addressed(), info.ca().is_some(), "{text}");
    }
    assert_eq!(seen, 4);

    // The output: a deriver, two references, fields as `nix path-info` reports them.
    let info = NarInfo::parse(
        &dir,
        &std::fs::read_to_string(narinfo_file(&cache, &dir, &out)).unwrap(),
    )
    .unwrap();
    assert!(info.ca().is_none());
    assert_eq!(info.deriver().unwrap().name(), "d.drv");
    assert_eq!(info.references().len(), 2);
    let json = store.run_nix(&nix_cmd, &["path-info", "--json", &out]);
    let (fp, _) = fingerprint_from_path_info(&dir, &json);
    assert_eq!(info.fingerprint(), fp);
}

#[test]
fn rix_keys_are_accepted_by_nix() {
    let Some(nix_cmd) = nix("nix") else {
        return;
    };
    let Some((store, out)) = store_with_closure() else {
        return;
    };
    let dir = store_dir(&store);
    let sk = SecretKey::generate("rix-key-1").unwrap();
    let pk = sk.to_public();

    // Nix derives the same public key, from the key with or without a newline.
    for input in [sk.to_string(), format!("{sk}\n")] {
        let public = run_ok(&nix_cmd, &["key", "convert-secret-to-public"], &input);
        assert_eq!(public.trim_end(), pk.to_string());
    }

    // Nix signs the output with rix's key file: the signature is rix's own.
    let key_file = store.dir.path().join("rix.sec");
    std::fs::write(&key_file, format!("{sk}\n")).unwrap();
    store.run_nix(
        &nix_cmd,
        &[
            "store",
            "sign",
            "--key-file",
            key_file.to_str().unwrap(),
            &out,
        ],
    );
    let json = store.run_nix(&nix_cmd, &["path-info", "--json", "--sigs", &out]);
    let (fp, sigs) = fingerprint_from_path_info(&dir, &json);
    assert_eq!(sigs, [sk.sign(fp.as_bytes()).to_string()]);

    // A narinfo that rix signs is trusted by `nix store verify`.
    let cache = store.dir.path().join("cache");
    let to = format!("file://{}?store={dir}&compression=none", cache.display());
    store.run_nix(&nix_cmd, &["copy", "--to", &to, &out]);
    let file = narinfo_file(&cache, &dir, &out);
    let mut info = NarInfo::parse(&dir, &std::fs::read_to_string(&file).unwrap()).unwrap();
    info.clear_signatures();
    let verify = |trusted: &PublicKey| {
        run(
            &nix_cmd,
            &[
                "store",
                "verify",
                "--no-contents",
                "--store",
                &format!("file://{}?store={dir}", cache.display()),
                "--trusted-public-keys",
                &trusted.to_string(),
                &out,
            ],
            "",
        )
        .status
        .success()
    };
    std::fs::write(&file, info.to_string()).unwrap();
    assert!(!verify(&pk), "unsigned narinfo must not verify");
    let sig: Signature = info.sign(&sk);
    assert!(info.check_signatures(std::slice::from_ref(&pk)) == 1);
    std::fs::write(&file, info.to_string()).unwrap();
    assert!(verify(&pk), "Nix rejects rix's signature {sig}");
    let other = SecretKey::generate("rix-key-1").unwrap().to_public();
    assert!(!verify(&other), "Nix accepts a signature from another key");
}

/// Nix-valid variants of a narinfo (hashes in other encodings, references out of
/// order, no `Compression`, `unknown-deriver`, unknown fields, shuffled lines) read
/// the same in Nix and rix, and the signature still verifies in both; inputs rix
/// rejects, Nix rejects too.
#[test]
fn nix_reads_narinfo_variants_like_rix() {
    let (Some(nix_store), Some(nix_cmd)) = (nix("nix-store"), nix("nix")) else {
        return;
    };
    let Some((store, out)) = store_with_closure() else {
        return;
    };
    let dir = store_dir(&store);
    let (sec_file, _, public) = nix_key_pair(&nix_store, store.dir.path(), "cache-1");
    let pk: PublicKey = public.parse().unwrap();
    let cache = store.dir.path().join("cache");
    let url = format!("file://{}?store={dir}", cache.display());
    let to = format!("{url}&secret-key={}&compression=none", sec_file.display());
    store.run_nix(&nix_cmd, &["copy", "--to", &to, &out]);
    let file = narinfo_file(&cache, &dir, &out);
    let original = std::fs::read_to_string(&file).unwrap();
    let info = NarInfo::parse(&dir, &original).unwrap();
    assert_eq!(info.references().len(), 2);

    let path_info = || {
        let o = run(
            &nix_cmd,
            &["path-info", "--json", "--sigs", "--store", &url, &out],
            "",
        );
        o.status
            .success()
            .then(|| String::from_utf8(o.stdout).unwrap())
    };
    let verified = || {
        run(
            &nix_cmd,
            &[
                "store",
                "verify",
                "--no-contents",
                "--store",
                &url,
                "--trusted-public-keys",
                &pk.to_string(),
                &out,
            ],
            "",
        )
        .status
        .success()
    };
    let lines: Vec<&str> = original.lines().collect();
    let edit = |f: &dyn Fn(&str) -> Option<String>| -> String {
        lines
            .iter()
            .filter_map(|l| f(l))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let field = |l: &str, key: &str| l.strip_prefix(key).map(str::to_owned);
    let refs_reversed = {
        let mut r: Vec<String> = info.references().iter().map(|r| r.to_string()).collect();
        r.reverse();
        r.join("  ")
    };
    let mut shuffled: Vec<&str> = lines.clone();
    shuffled.reverse();
    let variants: Vec<String> = vec![
        edit(&|l| match field(l, "NarHash: ") {
            Some(_) => Some(format!(
                "NarHash: {}",
                info.nar_hash()
                    .to_typed_string(rix_formats::hash::Encoding::Base16)
            )),
            None => Some(l.to_owned()),
        }),
        edit(&|l| match field(l, "FileHash: ") {
            Some(_) => Some(format!("FileHash: {}", info.file_hash().unwrap().to_sri())),
            None => Some(l.to_owned()),
        }),
        edit(&|l| match field(l, "References: ") {
            Some(_) => Some(format!("References: {refs_reversed}")),
            None => Some(l.to_owned()),
        }),
        edit(&|l| (!l.starts_with("Compression: ")).then(|| l.to_owned())),
        edit(&|l| match field(l, "Deriver: ") {
            Some(_) => Some(format!(
                "Deriver: {}",
                rix_formats::narinfo::UNKNOWN_DERIVER
            )),
            None => Some(l.to_owned()),
        }),
        format!("{original}X-Unknown: whatever: it is\nSystem: x86_64-linux\n"),
        shuffled.iter().map(|l| format!("{l}\n")).collect(),
    ];
    for text in &variants {
        let ours = NarInfo::parse(&dir, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&ours.to_string(), text);
        assert_eq!(
            ours.check_signatures(std::slice::from_ref(&pk)),
            1,
            "{text}"
        );
        std::fs::write(&file, text).unwrap();
        let json = path_info().unwrap_or_else(|| panic!("Nix rejects\n{text}"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let theirs = &v[0];
        assert_eq!(
            Hash::parse_any(theirs["narHash"].as_str().unwrap(), None).unwrap(),
            *ours.nar_hash()
        );
        assert_eq!(theirs["narSize"].as_u64(), Some(ours.nar_size()));
        let mut refs: Vec<String> = ours.references().iter().map(|r| dir.display(r)).collect();
        refs.sort();
        let their_refs: Vec<String> = theirs["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(their_refs, refs, "{text}");
        assert_eq!(
            theirs["deriver"].as_str().map(str::to_owned),
            ours.deriver().map(|d| dir.display(d)),
            "{text}"
        );
        assert_eq!(theirs["url"].as_str(), Some(ours.url()));
        assert_eq!(
            Hash::parse_any(theirs["downloadHash"].as_str().unwrap(), None).unwrap(),
            *ours.file_hash().unwrap()
        );
        assert_eq!(theirs["downloadSize"].as_u64(), ours.file_size());
        assert_eq!(
            theirs["signatures"][0].as_str(),
            Some(ours.sigs()[0].as_str())
        );
        assert!(verified(), "Nix does not verify\n{text}");
    }

    let rejected: Vec<String> = vec![
        original.replace(&format!("NarSize: {}", info.nar_size()), "NarSize: 0"),
        edit(&|l| (!l.starts_with("URL: ")).then(|| l.to_owned())),
        edit(&|l| (!l.starts_with("NarHash: ")).then(|| l.to_owned())),
        edit(&|l| (!l.starts_with("StorePath: ")).then(|| l.to_owned())),
        original.replace("NarHash: sha256:", "NarHash: sha256:x"),
        original.replace("FileSize: ", "FileSize: x"),
        original.replace("NarSize: ", "NarSize: -"),
        format!("{original}References: {refs_reversed}\n"),
        original.replace("Deriver: ", "Deriver: /"),
        original.trim_end().to_owned(),
    ];
    for text in &rejected {
        assert!(NarInfo::parse(&dir, text).is_err(), "rix accepts\n{text}");
        std::fs::write(&file, text).unwrap();
        assert!(path_info().is_none(), "Nix accepts\n{text}");
    }
}
