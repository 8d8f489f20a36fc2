//! Property tests: narinfos built with the setters print in Nix's canonical form and
//! parse back equal; Nix-valid textual variants (field order, hash encodings, reference
//! order and spacing, unknown fields, `unknown-deriver`) round-trip byte for byte with
//! the same typed values; no input makes the parser panic.

use proptest::prelude::*;
use rix_formats::content_address::ContentAddress;
use rix_formats::hash::Encoding;
use rix_formats::narinfo::NarInfo;
use rix_formats::signature::Signature;
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::{Hash, HashAlgo, StoreDir, StorePath};

fn store_dir() -> impl Strategy<Value = StoreDir> {
    prop_oneof![
        Just(StoreDir::default()),
        "(/[a-z0-9._-]{1,8}){1,3}".prop_map(|d| StoreDir::new(d).unwrap()),
    ]
}

fn store_path() -> impl Strategy<Value = StorePath> {
    (any::<[u8; 20]>(), "[a-zA-Z0-9+_?=][a-zA-Z0-9+._?=-]{0,20}")
        .prop_map(|(d, n)| StorePath::from_parts(d, &n).unwrap())
}

fn hash() -> impl Strategy<Value = Hash> {
    (0usize..4, any::<[u8; 64]>()).prop_map(|(a, bytes)| {
        let algo = HashAlgo::ALL[a];
        Hash::from_bytes(algo, &bytes[..algo.size()]).unwrap()
    })
}

fn sha256() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(|b| Hash::from_bytes(HashAlgo::Sha256, &b).unwrap())
}

fn ca() -> impl Strategy<Value = ContentAddress> {
    prop_oneof![
        sha256().prop_map(ContentAddress::Text),
        (any::<bool>(), hash()).prop_map(|(r, h)| {
            let m = if r {
                FileIngestionMethod::Recursive
            } else {
                FileIngestionMethod::Flat
            };
            ContentAddress::Fixed(m, h)
        }),
    ]
}

fn signature() -> impl Strategy<Value = Signature> {
    (
        "[a-z][a-z0-9.-]{0,15}",
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(n, a, b)| {
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&a);
            bytes[32..].copy_from_slice(&b);
            Signature::new(&n, bytes).unwrap()
        })
}

#[derive(Debug, Clone)]
struct Fields {
    dir: StoreDir,
    path: StorePath,
    url: String,
    compression: Option<String>,
    file_hash: Option<Hash>,
    file_size: Option<u64>,
    nar_hash: Hash,
    nar_size: u64,
    refs: Vec<StorePath>,
    self_ref: bool,
    deriver: Option<StorePath>,
    system: Option<String>,
    sigs: Vec<Signature>,
    ca: Option<ContentAddress>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (
            store_dir(),
            store_path(),
            "nar/[a-z0-9]{1,52}\\.nar(\\.xz)?",
        ),
        (
            proptest::option::of("xz|zstd|none|bzip2|"),
            proptest::option::of(sha256()),
            proptest::option::of(any::<u64>()),
        ),
        (hash(), 1u64..),
        (proptest::collection::vec(store_path(), 0..5), any::<bool>()),
        (
            proptest::option::of(store_path()),
            proptest::option::of("[a-z0-9_-]{1,15}"),
        ),
        (
            proptest::collection::vec(signature(), 0..4),
            proptest::option::of(ca()),
        ),
    )
        .prop_map(
            |(
                (dir, path, url),
                (compression, file_hash, file_size),
                (nar_hash, nar_size),
                (refs, self_ref),
                (deriver, system),
                (sigs, ca),
            )| Fields {
                dir,
                path,
                url,
                compression,
                file_hash,
                file_size,
                nar_hash,
                nar_size,
                refs,
                self_ref,
                deriver,
                system,
                sigs,
                ca,
            },
        )
}

fn build(f: &Fields) -> NarInfo {
    let mut n = NarInfo::new(&f.dir, f.path.clone(), &f.url, f.nar_hash, f.nar_size).unwrap();
    n.set_compression(f.compression.as_deref()).unwrap();
    n.set_file_hash(f.file_hash);
    n.set_file_size(f.file_size);
    let mut refs = f.refs.clone();
    if f.self_ref {
        refs.push(f.path.clone());
    }
    n.set_references(refs);
    n.set_deriver(f.deriver.clone());
    n.set_system(f.system.as_deref()).unwrap();
    for s in &f.sigs {
        n.add_signature(s);
    }
    n.set_ca(f.ca);
    n
}

/// Everything the accessors say but the order of references and signatures, for
/// comparing two parses of different texts.
fn typed(n: &NarInfo) -> String {
    let mut sigs = n.sigs().to_vec();
    sigs.sort();
    format!(
        "{:?} {:?} {} {} {:?} {:?} {} {} {:?} {:?} {:?} {:?} {}",
        n.store_dir(),
        n.store_path(),
        n.url(),
        n.compression(),
        n.file_hash(),
        n.file_size(),
        n.nar_hash(),
        n.nar_size(),
        n.deriver(),
        n.system(),
        sigs,
        n.ca(),
        n.fingerprint()
    )
}

/// Nix-valid ways to write the same narinfo.
#[derive(Debug, Clone)]
struct Variant {
    shuffle: Vec<usize>,
    hash_encoding: usize,
    reverse_refs: bool,
    double_spaces: bool,
    unknown: Vec<(String, String)>,
    unknown_deriver: bool,
}

fn variant() -> impl Strategy<Value = Variant> {
    (
        proptest::collection::vec(any::<usize>(), 16),
        0usize..4,
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(("X-[A-Za-z]{0,8}|Foo|", "[ -~]{0,20}"), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(shuffle, hash_encoding, reverse_refs, double_spaces, unknown, unknown_deriver)| {
                Variant {
                    shuffle,
                    hash_encoding,
                    reverse_refs,
                    double_spaces,
                    unknown,
                    unknown_deriver,
                }
            },
        )
}

fn apply(n: &NarInfo, v: &Variant) -> String {
    let enc = [
        Encoding::Nix32,
        Encoding::Base16,
        Encoding::Base64,
        Encoding::Sri,
    ][v.hash_encoding];
    let mut lines: Vec<String> = n
        .to_string()
        .lines()
        .map(|l| {
            let (k, val) = l.split_once(": ").unwrap();
            let val = match k {
                "NarHash" => n.nar_hash().to_typed_string(enc),
                "FileHash" => n.file_hash().unwrap().to_typed_string(enc),
                "References" => {
                    let mut refs: Vec<String> =
                        n.references().iter().map(|r| r.to_string()).collect();
                    if v.reverse_refs {
                        refs.reverse();
                    }
                    refs.join(if v.double_spaces { "  " } else { " " })
                }
                _ => val.to_owned(),
            };
            format!("{k}: {val}")
        })
        .collect();
    for (k, val) in &v.unknown {
        lines.push(format!("{k}: {val}"));
    }
    if v.unknown_deriver {
        lines.push("Deriver: unknown-deriver".to_owned());
    }
    // A deterministic shuffle driven by the strategy.
    for (i, r) in v.shuffle.iter().enumerate() {
        if lines.len() > 1 {
            let (a, b) = (i % lines.len(), r % lines.len());
            lines.swap(a, b);
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn built_narinfos_roundtrip(f in fields()) {
        let n = build(&f);
        let text = n.to_string();
        let back = NarInfo::parse(&f.dir, &text).unwrap();
        prop_assert_eq!(&back, &n);
        prop_assert_eq!(back.to_string(), text.clone());
        prop_assert_eq!(n.url(), f.url.as_str());
        prop_assert_eq!(n.nar_hash(), &f.nar_hash);
        // Built in Nix's order and form: canonical already (Nix drops System and
        // always prints Compression).
        if f.system.is_none() && f.compression.as_deref().is_some_and(|c| !c.is_empty()) {
            prop_assert_eq!(n.canonical().to_string(), text);
        }
        prop_assert_eq!(NarInfo::parse(&f.dir, &n.canonical().to_string()).unwrap(), n.canonical());
    }

    #[test]
    fn nix_valid_variants_roundtrip(f in fields(), v in variant()) {
        let n = build(&f);
        let text = apply(&n, &v);
        let parsed = NarInfo::parse(&f.dir, &text).unwrap();
        prop_assert_eq!(parsed.to_string(), text.clone());
        prop_assert_eq!(&NarInfo::parse(&f.dir, &parsed.to_string()).unwrap(), &parsed);
        // Typed references keep the written order; everything else is as built.
        let mut refs = n.references().to_vec();
        if v.reverse_refs {
            refs.reverse();
        }
        prop_assert_eq!(parsed.references(), &refs[..]);
        prop_assert_eq!(typed(&parsed), typed(&n));
        prop_assert_eq!(parsed.fingerprint(), n.fingerprint());
        prop_assert_eq!(parsed.extra_fields().count(), v.unknown.len());
        // Whatever the variant, the canonical form is the same.
        prop_assert_eq!(parsed.canonical().to_string(), n.canonical().to_string());
    }

    #[test]
    fn signing_adds_a_verifying_signature(f in fields(), seed in any::<[u8; 32]>()) {
        let mut n = build(&f);
        let key = rix_formats::signature::SecretKey::from_seed("test-1", &seed).unwrap();
        let before = n.sigs().len();
        let sig = n.sign(&key);
        prop_assert_eq!(n.sigs().len(), before + 1);
        prop_assert_eq!(n.check_signatures(&[key.to_public()]), 1);
        let back = NarInfo::parse(&f.dir, &n.to_string()).unwrap();
        prop_assert_eq!(&back, &n);
        prop_assert!(back.signatures().any(|s| s == sig));
        // Signing twice adds nothing.
        n.sign(&key);
        prop_assert_eq!(n.sigs().len(), before + 1);
    }

    #[test]
    fn random_text_never_panics(s in "\\PC{0,300}") {
        let _ = NarInfo::parse(&StoreDir::default(), &s);
    }

    #[test]
    fn random_lines_never_panic(lines in proptest::collection::vec(
        ("StorePath|URL|Compression|FileHash|FileSize|NarHash|NarSize|References|Deriver|System|Sig|CA|X", "[ -~]{0,60}"), 0..14)) {
        let text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        if let Err(e) = NarInfo::parse(&StoreDir::default(), &text) {
            let line_ok = match e.line() {
                Some(l) => (1..=lines.len()).contains(&l),
                None => true,
            };
            prop_assert!(line_ok, "{}", e);
        }
    }

    #[test]
    fn mutated_narinfos_never_panic(f in fields(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut bytes = build(&f).to_string().into_bytes();
        for (at, b) in edits {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        if let Ok(s) = std::str::from_utf8(&bytes) {
            if let Ok(n) = NarInfo::parse(&f.dir, s) {
                prop_assert_eq!(n.to_string(), s);
            }
        }
    }

    /// A bad value in a typed field is reported at its line.
    #[test]
    fn errors_name_the_line(f in fields(), which in 0usize..6) {
        let text = build(&f).to_string();
        let (key, bad) = [
            ("StorePath", "/nowhere/x"),
            ("FileSize", "-1"),
            ("NarHash", "sha256:xyz"),
            ("NarSize", "12a"),
            ("References", "not-a-path"),
            ("CA", "fixed:sha256:"),
        ][which];
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let at = match lines.iter().position(|l| l.starts_with(&format!("{key}: "))) {
            Some(at) => at,
            None => {
                lines.push(String::new());
                lines.len() - 1
            }
        };
        lines[at] = format!("{key}: {bad}");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let e = NarInfo::parse(&f.dir, &text).unwrap_err();
        prop_assert_eq!(e.line(), Some(at + 1), "{}", e);
    }
}
