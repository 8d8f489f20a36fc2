//! From rnix's concrete syntax tree to [`crate::ast`].
//!
//! Parsing is rnix's; this pass then does what Nix's parser actions and
//! `Expr::bindVars` do: merges nested attribute paths (`a.b = 1; a.c = 2;`),
//! strips the indentation of `''` strings, unescapes strings, makes paths
//! absolute, desugars `<x>` into `__findFile __nixPath "x"` and resolves every
//! variable to a `(depth, index)` slot, or to the enclosing `with`s.
//! Mirrors `addAttr`, `stripIndentation` (Nix 2.8 `parser.y`) and `bindVars`.

use std::collections::HashMap;
use std::rc::Rc;

use rnix::ast::{self, AstToken, HasEntry};
use rnix::SyntaxKind;
use rowan::ast::AstNode;

use crate::ast::{
    AttrKey, AttrsExpr, BinOp, Binding, BindingValue, DynamicBinding, Expr, ExprRef, Formal,
    Lambda, LetExpr, Param,
};
use crate::error::{ErrorKind, EvalError, Result};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::Value;

/// The names of the base environment (builtins, `true`, `map`, ...), each with its slot.
#[derive(Default, Clone)]
pub struct BaseScope {
    pub names: HashMap<Symbol, u32>,
}

enum Scope {
    Static(HashMap<Symbol, u32>),
    With,
}

/// How a lint reacts (`--lint-* warn|fatal`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LintLevel {
    #[default]
    Off,
    Warn,
    Fatal,
}

/// Lints on literals, as newer Nix's `--lint-*` options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lints {
    pub absolute_path_literals: LintLevel,
    pub short_path_literals: LintLevel,
    pub url_literals: LintLevel,
}

/// Options for lowering one source text.
pub struct LowerCtx<'a> {
    pub lints: Lints,
    /// Offset of the text in the position table.
    pub base: u32,
    /// Directory relative paths are resolved against.
    pub base_dir: &'a str,
    /// `$HOME`, for `~/...` paths.
    pub home: Option<&'a str>,
    pub base_scope: &'a BaseScope,
}

/// Parses and lowers `text`.
pub fn parse(text: &str, ctx: &LowerCtx<'_>) -> Result<ExprRef> {
    parse_with_scope(text, ctx, None)
}

/// Parses `text` with an extra frame of names (`scopedImport`) above the base scope.
pub fn parse_with_scope(
    text: &str,
    ctx: &LowerCtx<'_>,
    extra: Option<HashMap<Symbol, u32>>,
) -> Result<ExprRef> {
    let parsed = rnix::Root::parse(text);
    if let Some(err) = parsed.errors().first() {
        return Err(parse_error(err, ctx.base, text));
    }
    let root = parsed.tree();
    let expr = root.expr().ok_or_else(|| {
        EvalError::new(
            ErrorKind::Parse,
            "syntax error, unexpected end of file",
            Pos(ctx.base),
        )
    })?;
    let mut l = Lowerer {
        ctx,
        scopes: extra.map(Scope::Static).into_iter().collect(),
        shadowed: Vec::new(),
    };
    l.expr(expr)
}

fn parse_error(err: &rnix::ParseError, base: u32, text: &str) -> Box<EvalError> {
    use rnix::ParseError as P;
    let at = |r: &rnix::TextRange| Pos(base + u32::from(r.start()));
    let eof = Pos(base + text.len() as u32);
    let (msg, pos) = match err {
        P::Unexpected(r) => (
            format!(
                "syntax error, unexpected '{}'",
                &text[usize::from(r.start())..usize::from(r.end())]
            ),
            at(r),
        ),
        P::UnexpectedExtra(r) => (
            format!(
                "syntax error, unexpected '{}'",
                &text[usize::from(r.start())..usize::from(r.end())]
            ),
            at(r),
        ),
        P::UnexpectedWanted(got, r, wanted) => (
            format!(
                "syntax error, unexpected {}, expecting {}",
                kind_name(*got),
                wanted
                    .iter()
                    .map(|k| kind_name(*k))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            at(r),
        ),
        P::UnexpectedDoubleBind(r) => ("syntax error, unexpected '@'".to_owned(), at(r)),
        P::UnexpectedEOF => ("syntax error, unexpected end of file".to_owned(), eof),
        P::UnexpectedEOFWanted(wanted) => (
            format!(
                "syntax error, unexpected end of file, expecting {}",
                wanted
                    .iter()
                    .map(|k| kind_name(*k))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            eof,
        ),
        P::DuplicatedArgs(r, name) => (
            format!("duplicate formal function argument '{name}'"),
            at(r),
        ),
        P::RecursionLimitExceeded => ("syntax error: expression nested too deeply".to_owned(), eof),
        other => (format!("syntax error: {other}"), eof),
    };
    EvalError::new(ErrorKind::Parse, msg, pos)
}

fn kind_name(k: SyntaxKind) -> String {
    let s = format!("{k:?}");
    s.trim_start_matches("TOKEN_")
        .trim_start_matches("NODE_")
        .to_lowercase()
}

struct Lowerer<'a, 'c> {
    ctx: &'a LowerCtx<'c>,
    scopes: Vec<Scope>,
    /// For each flattened lambda being lowered, what its names shadowed.
    shadowed: Vec<Vec<(Symbol, Option<u32>)>>,
}

/// An attribute set being assembled from its bindings before lowering.
struct PAttrs {
    rec: bool,
    statics: Vec<(Symbol, Pos, PVal)>,
    index: HashMap<Symbol, usize>,
    dynamic: Vec<(ast::Attr, PVal, Pos)>,
    inherit_from: Vec<ast::Expr>,
    pos: Pos,
}

enum PVal {
    Expr(ast::Expr),
    Attrs(PAttrs),
    Inherit(Symbol, Pos),
    InheritFrom(u32, Symbol),
}

fn err(msg: impl Into<String>, pos: Pos) -> Box<EvalError> {
    EvalError::new(ErrorKind::Parse, msg, pos)
}

/// Strips `(...)` around an expression.
fn unparen(mut e: ast::Expr) -> ast::Expr {
    while let ast::Expr::Paren(p) = &e {
        match p.expr() {
            Some(inner) => e = inner,
            None => break,
        }
    }
    e
}

impl<'a, 'c> Lowerer<'a, 'c> {
    fn pos(&self, node: &impl AstNode) -> Pos {
        Pos(self.ctx.base + u32::from(node.syntax().text_range().start()))
    }

    fn missing(&self, node: &impl AstNode) -> Box<EvalError> {
        err("syntax error, unexpected end of input", self.pos(node))
    }

    fn resolve(&self, name: Symbol, pos: Pos, skip: usize) -> Result<Expr> {
        let mut withs = Vec::new();
        let n = self.scopes.len();
        for (depth, scope) in self.scopes.iter().rev().enumerate() {
            if depth < skip {
                continue;
            }
            match scope {
                Scope::Static(names) => {
                    if let Some(&idx) = names.get(&name) {
                        return Ok(Expr::Var {
                            depth: depth as u32,
                            idx,
                            pos,
                            name,
                        });
                    }
                }
                Scope::With => withs.push(depth as u32),
            }
        }
        if let Some(&idx) = self.ctx.base_scope.names.get(&name) {
            return Ok(Expr::Var {
                depth: n as u32,
                idx,
                pos,
                name,
            });
        }
        if withs.is_empty() {
            return Err(EvalError::new(
                ErrorKind::UndefinedVariable,
                format!("undefined variable '{name}'"),
                pos,
            ));
        }
        Ok(Expr::WithVar {
            name,
            withs: withs.into_boxed_slice(),
            pos,
        })
    }

    fn var(&self, name: &str, pos: Pos) -> Result<ExprRef> {
        Ok(Rc::new(self.resolve(Symbol::new(name), pos, 0)?))
    }

    fn expr(&mut self, e: ast::Expr) -> Result<ExprRef> {
        self.expr_named(e, None)
    }

    fn opt_expr(&mut self, e: Option<ast::Expr>, parent: &impl AstNode) -> Result<ExprRef> {
        match e {
            Some(e) => self.expr(e),
            None => Err(self.missing(parent)),
        }
    }

    fn expr_named(&mut self, e: ast::Expr, name: Option<Symbol>) -> Result<ExprRef> {
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.expr_inner(e, name))
    }

    fn expr_inner(&mut self, e: ast::Expr, name: Option<Symbol>) -> Result<ExprRef> {
        let pos = self.pos(&e);
        Ok(Rc::new(match e {
            ast::Expr::Paren(p) => {
                return self.expr_named(p.expr().ok_or_else(|| self.missing(&p))?, name)
            }
            ast::Expr::Root(r) => return self.opt_expr(r.expr(), &r),
            ast::Expr::Error(_) => return Err(err("syntax error", pos)),
            ast::Expr::Literal(lit) => match lit.kind() {
                ast::LiteralKind::Integer(i) => match i.value() {
                    Ok(v) => Expr::Const(Value::Int(v)),
                    Err(_) => {
                        return Err(err(format!("invalid integer '{}'", i.syntax().text()), pos))
                    }
                },
                ast::LiteralKind::Float(f) => {
                    let text = f.syntax().to_string();
                    match f.value() {
                        Ok(v) if float_in_range(v, &text) => Expr::Const(Value::Float(v)),
                        _ => return Err(err(format!("invalid float '{text}'"), pos)),
                    }
                }
                ast::LiteralKind::Uri(u) => {
                    let text = u.syntax().text();
                    self.lint(
                        self.ctx.lints.url_literals,
                        format!("URL literals are disallowed. Consider using a string literal \"{text}\" instead (lint-url-literals)"),
                        pos,
                    )?;
                    Expr::Const(Value::string(text))
                }
            },
            ast::Expr::Ident(id) => {
                let text = id.syntax().text().to_string();
                if text == "__curPos" {
                    Expr::CurPos(pos)
                } else {
                    self.resolve(Symbol::new(&text), pos, 0)?
                }
            }
            ast::Expr::CurPos(_) => Expr::CurPos(pos),
            ast::Expr::Str(s) => return self.string(&s),
            ast::Expr::PathAbs(_) | ast::Expr::PathRel(_) | ast::Expr::PathHome(_) => {
                let p = match e {
                    ast::Expr::PathAbs(p) => ast::Path::PathAbs(p),
                    ast::Expr::PathRel(p) => ast::Path::PathRel(p),
                    ast::Expr::PathHome(p) => ast::Path::PathHome(p),
                    _ => unreachable!(),
                };
                return self.path(p, pos);
            }
            ast::Expr::PathSearch(p) => {
                let text = p.content().map(|c| c.text().to_owned()).unwrap_or_default();
                let inner = text
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned();
                Expr::Call {
                    func: self.var("__findFile", pos)?,
                    args: vec![
                        self.var("__nixPath", pos)?,
                        Rc::new(Expr::Const(Value::string(inner))),
                    ]
                    .into(),
                    pos,
                }
            }
            ast::Expr::List(l) => {
                let items = l
                    .items()
                    .map(|i| self.expr(i))
                    .collect::<Result<Vec<_>>>()?;
                Expr::List(items.into())
            }
            ast::Expr::Lambda(l) => Expr::Lambda(self.lambda(l, name, false)?),
            ast::Expr::Apply(_) => {
                let mut args = Vec::new();
                let mut cur = e.clone();
                loop {
                    match unparen_apply(cur) {
                        Ok(app) => {
                            args.push(app.argument().ok_or_else(|| self.missing(&app))?);
                            cur = app.lambda().ok_or_else(|| self.missing(&app))?;
                        }
                        Err(f) => {
                            cur = f;
                            break;
                        }
                    }
                }
                args.reverse();
                let func = self.expr(cur)?;
                let args = args
                    .into_iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<Vec<_>>>()?;
                Expr::Call {
                    func,
                    args: args.into(),
                    pos,
                }
            }
            ast::Expr::Select(s) => {
                let expr = self.opt_expr(s.expr(), &s)?;
                let path = self.attrpath(s.attrpath(), &s)?;
                let default = match s.default_expr() {
                    Some(d) => Some(self.expr(d)?),
                    None => None,
                };
                Expr::Select {
                    expr,
                    path,
                    default,
                    pos,
                }
            }
            ast::Expr::HasAttr(h) => {
                let expr = self.opt_expr(h.expr(), &h)?;
                let path = self.attrpath(h.attrpath(), &h)?;
                Expr::HasAttr { expr, path }
            }
            ast::Expr::IfElse(i) => Expr::If {
                cond: self.opt_expr(i.condition(), &i)?,
                then: self.opt_expr(i.body(), &i)?,
                else_: self.opt_expr(i.else_body(), &i)?,
                pos,
            },
            ast::Expr::Assert(a) => Expr::Assert {
                text: a
                    .condition()
                    .map(|c| Rc::from(c.syntax().text().to_string()))
                    .unwrap_or_else(|| Rc::from("")),
                cond: self.opt_expr(a.condition(), &a)?,
                body: self.opt_expr(a.body(), &a)?,
                pos,
            },
            ast::Expr::With(w) => {
                let attrs = self.opt_expr(w.namespace(), &w)?;
                self.scopes.push(Scope::With);
                let body = self.opt_expr(w.body(), &w);
                self.scopes.pop();
                Expr::With { attrs, body: body? }
            }
            ast::Expr::UnaryOp(u) => {
                let inner = self.opt_expr(u.expr(), &u)?;
                match u.operator() {
                    Some(ast::UnaryOpKind::Invert) => Expr::Not(inner, pos),
                    Some(ast::UnaryOpKind::Negate) => Expr::Neg(inner, pos),
                    None => return Err(self.missing(&u)),
                }
            }
            ast::Expr::BinOp(b) => {
                use ast::BinOpKind as K;
                let op = match b.operator() {
                    Some(K::Concat) => BinOp::Concat,
                    Some(K::Update) => BinOp::Update,
                    Some(K::Add) => BinOp::Add,
                    Some(K::Sub) => BinOp::Sub,
                    Some(K::Mul) => BinOp::Mul,
                    Some(K::Div) => BinOp::Div,
                    Some(K::And) => BinOp::And,
                    Some(K::Or) => BinOp::Or,
                    Some(K::Implication) => BinOp::Impl,
                    Some(K::Equal) => BinOp::Eq,
                    Some(K::NotEqual) => BinOp::NotEq,
                    Some(K::Less) => BinOp::Less,
                    Some(K::LessOrEq) => BinOp::LessEq,
                    Some(K::More) => BinOp::Greater,
                    Some(K::MoreOrEq) => BinOp::GreaterEq,
                    Some(K::PipeLeft) | Some(K::PipeRight) => {
                        return Err(err(
                            "experimental Nix feature 'pipe-operators' is disabled",
                            pos,
                        ))
                    }
                    None => return Err(self.missing(&b)),
                };
                let op_pos = b
                    .syntax()
                    .children_with_tokens()
                    .filter_map(|t| t.into_token())
                    .find(|t| ast::BinOpKind::from_kind(t.kind()).is_some())
                    .map(|t| Pos(self.ctx.base + u32::from(t.text_range().start())))
                    .unwrap_or(pos);
                Expr::Bin {
                    op,
                    lhs: self.opt_expr(b.lhs(), &b)?,
                    rhs: self.opt_expr(b.rhs(), &b)?,
                    pos: op_pos,
                }
            }
            ast::Expr::AttrSet(set) => {
                let rec = set.rec_token().is_some();
                let mut p = self.new_pattrs(rec, pos);
                self.collect(&mut p, &set)?;
                Expr::Attrs(self.lower_attrs(p)?)
            }
            ast::Expr::LetIn(l) => {
                let mut p = self.new_pattrs(true, pos);
                self.collect(&mut p, &l)?;
                // At the `let`, as Nix 2.26 reports it.
                if !p.dynamic.is_empty() {
                    return Err(err("dynamic attributes not allowed in let", pos));
                }
                let body_node = l.body().ok_or_else(|| self.missing(&l))?;
                return self.lower_let(p, body_node);
            }
            ast::Expr::LegacyLet(l) => {
                let mut p = self.new_pattrs(true, pos);
                self.collect(&mut p, &l)?;
                let attrs = Rc::new(Expr::Attrs(self.lower_attrs(p)?));
                Expr::Select {
                    expr: attrs,
                    path: vec![AttrKey::Static(Symbol::new("body"))].into(),
                    default: None,
                    pos,
                }
            }
        }))
    }

    fn new_pattrs(&self, rec: bool, pos: Pos) -> PAttrs {
        PAttrs {
            rec,
            statics: Vec::new(),
            index: HashMap::new(),
            dynamic: Vec::new(),
            inherit_from: Vec::new(),
            pos,
        }
    }

    /// Lowers a lambda. With `flat`, its frame continues the frame of the
    /// lambda whose body it is (the scope on top, see [`Lambda::flat`]).
    fn lambda(&mut self, l: ast::Lambda, name: Option<Symbol>, flat: bool) -> Result<Rc<Lambda>> {
        let pos = self.pos(&l);
        let param = l.param().ok_or_else(|| self.missing(&l))?;
        let body_node = l.body().ok_or_else(|| self.missing(&l))?;
        let prefix = if flat {
            match self.scopes.last() {
                // Every slot of a lambda's frame is named, the newest highest.
                Some(Scope::Static(names)) => Some(names.values().max().map_or(0, |&m| m + 1)),
                _ => None,
            }
        } else {
            None
        };
        let base = prefix.unwrap_or(0);
        match param {
            ast::Param::IdentParam(ip) => {
                let ident = ip.ident().ok_or_else(|| self.missing(&ip))?;
                let sym = Symbol::new(&ident.syntax().text().to_string());
                self.enter_frame(prefix, HashMap::from([(sym, base)]));
                let body = self.lambda_body(body_node, name);
                self.leave_frame(prefix);
                Ok(Rc::new(Lambda {
                    param: Param::Ident(sym),
                    body: body?,
                    pos,
                    name,
                    flat: prefix,
                }))
            }
            ast::Param::Pattern(pat) => {
                let mut names = HashMap::new();
                let mut entries = Vec::new();
                for entry in pat.pat_entries() {
                    let ident = entry.ident().ok_or_else(|| self.missing(&entry))?;
                    let sym = Symbol::new(&ident.syntax().text().to_string());
                    let epos = self.pos(&entry);
                    if names.insert(sym, base + entries.len() as u32).is_some() {
                        return Err(err(
                            format!("duplicate formal function argument '{sym}'"),
                            epos,
                        ));
                    }
                    entries.push((sym, entry.default(), epos));
                }
                let at = match pat.pat_bind() {
                    Some(b) => {
                        let ident = b.ident().ok_or_else(|| self.missing(&b))?;
                        let sym = Symbol::new(&ident.syntax().text().to_string());
                        if names.contains_key(&sym) {
                            return Err(err(
                                format!("duplicate formal function argument '{sym}'"),
                                self.pos(&b),
                            ));
                        }
                        names.insert(sym, base + entries.len() as u32);
                        Some(sym)
                    }
                    None => None,
                };
                self.enter_frame(prefix, names);
                let result = (|| {
                    let mut formals = Vec::new();
                    for (sym, default, fpos) in entries {
                        let default = match default {
                            Some(d) => Some(self.expr(d)?),
                            None => None,
                        };
                        formals.push(Formal {
                            name: sym,
                            default,
                            pos: fpos,
                        });
                    }
                    let body = self.lambda_body(body_node, name)?;
                    Ok(Rc::new(Lambda {
                        param: Param::Formals {
                            formals,
                            ellipsis: pat.ellipsis_token().is_some(),
                            at,
                        },
                        body,
                        pos,
                        name,
                        flat: prefix,
                    }))
                })();
                self.leave_frame(prefix);
                result
            }
        }
    }

    /// A lambda's body: a lambda there (`a: b: ...`) continues this frame.
    /// A lambda's body; a curried lambda in it has the same name (as Nix
    /// 2.26's `ExprLambda::setName`).
    fn lambda_body(&mut self, body: ast::Expr, name: Option<Symbol>) -> Result<ExprRef> {
        match unparen(body.clone()) {
            ast::Expr::Lambda(inner) => Ok(Rc::new(Expr::Lambda(self.lambda(inner, name, true)?))),
            _ => self.expr(body),
        }
    }

    /// Puts a lambda's parameters in scope: a new frame, or with `prefix`
    /// the frame on top, extended (a name given again is shadowed).
    fn enter_frame(&mut self, prefix: Option<u32>, names: HashMap<Symbol, u32>) {
        match (prefix, self.scopes.last_mut()) {
            (Some(_), Some(Scope::Static(top))) => {
                let shadowed: Vec<(Symbol, Option<u32>)> =
                    names.keys().map(|k| (*k, top.get(k).copied())).collect();
                top.extend(names);
                self.shadowed.push(shadowed);
            }
            _ => self.scopes.push(Scope::Static(names)),
        }
    }

    /// Undoes [`Self::enter_frame`].
    fn leave_frame(&mut self, prefix: Option<u32>) {
        match (prefix, self.scopes.last_mut()) {
            (Some(_), Some(Scope::Static(top))) => {
                for (name, old) in self.shadowed.pop().unwrap_or_default() {
                    match old {
                        Some(i) => top.insert(name, i),
                        None => top.remove(&name),
                    };
                }
            }
            _ => {
                self.scopes.pop();
            }
        }
    }

    fn attr_name(&mut self, a: &ast::Attr) -> Result<AttrKey> {
        match a {
            ast::Attr::Ident(id) => Ok(AttrKey::Static(Symbol::new(
                &id.syntax().text().to_string(),
            ))),
            ast::Attr::Str(s) => match self.static_string(s) {
                Some(text) => Ok(AttrKey::Static(Symbol::new(&text))),
                None => Ok(AttrKey::Dynamic(self.string(s)?)),
            },
            ast::Attr::Dynamic(d) => {
                let inner = d.expr().ok_or_else(|| self.missing(d))?;
                // `${"a"}` is as static as `a`.
                if let ast::Expr::Str(s) = unparen(inner.clone()) {
                    if let Some(text) = self.static_string(&s) {
                        return Ok(AttrKey::Static(Symbol::new(&text)));
                    }
                }
                Ok(AttrKey::Dynamic(self.expr(inner)?))
            }
        }
    }

    fn attrpath(
        &mut self,
        p: Option<ast::Attrpath>,
        parent: &impl AstNode,
    ) -> Result<Box<[AttrKey]>> {
        let p = p.ok_or_else(|| self.missing(parent))?;
        let keys = p
            .attrs()
            .map(|a| self.attr_name(&a))
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(self.missing(parent));
        }
        Ok(keys.into())
    }

    /// The text of a string without interpolations, if it has none.
    fn static_string(&self, s: &ast::Str) -> Option<String> {
        let parts = string_parts(s);
        let mut out = String::new();
        for p in parts {
            match p {
                StrPart::Text(t) | StrPart::Escaped(t) => out.push_str(&t),
                StrPart::Interp(_) => return None,
            }
        }
        Some(out)
    }

    fn string(&mut self, s: &ast::Str) -> Result<ExprRef> {
        let pos = self.pos(s);
        if s.syntax().text().contains_char('\0') {
            let text = s.syntax().text().to_string();
            let inner = text
                .trim_matches('"')
                .trim_start_matches("''")
                .trim_end_matches("''");
            return Err(err(
                format!(
                    "input string '{}' cannot be represented as Nix string because it contains null bytes",
                    inner.replace('\0', "␀")
                ),
                pos,
            ));
        }
        let parts = string_parts(s);
        let mut out: Vec<ExprRef> = Vec::new();
        let mut text = String::new();
        let mut has_interp = false;
        for p in parts {
            match p {
                StrPart::Text(t) | StrPart::Escaped(t) => text.push_str(&t),
                StrPart::Interp(i) => {
                    has_interp = true;
                    if !text.is_empty() {
                        out.push(Rc::new(Expr::Const(Value::string(std::mem::take(
                            &mut text,
                        )))));
                    }
                    let inner = i.expr().ok_or_else(|| self.missing(&i))?;
                    out.push(self.expr(inner)?);
                }
            }
        }
        if !has_interp {
            return Ok(Rc::new(Expr::Const(Value::string(text))));
        }
        if !text.is_empty() {
            out.push(Rc::new(Expr::Const(Value::string(text))));
        }
        Ok(Rc::new(Expr::Interpolate {
            parts: out.into(),
            pos,
        }))
    }

    fn lint(&self, level: LintLevel, msg: String, pos: Pos) -> Result<()> {
        match level {
            LintLevel::Off => Ok(()),
            LintLevel::Warn => {
                eprintln!("warning: {msg}");
                Ok(())
            }
            LintLevel::Fatal => Err(err(msg, pos)),
        }
    }

    fn path(&mut self, p: ast::Path, pos: Pos) -> Result<ExprRef> {
        let full = p.syntax().text().to_string();
        let lints = self.ctx.lints;
        if full.starts_with('/') {
            self.lint(lints.absolute_path_literals, format!("absolute path literals are not portable. Consider replacing path literal '{full}' by a string, relative path, or parameter (lint-absolute-path-literals)"), pos)?;
        } else if full.starts_with('~') {
            self.lint(lints.absolute_path_literals, format!("home path literals are not portable. Consider replacing path literal '{full}' by a string, relative path, or parameter (lint-absolute-path-literals)"), pos)?;
        } else if !full.starts_with("./") && !full.starts_with("../") {
            self.lint(lints.short_path_literals, format!("relative path literal '{full}' should be prefixed with '.' for clarity: './{full}' (lint-short-path-literals)"), pos)?;
        }
        let parts = p.parts();
        let mut out: Vec<ExprRef> = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            match part {
                ast::InterpolPart::Literal(lit) => {
                    let text = lit.text();
                    if i == 0 {
                        let mut resolved = self.resolve_path_literal(text, pos)?;
                        if text.ends_with('/') && resolved.len() > 1 {
                            resolved.push('/');
                        }
                        out.push(Rc::new(Expr::Const(Value::path(resolved))));
                    } else {
                        out.push(Rc::new(Expr::Const(Value::string(text))));
                    }
                }
                ast::InterpolPart::Interpolation(interp) => {
                    let inner = interp.expr().ok_or_else(|| self.missing(&interp))?;
                    out.push(self.expr(inner)?);
                }
            }
        }
        if out.len() == 1 {
            if let Expr::Const(Value::Path(_)) = &*out[0] {
                return Ok(out.pop().expect("one part"));
            }
        }
        Ok(Rc::new(Expr::PathInterpolate {
            parts: out.into(),
            pos,
        }))
    }

    fn resolve_path_literal(&self, text: &str, pos: Pos) -> Result<String> {
        if let Some(rest) = text.strip_prefix('~') {
            let home = self
                .ctx
                .home
                .ok_or_else(|| err("cannot resolve '~': HOME is not set", pos))?;
            // Nix 2.8 joins `~` paths to HOME as they are (no `..` folding).
            return Ok(format!("{home}{rest}"));
        }
        if text.starts_with('/') {
            return Ok(canon_path(text));
        }
        Ok(canon_path(&format!("{}/{}", self.ctx.base_dir, text)))
    }

    // ----- attribute sets -----

    fn collect(&mut self, into: &mut PAttrs, node: &impl HasEntry) -> Result<()> {
        for entry in node.entries() {
            match entry {
                ast::Entry::Inherit(inh) => self.collect_inherit(into, &inh)?,
                ast::Entry::AttrpathValue(av) => {
                    let path = av.attrpath().ok_or_else(|| self.missing(&av))?;
                    let value = av.value().ok_or_else(|| self.missing(&av))?;
                    let attrs: Vec<ast::Attr> = path.attrs().collect();
                    let pos = self.pos(&path);
                    self.add_attr(into, &attrs, value, pos)?;
                }
            }
        }
        Ok(())
    }

    fn collect_inherit(&mut self, into: &mut PAttrs, inh: &ast::Inherit) -> Result<()> {
        let from = match inh.from() {
            Some(f) => {
                let e = f.expr().ok_or_else(|| self.missing(&f))?;
                into.inherit_from.push(e);
                Some(into.inherit_from.len() as u32 - 1)
            }
            None => None,
        };
        for attr in inh.attrs() {
            let apos = self.pos(&attr);
            let sym = match &attr {
                ast::Attr::Ident(id) => Symbol::new(&id.syntax().text().to_string()),
                ast::Attr::Str(s) => match self.static_string(s) {
                    Some(t) => Symbol::new(&t),
                    None => return Err(err("dynamic attributes not allowed in inherit", apos)),
                },
                ast::Attr::Dynamic(d) => match d.expr().map(unparen) {
                    Some(ast::Expr::Str(s)) => match self.static_string(&s) {
                        Some(t) => Symbol::new(&t),
                        None => return Err(err("dynamic attributes not allowed in inherit", apos)),
                    },
                    _ => return Err(err("dynamic attributes not allowed in inherit", apos)),
                },
            };
            // Nix 2.26 gives each inherited name its own position (2.8 gave
            // all of them the position just after `inherit` or `(e)`).
            if let Some(&i) = into.index.get(&sym) {
                return Err(dup_attr(&sym.to_string(), apos, into.statics[i].1));
            }
            let val = match from {
                Some(k) => PVal::InheritFrom(k, sym),
                None => PVal::Inherit(sym, apos),
            };
            into.index.insert(sym, into.statics.len());
            into.statics.push((sym, apos, val));
        }
        Ok(())
    }

    fn add_attr(
        &mut self,
        into: &mut PAttrs,
        path: &[ast::Attr],
        value: ast::Expr,
        pos: Pos,
    ) -> Result<()> {
        let (first, rest) = path
            .split_first()
            .ok_or_else(|| err("empty attribute path", pos))?;
        let key = self.collect_key(first)?;
        if rest.is_empty() {
            match key {
                CKey::Static(sym) => {
                    if let Some(&i) = into.index.get(&sym) {
                        // Both sets: merge (Nix keeps the first one's `rec`).
                        let new_is_set = matches!(unparen(value.clone()), ast::Expr::AttrSet(_));
                        let old_pos = into.statics[i].1;
                        if new_is_set && self.make_mergeable(&mut into.statics[i].2)? {
                            let ast::Expr::AttrSet(set) = unparen(value) else {
                                unreachable!()
                            };
                            let PVal::Attrs(target) = &mut into.statics[i].2 else {
                                unreachable!()
                            };
                            return self.collect(target, &set);
                        }
                        return Err(dup_attr(&sym.to_string(), pos, old_pos));
                    }
                    into.index.insert(sym, into.statics.len());
                    into.statics.push((sym, pos, PVal::Expr(value)));
                }
                CKey::Dynamic(a) => into.dynamic.push((a, PVal::Expr(value), pos)),
            }
            return Ok(());
        }
        match key {
            CKey::Static(sym) => {
                if let Some(&i) = into.index.get(&sym) {
                    let old_pos = into.statics[i].1;
                    if !self.make_mergeable(&mut into.statics[i].2)? {
                        let full = path_string(path);
                        return Err(dup_attr(&full, pos, old_pos));
                    }
                    let PVal::Attrs(target) = &mut into.statics[i].2 else {
                        unreachable!()
                    };
                    self.add_attr(target, rest, value, pos)
                } else {
                    let mut nested = self.new_pattrs(false, pos);
                    self.add_attr(&mut nested, rest, value, pos)?;
                    into.index.insert(sym, into.statics.len());
                    into.statics.push((sym, pos, PVal::Attrs(nested)));
                    Ok(())
                }
            }
            CKey::Dynamic(a) => {
                let mut nested = self.new_pattrs(false, pos);
                self.add_attr(&mut nested, rest, value, pos)?;
                into.dynamic.push((a, PVal::Attrs(nested), pos));
                Ok(())
            }
        }
    }

    /// Turns a binding whose value is an attribute set literal into a
    /// [`PVal::Attrs`] that more bindings can be added to.
    fn make_mergeable(&mut self, v: &mut PVal) -> Result<bool> {
        match v {
            PVal::Attrs(_) => Ok(true),
            PVal::Expr(e) => {
                if let ast::Expr::AttrSet(set) = unparen(e.clone()) {
                    let mut p = self.new_pattrs(set.rec_token().is_some(), self.pos(&set));
                    self.collect(&mut p, &set)?;
                    *v = PVal::Attrs(p);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            _ => Ok(false),
        }
    }

    fn collect_key(&mut self, a: &ast::Attr) -> Result<CKey> {
        match a {
            ast::Attr::Ident(id) => Ok(CKey::Static(Symbol::new(&id.syntax().text().to_string()))),
            ast::Attr::Str(s) => match self.static_string(s) {
                Some(t) => Ok(CKey::Static(Symbol::new(&t))),
                None => Ok(CKey::Dynamic(a.clone())),
            },
            ast::Attr::Dynamic(d) => {
                if let Some(ast::Expr::Str(s)) = d.expr().map(unparen) {
                    if let Some(t) = self.static_string(&s) {
                        return Ok(CKey::Static(Symbol::new(&t)));
                    }
                }
                Ok(CKey::Dynamic(a.clone()))
            }
        }
    }

    fn lower_pval(
        &mut self,
        v: PVal,
        name: Symbol,
        skip_for_inherit: usize,
    ) -> Result<BindingValue> {
        Ok(match v {
            PVal::Expr(e) => BindingValue::Expr(self.expr_named(e, Some(name))?),
            PVal::Attrs(p) => BindingValue::Expr(Rc::new(Expr::Attrs(self.lower_attrs(p)?))),
            PVal::Inherit(sym, pos) => {
                BindingValue::Inherit(Rc::new(self.resolve(sym, pos, skip_for_inherit)?))
            }
            PVal::InheritFrom(k, sym) => BindingValue::InheritFrom(k, sym),
        })
    }

    fn lower_attrs(&mut self, p: PAttrs) -> Result<Rc<AttrsExpr>> {
        let PAttrs {
            rec,
            mut statics,
            dynamic,
            inherit_from,
            pos,
            ..
        } = p;
        // Slots and the built set both follow name order.
        statics.sort_by_key(|a| a.0);
        if rec {
            let names = statics
                .iter()
                .enumerate()
                .map(|(i, (s, _, _))| (*s, i as u32))
                .collect();
            self.scopes.push(Scope::Static(names));
        }
        let skip = usize::from(rec);
        let result = (|| {
            let mut bindings = Vec::with_capacity(statics.len());
            for (name, bpos, v) in statics {
                bindings.push(Binding {
                    name,
                    pos: bpos,
                    value: self.lower_pval(v, name, skip)?,
                });
            }
            let inherit_from = inherit_from
                .into_iter()
                .map(|e| self.expr(e))
                .collect::<Result<Vec<_>>>()?;
            let mut dyns = Vec::new();
            for (attr, v, dpos) in dynamic {
                let name = match self.attr_name(&attr)? {
                    AttrKey::Dynamic(e) => e,
                    AttrKey::Static(s) => Rc::new(Expr::Const(Value::string(s.as_str()))),
                };
                let value = match self.lower_pval(v, Symbol::new(""), skip)? {
                    BindingValue::Expr(e) => e,
                    _ => unreachable!("dynamic bindings are never inherited"),
                };
                dyns.push(DynamicBinding {
                    name,
                    value,
                    pos: dpos,
                });
            }
            Ok(Rc::new(AttrsExpr {
                rec,
                bindings,
                inherit_from,
                dynamic: dyns,
                pos,
            }))
        })();
        if rec {
            self.scopes.pop();
        }
        result
    }

    fn lower_let(&mut self, p: PAttrs, body: ast::Expr) -> Result<ExprRef> {
        let names = p
            .statics
            .iter()
            .enumerate()
            .map(|(i, (s, _, _))| (*s, i as u32))
            .collect();
        let own: std::collections::HashSet<&'static str> =
            p.statics.iter().map(|(s, _, _)| s.as_str()).collect();
        self.scopes.push(Scope::Static(names));
        let result = (|| {
            let mut bindings = Vec::with_capacity(p.statics.len());
            for (name, bpos, v) in p.statics {
                let value = match v {
                    PVal::Expr(e) if !mentions_any(&e, &own) => {
                        // Lowered where the `let` is: its variables are the
                        // enclosing scope's (see `BindingValue::Outer`).
                        let scope = self.scopes.pop().expect("the let's scope");
                        let lowered = self.expr_named(e, Some(name));
                        self.scopes.push(scope);
                        BindingValue::Outer(lowered?)
                    }
                    v => self.lower_pval(v, name, 1)?,
                };
                bindings.push(Binding {
                    name,
                    pos: bpos,
                    value,
                });
            }
            let inherit_from = p
                .inherit_from
                .into_iter()
                .map(|e| self.expr(e))
                .collect::<Result<Vec<_>>>()?;
            let body = self.expr(body)?;
            Ok(Rc::new(Expr::Let(Rc::new(LetExpr {
                bindings,
                inherit_from,
                body,
            }))))
        })();
        self.scopes.pop();
        result
    }
}

/// Whether `e` contains an identifier spelled as one of `names`: a superset
/// of the variables it uses (attribute names and shadowed names count too),
/// which is what deciding that it uses none of them needs.
fn mentions_any(e: &ast::Expr, names: &std::collections::HashSet<&'static str>) -> bool {
    e.syntax().descendants_with_tokens().any(|el| {
        el.as_token()
            .is_some_and(|t| t.kind() == SyntaxKind::TOKEN_IDENT && names.contains(t.text()))
    })
}

enum CKey {
    Static(Symbol),
    Dynamic(ast::Attr),
}

fn path_string(path: &[ast::Attr]) -> String {
    path.iter()
        .map(|a| a.syntax().text().to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn dup_attr(name: &str, pos: Pos, prev: Pos) -> Box<EvalError> {
    let prev = prev
        .resolve()
        .map(|l| l.to_string())
        .unwrap_or_else(|| "«unknown»".to_owned());
    err(format!("attribute '{name}' already defined at {prev}"), pos)
}

fn unparen_apply(e: ast::Expr) -> std::result::Result<ast::Apply, ast::Expr> {
    match e {
        ast::Expr::Apply(a) => Ok(a),
        other => Err(other),
    }
}

// ----- strings -----

enum StrPart {
    /// Literal text (subject to indentation stripping in `''` strings).
    Text(String),
    /// The result of a `''\x` escape: it ends a line's leading whitespace
    /// when the indentation is measured, and is stripped like text.
    Escaped(String),
    Interp(ast::Interpol),
}

fn string_parts(s: &ast::Str) -> Vec<StrPart> {
    let multiline = s
        .syntax()
        .children_with_tokens()
        .next()
        .and_then(|t| t.into_token())
        .is_some_and(|t| t.text() == "''");
    let mut raw: Vec<StrPart> = Vec::new();
    for part in s.parts() {
        match part {
            ast::InterpolPart::Literal(lit) => {
                let text = lit.syntax().text();
                if multiline {
                    unescape_indented(text, &mut raw);
                } else {
                    push_text(&mut raw, unescape_plain(text), false);
                }
            }
            ast::InterpolPart::Interpolation(i) => raw.push(StrPart::Interp(i)),
        }
    }
    if multiline {
        // The opening `''` swallows the rest of its line if that is blank.
        if let Some(StrPart::Text(t)) = raw.first_mut() {
            let blank = t.bytes().take_while(|&b| b == b' ').count();
            if t.as_bytes().get(blank) == Some(&b'\n') {
                t.drain(..=blank);
            }
        }
        strip_indentation(raw)
    } else {
        raw
    }
}

fn push_text(parts: &mut Vec<StrPart>, text: String, escaped: bool) {
    if escaped {
        parts.push(StrPart::Escaped(text));
        return;
    }
    if let Some(StrPart::Text(t)) = parts.last_mut() {
        t.push_str(&text);
    } else {
        parts.push(StrPart::Text(text));
    }
}

/// Unescapes a `"..."` string segment. Mirrors `unescapeStr`.
pub fn unescape_plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '\r' => {
                out.push('\n');
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Splits a `''...''` segment into literal text and escapes.
fn unescape_indented(s: &str, out: &mut Vec<StrPart>) {
    let mut text = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\'' && b.get(i + 1) == Some(&b'\'') {
            match b.get(i + 2) {
                Some(b'$') => {
                    text.push('$');
                    i += 3;
                }
                Some(b'\'') => {
                    text.push_str("''");
                    i += 3;
                }
                Some(b'\\') => {
                    if !text.is_empty() {
                        push_text(out, std::mem::take(&mut text), false);
                    }
                    let rest = &s[i + 3..];
                    let c = rest.chars().next().unwrap_or('\\');
                    let esc = match c {
                        'n' => "\n".to_owned(),
                        'r' => "\r".to_owned(),
                        't' => "\t".to_owned(),
                        c => c.to_string(),
                    };
                    push_text(out, esc, true);
                    i += 3 + c.len_utf8();
                }
                _ => {
                    text.push_str("''");
                    i += 2;
                }
            }
        } else {
            let c = s[i..].chars().next().expect("in bounds");
            text.push(c);
            i += c.len_utf8();
        }
    }
    if !text.is_empty() {
        push_text(out, text, false);
    }
}

/// Nix 2.8's `stripIndentation`: escapes and interpolations end a line's
/// leading whitespace; whitespace-only last lines are dropped.
fn strip_indentation(parts: Vec<StrPart>) -> Vec<StrPart> {
    let mut at_start = true;
    let mut min_indent = usize::MAX;
    let mut cur_indent = 0;
    for p in &parts {
        match p {
            StrPart::Text(s) => {
                for c in s.chars() {
                    if at_start {
                        if c == ' ' {
                            cur_indent += 1;
                        } else if c == '\n' {
                            cur_indent = 0;
                        } else {
                            at_start = false;
                            min_indent = min_indent.min(cur_indent);
                        }
                    } else if c == '\n' {
                        at_start = true;
                        cur_indent = 0;
                    }
                }
            }
            _ => {
                if at_start {
                    at_start = false;
                    min_indent = min_indent.min(cur_indent);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(parts.len());
    at_start = true;
    let mut dropped = 0;
    let n = parts.len();
    for (i, p) in parts.into_iter().enumerate() {
        match p {
            // Escapes are stripped like text here (unlike when measuring the
            // indentation above): after `''\n` a new line starts, as in Nix.
            StrPart::Text(s) | StrPart::Escaped(s) => {
                let mut s2 = String::with_capacity(s.len());
                for c in s.chars() {
                    if at_start {
                        if c == ' ' {
                            if dropped >= min_indent {
                                s2.push(c);
                            }
                            dropped += 1;
                        } else if c == '\n' {
                            dropped = 0;
                            s2.push(c);
                        } else {
                            at_start = false;
                            dropped = 0;
                            s2.push(c);
                        }
                    } else {
                        s2.push(c);
                        if c == '\n' {
                            at_start = true;
                        }
                    }
                }
                if i + 1 == n {
                    if let Some(p) = s2.rfind('\n') {
                        if s2[p + 1..].chars().all(|c| c == ' ') {
                            s2.truncate(p + 1);
                        }
                    }
                }
                out.push(StrPart::Text(s2));
            }
            other => {
                at_start = false;
                dropped = 0;
                out.push(other);
            }
        }
    }
    out
}

/// Nix's `canonPath` without symlink resolution: drops `.`, `..` and repeated slashes.
pub fn canon_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len());
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    out
}

/// Whether a float literal is one Nix 2.8 accepts: its lexer reads literals with
/// `strtod`, and refuses those for which it reports `ERANGE`: overflow to
/// infinity, and underflow (a non-zero literal whose value is subnormal or 0).
fn float_in_range(v: f64, text: &str) -> bool {
    if !nix_float_syntax(text) {
        return false;
    }
    if v.is_infinite() {
        return false;
    }
    if v != 0.0 {
        return v.abs() >= f64::MIN_POSITIVE;
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    !mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

/// Whether `text` is a float as Nix's lexer reads one:
/// `(([1-9][0-9]*\.[0-9]*)|(0?\.[0-9]+))([Ee][+-]?[0-9]+)?`. rnix is more
/// lenient (`0.`, `01.5`), which Nix reads as other tokens and refuses.
fn nix_float_syntax(text: &str) -> bool {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let Some((int, frac)) = mantissa.split_once('.') else {
        return false;
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = if int.is_empty() || int == "0" {
        !frac.is_empty() && digits(frac)
    } else {
        !int.starts_with('0') && digits(int) && digits(frac)
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canon() {
        assert_eq!(canon_path("/a/./b//c/../d/"), "/a/b/d");
        assert_eq!(canon_path("/.."), "/");
        assert_eq!(canon_path("/"), "/");
    }

    fn lower(text: &str) -> ExprRef {
        let scope = BaseScope::default();
        let ctx = LowerCtx {
            lints: Lints::default(),
            base: 0,
            base_dir: "/",
            home: None,
            base_scope: &scope,
        };
        parse(text, &ctx).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    /// Which `let` bindings are lowered in the enclosing scope: those that
    /// name none of the `let`'s bindings (the identifier test is syntactic,
    /// so an attribute named like one keeps a binding inside).
    #[test]
    fn let_bindings_that_use_no_sibling_float_out() {
        let Expr::Lambda(l) =
            &*lower("z: let f = x: x + z; s = { a = z; }; g = y: f y; h = { f = 1; }; k = z; in g")
        else {
            panic!("a lambda");
        };
        let Expr::Let(l) = &*l.body else {
            panic!("a let");
        };
        let outer: Vec<(&str, bool)> = l
            .bindings
            .iter()
            .map(|b| (b.name.as_str(), matches!(b.value, BindingValue::Outer(_))))
            .collect();
        assert_eq!(
            outer,
            [
                ("f", true),
                ("s", true),
                ("g", false),
                ("h", false),
                ("k", true)
            ]
        );
        // Floated, `z` is the enclosing lambda's slot seen from there.
        let k = l.bindings.iter().find(|b| b.name.as_str() == "k").unwrap();
        let BindingValue::Outer(e) = &k.value else {
            unreachable!()
        };
        assert!(matches!(
            **e,
            Expr::Var {
                depth: 0,
                idx: 0,
                ..
            }
        ));
    }

    #[test]
    fn unescape() {
        assert_eq!(unescape_plain(r#"a\nb\"\$\{"#), "a\nb\"${");
    }
}
