//! XML: `builtins.toXML` and `nix-instantiate --eval --xml`.
//! Mirrors `printValueAsXML` in Nix 2.8's `value-to-xml.cc`.

use std::collections::HashSet;

use super::Registry;
use crate::ast::Param;
use crate::error::Result;
use crate::eval::Evaluator;
use crate::print::format_float;
use crate::source::Pos;
use crate::value::{Attrs, Context, NixString, Value};

pub(crate) fn register(r: &mut Registry) {
    r.primop("toXML", 1, |ev, a, _pos| {
        let mut ctx = Context::new();
        let s = value_to_xml_ctx(ev, &a[0], true, false, &mut ctx)?;
        Ok(Value::String(NixString::with_context(s, ctx)))
    });
}

/// `v` as Nix's XML; `strict` forces everything, `location` adds source positions.
pub fn value_to_xml(ev: &mut Evaluator, v: &Value, strict: bool, location: bool) -> Result<String> {
    let mut ctx = Context::new();
    value_to_xml_ctx(ev, v, strict, location, &mut ctx)
}

fn value_to_xml_ctx(
    ev: &mut Evaluator,
    v: &Value,
    strict: bool,
    location: bool,
    ctx: &mut Context,
) -> Result<String> {
    let mut w = Writer {
        out: String::from("<?xml version='1.0' encoding='utf-8'?>\n"),
        strict,
        location,
        drvs_seen: HashSet::new(),
    };
    w.open("expr", &[], 0);
    w.value(ev, v, 1, ctx)?;
    w.close("expr", 0);
    Ok(w.out)
}

struct Writer {
    out: String,
    strict: bool,
    location: bool,
    drvs_seen: HashSet<String>,
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("&#xA;"),
            c => out.push(c),
        }
    }
}

impl Writer {
    /// `v` forced when strict; otherwise as it is (a thunk not yet forced stays one).
    fn peek(&self, ev: &mut Evaluator, v: &Value) -> Result<Value> {
        match v {
            _ if self.strict => ev.force(v),
            Value::Thunk(t) => Ok(t.get().unwrap_or_else(|| v.clone())),
            v => Ok(v.clone()),
        }
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn attrs(&mut self, attrs: &[(&str, String)]) {
        let mut sorted: Vec<&(&str, String)> = attrs.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_attr(v, &mut self.out);
            self.out.push('"');
        }
    }

    fn open(&mut self, name: &str, attrs: &[(&str, String)], depth: usize) {
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push_str(">\n");
    }

    fn close(&mut self, name: &str, depth: usize) {
        self.indent(depth);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, String)], depth: usize) {
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push_str(" />\n");
    }

    fn pos_attrs(&self, pos: Pos, attrs: &mut Vec<(&str, String)>) {
        if !self.location {
            return;
        }
        if let Some(loc) = pos.resolve() {
            if let Some(file) = loc.file_for_language() {
                attrs.push(("path", file));
            }
            attrs.push(("line", loc.line.to_string()));
            attrs.push(("column", loc.column.to_string()));
        }
    }

    fn attrs_body(
        &mut self,
        ev: &mut Evaluator,
        a: &Attrs,
        depth: usize,
        ctx: &mut Context,
    ) -> Result<()> {
        for attr in a.iter() {
            let mut xa = vec![("name", attr.name.as_str().to_owned())];
            self.pos_attrs(attr.pos, &mut xa);
            self.open("attr", &xa, depth);
            self.value(ev, &attr.value, depth + 1, ctx)?;
            self.close("attr", depth);
        }
        Ok(())
    }

    fn value(
        &mut self,
        ev: &mut Evaluator,
        v: &Value,
        depth: usize,
        ctx: &mut Context,
    ) -> Result<()> {
        let v = if self.strict {
            ev.force(v)?
        } else {
            match v {
                Value::Thunk(t) => match t.get() {
                    Some(v) => v,
                    None => {
                        self.empty("unevaluated", &[], depth);
                        return Ok(());
                    }
                },
                v => v.clone(),
            }
        };
        match &v {
            Value::Int(i) => self.empty("int", &[("value", i.to_string())], depth),
            Value::Bool(b) => self.empty("bool", &[("value", b.to_string())], depth),
            Value::String(s) => {
                ctx.extend(s.context().iter().cloned());
                self.empty("string", &[("value", s.as_str().to_owned())], depth)
            }
            Value::Path(p) => self.empty("path", &[("value", p.to_string())], depth),
            Value::Null => self.empty("null", &[], depth),
            Value::Float(f) => self.empty("float", &[("value", format_float(*f))], depth),
            Value::Attrs(a) => {
                if ev.is_derivation(a)? {
                    let mut xa = Vec::new();
                    let mut drv_path = None;
                    // As Nix: forced only when strict; a derivation without a
                    // string `drvPath` is shown as `<repeated />`.
                    if let Some(p) = a.get(ev.syms.drv_path).cloned() {
                        let p = self.peek(ev, &p)?;
                        if let Value::String(s) = &p {
                            xa.push(("drvPath", s.as_str().to_owned()));
                            drv_path = Some(s.as_str().to_owned());
                            ctx.extend(s.context().iter().cloned());
                        }
                    }
                    if let Some(p) = a.get(ev.syms.out_path).cloned() {
                        let p = self.peek(ev, &p)?;
                        if let Value::String(s) = &p {
                            xa.push(("outPath", s.as_str().to_owned()));
                            ctx.extend(s.context().iter().cloned());
                        }
                    }
                    self.open("derivation", &xa, depth);
                    let first = match &drv_path {
                        Some(p) if !p.is_empty() => self.drvs_seen.insert(p.clone()),
                        _ => false,
                    };
                    if first {
                        self.attrs_body(ev, a, depth + 1, ctx)?;
                    } else {
                        self.empty("repeated", &[], depth + 1);
                    }
                    self.close("derivation", depth);
                } else {
                    self.open("attrs", &[], depth);
                    self.attrs_body(ev, a, depth + 1, ctx)?;
                    self.close("attrs", depth);
                }
            }
            Value::List(l) => {
                self.open("list", &[], depth);
                for item in l.iter() {
                    stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                        self.value(ev, item, depth + 1, ctx)
                    })?;
                }
                self.close("list", depth);
            }
            Value::Lambda(c) => {
                let mut xa = Vec::new();
                self.pos_attrs(c.lambda.pos, &mut xa);
                self.open("function", &xa, depth);
                match &c.lambda.param {
                    Param::Ident(name) => {
                        self.empty("varpat", &[("name", name.as_str().to_owned())], depth + 1)
                    }
                    Param::Formals {
                        formals,
                        ellipsis,
                        at,
                    } => {
                        let mut pa = Vec::new();
                        if *ellipsis {
                            pa.push(("ellipsis", "1".to_owned()));
                        }
                        if let Some(at) = at {
                            pa.push(("name", at.as_str().to_owned()));
                        }
                        self.open("attrspat", &pa, depth + 1);
                        let mut names: Vec<&str> =
                            formals.iter().map(|f| f.name.as_str()).collect();
                        names.sort();
                        for n in names {
                            self.empty("attr", &[("name", n.to_owned())], depth + 2);
                        }
                        self.close("attrspat", depth + 1);
                    }
                }
                self.close("function", depth);
            }
            Value::PrimOp(_) | Value::PrimOpApp(_) => self.empty("unevaluated", &[], depth),
            Value::Thunk(_) => self.empty("unevaluated", &[], depth),
        }
        Ok(())
    }
}
