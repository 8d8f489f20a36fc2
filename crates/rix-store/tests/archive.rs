//! Dump, hash and restore without Nix: round trips, refused archives (path
//! traversal, truncation), unsupported files, existing targets.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;
use rix_formats::nar::wire::write_str;
use rix_formats::nar::{NameError, NarReadError, NarReader, NarWriter};
use rix_formats::HashAlgo;
use rix_store::archive::{self, ArchiveError};

fn strings(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        write_str(&mut out, p).unwrap();
    }
    out
}

/// A directory NAR with the given (name, node strings) entries, unchecked.
fn dir_with(entries: &[(&[u8], Vec<&[u8]>)]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"directory"];
    for (name, node) in entries {
        parts.extend_from_slice(&[b"entry", b"(", b"name", name, b"node"]);
        parts.extend_from_slice(node);
        parts.push(b")");
    }
    parts.push(b")");
    strings(&parts)
}

fn file_node(data: &[u8]) -> Vec<&[u8]> {
    vec![b"(", b"type", b"regular", b"contents", data, b")"]
}

fn symlink_node(target: &[u8]) -> Vec<&[u8]> {
    vec![b"(", b"type", b"symlink", b"target", target, b")"]
}

/// Everything under `dir`, as sorted relative paths.
fn contents_of(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn restore_refuses_traversal_names() {
    let tmp = tempfile::tempdir().unwrap();
    let outer = tmp.path().join("outer");
    fs::create_dir(&outer).unwrap();
    for (name, reason) in [
        (&b".."[..], NameError::DotDot),
        (b".", NameError::Dot),
        (b"../escaped", NameError::Slash(2)),
        (b"sub/escaped", NameError::Slash(3)),
        (b"/abs", NameError::Slash(0)),
        (b"", NameError::Empty),
        (b"nul\0", NameError::Nul(3)),
    ] {
        let nar = dir_with(&[(b"a", file_node(b"first")), (name, file_node(b"evil"))]);
        let target = outer.join("t");
        match archive::restore(&nar[..], &target) {
            Err(ArchiveError::Nar {
                source: NarReadError::InvalidName { reason: r, .. },
                ..
            }) => assert_eq!(r, reason),
            other => panic!("{name:?}: {other:?}"),
        }
        // The partial target is gone, and nothing was written anywhere else.
        assert_eq!(contents_of(tmp.path()), ["outer"], "{name:?}");
    }
}

#[test]
fn restore_never_writes_through_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = tmp.path().join("t");
    // A symlink pointing outside, then an entry of the same name (duplicate) that
    // would write through it.
    let nar = dir_with(&[
        (b"a", symlink_node(b"../outside")),
        (
            b"a",
            vec![
                b"(",
                b"type",
                b"directory",
                b"entry",
                b"(",
                b"name",
                b"x",
                b"node",
                b"(",
                b"type",
                b"regular",
                b"contents",
                b"pwned",
                b")",
                b")",
                b")",
            ],
        ),
    ]);
    assert!(matches!(
        archive::restore(&nar[..], &target),
        Err(ArchiveError::Nar {
            source: NarReadError::Duplicate { .. },
            ..
        })
    ));
    // Out of order, the same trick.
    let nar = dir_with(&[(b"b", symlink_node(b"../outside")), (b"a", file_node(b"x"))]);
    assert!(matches!(
        archive::restore(&nar[..], &target),
        Err(ArchiveError::Nar {
            source: NarReadError::NotSorted { .. },
            ..
        })
    ));
    assert!(contents_of(&outside).is_empty());
    assert!(fs::symlink_metadata(&target).is_err());

    // A valid archive with an escaping symlink restores it as a symlink, and
    // later entries land inside the target.
    let nar = dir_with(&[
        (b"a", symlink_node(b"../../etc")),
        (b"b", symlink_node(b"../outside")),
        (b"c", file_node(b"inside")),
    ]);
    archive::restore(&nar[..], &target).unwrap();
    assert_eq!(
        fs::read_link(target.join("a")).unwrap(),
        Path::new("../../etc")
    );
    assert_eq!(fs::read(target.join("c")).unwrap(), b"inside");
    assert!(contents_of(&outside).is_empty());
}

#[test]
fn restore_refuses_existing_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let nar = dir_with(&[(b"a", file_node(b"x"))]);
    let file_nar = strings(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"new",
        b")",
    ]);
    let link_nar = strings(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"symlink",
        b"target",
        b"x",
        b")",
    ]);

    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("keep"), b"keep").unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"old").unwrap();
    let link = tmp.path().join("link");
    symlink("dir", &link).unwrap();

    for existing in [&dir, &file, &link] {
        for n in [&nar, &file_nar, &link_nar] {
            match archive::restore(&n[..], existing) {
                Err(ArchiveError::TargetExists { path }) => assert_eq!(&path, existing),
                other => panic!("{}: {other:?}", existing.display()),
            }
        }
    }
    // Untouched.
    assert_eq!(contents_of(&dir), ["keep"]);
    assert_eq!(fs::read(&file).unwrap(), b"old");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("dir"));
}

fn sample_nar() -> Vec<u8> {
    let mut w = NarWriter::new(Vec::new());
    w.begin_directory().unwrap();
    w.entry(b"bin").unwrap();
    w.begin_directory().unwrap();
    w.entry(b"hello").unwrap();
    w.file(true, b"#!/bin/sh\necho hello\n").unwrap();
    w.end_directory().unwrap();
    w.entry(b"data").unwrap();
    w.file(false, &[42u8; 3000]).unwrap();
    w.entry(b"empty").unwrap();
    w.begin_directory().unwrap();
    w.end_directory().unwrap();
    w.entry(b"link").unwrap();
    w.symlink(b"bin/hello").unwrap();
    w.end_directory().unwrap();
    w.finish().unwrap()
}

#[test]
fn restore_then_dump_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let nar = sample_nar();
    let target = tmp.path().join("t");
    archive::restore(&nar[..], &target).unwrap();
    let mode = |p: &str| {
        fs::symlink_metadata(target.join(p))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode("bin/hello") & 0o111, 0o111);
    assert_eq!(mode("data") & 0o111, 0);
    assert!(fs::symlink_metadata(target.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    let mut out = Vec::new();
    assert_eq!(archive::dump(&target, &mut out).unwrap(), nar.len() as u64);
    assert_eq!(out, nar);
    let (hash, size) = archive::hash_path(&target, HashAlgo::Sha256).unwrap();
    assert_eq!(hash, HashAlgo::Sha256.digest(&nar));
    assert_eq!(size, nar.len() as u64);
}

#[test]
fn truncated_archives_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let nar = sample_nar();
    for len in 0..nar.len() {
        let target = tmp.path().join("t");
        match archive::restore(&nar[..len], &target) {
            Err(e @ ArchiveError::Nar { .. }) => {
                assert_eq!(e.nar_offset(), Some(len as u64), "prefix of {len}: {e}");
            }
            other => panic!("prefix of {len}: {other:?}"),
        }
        assert!(fs::symlink_metadata(&target).is_err(), "prefix of {len}");
    }
    // Trailing data is refused by restore, but not by restore_from.
    let mut long = nar.clone();
    long.extend_from_slice(b"more");
    let target = tmp.path().join("t");
    match archive::restore(&long[..], &target) {
        Err(ArchiveError::Nar {
            source: NarReadError::TrailingData { offset },
            ..
        }) => assert_eq!(offset, nar.len() as u64),
        other => panic!("{other:?}"),
    }
    assert!(fs::symlink_metadata(&target).is_err());
    let mut reader = NarReader::new(&long[..]);
    archive::restore_from(&mut reader, &target).unwrap();
    assert_eq!(reader.into_inner(), b"more");
}

#[test]
fn dump_refuses_special_files_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("a"), b"a").unwrap();
    let sock = dir.join("sub").join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    match archive::dump(&dir, &mut Vec::new()) {
        Err(ArchiveError::UnsupportedType { path, kind }) => {
            assert_eq!(path, sock);
            assert_eq!(kind, "socket");
        }
        other => panic!("{other:?}"),
    }
    // The same through the two-thread hasher (the tree is big enough for it).
    fs::write(dir.join("big"), vec![1u8; 1 << 20]).unwrap();
    assert!(matches!(
        archive::hash_path(&dir, HashAlgo::Sha256),
        Err(ArchiveError::UnsupportedType { .. })
    ));
    assert!(matches!(
        archive::hash_path(&sock, HashAlgo::Sha256),
        Err(ArchiveError::UnsupportedType { .. })
    ));
    if std::process::Command::new("mkfifo")
        .arg(tmp.path().join("fifo"))
        .status()
        .is_ok_and(|s| s.success())
    {
        match archive::dump(&tmp.path().join("fifo"), &mut Vec::new()) {
            Err(ArchiveError::UnsupportedType { kind, .. }) => assert_eq!(kind, "fifo"),
            other => panic!("{other:?}"),
        }
    }
    let missing = tmp.path().join("missing");
    match archive::dump(&missing, &mut Vec::new()) {
        Err(e @ ArchiveError::Io { .. }) => {
            assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hash_path_equals_hash_of_dump() {
    // Many tiny files (more than a block holds open files for), a file larger
    // than a block, and files around the block size: every path of the pipeline.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    fs::create_dir_all(dir.join("many")).unwrap();
    for i in 0..3000 {
        fs::write(dir.join("many").join(format!("{i:04}")), [i as u8; 3]).unwrap();
    }
    let block = archive::hash::BLOCK_LEN;
    for (name, len) in [
        ("big", 3 * block + 5),
        ("edge-1", block - 1),
        ("edge", block),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(dir.join(name), data).unwrap();
    }
    let mut nar = Vec::new();
    archive::dump(&dir, &mut nar).unwrap();
    for algo in HashAlgo::ALL {
        let (hash, size) = archive::hash_path(&dir, algo).unwrap();
        assert_eq!(hash, algo.digest(&nar), "{algo}");
        assert_eq!(size, nar.len() as u64);
    }
    // Single files above and below the inline limit.
    for name in ["big", "many/0001"] {
        let p = dir.join(name);
        let mut nar = Vec::new();
        archive::dump(&p, &mut nar).unwrap();
        assert_eq!(
            archive::hash_path(&p, HashAlgo::Sha256).unwrap(),
            (HashAlgo::Sha256.digest(&nar), nar.len() as u64)
        );
    }
}

#[test]
fn dump_does_not_follow_a_root_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("dir")).unwrap();
    symlink("dir", tmp.path().join("link")).unwrap();
    let mut out = Vec::new();
    archive::dump(&tmp.path().join("link"), &mut out).unwrap();
    assert_eq!(
        out,
        strings(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"dir",
            b")"
        ])
    );
}

#[test]
fn dump_errors_from_the_sink() {
    struct Failing;
    impl std::io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), vec![0u8; 1 << 20]).unwrap();
    assert!(matches!(
        archive::dump(&tmp.path().join("f"), &mut Failing),
        Err(ArchiveError::Write(_))
    ));
}

/// A tree for property tests: (name, node) entries with small contents.
#[derive(Debug, Clone)]
enum Tree {
    File(bool, Vec<u8>),
    Link(Vec<u8>),
    Dir(Vec<(Vec<u8>, Tree)>),
}

fn write_tree(w: &mut NarWriter<Vec<u8>>, t: &Tree) {
    match t {
        Tree::File(x, data) => w.file(*x, data).unwrap(),
        Tree::Link(target) => w.symlink(target).unwrap(),
        Tree::Dir(entries) => {
            w.begin_directory().unwrap();
            for (name, child) in entries {
                w.entry(name).unwrap();
                write_tree(w, child);
            }
            w.end_directory().unwrap();
        }
    }
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    let name = prop_oneof![
        "[a-zA-Z0-9._-]{1,10}".prop_map(String::into_bytes),
        proptest::collection::vec(1u8..=255, 1..8),
    ]
    .prop_filter("valid name", |n| {
        rix_formats::nar::wire::check_name(n, 255).is_ok()
    });
    let leaf = prop_oneof![
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..3000)
        )
            .prop_map(|(x, d)| Tree::File(x, d)),
        proptest::collection::vec(1u8..=255, 1..40).prop_map(Tree::Link),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        proptest::collection::btree_map(name.clone(), inner, 0..6)
            .prop_map(|m| Tree::Dir(m.into_iter().collect()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn restore_dump_round_trip(tree in arb_tree()) {
        let mut w = NarWriter::new(Vec::new());
        write_tree(&mut w, &tree);
        let nar = w.finish().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join(OsStr::from_bytes(b"t"));
        archive::restore(&nar[..], &target).unwrap();
        let mut out = Vec::new();
        archive::dump(&target, &mut out).unwrap();
        prop_assert!(out == nar);
        prop_assert_eq!(archive::hash_path(&target, HashAlgo::Sha1).unwrap(), (HashAlgo::Sha1.digest(&nar), nar.len() as u64));
    }
}

/// Dumping recurses per directory level on threads with 2 MiB stacks: a tree
/// deeper than its bound is a clean error there, and one within it dumps.
#[test]
fn a_tree_too_deep_to_dump_is_an_error_not_a_stack_overflow() {
    let t = tempfile::tempdir().unwrap();
    let mut p = t.path().join("t");
    for _ in 0..1100 {
        p.push("a");
    }
    fs::create_dir_all(&p).unwrap();
    let root = t.path().join("t");
    let deep = root.clone();
    let err = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            archive::dump(&deep, &mut Vec::new())
                .unwrap_err()
                .to_string()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(err.contains("depth limit"), "{err}");
    let mut within = root;
    for _ in 0..100 {
        within.push("a");
    }
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || archive::dump(&within, &mut Vec::new()).unwrap())
        .unwrap()
        .join()
        .unwrap();
}
