//! Differential tests against the real Nix (2.8): instantiate a corpus of Nix
//! expressions into a temporary store, then check, for every `.drv` in the closure,
//! that rix prints the same bytes, computes the same `.drv` path and output paths,
//! and shows the same JSON as `nix show-derivation` (byte for byte).
//! Skipped when Nix is not installed (unless `RIX_REQUIRE_NIX=1`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use rix_formats::derivation::hashing::LookupError;
use rix_formats::derivation::json::show_derivations;
use rix_formats::derivation::{
    Derivation, DerivationOutput, DerivationType, DrvHashKind, DrvHashes,
};
use rix_formats::hash::Encoding;
use rix_formats::{HashAlgo, StoreDir, StorePath};
use rix_testutil::{nix, TempStore};

const FEATURES: &str = "nix-command ca-derivations impure-derivations";

/// Runs a Nix tool against the temporary store; returns stdout as bytes (the JSON
/// of non-UTF-8 derivations is not UTF-8).
fn run(tool: &Path, store: &TempStore, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .arg("--store")
        .arg(store.url())
        .args(["--extra-experimental-features", FEATURES])
        .args(args)
        .env("NIX_PATH", "")
        .env("NIX_CONFIG", "sandbox = false\nsubstituters =")
        .output()
        .expect("run nix");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Fixed-output derivations of every mode and algorithm, with the hash written in
/// every encoding Nix accepts.
fn fixed_output_cases() -> String {
    let mut s = String::new();
    for mode in ["flat", "recursive"] {
        for algo in HashAlgo::ALL {
            let h = algo.digest(format!("{mode} {algo}"));
            let forms = [
                ("base16", h.encode(Encoding::Base16), true),
                ("nix32", h.encode(Encoding::Nix32), true),
                ("base64", h.encode(Encoding::Base64), true),
                ("sri", h.to_sri(), false),
                ("prefixed", h.to_typed_string(Encoding::Nix32), false),
            ];
            for (enc, hash, with_algo) in forms {
                let algo_attr = if with_algo {
                    format!("outputHashAlgo = \"{algo}\";")
                } else {
                    String::new()
                };
                s += &format!(
                    "  fod-{mode}-{algo}-{enc} = derivation (common // {{ name = \"fod-{mode}-{algo}\"; \
                     outputHashMode = \"{mode}\"; {algo_attr} outputHash = \"{hash}\"; }});\n"
                );
            }
        }
    }
    s
}

/// The corpus: one attribute set, every attribute a derivation.
fn corpus() -> Vec<u8> {
    let mut s = r#"
let
  common = { system = "x86_64-linux"; builder = "/bin/sh"; };
  mk = attrs: derivation (common // attrs);
  base = mk { name = "base"; outputs = [ "out" "dev" "lib" ]; };
  left = mk { name = "left"; dep = base.dev; };
  right = mk { name = "right"; dep = base; lib = base.lib; };
  chain1 = mk { name = "chain1"; };
  chain2 = mk { name = "chain2"; prev = chain1; };
  chain3 = mk { name = "chain3"; prev = chain2; args = [ "-c" "${chain2}/bin/x" ]; };
  fetched = mk {
    name = "fetched"; outputHashMode = "recursive"; outputHashAlgo = "sha256";
    outputHash = "sha256-iUUXyRY8iW7DGirb0zwGgf1fRbLA7wimTJKgP7l/OQ8="; tool = chain1;
  };
  ca = mk { name = "ca"; __contentAddressed = true; outputHashMode = "recursive";
            outputHashAlgo = "sha256"; outputs = [ "out" "bin" ]; };
  impure = mk { name = "impure"; __impure = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; };
  text = builtins.toFile "script.sh" "echo hello\n";
in {
  simple = mk { name = "simple"; };
  special-name = mk { name = "a+b_c?d=e.f-1.0"; };
  multi = mk { name = "multi"; outputs = [ "out" "dev" "lib" "doc-1" ]; };
  diamond = mk { name = "diamond"; l = left; r = right; b = base.out; };
  chain = chain3;
  on-fixed = mk { name = "on-fixed"; src = fetched; };
  fixed-on-ia = fetched;
  builder-from-store = derivation { name = "bfs"; system = "x86_64-linux"; builder = "${chain1}/bin/sh"; };
  sources = mk {
    name = "sources";
    src = ./data.txt;
    dir = builtins.path { path = ./dir; name = "my-dir"; };
    script = text;
    ref = builtins.toFile "ref" "see ${text} and ${./data.txt}";
    args = [ ./data.txt text ];
  };
  escapes = mk {
    name = "escapes";
    args = [ "-c" "echo \"quoted\" \\ back\nnew\ttab\rcr" "" ];
    quote = "\"";
    backslash = "\\";
    newline = "a\nb\n";
    "weird \"key\"\n" = "v";
    dollar = "\${x} $out";
    unicode = "räksmörgås 肥猪 こんにちは 🌮";
    control = builtins.fromJSON "\"\\u0001\\u0002\\b\\f\\u001b\\u001f\\u007f\\u0080\"";
    empty = "";
    long = builtins.concatStringsSep "\n" (builtins.genList (i: "line ${toString i} \"q\"") 5000);
    latin1 = "LATIN1";
  };
  structured = mk {
    name = "structured";
    __structuredAttrs = true;
    outputs = [ "out" "dev" ];
    list = [ 1 "two" true null 1.5 ];
    nested = { a.b.c = [ { x = "y\n\"z\""; } ]; "k e y" = -3; };
    dep = chain1;
  };
  ca-floating = ca;
  on-ca = mk { name = "on-ca"; dep = ca.bin; other = chain1; };
  on-on-ca = mk { name = "on-on-ca"; dep = (mk { name = "mid"; x = ca; }); };
  impure = impure;
  on-impure = mk { name = "on-impure"; dep = impure; };
"#
    .as_bytes()
    .to_vec();
    s.extend_from_slice(fixed_output_cases().as_bytes());
    s.extend_from_slice(b"}\n");
    // A Latin-1 string (bytes C5 C4 D6, not UTF-8) straight from the source file.
    let at = s.windows(6).position(|w| w == b"LATIN1").unwrap();
    s.splice(at..at + 6, [0xC5, 0xC4, 0xD6]);
    s
}

/// Asserts byte equality, reporting the first difference with some context
/// (the texts compared here are long).
fn assert_same(ours: &[u8], nix: &[u8], what: &str) {
    if ours == nix {
        return;
    }
    let at = ours.iter().zip(nix).take_while(|(a, b)| a == b).count();
    let window = |b: &[u8]| {
        let start = at.saturating_sub(80);
        String::from_utf8_lossy(&b[start..(at + 80).min(b.len())]).into_owned()
    };
    panic!(
        "{what}: rix and Nix differ at byte {at} (lengths {} and {})\n rix: {:?}\n nix: {:?}",
        ours.len(),
        nix.len(),
        window(ours),
        window(nix)
    );
}

fn read_drv(dir: &StoreDir, p: &StorePath) -> Result<Derivation, LookupError> {
    let bytes = fs::read(dir.display(p))?;
    Ok(Derivation::from_aterm_at(&bytes, dir, p)?)
}

#[test]
fn derivations_match_nix() {
    let (Some(instantiate), Some(nix_cmd)) = (nix("nix-instantiate"), nix("nix")) else {
        return;
    };
    let store = TempStore::new();
    let src = store.dir.path().join("src");
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::write(src.join("data.txt"), "some data\n").unwrap();
    fs::write(src.join("dir/sub/file"), "x").unwrap();
    fs::write(src.join("default.nix"), corpus()).unwrap();

    let out = run(
        &instantiate,
        &store,
        &[src.join("default.nix").to_str().unwrap()],
    );
    let tops: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(tops.len() > 50, "{tops:?}");

    let dir = StoreDir::new(store.store_dir().to_str().unwrap()).unwrap();
    let mut args = vec!["show-derivation", "-r"];
    args.extend(tops.iter().map(String::as_str));
    let nix_json = run(&nix_cmd, &store, &args);
    // Paths are ASCII: the keys can be read from the lossy text.
    let nix_value: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&nix_json)).unwrap();
    let paths: Vec<StorePath> = nix_value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| dir.parse(k).unwrap())
        .collect();
    assert!(paths.len() > tops.len());

    let mut hashes = DrvHashes::new(dir.clone(), |p: &StorePath| read_drv(&dir, p));
    let mut drvs: BTreeMap<StorePath, Derivation> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for path in &paths {
        let printed = dir.display(path);
        let bytes = fs::read(&printed).unwrap();
        let drv = Derivation::from_aterm_at(&bytes, &dir, path)
            .unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_same(&drv.to_aterm(&dir).unwrap(), &bytes, &printed);
        assert_eq!(drv.drv_path(&dir).unwrap(), *path, "{printed}");

        // Output paths recomputed from scratch agree with what Nix wrote.
        let computed = drv.output_paths(&dir, |p| hashes.get(p)).unwrap();
        let declared = drv.declared_output_paths(&dir).unwrap();
        assert_eq!(computed, declared, "{printed}");
        let problems = drv.check_outputs(&dir, |p| hashes.get(p)).unwrap();
        assert!(problems.is_empty(), "{printed}: {problems:?}");

        // As the evaluator: outputs deferred and variables empty, then filled in.
        let mut blank = drv.clone();
        for (name, out) in blank.outputs.iter_mut() {
            if matches!(out, DerivationOutput::InputAddressed { .. }) {
                *out = DerivationOutput::Deferred;
            }
            if let Some(v) = blank.env.get_mut(name.as_bytes()) {
                if matches!(out, DerivationOutput::Deferred) {
                    v.clear();
                }
            }
        }
        blank.fill_in_output_paths(&dir, |p| hashes.get(p)).unwrap();
        assert_eq!(blank, drv, "{printed}");

        // Per-derivation JSON, as a value (where it is valid UTF-8).
        if let Some(v) = nix_value.get(&printed) {
            if std::str::from_utf8(&bytes).is_ok() {
                assert_eq!(&drv.to_json_value(&dir).unwrap(), v, "{printed}");
                let back = Derivation::from_json(v, &dir, Some(&drv.name)).unwrap();
                assert_eq!(back, drv, "{printed}");
            }
        }

        let kind = match drv.derivation_type().unwrap() {
            DerivationType::ContentAddressed { fixed: true } => "fixed",
            DerivationType::ContentAddressed { fixed: false } => "floating",
            DerivationType::Impure => "impure",
            DerivationType::InputAddressed { deferred: false } => "input-addressed",
            DerivationType::InputAddressed { deferred: true } => {
                assert_eq!(hashes.get(path).unwrap().kind, DrvHashKind::Deferred);
                "deferred"
            }
        };
        *kinds.entry(kind).or_default() += 1;
        drvs.insert(path.clone(), drv);
    }
    eprintln!("checked {} derivations: {kinds:?}", drvs.len());
    for kind in ["fixed", "impure", "input-addressed", "deferred", "floating"] {
        assert!(
            kinds.contains_key(kind),
            "no {kind} derivation in {kinds:?}"
        );
    }

    // The whole `nix show-derivation -r` output, byte for byte.
    let entries: Vec<(&StorePath, &Derivation)> = drvs.iter().collect();
    let ours = show_derivations(&dir, &entries).unwrap();
    assert_same(&ours, &nix_json, "nix show-derivation -r");
}

/// What rix should make of a hand-written `.drv`, relative to Nix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Same verdict as Nix (and, when accepted, the same JSON).
    Agree,
    /// Nix 2.8 accepts it (silently dropping or normalising something); rix refuses.
    Stricter,
}

/// Hand-written `.drv` files, `@S@` standing for the store directory and `@F@` for
/// the correct path of the fixed output in the `fixed-*` cases.
fn edge_cases() -> Vec<(&'static str, Expect, Vec<u8>)> {
    use Expect::*;
    let fod = |path: &str, hash: &str| {
        format!(
            r#"Derive([("out","{path}","r:sha256","{hash}")],[],[],"x","y",[],[("out","@F@")])"#
        )
    };
    let hex = "894517c9163c896ec31a2adbd33c0681fd5f45b2c0ef08a64c92a03fb97f390f";
    let nix32 = rix_formats::Hash::parse_any(&format!("sha256:{hex}"), None)
        .unwrap()
        .to_nix32();
    let p1 = "@S@/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep1";
    let p2 = "@S@/00bgd045z0d4icpbc2yyz4gx48ak44la-dep2";
    let mut cases: Vec<(&str, Expect, String)> = vec![
        ("canonical", Agree, r#"Derive([("out","","","")],[],[],"x","y",["a"],[("name","canonical"),("out","")])"#.into()),
        ("unsorted", Agree, format!(r#"Derive([("out","","",""),("dev","","","")],[],["{p1}","{p2}"],"x","y",[],[("z",""),("a","")])"#)),
        ("escapes", Agree, "Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"a\\q\\\\\\\"\n\t\r\",[\"\\n\"],[(\"k\\ey\",\"v\\r\")])".into()),
        ("floating", Agree, r#"Derive([("out","","r:sha256",""),("lib","","r:sha256","")],[],[],"x","y",[],[])"#.into()),
        ("impure", Agree, r#"Derive([("out","","sha512","impure")],[],[],"x","y",[],[])"#.into()),
        ("fixed-ok", Agree, fod("@F@", hex)),
        ("fixed-nix32", Agree, fod("@F@", &nix32)),
        ("no-outputs", Agree, r#"Derive([],[],[],"x","y",[],[])"#.into()),
        ("truncated", Agree, r#"Derive([("out","","","")],[],[],"x","y",[],[("name","n")"#.into()),
        ("version", Agree, r#"DrvWithVersion("xp-dyn-drv",[("out","","","")],[],[],"x","y",[],[])"#.into()),
        ("bad-algo", Agree, r#"Derive([("out","","md7","")],[],[],"x","y",[],[])"#.into()),
        ("other-store", Agree, r#"Derive([("out","/elsewhere/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x","","")],[],[],"x","y",[],[])"#.into()),
        ("fixed-wrong-env", Agree, fod("@F@", hex).replace(r#"("out","@F@")"#, &format!(r#"("out","{p1}")"#))),
        ("two-fixed", Agree, format!(r#"Derive([("a","","r:sha256","{hex}"),("out","@F@","r:sha256","{hex}")],[],[],"x","y",[],[])"#)),
        ("dup-env", Stricter, r#"Derive([("out","","","")],[],[],"x","y",[],[("a","1"),("a","2")])"#.into()),
        ("dup-output", Stricter, r#"Derive([("out","","",""),("out","","r:sha256","")],[],[],"x","y",[],[])"#.into()),
        ("dup-src", Stricter, format!(r#"Derive([("out","","","")],[],["{p1}","{p1}"],"x","y",[],[])"#)),
        ("sloppy-commas", Stricter, r#"Derive([("out","","","")],[],[],"x","y",[,"a""b"],[])"#.into()),
        ("trailing", Stricter, r#"Derive([("out","","","")],[],[],"x","y",[],[])garbage"#.into()),
        ("system-escape", Stricter, r#"Derive([("out","","","")],[],[],"x\"y","y",[],[])"#.into()),
        ("empty-output-name", Stricter, r#"Derive([("","","","")],[],[],"x","y",[],[])"#.into()),
        ("hash-without-algo", Stricter, r#"Derive([("out","","","abc")],[],[],"x","y",[],[])"#.into()),
        ("fixed-wrong-path", Stricter, fod(p2, hex)),
    ];
    let mut res: Vec<(&str, Expect, Vec<u8>)> = cases
        .drain(..)
        .map(|(n, e, s)| (n, e, s.into_bytes()))
        .collect();
    let raw = b"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"y\",[],[(\"k\",\"\x01\x1f\x7f\xc5\xff\")])";
    res.push(("raw-bytes", Expect::Agree, raw.to_vec()));
    res
}

/// Runs a Nix tool, returning stdout, or stderr as the error.
fn try_run(tool: &Path, store: &TempStore, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new(tool)
        .arg("--store")
        .arg(store.url())
        .args(["--extra-experimental-features", FEATURES])
        .args(args)
        .env("NIX_PATH", "")
        .env("NIX_CONFIG", "sandbox = false\nsubstituters =")
        .output()
        .expect("run nix");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// rix's counterpart of `nix-store --add x.drv`: parse, then check the outputs.
fn rix_add(bytes: &[u8], dir: &StoreDir, name: &str) -> Result<Derivation, String> {
    let drv = Derivation::from_aterm(bytes, dir, Some(name)).map_err(|e| e.to_string())?;
    let no_inputs = |_: &StorePath| Err::<rix_formats::derivation::DrvHash, _>("no inputs");
    let problems = drv
        .check_outputs(dir, no_inputs)
        .map_err(|e| e.to_string())?;
    match problems.first() {
        Some(p) => Err(p.to_string()),
        None => Ok(drv),
    }
}

#[test]
fn parse_acceptance_matches_nix() {
    let (Some(nix_store), Some(nix_cmd)) = (nix("nix-store"), nix("nix")) else {
        return;
    };
    let store = TempStore::new();
    let dir = StoreDir::new(store.store_dir().to_str().unwrap()).unwrap();
    let files = store.dir.path().join("edge");
    fs::create_dir_all(&files).unwrap();

    let mut accepted: Vec<(StorePath, Derivation)> = Vec::new();
    for (name, expect, template) in edge_cases() {
        let fixed = rix_formats::derivation::fixed_output_path(
            &dir,
            name,
            "out",
            rix_formats::derivation::CaMethod::Recursive,
            &rix_formats::Hash::parse_any(
                "sha256:894517c9163c896ec31a2adbd33c0681fd5f45b2c0ef08a64c92a03fb97f390f",
                None,
            )
            .unwrap(),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&template).into_owned();
        let bytes = if text.contains('@') {
            text.replace("@S@", dir.as_str())
                .replace("@F@", &dir.display(&fixed))
                .into_bytes()
        } else {
            template
        };
        let file = files.join(format!("{name}.drv"));
        fs::write(&file, &bytes).unwrap();

        let nix = try_run(&nix_store, &store, &["--add", file.to_str().unwrap()]).and_then(|out| {
            let path = String::from_utf8(out).unwrap().trim().to_owned();
            try_run(&nix_cmd, &store, &["show-derivation", &path]).map(|_| path)
        });
        let rix = rix_add(&bytes, &dir, name);
        match (&nix, &rix, expect) {
            (Ok(path), Ok(drv), Expect::Agree) => {
                let path = dir.parse(path).unwrap();
                accepted.push((path, drv.clone()));
            }
            (Err(_), Err(_), Expect::Agree) | (Ok(_), Err(_), Expect::Stricter) => {}
            _ => panic!("{name}: Nix says {nix:?}, rix says {rix:?}, expected {expect:?}"),
        }
    }
    assert_eq!(accepted.len(), 8, "{accepted:?}");

    // Whatever both accept, both show alike (normalised: sorted, base16 hashes).
    let mut args = vec!["show-derivation"];
    let printed: Vec<String> = accepted.iter().map(|(p, _)| dir.display(p)).collect();
    args.extend(printed.iter().map(String::as_str));
    let nix_json = run(&nix_cmd, &store, &args);
    let entries: Vec<(&StorePath, &Derivation)> = accepted.iter().map(|(p, d)| (p, d)).collect();
    assert_same(
        &show_derivations(&dir, &entries).unwrap(),
        &nix_json,
        "edge cases",
    );
}
