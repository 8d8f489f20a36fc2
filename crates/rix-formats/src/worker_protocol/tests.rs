//! Nix's golden files (`tests/vectors/nix-libstore/worker-protocol/`, from
//! Nix 2.26.3): each is decoded to the values Nix's
//! `src/libstore-tests/worker-protocol.cc` lists for it, and those values are
//! encoded back to the file's bytes.
//!
//! Files outside the versions rix speaks (1.34 to 1.38), and so not tested:
//! - `derived-path-1.29.bin`: the pre-1.30 form, where `…-bar.drv` means all its
//!   outputs (from 1.30 it is the `.drv` file itself);
//! - `build-result-1.27.bin`, `build-result-1.28.bin`: without the timing fields
//!   1.29 added;
//! - `unkeyed-valid-path-info-1.15.bin`, `valid-path-info-1.15.bin`: without the
//!   `ultimate`, `sigs` and `ca` fields 1.16 added;
//! - `client-handshake-info_1_30.bin`: empty, since nothing was sent before 1.33.
//!
//! Files written by Nix at an older version whose form is unchanged up to a
//! version rix speaks are tested at every such version (for example
//! `build-result-1.29.bin` at 1.34 to 1.36, `string.bin`, written at 1.10, at
//! 1.34 to 1.38).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use super::*;
use crate::content_address::ContentAddress;
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{FileIngestionMethod, StoreDir, StorePath};

fn golden(name: &str) -> Vec<u8> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/nix-libstore/worker-protocol");
    let path = dir.join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(super) fn ctx(minor: u8) -> Ctx {
    Ctx::new(ProtocolVersion::new(1, minor).unwrap(), StoreDir::default())
}

/// Checks `file` against `values` at each of `minors`: decoding yields exactly
/// the values and consumes the whole file; encoding yields the file's bytes.
fn check<T: Serialise + PartialEq + Debug>(file: &str, minors: &[u8], values: &[T]) {
    let bytes = golden(file);
    for &minor in minors {
        let ctx = ctx(minor);
        let mut rest = &bytes[..];
        for (i, expected) in values.iter().enumerate() {
            let got = T::read(&mut rest, &ctx)
                .unwrap_or_else(|e| panic!("{file} at 1.{minor}, value {i}: {e}"));
            assert_eq!(&got, expected, "{file} at 1.{minor}, value {i}");
        }
        assert!(rest.is_empty(), "{file} at 1.{minor}: bytes left over");
        let mut out = Vec::new();
        for v in values {
            v.write(&mut out, &ctx).unwrap();
        }
        assert_eq!(out, bytes, "{file} at 1.{minor}: encoding differs");
    }
}

const ALL: &[u8] = &[34, 35, 36, 37, 38];

fn path(base: &str) -> StorePath {
    StorePath::from_base_name(base).unwrap()
}

fn sri(s: &str) -> Hash {
    Hash::parse_any(s, None).unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn string_set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const FOO: &str = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo";
const FOO_BAR: &str = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo-bar";
const BAR: &str = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar";
const BAR_DRV: &str = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar.drv";
const DRV_HASH_1: &str = "sha256-FePFYIlMuycIXPZbWi7LGEiMmZSX9FMbaQenWBzm1Sc=";
const DRV_HASH_2: &str = "sha256-b4afnqKCO9oWXgYHb9DeQ2berSwOjS27rSd9TxXDc/U=";

/// Nix's test lists `"oh no \0\0\0 what was that!"`, a C string literal: as a
/// `std::string` it ends at the first NUL, and the file holds `oh no `.
#[test]
fn golden_string() {
    check(
        "string",
        ALL,
        &strings(&["", "hi", "white rabbit", "大白兔", "oh no "]),
    );
}

#[test]
fn golden_store_path() {
    check("store-path", ALL, &[path(FOO), path(FOO_BAR)]);
}

#[test]
fn golden_optional_store_path() {
    check("optional-store-path", ALL, &[None, Some(path(FOO_BAR))]);
}

#[test]
fn golden_content_address() {
    check(
        "content-address",
        ALL,
        &[
            ContentAddress::Text(HashAlgo::Sha256.digest("Derive(...)")),
            ContentAddress::Fixed(
                FileIngestionMethod::Flat,
                HashAlgo::Sha1.digest("blob blob..."),
            ),
            ContentAddress::Fixed(
                FileIngestionMethod::Recursive,
                HashAlgo::Sha256.digest("(...)"),
            ),
        ],
    );
}

#[test]
fn golden_optional_content_address() {
    check(
        "optional-content-address",
        ALL,
        &[
            None,
            Some(ContentAddress::Fixed(
                FileIngestionMethod::Flat,
                HashAlgo::Sha1.digest("blob blob..."),
            )),
        ],
    );
}

#[test]
fn golden_derived_path_1_30() {
    let built = |outputs| DerivedPath::Built {
        drv_path: path(BAR_DRV),
        outputs,
    };
    check(
        "derived-path-1.30",
        ALL,
        &[
            DerivedPath::Opaque(path(FOO)),
            DerivedPath::Opaque(path("g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv")),
            built(OutputsSpec::All),
            built(OutputsSpec::Names(string_set(&["x", "y"]))),
        ],
    );
}

fn drv_output(hash: &str, name: &str) -> DrvOutput {
    DrvOutput {
        drv_hash: sri(hash),
        output_name: name.to_owned(),
    }
}

#[test]
fn golden_drv_output() {
    check(
        "drv-output",
        ALL,
        &[
            drv_output(DRV_HASH_1, "baz"),
            drv_output(DRV_HASH_2, "quux"),
        ],
    );
}

#[test]
fn golden_realisation() {
    let plain = Realisation {
        id: drv_output(DRV_HASH_1, "baz"),
        out_path: path(FOO),
        signatures: string_set(&["asdf", "qwer"]),
        dependent_realisations: BTreeMap::new(),
    };
    let with_deps = Realisation {
        dependent_realisations: [(drv_output(DRV_HASH_2, "quux"), path(FOO))].into(),
        ..plain.clone()
    };
    check("realisation", ALL, &[plain, with_deps]);
}

/// The outputs of the third build result of the `build-result-*` files.
fn built_outputs() -> BTreeMap<String, Realisation> {
    let realisation = |name: &str, base: &str| Realisation {
        id: drv_output(DRV_HASH_2, name),
        out_path: path(base),
        signatures: BTreeSet::new(),
        dependent_realisations: BTreeMap::new(),
    };
    [
        ("foo".to_owned(), realisation("foo", FOO)),
        ("bar".to_owned(), realisation("bar", BAR)),
    ]
    .into()
}

fn output_rejected() -> BuildResult {
    BuildResult {
        error_msg: "no idea why".into(),
        ..BuildResult::new(BuildStatus::OutputRejected)
    }
}

fn not_deterministic() -> BuildResult {
    BuildResult {
        error_msg: "no idea why".into(),
        times_built: 3,
        is_non_deterministic: true,
        start_time: 30,
        stop_time: 50,
        ..BuildResult::new(BuildStatus::NotDeterministic)
    }
}

fn built() -> BuildResult {
    BuildResult {
        times_built: 1,
        built_outputs: built_outputs(),
        start_time: 30,
        stop_time: 50,
        ..BuildResult::new(BuildStatus::Built)
    }
}

#[test]
fn golden_build_result_1_29() {
    check(
        "build-result-1.29",
        &[34, 35, 36],
        &[output_rejected(), not_deterministic(), built()],
    );
}

#[test]
fn golden_build_result_1_37() {
    let built = BuildResult {
        cpu_user: Some(500_000_000),
        cpu_system: Some(604_000_000),
        ..built()
    };
    check(
        "build-result-1.37",
        &[37, 38],
        &[output_rejected(), not_deterministic(), built],
    );
}

#[test]
fn golden_keyed_build_result_1_29() {
    check(
        "keyed-build-result-1.29",
        &[34, 35, 36],
        &[
            KeyedBuildResult {
                path: DerivedPath::Opaque(path("g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-xxx")),
                result: output_rejected(),
            },
            KeyedBuildResult {
                path: DerivedPath::Built {
                    drv_path: path(BAR_DRV),
                    outputs: OutputsSpec::Names(string_set(&["out"])),
                },
                result: not_deterministic(),
            },
        ],
    );
}

#[test]
fn golden_valid_path_info_1_16() {
    let base = || UnkeyedValidPathInfo {
        registration_time: 23423,
        nar_size: 34878,
        ..UnkeyedValidPathInfo::new(sri(DRV_HASH_1))
    };
    let other = path("g1w7hyyyy1w7hy3qg1w7hy3qgqqqqy3q-foo");
    let ultimate = ValidPathInfo {
        path: path(BAR),
        info: UnkeyedValidPathInfo {
            ultimate: true,
            ..base()
        },
    };
    let signed = ValidPathInfo {
        path: path(BAR),
        info: UnkeyedValidPathInfo {
            deriver: Some(path(BAR_DRV)),
            references: [other, path(BAR)].into(),
            sigs: string_set(&["fake-sig-1", "fake-sig-2"]),
            ..base()
        },
    };
    // Nix computes this one's path from its content address and references.
    let ca_hash = HashAlgo::Sha256.digest("(...)");
    let ca_path = StoreDir::default()
        .make_fixed_output_path(
            "foo",
            FileIngestionMethod::Recursive,
            &ca_hash,
            [&path(BAR)],
            true,
        )
        .unwrap();
    let content_addressed = ValidPathInfo {
        info: UnkeyedValidPathInfo {
            references: [path(BAR), ca_path.clone()].into(),
            ca: Some(ContentAddress::Fixed(
                FileIngestionMethod::Recursive,
                ca_hash,
            )),
            ..base()
        },
        path: ca_path,
    };
    check(
        "valid-path-info-1.16",
        ALL,
        &[ultimate, signed, content_addressed],
    );
}

#[test]
fn golden_build_mode() {
    check(
        "build-mode",
        ALL,
        &[BuildMode::Normal, BuildMode::Repair, BuildMode::Check],
    );
}

#[test]
fn golden_optional_trusted_flag() {
    check(
        "optional-trusted-flag",
        ALL,
        &[
            None,
            Some(TrustedFlag::Trusted),
            Some(TrustedFlag::NotTrusted),
        ],
    );
}

/// `vector.bin` holds three lists of strings, then a list of lists.
#[test]
fn golden_vector() {
    let bytes = golden("vector");
    let lists = [strings(&[]), strings(&[""]), strings(&["", "foo", "bar"])];
    let nested = vec![strings(&[]), strings(&[""]), strings(&["", "1", "2"])];
    for &minor in ALL {
        let ctx = ctx(minor);
        let mut rest = &bytes[..];
        for expected in &lists {
            assert_eq!(&Vec::<String>::read(&mut rest, &ctx).unwrap(), expected);
        }
        assert_eq!(Vec::<Vec<String>>::read(&mut rest, &ctx).unwrap(), nested);
        assert!(rest.is_empty());
        let mut out = Vec::new();
        for l in &lists {
            l.write(&mut out, &ctx).unwrap();
        }
        nested.write(&mut out, &ctx).unwrap();
        assert_eq!(out, bytes);
    }
}

/// `set.bin`: as `vector.bin`, with sets (so in sorted order).
#[test]
fn golden_set() {
    let bytes = golden("set");
    let sets = [
        string_set(&[]),
        string_set(&[""]),
        string_set(&["", "foo", "bar"]),
    ];
    let nested: BTreeSet<BTreeSet<String>> = [
        string_set(&[]),
        string_set(&[""]),
        string_set(&["", "1", "2"]),
    ]
    .into();
    for &minor in ALL {
        let ctx = ctx(minor);
        let mut rest = &bytes[..];
        for expected in &sets {
            assert_eq!(
                &BTreeSet::<String>::read(&mut rest, &ctx).unwrap(),
                expected
            );
        }
        assert_eq!(
            BTreeSet::<BTreeSet<String>>::read(&mut rest, &ctx).unwrap(),
            nested
        );
        assert!(rest.is_empty());
        let mut out = Vec::new();
        for s in &sets {
            s.write(&mut out, &ctx).unwrap();
        }
        nested.write(&mut out, &ctx).unwrap();
        assert_eq!(out, bytes);
    }
}

/// Written by Nix at 1.33: the daemon's version string only, as at 1.34.
#[test]
fn golden_client_handshake_info_1_33() {
    let info = |v: &str| ClientHandshakeInfo {
        daemon_nix_version: v.to_owned(),
        remote_trusts_us: None,
    };
    check(
        "client-handshake-info_1_33",
        &[34],
        &[info("foo"), info("bar")],
    );
}

#[test]
fn golden_client_handshake_info_1_35() {
    check(
        "client-handshake-info_1_35",
        &[35, 36, 37, 38],
        &[
            ClientHandshakeInfo {
                daemon_nix_version: "foo".into(),
                remote_trusts_us: Some(TrustedFlag::NotTrusted),
            },
            ClientHandshakeInfo {
                daemon_nix_version: "bar".into(),
                remote_trusts_us: Some(TrustedFlag::Trusted),
            },
        ],
    );
}

/// What Nix's daemon sends a client in its handshake test: the magic number and
/// version 1.10 (the test's version, too old for rix).
#[test]
fn golden_handshake_to_client() {
    let bytes = golden("handshake-to-client");
    let hello = ServerHello::read(&mut &bytes[..]).unwrap();
    assert_eq!(hello.version, RawVersion(1 << 8 | 10));
    let mut out = Vec::new();
    hello.write(&mut out).unwrap();
    assert_eq!(out, bytes);
    assert_eq!(
        ProtocolVersion::negotiate(ProtocolVersion::MAX, hello.version),
        Err(VersionError::Unsupported(hello.version))
    );
    // As Nix's `handshake_client_truncated_replay_throws`: every prefix fails.
    for len in 0..bytes.len() {
        assert!(ServerHello::read(&mut &bytes[..len]).is_err(), "{len}");
    }
    // As Nix's `handshake_client_corrupted_throws` for the magic number.
    for idx in 0..4 {
        let mut corrupt = bytes.clone();
        corrupt[idx] = corrupt[idx].wrapping_mul(4).wrapping_add(1);
        assert!(ServerHello::read(&mut &corrupt[..]).is_err(), "{idx}");
    }
}
