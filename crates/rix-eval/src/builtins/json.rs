//! JSON: `builtins.toJSON`, `builtins.fromJSON` and `--json` output.
//!
//! Output mirrors Nix 2.8's `printValueAsJSON`: keys in attribute order,
//! floats in C++ stream format, sets with `__toString` or `outPath` as
//! strings, paths copied to the store. Input is a strict RFC 8259 parser;
//! integers that fit are integers, other numbers floats.

use super::{arg_ctx, err, Registry};
use crate::error::Result;
use crate::eval::{Coerce, Evaluator};
use crate::print::format_json_float;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, Context, NixString, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("toJSON", 1, |ev, a, pos| {
        let mut out = String::new();
        let mut ctx = Context::new();
        write_json(ev, &a[0], pos, &mut out, &mut ctx, true, 0)?;
        Ok(Value::String(NixString::with_context(out, ctx)))
    });
    r.primop("fromJSON", 1, |ev, a, pos| {
        // Nix 2.8 takes the text with `forceStringNoCtx`.
        let s = arg_ctx(ev.force_string_no_ctx(&a[0], pos), 0, "fromJSON", pos)?;
        parse_json(&s).map_err(|m| err(m, pos))
    });
}

/// `v` as JSON, as `nix-instantiate --eval --json [--strict]` prints it.
pub fn value_to_json(ev: &mut Evaluator, v: &Value, strict: bool) -> Result<String> {
    let mut out = String::new();
    let mut ctx = Context::new();
    write_json(ev, v, Pos::NONE, &mut out, &mut ctx, strict, 0)?;
    Ok(out)
}

pub(crate) fn escape_json(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `v` as JSON, paths copied to the store. With `strict`, values are
/// forced; otherwise one not yet evaluated is an error, as with
/// `nix-instantiate --eval --json` without `--strict`.
pub(crate) fn write_json(
    ev: &mut Evaluator,
    v: &Value,
    pos: Pos,
    out: &mut String,
    ctx: &mut Context,
    strict: bool,
    depth: usize,
) -> Result<()> {
    if depth > ev.opts.max_call_depth {
        return Err(crate::error::EvalError::new(
            crate::error::ErrorKind::StackOverflow,
            "stack overflow; max-call-depth exceeded",
            pos,
        ));
    }
    let v = match v {
        _ if strict => ev.force(v)?,
        Value::Thunk(t) => t.get().ok_or_else(|| {
            crate::error::EvalError::new(
                crate::error::ErrorKind::Type,
                "cannot convert a thunk to JSON",
                pos,
            )
        })?,
        v => v.clone(),
    };
    match &v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&format_json_float(*f)),
        Value::String(s) => {
            escape_json(s.as_str(), out);
            ctx.extend(s.context().iter().cloned());
        }
        Value::Path(p) => {
            let sp = ev.copy_path_to_store(p, pos)?;
            escape_json(&sp, out);
            ctx.insert(std::rc::Rc::from(sp.as_str()));
        }
        Value::Attrs(a) => {
            if a.get(ev.syms.to_string).is_some() {
                let s = ev.coerce_to_string(
                    &v,
                    pos,
                    Coerce {
                        more: false,
                        copy_to_store: false,
                        ctx: "",
                    },
                )?;
                escape_json(s.as_str(), out);
                ctx.extend(s.context().iter().cloned());
                return Ok(());
            }
            if let Some(o) = a.get_attr(ev.syms.out_path) {
                let (o, at) = (o.value.clone(), o.pos);
                return write_json(ev, &o, at, out, ctx, strict, depth + 1);
            }
            out.push('{');
            for (i, attr) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                escape_json(attr.name.as_str(), out);
                out.push(':');
                stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                    write_json(ev, &attr.value, attr.pos, out, ctx, strict, depth + 1)
                })
                .map_err(|e| {
                    e.add_trace(
                        attr.pos,
                        format!("while evaluating attribute '{}'", attr.name),
                    )
                })?;
            }
            out.push('}');
        }
        Value::List(l) => {
            out.push('[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                    write_json(ev, item, pos, out, ctx, strict, depth + 1)
                })
                .map_err(|e| {
                    e.add_trace(pos, format!("while evaluating list element at index {i}"))
                })?;
            }
            out.push(']');
        }
        Value::Lambda(c) => {
            return Err(err("cannot convert a function to JSON", c.lambda.pos));
        }
        Value::PrimOp(_) | Value::PrimOpApp(_) => {
            return Err(err("cannot convert a function to JSON", pos));
        }
        Value::Thunk(_) => unreachable!("forced"),
    }
    Ok(())
}

/// Nix 2.26's refusal of a string with a NUL byte (shown as `␀`).
pub(crate) fn nul_in_string(s: &str) -> String {
    format!(
        "input string '{}' cannot be represented as Nix string because it contains null bytes",
        s.replace('\0', "␀")
    )
}

/// Parses JSON text into Nix values.
pub fn parse_json(s: &str) -> std::result::Result<Value, String> {
    let mut p = JsonParser {
        b: s.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.error("unexpected trailing input"));
    }
    Ok(v)
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn error(&self, what: &str) -> String {
        format!("JSON parse error at offset {}: {what}", self.i)
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn expect(&mut self, lit: &str) -> std::result::Result<(), String> {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(self.error("syntax error"))
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Value, String> {
        if depth > 10_000 {
            return Err(self.error("nesting too deep"));
        }
        match self.b.get(self.i) {
            None => Err(self.error("unexpected end of input")),
            Some(b'n') => self.expect("null").map(|_| Value::Null),
            Some(b't') => self.expect("true").map(|_| Value::Bool(true)),
            Some(b'f') => self.expect("false").map(|_| Value::Bool(false)),
            Some(b'"') => Ok(Value::string(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::list(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::list(items));
                        }
                        _ => return Err(self.error("expected ',' or ']'")),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut entries: Vec<Attr> = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Value::attrs(Attrs::new()));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return Err(self.error("expected a string key"));
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(self.error("expected ':'"));
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    entries.push(Attr {
                        name: Symbol::new(&key),
                        value: v,
                        pos: Pos::NONE,
                    });
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::attrs(Attrs::from_unsorted(entries)));
                        }
                        _ => return Err(self.error("expected ',' or '}'")),
                    }
                }
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => Err(self.error("syntax error")),
        }
    }

    fn number(&mut self) -> std::result::Result<Value, String> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.i < p.b.len() && p.b[p.i].is_ascii_digit() {
                p.i += 1;
            }
            p.i - s
        };
        let int_start = self.i;
        let n = digits(self);
        // RFC 8259: no leading zeros (`01`), as nlohmann's parser in Nix.
        if n == 0 || (n > 1 && self.b[int_start] == b'0') {
            return Err(self.error("invalid number"));
        }
        let mut is_float = false;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            is_float = true;
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.b.get(self.i), Some(b'e') | Some(b'E')) {
            self.i += 1;
            is_float = true;
            if matches!(self.b.get(self.i), Some(b'+') | Some(b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).expect("ascii");
        if !is_float {
            // A 64-bit integer if it fits; beyond u64, a float (as nlohmann's
            // parser gives Nix). Nix 2.8 wrapped integers between i64 and u64
            // around; later Nix, and the language test suite, refuse them.
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Int(i));
            }
            if text.parse::<u64>().is_ok() {
                return Err(format!(
                    "unsigned json number {text} outside of Nix integer range"
                ));
            }
        }
        let f: f64 = text.parse().map_err(|_| self.error("invalid number"))?;
        if !f.is_finite() {
            return Err(format!("number '{text}' is out of range of a double"));
        }
        Ok(Value::Float(f))
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.b.get(self.i) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = *self.b.get(self.i).ok_or_else(|| self.error("bad escape"))?;
                    self.i += 1;
                    match c {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                if self.b[self.i..].starts_with(b"\\u") {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(self.error("invalid surrogate"));
                                    }
                                    cp = 0x10000
                                        + ((cp - 0xD800) << 10)
                                        + (lo.wrapping_sub(0xDC00) & 0x3FF);
                                } else {
                                    return Err(self.error("invalid surrogate"));
                                }
                            }
                            let ch = char::from_u32(cp)
                                .ok_or_else(|| self.error("invalid code point"))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                }
                Some(&c) if c < 0x20 => return Err(self.error("control character in string")),
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        // `\u0000` (the only way to a NUL here): Nix 2.8 cut the string there;
        // later Nix, and the language test suite, refuse it.
        if out.contains(&0) {
            return Err(nul_in_string(&String::from_utf8_lossy(&out)));
        }
        String::from_utf8(out).map_err(|_| self.error("invalid UTF-8"))
    }

    fn hex4(&mut self) -> std::result::Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert!(matches!(parse_json(" 12 "), Ok(Value::Int(12))));
        assert!(matches!(parse_json("1.5"), Ok(Value::Float(f)) if f == 1.5));
        // Too big for u64 is a float (nlohmann), between i64 and u64 an error
        // (later Nix; 2.8 wrapped), no leading zeros.
        assert!(matches!(parse_json("99999999999999999999"), Ok(Value::Float(f)) if f == 1e20));
        assert!(parse_json("18446744073709551615").is_err());
        assert!(parse_json("01").is_err());
        assert!(parse_json("[1,]").is_err());
        assert!(parse_json("\"\\uD800\\u0041\"").is_err());
        assert!(parse_json("\"a\\u0000b\"").is_err());
        match parse_json(r#"{"b":[true,null],"a":"x\u00e9"}"#).unwrap() {
            Value::Attrs(a) => {
                assert_eq!(a.len(), 2);
                assert_eq!(a.entries()[0].name.as_str(), "a");
            }
            _ => panic!(),
        }
    }
}
