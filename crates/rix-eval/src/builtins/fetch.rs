//! `builtins.fetchurl` and `builtins.fetchTarball`: Nix 2.26's `fetch` in
//! `libexpr/primops/fetchTree.cc`. The argument is a URL or a set of `url`,
//! `sha256` and `name`; the name defaults to the URL's base name (`source`
//! for tarballs) and must be a valid store path name. With a SHA-256 whose
//! path is already valid nothing is fetched; otherwise `rix_fetch` downloads
//! (`downloadFile`: the file, flat) or unpacks (`downloadTarball`: the tree,
//! cached per `tarball-ttl` when unlocked) and the result is checked against
//! the hash (`hash mismatch in file downloaded from '…'`, exit status 102).
//! Pure evaluation requires the hash.

use std::rc::Rc;

use rix_fetch::input::Input;
use rix_formats::content_address::ContentAddress;
use rix_formats::flake_ref::{AttrValue, Attrs};
use rix_formats::store_path::FileIngestionMethod;
use rix_formats::{Hash, HashAlgo};

use super::fetch_tree::with_fetcher;
use super::{err, Registry};
use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::value::{Context, NixString, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("fetchurl", 1, |ev, a, pos| {
        fetch(ev, &a[0], pos, "fetchurl", false, "")
    });
    r.primop("fetchTarball", 1, |ev, a, pos| {
        fetch(ev, &a[0], pos, "fetchTarball", true, "source")
    });
}

/// Nix's `baseNameOf` (of a string): the last component, trailing slashes
/// ignored.
fn base_name_of(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "" } else { "/" };
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Nix 2.26's `checkName`, with its messages.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.len() > 211 {
        return Err(format!(
            "name '{name}' must be no longer than 211 characters"
        ));
    }
    let b = name.as_bytes();
    if b[0] == b'.' {
        if b.len() == 1 || (b[1] == b'.' && b.len() == 2) {
            return Err(format!("name '{name}' is not valid"));
        }
        if b[1] == b'-' {
            return Err(format!(
                "name '{name}' is not valid: first dash-separated component must not be '.'"
            ));
        }
        if b[1] == b'.' && b[2] == b'-' {
            return Err(format!(
                "name '{name}' is not valid: first dash-separated component must not be '..'"
            ));
        }
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(c)))
    {
        return Err(format!("name '{name}' contains illegal character '{c}'"));
    }
    Ok(())
}

/// `resolvePseudoUrl`: `channel:NAME` is the channel's expressions.
fn resolve_pseudo_url(url: &str) -> String {
    match url.strip_prefix("channel:") {
        Some(c) => format!("https://nixos.org/channels/{c}/nixexprs.tar.xz"),
        None => url.to_owned(),
    }
}

/// Nix's `newHashAllowEmpty(s, SHA256)`: an empty hash is all zeroes, with
/// Nix's warning.
fn parse_hash(s: &str, pos: Pos) -> Result<Hash> {
    if s.is_empty() {
        let h = Hash::from_bytes(HashAlgo::Sha256, &[0; 32]).expect("32 bytes");
        eprintln!("warning: found empty hash, assuming '{}'", h.to_sri());
        return Ok(h);
    }
    Hash::parse_any(s, Some(HashAlgo::Sha256)).map_err(|e| err(e.to_string(), pos))
}

fn fetch(
    ev: &mut Evaluator,
    arg: &Value,
    pos: Pos,
    who: &str,
    unpack: bool,
    default_name: &str,
) -> Result<Value> {
    let mut name = default_name.to_owned();
    let mut url = None;
    let mut expected = None;
    let arg = ev.force(arg)?;
    let is_attrs = matches!(arg, Value::Attrs(_));
    let mut name_passed = false;
    if let Value::Attrs(set) = &arg {
        for attr in set.iter() {
            let n = attr.name.as_str();
            match n {
                "url" => {
                    let u = ev.force_string_no_ctx(&attr.value, attr.pos).map_err(|e| {
                        e.add_trace(attr.pos, "while evaluating the url we should fetch")
                    })?;
                    url = Some(u);
                }
                "sha256" => {
                    let h = ev.force_string_no_ctx(&attr.value, attr.pos).map_err(|e| {
                        e.add_trace(
                            attr.pos,
                            "while evaluating the sha256 of the content we should fetch",
                        )
                    })?;
                    expected = Some(parse_hash(&h, pos)?);
                }
                "name" => {
                    name_passed = true;
                    name = ev.force_string_no_ctx(&attr.value, attr.pos).map_err(|e| {
                        e.add_trace(
                            attr.pos,
                            "while evaluating the name of the content we should fetch",
                        )
                    })?;
                }
                _ => return Err(err(format!("unsupported argument '{n}' to '{who}'"), pos)),
            }
        }
        if url.is_none() {
            return Err(err("'url' argument required", pos));
        }
    } else {
        url = Some(
            ev.force_string_no_ctx(&arg, pos)
                .map_err(|e| e.add_trace(pos, "while evaluating the url we should fetch"))?,
        );
    }
    let mut url = url.expect("set above");
    if who == "fetchTarball" {
        url = resolve_pseudo_url(&url);
    }
    if name.is_empty() {
        name = base_name_of(&url).to_owned();
    }
    if let Err(e) = check_name(&name) {
        let resolution = if name_passed {
            format!("Please change the value for the 'name' attribute passed to '{who}', so that it can create a valid store path.")
        } else if is_attrs {
            format!("Please add a valid 'name' attribute to the argument for '{who}', so that it can create a valid store path.")
        } else {
            format!("Please pass an attribute set with 'url' and 'name' attributes to '{who}',  so that it can create a valid store path.")
        };
        return Err(err(
            format!("invalid store path name when fetching URL '{url}': {e}. {resolution}"),
            pos,
        ));
    }
    if ev.options().pure && expected.is_none() {
        return Err(err(
            format!("in pure evaluation mode, '{who}' requires a 'sha256' argument"),
            pos,
        ));
    }
    let method = if unpack {
        FileIngestionMethod::Recursive
    } else {
        FileIngestionMethod::Flat
    };
    let store_dir = ev.store().store_dir().clone();
    let result = with_fetcher(ev, pos, |f| {
        // Pinned and already there: nothing to fetch.
        if let Some(h) = expected.filter(|h| h.algo() == HashAlgo::Sha256) {
            let ca = ContentAddress::Fixed(method, h);
            let path = store_dir
                .make_path_from_ca(&name, &ca, [], false)
                .map_err(|e| rix_fetch::FetchError::msg(e.to_string()))?;
            f.store.add_temp_root(&path)?;
            if f.store.is_valid(&path)? {
                return Ok((path, None));
            }
        }
        if unpack {
            let mut attrs = Attrs::new();
            attrs.insert("type".into(), AttrValue::Str("tarball".into()));
            attrs.insert("url".into(), AttrValue::Str(url.clone()));
            attrs.insert("name".into(), AttrValue::Str(name.clone()));
            let input = Input::from_attrs(attrs)?;
            let (path, locked) = f.fetch_to_store(&input)?;
            let got = locked
                .nar_hash()?
                .ok_or_else(|| rix_fetch::FetchError::msg("the fetched tree has no NAR hash"))?;
            Ok((path, Some(got)))
        } else {
            let file = f.download_file(&url, &name, &[])?;
            let got = match expected {
                Some(_) => Some(f.hash_flat_file(&file.store_path)?),
                None => None,
            };
            Ok((file.store_path, got))
        }
    })?;
    let (path, got) = result;
    if let (Some(want), Some(got)) = (expected, got) {
        if got != want {
            return Err(EvalError::new(
                ErrorKind::HashMismatch,
                format!(
                    "hash mismatch in file downloaded from '{url}':\n  specified: {}\n  got:       {}",
                    want, got
                ),
                pos,
            ));
        }
    }
    let printed = store_dir.display(&path);
    let mut ctx = Context::new();
    ctx.insert(Rc::from(printed.as_str()));
    Ok(Value::String(NixString::with_context(printed, ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names() {
        assert_eq!(base_name_of("http://h:1/"), "h:1");
        assert_eq!(base_name_of("http://h/a/b.txt"), "b.txt");
        assert_eq!(base_name_of("x"), "x");
    }

    #[test]
    fn names() {
        assert!(check_name("a.txt").is_ok());
        assert_eq!(
            check_name("127.0.0.1:1").unwrap_err(),
            "name '127.0.0.1:1' contains illegal character ':'"
        );
        assert_eq!(check_name("..").unwrap_err(), "name '..' is not valid");
    }
}
