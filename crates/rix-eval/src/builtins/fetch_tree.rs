//! `builtins.fetchTree` (and `fetchFinalTree`): an input given as attributes
//! or a URL, fetched by `rix_fetch` into the store, returned as Nix 2.26's
//! `emitTreeAttrs` returns it. `fetchGit` is `fetchTree` with `type = "git"`
//! and Nix's backwards-compatible defaults ([`Params`]).

use std::rc::Rc;

use rix_fetch::input::Input;
use rix_fetch::{FetchError, Fetcher};
use rix_formats::flake_ref::{AttrValue, Attrs};

use super::{err, Registry};
use crate::error::{ErrorKind, EvalError, Result};
use crate::eval::{Coerce, Evaluator};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Context, NixString, Value};

/// `builtins.fetchGit`: `fetchTree` of a `git` input with its
/// backwards-compatible defaults (always available).
pub(crate) fn register_fetch_git(r: &mut Registry) {
    r.primop("fetchGit", 1, |ev, a, pos| {
        let params = Params {
            empty_rev_fallback: true,
            allow_name: true,
            is_fetch_git: true,
            ..Params::default()
        };
        fetch_tree(ev, &a[0], pos, params)
    });
}

pub(crate) fn register(r: &mut Registry) {
    r.primop("fetchTree", 1, |ev, a, pos| {
        fetch_tree(ev, &a[0], pos, Params::default())
    });
    r.primop("fetchFinalTree", 1, |ev, a, pos| {
        let params = Params {
            is_final: true,
            ..Params::default()
        };
        fetch_tree(ev, &a[0], pos, params)
    });
}

/// Nix's `FetchTreeParams`.
#[derive(Default, Clone, Copy)]
pub(crate) struct Params {
    /// A tree without a commit still gets an all-zero `rev` and `revCount = 0`
    /// (`fetchGit`'s old behaviour).
    pub empty_rev_fallback: bool,
    /// `name` is accepted (`fetchGit`).
    pub allow_name: bool,
    pub is_fetch_git: bool,
    /// The input is final (`fetchFinalTree`, from lock files).
    pub is_final: bool,
}

pub(crate) fn fetch_tree(
    ev: &mut Evaluator,
    arg: &Value,
    pos: Pos,
    params: Params,
) -> Result<Value> {
    let input = input_from_value(ev, arg, pos, params)?;
    // `checkURI(input.toURLString())`: printing a Git input parses its `rev`.
    if input.ty == rix_formats::flake_ref::InputType::Git {
        rix_fetch::git::check_input(&input).map_err(|e| fetch_error(e, pos))?;
    }
    if ev.options().pure && !input.is_considered_locked(&ev.options().fetch_settings) {
        let fetcher = if params.is_fetch_git {
            "fetchGit"
        } else {
            "fetchTree"
        };
        return Err(err(
            format!(
                "in pure evaluation mode, '{fetcher}' will not fetch unlocked input '{}'",
                input.to_url_string()
            ),
            pos,
        ));
    }
    let mut input = input;
    if params.is_final {
        input.set("__final", AttrValue::Bool(true));
    } else if input.is_final() {
        return Err(err(
            format!(
                "input '{}' is not allowed to use the '__final' attribute",
                input.to_url_string()
            ),
            pos,
        ));
    }
    let (path, locked) = with_fetcher(ev, pos, |f| f.fetch_to_store(&input))?;
    Ok(emit_tree_attrs(
        ev,
        &path,
        &locked,
        params.empty_rev_fallback,
        false,
    ))
}

/// The input `fetchTree`'s argument describes (`fetchTree` in `fetchTree.cc`).
fn input_from_value(ev: &mut Evaluator, arg: &Value, pos: Pos, params: Params) -> Result<Input> {
    let arg = ev.force(arg)?;
    let coerce = |ev: &mut Evaluator, v: &Value, pos: Pos, ctx: &'static str| -> Result<String> {
        let s = ev.coerce_to_string(
            v,
            pos,
            Coerce {
                more: false,
                copy_to_store: false,
                ctx,
            },
        )?;
        Ok(s.as_str().to_owned())
    };
    let Value::Attrs(set) = &arg else {
        let url = coerce(
            ev,
            &arg,
            pos,
            "while evaluating the first argument passed to the fetcher",
        )?;
        if params.is_fetch_git {
            let mut attrs = Attrs::new();
            attrs.insert("type".into(), AttrValue::Str("git".into()));
            attrs.insert("url".into(), AttrValue::Str(fix_git_url(&url)));
            attrs.insert("exportIgnore".into(), AttrValue::Bool(true));
            return Input::from_attrs(attrs).map_err(|e| fetch_error(e, pos));
        }
        if !ev.has_feature("flakes") {
            return Err(err(
                "passing a string argument to 'fetchTree' requires the 'flakes' experimental feature",
                pos,
            ));
        }
        return Input::from_url(&url).map_err(|e| fetch_error(e, pos));
    };
    let mut attrs = Attrs::new();
    let mut ty = params.is_fetch_git.then(|| "git".to_owned());
    if let Some(t) = set.get_attr(ev.syms.type_) {
        if ty.is_some() {
            return Err(err("unexpected attribute 'type'", pos));
        }
        let t = ev.force_string_no_ctx(&t.value, t.pos).map_err(|e| {
            e.add_trace(
                t.pos,
                "while evaluating the `type` attribute passed to builtins.fetchTree",
            )
        })?;
        ty = Some(t);
    }
    let Some(ty) = ty else {
        return Err(err(
            "attribute 'type' is missing in call to 'fetchTree'",
            pos,
        ));
    };
    attrs.insert("type".into(), AttrValue::Str(ty.clone()));
    for attr in set.iter() {
        let name = attr.name.as_str();
        if name == "type" {
            continue;
        }
        let v = ev.force(&attr.value)?;
        let value = match &v {
            Value::String(_) | Value::Path(_) => {
                let s = coerce(ev, &v, attr.pos, "")?;
                AttrValue::Str(if params.is_fetch_git && name == "url" {
                    fix_git_url(&s)
                } else {
                    s
                })
            }
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Int(i) => {
                if *i < 0 {
                    return Err(err(
                        format!("negative value given for fetchTree attr {name}: {i}"),
                        pos,
                    ));
                }
                AttrValue::Int(*i as u64)
            }
            other => {
                return Err(EvalError::new(
                    ErrorKind::Type,
                    format!(
                        "fetchTree argument '{name}' is {} while a string, Boolean or integer is expected",
                        other.show_type()
                    ),
                    Pos::NONE,
                ))
            }
        };
        attrs.insert(name.to_owned(), value);
    }
    if params.is_fetch_git
        && !attrs.contains_key("exportIgnore")
        && !matches!(attrs.get("submodules"), Some(AttrValue::Bool(true)))
    {
        attrs.insert("exportIgnore".into(), AttrValue::Bool(true));
    }
    if ty == "git" && !params.is_fetch_git && !attrs.contains_key("shallow") {
        attrs.insert("shallow".into(), AttrValue::Bool(true));
    }
    if !params.allow_name && attrs.contains_key("name") {
        return Err(err(
            "attribute 'name' isn\u{2019}t supported in call to 'fetchTree'",
            pos,
        ));
    }
    Input::from_attrs(attrs).map_err(|e| fetch_error(e, pos))
}

/// `fixGitURL`: a local path becomes a `file://` URL (percent-encoded, as
/// `Input::from_attrs` does it for a Git input's `url`).
pub(crate) fn fix_git_url(url: &str) -> String {
    let mut attrs = Attrs::new();
    attrs.insert("type".into(), AttrValue::Str("git".into()));
    attrs.insert("url".into(), AttrValue::Str(url.to_owned()));
    match Input::from_attrs(attrs) {
        Ok(input) if url.starts_with('/') => input.get_str("url").unwrap_or(url).to_owned(),
        _ => url.to_owned(),
    }
}

/// Runs `f` with a fetcher on the store evaluation writes to (the real store
/// behind a dry run).
pub fn with_fetcher<R>(
    ev: &Evaluator,
    pos: Pos,
    f: impl FnOnce(Fetcher<'_>) -> rix_fetch::Result<R>,
) -> Result<R> {
    let io =
        |e: std::io::Error| EvalError::new(ErrorKind::Io, format!("opening the store: {e}"), pos);
    let opened = ev.store().fetch_store().map_err(io)?;
    let store: Rc<dyn crate::store::EvalStore> = opened.unwrap_or_else(|| ev.store().clone());
    let Some(backing) = store.backing_store() else {
        return Err(EvalError::new(
            ErrorKind::Io,
            "fetching needs a store to add to, and this evaluation has none",
            pos,
        ));
    };
    if ev.fetchers.get().is_none() {
        let fetchers = rix_fetch::Fetchers::new(ev.options().fetch_settings.clone())
            .map_err(|e| fetch_error(e, pos))?;
        let _ = ev.fetchers.set(fetchers);
    }
    let fetchers = ev.fetchers.get().expect("set above");
    f(fetchers.on(backing)).map_err(|e| fetch_error(e, pos))
}

/// A fetch error as an evaluation error, with its trace.
pub fn fetch_error(e: FetchError, pos: Pos) -> Box<EvalError> {
    // Nix throws a NAR hash mismatch with exit status 102.
    let kind = match e.kind {
        rix_fetch::error::ErrorKind::HashMismatch => ErrorKind::HashMismatch,
        _ => ErrorKind::Other,
    };
    let mut error = EvalError::new(kind, e.message, pos);
    for line in e.trace {
        error = error.add_trace(Pos::NONE, line);
    }
    error
}

/// The result set (`emitTreeAttrs`).
pub fn emit_tree_attrs(
    ev: &Evaluator,
    path: &rix_formats::StorePath,
    input: &Input,
    empty_rev_fallback: bool,
    force_dirty: bool,
) -> Value {
    let out_path = ev.store().store_dir().display(path);
    let mut entries = Vec::new();
    let mut put = |name: &str, value: Value| {
        entries.push(Attr {
            name: Symbol::new(name),
            value,
            pos: Pos::NONE,
        })
    };
    let mut ctx = Context::new();
    ctx.insert(Rc::from(out_path.as_str()));
    put(
        "outPath",
        Value::String(NixString::with_context(out_path.clone(), ctx)),
    );
    if let Ok(Some(h)) = input.nar_hash() {
        put("narHash", Value::string(h.to_sri()));
    }
    if input.ty == rix_formats::flake_ref::InputType::Git {
        put(
            "submodules",
            Value::Bool(input.get_bool("submodules").unwrap_or(false)),
        );
    }
    if !force_dirty {
        let zero = "0".repeat(40);
        let rev = input
            .rev()
            .map(str::to_owned)
            .or_else(|| empty_rev_fallback.then(|| zero.clone()));
        if let Some(rev) = rev {
            put(
                "shortRev",
                Value::string(rev[..7.min(rev.len())].to_owned()),
            );
            put("rev", Value::string(rev));
        }
        if let Some(n) = input.rev_count() {
            put("revCount", Value::Int(n as i64));
        } else if empty_rev_fallback {
            put("revCount", Value::Int(0));
        }
    }
    if let Some(d) = input.get_str("dirtyRev") {
        put("dirtyRev", Value::string(d.to_owned()));
        put(
            "dirtyShortRev",
            Value::string(
                input
                    .get_str("dirtyShortRev")
                    .unwrap_or_default()
                    .to_owned(),
            ),
        );
    }
    if let Some(t) = input.last_modified() {
        put("lastModified", Value::Int(t as i64));
        put("lastModifiedDate", Value::string(utc_timestamp(t as i64)));
    }
    Value::attrs(crate::value::Attrs::from_unsorted(entries))
}

/// `%Y%m%d%H%M%S` of a Unix time, in UTC.
pub fn utc_timestamp(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_timestamps() {
        assert_eq!(super::utc_timestamp(0), "19700101000000");
        assert_eq!(super::utc_timestamp(1577836800), "20200101000000");
        assert_eq!(super::utc_timestamp(1796657629), "20261207153349");
    }
}
