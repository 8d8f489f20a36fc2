//! rix's NAR dump, hash, restore and listing against the real Nix, on randomly
//! generated (seeded, so reproducible) trees.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rix_formats::hash::Encoding;
use rix_formats::nar::listing::{self, JsonStyle, TextOptions};
use rix_formats::HashAlgo;
use rix_store::archive;

/// splitmix64: a small seeded generator, enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Names chosen to exercise byte order (upper before lower case, `-` `.` `_`
/// before letters, prefixes first, UTF-8 after ASCII, a non-UTF-8 name) and
/// characters that need escaping in listings.
const NAMES: &[&[u8]] = &[
    b"a",
    b"A",
    b"B",
    b"Z",
    b"a-b",
    b"a.b",
    b"a_b",
    b"a0",
    b"ab",
    b"b",
    b"_",
    b"~",
    b".hidden",
    b"...",
    b"with space",
    b"new\nline",
    b"back\\slash",
    b"quote\"d",
    "é".as_bytes(),
    "e\u{301}".as_bytes(),
    "ü".as_bytes(),
    "日本".as_bytes(),
    "🦀".as_bytes(),
    b"\xff\xfe-not-utf8",
    b"lib",
    b"bin",
    b"share",
];

fn gen_tree(rng: &mut Rng, dir: &Path, depth: u32) {
    fs::create_dir(dir).unwrap();
    let n = rng.below(if depth == 0 { 14 } else { 8 });
    for _ in 0..n {
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        let path = dir.join(OsStr::from_bytes(name));
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        match rng.below(10) {
            0..=4 => {
                let size = match rng.below(10) {
                    0 => 0,
                    1..=6 => rng.below(200) as usize,
                    _ => rng.below(20_000) as usize,
                };
                fs::write(&path, rng.bytes(size)).unwrap();
                // Only the owner's x bit makes a file executable for Nix.
                let mode =
                    [0o644, 0o755, 0o744, 0o654, 0o600, 0o700, 0o444, 0o555][rng.below(8) as usize];
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            }
            5 | 6 => {
                let target: &[u8] = match rng.below(5) {
                    0 => b"../a",
                    1 => b"/nix/store/00000000000000000000000000000000-dangling",
                    2 => b"b",
                    3 => "./日本/x".as_bytes(),
                    _ => b"/etc/passwd",
                };
                symlink(OsStr::from_bytes(target), &path).unwrap();
            }
            _ if depth < 4 => gen_tree(rng, &path, depth + 1),
            _ => fs::create_dir(&path).unwrap(),
        }
    }
}

fn run(tool: &Path, args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {:?}: {}",
        tool.display(),
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn our_dump(path: &Path) -> Vec<u8> {
    let mut nar = Vec::new();
    let size = archive::dump(path, &mut nar).unwrap();
    assert_eq!(size, nar.len() as u64);
    nar
}

fn nix_restore(nix_store: &Path, nar: &[u8], target: &Path) {
    let mut child = Command::new(nix_store)
        .arg("--restore")
        .arg(target)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(nar).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Checks every mode our restore produced against Nix's rule: the executable
/// bit set for all when (and only when) the NAR says so; never group/other writable.
fn check_modes(nar: &[u8], root: &Path) {
    fn walk(node: &listing::Node, path: &Path) {
        let m = fs::symlink_metadata(path).unwrap();
        match node {
            listing::Node::Regular { executable, .. } => {
                assert!(m.is_file());
                let mode = m.permissions().mode();
                assert_eq!(mode & 0o111 == 0o111, *executable, "{}", path.display());
                assert_eq!(mode & 0o111 == 0, !*executable, "{}", path.display());
            }
            listing::Node::Symlink { target } => {
                assert_eq!(fs::read_link(path).unwrap().as_os_str().as_bytes(), target);
            }
            listing::Node::Directory { entries } => {
                assert!(m.is_dir());
                for (name, child) in entries {
                    walk(child, &path.join(OsStr::from_bytes(name)));
                }
            }
        }
    }
    walk(&listing::list(nar).unwrap(), root);
}

/// What the generated trees contain, to make sure they cover the interesting cases.
#[derive(Default, Debug)]
struct Stats {
    files: usize,
    executables: usize,
    empty_files: usize,
    symlinks: usize,
    dirs: usize,
    empty_dirs: usize,
    non_utf8_names: usize,
    non_ascii_names: usize,
    max_depth: usize,
}

impl Stats {
    fn add(&mut self, root: &listing::Node) {
        self.walk(root, 0);
    }
    fn walk(&mut self, node: &listing::Node, depth: usize) {
        self.max_depth = self.max_depth.max(depth);
        match node {
            listing::Node::Regular {
                executable, size, ..
            } => {
                self.files += 1;
                self.executables += usize::from(*executable);
                self.empty_files += usize::from(*size == 0);
            }
            listing::Node::Symlink { .. } => self.symlinks += 1,
            listing::Node::Directory { entries } => {
                self.dirs += 1;
                self.empty_dirs += usize::from(entries.is_empty());
                for (name, child) in entries {
                    self.non_utf8_names += usize::from(std::str::from_utf8(name).is_err());
                    self.non_ascii_names += usize::from(!name.is_ascii());
                    self.walk(child, depth + 1);
                }
            }
        }
    }
}

#[test]
fn matches_nix_on_random_trees() {
    let Some(nix_store) = rix_testutil::nix("nix-store") else {
        return;
    };
    let nix_hash = rix_testutil::nix("nix-hash").unwrap();
    let nix = rix_testutil::nix("nix");
    let tmp = tempfile::tempdir().unwrap();
    let mut stats = Stats::default();
    for seed in 0..6u64 {
        let mut rng = Rng(seed);
        let tree = tmp.path().join(format!("tree-{seed}"));
        gen_tree(&mut rng, &tree, 0);
        if seed == 0 {
            // One file of several MiB, and an empty directory.
            fs::write(tree.join("big"), rng.bytes(5 << 20 | 3)).unwrap();
            let _ = fs::create_dir(tree.join("empty"));
        }
        let ctx = format!("seed {seed}");
        let t = tree.as_os_str();

        // Dump.
        let theirs = run(&nix_store, &[OsStr::new("--dump"), t]);
        let ours = our_dump(&tree);
        assert!(ours == theirs, "{ctx}: dump differs");
        stats.add(&listing::list(&ours[..]).unwrap());

        // Hashes in every encoding nix-hash prints.
        for (algo, flag) in [
            (HashAlgo::Sha256, None),
            (HashAlgo::Sha256, Some("--base32")),
            (HashAlgo::Sha1, None),
            (HashAlgo::Md5, None),
            (HashAlgo::Sha512, Some("--base32")),
        ] {
            let mut args = vec![OsStr::new("--type"), OsStr::new(algo.name())];
            if let Some(f) = flag {
                args.push(OsStr::new(f));
            }
            args.push(t);
            let expected = String::from_utf8(run(&nix_hash, &args)).unwrap();
            let (hash, size) = archive::hash_path(&tree, algo).unwrap();
            let enc = if flag.is_some() {
                Encoding::Nix32
            } else {
                Encoding::Base16
            };
            assert_eq!(hash.encode(enc), expected.trim(), "{ctx}: {algo} {flag:?}");
            assert_eq!(size, ours.len() as u64);
        }

        // Our restore of Nix's dump dumps identically, by Nix and by us.
        let restored = tmp.path().join(format!("ours-{seed}"));
        archive::restore(&theirs[..], &restored).unwrap();
        assert!(
            run(&nix_store, &[OsStr::new("--dump"), restored.as_os_str()]) == theirs,
            "{ctx}: Nix's dump of our restore differs"
        );
        assert!(our_dump(&restored) == theirs, "{ctx}: re-dump differs");
        check_modes(&theirs, &restored);

        // Nix's restore of our dump dumps identically.
        let nix_restored = tmp.path().join(format!("nix-{seed}"));
        nix_restore(&nix_store, &ours, &nix_restored);
        assert!(
            run(
                &nix_store,
                &[OsStr::new("--dump"), nix_restored.as_os_str()]
            ) == ours,
            "{ctx}: Nix's restore of our dump differs"
        );

        // Listings as `nix nar ls` prints them.
        if let Some(nix) = &nix {
            let nar_file = tmp.path().join(format!("tree-{seed}.nar"));
            fs::write(&nar_file, &ours).unwrap();
            let root = listing::list(&ours[..]).unwrap();
            let ls = |args: &[&str]| {
                let mut a: Vec<&OsStr> = vec![
                    OsStr::new("--extra-experimental-features"),
                    OsStr::new("nix-command"),
                    OsStr::new("nar"),
                    OsStr::new("ls"),
                ];
                a.extend(args.iter().map(OsStr::new));
                a.push(nar_file.as_os_str());
                a.push(OsStr::new("/"));
                run(nix, &a)
            };
            assert_eq!(
                ls(&["--json", "-R"]),
                root.to_json(JsonStyle::Nix28, true),
                "{ctx}: nar ls --json -R"
            );
            assert_eq!(
                ls(&["--json"]),
                root.to_json(JsonStyle::Nix28, false),
                "{ctx}: nar ls --json"
            );
            let long = TextOptions {
                long: true,
                recursive: true,
                directory: false,
            };
            assert_eq!(
                ls(&["-l", "-R"]),
                root.to_text(b"/", long),
                "{ctx}: nar ls -lR"
            );
            assert_eq!(
                ls(&["-R"]),
                root.to_text(
                    b"/",
                    TextOptions {
                        recursive: true,
                        ..Default::default()
                    }
                ),
                "{ctx}: nar ls -R"
            );
            assert_eq!(
                ls(&["-d", "-l"]),
                root.to_text(
                    b"/",
                    TextOptions {
                        long: true,
                        directory: true,
                        recursive: false
                    }
                ),
                "{ctx}: nar ls -dl"
            );
        }
    }
    eprintln!("{stats:?}");
    assert!(
        stats.files > 50
            && stats.executables > 5
            && stats.empty_files > 0
            && stats.symlinks > 10
            && stats.empty_dirs > 0
            && stats.non_utf8_names > 0
            && stats.non_ascii_names > 5
            && stats.max_depth >= 4,
        "the generated trees miss cases: {stats:?}"
    );
}

#[test]
fn single_files_and_symlinks_match_nix() {
    let Some(nix_store) = rix_testutil::nix("nix-store") else {
        return;
    };
    let nix_hash = rix_testutil::nix("nix-hash").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, &str)> = {
        let f = tmp.path().join("file");
        fs::write(&f, b"Hello World!").unwrap();
        let x = tmp.path().join("exec");
        fs::write(&x, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&x, fs::Permissions::from_mode(0o700)).unwrap();
        let e = tmp.path().join("empty");
        fs::write(&e, b"").unwrap();
        let l = tmp.path().join("link");
        symlink("file", &l).unwrap();
        let big = tmp.path().join("big");
        fs::write(&big, Rng(7).bytes(600_000)).unwrap();
        vec![
            (f, "file"),
            (x, "executable"),
            (e, "empty"),
            (l, "symlink (not followed)"),
            (big, "big file (hashed on two threads)"),
        ]
    };
    for (path, what) in cases {
        let theirs = run(&nix_store, &[OsStr::new("--dump"), path.as_os_str()]);
        assert!(our_dump(&path) == theirs, "{what}");
        let expected = String::from_utf8(run(
            &nix_hash,
            &[OsStr::new("--type"), OsStr::new("sha256"), path.as_os_str()],
        ))
        .unwrap();
        let (hash, size) = archive::hash_path(&path, HashAlgo::Sha256).unwrap();
        assert_eq!(hash.to_base16(), expected.trim(), "{what}");
        assert_eq!(size, theirs.len() as u64);
    }
    // helloworld.nar is exactly what Nix dumps for a file saying "Hello World!".
    let fixture = fs::read(rix_testutil::vectors("generated/nar/helloworld.nar")).unwrap();
    assert!(our_dump(&tmp.path().join("file")) == fixture);
}
