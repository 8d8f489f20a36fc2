//! Requests: every request reads back as written at every version, no bytes
//! make a reader panic, and the hand-checked layouts of Nix's `RemoteStore`.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;

use super::proptests::{
    arb_any_hash, arb_bytes, arb_ca, arb_derived_path, arb_drv_output, arb_hash, arb_name,
    arb_path_info, arb_realisation, arb_store_path, arb_text, arb_version,
};
use super::tests::ctx;
use super::wire::write_u64;
use super::*;
use crate::derivation::{CaMethod, Derivation, DerivationOutput};
use crate::hash::HashAlgo;
use crate::store_path::StorePath;

fn arb_mode() -> impl Strategy<Value = BuildMode> {
    prop_oneof![
        Just(BuildMode::Normal),
        Just(BuildMode::Repair),
        Just(BuildMode::Check)
    ]
}

fn arb_settings() -> impl Strategy<Value = ClientSettings> {
    (
        any::<[bool; 5]>(),
        any::<[u32; 4]>(),
        vec((arb_text(), arb_text()), 0..4),
    )
        .prop_map(|(b, n, overrides)| ClientSettings {
            keep_failed: b[0],
            keep_going: b[1],
            try_fallback: b[2],
            verbose_build: b[3],
            use_substitutes: b[4],
            verbosity: n[0],
            max_build_jobs: n[1],
            max_silent_time: n[2],
            build_cores: n[3],
            overrides,
        })
}

fn arb_method() -> impl Strategy<Value = ContentAddressMethodWithAlgo> {
    let algo = prop_oneof![
        Just(HashAlgo::Md5),
        Just(HashAlgo::Sha1),
        Just(HashAlgo::Sha256),
        Just(HashAlgo::Sha512)
    ];
    prop_oneof![
        Just(ContentAddressMethodWithAlgo {
            method: AddMethod::Text,
            algo: HashAlgo::Sha256
        }),
        (
            prop_oneof![
                Just(AddMethod::Flat),
                Just(AddMethod::Recursive),
                Just(AddMethod::Git)
            ],
            algo
        )
            .prop_map(|(method, algo)| ContentAddressMethodWithAlgo { method, algo }),
    ]
}

fn arb_output() -> impl Strategy<Value = DerivationOutput> {
    let method = prop_oneof![
        Just(CaMethod::Flat),
        Just(CaMethod::Recursive),
        Just(CaMethod::Text)
    ];
    prop_oneof![
        arb_store_path().prop_map(|path| DerivationOutput::InputAddressed { path }),
        (method.clone(), arb_hash(HashAlgo::Sha256))
            .prop_map(|(method, hash)| DerivationOutput::CAFixed { method, hash }),
        (
            prop_oneof![Just(CaMethod::Flat), Just(CaMethod::Recursive)],
            arb_any_hash()
        )
            .prop_map(|(method, hash)| DerivationOutput::CAFixed { method, hash }),
        method
            .clone()
            .prop_map(|method| DerivationOutput::CAFloating {
                method,
                algo: HashAlgo::Sha256
            }),
        method.prop_map(|method| DerivationOutput::Impure {
            method,
            algo: HashAlgo::Sha1
        }),
        Just(DerivationOutput::Deferred),
    ]
}

fn arb_drv() -> impl Strategy<Value = (StorePath, Derivation)> {
    (
        arb_name(),
        any::<[u8; 20]>(),
        btree_map(arb_name(), arb_output(), 1..3),
        btree_set(arb_store_path(), 0..3),
        (arb_bytes(), arb_bytes(), vec(arb_bytes(), 0..3)),
        btree_map(arb_bytes(), arb_bytes(), 0..4),
    )
        .prop_map(
            |(name, digest, outputs, input_srcs, (system, builder, args), env)| {
                let drv_path = StorePath::from_parts(digest, &format!("{name}.drv")).unwrap();
                let drv = Derivation {
                    name,
                    outputs,
                    input_drvs: BTreeMap::new(),
                    input_srcs,
                    system,
                    builder,
                    args,
                    env,
                };
                (drv_path, drv)
            },
        )
}

fn arb_request(minor: u8) -> BoxedStrategy<Request> {
    use Request as Q;
    let p = arb_store_path;
    let simple = prop_oneof![
        p().prop_map(Q::IsValidPath),
        p().prop_map(Q::HasSubstitutes),
        p().prop_map(Q::QueryPathHash),
        p().prop_map(Q::QueryReferences),
        p().prop_map(Q::QueryReferrers),
        p().prop_map(Q::EnsurePath),
        p().prop_map(Q::AddTempRoot),
        p().prop_map(Q::QueryDeriver),
        p().prop_map(Q::QuerySubstitutablePathInfo),
        p().prop_map(Q::QueryDerivationOutputs),
        p().prop_map(Q::QueryPathInfo),
        p().prop_map(Q::QueryDerivationOutputNames),
        p().prop_map(Q::QueryValidDerivers),
        p().prop_map(Q::NarFromPath),
        p().prop_map(Q::QueryDerivationOutputMap),
        p().prop_map(Q::AddBuildLog),
        arb_text().prop_map(Q::AddIndirectRoot),
        arb_text().prop_map(Q::QueryPathFromHashPart),
        Just(Q::SyncWithGC),
        Just(Q::FindRoots),
        Just(Q::QueryAllValidPaths),
        Just(Q::QueryFailedPaths),
        Just(Q::ClearFailedPaths),
        Just(Q::ImportPaths),
        Just(Q::OptimiseStore),
    ];
    let complex = prop_oneof![
        (
            arb_name(),
            arb_method(),
            btree_set(p(), 0..3),
            any::<bool>()
        )
            .prop_map(|(name, method, references, repair)| Q::AddToStore {
                name,
                method,
                references,
                repair
            }),
        (arb_name(), arb_bytes(), btree_set(p(), 0..3)).prop_map(|(name, text, references)| {
            Q::AddTextToStore {
                name,
                text,
                references,
            }
        }),
        (vec(arb_derived_path(), 0..3), arb_mode())
            .prop_map(|(paths, mode)| Q::BuildPaths { paths, mode }),
        (vec(arb_derived_path(), 0..3), arb_mode())
            .prop_map(|(paths, mode)| Q::BuildPathsWithResults { paths, mode }),
        (p(), any::<u32>()).prop_map(|(path, sign)| Q::ExportPath { path, sign }),
        arb_settings().prop_map(Q::SetOptions),
        (0..4u8, btree_set(p(), 0..3), any::<bool>(), any::<u64>()).prop_map(
            |(a, paths_to_delete, ignore_liveness, max_freed)| Q::CollectGarbage(GcRequest {
                action: [
                    GcAction::ReturnLive,
                    GcAction::ReturnDead,
                    GcAction::DeleteDead,
                    GcAction::DeleteSpecific
                ][a as usize],
                paths_to_delete,
                ignore_liveness,
                max_freed,
            })
        ),
        btree_map(p(), proptest::option::of(arb_ca()), 0..3)
            .prop_map(Q::QuerySubstitutablePathInfos),
        (btree_set(p(), 0..3), any::<bool>())
            .prop_map(|(paths, substitute)| Q::QueryValidPaths { paths, substitute }),
        btree_set(p(), 0..3).prop_map(Q::QuerySubstitutablePaths),
        any::<[bool; 2]>().prop_map(|b| Q::VerifyStore {
            check_contents: b[0],
            repair: b[1]
        }),
        (arb_drv(), arb_mode()).prop_map(|((drv_path, drv), mode)| Q::BuildDerivation {
            drv_path,
            drv,
            mode
        }),
        (p(), btree_set(arb_text(), 0..3)).prop_map(|(path, sigs)| Q::AddSignatures { path, sigs }),
        (arb_path_info(), any::<[bool; 2]>()).prop_map(|(info, b)| Q::AddToStoreNar {
            info,
            repair: b[0],
            dont_check_sigs: b[1]
        }),
        vec(arb_derived_path(), 0..3).prop_map(Q::QueryMissing),
        arb_realisation().prop_map(Q::RegisterDrvOutput),
        arb_drv_output().prop_map(Q::QueryRealisation),
        any::<[bool; 2]>().prop_map(|b| Q::AddMultipleToStore {
            repair: b[0],
            dont_check_sigs: b[1]
        }),
    ];
    if minor >= 36 {
        prop_oneof![
            simple,
            complex,
            (p(), arb_text()).prop_map(|(path, gc_root)| Q::AddPermRoot { path, gc_root }),
        ]
        .boxed()
    } else {
        prop_oneof![simple, complex].boxed()
    }
}

fn read_request(bytes: &[u8], minor: u8) -> Result<(Request, usize), WireError> {
    let mut rest = bytes;
    let op = WorkerOp::read(&mut rest)?;
    let req = Request::read(op, &mut rest, &ctx(minor))?;
    Ok((req, rest.len()))
}

proptest! {
    #[test]
    fn requests_roundtrip((minor, req) in arb_version().prop_flat_map(|m| (Just(m), arb_request(m)))) {
        let mut bytes = Vec::new();
        req.write(&mut bytes, &ctx(minor)).unwrap();
        let (back, left) = read_request(&bytes, minor).unwrap();
        prop_assert_eq!(left, 0);
        prop_assert_eq!(back.op(), req.op());
        prop_assert_eq!(back, req);
    }

    #[test]
    fn request_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), minor in arb_version()) {
        for &op in WorkerOp::ALL {
            // What is accepted writes and reads back the same (as the fuzz
            // target `worker_request` checks).
            if let Ok(req) = Request::read(op, &mut &bytes[..], &ctx(minor)) {
                let mut out = Vec::new();
                req.write(&mut out, &ctx(minor)).unwrap();
                prop_assert_eq!(read_request(&out, minor).unwrap(), (req, 0));
            }
        }
    }

    #[test]
    fn truncated_requests_are_refused(
        (minor, req) in arb_version().prop_flat_map(|m| (Just(m), arb_request(m))),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = Vec::new();
        req.write(&mut bytes, &ctx(minor)).unwrap();
        let cut = cut.index(bytes.len());
        // Every request has at least its op code, and every argument is needed.
        if let Ok((back, _)) = read_request(&bytes[..cut], minor) {
            // Only requests without arguments read from a prefix holding the op code.
            prop_assert_eq!(cut, 8);
            prop_assert_eq!(back, req);
        }
    }
}

/// `SetOptions` as Nix's `RemoteStore::setOptions` writes it (2.8 and 2.26).
#[test]
fn set_options_layout() {
    let mut expected = Vec::new();
    for n in [19u64, 0, 1, 0, 3, 4, 0, 1, 7, 0, 0, 2, 1, 1] {
        write_u64(&mut expected, n).unwrap();
    }
    wire::write_bytes(&mut expected, b"sandbox").unwrap();
    wire::write_bytes(&mut expected, b"false").unwrap();
    let (req, left) = read_request(&expected, 34).unwrap();
    assert_eq!(left, 0);
    let settings = ClientSettings {
        keep_failed: false,
        keep_going: true,
        try_fallback: false,
        verbosity: 3,
        max_build_jobs: 4,
        max_silent_time: 0,
        verbose_build: false,
        build_cores: 2,
        use_substitutes: true,
        overrides: vec![("sandbox".into(), "false".into())],
    };
    assert_eq!(req, Request::SetOptions(settings));
    let mut out = Vec::new();
    req.write(&mut out, &ctx(34)).unwrap();
    assert_eq!(out, expected);
}

#[test]
fn add_perm_root_needs_1_36() {
    let p = StorePath::from_base_name("g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo").unwrap();
    let req = Request::AddPermRoot {
        path: p,
        gc_root: "/tmp/r".into(),
    };
    let mut bytes = Vec::new();
    req.write(&mut bytes, &ctx(36)).unwrap();
    assert!(read_request(&bytes, 35).is_err());
    assert_eq!(read_request(&bytes, 36).unwrap().0, req);
}

#[test]
fn content_address_methods() {
    for s in [
        "text:sha256",
        "fixed:sha1",
        "fixed:r:sha256",
        "fixed:git:sha1",
        "fixed:md5",
    ] {
        assert_eq!(ContentAddressMethodWithAlgo::parse(s).unwrap().render(), s);
    }
    for bad in ["text:sha1", "sha256", "fixed:r:foo", "fixed:", ""] {
        assert!(ContentAddressMethodWithAlgo::parse(bad).is_err(), "{bad}");
    }
}
