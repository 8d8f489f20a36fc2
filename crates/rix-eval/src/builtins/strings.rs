//! String builtins: `toString`, `substring`, `stringLength`,
//! `concatStringsSep`, `replaceStrings`, `match`, `split`, versions,
//! `parseDrvName`, `baseNameOf`, `dirOf`, `hashString`, `convertHash`.
//!
//! Regular expressions: Nix uses POSIX extended regular expressions
//! (`std::regex::extended`); rix uses the `regex` crate, which agrees on the
//! ERE syntax Nix code uses in practice. Known differences: alternation is
//! leftmost-first rather than POSIX leftmost-longest (`(a|ab)` against `ab`
//! captures `a`), a backslash inside a bracket expression escapes (POSIX takes
//! it literally), back-references are not supported, and `.` matches a
//! character rather than a byte.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use regex::Regex;
use rix_formats::hash::Encoding;
use rix_formats::{Hash, HashAlgo};

use super::{
    arg_ctx, err, int_arg, list_arg, mk_attrs, string_arg, string_no_ctx_arg, Nth, Registry,
};
use crate::error::Result;
use crate::eval::{base_name, Coerce, Evaluator};
use crate::source::Pos;
use crate::value::{Context, NixString, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("toString", 1, |ev, a, pos| {
        Ok(Value::String(ev.coerce_to_string(
            &a[0],
            pos,
            Coerce {
                more: true,
                copy_to_store: false,
                ctx: "while evaluating the first argument passed to builtins.toString",
            },
        )?))
    });
    r.primop("substring", 3, substring);
    r.primop("stringLength", 1, |ev, a, pos| {
        let s = ev.coerce_to_string(
            &a[0],
            pos,
            Coerce {
                more: false,
                copy_to_store: true,
                ctx: "while evaluating the argument passed to builtins.stringLength",
            },
        )?;
        Ok(Value::Int(s.as_str().len() as i64))
    });
    r.primop("concatStringsSep", 2, concat_strings_sep);
    r.primop("replaceStrings", 3, replace_strings);
    r.primop("match", 2, regex_match);
    r.primop("split", 2, regex_split);
    r.primop("splitVersion", 1, |ev, a, _| {
        let s = string_no_ctx_arg(ev, &a[0], Nth(0, "splitVersion"))?;
        Ok(Value::list(
            split_version(&s).into_iter().map(Value::string).collect(),
        ))
    });
    r.primop("compareVersions", 2, |ev, a, _| {
        let x = string_no_ctx_arg(ev, &a[0], Nth(0, "compareVersions"))?;
        let y = string_no_ctx_arg(ev, &a[1], Nth(1, "compareVersions"))?;
        Ok(Value::Int(compare_versions(&x, &y) as i64))
    });
    r.primop("parseDrvName", 1, |ev, a, _| {
        let s = string_no_ctx_arg(ev, &a[0], Nth(0, "parseDrvName"))?;
        let (name, version) = parse_drv_name(&s);
        Ok(mk_attrs(vec![
            ("name", Value::string(name)),
            ("version", Value::string(version)),
        ]))
    });
    r.primop("baseNameOf", 1, |ev, a, pos| {
        let s = ev.coerce_to_string(
            &a[0],
            pos,
            Coerce {
                more: false,
                copy_to_store: false,
                ctx: "while evaluating the first argument passed to builtins.baseNameOf",
            },
        )?;
        Ok(Value::String(NixString::with_context(
            base_name(s.as_str()).to_owned(),
            s.context().clone(),
        )))
    });
    r.primop("dirOf", 1, dir_of);
    r.primop("hashString", 2, hash_string);
    r.primop("convertHash", 1, convert_hash);
    r.primop("toPath", 1, |ev, a, pos| {
        let (p, ctx) = ev.coerce_to_path_ctx(
            &a[0],
            pos,
            "while evaluating the first argument passed to builtins.toPath",
        )?;
        Ok(Value::String(NixString::with_context(
            crate::lower::canon_path(&p),
            ctx,
        )))
    });
}

fn substring(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let start = int_arg(
        ev,
        &a[0],
        "while evaluating the first argument (the start offset) passed to builtins.substring",
    )?;
    if start < 0 {
        return Err(err("negative start position in 'substring'", pos));
    }
    let len = int_arg(
        ev,
        &a[1],
        "while evaluating the second argument (the substring length) passed to builtins.substring",
    )?;
    let s = ev.coerce_to_string(
        &a[2],
        pos,
        Coerce {
            more: false,
            copy_to_store: true,
            ctx: "while evaluating the third argument (the string) passed to builtins.substring",
        },
    )?;
    let bytes = s.as_str().as_bytes();
    let start = (start as usize).min(bytes.len());
    let end = if len < 0 {
        bytes.len()
    } else {
        start.saturating_add(len as usize).min(bytes.len())
    };
    let piece = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    Ok(Value::String(NixString::with_context(
        piece,
        s.context().clone(),
    )))
}

fn concat_strings_sep(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let sep = string_arg(
        ev,
        &a[0],
        "while evaluating the first argument (the separator string) passed to builtins.concatStringsSep",
    )?;
    let list = list_arg(
        ev,
        &a[1],
        "while evaluating the second argument (the list of strings to concat) passed to builtins.concatStringsSep",
    )?;
    let mut out = String::new();
    let mut ctx: Context = sep.context().clone();
    for (i, item) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(sep.as_str());
        }
        ev.coerce_into(
            item,
            pos,
            Coerce {
                more: false,
                copy_to_store: true,
                ctx: "while evaluating one element of the list of strings to concat passed to builtins.concatStringsSep",
            },
            &mut out,
            &mut ctx,
        )?;
    }
    // The separator's context is kept even for an empty list, as in Nix 2.8.
    Ok(Value::String(NixString::with_context(out, ctx)))
}

fn replace_strings(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let from = list_arg(ev, &a[0], Nth(0, "replaceStrings"))?;
    let to = list_arg(ev, &a[1], Nth(1, "replaceStrings"))?;
    if from.len() != to.len() {
        return Err(err(
            "'from' and 'to' arguments passed to builtins.replaceStrings have different lengths",
            pos,
        ));
    }
    let mut pats = Vec::with_capacity(from.len());
    for f in from.iter() {
        // Nix reads the patterns' text and ignores their context.
        pats.push(
            string_arg(
                ev,
                f,
                "while evaluating one of the strings to replace passed to builtins.replaceStrings",
            )?
            .as_str()
            .to_owned(),
        );
    }
    let s = string_arg(ev, &a[2], Nth(2, "replaceStrings"))?;
    let mut cache: Vec<Option<NixString>> = vec![None; to.len()];
    let src = s.as_str();
    let mut out = String::with_capacity(src.len());
    let mut ctx = s.context().clone();
    let mut p = 0;
    while p <= src.len() {
        let mut found = false;
        for (i, pat) in pats.iter().enumerate() {
            if src[p..].starts_with(pat.as_str()) {
                found = true;
                if cache[i].is_none() {
                    cache[i] = Some(string_arg(
                        ev,
                        &to[i],
                        "while evaluating one of the replacement strings passed to builtins.replaceStrings",
                    )?);
                }
                let rep = cache[i].as_ref().expect("just set");
                out.push_str(rep.as_str());
                ctx.extend(rep.context().iter().cloned());
                if pat.is_empty() {
                    if let Some(c) = src[p..].chars().next() {
                        out.push(c);
                        p += c.len_utf8();
                    } else {
                        p += 1;
                    }
                } else {
                    p += pat.len();
                }
                break;
            }
        }
        if !found {
            if let Some(c) = src[p..].chars().next() {
                out.push(c);
                p += c.len_utf8();
            } else {
                p += 1;
            }
        }
    }
    Ok(Value::String(NixString::with_context(out, ctx)))
}

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<(String, bool), Rc<Regex>>> = RefCell::new(HashMap::new());
}

/// Compiles a POSIX ERE (anchored on both ends when `whole`), cached.
fn compile(re: &str, whole: bool, pos: Pos) -> Result<Rc<Regex>> {
    let key = (re.to_owned(), whole);
    if let Some(r) = REGEX_CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(r);
    }
    let translated = translate_ere(re);
    let pattern = if whole {
        format!("^(?s:{translated})$")
    } else {
        format!("(?s:{translated})")
    };
    let compiled =
        Regex::new(&pattern).map_err(|_| err(format!("invalid regular expression '{re}'"), pos))?;
    let rc = Rc::new(compiled);
    REGEX_CACHE.with(|c| c.borrow_mut().insert(key, rc.clone()));
    Ok(rc)
}

/// Adapts POSIX ERE syntax to the `regex` crate: a `{` that does not start a
/// bound is literal, and a `]` first in a bracket expression is literal.
fn translate_ere(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 8);
    let chars: Vec<char> = re.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                out.push(c);
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                    i += 1;
                }
            }
            '[' => {
                // Copy a bracket expression, escaping what Rust would treat specially.
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                while i < chars.len() && chars[i] != ']' {
                    if chars[i] == '['
                        && matches!(chars.get(i + 1), Some(':') | Some('.') | Some('='))
                    {
                        let close = chars[i + 1];
                        let start = i;
                        i += 2;
                        while i + 1 < chars.len() && !(chars[i] == close && chars[i + 1] == ']') {
                            i += 1;
                        }
                        let s: String = chars[start..(i + 2).min(chars.len())].iter().collect();
                        out.push_str(&s);
                        i += 2;
                        continue;
                    }
                    match chars[i] {
                        // Literal in POSIX brackets; special in Rust's.
                        '\\' | '[' | '&' | '~' => {
                            out.push('\\');
                            out.push(chars[i]);
                        }
                        ch => out.push(ch),
                    }
                    i += 1;
                }
                out.push(']');
            }
            '{' => {
                let rest: String = chars[i + 1..].iter().collect();
                let is_bound = rest
                    .find('}')
                    .map(|end| {
                        let inner = &rest[..end];
                        !inner.is_empty()
                            && inner.chars().all(|c| c.is_ascii_digit() || c == ',')
                            && inner.chars().next().is_some_and(|c| c.is_ascii_digit())
                    })
                    .unwrap_or(false);
                if is_bound {
                    out.push('{');
                } else {
                    out.push_str("\\{");
                }
            }
            '}' => {
                // Closing a bound we copied, or literal.
                let opened = out
                    .rfind('{')
                    .is_some_and(|o| o == 0 || !out[..o].ends_with('\\'))
                    && !out.ends_with('}');
                if opened {
                    out.push('}');
                } else {
                    out.push_str("\\}");
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn regex_match(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let re = string_no_ctx_arg(ev, &a[0], Nth(0, "match"))?;
    let s = string_arg(ev, &a[1], Nth(1, "match"))?;
    let regex = compile(&re, true, pos)?;
    match regex.captures(s.as_str()) {
        None => Ok(Value::Null),
        Some(caps) => Ok(Value::list(
            (1..caps.len())
                .map(|i| match caps.get(i) {
                    Some(m) => Value::string(m.as_str()),
                    None => Value::Null,
                })
                .collect(),
        )),
    }
}

fn regex_split(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let re = string_no_ctx_arg(ev, &a[0], Nth(0, "split"))?;
    let s = string_arg(ev, &a[1], Nth(1, "split"))?;
    let regex = compile(&re, false, pos)?;
    let text = s.as_str();
    let mut out = Vec::new();
    let mut last = 0;
    for caps in regex.captures_iter(text) {
        let m = caps.get(0).expect("group 0");
        out.push(Value::string(&text[last..m.start()]));
        out.push(Value::list(
            (1..caps.len())
                .map(|i| match caps.get(i) {
                    Some(g) => Value::string(g.as_str()),
                    None => Value::Null,
                })
                .collect(),
        ));
        last = m.end();
    }
    out.push(Value::string(&text[last..]));
    Ok(Value::list(out))
}

fn next_component(s: &[u8], p: &mut usize) -> String {
    while *p < s.len() && (s[*p] == b'.' || s[*p] == b'-') {
        *p += 1;
    }
    let start = *p;
    if *p < s.len() && s[*p].is_ascii_digit() {
        while *p < s.len() && s[*p].is_ascii_digit() {
            *p += 1;
        }
    } else {
        while *p < s.len() && !(s[*p].is_ascii_digit() || s[*p] == b'.' || s[*p] == b'-') {
            *p += 1;
        }
    }
    String::from_utf8_lossy(&s[start..*p]).into_owned()
}

/// `builtins.splitVersion`. Mirrors `nextComponent`.
pub fn split_version(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut p = 0;
    let mut out = Vec::new();
    while p < b.len() {
        let c = next_component(b, &mut p);
        if c.is_empty() {
            break;
        }
        out.push(c);
    }
    out
}

fn components_lt(c1: &str, c2: &str) -> bool {
    let n1 = c1.parse::<i64>().ok().filter(|_| !c1.is_empty());
    let n2 = c2.parse::<i64>().ok().filter(|_| !c2.is_empty());
    match (n1, n2) {
        (Some(a), Some(b)) => a < b,
        _ if c1.is_empty() && n2.is_some() => true,
        _ if c1 == "pre" && c2 != "pre" => true,
        _ if c2 == "pre" => false,
        (_, Some(_)) => true,
        (Some(_), _) => false,
        _ => c1 < c2,
    }
}

/// `builtins.compareVersions`: -1, 0 or 1. Mirrors `compareVersions`.
pub fn compare_versions(v1: &str, v2: &str) -> i32 {
    let (a, b) = (v1.as_bytes(), v2.as_bytes());
    let (mut p1, mut p2) = (0, 0);
    while p1 < a.len() || p2 < b.len() {
        let c1 = next_component(a, &mut p1);
        let c2 = next_component(b, &mut p2);
        if components_lt(&c1, &c2) {
            return -1;
        }
        if components_lt(&c2, &c1) {
            return 1;
        }
    }
    0
}

/// Splits `name-1.2` at the first dash followed by a non-letter. Mirrors `DrvName`.
pub fn parse_drv_name(s: &str) -> (String, String) {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && i + 1 < b.len() && !b[i + 1].is_ascii_alphabetic() {
            return (s[..i].to_owned(), s[i + 1..].to_owned());
        }
    }
    (s.to_owned(), String::new())
}

fn dir_of(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let v = ev.force(&a[0])?;
    let dir = |p: &str| -> String {
        match p.rfind('/') {
            None => ".".to_owned(),
            Some(0) => "/".to_owned(),
            Some(i) => p[..i].to_owned(),
        }
    };
    match &v {
        Value::Path(p) => Ok(Value::path(dir(p))),
        _ => {
            let s = ev.coerce_to_string(
                &v,
                pos,
                Coerce {
                    more: false,
                    copy_to_store: false,
                    ctx: "while evaluating the first argument passed to 'builtins.dirOf'",
                },
            )?;
            Ok(Value::String(NixString::with_context(
                dir(s.as_str()),
                s.context().clone(),
            )))
        }
    }
}

pub(crate) fn parse_algo(s: &str, pos: Pos) -> Result<HashAlgo> {
    s.parse::<HashAlgo>().map_err(|_| {
        err(
            format!("unknown hash algorithm '{s}', expect 'md5', 'sha1', 'sha256', or 'sha512'"),
            pos,
        )
    })
}

fn hash_string(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let algo = arg_ctx(ev.force_string_no_ctx(&a[0], pos), 0, "hashString", pos)?;
    let algo = parse_algo(&algo, pos)?;
    let s = arg_ctx(ev.force_string(&a[1], pos), 1, "hashString", pos)?;
    Ok(Value::string(
        algo.digest(s.as_str().as_bytes()).to_base16(),
    ))
}

fn convert_hash(ev: &mut Evaluator, a: &[Value], pos: Pos) -> Result<Value> {
    let args = ev.force_attrs(&a[0], pos)?;
    let get = |ev: &mut Evaluator, name: &str| -> Result<Option<String>> {
        match args.get_str(name) {
            Some(v) => {
                let v = v.clone();
                Ok(Some(ev.force_string_no_ctx(&v, pos)?))
            }
            None => Ok(None),
        }
    };
    let hash = get(ev, "hash")?.ok_or_else(|| err("attribute 'hash' missing", pos))?;
    let algo = match get(ev, "hashAlgo")? {
        Some(a) => Some(parse_algo(&a, pos)?),
        None => None,
    };
    let format =
        get(ev, "toHashFormat")?.ok_or_else(|| err("attribute 'toHashFormat' missing", pos))?;
    let h = Hash::parse_any(&hash, algo).map_err(|e| err(e.to_string(), pos))?;
    let out = match format.as_str() {
        "base16" => h.encode(Encoding::Base16),
        "nix32" | "base32" => h.encode(Encoding::Nix32),
        "base64" => h.encode(Encoding::Base64),
        "sri" => h.to_sri(),
        other => {
            return Err(err(
                format!(
                    "unknown hash format '{other}', expect 'base16', 'base32', 'base64', or 'sri'"
                ),
                pos,
            ))
        }
    };
    Ok(Value::string(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(split_version("1.2.3pre-4"), ["1", "2", "3", "pre", "4"]);
        assert_eq!(compare_versions("1.0", "2.3"), -1);
        assert_eq!(compare_versions("2.1", "2.3"), -1);
        assert_eq!(compare_versions("2.3", "2.3"), 0);
        assert_eq!(compare_versions("2.5", "2.3"), 1);
        assert_eq!(compare_versions("3.1", "2.3"), 1);
        assert_eq!(compare_versions("2.3.1", "2.3"), 1);
        assert_eq!(compare_versions("2.3.1", "2.3a"), 1);
        assert_eq!(compare_versions("2.3pre1", "2.3"), -1);
        assert_eq!(compare_versions("2.3", "2.3pre1"), 1);
    }

    #[test]
    fn drv_names() {
        assert_eq!(
            parse_drv_name("nix-0.12pre12876"),
            ("nix".into(), "0.12pre12876".into())
        );
        assert_eq!(
            parse_drv_name("a-b-c-1.0-d"),
            ("a-b-c".into(), "1.0-d".into())
        );
    }

    #[test]
    fn ere_translation() {
        assert_eq!(translate_ere("a{"), "a\\{");
        assert_eq!(translate_ere("a{2}"), "a{2}");
        assert_eq!(translate_ere("[]a]"), "[\\]a]");
        assert_eq!(translate_ere("[[:alpha:]]"), "[[:alpha:]]");
    }
}
