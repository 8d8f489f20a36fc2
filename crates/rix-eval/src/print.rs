//! Printing values as `nix-instantiate --eval` does.
//!
//! Floats use C++'s default stream format (`%g` with six significant digits);
//! strings are escaped as Nix literals; attribute names are quoted unless
//! they are valid identifiers; unevaluated values print as `<CODE>`, and a set
//! or list printed a second time as `«repeated»`. Mirrors `printValue` and
//! `printString` in Nix 2.8's `eval.cc`.

use std::collections::HashSet;
use std::fmt::Write;
use std::rc::Rc;

use crate::value::Value;

/// Formats a float like C++'s `ostream << double` (`%g`, precision 6).
pub fn format_float(f: f64) -> String {
    format_float_prec(f, 6)
}

/// `%g` with `prec` significant digits.
pub fn format_float_prec(f: f64, prec: usize) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.to_owned();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, f);
    let (mantissa, exp) = sci.split_once('e').expect("scientific format");
    let exp: i32 = exp.parse().expect("exponent");
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{f:.decimals$}")).to_owned()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A string as a Nix string literal. Mirrors `printLiteralString`.
pub fn escape_string(s: &str, out: &mut String) {
    quote(s, false, out);
}

/// `s` in double quotes with Nix's escapes; `$` is escaped before `{` only,
/// or everywhere with `every_dollar` (as Nix 2.8 prints attribute names).
fn quote(s: &str, every_dollar: bool, out: &mut String) {
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if every_dollar || chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `s` can be written unquoted as an attribute name.
pub fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        None => false,
        Some(c) if c.is_ascii_digit() || c == '-' || c == '\'' => false,
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => false,
        _ => chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '\'' || c == '-'),
    }
}

/// Prints an attribute name, quoted when needed. As Nix 2.8: `if` (and no
/// other keyword) is quoted, and in a quoted name every `$` is escaped.
pub fn attr_name(s: &str, out: &mut String) {
    if is_var_name(s) && s != "if" {
        out.push_str(s);
    } else {
        quote(s, true, out);
    }
}

/// Prints `v` (whose parts are printed as far as they are evaluated).
pub fn print_value(v: &Value) -> String {
    let mut out = String::new();
    let mut seen = HashSet::new();
    print(v, None, &mut out, &mut seen);
    out
}

fn print(v: &Value, holder: Option<usize>, out: &mut String, seen: &mut HashSet<usize>) {
    match v {
        Value::Thunk(t) => {
            let inner = t.get();
            match inner {
                Some(v) => print(&v, Some(Rc::as_ptr(&t.0) as *const u8 as usize), out, seen),
                None => out.push_str("<CODE>"),
            }
        }
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&format_float(*f)),
        Value::String(s) => escape_string(s.as_str(), out),
        Value::Path(p) => out.push_str(p),
        Value::Attrs(a) => {
            if !a.is_empty() && !seen.insert(Rc::as_ptr(a) as *const u8 as usize) {
                out.push_str("«repeated»");
                return;
            }
            out.push_str("{ ");
            for attr in a.iter() {
                attr_name(attr.name.as_str(), out);
                out.push_str(" = ");
                stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                    print(&attr.value, None, out, seen)
                });
                out.push_str("; ");
            }
            out.push('}');
        }
        Value::List(l) => {
            // Nix stores lists of one or two elements inside the value itself,
            // so their identity is that of the value holding them.
            let id = if l.len() <= 2 {
                holder
            } else {
                Some(Rc::as_ptr(l) as *const u8 as usize)
            };
            if !l.is_empty() {
                if let Some(id) = id {
                    if !seen.insert(id) {
                        out.push_str("«repeated»");
                        return;
                    }
                }
            }
            out.push_str("[ ");
            for item in l.iter() {
                stacker::maybe_grow(64 * 1024, 1024 * 1024, || print(item, None, out, seen));
                out.push(' ');
            }
            out.push(']');
        }
        Value::Lambda(_) => out.push_str("<LAMBDA>"),
        Value::PrimOp(_) => out.push_str("<PRIMOP>"),
        Value::PrimOpApp(_) => out.push_str("<PRIMOP-APP>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_cpp() {
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (1.5e-7, "1.5e-07"),
            (123456789.0, "1.23457e+08"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1e-5, "1e-05"),
            (0.1 + 0.2, "0.3"),
            (2.5e300, "2.5e+300"),
            (3.4, "3.4"),
            (0.0001, "0.0001"),
            (-1.5, "-1.5"),
            (999999.5, "1e+06"),
        ];
        for (f, s) in cases {
            assert_eq!(format_float(f), s, "{f}");
        }
    }

    #[test]
    fn names_and_strings() {
        assert!(is_var_name("x-y'"));
        assert!(!is_var_name("2x"));
        assert!(!is_var_name(""));
        let mut s = String::new();
        escape_string("a\"${b}\n", &mut s);
        assert_eq!(s, r#""a\"\${b}\n""#);
    }
}
