//! `builtins.parseFlakeRef` and `builtins.flakeRefToString` against Nix 2.26:
//! each input through `nix-instantiate --eval --strict` of both (with the
//! `flakes` experimental feature, which both need), comparing stdout and
//! stderr byte for byte (values and error messages alike). Needs the current
//! Nix (`RIX_NIX_CURRENT`, see `rix_testutil::nix_current`); skipped without
//! it unless `RIX_REQUIRE_NIX_CURRENT=1`.

use std::process::{Command, Output, Stdio};

/// Flake references for `builtins.parseFlakeRef`: every URL form and query
/// parameter Nix parses, and the errors of malformed ones.
const URLS: &[&str] = &[
    r#"github:NixOS/nixpkgs/23.05"#,
    r#"github:NixOS/nixpkgs"#,
    r#"github:NixOS/nixpkgs/A3a3dda3bacf61e8a39258a0ed9c924eeca8e293"#,
    r#"github:NixOS/nixpkgs?ref=nixos-unstable&dir=lib"#,
    r#"github:NixOS/nixpkgs?rev=a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"#,
    r#"github:NixOS/nixpkgs/23.05?narHash=sha256-47DEQpj8HBSa%2B/TImW%2B5JCeuQeRkm5NMpJWZG3hSuFU%3D"#,
    r#"github:NixOS/nixpkgs?host=github.example.com"#,
    r#"github:NixOS/nixpkgs/a/b"#,
    r#"github:a/b/c%2Fd"#,
    r#"github:NixOS"#,
    r#"github:NixOS/nixpkgs?ref=a&rev=a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"#,
    r#"github:NixOS/nixpkgs/23.05?ref=x"#,
    r#"github:NixOS/nixpkgs?lastModified=5"#,
    r#"github:NixOS/nixpkgs/abc?rev=a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"#,
    r#"github:NixOS/nixpkgs/23.05#foo"#,
    r#"gitlab:veloren/veloren"#,
    r#"gitlab:veloren/veloren/v0.1"#,
    r#"sourcehut:~misterio/nix-colors"#,
    r#"sourcehut:~misterio/nix-colors/main?host=hg.sr.ht"#,
    r#"git+https://github.com/NixOS/patchelf"#,
    r#"git+https://github.com/NixOS/patchelf?ref=master&rev=f34751b88bd07d7f44f5cd3200fb4122bf916c7e"#,
    r#"git+file:///home/user/proj?dir=sub"#,
    r#"git+file://host/home/user/proj"#,
    r#"git+ssh://git@github.com/NixOS/nix?ref=v1.2.3"#,
    r#"git+https://example.org/repo?shallow=1&submodules=1"#,
    r#"git+https://example.org/repo?foo=bar"#,
    r#"git+https://example.org/repo?revCount=5&lastModified=7"#,
    r#"git+https://example.org/repo?ref=a..b"#,
    r#"git+https://user@example.org:8080/r.git"#,
    r#"git+https://example.org/repo?narHash=sha256-47DEQpj8HBSa%2B/TImW%2B5JCeuQeRkm5NMpJWZG3hSuFU%3D"#,
    r#"git://example.org/repo"#,
    r#"hg+https://example.org/repo?ref=default"#,
    r#"path:/tmp/foo"#,
    r#"path:/tmp/foo?narHash=sha256-47DEQpj8HBSa%2B/TImW%2B5JCeuQeRkm5NMpJWZG3hSuFU%3D"#,
    r#"path:/tmp/foo?lastModified=3&rev=a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"#,
    r#"path:/tmp/foo?lastModified=x"#,
    r#"path:/tmp/foo?bar=1"#,
    r#"path:./foo"#,
    r#"path://host/tmp"#,
    r#"/tmp/foo"#,
    r#"/tmp/foo/../bar?dir=sub&x=1"#,
    r#"/tmp/foo#bar"#,
    r#"."#,
    r#"./foo"#,
    r#"tarball+https://example.org/foo.tar.gz"#,
    r#"https://example.org/foo.tar.gz"#,
    r#"https://example.org/foo.tar.gz?dir=x"#,
    r#"https://example.org/foo.zip?narHash=sha256-47DEQpj8HBSa%2B/TImW%2B5JCeuQeRkm5NMpJWZG3hSuFU%3D"#,
    r#"https://example.org/foo.txt?rev=abc&revCount=4&lastModified=x&a=b%20c"#,
    r#"file+https://example.org/foo.txt"#,
    r#"file:///tmp/x.tar.gz"#,
    r#"tarball+file:///tmp/x.tar.gz"#,
    r#"flake:nixpkgs"#,
    r#"nixpkgs"#,
    r#"nixpkgs/nixos-23.05"#,
    r#"nixpkgs/a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"#,
    r#"nixpkgs/nixos-23.05/a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"#,
    r#"nixpkgs/a/b"#,
    r#"flake:nixpkgs?dir=lib"#,
    r#"flake:nixpkgs/a/b/c/d"#,
    r#"nixpkgs?dir=lib"#,
    r#"foo:bar"#,
    r#"/tmp/foo/../bar?dir=sub"#,
    r#"/tmp/foo?dir=sub"#,
    r#"/tmp/foo/./x/../?dir=../y"#,
    r#"/tmp//foo/"#,
    r#"/tmp/foo?narHash=sha256-47DEQpj8HBSa%2B/TImW%2B5JCeuQeRkm5NMpJWZG3hSuFU%3D&dir=a"#,
    r#"/tmp/foo?lastModified=4"#,
    r#"/tmp/a%20b"#,
    r#"path:/tmp/foo/../x?dir=y"#,
    r#"path:/tmp/a%20b"#,
];

/// Attribute sets for `builtins.flakeRefToString`: each input type, and the
/// errors (missing or unsupported attributes, wrong types, unforced values).
const ATTRS: &[&str] = &[
    r#"{type="github"; owner="NixOS"; repo="nixpkgs"; ref="23.05"; dir="lib";}"#,
    r#"{type="tarball"; url="https://x.org/foo.txt"; rev="a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"; lastModified=5;}"#,
    r#"{type="file"; url="https://x.org/foo.txt";}"#,
    r#"{type="tarball"; url="https://x.org/foo.tar.gz"; narHash="sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";}"#,
    r#"{type="git"; url="https://x.org/r"; ref="main"; rev="a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"; shallow=true; submodules=false; dir="d";}"#,
    r#"{type="git"; url="/tmp/r";}"#,
    r#"{type="git"; url="git@github.com:a/b";}"#,
    r#"{type="git"; url="https://x.org/r?dir=a"; dir="b";}"#,
    r#"{type="git"; url="https://x.org/r"; ref="a..b";}"#,
    r#"{type="git"; url="https://x.org/r"; shallow="1";}"#,
    r#"{type="path"; path="/tmp/x"; lastModified=3; narHash="sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";}"#,
    r#"{type="indirect"; id="nixpkgs"; ref="a"; rev="a3a3dda3bacf61e8a39258a0ed9c924eeca8e293";}"#,
    r#"{type="indirect"; id="nixpkgs"; dir="lib";}"#,
    r#"{type="github"; owner="a"; repo="b"; rev="A3a3dda3bacf61e8a39258a0ed9c924eeca8e293"; host="x.com"; narHash="sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";}"#,
    r#"{type="gitlab"; owner="a"; repo="b"; ref="x/y";}"#,
    r#"{type="hg"; url="https://x/r"; ref="r";}"#,
    r#"{type="foo";}"#,
    r#"{owner="a";}"#,
    r#"{type="github"; owner="a";}"#,
    r#"{type="github"; owner="a"; repo="b"; x=1;}"#,
    r#"{type="github"; owner="a"; repo=1;}"#,
    r#"{type="github"; owner="a"; repo=[];}"#,
    r#"{type="github"; owner="a"; repo="b"; ref = "x" + "y";}"#,
    r#"{type="sourcehut"; owner="~a"; repo="b"; ref="x y";}"#,
    r#"{type="path"; path="/tmp/a b";}"#,
    r#"{type="path"; path="/tmp/a"; revCount="3";}"#,
    r#"{type="github"; owner="a"; repo="b"; rev="abc";}"#,
    r#"{type="github"; owner="a"; repo="b"; narHash="sha256-abc";}"#,
    r#"{type="github"; owner="a"; repo="b"; narHash="sha512-abc";}"#,
    r#"{type="github"; owner="a"; repo="b"; narHash="";}"#,
    r#"{type="indirect"; id="1x";}"#,
    r#"{type="path"; path="/x"; rev="sha1-o6PdrbrPYeijklgO2Ql27ur5LJM=";}"#,
    r#"{type="github"; owner="a"; repo="b"; dir=1;}"#,
    r#"{type="github"; owner="a"; repo="b"; lastModified=-1;}"#,
    r#"{type=1;}"#,
];

fn run(mut cmd: Command, expr: &str) -> Output {
    cmd.args([
        "--eval",
        "--strict",
        "--extra-experimental-features",
        "flakes",
        "-E",
        expr,
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .unwrap()
}

fn compare(exprs: impl Iterator<Item = String>) -> (usize, Vec<String>) {
    let mut same = 0;
    let mut differ = Vec::new();
    for expr in exprs {
        let want = run(rix_testutil::nix_current("nix-instantiate").unwrap(), &expr);
        let mut rix = Command::new(env!("CARGO_BIN_EXE_rix"));
        rix.arg("instantiate");
        let got = run(rix, &expr);
        if (&want.stdout, &want.stderr) == (&got.stdout, &got.stderr) {
            same += 1;
        } else {
            differ.push(format!(
                "{expr}\n  nix: {}{}\n  rix: {}{}",
                String::from_utf8_lossy(&want.stdout),
                String::from_utf8_lossy(&want.stderr),
                String::from_utf8_lossy(&got.stdout),
                String::from_utf8_lossy(&got.stderr)
            ));
        }
    }
    (same, differ)
}

#[test]
fn parse_flake_ref_matches_nix_2_26() {
    if rix_testutil::nix_current("nix-instantiate").is_none() {
        return;
    }
    let (same, differ) = compare(
        URLS.iter()
            .map(|u| format!("builtins.parseFlakeRef \"{}\"", u.replace('$', "\\$"))),
    );
    eprintln!("parseFlakeRef: {same}/{} identical", URLS.len());
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn flake_ref_to_string_matches_nix_2_26() {
    if rix_testutil::nix_current("nix-instantiate").is_none() {
        return;
    }
    let (same, differ) = compare(
        ATTRS
            .iter()
            .map(|a| format!("builtins.flakeRefToString {a}")),
    );
    eprintln!("flakeRefToString: {same}/{} identical", ATTRS.len());
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn only_with_the_flakes_feature() {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args([
            "instantiate",
            "--eval",
            "-E",
            "builtins ? parseFlakeRef || builtins ? flakeRefToString",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "false\n");
}
