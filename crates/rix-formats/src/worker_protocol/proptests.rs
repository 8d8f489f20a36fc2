//! Property tests: every value reads back as written, at every version, and no
//! input makes a reader panic or allocate what the peer did not send.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;

use super::handshake::{read_client_magic, read_raw_version};
use super::tests::ctx;
use super::wire::{read_bytes, read_strings};
use super::*;
use crate::content_address::ContentAddress;
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{FileIngestionMethod, StorePath};

pub(super) fn arb_version() -> impl Strategy<Value = u8> {
    34u8..=38
}

pub(super) fn arb_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9+._?=-]{1,20}".prop_filter("not a store path name", |n| {
        crate::store_path::check_name(n).is_ok()
    })
}

pub(super) fn arb_store_path() -> impl Strategy<Value = StorePath> {
    (any::<[u8; 20]>(), arb_name()).prop_map(|(d, n)| StorePath::from_parts(d, &n).unwrap())
}

pub(super) fn arb_hash(algo: HashAlgo) -> impl Strategy<Value = Hash> {
    vec(any::<u8>(), algo.size()).prop_map(move |d| Hash::from_bytes(algo, &d).unwrap())
}

pub(super) fn arb_any_hash() -> impl Strategy<Value = Hash> {
    prop_oneof![
        arb_hash(HashAlgo::Md5),
        arb_hash(HashAlgo::Sha1),
        arb_hash(HashAlgo::Sha256),
        arb_hash(HashAlgo::Sha512),
    ]
}

pub(super) fn arb_ca() -> impl Strategy<Value = ContentAddress> {
    prop_oneof![
        arb_hash(HashAlgo::Sha256).prop_map(ContentAddress::Text),
        arb_any_hash().prop_map(|h| ContentAddress::Fixed(FileIngestionMethod::Flat, h)),
        arb_any_hash().prop_map(|h| ContentAddress::Fixed(FileIngestionMethod::Recursive, h)),
    ]
}

pub(super) fn arb_text() -> impl Strategy<Value = String> {
    ".{0,30}"
}

pub(super) fn arb_drv_output() -> impl Strategy<Value = DrvOutput> {
    (arb_any_hash(), arb_name()).prop_map(|(drv_hash, output_name)| DrvOutput {
        drv_hash,
        output_name,
    })
}

pub(super) fn arb_realisation() -> impl Strategy<Value = Realisation> {
    (
        arb_drv_output(),
        arb_store_path(),
        btree_set(arb_text(), 0..3),
        btree_map(arb_drv_output(), arb_store_path(), 0..3),
    )
        .prop_map(
            |(id, out_path, signatures, dependent_realisations)| Realisation {
                id,
                out_path,
                signatures,
                dependent_realisations,
            },
        )
}

pub(super) fn arb_derived_path() -> impl Strategy<Value = DerivedPath> {
    prop_oneof![
        arb_store_path().prop_map(DerivedPath::Opaque),
        (
            arb_store_path(),
            prop_oneof![
                Just(OutputsSpec::All),
                btree_set("[a-z]{1,5}", 1..4).prop_map(OutputsSpec::Names),
            ]
        )
            .prop_map(|(drv_path, outputs)| DerivedPath::Built { drv_path, outputs }),
    ]
}

/// Build results as they can travel at version 1.`minor` (CPU times from 1.37;
/// outputs keyed by their realisation's output name, as Nix builds them).
fn arb_build_result(minor: u8) -> impl Strategy<Value = BuildResult> {
    let micros = proptest::option::of(0..i64::MAX);
    (
        proptest::sample::select(BuildStatus::ALL),
        arb_text(),
        any::<u32>(),
        any::<bool>(),
        (0..i64::MAX, 0..i64::MAX),
        (micros.clone(), micros),
        vec(arb_realisation(), 0..3),
    )
        .prop_map(
            move |(status, error_msg, times_built, nd, (start, stop), (cu, cs), rs)| {
                let cpu = minor >= 37;
                BuildResult {
                    status,
                    error_msg,
                    times_built,
                    is_non_deterministic: nd,
                    start_time: start,
                    stop_time: stop,
                    cpu_user: cu.filter(|_| cpu),
                    cpu_system: cs.filter(|_| cpu),
                    built_outputs: dedup_by_id(rs),
                }
            },
        )
}

/// Realisations keyed by output name, with distinct ids (on the wire they are
/// keyed by id).
fn dedup_by_id(rs: Vec<Realisation>) -> BTreeMap<String, Realisation> {
    let mut ids = BTreeSet::new();
    let mut out = BTreeMap::new();
    for r in rs {
        if !out.contains_key(&r.id.output_name) && ids.insert(r.id.clone()) {
            out.insert(r.id.output_name.clone(), r);
        }
    }
    out
}

pub(super) fn arb_path_info() -> impl Strategy<Value = ValidPathInfo> {
    (
        arb_store_path(),
        proptest::option::of(arb_store_path()),
        arb_hash(HashAlgo::Sha256),
        btree_set(arb_store_path(), 0..4),
        (0..i64::MAX, any::<u64>(), any::<bool>()),
        btree_set(arb_text(), 0..3),
        proptest::option::of(arb_ca()),
    )
        .prop_map(
            |(path, deriver, nar_hash, references, (rt, size, ultimate), sigs, ca)| ValidPathInfo {
                path,
                info: UnkeyedValidPathInfo {
                    deriver,
                    nar_hash,
                    references,
                    registration_time: rt,
                    nar_size: size,
                    ultimate,
                    sigs,
                    ca,
                },
            },
        )
}

pub(super) fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..40)
}

fn arb_fields() -> impl Strategy<Value = Vec<Field>> {
    vec(
        prop_oneof![
            any::<u64>().prop_map(Field::Int),
            arb_bytes().prop_map(Field::String)
        ],
        0..4,
    )
}

fn arb_stderr() -> impl Strategy<Value = StderrMsg> {
    prop_oneof![
        arb_bytes().prop_map(StderrMsg::Next),
        any::<u64>().prop_map(StderrMsg::Read),
        arb_bytes().prop_map(StderrMsg::Write),
        Just(StderrMsg::Last),
        (any::<u32>(), arb_text(), vec(arb_text(), 0..3))
            .prop_map(|(level, msg, traces)| StderrMsg::Error(RemoteError { level, msg, traces })),
        (any::<(u64, u32, u32, u64)>(), arb_bytes(), arb_fields()).prop_map(
            |((id, level, activity_type, parent), text, fields)| {
                StderrMsg::StartActivity(StartActivity {
                    id,
                    level,
                    activity_type,
                    text,
                    fields,
                    parent,
                })
            }
        ),
        any::<u64>().prop_map(StderrMsg::StopActivity),
        (any::<(u64, u32)>(), arb_fields()).prop_map(|((id, result_type), fields)| {
            StderrMsg::Result(ActivityResult {
                id,
                result_type,
                fields,
            })
        }),
    ]
}

fn roundtrip<T: Serialise + PartialEq + Debug>(value: &T, minor: u8) {
    let ctx = ctx(minor);
    let bytes = to_bytes(value, &ctx);
    let back: T = from_bytes(&bytes, &ctx).unwrap();
    assert_eq!(&back, value);
}

proptest! {
    #[test]
    fn build_results_roundtrip(
        (minor, r) in arb_version().prop_flat_map(|m| (Just(m), arb_build_result(m))),
        path in arb_derived_path(),
    ) {
        roundtrip(&r, minor);
        roundtrip(&KeyedBuildResult { path, result: r }, minor);
    }

    #[test]
    fn path_infos_roundtrip(info in arb_path_info(), minor in arb_version()) {
        roundtrip(&info, minor);
        roundtrip(&info.info, minor);
    }

    #[test]
    fn small_values_roundtrip(
        minor in arb_version(),
        dp in arb_derived_path(),
        r in arb_realisation(),
        ca in proptest::option::of(arb_ca()),
        p in proptest::option::of(arb_store_path()),
        strings in vec(arb_text(), 0..4),
        mode in proptest::sample::select(&[BuildMode::Normal, BuildMode::Repair, BuildMode::Check][..]),
        trusted in proptest::sample::select(&[None, Some(TrustedFlag::Trusted), Some(TrustedFlag::NotTrusted)][..]),
        version in arb_text(),
        options in (proptest::option::of(any::<u32>()), any::<bool>()),
    ) {
        roundtrip(&dp, minor);
        roundtrip(&r, minor);
        roundtrip(&r.id, minor);
        roundtrip(&ca, minor);
        roundtrip(&p, minor);
        roundtrip(&strings, minor);
        roundtrip(&mode, minor);
        roundtrip(&trusted, minor);
        roundtrip(&ClientOptions { cpu_affinity: options.0, reserve_space: options.1 }, minor);
        let info = ClientHandshakeInfo {
            daemon_nix_version: version,
            remote_trusts_us: trusted.filter(|_| minor >= 35),
        };
        roundtrip(&info, minor);
    }

    #[test]
    fn stderr_messages_roundtrip(msg in arb_stderr(), minor in arb_version()) {
        let ctx = ctx(minor);
        let mut bytes = Vec::new();
        msg.write(&mut bytes).unwrap();
        let mut rest = &bytes[..];
        prop_assert_eq!(StderrMsg::read(&mut rest, &ctx).unwrap(), msg);
        prop_assert!(rest.is_empty());
    }

    /// No reader panics, whatever the bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200), minor in arb_version()) {
        decode_everything(&bytes, &ctx(minor));
    }

    /// Nor on bytes that start like a real value and then go wrong.
    #[test]
    fn mutated_values_never_panic(
        info in arb_path_info(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        minor in arb_version(),
    ) {
        let ctx = ctx(minor);
        let mut bytes = to_bytes(&info, &ctx);
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        decode_everything(&bytes, &ctx);
    }
}

/// Runs every reader over `bytes` (the fuzz target does the same).
fn decode_everything(bytes: &[u8], ctx: &Ctx) {
    fn go<T: Serialise>(bytes: &[u8], ctx: &Ctx) {
        let _ = T::read(&mut &bytes[..], ctx);
    }
    go::<String>(bytes, ctx);
    go::<Vec<String>>(bytes, ctx);
    go::<BTreeSet<BTreeSet<String>>>(bytes, ctx);
    go::<StorePath>(bytes, ctx);
    go::<Option<StorePath>>(bytes, ctx);
    go::<BTreeSet<StorePath>>(bytes, ctx);
    go::<ContentAddress>(bytes, ctx);
    go::<Option<ContentAddress>>(bytes, ctx);
    go::<DrvOutput>(bytes, ctx);
    go::<Realisation>(bytes, ctx);
    go::<DerivedPath>(bytes, ctx);
    go::<Vec<DerivedPath>>(bytes, ctx);
    go::<BuildMode>(bytes, ctx);
    go::<BuildResult>(bytes, ctx);
    go::<KeyedBuildResult>(bytes, ctx);
    go::<UnkeyedValidPathInfo>(bytes, ctx);
    go::<ValidPathInfo>(bytes, ctx);
    go::<Option<TrustedFlag>>(bytes, ctx);
    go::<ClientHandshakeInfo>(bytes, ctx);
    go::<ClientOptions>(bytes, ctx);
    let _ = StderrMsg::read(&mut &bytes[..], ctx);
    let _ = WorkerOp::read(&mut &bytes[..]);
    let _ = ServerHello::read(&mut &bytes[..]);
    let _ = read_client_magic(&mut &bytes[..]);
    let _ = read_raw_version(&mut &bytes[..], "version");
}

/// A length prefix of 2^60 followed by a few bytes.
fn huge_prefix() -> Vec<u8> {
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"abcdefgh");
    bytes
}

#[test]
fn huge_lengths_are_refused_before_allocating() {
    let bytes = huge_prefix();
    let ctx = ctx(38);
    for err in [
        read_bytes(&mut &bytes[..], &ctx.limits, "s").unwrap_err(),
        read_strings(&mut &bytes[..], &ctx.limits, "l").unwrap_err(),
        String::read(&mut &bytes[..], &ctx).unwrap_err(),
        Vec::<StorePath>::read(&mut &bytes[..], &ctx).unwrap_err(),
        BTreeSet::<String>::read(&mut &bytes[..], &ctx).unwrap_err(),
    ] {
        assert!(
            matches!(err.root(), WireError::TooLong { len, .. } if *len == 1 << 60),
            "{err}"
        );
    }
    // A message whose string is too long names where it was.
    let mut msg = super::stderr::STDERR_NEXT.to_le_bytes().to_vec();
    msg.extend_from_slice(&bytes);
    let err = StderrMsg::read(&mut &msg[..], &ctx).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooLong {
                field: "STDERR_NEXT",
                ..
            }
        ),
        "{err}"
    );
}

/// Without limits, the announced length is still not allocated up front: the
/// read fails at the end of the data (an allocation of 2^60 bytes would abort).
#[test]
fn unlimited_reads_allocate_only_what_arrives() {
    let bytes = huge_prefix();
    let err = read_bytes(&mut &bytes[..], &Limits::UNLIMITED, "s").unwrap_err();
    assert!(
        matches!(&err, WireError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof),
        "{err}"
    );
    let mut ctx = ctx(38);
    ctx.limits = Limits::UNLIMITED;
    assert!(Vec::<String>::read(&mut &bytes[..], &ctx).is_err());
    assert!(BTreeMap::<String, String>::read(&mut &bytes[..], &ctx).is_err());
}

#[test]
fn padding_must_be_zero() {
    let ctx = ctx(34);
    let mut bytes = to_bytes(&"abc".to_owned(), &ctx);
    assert_eq!(String::read(&mut &bytes[..], &ctx).unwrap(), "abc");
    *bytes.last_mut().unwrap() = 1;
    let err = String::read(&mut &bytes[..], &ctx).unwrap_err();
    assert!(matches!(err, WireError::NonZeroPadding { .. }), "{err}");
}

#[test]
fn errors_name_the_field() {
    let ctx = ctx(37);
    // A build result cut in the middle of its CPU times.
    let bytes = to_bytes(
        &BuildResult {
            cpu_user: Some(1),
            ..BuildResult::new(BuildStatus::Built)
        },
        &ctx,
    );
    let err = BuildResult::read(&mut &bytes[..bytes.len() - 20], &ctx).unwrap_err();
    assert!(err.to_string().starts_with("BuildResult.cpuUser:"), "{err}");
    // An unknown status.
    let mut bad = bytes.clone();
    bad[0] = 15;
    let err = BuildResult::read(&mut &bad[..], &ctx).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::UnknownTag {
                field: "BuildResult.status",
                value: 15
            }
        ),
        "{err}"
    );
    // A reference that is not a store path, inside a path info.
    let mut info = to_bytes(
        &UnkeyedValidPathInfo::new(HashAlgo::Sha256.digest("")),
        &ctx,
    );
    let refs_at = 8 + 8 + 64; // empty deriver, then the base16 hash
    info.splice(
        refs_at..refs_at + 8,
        to_bytes(&vec!["/etc/passwd".to_owned()], &ctx),
    );
    let err = UnkeyedValidPathInfo::read(&mut &info[..], &ctx).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ValidPathInfo.references: set element: store path:"),
        "{err}"
    );
}

#[test]
fn stderr_error_must_say_error() {
    let ctx = ctx(38);
    let mut bytes = Vec::new();
    StderrMsg::Error(RemoteError {
        level: 0,
        msg: "boom".into(),
        traces: vec!["while doing it".into()],
    })
    .write(&mut bytes)
    .unwrap();
    assert!(StderrMsg::read(&mut &bytes[..], &ctx).is_ok());
    bytes[16] = b'e'; // "Error" -> "error"
    assert!(StderrMsg::read(&mut &bytes[..], &ctx).is_err());
}
