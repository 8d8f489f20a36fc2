//! Nix's golden files (`tests/vectors/nix-libstore/serve-protocol/`, from Nix
//! 2.26.3): each is decoded to the values Nix's
//! `src/libstore-tests/serve-protocol.cc` lists for it, and those values are
//! encoded back to the file's bytes; and round trips of every request.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use super::*;
use crate::content_address::ContentAddress;
use crate::derivation::{Derivation, DerivationOutput};
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{FileIngestionMethod, StoreDir, StorePath};
use crate::worker_protocol::{
    BuildResult, BuildStatus, DrvOutput, Realisation, Serialise, UnkeyedValidPathInfo,
};

fn golden(name: &str) -> Vec<u8> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/nix-libstore/serve-protocol");
    let path = dir.join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ctx(minor: u8) -> ServeCtx {
    ServeCtx::new(ServeVersion::new(2, minor), StoreDir::default())
}

/// Checks `file` against `values` at version 2.`minor`, with `read`/`write`
/// the serve form of the values.
fn check_with<T: PartialEq + Debug>(
    file: &str,
    minor: u8,
    values: &[T],
    read: impl Fn(&mut &[u8], &ServeCtx) -> Result<T, crate::worker_protocol::WireError>,
    write: impl Fn(&T, &mut Vec<u8>, &ServeCtx),
) {
    let bytes = golden(file);
    let ctx = ctx(minor);
    let mut rest = &bytes[..];
    for (i, expected) in values.iter().enumerate() {
        let got = read(&mut rest, &ctx).unwrap_or_else(|e| panic!("{file}, value {i}: {e}"));
        assert_eq!(&got, expected, "{file}, value {i}");
    }
    assert!(rest.is_empty(), "{file}: bytes left over");
    let mut out = Vec::new();
    for v in values {
        write(v, &mut out, &ctx);
    }
    assert_eq!(out, bytes, "{file}: encoding differs");
}

/// A value in the form the serve protocol shares with the worker protocol.
fn check_common<T: Serialise + PartialEq + Debug>(file: &str, values: &[T]) {
    check_with(
        file,
        0,
        values,
        |r, c| T::read(r, &c.common()),
        |v, w, c| v.write(w, &c.common()).unwrap(),
    );
}

/// A value in the serve protocol's own form.
fn check_serve<T: ServeSerialise + PartialEq + Debug>(file: &str, minor: u8, values: &[T]) {
    check_with(
        file,
        minor,
        values,
        |r, c| T::read(r, c),
        |v, w, c| v.write(w, c).unwrap(),
    );
}

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

/// Nix's `"oh no \0\0\0 what was that!"` is a C string: it ends at the NUL.
#[test]
fn golden_string() {
    check_common(
        "string",
        &strings(&["", "hi", "white rabbit", "大白兔", "oh no "]),
    );
}

#[test]
fn golden_store_path() {
    check_common("store-path", &[path(FOO), path(FOO_BAR)]);
}

#[test]
fn golden_optional_store_path() {
    check_common("optional-store-path", &[None, Some(path(FOO_BAR))]);
}

#[test]
fn golden_content_address() {
    check_common(
        "content-address",
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
    check_common(
        "optional-content-address",
        &[
            None,
            Some(ContentAddress::Fixed(
                FileIngestionMethod::Flat,
                HashAlgo::Sha1.digest("blob blob..."),
            )),
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
    check_common(
        "drv-output",
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
    check_common("realisation", &[plain, with_deps]);
}

#[test]
fn golden_vector() {
    check_with(
        "vector",
        0,
        &[(
            strings(&[]),
            strings(&[""]),
            strings(&["", "foo", "bar"]),
            vec![strings(&[]), strings(&[""]), strings(&["", "1", "2"])],
        )],
        |r, c| {
            let c = c.common();
            Ok((
                Serialise::read(r, &c)?,
                Serialise::read(r, &c)?,
                Serialise::read(r, &c)?,
                Serialise::read(r, &c)?,
            ))
        },
        |v, w, c| {
            let c = c.common();
            v.0.write(w, &c).unwrap();
            v.1.write(w, &c).unwrap();
            v.2.write(w, &c).unwrap();
            v.3.write(w, &c).unwrap();
        },
    );
}

#[test]
fn golden_set() {
    let nested: BTreeSet<BTreeSet<String>> = [
        string_set(&[]),
        string_set(&[""]),
        string_set(&["", "1", "2"]),
    ]
    .into();
    check_with(
        "set",
        0,
        &[(
            string_set(&[]),
            string_set(&[""]),
            string_set(&["", "foo", "bar"]),
            nested,
        )],
        |r, c| {
            let c = c.common();
            Ok((
                Serialise::read(r, &c)?,
                Serialise::read(r, &c)?,
                Serialise::read(r, &c)?,
                Serialise::read(r, &c)?,
            ))
        },
        |v, w, c| {
            let c = c.common();
            v.0.write(w, &c).unwrap();
            v.1.write(w, &c).unwrap();
            v.2.write(w, &c).unwrap();
            v.3.write(w, &c).unwrap();
        },
    );
}

fn output_rejected() -> BuildResult {
    BuildResult {
        error_msg: "no idea why".into(),
        ..BuildResult::new(BuildStatus::OutputRejected)
    }
}

fn not_deterministic(timed: bool) -> BuildResult {
    let mut r = BuildResult {
        error_msg: "no idea why".into(),
        ..BuildResult::new(BuildStatus::NotDeterministic)
    };
    if timed {
        r.times_built = 3;
        r.is_non_deterministic = true;
        r.start_time = 30;
        r.stop_time = 50;
    }
    r
}

#[test]
fn golden_build_result_2_2() {
    check_serve(
        "build-result-2.2",
        2,
        &[
            output_rejected(),
            not_deterministic(false),
            BuildResult::new(BuildStatus::Built),
        ],
    );
}

#[test]
fn golden_build_result_2_3() {
    let built = BuildResult {
        start_time: 30,
        stop_time: 50,
        ..BuildResult::new(BuildStatus::Built)
    };
    check_serve(
        "build-result-2.3",
        3,
        &[output_rejected(), not_deterministic(true), built],
    );
}

#[test]
fn golden_build_result_2_6() {
    let realisation = |name: &str, base: &str| Realisation {
        id: drv_output(DRV_HASH_2, name),
        out_path: path(base),
        signatures: BTreeSet::new(),
        dependent_realisations: BTreeMap::new(),
    };
    let built = BuildResult {
        times_built: 1,
        built_outputs: [
            ("foo".to_owned(), realisation("foo", FOO)),
            ("bar".to_owned(), realisation("bar", BAR)),
        ]
        .into(),
        start_time: 30,
        stop_time: 50,
        ..BuildResult::new(BuildStatus::Built)
    };
    check_serve(
        "build-result-2.6",
        6,
        &[output_rejected(), not_deterministic(true), built],
    );
}

#[test]
fn golden_unkeyed_valid_path_info_2_3() {
    let first = UnkeyedValidPathInfo {
        nar_size: 34878,
        ..UnkeyedValidPathInfo::new(values::dummy_hash())
    };
    let second = UnkeyedValidPathInfo {
        deriver: Some(path(BAR_DRV)),
        references: [path("g1w7hyyyy1w7hy3qg1w7hy3qgqqqqy3q-foo.drv")].into(),
        ..first.clone()
    };
    check_serve("unkeyed-valid-path-info-2.3", 3, &[first, second]);
}

#[test]
fn golden_unkeyed_valid_path_info_2_4() {
    let first = UnkeyedValidPathInfo {
        deriver: Some(path(BAR_DRV)),
        references: [path("g1w7hyyyy1w7hy3qg1w7hy3qgqqqqy3q-foo.drv")].into(),
        nar_size: 34878,
        ..UnkeyedValidPathInfo::new(sri(DRV_HASH_1))
    };
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
    let second = UnkeyedValidPathInfo {
        deriver: Some(path(BAR_DRV)),
        references: [path(BAR), ca_path].into(),
        nar_size: 34878,
        sigs: string_set(&["fake-sig-1", "fake-sig-2"]),
        ca: Some(ContentAddress::Fixed(
            FileIngestionMethod::Recursive,
            ca_hash,
        )),
        ..UnkeyedValidPathInfo::new(sri(DRV_HASH_1))
    };
    check_serve("unkeyed-valid-path-info-2.4", 4, &[first, second]);
}

#[test]
fn golden_build_options() {
    let base = BuildOptions {
        max_silent_time: 5,
        build_timeout: 6,
        ..BuildOptions::default()
    };
    check_serve("build-options-2.1", 1, &[base]);
    let with_log = BuildOptions {
        max_log_size: 7,
        ..base
    };
    check_serve("build-options-2.2", 2, &[with_log]);
    let repeats = BuildOptions {
        nr_repeats: 8,
        enforce_determinism: true,
        ..with_log
    };
    check_serve("build-options-2.3", 3, &[repeats]);
    let keep = BuildOptions {
        nr_repeats: 8,
        keep_failed: true,
        ..with_log
    };
    check_serve("build-options-2.7", 7, &[keep]);
}

/// The server's greeting at 2.0, replayed to the client side.
#[test]
fn golden_handshake() {
    let v2_0 = ServeVersion::new(2, 0);
    let to_client = golden("handshake-to-client");
    // The server writes exactly the golden bytes.
    let mut from_client = Vec::new();
    crate::worker_protocol::wire::write_u64(&mut from_client, SERVE_MAGIC_1).unwrap();
    crate::worker_protocol::wire::write_u64(&mut from_client, v2_0.0.into()).unwrap();
    let mut out = Vec::new();
    let v = server_handshake(&mut &from_client[..], &mut out, v2_0).unwrap();
    assert_eq!(v, v2_0);
    assert_eq!(out, to_client);
    // The client reads them back; what it sent is what the server read.
    let mut sent = Vec::new();
    let v = client_handshake(&mut sent, &mut &to_client[..], v2_0, "blah").unwrap();
    assert_eq!(v, v2_0);
    assert_eq!(sent, from_client);
    // A later client gets the older server's version.
    let v = client_handshake(
        &mut Vec::new(),
        &mut &to_client[..],
        ServeVersion::LATEST,
        "h",
    );
    assert_eq!(v.unwrap(), v2_0);
    // Truncated or corrupted greetings are refused, never a panic.
    for len in 0..to_client.len() {
        assert!(client_handshake(&mut Vec::new(), &mut &to_client[..len], v2_0, "h").is_err());
    }
    let mut bad = to_client.clone();
    bad[0] ^= 1;
    let err = client_handshake(&mut Vec::new(), &mut &bad[..], v2_0, "h").unwrap_err();
    assert_eq!(
        err.to_string(),
        "'nix-store --serve' protocol mismatch from 'h'"
    );
    let mut old = to_client.clone();
    old[9] = 1; // major 1
    let err = client_handshake(&mut Vec::new(), &mut &old[..], v2_0, "h").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported 'nix-store --serve' protocol version on 'h'"
    );
}

fn sample_drv() -> Derivation {
    let mut drv = Derivation {
        name: "bar".into(),
        system: b"x86_64-linux".to_vec(),
        builder: b"/bin/sh".to_vec(),
        args: vec![b"-c".to_vec(), b"echo hi > $out".to_vec()],
        ..Derivation::default()
    };
    drv.outputs.insert(
        "out".into(),
        DerivationOutput::InputAddressed { path: path(BAR) },
    );
    drv.input_srcs.insert(path(FOO));
    drv.env.insert(b"out".to_vec(), b"/nix/store/x".to_vec());
    drv
}

fn requests() -> Vec<ServeRequest> {
    let paths: BTreeSet<StorePath> = [path(FOO), path(BAR)].into();
    let options = BuildOptions {
        max_silent_time: 1,
        build_timeout: 2,
        max_log_size: 3,
        keep_failed: true,
        ..BuildOptions::default()
    };
    vec![
        ServeRequest::QueryValidPaths {
            lock: true,
            substitute: false,
            paths: paths.clone(),
        },
        ServeRequest::QueryPathInfos {
            paths: paths.clone(),
        },
        ServeRequest::DumpStorePath { path: path(FOO) },
        ServeRequest::ImportPaths,
        ServeRequest::BuildPaths {
            paths: vec![
                StorePathWithOutputs {
                    path: path(BAR_DRV),
                    outputs: string_set(&["out", "dev"]),
                },
                StorePathWithOutputs {
                    path: path(FOO),
                    outputs: BTreeSet::new(),
                },
            ],
            options,
        },
        ServeRequest::BuildDerivation {
            drv_path: path(BAR_DRV),
            drv: sample_drv(),
            options,
        },
        ServeRequest::QueryClosure {
            include_outputs: true,
            paths,
        },
        ServeRequest::AddToStoreNar(AddToStoreNarInfo {
            path: path(FOO),
            deriver: Some(path(BAR_DRV)),
            nar_hash: sri(DRV_HASH_1),
            references: [path(BAR)].into(),
            registration_time: 7,
            nar_size: 120,
            ultimate: false,
            sigs: string_set(&["k:sig"]),
            ca: None,
        }),
    ]
}

#[test]
fn requests_round_trip() {
    let ctx = ctx(7);
    for req in requests() {
        let mut bytes = Vec::new();
        req.write(&mut bytes, &ctx).unwrap();
        let mut rest = &bytes[..];
        let code = crate::worker_protocol::wire::read_u64(&mut rest, "code").unwrap();
        assert_eq!(code, req.command() as u64);
        let again = ServeRequest::read(code, &mut rest, &ctx).unwrap();
        assert!(rest.is_empty(), "{:?}", req.command());
        assert_eq!(again, req);
        // Every truncation is an error, never a panic.
        for len in 8..bytes.len() {
            assert!(ServeRequest::read(code, &mut &bytes[8..len], &ctx).is_err());
        }
    }
}

#[test]
fn unknown_commands_are_refused() {
    let ctx = ctx(7);
    for code in [0, 5, 10, u64::MAX] {
        let err = ServeRequest::read(code, &mut &[][..], &ctx).unwrap_err();
        assert_eq!(err.to_string(), format!("unknown serve command {code}"));
    }
}
