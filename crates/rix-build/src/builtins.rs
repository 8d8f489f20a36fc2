//! Builders built into rix (`builder = "builtin:NAME"`, `system =
//! "builtin"`), Nix's `libstore/builtins/`: `builtin:fetchurl`, what
//! `<nix/fetchurl.nix>` and nixpkgs' bootstrap tools use. It runs in rix's
//! own process (a thread of the build), writing the output at the path the
//! build gives it; the normal output checks follow (a fixed-output hash is
//! checked by [`crate::builder`] as for any builder). Nix runs it in a
//! forked child, inside the sandbox when there is one; here it needs none:
//! it runs no code of the derivation and writes only its output.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rix_formats::derivation::{CaMethod, Derivation, DerivationOutput};
use rix_substitute::download::{self, Request};

/// The settings `builtin:fetchurl` reads (Nix's names).
#[derive(Debug, Clone)]
pub struct FetchurlSettings {
    /// `netrc-file`: credentials for the download.
    pub netrc_file: Option<PathBuf>,
    /// `hashed-mirrors`: tried first for flat fixed-output downloads, as
    /// `MIRROR/ALGO/BASE16-HASH`.
    pub hashed_mirrors: Vec<String>,
    /// `download-attempts`.
    pub download_attempts: u32,
    /// `connect-timeout` (0: the client's default).
    pub connect_timeout: u64,
}

impl Default for FetchurlSettings {
    fn default() -> Self {
        FetchurlSettings {
            netrc_file: None,
            hashed_mirrors: Vec::new(),
            download_attempts: 5,
            connect_timeout: 0,
        }
    }
}

/// The builtin a derivation names (`fetchurl` for `builtin:fetchurl`).
pub fn builtin_name(drv: &Derivation) -> Option<&str> {
    drv.builder
        .strip_prefix(b"builtin:")
        .and_then(|n| std::str::from_utf8(n).ok())
}

/// Runs builtin `name` for `drv` whose outputs go to `outputs` (name → real
/// path); `real` maps a store path as printed to where its files are. The
/// error is the text the builder prints (Nix's rendering).
pub fn run(
    name: &str,
    drv: &Derivation,
    outputs: &std::collections::BTreeMap<String, PathBuf>,
    settings: &FetchurlSettings,
    real: &dyn Fn(&str) -> PathBuf,
) -> Result<(), String> {
    match name {
        "fetchurl" => fetchurl(drv, outputs, settings),
        "buildenv" => buildenv(drv, outputs, real),
        other => Err(format!("error: unsupported builtin builder '{other}'")),
    }
}

/// `builtin:buildenv` (Nix's `builtinBuildenv`, what `nix-env`'s
/// `buildenv.nix` builds a user environment with): `derivations` is a list
/// of `ACTIVE PRIORITY N PATH1 … PATHN` groups; the output is their user
/// environment ([`rix_store::buildenv::build_profile`]) with `manifest.nix`
/// linking to `manifest`.
pub fn buildenv(
    drv: &Derivation,
    outputs: &std::collections::BTreeMap<String, PathBuf>,
    real: &dyn Fn(&str) -> PathBuf,
) -> Result<(), String> {
    use rix_store::buildenv::{build_profile, Package};
    let attr = |name: &str| -> Result<String, String> {
        env(drv, name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| render(&format!("attribute '{name}' missing"), None))
    };
    let Some(out) = outputs.get("out") else {
        return Err(render("builtin:buildenv needs an output 'out'", None));
    };
    std::fs::create_dir_all(out).map_err(|e| {
        render(
            &format!("creating directory '{}': {e}", out.display()),
            None,
        )
    })?;
    let derivations = attr("derivations")?;
    let mut tokens = derivations
        .split([' ', '\t', '\n', '\r'])
        .filter(|t| !t.is_empty());
    let mut pkgs = Vec::new();
    let bad = || render("builtin:buildenv: malformed attribute 'derivations'", None);
    while let Some(active) = tokens.next() {
        let active = active != "false";
        let priority: i64 = tokens.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let n: usize = tokens.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        for _ in 0..n {
            let path = tokens.next().ok_or_else(bad)?;
            pkgs.push(Package {
                path: path.to_owned(),
                active,
                priority,
            });
        }
    }
    let mut warnings = Vec::new();
    let mut dest = rix_store::buildenv::FsDest { root: out.clone() };
    build_profile(&mut dest, pkgs, real, &mut |w| warnings.push(w))
        .map_err(|e| render(&e.to_string(), None))?;
    let manifest = attr("manifest")?;
    std::os::unix::fs::symlink(&manifest, out.join("manifest.nix"))
        .map_err(|e| render(&format!("creating symlink to '{manifest}': {e}"), None))
}

fn env<'a>(drv: &'a Derivation, name: &str) -> Option<&'a [u8]> {
    drv.env_var(name)
}

/// An error as Nix renders it in a builder's log: `error: MESSAGE`, later
/// lines indented; with a `… TRACE` frame first when given.
fn render(msg: &str, trace: Option<String>) -> String {
    let indent = |s: &str| -> String {
        s.split('\n')
            .enumerate()
            .map(|(i, l)| {
                if i == 0 || l.is_empty() {
                    l.to_owned()
                } else {
                    format!("       {l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    match trace {
        Some(t) => format!("error:\n       … {t}\n\n       error: {}", indent(msg)),
        None => format!("error: {}", indent(msg)),
    }
}

/// Nix's `builtinFetchurl`: downloads `url` (after the hashed mirrors) into
/// the output; `unpack = "1"`: the download is a NAR (xz-compressed when the
/// URL ends in `.xz`) restored there; `executable = "1"`: mode 0755.
pub fn fetchurl(
    drv: &Derivation,
    outputs: &std::collections::BTreeMap<String, PathBuf>,
    settings: &FetchurlSettings,
) -> Result<(), String> {
    let Some(out_path) = outputs.get("out") else {
        return Err(render("'builtin:fetchurl' requires an 'out' output", None));
    };
    let out_decl = drv.outputs.get("out");
    let fixed = matches!(out_decl, Some(DerivationOutput::CAFixed { .. }));
    let impure = matches!(out_decl, Some(DerivationOutput::Impure { .. }));
    if !(fixed || impure) {
        return Err(render(
            "'builtin:fetchurl' must be a fixed-output or impure derivation",
            None,
        ));
    }
    let main_url = match env(drv, "url") {
        Some(u) => String::from_utf8_lossy(u).into_owned(),
        None => return Err(render("attribute 'url' missing", None)),
    };
    let unpack = env(drv, "unpack") == Some(b"1".as_slice());
    let executable = env(drv, "executable") == Some(b"1".as_slice());

    let fetch = |url: &str| -> Result<(), String> {
        let req = Request {
            url,
            netrc_file: settings.netrc_file.as_deref(),
            connect_timeout: (settings.connect_timeout > 0)
                .then(|| Duration::from_secs(settings.connect_timeout)),
            attempts: settings.download_attempts,
            ..Request::default()
        };
        if unpack {
            let xz = main_url.ends_with(".xz");
            fetch_nar(&req, out_path, xz).map_err(|m| render(&m, None))?;
        } else {
            let mut file = std::fs::File::create(out_path).map_err(|e| {
                render(
                    &format!("creating file '{}': {e}", out_path.display()),
                    None,
                )
            })?;
            download::download(&req, &mut file)
                .map_err(|e| e.message)
                .and_then(|_| file.flush().map_err(|e| e.to_string()))
                .map_err(|m| render(&m, Some(format!("writing file '{}'", out_path.display()))))?;
        }
        if executable {
            std::fs::set_permissions(out_path, std::fs::Permissions::from_mode(0o755)).map_err(
                |e| {
                    render(
                        &format!("making '{}' executable: {e}", out_path.display()),
                        None,
                    )
                },
            )?;
        }
        Ok(())
    };

    // The hashed mirrors first, for flat fixed outputs.
    if let Some(DerivationOutput::CAFixed {
        method: CaMethod::Flat,
        hash,
    }) = out_decl
    {
        for mirror in &settings.hashed_mirrors {
            let mut m = mirror.clone();
            if !m.ends_with('/') {
                m.push('/');
            }
            let url = format!("{m}{}/{}", hash.algo(), hash.to_base16());
            if fetch(&url).is_ok() {
                return Ok(());
            }
            let _ = rix_store::canonicalise::delete_path(out_path);
        }
    }
    fetch(&main_url)
}

/// Downloads a NAR and restores it at `out` (decompressing xz first).
fn fetch_nar(req: &Request<'_>, out: &Path, xz: bool) -> Result<(), String> {
    let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        let restorer = s.spawn(move || {
            let input: Box<dyn std::io::Read + Send> = if xz {
                Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader))
            } else {
                Box::new(reader)
            };
            rix_store::archive::restore(input, out).map_err(|e| e.to_string())
        });
        let mut writer = writer;
        let downloaded = download::download(req, &mut writer);
        drop(writer);
        let restored = restorer
            .join()
            .unwrap_or_else(|_| Err("the NAR reader panicked".into()));
        match (downloaded, restored) {
            (Err(e), _) if e.kind != download::ErrorKind::Sink => Err(e.message),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e.message),
            (Ok(_), Ok(())) => Ok(()),
        }
    })
}
