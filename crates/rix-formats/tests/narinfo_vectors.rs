//! The manual's narinfo example against Nix's JSON test vectors for the same object
//! (tests/vectors/nix-libstore/{nar-info,path-info}/json-{1,2,3}).

use std::path::PathBuf;

use rix_formats::content_address::ContentAddress;
use rix_formats::narinfo::{fingerprint, NarInfo, NarInfoError};
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::{Hash, StoreDir, StorePath};
use serde_json::Value;

fn manual_example() -> String {
    let md = std::fs::read_to_string(rix_testutil::vectors(
        "nix-manual/protocols/binary-cache/narinfo.md",
    ))
    .unwrap();
    let start = md.find("```\nStorePath").unwrap() + 4;
    let end = start + md[start..].find("```").unwrap();
    md[start..end].to_owned()
}

fn json(rel: &str) -> Value {
    let path: PathBuf = rix_testutil::vectors("nix-libstore").join(rel);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn hash(v: &Value) -> Hash {
    Hash::parse_any(v.as_str().unwrap(), None).unwrap()
}

/// A reference in JSON: a full path (version 1) or a base name (versions 2, 3).
fn store_path(dir: &StoreDir, v: &Value) -> StorePath {
    let s = v.as_str().unwrap();
    dir.parse(s)
        .or_else(|_| StorePath::from_base_name(s))
        .unwrap()
}

fn ca(v: &Value) -> Option<ContentAddress> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.parse().unwrap()),
        obj => {
            let h = hash(&obj["hash"]);
            Some(match obj["method"].as_str().unwrap() {
                "text" => ContentAddress::Text(h),
                "nar" => ContentAddress::Fixed(FileIngestionMethod::Recursive, h),
                _ => ContentAddress::Fixed(FileIngestionMethod::Flat, h),
            })
        }
    }
}

fn signatures(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| match s {
                    Value::String(s) => s.clone(),
                    obj => format!(
                        "{}:{}",
                        obj["keyName"].as_str().unwrap(),
                        obj["sig"].as_str().unwrap()
                    ),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn manual_example_matches_json_vectors() {
    let dir = StoreDir::default();
    let text = manual_example();
    let info = NarInfo::parse(&dir, &text).unwrap();
    assert_eq!(info.to_string(), text);
    assert_eq!(info.canonical().to_string(), text);

    for version in ["json-1", "json-2", "json-3"] {
        let j = json(&format!("nar-info/{version}/impure.json"));
        assert_eq!(info.nar_hash(), &hash(&j["narHash"]), "{version}");
        assert_eq!(info.nar_size(), j["narSize"].as_u64().unwrap());
        assert_eq!(info.file_hash(), Some(&hash(&j["downloadHash"])));
        assert_eq!(info.file_size(), j["downloadSize"].as_u64());
        assert_eq!(info.compression(), j["compression"].as_str().unwrap());
        // The manual's URL carries a query the JSON vector lacks.
        assert!(info.url().starts_with(j["url"].as_str().unwrap()));
        let refs: Vec<StorePath> = j["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| store_path(&dir, r))
            .collect();
        assert_eq!(info.references(), refs);
        assert_eq!(info.deriver(), Some(&store_path(&dir, &j["deriver"])));
        assert_eq!(info.sigs(), signatures(&j["signatures"]));
        assert_eq!(info.ca(), ca(&j["ca"]).as_ref(), "{version}");

        // The same object built from the JSON prints as the manual shows.
        let mut built = NarInfo::new(
            &dir,
            info.store_path().clone(),
            info.url(),
            hash(&j["narHash"]),
            j["narSize"].as_u64().unwrap(),
        )
        .unwrap();
        built.set_compression(j["compression"].as_str()).unwrap();
        built.set_file_hash(Some(hash(&j["downloadHash"])));
        built.set_file_size(j["downloadSize"].as_u64());
        built.set_references(refs);
        built.set_deriver(Some(store_path(&dir, &j["deriver"])));
        for sig in signatures(&j["signatures"]) {
            assert!(built.add_signature(&sig.parse().unwrap()));
        }
        built.set_ca(ca(&j["ca"]));
        assert_eq!(built.to_string(), text, "{version}");
        assert_eq!(built, info);
    }
}

#[test]
fn path_info_vectors_fingerprint() {
    let dir = StoreDir::default();
    let path = StorePath::from_base_name("n5wkd9frr45pa74if5gpz9j7mifg27fh-foo").unwrap();
    let mut fingerprints = Vec::new();
    for version in ["json-1", "json-2", "json-3"] {
        for kind in ["pure", "impure"] {
            let j = json(&format!("path-info/{version}/{kind}.json"));
            let refs: Vec<StorePath> = j["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| store_path(&dir, r))
                .collect();
            let fp = fingerprint(
                &dir,
                &path,
                &hash(&j["narHash"]),
                j["narSize"].as_u64().unwrap(),
                &refs,
            )
            .unwrap();
            fingerprints.push(fp);
        }
        // A path info without a NAR size cannot be fingerprinted (Nix throws too).
        let empty = json(&format!("path-info/{version}/empty_pure.json"));
        assert!(matches!(
            fingerprint(&dir, &path, &hash(&empty["narHash"]), 0, []),
            Err(NarInfoError::UnknownNarSize { .. })
        ));
    }
    fingerprints.dedup();
    assert_eq!(
        fingerprints,
        ["1;/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-foo;\
          sha256:09ymwqf5i9q7d4dm7x4pjjcqqj0qrcp5lnznbh42gfsci5hcbqqm;34878;\
          /nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar,\
          /nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-foo"]
    );
}

/// Fingerprints sort references as full path strings and drop duplicates, and print
/// the NAR hash with its algorithm whatever it is (Nix only insists on SHA-256 when
/// printing a narinfo).
#[test]
fn fingerprint_rules() {
    let dir = StoreDir::new("/tmp/s").unwrap();
    let p = |s: &str| StorePath::from_base_name(s).unwrap();
    // Sorted as printed paths, whatever order they come in.
    let (a, b) = (
        p("00000000000000000000000000000001-z"),
        p("10000000000000000000000000000000-a"),
    );
    assert!(a.to_string() < b.to_string());
    let h = rix_formats::HashAlgo::Sha512.digest("x");
    let fp = fingerprint(&dir, &a, &h, 5, [&b, &a, &b]).unwrap();
    assert_eq!(fp, format!("1;/tmp/s/{a};{h};5;/tmp/s/{a},/tmp/s/{b}"));
    assert!(fp.contains(";sha512:"));
}
