//! Property tests: printing and parsing derivations are inverse; no input panics.

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use rix_formats::derivation::hashing::LookupError;
use rix_formats::derivation::json::show_derivations;
use rix_formats::derivation::{CaMethod, Derivation, DerivationOutput, DrvHash};
use rix_formats::{Hash, HashAlgo, StoreDir, StorePath};

fn store_path() -> impl Strategy<Value = StorePath> {
    (any::<[u8; 20]>(), "[a-zA-Z0-9+_?=][a-zA-Z0-9+._?=-]{0,20}")
        .prop_map(|(d, n)| StorePath::from_parts(d, &n).unwrap())
}

fn output_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,6}"
}

fn algo() -> impl Strategy<Value = HashAlgo> {
    prop::sample::select(HashAlgo::ALL.to_vec())
}

fn method() -> impl Strategy<Value = CaMethod> {
    prop::sample::select(vec![CaMethod::Flat, CaMethod::Recursive, CaMethod::Text])
}

fn hash() -> impl Strategy<Value = Hash> {
    (algo(), vec(any::<u8>(), 0..16)).prop_map(|(a, data)| a.digest(data))
}

fn output() -> impl Strategy<Value = DerivationOutput> {
    prop_oneof![
        store_path().prop_map(|path| DerivationOutput::InputAddressed { path }),
        (method(), hash()).prop_map(|(method, hash)| {
            // Text hashing needs sha256.
            let hash = if method == CaMethod::Text {
                HashAlgo::Sha256.digest(hash.digest())
            } else {
                hash
            };
            DerivationOutput::CAFixed { method, hash }
        }),
        (method(), algo()).prop_map(|(method, algo)| DerivationOutput::CAFloating { method, algo }),
        Just(DerivationOutput::Deferred),
        (method(), algo()).prop_map(|(method, algo)| DerivationOutput::Impure { method, algo }),
    ]
}

/// Strings: any bytes, or (with `utf8`) text with escapes, control characters and
/// non-ASCII characters.
fn bytes(utf8: bool) -> BoxedStrategy<Vec<u8>> {
    let text = "[ -~\n\r\t\u{1}\u{1f}\u{7f}\u{e9}\u{1f32e}]{0,24}".prop_map(String::into_bytes);
    if utf8 {
        text.boxed()
    } else {
        prop_oneof![vec(any::<u8>(), 0..24), text].boxed()
    }
}

/// No `"` or `\`: Nix prints the system without escaping.
fn system(utf8: bool) -> BoxedStrategy<Vec<u8>> {
    if utf8 {
        "[ -!#-\\[\\]-~\u{e9}]{0,16}"
            .prop_map(String::into_bytes)
            .boxed()
    } else {
        vec(
            any::<u8>().prop_filter("unquoted", |c| *c != b'"' && *c != b'\\'),
            0..16,
        )
        .boxed()
    }
}

prop_compose! {
    fn derivation_with(utf8: bool)(
        name in "[a-zA-Z0-9+_?=][a-zA-Z0-9+._?=-]{0,30}",
        outputs in btree_map(output_name(), output(), 0..4),
        input_drvs in btree_map(store_path(), btree_set(output_name(), 0..3), 0..4),
        input_srcs in btree_set(store_path(), 0..4),
        system in system(utf8),
        builder in bytes(utf8),
        args in vec(bytes(utf8), 0..4),
        env in btree_map(bytes(utf8), bytes(utf8), 0..6),
    ) -> Derivation {
        Derivation { name, outputs, input_drvs, input_srcs, system, builder, args, env }
    }
}

fn derivation() -> impl Strategy<Value = Derivation> {
    derivation_with(false)
}

fn dir() -> StoreDir {
    StoreDir::default()
}

fn all_utf8(d: &Derivation) -> bool {
    let ok = |b: &[u8]| std::str::from_utf8(b).is_ok();
    ok(&d.system)
        && ok(&d.builder)
        && d.args.iter().all(|a| ok(a))
        && d.env.iter().all(|(k, v)| ok(k) && ok(v))
}

fn mutate(mut bytes: Vec<u8>, ops: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, op, byte) in ops {
        let i = if bytes.is_empty() {
            0
        } else {
            pos % bytes.len()
        };
        match op % 4 {
            0 if !bytes.is_empty() => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            2 if !bytes.is_empty() => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

fn no_lookup(_: &StorePath) -> Result<DrvHash, LookupError> {
    Err("no lookup".into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn aterm_roundtrip(drv in derivation()) {
        let printed = drv.to_aterm(&dir()).unwrap();
        let parsed = Derivation::from_aterm(&printed, &dir(), Some(&drv.name));
        prop_assert_eq!(parsed.as_ref(), Ok(&drv), "{}", String::from_utf8_lossy(&printed));
        prop_assert!(drv.drv_path(&dir()).is_ok());
    }

    #[test]
    fn json_roundtrip(drv in derivation_with(true)) {
        prop_assert!(all_utf8(&drv));
        let json = drv.to_json_value(&dir()).unwrap();
        let parsed = Derivation::from_json(&json, &dir(), Some(&drv.name)).unwrap();
        prop_assert_eq!(parsed, drv.clone());
        // The exact text is valid JSON with the same content.
        let path = drv.drv_path(&dir()).unwrap();
        let text = show_derivations(&dir(), &[(&path, &drv)]).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        prop_assert_eq!(&value[dir().display(&path)], &json);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let _ = Derivation::from_aterm(&bytes, &dir(), None);
        let mut prefixed = b"Derive([".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = Derivation::from_aterm(&prefixed, &dir(), Some("x"));
    }

    #[test]
    fn mutated_drvs_never_panic(
        drv in derivation(),
        ops in vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let printed = drv.to_aterm(&dir()).unwrap();
        let mutated = mutate(printed, &ops);
        for name in [None, Some(drv.name.as_str())] {
            match Derivation::from_aterm(&mutated, &dir(), name) {
                Ok(parsed) => {
                    // Whatever parses prints, and reparses to the same value.
                    let again = parsed.to_aterm(&dir()).unwrap();
                    let reparsed = Derivation::from_aterm(&again, &dir(), Some(&parsed.name));
                    prop_assert_eq!(reparsed.as_ref(), Ok(&parsed));
                    let _ = parsed.hash_modulo(&dir(), true, no_lookup);
                    let _ = parsed.check_outputs(&dir(), no_lookup);
                }
                Err(e) => {
                    if let Some(offset) = e.offset() {
                        prop_assert!(offset <= mutated.len(), "{e}");
                    }
                }
            }
        }
    }

    #[test]
    fn json_never_panics(drv in derivation_with(true), key in 0usize..8, junk in any::<u32>()) {
        let mut json = drv.to_json_value(&dir()).unwrap();
        let obj = json.as_object_mut().unwrap();
        let k = obj.keys().nth(key % obj.len()).unwrap().clone();
        obj[&k] = serde_json::json!(junk);
        let _ = Derivation::from_json(&json, &dir(), None);
    }
}

proptest! {
    /// The printers iterate `StorePath` sets in `Ord` order, which must be Nix's
    /// order: by printed base name (not by digest).
    #[test]
    fn store_path_order_is_nix_order(paths in btree_set(store_path(), 0..8)) {
        let printed: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let mut sorted = printed.clone();
        sorted.sort();
        prop_assert_eq!(printed, sorted);
    }
}
