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
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
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

/// Prints an attribute name, quoted when needed. As Nix 2.26
/// (`printIdentifier`): the keywords `if then else assert with let in rec
/// inherit` are quoted, and a quoted name is a string literal (`$` escaped
/// only before `{`). Nix 2.8 quoted only `if` and escaped every `$`.
pub fn attr_name(s: &str, out: &mut String) {
    const KEYWORDS: [&str; 9] = [
        "if", "then", "else", "assert", "with", "let", "in", "rec", "inherit",
    ];
    if is_var_name(s) && !KEYWORDS.contains(&s) {
        out.push_str(s);
    } else {
        escape_string(s, out);
    }
}

/// A float as Nix 2.26 writes it in JSON (`toJSON`, `--json`; nlohmann's
/// `dump`): the shortest digits that read back as the same number, a `.0`
/// on integral values, an exponent (sign and at least two digits) below
/// 1e-4 or from 1e15 on. Non-finite numbers are `null`.
pub fn format_json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // The shortest digits that read back (Rust's `{:e}`). nlohmann's Grisu2
    // gives the same digits but for rare values where it is not the
    // shortest (1e23 is 9.999999999999999e+22 there, 1e+23 here).
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("scientific format");
    let exp: i32 = exp.parse().expect("exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = digits.as_str();
    let len = digits.len() as i32;
    // The value is 0.DIGITS × 10^n.
    let n = exp + 1;
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    if len <= n && n <= 15 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (n - len) as usize));
        out.push_str(".0");
    } else if 0 < n && n <= 15 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -4 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(digits);
    } else {
        out.push_str(&digits[..1]);
        if len > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    out
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

/// A value as Nix 2.26 shows it in error messages (`ValuePrinter` with
/// `errorPrintOptions`): nothing is forced (`«thunk»`), at most 10 levels,
/// 10 attributes and 10 list items in all, strings cut after 1024 bytes;
/// `type` and `_type` first among attributes.
pub fn error_value(v: &Value) -> String {
    let mut p = ErrorPrinter {
        out: String::new(),
        seen: HashSet::new(),
        attrs: 0,
        items: 0,
        max: 10,
    };
    p.print(v, 0);
    p.out
}

/// A value as Nix 2.26's `builtins.trace` prints it (`ValuePrinter` with
/// default options: as [`error_value`] without limits).
pub fn trace_value(v: &Value) -> String {
    let mut p = ErrorPrinter {
        out: String::new(),
        seen: HashSet::new(),
        attrs: 0,
        items: 0,
        max: usize::MAX,
    };
    p.print(v, 0);
    p.out
}

struct ErrorPrinter {
    out: String,
    seen: HashSet<usize>,
    attrs: usize,
    items: usize,
    /// Levels, attributes and list items printed at most (and strings cut
    /// after 1024 bytes) unless `usize::MAX`.
    max: usize,
}

fn elided(out: &mut String, n: usize, single: &str, plural: &str) {
    let _ = write!(out, "«{n} {} elided»", if n == 1 { single } else { plural });
}

impl ErrorPrinter {
    fn print(&mut self, v: &Value, depth: usize) {
        let max = self.max;
        match v {
            Value::Thunk(t) => match t.get() {
                Some(v) => self.print(&v, depth),
                None if t.is_blackhole() => self.out.push_str("«potential infinite recursion»"),
                None => self.out.push_str("«thunk»"),
            },
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            Value::Float(f) => self.out.push_str(&format_float(*f)),
            Value::String(s) => {
                let s = s.as_str();
                if max != usize::MAX && s.len() > 1024 {
                    let mut cut = 1024;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    escape_string(&s[..cut], &mut self.out);
                    self.out.push(' ');
                    elided(&mut self.out, s.len() - cut, "byte", "bytes");
                } else {
                    escape_string(s, &mut self.out);
                }
            }
            Value::Path(p) => self.out.push_str(p),
            Value::Attrs(a) => {
                if !self.seen.insert(Rc::as_ptr(a) as *const u8 as usize) {
                    self.out.push_str("«repeated»");
                    return;
                }
                if depth >= max {
                    self.out.push_str("{ ... }");
                    return;
                }
                self.out.push('{');
                let mut sorted: Vec<_> = a.iter().collect();
                let important = |n: &str| n == "type" || n == "_type";
                // With limits, `type` and `_type` first (Nix's
                // `ImportantFirstAttrNameCmp`).
                let limited = max != usize::MAX;
                sorted.sort_by(|x, y| {
                    let (x, y) = (x.name.as_str(), y.name.as_str());
                    (limited && !important(x), x).cmp(&(limited && !important(y), y))
                });
                for (printed, attr) in sorted.iter().enumerate() {
                    self.out.push(' ');
                    if self.attrs >= max {
                        elided(
                            &mut self.out,
                            sorted.len() - printed,
                            "attribute",
                            "attributes",
                        );
                        break;
                    }
                    let name = attr.name.as_str();
                    if is_var_name(name)
                        && !matches!(
                            name,
                            "if" | "then"
                                | "else"
                                | "assert"
                                | "with"
                                | "let"
                                | "in"
                                | "rec"
                                | "inherit"
                        )
                    {
                        self.out.push_str(name);
                    } else {
                        escape_string(name, &mut self.out);
                    }
                    self.out.push_str(" = ");
                    stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                        self.print(&attr.value, depth + 1)
                    });
                    self.out.push(';');
                    self.attrs += 1;
                }
                self.out.push_str(" }");
            }
            Value::List(l) => {
                if !l.is_empty() && !self.seen.insert(Rc::as_ptr(l) as *const u8 as usize) {
                    self.out.push_str("«repeated»");
                    return;
                }
                if depth >= max {
                    self.out.push_str("[ ... ]");
                    return;
                }
                self.out.push('[');
                for (i, item) in l.iter().enumerate() {
                    self.out.push(' ');
                    if self.items >= max {
                        elided(&mut self.out, l.len() - i, "item", "items");
                        break;
                    }
                    stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.print(item, depth + 1));
                    self.items += 1;
                }
                self.out.push_str(" ]");
            }
            Value::Lambda(c) => {
                self.out.push_str("«lambda");
                if let Some(n) = c.lambda.name {
                    if !n.as_str().is_empty() {
                        let _ = write!(self.out, " {n}");
                    }
                }
                match c.lambda.pos.resolve() {
                    Some(loc) => {
                        let _ = write!(self.out, " @ {loc}»");
                    }
                    None => self.out.push_str(" @ «none»:0»"),
                }
            }
            Value::PrimOp(op) => {
                let _ = write!(self.out, "«primop {}»", op.name);
            }
            Value::PrimOpApp(app) => {
                let _ = write!(self.out, "«partially applied primop {}»", app.op.name);
            }
        }
    }
}

/// A value as `nix eval` prints it (Nix 2.26's `ValuePrinter` with `force`
/// and `derivationPaths`): every part forced through `force`, an error in a
/// part printed in its place (`«error: MESSAGE»`), a derivation as
/// `«derivation DRV-PATH»`, functions with their position, sets and lists
/// printed a second time as `«repeated»` (Nix's empty set is one shared
/// value, so a second `{ }` is too).
pub fn print_forced(v: &Value, force: &mut dyn FnMut(&Value) -> Result<Value, String>) -> String {
    let mut p = ForcedPrinter {
        out: String::new(),
        seen: HashSet::new(),
        force,
    };
    p.print(v, None);
    p.out
}

struct ForcedPrinter<'a> {
    out: String,
    seen: HashSet<usize>,
    force: &'a mut dyn FnMut(&Value) -> Result<Value, String>,
}

/// The identity of Nix's one empty attribute set.
const EMPTY_ATTRS: usize = 1;

impl ForcedPrinter<'_> {
    fn print(&mut self, v: &Value, holder: Option<usize>) {
        let holder = match v {
            Value::Thunk(t) => Some(Rc::as_ptr(&t.0) as *const u8 as usize),
            _ => holder,
        };
        let v = match (self.force)(v) {
            Ok(v) => v,
            Err(e) => {
                let _ = write!(self.out, "«error: {e}»");
                return;
            }
        };
        match &v {
            Value::Attrs(a) => {
                let id = if a.is_empty() {
                    EMPTY_ATTRS
                } else {
                    Rc::as_ptr(a) as *const u8 as usize
                };
                if !self.seen.insert(id) {
                    self.out.push_str("«repeated»");
                    return;
                }
                match self.derivation_path(a) {
                    Ok(Some(Some(drv))) => {
                        let _ = write!(self.out, "«derivation {drv}»");
                        return;
                    }
                    Ok(Some(None)) => {
                        self.out.push_str("«derivation»");
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = write!(self.out, "«error: {e}»");
                        return;
                    }
                }
                self.out.push('{');
                let mut sorted: Vec<_> = a.iter().collect();
                sorted.sort_by(|x, y| x.name.as_str().cmp(y.name.as_str()));
                for attr in sorted {
                    self.out.push(' ');
                    attr_name(attr.name.as_str(), &mut self.out);
                    self.out.push_str(" = ");
                    stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.print(&attr.value, None));
                    self.out.push(';');
                }
                self.out.push_str(" }");
            }
            Value::List(l) => {
                // Nix keeps lists of one or two elements in the value itself.
                let id = if l.len() <= 2 {
                    holder
                } else {
                    Some(Rc::as_ptr(l) as *const u8 as usize)
                };
                if let Some(id) = id.filter(|_| !l.is_empty()) {
                    if !self.seen.insert(id) {
                        self.out.push_str("«repeated»");
                        return;
                    }
                }
                self.out.push('[');
                for item in l.iter() {
                    self.out.push(' ');
                    stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.print(item, None));
                }
                self.out.push_str(" ]");
            }
            other => {
                let mut p = ErrorPrinter {
                    out: std::mem::take(&mut self.out),
                    seen: HashSet::new(),
                    attrs: 0,
                    items: 0,
                    max: usize::MAX,
                };
                p.print(other, 0);
                self.out = p.out;
            }
        }
    }

    /// The `.drv` path of a derivation (`type = "derivation"`; `Some(None)`
    /// without `drvPath`), `None` for other sets.
    fn derivation_path(
        &mut self,
        a: &crate::value::Attrs,
    ) -> Result<Option<Option<String>>, String> {
        let Some(ty) = a.get_str("type") else {
            return Ok(None);
        };
        match (self.force)(ty)? {
            Value::String(s) if s.as_str() == "derivation" => {}
            _ => return Ok(None),
        }
        let Some(drv) = a.get_str("drvPath") else {
            return Ok(Some(None));
        };
        match (self.force)(drv)? {
            Value::String(s) => Ok(Some(Some(s.as_str().to_owned()))),
            other => Err(format!(
                "expected a string but found {} while evaluating the drvPath of a derivation",
                other.show_type()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    /// JSON floats: values and their text from Nix 2.26's `builtins.toJSON`.
    #[test]
    fn as_nix_226() {
        for (f, text) in [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (1.5e10, "15000000000.0"),
            (123456789.0, "123456789.0"),
            (0.000012345, "1.2345e-05"),
            (1.0e-10, "1e-10"),
            (1.0 / 3.0, "0.3333333333333333"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e308, "1e+308"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (9.999999999999997e22, "9.999999999999997e+22"),
            (-9.223372036854776e18, "-9.223372036854776e+18"),
            (-0.25, "-0.25"),
            (1000.0, "1000.0"),
            (0.0, "0.0"),
        ] {
            assert_eq!(super::format_json_float(f), text, "{f:e}");
        }
    }

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
