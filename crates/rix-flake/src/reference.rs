//! Flake references on this machine: parsing with a base directory (a
//! relative path, `.`, a directory inside a Git work tree, which Nix turns
//! into a `git+file` reference), the `#fragment` and `^outputs` of an
//! installable, and the bridge from a [`FlakeRef`] to a fetcher [`Input`].
//! Mirrors `flakeref.cc` (`parseFlakeRefWithFragment`,
//! `parsePathFlakeRefWithFragment`); the pure URL grammar is
//! `rix_formats::flake_ref`'s.

use std::path::Path;

use rix_fetch::Input;
use rix_formats::flake_ref::{self, AttrValue, FlakeRef, InputType};

use crate::error::{FlakeError, Result};

/// The fetcher input of a reference (`FlakeRef::input`).
pub fn to_input(r: &FlakeRef) -> Result<Input> {
    let ty = r.input_type.ok_or_else(|| {
        FlakeError::msg(format!(
            "cannot fetch unsupported input '{}'",
            rix_fetch::input::attrs_to_json(&r.attrs)
        ))
    })?;
    Ok(Input {
        ty,
        attrs: r.attrs.clone(),
    })
}

/// The reference of a fetched input, with the subdirectory of `like`.
pub fn from_input(input: Input, dir: &str) -> FlakeRef {
    FlakeRef {
        input_type: Some(input.ty),
        attrs: input.attrs,
        dir: dir.to_owned(),
    }
}

/// A relative `path:` reference's path (`Input::isRelative`).
pub fn relative_path(r: &FlakeRef) -> Option<&str> {
    if r.input_type != Some(InputType::Path) {
        return None;
    }
    match r.attrs.get("path") {
        Some(AttrValue::Str(p)) if !p.starts_with('/') => Some(p),
        _ => None,
    }
}

/// The URL form (`FlakeRef::to_string`).
pub fn to_string(r: &FlakeRef) -> String {
    r.to_string()
}

/// Whether the input is a registry name (`flake:nixpkgs`).
pub fn is_indirect(r: &FlakeRef) -> bool {
    r.input_type == Some(InputType::Indirect)
}

/// `canonPath`: `.`, `..` and repeated slashes removed, lexically.
pub fn canon_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `absPath(path, base)`.
pub fn abs_path(path: &str, base: &str) -> String {
    if path.starts_with('/') {
        canon_path(path)
    } else {
        canon_path(&format!("{base}/{path}"))
    }
}

/// How a reference is parsed (the flags of `parseFlakeRefWithFragment`).
#[derive(Clone, Copy)]
pub struct ParseOptions<'a> {
    /// Relative paths are taken against this directory, and a local path is
    /// searched upwards for its `flake.nix` and Git repository.
    pub base_dir: Option<&'a str>,
    /// A path need not contain a `flake.nix` (`nix flake init`, `archive`).
    pub allow_missing: bool,
    /// The reference names a flake (`inputs.x.flake` is not `false`).
    pub is_flake: bool,
    /// Without a base directory, a relative path stays relative (inputs).
    pub preserve_relative: bool,
}

impl Default for ParseOptions<'_> {
    fn default() -> Self {
        ParseOptions {
            base_dir: None,
            allow_missing: false,
            is_flake: true,
            preserve_relative: false,
        }
    }
}

/// `parseFlakeRefWithFragment`: the reference and the `#fragment`.
pub fn parse_with_fragment(url: &str, opts: ParseOptions<'_>) -> Result<(FlakeRef, String)> {
    let abs = opts.base_dir.map(|b| move |p: &str| abs_path(p, b));
    let abs_dyn: Option<&dyn Fn(&str) -> String> = abs.as_ref().map(|f| f as _);
    if let Some(r) = flake_ref::parse_id_or_url(url, abs_dyn)? {
        return Ok(r);
    }
    parse_path(url, opts)
}

/// `parseFlakeRef`: a reference without a fragment.
pub fn parse(url: &str, opts: ParseOptions<'_>) -> Result<FlakeRef> {
    let (r, fragment) = parse_with_fragment(url, opts)?;
    if !fragment.is_empty() {
        return Err(FlakeError::msg(format!(
            "unexpected fragment '{fragment}' in flake reference '{url}'"
        )));
    }
    Ok(r)
}

/// `parsePathFlakeRefWithFragment`.
fn parse_path(url: &str, opts: ParseOptions<'_>) -> Result<(FlakeRef, String)> {
    let (mut path, mut query, fragment) = flake_ref::split_path_ref(url)?;
    if let Some(base) = opts.base_dir {
        path = abs_path(&path, base);
        if opts.is_flake {
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| FlakeError::msg(format!("getting status of '{path}': {e}")))?;
            if !meta.is_dir() {
                if path.rsplit('/').next() == Some("flake.nix") {
                    let dir = parent(&path);
                    warn(&format!(
                        "Path '{path}' should point at the directory containing the 'flake.nix' file, not the file itself. Pretending that you meant '{dir}'"
                    ));
                    path = dir;
                } else {
                    return Err(FlakeError::msg(format!(
                        "path '{path}' is not a flake (because it's not a directory)"
                    )));
                }
            }
            if !opts.allow_missing && !exists(&format!("{path}/flake.nix")) {
                eprintln!("path '{path}' does not contain a 'flake.nix', searching up");
                let device = dev(&path);
                let mut found = false;
                while path != "/" {
                    if exists(&format!("{path}/flake.nix")) {
                        found = true;
                        break;
                    } else if exists(&format!("{path}/.git")) {
                        return Err(FlakeError::msg(format!(
                            "path '{path}' is not part of a flake (neither it nor its parent directories contain a 'flake.nix' file)"
                        )));
                    } else if dev(&path) != device {
                        return Err(FlakeError::msg(format!(
                            "unable to find a flake before encountering filesystem boundary at '{path}'"
                        )));
                    }
                    path = parent(&path);
                }
                if !found {
                    return Err(FlakeError::msg("could not find a flake.nix file"));
                }
            }
            if !opts.allow_missing && !exists(&format!("{path}/flake.nix")) {
                return Err(FlakeError::msg(format!(
                    "path '{path}' is not a flake (because it doesn't contain a 'flake.nix' file)"
                )));
            }
            // A flake inside a Git work tree is that repository's.
            let mut root = path.clone();
            let mut subdir = String::new();
            while root != "/" {
                if exists(&format!("{root}/.git")) {
                    if !subdir.is_empty() {
                        if query.contains_key("dir") {
                            return Err(FlakeError::msg(format!(
                                "flake URL '{url}' has an inconsistent 'dir' parameter"
                            )));
                        }
                        query.insert("dir".into(), subdir);
                    }
                    if exists(&format!("{root}/.git/shallow")) {
                        query.insert("shallow".into(), "1".into());
                    }
                    return Ok(flake_ref::from_local_path(
                        "git+file", &root, query, fragment,
                    )?);
                }
                let base = root.rsplit('/').next().unwrap_or_default().to_owned();
                subdir = if subdir.is_empty() {
                    base
                } else {
                    format!("{base}/{subdir}")
                };
                root = parent(&root);
            }
        }
    } else if !opts.preserve_relative && !path.starts_with('/') {
        return Err(FlakeError::msg(format!(
            "flake reference '{url}' is not an absolute path"
        )));
    }
    Ok(flake_ref::from_local_path("path", &path, query, fragment)?)
}

fn exists(p: &str) -> bool {
    Path::new(p).symlink_metadata().is_ok()
}

fn dev(p: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).map_or(0, |m| m.dev())
}

/// `dirOf`.
pub fn parent(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_owned(),
    }
}

/// Prints a warning as Nix's logger does.
pub fn warn(msg: &str) {
    rix_eval::error::log_stderr(&format!("\x1b[35;1mwarning:\x1b[0m {msg}"));
}

/// The outputs an installable asks for (`ExtendedOutputsSpec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputsSpec {
    /// No `^`: the derivation's default outputs.
    Default,
    /// `^*`.
    All,
    /// `^out,dev`.
    Names(Vec<String>),
}

/// An installable `FLAKEREF[#ATTRPATH][^OUTPUTS]`.
#[derive(Clone, Debug)]
pub struct FlakeInstallable {
    pub flake_ref: FlakeRef,
    pub fragment: String,
    pub outputs: OutputsSpec,
}

/// `parseFlakeRefWithFragmentAndExtendedOutputsSpec` against `base_dir`.
pub fn parse_installable(s: &str, base_dir: &str) -> Result<FlakeInstallable> {
    let (prefix, outputs) = match s.rsplit_once('^') {
        Some((p, "*")) => (p, OutputsSpec::All),
        Some((p, outs)) if !outs.is_empty() && !outs.contains('/') => (
            p,
            OutputsSpec::Names(outs.split(',').map(str::to_owned).collect()),
        ),
        _ => (s, OutputsSpec::Default),
    };
    let (flake_ref, fragment) = parse_with_fragment(
        prefix,
        ParseOptions {
            base_dir: Some(base_dir),
            ..ParseOptions::default()
        },
    )?;
    Ok(FlakeInstallable {
        flake_ref,
        fragment,
        outputs,
    })
}

/// Whether a command-line argument is a flake installable rather than a
/// file or store path: it has a `#`, a flake URL scheme, or names a
/// directory with a `flake.nix`.
pub fn looks_like_flake_installable(s: &str) -> bool {
    if s.contains('#') {
        return true;
    }
    const SCHEMES: &[&str] = &[
        "path:",
        "git+",
        "github:",
        "gitlab:",
        "sourcehut:",
        "tarball+",
        "file+",
        "flake:",
        "hg+",
    ];
    if SCHEMES.iter().any(|p| s.starts_with(p)) {
        return true;
    }
    let p = Path::new(s.split('^').next().unwrap_or(s));
    p.is_dir() && p.join("flake.nix").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths() {
        assert_eq!(canon_path("/a/./b/../c//d/"), "/a/c/d");
        assert_eq!(abs_path("..", "/a/b"), "/a");
        assert_eq!(abs_path(".", "/"), "/");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
    }

    #[test]
    fn local_paths_and_git_work_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(tmp.path()).unwrap();
        let d = d.to_str().unwrap();
        std::fs::create_dir_all(format!("{d}/f/sub")).unwrap();
        std::fs::write(format!("{d}/f/flake.nix"), "{ outputs = _: {}; }").unwrap();
        let opts = ParseOptions {
            base_dir: Some(d),
            ..ParseOptions::default()
        };
        let (r, frag) = parse_with_fragment("./f#a.b", opts).unwrap();
        assert_eq!(r.to_string(), format!("path:{d}/f"));
        assert_eq!(frag, "a.b");
        // Searching up from a subdirectory finds the flake.
        let (r, _) = parse_with_fragment("./f/sub", opts).unwrap();
        assert_eq!(r.to_string(), format!("path:{d}/f"));
        std::fs::create_dir_all(format!("{d}/.git")).unwrap();
        let (r, _) = parse_with_fragment("./f", opts).unwrap();
        assert_eq!(r.to_string(), format!("git+file://{d}?dir=f"));
        let e = parse_with_fragment("./nothere", opts).unwrap_err();
        assert!(e.to_string().contains("getting status of"), "{e}");
        let i = parse_installable("./f#x^out,dev", d).unwrap();
        assert_eq!(i.fragment, "x");
        assert_eq!(
            i.outputs,
            OutputsSpec::Names(vec!["out".into(), "dev".into()])
        );
    }
}
