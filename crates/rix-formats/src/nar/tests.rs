//! Reader and writer together: fixtures from Tvix, malformed archives, properties.

use std::io::Read;

use proptest::prelude::*;

use super::wire::{self, write_str};
use super::*;

/// A file system object held in memory, for building and comparing archives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tree {
    File { executable: bool, data: Vec<u8> },
    Symlink(Vec<u8>),
    Dir(Vec<(Vec<u8>, Tree)>),
}

fn write_tree(tree: &Tree) -> Vec<u8> {
    fn go(w: &mut NarWriter<Vec<u8>>, t: &Tree) {
        match t {
            Tree::File { executable, data } => w.file(*executable, data).unwrap(),
            Tree::Symlink(target) => w.symlink(target).unwrap(),
            Tree::Dir(entries) => {
                w.begin_directory().unwrap();
                for (name, child) in entries {
                    w.entry(name).unwrap();
                    go(w, child);
                }
                w.end_directory().unwrap();
            }
        }
    }
    let mut w = NarWriter::new(Vec::new());
    go(&mut w, tree);
    let size = w.position();
    let out = w.finish().unwrap();
    assert_eq!(out.len() as u64, size);
    out
}

/// Reads a whole archive into a tree, reading every file's contents.
fn read_tree(nar: &[u8]) -> Result<Tree, NarReadError> {
    let mut r = NarReader::new(nar);
    type OpenDir = (Vec<u8>, Vec<(Vec<u8>, Tree)>);
    let mut stack: Vec<OpenDir> = Vec::new();
    let mut name = Vec::new();
    let mut root = None;
    fn place(stack: &mut [OpenDir], root: &mut Option<Tree>, name: Vec<u8>, t: Tree) {
        match stack.last_mut() {
            Some((_, entries)) => entries.push((name, t)),
            None => *root = Some(t),
        }
    }
    while let Some(ev) = r.next()? {
        match ev {
            Event::Regular {
                executable, size, ..
            } => {
                let mut data = Vec::new();
                let offset = r.offset();
                r.contents()
                    .read_to_end(&mut data)
                    .map_err(|e| NarReadError::from_io(e, offset))?;
                assert_eq!(data.len() as u64, size);
                let t = Tree::File { executable, data };
                place(&mut stack, &mut root, std::mem::take(&mut name), t);
            }
            Event::Symlink { target } => {
                let t = Tree::Symlink(target.to_vec());
                place(&mut stack, &mut root, std::mem::take(&mut name), t);
            }
            Event::Directory => stack.push((std::mem::take(&mut name), Vec::new())),
            Event::Entry { name: n } => name = n.to_vec(),
            Event::EndDirectory => {
                let (n, entries) = stack.pop().unwrap();
                place(&mut stack, &mut root, n, Tree::Dir(entries));
            }
        }
    }
    r.finish_at_eof()?;
    Ok(root.unwrap())
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(rix_testutil::vectors(&format!("generated/nar/{name}"))).unwrap()
}

fn recopy(nar: &[u8]) -> Vec<u8> {
    let mut r = NarReader::new(nar);
    let mut w = NarWriter::new(Vec::new());
    let n = copy(&mut r, &mut w).unwrap();
    r.finish_at_eof().unwrap();
    let out = w.finish().unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

fn file(data: &[u8]) -> Tree {
    Tree::File {
        executable: false,
        data: data.to_vec(),
    }
}

/// NARs that `nix-store --dump` wrote (tests/vectors/generate.sh).
#[test]
fn nix_dumped_fixtures() {
    let cases: [(&str, Tree); 6] = [
        ("helloworld.nar", file(b"Hello World!")),
        (
            "symlink.nar",
            Tree::Symlink(b"/nix/store/somewhereelse".to_vec()),
        ),
        (
            "executable.nar",
            Tree::File {
                executable: true,
                data: b"#!/bin/sh\necho hi\n".to_vec(),
            },
        ),
        ("emptydirectory.nar", Tree::Dir(vec![])),
        ("onebyteregular.nar", file(&[1])),
        (
            "complicated.nar",
            Tree::Dir(vec![
                (b".keep".to_vec(), file(b"")),
                (
                    b"aa".to_vec(),
                    Tree::Symlink(b"/nix/store/somewhereelse".to_vec()),
                ),
                (
                    b"keep".to_vec(),
                    Tree::Dir(vec![(b".keep".to_vec(), file(b""))]),
                ),
            ]),
        ),
    ];
    for (name, expected) in cases {
        let nar = fixture(name);
        assert_eq!(read_tree(&nar).unwrap(), expected, "{name}");
        assert_eq!(write_tree(&expected), nar, "{name}: writer");
        assert_eq!(recopy(&nar), nar, "{name}: copy");
        assert_eq!(validate(&nar[..]).unwrap(), nar.len() as u64);
    }
}

#[test]
fn fixture_offsets() {
    // helloworld.nar: the contents start after magic (24) + ( type regular contents
    // (16 + 16 + 16 + 16) + the size (8).
    let nar = fixture("helloworld.nar");
    let mut r = NarReader::new(&nar[..]);
    assert_eq!(
        r.next().unwrap(),
        Some(Event::Regular {
            executable: false,
            size: 12,
            offset: 96
        })
    );
    assert_eq!(&nar[96..108], b"Hello World!");
    // Contents need not be read: next() skips them.
    assert_eq!(r.next().unwrap(), None);
    assert_eq!(r.next().unwrap(), None);
    assert!(r.is_done());
    assert_eq!(r.offset(), nar.len() as u64);
}

#[test]
fn partial_contents_then_skip() {
    let tree = Tree::Dir(vec![
        (b"a".to_vec(), file(&[7u8; 100_000])),
        (b"b".to_vec(), file(b"tail")),
    ]);
    let nar = write_tree(&tree);
    let mut r = NarReader::new(&nar[..]);
    assert_eq!(r.next().unwrap(), Some(Event::Directory));
    assert_eq!(r.next().unwrap(), Some(Event::Entry { name: b"a" }));
    assert!(matches!(
        r.next().unwrap(),
        Some(Event::Regular { size: 100_000, .. })
    ));
    let mut buf = [0u8; 10];
    r.contents().read_exact(&mut buf).unwrap();
    assert_eq!(r.contents().remaining(), 99_990);
    assert_eq!(r.next().unwrap(), Some(Event::Entry { name: b"b" }));
    assert!(matches!(
        r.next().unwrap(),
        Some(Event::Regular { size: 4, .. })
    ));
    let mut s = String::new();
    r.contents().read_to_string(&mut s).unwrap();
    assert_eq!(s, "tail");
    // Past the file's end, contents() is empty.
    assert_eq!(r.contents().read(&mut buf).unwrap(), 0);
    assert_eq!(r.next().unwrap(), Some(Event::EndDirectory));
    assert_eq!(r.next().unwrap(), None);
    assert_eq!(r.contents().read(&mut buf).unwrap(), 0);
}

#[test]
fn every_truncation_is_an_error() {
    let tree = Tree::Dir(vec![
        (b"a".to_vec(), file(b"0123456789")),
        (
            b"b".to_vec(),
            Tree::File {
                executable: true,
                data: vec![],
            },
        ),
        (b"c".to_vec(), Tree::Symlink(b"a".to_vec())),
        (b"d".to_vec(), Tree::Dir(vec![(b"e".to_vec(), file(b"x"))])),
    ]);
    for nar in [write_tree(&tree), fixture("complicated.nar")] {
        for len in 0..nar.len() {
            let prefix = &nar[..len];
            match validate(prefix) {
                Err(NarReadError::UnexpectedEof { offset }) => {
                    assert_eq!(offset, len as u64, "prefix of {len}")
                }
                other => panic!("prefix of {len}: {other:?}"),
            }
            // Reading the contents too, the truncation still surfaces with its offset.
            match read_tree(prefix) {
                Err(NarReadError::UnexpectedEof { offset }) => assert_eq!(offset, len as u64),
                other => panic!("prefix of {len}: {other:?}"),
            }
        }
        assert!(validate(&nar[..]).is_ok());
    }
}

/// Builds an archive from raw strings (each written as a NAR string).
fn strings(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        write_str(&mut out, p).unwrap();
    }
    out
}

/// `nix-archive-1 ( type directory` + entries given as (name, node strings) + `)`.
fn dir_with(entries: &[(&[u8], &[&[u8]])]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"directory"];
    for (name, node) in entries {
        parts.extend_from_slice(&[b"entry", b"(", b"name", name, b"node"]);
        parts.extend_from_slice(node);
        parts.push(b")");
    }
    parts.push(b")");
    strings(&parts)
}

const EMPTY_FILE: &[&[u8]] = &[b"(", b"type", b"regular", b"contents", b"", b")"];

/// Offset of the `n`th (0-based) entry's name string in a `dir_with` archive whose
/// entries are all `EMPTY_FILE` with names of at most 8 bytes.
fn name_offset(n: u64) -> u64 {
    // magic 24, ( type directory 56, each entry: entry ( name 48 + name 16 + node 16
    // + the empty file (6 strings of 8 or 16 bytes: 16*4 + 8 + 16 = 88) + ) 16.
    24 + 56 + n * (48 + 16 + 16 + 88 + 16) + 48
}

#[test]
fn bad_magic() {
    for nar in [
        strings(&[b"nix-archive-2", b"(", b"type", b"directory", b")"]),
        strings(&[b"nix-archive-", b"(", b"type", b"directory", b")"]),
        strings(&[b"NIX-ARCHIVE-1"]),
        vec![0xff; 64],
    ] {
        assert!(
            matches!(validate(&nar[..]), Err(NarReadError::BadMagic { .. })),
            "{:?}",
            validate(&nar[..])
        );
    }
    assert!(matches!(
        validate(&b""[..]),
        Err(NarReadError::UnexpectedEof { offset: 0 })
    ));
}

#[test]
fn non_zero_padding() {
    let good = dir_with(&[(b"abc", EMPTY_FILE)]);
    assert!(validate(&good[..]).is_ok());
    // In the magic's padding (bytes 21..24).
    let mut nar = good.clone();
    nar[22] = 1;
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::NonZeroPadding { offset: 22 })
    ));
    // In the entry name's padding: name at name_offset(0), body 3 bytes.
    let mut nar = good.clone();
    let pad = name_offset(0) as usize + 8 + 3 + 4;
    nar[pad] = b'x';
    match validate(&nar[..]) {
        Err(NarReadError::NonZeroPadding { offset }) => assert_eq!(offset, pad as u64),
        other => panic!("{other:?}"),
    }
    // In a file's contents padding.
    let mut w = NarWriter::new(Vec::new());
    w.file(false, b"abc").unwrap();
    let mut nar = w.finish().unwrap();
    nar[96 + 3] = 0x80;
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::NonZeroPadding { offset: 99 })
    ));
    assert!(matches!(
        read_tree(&nar),
        Err(NarReadError::NonZeroPadding { offset: 99 })
    ));
}

#[test]
fn unsorted_and_duplicate_entries() {
    let nar = dir_with(&[(b"b", EMPTY_FILE), (b"a", EMPTY_FILE)]);
    match validate(&nar[..]) {
        Err(NarReadError::NotSorted { offset, prev, name }) => {
            assert_eq!(offset, name_offset(1));
            assert_eq!((prev.as_slice(), name.as_slice()), (&b"b"[..], &b"a"[..]));
        }
        other => panic!("{other:?}"),
    }
    let nar = dir_with(&[(b"a", EMPTY_FILE), (b"b", EMPTY_FILE), (b"b", EMPTY_FILE)]);
    match validate(&nar[..]) {
        Err(NarReadError::Duplicate { offset, name }) => {
            assert_eq!(offset, name_offset(2));
            assert_eq!(name, b"b");
        }
        other => panic!("{other:?}"),
    }
    // Byte order, not char order: "Z" < "a" < "é" (0xc3...) is sorted; the reverse is not.
    assert!(validate(
        &dir_with(&[
            (b"Z", EMPTY_FILE),
            (b"a", EMPTY_FILE),
            ("é".as_bytes(), EMPTY_FILE)
        ])[..]
    )
    .is_ok());
    assert!(matches!(
        validate(&dir_with(&[("é".as_bytes(), EMPTY_FILE), (b"z", EMPTY_FILE)])[..]),
        Err(NarReadError::NotSorted { .. })
    ));
    // A prefix sorts first.
    assert!(validate(&dir_with(&[(b"a", EMPTY_FILE), (b"a.b", EMPTY_FILE)])[..]).is_ok());
    assert!(validate(&dir_with(&[(b"a.b", EMPTY_FILE), (b"a", EMPTY_FILE)])[..]).is_err());
}

#[test]
fn invalid_names() {
    for (name, reason) in [
        (&b""[..], NameError::Empty),
        (b".", NameError::Dot),
        (b"..", NameError::DotDot),
        (b"a/b", NameError::Slash(1)),
        (b"/", NameError::Slash(0)),
        (b"a\0", NameError::Nul(1)),
    ] {
        let nar = dir_with(&[(name, EMPTY_FILE)]);
        match validate(&nar[..]) {
            Err(NarReadError::InvalidName {
                offset,
                name: n,
                reason: r,
            }) => {
                assert_eq!(offset, name_offset(0));
                assert_eq!((n.as_slice(), r), (name, reason));
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    // Longer than the limit.
    let long = vec![b'a'; 256];
    assert!(matches!(
        validate(&dir_with(&[(&long, EMPTY_FILE)])[..]),
        Err(NarReadError::TooLong {
            len: 256,
            max: 255,
            ..
        })
    ));
    assert!(validate(&dir_with(&[(&long[..255], EMPTY_FILE)])[..]).is_ok());
}

#[test]
fn oversized_lengths() {
    let huge = 1u64 << 63;
    // A token length.
    let mut nar = strings(&[b"nix-archive-1"]);
    nar.extend_from_slice(&huge.to_le_bytes());
    match validate(&nar[..]) {
        Err(NarReadError::TooLong { offset, len, .. }) => assert_eq!((offset, len), (24, huge)),
        other => panic!("{other:?}"),
    }
    // The magic's length.
    let mut nar = huge.to_le_bytes().to_vec();
    nar.extend_from_slice(&[0; 64]);
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::BadMagic { offset: 0 })
    ));
    // A name's length.
    let mut nar = strings(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
    ]);
    nar.extend_from_slice(&huge.to_le_bytes());
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::TooLong { offset: 128, .. })
    ));
    // A symlink target's length.
    let mut nar = strings(&[b"nix-archive-1", b"(", b"type", b"symlink", b"target"]);
    nar.extend_from_slice(&huge.to_le_bytes());
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::TooLong { offset: 88, .. })
    ));
    // A file's size: accepted as a length, then the input runs out.
    let mut nar = strings(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
    nar.extend_from_slice(&huge.to_le_bytes());
    nar.extend_from_slice(b"some data");
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::UnexpectedEof { offset }) if offset == nar.len() as u64
    ));
    // u64::MAX cannot even be padded.
    let mut nar = strings(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
    nar.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::SizeOverflow {
            offset: 88,
            size: u64::MAX
        })
    ));
}

#[test]
fn trailing_data() {
    let mut nar = fixture("helloworld.nar");
    let len = nar.len() as u64;
    nar.push(0);
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::TrailingData { offset }) if offset == len
    ));
    // Without asking for EOF the archive's own end is where reading stops.
    let mut r = NarReader::new(&nar[..]);
    let rest = {
        while r.next().unwrap().is_some() {}
        r.into_inner()
    };
    assert_eq!(rest, &[0]);
    let mut r = NarReader::new(&nar[..]);
    assert!(r.next().unwrap().is_some());
    assert_eq!(r.finish().unwrap(), &[0]);
}

#[test]
fn bad_tokens() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            strings(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"]),
            "unknown type",
        ),
        (
            strings(&[b"nix-archive-1", b"[", b"type", b"regular"]),
            "open",
        ),
        (
            strings(&[b"nix-archive-1", b"(", b"kind", b"regular"]),
            "type",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"regular",
                b"executable",
                b"yes",
                b"contents",
                b"",
                b")",
            ]),
            "executable marker",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"regular",
                b"executable",
                b"",
                b"executable",
                b"",
                b"contents",
                b"",
                b")",
            ]),
            "double executable",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"regular",
                b"data",
                b"",
                b")",
            ]),
            "contents",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"regular",
                b"contents",
                b"",
                b"]",
            ]),
            "close",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"symlink",
                b"target",
                b"x",
                b"target",
                b"y",
                b")",
            ]),
            "symlink close",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"directory",
                b"entries",
                b")",
            ]),
            "entry",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"directory",
                b"entry",
                b"(",
                b"nom",
                b"a",
            ]),
            "name",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"directory",
                b"entry",
                b"(",
                b"name",
                b"a",
                b"nod",
            ]),
            "node",
        ),
        (
            strings(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"directory",
                b"entry",
                b"(",
                b"name",
                b"a",
                b"node",
                b"(",
                b"type",
                b"symlink",
                b"target",
                b"b",
                b")",
                b"(",
                b")",
            ]),
            "entry close",
        ),
    ];
    for (nar, what) in cases {
        match validate(&nar[..]) {
            Err(NarReadError::UnexpectedToken { .. } | NarReadError::UnknownType { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // The unknown type is reported at its own offset, after magic, ( and type.
    let nar = strings(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"]);
    match validate(&nar[..]) {
        Err(NarReadError::UnknownType { offset, found }) => {
            assert_eq!((offset, found.as_slice()), (56, &b"fifo"[..]))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_symlink_targets() {
    for (target, offset) in [(&b""[..], 88), (b"a\0b", 88)] {
        let nar = strings(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"symlink",
            b"target",
            target,
            b")",
        ]);
        match validate(&nar[..]) {
            Err(NarReadError::InvalidTarget { offset: o, .. }) => assert_eq!(o, offset),
            other => panic!("{other:?}"),
        }
    }
    let long = vec![b'a'; 4097];
    let nar = strings(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"symlink",
        b"target",
        &long,
        b")",
    ]);
    assert!(matches!(
        validate(&nar[..]),
        Err(NarReadError::TooLong { len: 4097, .. })
    ));
}

#[test]
fn nesting_depth_is_bounded() {
    fn nested(depth: usize) -> Vec<u8> {
        let mut w = NarWriter::with_limits(
            Vec::new(),
            Limits {
                max_depth: usize::MAX,
                ..Limits::default()
            },
        );
        for _ in 0..depth {
            w.begin_directory().unwrap();
            w.entry(b"d").unwrap();
        }
        w.begin_directory().unwrap();
        for _ in 0..=depth {
            w.end_directory().unwrap();
        }
        w.finish().unwrap()
    }
    assert!(validate(&nested(wire::MAX_DEPTH - 1)[..]).is_ok());
    assert!(matches!(
        validate(&nested(wire::MAX_DEPTH)[..]),
        Err(NarReadError::TooDeep { .. })
    ));
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let deep = nested(5);
    let mut r = NarReader::with_limits(&deep[..], limits);
    let mut events = 0;
    let err = loop {
        match r.next() {
            Ok(_) => events += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(events, 6); // three directories and three entries
    assert!(matches!(err, NarReadError::TooDeep { max: 3, .. }));
    // Once failed, the reader stays failed.
    assert!(matches!(r.next(), Err(NarReadError::Poisoned { .. })));
    // The writer enforces the same limit.
    let mut w = NarWriter::with_limits(Vec::new(), limits);
    for _ in 0..2 {
        w.begin_directory().unwrap();
        w.entry(b"d").unwrap();
    }
    w.begin_directory().unwrap();
    w.entry(b"d").unwrap();
    assert!(matches!(
        w.begin_directory(),
        Err(NarWriteError::Misuse { .. })
    ));
}

#[test]
fn truncated_contents_surface_through_read() {
    let mut w = NarWriter::new(Vec::new());
    w.file(false, &[5u8; 1000]).unwrap();
    let nar = w.finish().unwrap();
    let cut = &nar[..500];
    let mut r = NarReader::new(cut);
    assert!(matches!(r.next().unwrap(), Some(Event::Regular { .. })));
    let mut data = Vec::new();
    let e = r.contents().read_to_end(&mut data).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(matches!(
        NarReadError::from_io(e, 0),
        NarReadError::UnexpectedEof { offset: 500 }
    ));
    assert_eq!(data.len(), 500 - 96);
    assert!(matches!(
        r.next(),
        Err(NarReadError::Poisoned { offset: 500 })
    ));
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-zA-Z0-9._-]{1,12}".prop_map(|s| s.into_bytes()),
        "\\PC{1,6}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(1u8..=255, 1..10),
    ]
    .prop_filter("valid name", |n| wire::check_name(n, 255).is_ok())
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(executable, data)| Tree::File { executable, data }),
        proptest::collection::vec(1u8..=255, 1..30).prop_map(Tree::Symlink),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        proptest::collection::btree_map(arb_name(), inner, 0..6)
            .prop_map(|m| Tree::Dir(m.into_iter().collect()))
    })
}

proptest! {
    #[test]
    fn roundtrip(tree in arb_tree()) {
        let nar = write_tree(&tree);
        prop_assert_eq!(read_tree(&nar).unwrap(), tree);
        prop_assert_eq!(recopy(&nar), nar.clone());
        let l = listing::list(&nar[..]).unwrap();
        for style in [listing::JsonStyle::Nix28, listing::JsonStyle::Sorted] {
            let json = listing::ls_file(&l, style);
            // serde_json reads back whatever is UTF-8 (non-UTF-8 names are copied raw, as Nix 2.8 does).
            if std::str::from_utf8(&json).is_ok() {
                prop_assert_eq!(listing::parse_ls_file(&json).unwrap(), l.clone());
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = validate(&bytes[..]);
        let _ = read_tree(&bytes);
        let _ = listing::list(&bytes[..]);
    }

    #[test]
    fn mutated_archives_never_panic(tree in arb_tree(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut nar = write_tree(&tree);
        for (i, b) in edits {
            let i = i.index(nar.len());
            nar[i] = b;
        }
        // Whatever is still accepted re-encodes to exactly the input.
        if validate(&nar[..]).is_ok() {
            prop_assert_eq!(recopy(&nar), nar);
        }
    }
}
