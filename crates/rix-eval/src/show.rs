//! Printing a parsed expression as `nix-instantiate --parse` does: fully
//! parenthesised, attributes and formals in name order, operators that Nix
//! desugars into calls (`-`, `*`, `/`, `<`, ...) shown as those calls.
//! Mirrors the `show` methods of Nix's `nixexpr.cc` (the layout of the
//! `parse-okay-*.exp` files).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ast::{AttrKey, BinOp, Binding, BindingValue, DynamicBinding, Expr, ExprRef, Param};
use crate::print::escape_string;
use crate::value::Value;

/// `e` as Nix shows it.
pub fn show(e: &Expr) -> String {
    let mut out = String::new();
    expr(e, &mut out);
    out
}

fn expr(e: &Expr, out: &mut String) {
    match e {
        Expr::Const(v) => constant(v, out),
        Expr::Var { name, .. } | Expr::WithVar { name, .. } => out.push_str(name.as_str()),
        Expr::Select {
            expr: inner,
            path,
            default,
            ..
        } => {
            out.push('(');
            expr(inner, out);
            out.push_str(").");
            attr_path(path, out);
            if let Some(d) = default {
                out.push_str(" or (");
                expr(d, out);
                out.push(')');
            }
        }
        Expr::HasAttr { expr: inner, path } => {
            out.push_str("((");
            expr(inner, out);
            out.push_str(") ? ");
            attr_path(path, out);
            out.push(')');
        }
        Expr::Attrs(a) => {
            if a.rec {
                out.push_str("rec ");
            }
            out.push_str("{ ");
            bindings(&a.bindings, &a.inherit_from, &a.dynamic, out);
            out.push('}');
        }
        Expr::List(items) => {
            out.push_str("[ ");
            for i in items.iter() {
                out.push('(');
                expr(i, out);
                out.push_str(") ");
            }
            out.push(']');
        }
        Expr::Lambda(l) => {
            out.push('(');
            match &l.param {
                Param::Ident(n) => out.push_str(n.as_str()),
                Param::Formals {
                    formals,
                    ellipsis,
                    at,
                } => {
                    out.push_str("{ ");
                    let mut sorted: Vec<_> = formals.iter().collect();
                    sorted.sort_by_key(|f| f.name);
                    let mut first = true;
                    for f in sorted {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        out.push_str(f.name.as_str());
                        if let Some(d) = &f.default {
                            out.push_str(" ? ");
                            expr(d, out);
                        }
                    }
                    if *ellipsis {
                        if !first {
                            out.push_str(", ");
                        }
                        out.push_str("...");
                    }
                    out.push_str(" }");
                    if let Some(a) = at {
                        out.push_str(" @ ");
                        out.push_str(a.as_str());
                    }
                }
            }
            out.push_str(": ");
            expr(&l.body, out);
            out.push(')');
        }
        Expr::Call { func, args, .. } => {
            out.push('(');
            expr(func, out);
            for a in args.iter() {
                out.push(' ');
                expr(a, out);
            }
            out.push(')');
        }
        Expr::Let(l) => {
            out.push_str("(let ");
            bindings(&l.bindings, &l.inherit_from, &[], out);
            out.push_str("in ");
            expr(&l.body, out);
            out.push(')');
        }
        Expr::With { attrs, body } => {
            out.push_str("(with ");
            expr(attrs, out);
            out.push_str("; ");
            expr(body, out);
            out.push(')');
        }
        Expr::If {
            cond, then, else_, ..
        } => {
            out.push_str("(if ");
            expr(cond, out);
            out.push_str(" then ");
            expr(then, out);
            out.push_str(" else ");
            expr(else_, out);
            out.push(')');
        }
        Expr::Assert { cond, body, .. } => {
            out.push_str("assert ");
            expr(cond, out);
            out.push_str("; ");
            expr(body, out);
        }
        Expr::Not(inner, _) => {
            out.push_str("(! ");
            expr(inner, out);
            out.push(')');
        }
        Expr::Neg(inner, _) => {
            out.push_str("(__sub 0 ");
            expr(inner, out);
            out.push(')');
        }
        Expr::Bin { op, lhs, rhs, .. } => bin(*op, lhs, rhs, out),
        Expr::Interpolate { parts, .. } | Expr::PathInterpolate { parts, .. } => {
            out.push('(');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push_str(" + ");
                }
                expr(p, out);
            }
            out.push(')');
        }
        Expr::CurPos(_) => out.push_str("__curPos"),
    }
}

fn bin(op: BinOp, l: &ExprRef, r: &ExprRef, out: &mut String) {
    let call = |f: &str, a: &ExprRef, b: &ExprRef, out: &mut String| {
        let _ = write!(out, "({f} ");
        expr(a, out);
        out.push(' ');
        expr(b, out);
        out.push(')');
    };
    let infix = |s: &str, out: &mut String| {
        out.push('(');
        expr(l, out);
        let _ = write!(out, " {s} ");
        expr(r, out);
        out.push(')');
    };
    match op {
        BinOp::Add => infix("+", out),
        BinOp::Sub => call("__sub", l, r, out),
        BinOp::Mul => call("__mul", l, r, out),
        BinOp::Div => call("__div", l, r, out),
        BinOp::Less => call("__lessThan", l, r, out),
        BinOp::Greater => call("__lessThan", r, l, out),
        BinOp::LessEq => {
            out.push_str("(! ");
            call("__lessThan", r, l, out);
            out.push(')');
        }
        BinOp::GreaterEq => {
            out.push_str("(! ");
            call("__lessThan", l, r, out);
            out.push(')');
        }
        BinOp::Concat => infix("++", out),
        BinOp::Update => infix("//", out),
        BinOp::Eq => infix("==", out),
        BinOp::NotEq => infix("!=", out),
        BinOp::And => infix("&&", out),
        BinOp::Or => infix("||", out),
        BinOp::Impl => infix("->", out),
    }
}

fn bindings(bs: &[Binding], from: &[ExprRef], dynamic: &[DynamicBinding], out: &mut String) {
    let mut sorted: Vec<&Binding> = bs.iter().collect();
    sorted.sort_by_key(|b| b.name);
    let inherits: Vec<&Binding> = sorted
        .iter()
        .copied()
        .filter(|b| matches!(b.value, BindingValue::Inherit(_)))
        .collect();
    if !inherits.is_empty() {
        out.push_str("inherit");
        for b in inherits {
            out.push(' ');
            identifier(b.name.as_str(), out);
        }
        out.push_str("; ");
    }
    let mut groups: BTreeMap<u32, Vec<&Binding>> = BTreeMap::new();
    for b in &sorted {
        if let BindingValue::InheritFrom(k, _) = b.value {
            groups.entry(k).or_default().push(b);
        }
    }
    for (k, names) in groups {
        out.push_str("inherit (");
        expr(&from[k as usize], out);
        out.push(')');
        for b in names {
            out.push(' ');
            identifier(b.name.as_str(), out);
        }
        out.push_str("; ");
    }
    for b in sorted {
        if let BindingValue::Expr(e) | BindingValue::Outer(e) = &b.value {
            identifier(b.name.as_str(), out);
            out.push_str(" = ");
            expr(e, out);
            out.push_str("; ");
        }
    }
    for d in dynamic {
        out.push_str("\"${");
        expr(&d.name, out);
        out.push_str("}\" = ");
        expr(&d.value, out);
        out.push_str("; ");
    }
}

fn attr_path(path: &[AttrKey], out: &mut String) {
    for (i, k) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match k {
            AttrKey::Static(s) => identifier(s.as_str(), out),
            AttrKey::Dynamic(e) => {
                out.push_str("\"${");
                expr(e, out);
                out.push_str("}\"");
            }
        }
    }
}

fn constant(v: &Value, out: &mut String) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&crate::print::format_float(*f)),
        Value::String(s) => escape_string(s.as_str(), out),
        Value::Path(p) => out.push_str(p),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        _ => out.push_str("<CONST>"),
    }
}

/// A name as an identifier when it is one, else as a quoted string (as Nix
/// prints a symbol in messages, e.g. an unexpected argument `"b c"`).
pub fn identifier_string(s: &str) -> String {
    let mut out = String::new();
    identifier(s, &mut out);
    out
}

/// A name as an identifier when it is one, else as a string. Mirrors
/// `printIdentifier`.
fn identifier(s: &str, out: &mut String) {
    let mut chars = s.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'))
        && !matches!(
            s,
            "if" | "then" | "else" | "assert" | "with" | "let" | "in" | "rec" | "inherit" | "or"
        );
    if valid {
        out.push_str(s);
    } else {
        escape_string(s, out);
    }
}
