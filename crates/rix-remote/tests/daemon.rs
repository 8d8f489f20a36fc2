//! rix's daemon client against real Nix daemons (2.8: protocol 1.34; 2.26:
//! protocol 1.38) on temporary stores, checked with the same version's
//! `nix-store` talking to the same daemon. Each test runs once per daemon.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{write_file, Daemon, Nix, Recorder};
use rix_formats::content_address::ContentAddress;
use rix_formats::hash::{Encoding, HashAlgo};
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::worker_protocol::handshake::TrustedFlag;
use rix_formats::worker_protocol::{
    BuildMode, BuildStatus, DerivedPath, DrvOutput, OutputsSpec, ProtocolVersion,
};
use rix_remote::{ActivityKind, DaemonOptions, ResultKind};
use rix_store::gc::{GcAction, GcOptions};
use rix_store::local_store::StoreError;
use rix_store::path_info::ValidPathInfo;
use rix_store::store_api::{AddFlags, Store};

fn refs(paths: &[&rix_formats::StorePath]) -> BTreeSet<rix_formats::StorePath> {
    paths.iter().map(|p| (*p).clone()).collect()
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_owned).collect()
}

/// The NAR of a local file tree, made by real Nix.
fn nar_of(d: &Daemon, path: &Path) -> Vec<u8> {
    d.nix_store(&["--dump", &path.to_string_lossy()])
}

both!(handshake, |d: &Daemon| {
    let store = d.open();
    let (version, nix_version) = match d.nix {
        Nix::V2_8 => ("1.34", "2.8"),
        Nix::V2_26 => ("1.38", "2.26"),
    };
    assert_eq!(store.protocol_version().unwrap().to_string(), version);
    let daemon_version = store.daemon_nix_version().unwrap();
    assert!(
        daemon_version.starts_with(nix_version),
        "daemon says it is Nix {daemon_version}"
    );
    // The trust flag exists from 1.35 on; root is trusted.
    let expected_trust = (d.nix == Nix::V2_26).then_some(TrustedFlag::Trusted);
    assert_eq!(store.is_trusted_client().unwrap(), expected_trust);
    assert_eq!(store.url(), format!("unix://{}", d.socket.display()));
});

/// Every version a 2.26 daemon speaks, by offering less: the trust flag
/// (1.35), AddPermRoot (1.36), CPU times in build results (1.37), features
/// (1.38).
#[test]
fn every_protocol_version_against_nix_2_26() {
    let Some(d) = Daemon::start(Nix::V2_26) else {
        return;
    };
    for minor in 34..=38 {
        let options = DaemonOptions {
            max_version: ProtocolVersion::new(1, minor).unwrap(),
            ..DaemonOptions::default()
        };
        let store = d.open_with(options, Arc::new(Recorder::default()));
        assert_eq!(
            store.protocol_version().unwrap().to_string(),
            format!("1.{minor}")
        );
        let trust = store.is_trusted_client().unwrap();
        assert_eq!(trust.is_some(), minor >= 35, "1.{minor}");
        let p = store
            .add_text(&format!("v{minor}"), b"x", &BTreeSet::new())
            .unwrap();
        let info = store.path_info(&p).unwrap();
        assert_eq!(
            info.nar_size.to_string(),
            d.nix_store_text(&["-q", "--size", &d.print(&p)]).trim()
        );

        let drv = d.derivation(&format!("built-at-{minor}"), "echo hi > $out");
        let drv_path = store.add_derivation(&drv).unwrap();
        let results = store
            .build_paths_with_results(
                &[DerivedPath::Built {
                    drv_path: drv_path.clone(),
                    outputs: OutputsSpec::All,
                }],
                BuildMode::Normal,
            )
            .unwrap();
        assert_eq!(results.len(), 1);
        let r = &results[0].result;
        assert_eq!(r.status, BuildStatus::Built, "{r:?}");
        // (Nix 2.26 sends no CPU times for a build outside cgroups, so their
        // presence from 1.37 on cannot be observed here; the codec's golden
        // files cover their encoding.)

        let root = d.store.dir.path().join(format!("root-{minor}"));
        let made = store.add_perm_root(&p, &root).unwrap();
        assert_eq!(made, root);
        assert_eq!(std::fs::read_link(&root).unwrap(), Path::new(&d.print(&p)));
    }
}

both!(text_paths_read_back_by_nix, |d: &Daemon| {
    let store = d.open();
    let dep = store
        .add_text("dep.txt", b"the dependency\n", &BTreeSet::new())
        .unwrap();
    let contents = format!("refers to {}\n", d.print(&dep));
    let top = store
        .add_text("top.txt", contents.as_bytes(), &refs(&[&dep]))
        .unwrap();
    // The path Nix itself computes for the same text.
    let hash = HashAlgo::Sha256.digest(contents.as_bytes());
    assert_eq!(
        top,
        d.store_dir()
            .make_text_path("top.txt", &hash, [&dep])
            .unwrap()
    );
    assert_eq!(std::fs::read(d.print(&top)).unwrap(), contents.as_bytes());
    assert_eq!(
        d.nix_store_text(&["-q", "--references", &d.print(&top)]),
        format!("{}\n", d.print(&dep))
    );
    assert_eq!(
        d.nix_store_text(&["-q", "--referrers", &d.print(&dep)]),
        format!("{}\n", d.print(&top))
    );
    // The obsolete AddTextToStore gives the same path.
    let legacy = store
        .add_text_to_store_legacy("top.txt", contents.as_bytes(), &refs(&[&dep]))
        .unwrap();
    assert_eq!(legacy, top);
    // What rix reads about it is what Nix prints.
    let info = store.path_info(&top).unwrap();
    assert_eq!(
        info.nar_hash.to_typed_string(Encoding::Nix32),
        d.nix_store_text(&["-q", "--hash", &d.print(&top)]).trim()
    );
    assert_eq!(info.ca, Some(ContentAddress::Text(hash)));
    assert_eq!(store.query_referrers(&dep).unwrap(), refs(&[&top]));
});

both!(paths_added_by_nix_queried_by_rix, |d: &Daemon| {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tree");
    std::fs::create_dir(&dir).unwrap();
    write_file(&dir, "a", b"aaa\n");
    std::fs::create_dir(dir.join("sub")).unwrap();
    write_file(&dir.join("sub"), "b", b"bbb\n");
    std::os::unix::fs::symlink("a", dir.join("link")).unwrap();
    let added = d.nix_store_text(&["--add", &dir.to_string_lossy()]);
    let p = d.parse(&added);

    let store = d.open();
    assert!(store.is_valid(&p).unwrap());
    let info = store.path_info(&p).unwrap();
    assert_eq!(
        info.nar_hash.to_typed_string(Encoding::Nix32),
        d.nix_store_text(&["-q", "--hash", &d.print(&p)]).trim()
    );
    assert_eq!(
        info.nar_size.to_string(),
        d.nix_store_text(&["-q", "--size", &d.print(&p)]).trim()
    );
    assert!(info.references.is_empty());
    assert_eq!(info.deriver, None);
    assert!(matches!(
        info.ca,
        Some(ContentAddress::Fixed(FileIngestionMethod::Recursive, _))
    ));

    // NarFromPath, byte for byte what nix-store --dump gives.
    let mut nar = Vec::new();
    store.nar_from_path(&p, &mut nar).unwrap();
    assert_eq!(nar, nar_of(d, Path::new(&d.print(&p))));
    assert_eq!(HashAlgo::Sha256.digest(&nar), info.nar_hash);

    // Validity queries.
    let missing = d
        .store_dir()
        .make_text_path("never-added", &HashAlgo::Sha256.digest(b"?"), [])
        .unwrap();
    assert!(!store.is_valid(&missing).unwrap());
    assert_eq!(store.query_path_info(&missing).unwrap(), None);
    assert_eq!(
        store.query_valid_paths(&refs(&[&p, &missing])).unwrap(),
        refs(&[&p])
    );
    let all = store.query_all_valid_paths().unwrap();
    let nix_all: BTreeSet<_> = lines(&d.nix_store_text(&["-q", "--hash", &d.print(&p)]))
        .into_iter()
        .collect();
    assert!(!nix_all.is_empty());
    assert!(all.contains(&p));
    assert_eq!(
        store.query_path_from_hash_part(p.hash_part()).unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store
            .query_path_from_hash_part(missing.hash_part())
            .unwrap(),
        None
    );
});

// Many infos asked at once (pipelined requests): the same answers as one
// request at a time, in order, invalid paths as `None`, the connection in
// step afterwards.
both!(path_infos_pipelined, |d: &Daemon| {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<String> = (0..300)
        .map(|i| {
            write_file(tmp.path(), &format!("f{i}"), format!("{i}\n").as_bytes())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut args = vec!["--add"];
    args.extend(files.iter().map(String::as_str));
    let mut asked: Vec<_> = lines(&d.nix_store_text(&args))
        .iter()
        .map(|l| d.parse(l))
        .collect();
    let missing = d
        .store_dir()
        .make_text_path("never-added", &HashAlgo::Sha256.digest(b"?"), [])
        .unwrap();
    asked.insert(150, missing.clone());
    let infos = d.open().query_path_infos(&asked).unwrap();
    assert_eq!(infos.len(), asked.len());
    let one_by_one = d.open();
    for (p, info) in asked.iter().zip(&infos) {
        assert_eq!(info, &one_by_one.query_path_info(p).unwrap(), "{p}");
    }
    assert_eq!(infos[150], None);
    let store = d.open();
    store.query_path_infos(&asked).unwrap();
    assert_eq!(store.idle_connections(), 1);
    assert!(!store.is_valid(&missing).unwrap());
});

both!(nar_and_file_adds_read_back_by_nix, |d: &Daemon| {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("payload");
    std::fs::create_dir(&dir).unwrap();
    write_file(&dir, "data", &vec![7u8; 300_000]);
    let script = write_file(&dir, "run", b"#!/bin/sh\necho run\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let store = d.open();

    // AddToStoreNar: a NAR made by Nix, added by rix as a content-addressed path.
    let nar = nar_of(d, &dir);
    let nar_hash = HashAlgo::Sha256.digest(&nar);
    let path = d
        .store_dir()
        .make_fixed_output_path(
            "payload",
            FileIngestionMethod::Recursive,
            &nar_hash,
            [],
            false,
        )
        .unwrap();
    let mut info = ValidPathInfo::new(path.clone(), nar_hash, nar.len() as u64);
    info.ca = Some(ContentAddress::Fixed(
        FileIngestionMethod::Recursive,
        nar_hash,
    ));
    store
        .add_to_store_nar(&info, &mut &nar[..], AddFlags::default())
        .unwrap();
    assert_eq!(d.nix_store(&["--dump", &d.print(&path)]), nar);
    assert_eq!(
        d.nix_store_text(&["-q", "--hash", &d.print(&path)]).trim(),
        nar_hash.to_typed_string(Encoding::Nix32)
    );
    // Adding it again is a no-op.
    store
        .add_to_store_nar(&info, &mut &nar[..], AddFlags::default())
        .unwrap();

    // add_path (AddToStore with a NAR, then a flat dump): the paths nix-store computes.
    let rix_tree = store
        .add_path(
            &dir,
            "payload2",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha256,
        )
        .unwrap();
    let renamed = tmp.path().join("payload2");
    std::fs::rename(&dir, &renamed).unwrap();
    assert_eq!(
        d.print(&rix_tree),
        d.nix_store_text(&["--add", &renamed.to_string_lossy()])
            .trim()
    );
    let file = write_file(tmp.path(), "flat.txt", b"flat contents\n");
    for algo in ["sha256", "sha1", "sha512"] {
        let rix_flat = store
            .add_path(
                &file,
                "flat.txt",
                FileIngestionMethod::Flat,
                algo.parse().unwrap(),
            )
            .unwrap();
        assert_eq!(
            d.print(&rix_flat),
            d.nix_store_text(&["--add-fixed", algo, &file.to_string_lossy()])
                .trim()
        );
    }
    let rix_r_sha1 = store
        .add_path(
            &renamed,
            "payload2",
            FileIngestionMethod::Recursive,
            HashAlgo::Sha1,
        )
        .unwrap();
    assert_eq!(
        d.print(&rix_r_sha1),
        d.nix_store_text(&[
            "--add-fixed",
            "--recursive",
            "sha1",
            &renamed.to_string_lossy()
        ])
        .trim()
    );
    // A directory cannot be added flat; nothing is sent.
    assert!(matches!(
        store.add_path(&renamed, "x", FileIngestionMethod::Flat, HashAlgo::Sha256),
        Err(StoreError::FlatNotFile(_))
    ));

    // AddMultipleToStore: two NARs in one stream.
    let one = write_file(tmp.path(), "one", b"1\n");
    let two = write_file(tmp.path(), "two", b"2\n");
    let mut items = Vec::new();
    for (name, file) in [("one", &one), ("two", &two)] {
        let nar = nar_of(d, file);
        let h = HashAlgo::Sha256.digest(&nar);
        let p = d
            .store_dir()
            .make_fixed_output_path(name, FileIngestionMethod::Recursive, &h, [], false)
            .unwrap();
        let mut info = ValidPathInfo::new(p, h, nar.len() as u64);
        info.ca = Some(ContentAddress::Fixed(FileIngestionMethod::Recursive, h));
        items.push((info, nar));
    }
    let mut readers: Vec<(ValidPathInfo, &mut dyn std::io::Read)> = Vec::new();
    let mut slices: Vec<&[u8]> = items.iter().map(|(_, n)| &n[..]).collect();
    for ((info, _), slice) in items.iter().zip(slices.iter_mut()) {
        readers.push((info.clone(), slice as &mut dyn std::io::Read));
    }
    store
        .add_multiple_to_store(&mut readers, AddFlags::default())
        .unwrap();
    for (info, nar) in &items {
        assert_eq!(&d.nix_store(&["--dump", &d.print(&info.path)]), nar);
    }

    // Signatures.
    let sig = "cache.example.org-1:bm90IGEgcmVhbCBzaWduYXR1cmUgYnV0IHdlbGwgZm9ybWVk".to_owned();
    store
        .add_signatures(&path, &BTreeSet::from([sig.clone()]))
        .unwrap();
    assert!(store.path_info(&path).unwrap().sigs.contains(&sig));
});

both!(
    a_wrong_nar_is_refused_and_the_connection_survives,
    |d: &Daemon| {
        let store = d.open();
        let tmp = tempfile::tempdir().unwrap();
        let file = write_file(tmp.path(), "f", b"contents\n");
        let nar = nar_of(d, &file);
        let h = HashAlgo::Sha256.digest(&nar);
        let p = d
            .store_dir()
            .make_fixed_output_path("f", FileIngestionMethod::Recursive, &h, [], false)
            .unwrap();
        // Claims a different hash than the NAR has.
        let wrong = HashAlgo::Sha256.digest(b"something else");
        let mut info = ValidPathInfo::new(p.clone(), wrong, nar.len() as u64);
        info.ca = Some(ContentAddress::Fixed(FileIngestionMethod::Recursive, h));
        let err = store
            .add_to_store_nar(&info, &mut &nar[..], AddFlags::default())
            .unwrap_err();
        let StoreError::Remote {
            message,
            exit_status,
        } = err
        else {
            panic!("not a daemon error: {err:?}");
        };
        assert!(message.contains("hash mismatch"), "{message}");
        assert_eq!(exit_status, 1);
        assert!(!store.is_valid(&p).unwrap());
        assert_eq!(store.idle_connections(), 1);
    }
);

both!(building, |d: &Daemon| {
    let recorder = Arc::new(Recorder::default());
    let store = d.open_with(DaemonOptions::default(), recorder.clone());

    // BuildPathsWithResults.
    let drv = d.derivation("hello", "echo building-hello; echo hi > $out");
    let out = match &drv.outputs["out"] {
        rix_formats::derivation::DerivationOutput::InputAddressed { path } => path.clone(),
        o => panic!("{o:?}"),
    };
    let drv_path = store.add_derivation(&drv).unwrap();
    assert_eq!(drv_path, drv.drv_path(&d.store_dir()).unwrap());
    let target = DerivedPath::Built {
        drv_path: drv_path.clone(),
        outputs: OutputsSpec::All,
    };
    let missing = store.query_missing(std::slice::from_ref(&target)).unwrap();
    assert_eq!(missing.will_build, refs(&[&drv_path]));
    assert!(missing.will_substitute.is_empty());
    assert_eq!(
        store.query_derivation_output_map(&drv_path).unwrap(),
        BTreeMap::from([("out".to_owned(), Some(out.clone()))])
    );

    let results = store
        .build_paths_with_results(std::slice::from_ref(&target), BuildMode::Normal)
        .unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].path, target);
    let r = &results[0].result;
    assert_eq!(r.status, BuildStatus::Built, "{r:?}");
    assert_eq!(r.built_outputs["out"].out_path, out);
    assert_eq!(std::fs::read(d.print(&out)).unwrap(), b"hi\n");
    assert_eq!(
        d.nix_store_text(&["-q", "--deriver", &d.print(&out)])
            .trim(),
        d.print(&drv_path)
    );
    assert_eq!(
        store.path_info(&out).unwrap().deriver,
        Some(drv_path.clone())
    );
    assert_eq!(
        store.query_valid_derivers(&out).unwrap(),
        refs(&[&drv_path])
    );

    // The build's activity and its log line reached the logger.
    let activities = recorder.activities.lock().unwrap().clone();
    let build = activities
        .iter()
        .find(|a| matches!(&a.kind, ActivityKind::Build { drv_path: p, .. } if *p == d.print(&drv_path)))
        .unwrap_or_else(|| panic!("no build activity in {activities:?}"));
    let results = recorder.results.lock().unwrap().clone();
    assert!(
        results
            .iter()
            .any(|(id, r)| *id == build.id
                && *r == ResultKind::BuildLogLine(b"building-hello".to_vec())),
        "{results:?}"
    );
    assert!(recorder.stopped.lock().unwrap().contains(&build.id));

    // Built again: already valid.
    let again = store
        .build_paths_with_results(std::slice::from_ref(&target), BuildMode::Normal)
        .unwrap();
    assert_eq!(again[0].result.status, BuildStatus::AlreadyValid);
    store
        .build_paths(std::slice::from_ref(&target), BuildMode::Normal)
        .unwrap();
    store.ensure_path(&out).unwrap();

    // BuildDerivation: the derivation sent in full.
    let drv2 = d.derivation("hello2", "echo hello2 > $out");
    let drv2_path = store.add_derivation(&drv2).unwrap();
    let r = store
        .build_derivation(&drv2_path, &drv2, BuildMode::Normal)
        .unwrap();
    assert_eq!(r.status, BuildStatus::Built, "{r:?}");
    let out2 = &r.built_outputs["out"].out_path;
    assert_eq!(std::fs::read(d.print(out2)).unwrap(), b"hello2\n");
    assert!(!d
        .nix_store_text(&["-q", "--hash", &d.print(out2)])
        .is_empty());
});

both!(build_failures, |d: &Daemon| {
    let store = d.open();
    let drv = d.derivation("failing", "echo oops; exit 1");
    let drv_path = store.add_derivation(&drv).unwrap();
    let target = DerivedPath::Built {
        drv_path: drv_path.clone(),
        outputs: OutputsSpec::All,
    };
    // BuildPathsWithResults reports it in the result.
    let results = store
        .build_paths_with_results(std::slice::from_ref(&target), BuildMode::Normal)
        .unwrap();
    let r = &results[0].result;
    assert!(!r.status.is_success(), "{r:?}");
    assert!(r.error_msg.contains("failed with exit code 1"), "{r:?}");

    // BuildPaths fails with the daemon's message, the one nix-store prints.
    let err = store
        .build_paths(std::slice::from_ref(&target), BuildMode::Normal)
        .unwrap_err();
    let StoreError::Remote { message, .. } = err else {
        panic!("not a daemon error: {err:?}");
    };
    let nix = d.nix_store_output(&["--realise", &d.print(&drv_path)]);
    assert!(!nix.status.success());
    let nix_stderr = String::from_utf8_lossy(&nix.stderr);
    let first = message.lines().next().unwrap();
    assert!(first.contains(&d.print(&drv_path)), "{message}");
    assert!(
        nix_stderr.contains(&format!("error: {first}")),
        "rix: {message}\nnix: {nix_stderr}"
    );
    // The connection is still usable.
    assert!(store.is_valid(&drv_path).unwrap());

    // An invalid path without substituters: Nix's words.
    let invalid = d
        .store_dir()
        .make_text_path("nowhere", &HashAlgo::Sha256.digest(b"nowhere"), [])
        .unwrap();
    let err = store
        .build_paths(&[DerivedPath::Opaque(invalid.clone())], BuildMode::Normal)
        .unwrap_err();
    let StoreError::Remote { message, .. } = err else {
        panic!("not a daemon error: {err:?}");
    };
    let nix = d.nix_store_output(&["--realise", &d.print(&invalid)]);
    let nix_stderr = String::from_utf8_lossy(&nix.stderr);
    assert!(
        nix_stderr.contains(&format!("error: {message}")),
        "rix: {message}\nnix: {nix_stderr}"
    );
    let err = store.ensure_path(&invalid).unwrap_err();
    assert!(
        matches!(&err, StoreError::Remote { message, .. } if message.contains(&d.print(&invalid))),
        "{err:?}"
    );
    assert_eq!(store.idle_connections(), 1);

    // NarFromPath of an invalid path: the daemon ends the conversation after
    // its error; the connection is dropped and the next operation opens another.
    let err = store.nar_from_path(&invalid, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Remote { message, .. } if message.contains(&d.print(&invalid))),
        "{err:?}"
    );
    assert_eq!(store.idle_connections(), 0);
    // (Not `is_valid`: the store remembers that `drv_path` is valid.)
    let asked = BTreeSet::from([drv_path.clone()]);
    assert_eq!(store.query_valid_paths(&asked).unwrap(), asked);
    assert_eq!(store.idle_connections(), 1);
});

both!(roots_and_garbage_collection, |d: &Daemon| {
    let tmp = tempfile::tempdir().unwrap();
    let add = |name: &str| {
        let f = write_file(tmp.path(), name, name.as_bytes());
        d.parse(&d.nix_store_text(&["--add", &f.to_string_lossy()]))
    };
    let temp = add("temp");
    let indirect = add("indirect");
    let perm = add("perm");
    let dead = add("dead");
    let specific = add("specific");

    let store = d.open();
    // Temporary root: lives with the connection.
    store.add_temp_root(&temp).unwrap();
    // Indirect root: a symlink outside the store.
    let link = tmp.path().join("indirect-link");
    std::os::unix::fs::symlink(d.print(&indirect), &link).unwrap();
    store.add_indirect_root(&link).unwrap();
    // Permanent root.
    let perm_link = tmp.path().join("perm-link");
    assert_eq!(store.add_perm_root(&perm, &perm_link).unwrap(), perm_link);

    let roots = store.gc().unwrap().find_roots(false).unwrap();
    assert!(
        roots[&indirect].contains(&link.to_string_lossy().into_owned()),
        "{roots:?}"
    );
    assert!(
        roots[&perm].contains(&perm_link.to_string_lossy().into_owned()),
        "{roots:?}"
    );
    assert!(!roots.contains_key(&dead));
    let nix_roots = d.nix_store_text(&["--gc", "--print-roots"]);
    assert!(
        nix_roots.contains(&format!("{} -> {}", link.display(), d.print(&indirect))),
        "{nix_roots}"
    );

    // What the collector would delete, then real nix-store --gc.
    let gc = store.gc().unwrap();
    let would = gc
        .collect_garbage(&GcOptions::new(GcAction::ReturnDead))
        .unwrap();
    assert!(would.paths.contains(&d.print(&dead)), "{would:?}");
    assert!(!would.paths.contains(&d.print(&temp)), "{would:?}");
    d.nix_store(&["--gc"]);
    assert!(!store.is_valid(&dead).unwrap());
    for p in [&temp, &indirect, &perm, &specific] {
        // `specific` was not a root: it went too.
        assert_eq!(store.is_valid(p).unwrap(), p != &specific, "{}", d.print(p));
    }

    // CollectGarbage through rix: a specific path, then everything dead.
    let again = add("specific");
    assert_eq!(again, specific);
    let r = gc
        .collect_garbage(&GcOptions::new(GcAction::DeleteSpecific(vec![
            specific.clone()
        ])))
        .unwrap();
    assert_eq!(r.paths, vec![d.print(&specific)]);
    assert!(r.bytes_freed > 0);
    let live = gc
        .collect_garbage(&GcOptions::new(GcAction::ReturnLive))
        .unwrap();
    assert!(live.paths.contains(&d.print(&temp)));
    // A live path cannot be deleted: Nix's error, as nix-store --delete prints it.
    let err = gc
        .collect_garbage(&GcOptions::new(GcAction::DeleteSpecific(
            vec![perm.clone()],
        )))
        .unwrap_err();
    let StoreError::Remote { message, .. } = err else {
        panic!("not a daemon error: {err:?}");
    };
    assert!(message.contains("still alive"), "{message}");
    let nix = d.nix_store_output(&["--delete", &d.print(&perm)]);
    let nix_stderr = String::from_utf8_lossy(&nix.stderr);
    assert!(
        nix_stderr.contains(&format!("error: {message}")),
        "rix: {message}\nnix: {nix_stderr}"
    );

    // The temporary root goes with the connection.
    drop(store);
    rix_testutil::wait_for("the temporary root to go", Duration::from_secs(60), || {
        d.nix_store(&["--gc"]);
        let out = d.nix_store_output(&["-q", "--hash", &d.print(&temp)]);
        (!out.status.success()).then_some(())
    });
    // The others stay while their links do.
    let store = d.open();
    assert!(store.is_valid(&indirect).unwrap());
    assert!(store.is_valid(&perm).unwrap());
    std::fs::remove_file(&link).unwrap();
    let r = store
        .gc()
        .unwrap()
        .collect_garbage(&GcOptions::new(GcAction::DeleteDead))
        .unwrap();
    assert!(r.paths.contains(&d.print(&indirect)), "{r:?}");
    assert!(!store.is_valid(&indirect).unwrap());
    assert!(store.is_valid(&perm).unwrap());
});

both!(other_operations, |d: &Daemon| {
    let store = d.open();
    store.sync_with_gc().unwrap();
    store.optimise_store().unwrap();
    assert!(!store.verify_store(false, false).unwrap());
    let p = store.add_text("x", b"x", &BTreeSet::new()).unwrap();
    assert!(store
        .query_substitutable_path_infos(&BTreeMap::from([(p.clone(), None)]))
        .unwrap()
        .is_empty());
    let drv = d.derivation("logged", "echo hi > $out");
    let drv_path = store.add_derivation(&drv).unwrap();
    store.add_build_log(&drv_path, b"a log line\n").unwrap();
    assert_eq!(
        d.nix_store(&["--read-log", &d.print(&drv_path)]),
        b"a log line\n"
    );
});

both!(threads_share_the_pool, |d: &Daemon| {
    let store = Arc::new(d.open());
    let paths: Vec<_> = (0..8)
        .map(|i| {
            store
                .add_text(
                    &format!("t{i}"),
                    format!("{i}").as_bytes(),
                    &BTreeSet::new(),
                )
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for chunk in paths.chunks(2) {
            let store = store.clone();
            s.spawn(move || {
                for _ in 0..20 {
                    for p in chunk {
                        assert!(store.path_info(p).is_ok());
                        let mut nar = Vec::new();
                        store.nar_from_path(p, &mut nar).unwrap();
                    }
                }
            });
        }
    });
    let n = store.idle_connections();
    assert!((1..=4).contains(&n), "{n} idle connections");
});

both!(the_url_and_its_warnings, |d: &Daemon| {
    let recorder = Arc::new(Recorder::default());
    let url = format!("{}&foo=bar&max-connections=2", d.url());
    let store = rix_remote::DaemonStore::open_url(&url, DaemonOptions::default(), recorder.clone())
        .unwrap();
    assert!(store
        .is_valid(&store.add_text("u", b"u", &BTreeSet::new()).unwrap())
        .unwrap());
    assert_eq!(
        *recorder.lines.lock().unwrap(),
        vec!["warning: unknown setting 'foo'".to_owned()]
    );
    // No daemon there.
    let err = rix_remote::DaemonStore::open_url(
        &format!(
            "unix://{}/nothing?store={}",
            d.store.dir.path().display(),
            d.store.store_dir().display()
        ),
        DaemonOptions::default(),
        recorder,
    )
    .err()
    .unwrap();
    let nix = d
        .nix
        .command("nix-store")
        .unwrap()
        .arg("--store")
        .arg(format!(
            "unix://{}/nothing?store={}",
            d.store.dir.path().display(),
            d.store.store_dir().display()
        ))
        .args(["--gc", "--print-roots"])
        .output()
        .unwrap();
    let nix_stderr = String::from_utf8_lossy(&nix.stderr);
    assert!(
        err.to_string().starts_with("cannot connect to socket at '"),
        "{err}"
    );
    assert!(
        nix_stderr.contains(&format!("error: {err}")),
        "rix: {err}\nnix: {nix_stderr}"
    );
});

// QueryRealisation needs a store with `ca-derivations` (without it Nix's
// daemon dies on an assertion: the connection is dropped, the store goes on).
both!(realisations, |d: &Daemon| {
    let id = DrvOutput::parse("sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0!out")
        .unwrap();
    let store = d.open();
    let err = store.query_realisation(&id).unwrap_err();
    assert!(matches!(err, StoreError::Protocol(_)), "{err:?}");
    assert_eq!(store.idle_connections(), 0);
    assert!(store.query_all_valid_paths().unwrap().is_empty());
    assert_eq!(store.idle_connections(), 1);

    let Some(ca) = Daemon::start_with(d.nix, &[("experimental-features", "ca-derivations")]) else {
        return;
    };
    let store = ca.open();
    let r = store.query_realisation(&id);
    assert!(matches!(r, Ok(None)), "{r:?}\n{}", ca.log());
});

// A NAR source that fails half-way: the daemon must not take the truncated
// upload for a whole one; the connection is dropped, the store goes on.
both!(a_failed_upload_adds_nothing, |d: &Daemon| {
    struct HalfThenFail<'a>(&'a [u8]);
    impl std::io::Read for HalfThenFail<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("the source broke"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let store = d.open();
    let tmp = tempfile::tempdir().unwrap();
    let file = write_file(tmp.path(), "big", &vec![1u8; 200_000]);
    let nar = nar_of(d, &file);
    let h = HashAlgo::Sha256.digest(&nar);
    let p = d
        .store_dir()
        .make_fixed_output_path("big", FileIngestionMethod::Recursive, &h, [], false)
        .unwrap();
    let mut info = ValidPathInfo::new(p.clone(), h, nar.len() as u64);
    info.ca = Some(ContentAddress::Fixed(FileIngestionMethod::Recursive, h));
    for cut in [nar.len() / 2, 1000] {
        let err = store
            .add_to_store_nar(&info, &mut HalfThenFail(&nar[..cut]), AddFlags::default())
            .unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert_eq!(store.idle_connections(), 0);
        assert!(!store.is_valid(&p).unwrap());
    }
    store
        .add_to_store_nar(&info, &mut &nar[..], AddFlags::default())
        .unwrap();
    assert!(store.is_valid(&p).unwrap());
});
