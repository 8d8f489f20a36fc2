//! The bash script that recreates a captured environment: what `rix
//! print-dev-env` prints and what `rix develop` gives bash as its rc file.
//! Mirrors `Common::makeRcScript` and `fixupStructuredAttrs` in Nix's
//! `src/nix/develop.cc`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, Result};

use super::build_env::{BuildEnvironment, Var};

/// Variables of the build that are not the shell's: Nix's `ignoreVars`.
pub const IGNORE_VARS: &[&str] = &[
    "BASHOPTS",
    "HOME",
    "NIX_BUILD_TOP",
    "NIX_ENFORCE_PURITY",
    "NIX_LOG_FD",
    "NIX_REMOTE",
    "PPID",
    "SHELLOPTS",
    "SSL_CERT_FILE",
    "TEMP",
    "TEMPDIR",
    "TERM",
    "TMP",
    "TMPDIR",
    "TZ",
    "UID",
];

/// Colon-separated variables whose outer value is appended, not replaced,
/// to keep the shell usable (`savedVars`).
const SAVED_VARS: &[&str] = &["PATH", "XDG_DATA_DIRS"];

/// `--redirect INSTALLABLE OUTPUTS-DIR`: the store paths the installable
/// names, to be replaced by the directory in the script.
pub struct Redirect {
    /// The installable, as given.
    pub what: String,
    /// Its store paths, printed.
    pub paths: Vec<String>,
    /// The absolute directory they are replaced by.
    pub dir: String,
}

/// The rc script for `env`: outputs rewritten to `outputs_dir/<output>`,
/// `redirects` applied, structured attributes written into `tmp_dir`. `NIX_BUILD_TOP` is made
/// by the script with `mktemp`, as Nix's, or is `build_top` when given
/// (`rix develop` makes it itself: one process less to start).
pub fn make_rc_script(
    env: &BuildEnvironment,
    tmp_dir: &Path,
    outputs_dir: &Path,
    build_top: Option<&Path>,
    redirects: &[Redirect],
) -> Result<String> {
    let mut out = String::from("unset shellHook\n");
    for var in SAVED_VARS {
        out.push_str(&format!("{var}=${{{var}:-}}\n"));
        out.push_str(&format!("nix_saved_{var}=\"${var}\"\n"));
    }
    let ignore: BTreeSet<&str> = IGNORE_VARS.iter().copied().collect();
    env.to_bash(&mut out, &ignore);
    for var in SAVED_VARS {
        out.push_str(&format!(
            "{var}=\"${var}${{nix_saved_{var}:+:$nix_saved_{var}}}\"\n"
        ));
    }
    match build_top {
        None => out.push_str("export NIX_BUILD_TOP=\"$(mktemp -d -t nix-shell.XXXXXX)\"\n"),
        Some(dir) => out.push_str(&format!(
            "export NIX_BUILD_TOP={}\n",
            super::build_env::shell_escape(&dir.display().to_string())
        )),
    }
    for v in ["TMP", "TMPDIR", "TEMP", "TEMPDIR"] {
        out.push_str(&format!("export {v}=\"$NIX_BUILD_TOP\"\n"));
    }
    out.push_str("eval \"${shellHook:-}\"\n");

    // Output paths, substituted by writable directories.
    let outputs = env
        .vars
        .get("outputs")
        .context("the environment has no 'outputs' variable")?;
    let mut rewrites: BTreeMap<String, String> = BTreeMap::new();
    let to = |name: &str| outputs_dir.join(name).display().to_string();
    if env.structured_attrs.is_some() {
        let Var::Associative(m) = outputs else {
            anyhow::bail!("bash variable is not an associative array");
        };
        for (name, from) in m {
            rewrites.insert(from.clone(), to(name));
        }
    } else {
        for name in BuildEnvironment::strings(outputs) {
            let from = env
                .string(&name)?
                .with_context(|| format!("the environment has no variable for output '{name}'"))?;
            rewrites.insert(from.to_owned(), to(&name));
        }
    }
    for r in redirects {
        for from in &r.paths {
            if !out.contains(from.as_str()) {
                eprintln!(
                    "warning: '{}' (path '{from}') is not used by this build environment",
                    r.what
                );
            } else {
                eprintln!("redirecting '{from}' to '{}'", r.dir);
                rewrites
                    .entry(from.clone())
                    .or_insert_with(|| r.dir.clone());
            }
        }
    }
    if let Some((json, sh)) = &env.structured_attrs {
        fixup_structured_attrs(env, "sh", "NIX_ATTRS_SH_FILE", sh, tmp_dir, &mut rewrites)?;
        fixup_structured_attrs(
            env,
            "json",
            "NIX_ATTRS_JSON_FILE",
            json,
            tmp_dir,
            &mut rewrites,
        )?;
    }
    Ok(rewrite_strings(out, &rewrites))
}

/// Writes `.attrs.<ext>` into `tmp_dir` and points the variable naming the
/// builder's copy at it.
fn fixup_structured_attrs(
    env: &BuildEnvironment,
    ext: &str,
    var: &str,
    content: &str,
    tmp_dir: &Path,
    rewrites: &mut BTreeMap<String, String>,
) -> Result<()> {
    let target = tmp_dir.join(format!(".attrs.{ext}"));
    std::fs::write(&target, content)
        .with_context(|| format!("cannot write '{}'", target.display()))?;
    let from = env
        .string(var)?
        .with_context(|| format!("the environment has no '{var}'"))?;
    rewrites.insert(from.to_owned(), target.display().to_string());
    Ok(())
}

/// Replaces every occurrence of each key by its value, keys in order.
/// Mirrors `rewriteStrings`.
pub fn rewrite_strings(mut s: String, rewrites: &BTreeMap<String, String>) -> String {
    for (from, to) in rewrites {
        if from == to || from.is_empty() {
            continue;
        }
        s = s.replace(from.as_str(), to);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_redirected_and_path_kept() {
        let env = BuildEnvironment::from_json(
            r#"{"bashFunctions":{},"variables":{
                "outputs":{"type":"exported","value":"out dev"},
                "out":{"type":"exported","value":"/s/abc-x"},
                "dev":{"type":"exported","value":"/s/def-x-dev"},
                "HOME":{"type":"exported","value":"/homeless"},
                "PATH":{"type":"exported","value":"/s/p/bin"},
                "x":{"type":"var","value":"/s/abc-x/lib"}}}"#,
        )
        .unwrap();
        let rc = make_rc_script(
            &env,
            Path::new("/tmp"),
            Path::new("/w/outputs"),
            None,
            &[Redirect {
                what: "p".into(),
                paths: vec!["/s/p".into(), "/s/unused".into()],
                dir: "/w/p".into(),
            }],
        )
        .unwrap();
        assert!(rc.starts_with("unset shellHook\nPATH=${PATH:-}\nnix_saved_PATH=\"$PATH\"\n"));
        assert!(rc.contains("out='/w/outputs/out'\nexport out\n"));
        assert!(rc.contains("dev='/w/outputs/dev'\n"));
        assert!(rc.contains("x='/w/outputs/out/lib'\n"));
        assert!(!rc.contains("HOME="));
        assert!(rc.contains("PATH=\"$PATH${nix_saved_PATH:+:$nix_saved_PATH}\"\n"));
        assert!(rc.contains("PATH='/w/p/bin'\n"), "{rc}");
        assert!(rc.ends_with("eval \"${shellHook:-}\"\n"));
    }
}
