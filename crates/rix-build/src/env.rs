//! The builder's environment, exactly as Nix sets it up (`initEnv` and
//! `writeStructuredAttrs` in Nix's derivation builder), so that a builder cannot
//! tell rix from Nix.

use std::collections::BTreeMap;
use std::path::Path;

use rix_formats::derivation::Derivation;
use rix_formats::hash::HashAlgo;
use rix_formats::nixbase32;
use serde_json::Value;

/// The builders' `HOME`: a directory that exists nowhere (Nix's `homeDir`).
pub const HOME_DIR: &str = "/homeless-shelter";

/// Files to create in the build directory before starting the builder.
pub type BuildDirFiles = Vec<(String, Vec<u8>)>;

/// Inputs to environment construction that are not in the derivation itself.
pub struct EnvContext<'a> {
    pub store_dir: &'a str,
    /// The build directory as the builder sees it.
    pub build_dir: &'a Path,
    pub cores: usize,
    /// Output name → path, for structured attrs.
    pub outputs: &'a BTreeMap<String, String>,
    /// Values of the variables named in `impureEnvVars`, for fixed-output builds.
    pub impure: &'a dyn Fn(&str) -> Option<String>,
}

/// Builds the environment and the files (`.attr-*`, `.attrs.json`, `.attrs.sh`)
/// that go into the build directory.
pub fn builder_env(
    drv: &Derivation,
    ctx: &EnvContext<'_>,
) -> (BTreeMap<Vec<u8>, Vec<u8>>, BuildDirFiles) {
    let mut env: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut files = BuildDirFiles::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    };
    set("PATH", "/path-not-set");
    set("HOME", HOME_DIR);
    set("NIX_STORE", ctx.store_dir);
    set("NIX_BUILD_CORES", &ctx.cores.to_string());
    let top = ctx.build_dir.to_string_lossy();
    for var in ["NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"] {
        set(var, &top);
    }
    set("NIX_LOG_FD", "2");
    set("TERM", "xterm-256color");

    if let Some(json) = drv.env_var("__json") {
        let (json_text, sh_text) = structured_attrs(json, ctx.outputs);
        set("NIX_ATTRS_JSON_FILE", &format!("{top}/.attrs.json"));
        set("NIX_ATTRS_SH_FILE", &format!("{top}/.attrs.sh"));
        files.push((".attrs.json".into(), json_text.into_bytes()));
        files.push((".attrs.sh".into(), sh_text.into_bytes()));
    } else {
        let pass_as_file: Vec<&[u8]> = drv
            .env_var("passAsFile")
            .map(|v| {
                v.split(|b| b.is_ascii_whitespace())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for (k, v) in &drv.env {
            if pass_as_file.contains(&k.as_slice()) {
                let file = format!(
                    ".attr-{}",
                    nixbase32::encode(HashAlgo::Sha256.digest(k).digest())
                );
                let mut var = k.clone();
                var.extend_from_slice(b"Path");
                env.insert(var, format!("{top}/{file}").into_bytes());
                files.push((file, v.clone()));
            } else {
                env.insert(k.clone(), v.clone());
            }
        }
    }

    if drv
        .outputs
        .values()
        .any(|o| matches!(o, rix_formats::derivation::DerivationOutput::CAFixed { .. }))
    {
        let names = drv.env_var("impureEnvVars").unwrap_or_default();
        for name in String::from_utf8_lossy(names).split_whitespace() {
            if let Some(value) = (ctx.impure)(name) {
                env.insert(name.as_bytes().to_vec(), value.into_bytes());
            }
        }
    }
    (env, files)
}

/// `.attrs.json` (the `__json` attribute with `outputs` replaced by name → path)
/// and `.attrs.sh` (bash declarations of its simple values).
fn structured_attrs(json: &[u8], outputs: &BTreeMap<String, String>) -> (String, String) {
    let mut value: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        let outs = outputs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        map.insert("outputs".into(), Value::Object(outs));
        map.sort_keys();
    }
    let json_text = serde_json::to_string(&value).unwrap_or_default();
    let mut sh = String::new();
    if let Value::Object(map) = &value {
        for (k, v) in map {
            if let Some(line) = shell_declaration(k, v) {
                sh.push_str(&line);
                sh.push('\n');
            }
        }
    }
    (json_text, sh)
}

fn is_shell_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn shell_escape(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A scalar as `.attrs.sh` writes it, or `None` for values it cannot express.
fn simple(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(shell_escape(s)),
        Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
        Value::Null => Some("''".into()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0)
            .map(|f| (f as i64).to_string()),
        _ => None,
    }
}

fn shell_declaration(key: &str, v: &Value) -> Option<String> {
    if !is_shell_identifier(key) {
        return None;
    }
    match v {
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(simple).collect();
            let body: String = parts?.into_iter().map(|p| format!("{p} ")).collect();
            Some(format!("declare -a {key}=({body})"))
        }
        Value::Object(map) => {
            let parts: Option<Vec<String>> = map
                .iter()
                .map(|(k, v)| simple(v).map(|s| format!("[{}]={s} ", shell_escape(k))))
                .collect();
            Some(format!("declare -A {key}=({})", parts?.concat()))
        }
        scalar => simple(scalar).map(|s| format!("declare {key}={s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_as_file_name_matches_nix() {
        // Nix 2.8 named the file for attribute `big` this way (observed with nix-build).
        let name = nixbase32::encode(HashAlgo::Sha256.digest("big").digest());
        assert_eq!(name, "1lak0mvllw8rv9i9ygkglvhqsq19qi9ynl4bi7gbf69ab5nzw89a");
    }

    #[test]
    fn structured_attrs_like_nix() {
        // Input and expected output observed with Nix 2.8 (`__structuredAttrs = true`).
        let json = br#"{"builder":"/bin/sh","foo":true,"l":[1,"a"],"n":null,"name":"sa","outputs":["out","dev"],"s":{"x":1.5},"system":"x86_64-linux"}"#;
        let outputs = BTreeMap::from([
            (
                "dev".to_owned(),
                "/s/p9z1hjjwm1hhjd2pvh3hppaxk12ak48j-sa-dev".to_owned(),
            ),
            (
                "out".to_owned(),
                "/s/2lvgs3g2ag4pxrmycb8455hnkvg2awid-sa".to_owned(),
            ),
        ]);
        let (j, sh) = structured_attrs(json, &outputs);
        assert_eq!(
            j,
            r#"{"builder":"/bin/sh","foo":true,"l":[1,"a"],"n":null,"name":"sa","outputs":{"dev":"/s/p9z1hjjwm1hhjd2pvh3hppaxk12ak48j-sa-dev","out":"/s/2lvgs3g2ag4pxrmycb8455hnkvg2awid-sa"},"s":{"x":1.5},"system":"x86_64-linux"}"#
        );
        assert_eq!(
            sh,
            "declare builder='/bin/sh'\ndeclare foo=1\ndeclare -a l=(1 'a' )\ndeclare n=''\ndeclare name='sa'\n\
             declare -A outputs=(['dev']='/s/p9z1hjjwm1hhjd2pvh3hppaxk12ak48j-sa-dev' ['out']='/s/2lvgs3g2ag4pxrmycb8455hnkvg2awid-sa' )\n\
             declare system='x86_64-linux'\n"
        );
    }
}

/// The string `builtins.placeholder OUTPUT` evaluates to: `/` and the nix32
/// SHA-256 of `nix-output:OUTPUT`. Mirrors `hashPlaceholder`.
pub fn placeholder(output: &str) -> String {
    format!(
        "/{}",
        nixbase32::encode(
            HashAlgo::Sha256
                .digest(format!("nix-output:{output}"))
                .digest()
        )
    )
}

/// A copy of `drv` whose environment values and arguments have every output
/// placeholder replaced by that output's path, as Nix rewrites them before
/// starting the builder (`inputRewrites`).
pub fn substitute_placeholders(drv: &Derivation, outputs: &BTreeMap<String, String>) -> Derivation {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = outputs
        .iter()
        .map(|(name, path)| (placeholder(name).into_bytes(), path.as_bytes().to_vec()))
        .collect();
    let rewrite = |v: &[u8]| -> Vec<u8> {
        let mut out = v.to_vec();
        for (from, to) in &pairs {
            out = replace_all(&out, from, to);
        }
        out
    };
    let mut copy = drv.clone();
    for v in copy.env.values_mut() {
        *v = rewrite(v);
    }
    for a in copy.args.iter_mut() {
        *a = rewrite(a);
    }
    copy
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod placeholder_tests {
    use super::*;

    #[test]
    fn placeholder_matches_nix() {
        // `builtins.placeholder "out"` in Nix 2.8.
        assert_eq!(
            placeholder("out"),
            "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"
        );
    }
}
