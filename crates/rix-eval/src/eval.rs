//! The interpreter: forcing, calling, selecting, coercing.
//!
//! [`Evaluator::eval`] walks [`crate::ast`] in an environment and returns a
//! value in weak head normal form; sub-expressions become [`Thunk`]s, which
//! are blackholed while being forced (to detect infinite recursion) and
//! overwritten with their value afterwards. Native stack is grown on demand
//! with `stacker`, and the call depth is bounded. Mirrors `EvalState::eval`,
//! `callFunction`, `forceValue`, `coerceToString` and `eqValues` in Nix's
//! `eval.cc`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rix_formats::store_path::FileIngestionMethod;
use rix_formats::HashAlgo;

use crate::ast::{AttrKey, AttrsExpr, BinOp, BindingValue, Expr, ExprRef, LetExpr, Param};
use crate::error::{type_error, ErrorKind, EvalError, Result};
use crate::lower::{self, canon_path, BaseScope, LowerCtx};
use crate::source::{add_source, Origin, Pos};
use crate::store::{DryRunStore, EvalStore};
use crate::symbol::Symbol;
use crate::value::{
    Attr, Attrs, Closure, Context, Env, NixString, PrimOp, PrimOpApp, Slots, Thunk, ThunkState,
    Value,
};

/// One `-I` / `NIX_PATH` entry: `prefix=path` or a bare `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPathEntry {
    pub prefix: String,
    pub path: String,
}

impl SearchPathEntry {
    /// Parses `prefix=path` or `path`.
    pub fn parse(s: &str) -> SearchPathEntry {
        match s.split_once('=') {
            Some((prefix, path)) => SearchPathEntry {
                prefix: prefix.to_owned(),
                path: path.to_owned(),
            },
            None => SearchPathEntry {
                prefix: String::new(),
                path: s.to_owned(),
            },
        }
    }

    /// Parses a colon-separated `NIX_PATH`.
    pub fn parse_nix_path(s: &str) -> Vec<SearchPathEntry> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(SearchPathEntry::parse)
            .collect()
    }
}

/// Receives `builtins.trace` messages (without `trace: `) and
/// `builtins.warn` warnings (whole: `evaluation warning: ...`).
pub type TraceSink = Box<dyn FnMut(&str)>;

/// How an [`Evaluator`] is set up.
pub struct EvalOptions {
    /// `-I` entries first, then `NIX_PATH`'s.
    pub search_path: Vec<SearchPathEntry>,
    pub store: Rc<dyn EvalStore>,
    /// `$HOME` for `~` paths; `None` to read the environment.
    pub home: Option<String>,
    /// `builtins.currentSystem`.
    pub system: String,
    /// Bound on nested function calls (Nix's `max-call-depth`).
    pub max_call_depth: usize,
    /// Where `builtins.trace` writes; stderr when `None`.
    pub trace_sink: Option<TraceSink>,
    /// Restricts impure builtins (`getEnv`, `currentTime`, ...) as `--pure-eval` does.
    pub pure: bool,
    /// Enabled experimental features (`parse-toml-timestamps`, ...).
    pub features: Vec<String>,
    /// `--lint-*` settings.
    pub lints: lower::Lints,
    /// Record every function call on the way out of an error
    /// (`--show-trace`): "while calling 'f'", "from call site".
    pub show_trace: bool,
    /// `builtins.warn` fails after printing (the `abort-on-warn` setting).
    pub abort_on_warn: bool,
    /// `builtins.traceVerbose` traces (the `trace-verbose` setting).
    pub trace_verbose: bool,
    /// What the fetchers (`fetchTree`, `fetchGit`, `fetchTarball`, ...) read:
    /// `tarball-ttl`, `allow-dirty`, the cache directory, ...
    pub fetch_settings: rix_fetch::FetchSettings,
    /// Builtins defined by crates above the evaluator (flakes' `getFlake`),
    /// installed with the others.
    pub extra_primops: Vec<ExtraPrimOp>,
}

/// A builtin from outside the evaluator: its name in `builtins` (and as
/// `__name`), arity, function, and the experimental feature it needs.
#[derive(Clone)]
pub struct ExtraPrimOp {
    pub name: &'static str,
    pub arity: usize,
    pub f: crate::value::PrimOpFn,
    pub feature: Option<&'static str>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            search_path: Vec::new(),
            store: Rc::new(DryRunStore::default()),
            home: None,
            system: default_system(),
            // Nix 2.8 (8 MiB stack) recurses 70,000 calls deep and fails
            // before 80,000: the same programs succeed and fail here.
            max_call_depth: 10_000,
            trace_sink: None,
            pure: false,
            features: Vec::new(),
            lints: lower::Lints::default(),
            show_trace: false,
            abort_on_warn: false,
            trace_verbose: false,
            fetch_settings: rix_fetch::FetchSettings::default(),
            extra_primops: Vec::new(),
        }
    }
}

fn default_system() -> String {
    let arch = std::env::consts::ARCH;
    let os = std::env::consts::OS;
    format!("{arch}-{os}")
}

/// Options for [`Evaluator::coerce_to_string`].
#[derive(Clone, Copy)]
pub struct Coerce {
    /// Also numbers, booleans, null and lists (`toString`, not `"${...}"`).
    pub more: bool,
    /// Copy paths to the store (`"${./x}"`) rather than printing them.
    pub copy_to_store: bool,
    /// The frame Nix 2.26 adds to a value that cannot be coerced ("while
    /// evaluating the first argument passed to builtins.toString").
    pub ctx: &'static str,
}

/// A Nix evaluator with its caches.
pub struct Evaluator {
    pub(crate) base_env: Rc<Env>,
    pub(crate) base_scope: BaseScope,
    pub(crate) builtins: Value,
    pub(crate) opts: EvalOptions,
    pub(crate) import_cache: HashMap<String, Value>,
    pub(crate) src_to_store: HashMap<String, String>,
    /// Modulo hashes of the derivations instantiated so far (Nix's `drvHashes`),
    /// by `.drv` path (hashed with FxHash: a store path's hash part is already
    /// a digest).
    pub(crate) drv_hashes:
        HashMap<rix_formats::StorePath, rix_formats::derivation::DrvHash, crate::symbol::FxBuild>,
    pub(crate) call_depth: usize,
    pub(crate) force_depth: usize,
    /// Scratch space for string interpolation.
    str_buf: String,
    pub(crate) home: Option<String>,
    /// `addErrorContext` depth etc. are carried on errors; nothing else here.
    pub(crate) syms: Syms,
    /// The fetchers' settings and cache, opened on the first fetch.
    pub(crate) fetchers: std::cell::OnceCell<rix_fetch::Fetchers>,
}

/// Symbols the evaluator looks up often.
pub(crate) struct Syms {
    pub functor: Symbol,
    pub to_string: Symbol,
    pub out_path: Symbol,
    pub type_: Symbol,
    pub drv_path: Symbol,
    pub name: Symbol,
    pub value: Symbol,
    pub overrides: Symbol,
}

impl Syms {
    fn new() -> Syms {
        Syms {
            functor: Symbol::new("__functor"),
            to_string: Symbol::new("__toString"),
            out_path: Symbol::new("outPath"),
            type_: Symbol::new("type"),
            drv_path: Symbol::new("drvPath"),
            name: Symbol::new("name"),
            value: Symbol::new("value"),
            overrides: Symbol::new("__overrides"),
        }
    }
}

const RED_ZONE: usize = 128 * 1024;
const STACK_GROWTH: usize = 4 * 1024 * 1024;

impl Evaluator {
    pub fn new(opts: EvalOptions) -> Evaluator {
        let home = opts.home.clone().or_else(|| std::env::var("HOME").ok());
        let mut ev = Evaluator {
            base_env: Env::new(None, Slots::new()),
            base_scope: BaseScope::default(),
            builtins: Value::Null,
            opts,
            import_cache: HashMap::new(),
            src_to_store: HashMap::new(),
            drv_hashes: HashMap::default(),
            call_depth: 0,
            force_depth: 0,
            str_buf: String::new(),
            home,
            syms: Syms::new(),
            fetchers: std::cell::OnceCell::new(),
        };
        crate::builtins::install(&mut ev);
        ev
    }

    pub fn store(&self) -> &Rc<dyn EvalStore> {
        &self.opts.store
    }

    pub fn options(&self) -> &EvalOptions {
        &self.opts
    }

    pub fn options_mut(&mut self) -> &mut EvalOptions {
        &mut self.opts
    }

    /// The `builtins` attribute set.
    pub fn builtins(&self) -> &Value {
        &self.builtins
    }

    // ----- parsing -----

    /// Parses `text` from `origin`, resolving relative paths against `base_dir`.
    pub fn parse(&self, text: &str, origin: Origin, base_dir: &str) -> Result<ExprRef> {
        let text: Rc<str> = Rc::from(normalize_newlines(text).as_ref());
        let base = add_source(origin, text.clone());
        let ctx = LowerCtx {
            lints: self.opts.lints,
            base,
            base_dir,
            home: self.home.as_deref(),
            base_scope: &self.base_scope,
        };
        lower::parse(&text, &ctx)
    }

    /// Parses a file for `scopedImport`: `scope`'s names shadow the builtins.
    pub(crate) fn parse_scoped(
        &self,
        text: &str,
        path: &str,
        base_dir: &str,
        scope: &Attrs,
    ) -> Result<ExprRef> {
        self.parse_in_scope(text, Origin::Path(Rc::from(path)), base_dir, scope)
    }

    /// Parses `text` with the names of `scope` in scope (shadowing the
    /// builtins); evaluate it with [`Self::eval_in_scope`].
    pub fn parse_in_scope(
        &self,
        text: &str,
        origin: Origin,
        base_dir: &str,
        scope: &Attrs,
    ) -> Result<ExprRef> {
        let text: Rc<str> = Rc::from(normalize_newlines(text).as_ref());
        let base = add_source(origin, text.clone());
        let extra: HashMap<Symbol, u32> = scope
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name, i as u32))
            .collect();
        // The scope frame sits between the file and the base environment.
        let ctx = LowerCtx {
            lints: self.opts.lints,
            base,
            base_dir,
            home: self.home.as_deref(),
            base_scope: &self.base_scope,
        };
        lower::parse_with_scope(&text, &ctx, Some(extra))
    }

    /// Evaluates an expression parsed by [`Self::parse_in_scope`] with the
    /// same `scope`.
    pub fn eval_in_scope(&mut self, expr: &ExprRef, scope: &Attrs) -> Result<Value> {
        let env = Env::new(
            Some(self.base_env.clone()),
            scope.iter().map(|a| a.value.clone()).collect::<Slots>(),
        );
        self.eval(expr, &env)
    }

    pub fn has_feature(&self, name: &str) -> bool {
        self.opts.features.iter().any(|f| f == name)
    }

    /// Evaluates an expression to weak head normal form in the base environment.
    pub fn eval_root(&mut self, expr: &ExprRef) -> Result<Value> {
        let env = self.base_env.clone();
        self.eval(expr, &env)
    }

    /// Where the path `logical` of evaluation is on disk. Evaluation sees
    /// store paths as `/nix/store/...`; a store kept elsewhere (a chroot store,
    /// `--store /tmp/root`) has them under its root.
    pub fn fs_path(&self, logical: &str) -> std::path::PathBuf {
        let store = &self.opts.store;
        if let Ok((sp, rest)) = store.store_dir().parse_prefix(logical) {
            let real = store.real_path(&sp);
            return match rest.trim_start_matches('/') {
                "" => real,
                rest => real.join(rest),
            };
        }
        std::path::PathBuf::from(logical)
    }

    /// Parses and evaluates `path` (or `path/default.nix`), cached per file.
    pub fn import_file(&mut self, path: &str, pos: Pos) -> Result<Value> {
        let mut path = path.to_owned();
        if self.fs_path(&path).is_dir() {
            path = format!("{}/default.nix", path.trim_end_matches('/'));
        }
        if let Some(v) = self.import_cache.get(&path) {
            return Ok(v.clone());
        }
        if let Some(src) = path
            .strip_prefix(crate::builtins::COREPKGS_DIR)
            .and_then(|f| crate::builtins::corepkg(f.trim_start_matches('/')))
        {
            let expr = self.parse(src, Origin::Path(Rc::from(path.as_str())), "/")?;
            let v = self.eval_root(&expr)?;
            self.import_cache.insert(path, v.clone());
            return Ok(v);
        }
        let text = std::fs::read(self.fs_path(&path)).map_err(|e| {
            let msg = match e.kind() {
                std::io::ErrorKind::NotFound => format!("path '{path}' does not exist"),
                _ => format!("opening file '{path}': {}", io_msg(&e)),
            };
            EvalError::new(ErrorKind::Io, msg, pos)
        })?;
        let text = String::from_utf8(text).map_err(|_| {
            EvalError::new(
                ErrorKind::Parse,
                format!("file '{path}' is not valid UTF-8, which rix requires of Nix sources"),
                pos,
            )
        })?;
        let dir = parent_dir(&path);
        let expr = self.parse(&text, Origin::Path(Rc::from(path.as_str())), &dir)?;
        let v = self.eval_root(&expr)?;
        self.import_cache.insert(path, v.clone());
        Ok(v)
    }

    // ----- thunks and forcing -----

    /// A value for `e` in `env` without evaluating it: constants, variables
    /// and lambdas directly, everything else as a thunk. Mirrors `maybeThunk`.
    #[inline]
    pub(crate) fn thunk(&self, e: &ExprRef, env: &Rc<Env>) -> Value {
        match &**e {
            Expr::Const(v) => v.clone(),
            Expr::Var { depth, idx, .. } => env.lookup(*depth, *idx),
            Expr::Lambda(l) => Value::Lambda(Rc::new(Closure {
                lambda: l.clone(),
                env: env.clone(),
            })),
            Expr::Bin { .. } => match eager_arith(e, env) {
                Some(v) => v,
                None => Thunk::value(ThunkState::Expr(e.clone(), env.clone())),
            },
            _ => Thunk::value(ThunkState::Expr(e.clone(), env.clone())),
        }
    }

    /// Like [`Self::thunk`] for list elements and attribute values, where
    /// Nix keeps a function or a sum unevaluated (printed `<CODE>` by
    /// `--eval` until forced), so they are not computed in advance here.
    #[inline]
    fn thunk_in_data(&self, e: &ExprRef, env: &Rc<Env>) -> Value {
        match &**e {
            Expr::Lambda(_) | Expr::Bin { .. } => {
                Thunk::value(ThunkState::Expr(e.clone(), env.clone()))
            }
            _ => self.thunk(e, env),
        }
    }

    /// A slot of a frame still being built: constants and variables of
    /// enclosing frames directly, anything else as a placeholder thunk that
    /// [`fill_pending`] completes once the frame exists.
    ///
    /// A variable of the same frame whose slot is already built (`done`)
    /// shares that slot's value, as Nix's `ExprVar::maybeThunk` shares the
    /// `Value`: `rec { a = 1 + 1; b = a; }` prints `b` once `a` is forced.
    #[inline]
    fn init_slot(
        &self,
        e: &ExprRef,
        outer: &Rc<Env>,
        done: &[Value],
        pending: &mut Vec<(Thunk, ExprRef)>,
    ) -> Value {
        match &**e {
            Expr::Const(v) => v.clone(),
            Expr::Var { depth, idx, .. } if *depth > 0 => outer.lookup(*depth - 1, *idx),
            Expr::Var { depth: 0, idx, .. } if (*idx as usize) < done.len() => {
                done[*idx as usize].clone()
            }
            _ => {
                let t = Thunk::new(ThunkState::Blackhole);
                pending.push((t.clone(), e.clone()));
                Value::Thunk(t)
            }
        }
    }

    /// Evaluates `v` to weak head normal form.
    #[inline]
    pub fn force(&mut self, v: &Value) -> Result<Value> {
        match v {
            Value::Thunk(t) => self.force_thunk(t),
            v => Ok(v.clone()),
        }
    }

    #[inline]
    pub(crate) fn force_thunk(&mut self, t: &Thunk) -> Result<Value> {
        match t.get() {
            Some(v) => Ok(v),
            None => self.force_thunk_slow(t),
        }
    }

    #[inline(never)]
    fn force_thunk_slow(&mut self, t: &Thunk) -> Result<Value> {
        let state = t.take();
        let result = match &state {
            ThunkState::Done(v) => {
                let v = v.clone();
                t.set(state);
                return Ok(v);
            }
            ThunkState::Ready(v) => Ok(v.clone()),
            ThunkState::Blackhole => {
                return Err(EvalError::new(
                    ErrorKind::InfiniteRecursion,
                    "infinite recursion encountered",
                    Pos::NONE,
                ));
            }
            ThunkState::Expr(e, env) => {
                self.force_depth += 1;
                let r = if self.force_depth.is_multiple_of(4) {
                    stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || self.eval(e, env))
                } else {
                    self.eval(e, env)
                };
                self.force_depth -= 1;
                r
            }
            // A call made by a builtin (`map`, `genList`...): Nix's call site
            // is the function's position (`Value::determinePos`).
            ThunkState::Apply(Value::Lambda(c), x) => self.call_closure(c, x.clone(), c.lambda.pos),
            ThunkState::Apply(f, x) => self.call(f, x.clone(), Pos::NONE),
            ThunkState::Apply2(b) => {
                let at = match &b.0 {
                    Value::Lambda(c) => c.lambda.pos,
                    _ => Pos::NONE,
                };
                self.call2(&b.0, b.1.clone(), b.2.clone(), at)
            }
            ThunkState::Select(sel) => {
                let (v, name, pos) = &**sel;
                let r = self
                    .force_attrs(v, *pos)
                    .and_then(|attrs| match attrs.get(*name) {
                        Some(v) => {
                            let v = v.clone();
                            self.force(&v)
                        }
                        None => Err(missing_attr(*name, &attrs, *pos)),
                    });
                r.map_err(|e| crate::builtins::derivation::selection_frames(e, *pos))
            }
        };
        match result {
            Ok(v) => {
                t.set(ThunkState::Done(v.clone()));
                Ok(v)
            }
            Err(e) => {
                t.set(state);
                Err(e)
            }
        }
    }

    /// Forces `v` and everything inside it. Mirrors `forceValueDeep`.
    pub fn force_deep(&mut self, v: &Value) -> Result<Value> {
        let mut seen = std::collections::HashSet::new();
        self.force_deep_inner(v, &mut seen)
    }

    fn force_deep_inner(
        &mut self,
        v: &Value,
        seen: &mut std::collections::HashSet<usize>,
    ) -> Result<Value> {
        let v = self.force(v)?;
        match &v {
            Value::Attrs(a) if seen.insert(Rc::as_ptr(a) as usize) => {
                // Nix forces in symbol order, where the names it creates
                // first come first (`outPath` before `drvPath`...): which
                // error of a derivation is reported depends on it. Then by name.
                let first = [
                    self.syms.out_path,
                    self.syms.drv_path,
                    self.syms.type_,
                    self.syms.name,
                    self.syms.value,
                ];
                let early = first.iter().filter_map(|n| a.get_attr(*n));
                let rest = a.iter().filter(|x| !first.contains(&x.name));
                for attr in early.chain(rest) {
                    stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || {
                        self.force_deep_inner(&attr.value, seen)
                    })
                    .map_err(|e| {
                        e.add_trace(
                            crate::builtins::derivation::frame_pos(attr.pos),
                            format!("while evaluating the attribute '{}'", attr.name),
                        )
                    })?;
                }
            }
            Value::List(l) if seen.insert(Rc::as_ptr(l) as usize) => {
                for item in l.iter() {
                    stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || {
                        self.force_deep_inner(item, seen)
                    })?;
                }
            }
            _ => {}
        }
        Ok(v)
    }

    // ----- typed forcing -----

    pub fn force_attrs(&mut self, v: &Value, pos: Pos) -> Result<Rc<Attrs>> {
        match self.force(v)? {
            Value::Attrs(a) => Ok(a),
            other => Err(expected(&other, "a set", pos)),
        }
    }

    pub fn force_list(&mut self, v: &Value, pos: Pos) -> Result<Rc<Vec<Value>>> {
        match self.force(v)? {
            Value::List(l) => Ok(l),
            other => Err(expected(&other, "a list", pos)),
        }
    }

    pub fn force_int(&mut self, v: &Value, pos: Pos) -> Result<i64> {
        match self.force(v)? {
            Value::Int(i) => Ok(i),
            other => Err(expected(&other, "an integer", pos)),
        }
    }

    pub fn force_float(&mut self, v: &Value, pos: Pos) -> Result<f64> {
        match self.force(v)? {
            Value::Int(i) => Ok(i as f64),
            Value::Float(f) => Ok(f),
            other => Err(expected(&other, "a float", pos)),
        }
    }

    pub fn force_bool(&mut self, v: &Value, pos: Pos) -> Result<bool> {
        match self.force(v)? {
            Value::Bool(b) => Ok(b),
            other => Err(expected(&other, "a Boolean", pos)),
        }
    }

    pub fn force_function(&mut self, v: &Value, pos: Pos) -> Result<Value> {
        let f = self.force(v)?;
        match &f {
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => Ok(f),
            Value::Attrs(a) if a.get(self.syms.functor).is_some() => Ok(f),
            other => Err(expected(other, "a function", pos)),
        }
    }

    /// A string with its context.
    pub fn force_string(&mut self, v: &Value, pos: Pos) -> Result<NixString> {
        match self.force(v)? {
            Value::String(s) => Ok(s),
            other => Err(expected(&other, "a string", pos)),
        }
    }

    /// An attribute name: a string that must not refer to store paths, interned.
    pub fn force_symbol(&mut self, v: &Value, pos: Pos) -> Result<Symbol> {
        let s = self.force_string(v, pos)?;
        if s.has_context() {
            self.force_string_no_ctx(&Value::String(s), pos)?;
            unreachable!("a string with context was refused");
        }
        Ok(s.to_symbol())
    }

    /// A string that must not refer to store paths.
    pub fn force_string_no_ctx(&mut self, v: &Value, pos: Pos) -> Result<String> {
        let s = self.force_string(v, pos)?;
        if s.has_context() {
            let first = s.context().iter().next().cloned().unwrap_or_default();
            return Err(EvalError::new(
                ErrorKind::Other,
                format!(
                    "the string '{}' is not allowed to refer to a store path (such as '{}')",
                    s.as_str(),
                    decode_context_path(&first)
                ),
                pos,
            ));
        }
        Ok(s.as_str().to_owned())
    }

    // ----- evaluation -----

    /// [`Self::eval`] with variables and constants handled in place: the
    /// operands of operators, conditions and called functions are mostly
    /// those, and a recursive `eval` costs more than the lookup.
    #[inline(always)]
    fn eval_operand(&mut self, e: &ExprRef, env: &Rc<Env>) -> Result<Value> {
        match &**e {
            Expr::Var {
                depth, idx, pos, ..
            } => match env.get(*depth, *idx) {
                Value::Thunk(t) => self.force_thunk(t).map_err(|err| at(err, *pos)),
                v => Ok(v.clone()),
            },
            Expr::Const(v) => Ok(v.clone()),
            _ => self.eval(e, env),
        }
    }

    /// Evaluates `e` in `env` to weak head normal form.
    pub(crate) fn eval(&mut self, e: &ExprRef, env: &Rc<Env>) -> Result<Value> {
        match &**e {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Var {
                depth, idx, pos, ..
            } => match env.get(*depth, *idx) {
                Value::Thunk(t) => self.force_thunk(t).map_err(|err| at(err, *pos)),
                v => Ok(v.clone()),
            },
            Expr::WithVar { name, withs, pos } => {
                let v = self.lookup_with(*name, withs, env, *pos)?;
                self.force(&v).map_err(|err| at(err, *pos))
            }
            Expr::Select {
                expr,
                path,
                default,
                pos,
            } => self.eval_select(expr, path, default.as_ref(), *pos, env),
            Expr::HasAttr { expr, path } => {
                let mut v = self.eval_operand(expr, env)?;
                for (i, key) in path.iter().enumerate() {
                    let name = self.attr_key(key, env)?;
                    match v {
                        Value::Attrs(a) => match a.get(name) {
                            // The value found last is not forced: `{ a = throw
                            // "x"; } ? a` is true.
                            Some(_) if i + 1 == path.len() => return Ok(Value::Bool(true)),
                            Some(x) => {
                                let x = x.clone();
                                v = self.force(&x)?;
                            }
                            None => return Ok(Value::Bool(false)),
                        },
                        _ => return Ok(Value::Bool(false)),
                    }
                }
                Ok(Value::Bool(true))
            }
            Expr::Attrs(a) => self.eval_attrs(a, env),
            Expr::List(items) => Ok(Value::list(
                items.iter().map(|i| self.thunk_in_data(i, env)).collect(),
            )),
            Expr::Lambda(l) => Ok(Value::Lambda(Rc::new(Closure {
                lambda: l.clone(),
                env: env.clone(),
            }))),
            Expr::Call { func, args, pos } => {
                let f = self.eval_operand(func, env)?;
                if args.len() > 1 {
                    if let Value::Lambda(c) = &f {
                        let vals: Slots = args.iter().map(|a| self.thunk(a, env)).collect();
                        return self.call_many(c, &vals, *pos);
                    }
                }
                // A builtin given all its arguments at once (`map f xs`) is
                // called directly, without a partial application per argument.
                if let Value::PrimOp(op) = &f {
                    if args.len() >= op.arity && op.arity > 1 {
                        let vals: Slots = args[..op.arity]
                            .iter()
                            .map(|a| self.thunk(a, env))
                            .collect();
                        let mut r = self.call_primop(op, &vals, *pos)?;
                        for arg in &args[op.arity..] {
                            let a = self.thunk(arg, env);
                            r = self.call_forced(r, a, *pos)?;
                        }
                        return Ok(r);
                    }
                }
                let mut f = f;
                for arg in args.iter() {
                    let a = self.thunk(arg, env);
                    f = self.call_forced(f, a, *pos)?;
                }
                Ok(f)
            }
            Expr::Let(l) => self.eval_let(l, env),
            Expr::With { attrs, body } => {
                let a = self.thunk(attrs, env);
                let env2 = Env::new(Some(env.clone()), smallvec::smallvec![a]);
                self.eval(body, &env2)
            }
            Expr::If {
                cond,
                then,
                else_,
                pos,
            } => {
                let c = match eager_arith(cond, env) {
                    Some(v) => v,
                    None => self
                        .eval_operand(cond, env)
                        .map_err(|e| e.add_trace(*pos, "while evaluating a branch condition"))?,
                };
                let c = match c {
                    Value::Bool(b) => b,
                    other => {
                        return Err(expected(&other, "a Boolean", *pos)
                            .add_trace(*pos, "while evaluating a branch condition"))
                    }
                };
                self.eval(if c { then } else { else_ }, env)
            }
            Expr::Assert {
                cond,
                body,
                text: _,
                pos,
            } => {
                const CTX: &str = "in the condition of the assert statement";
                let c = self
                    .eval_operand(cond, env)
                    .map_err(|e| e.add_trace(*pos, CTX))?;
                match c {
                    Value::Bool(true) => self.eval(body, env),
                    Value::Bool(false) => Err(self.assertion_failed(cond, env, *pos)),
                    other => Err(expected(&other, "a Boolean", *pos).add_trace(*pos, CTX)),
                }
            }
            Expr::Not(inner, _) => {
                const CTX: &str = "in the argument of the not operator";
                let pos = &inner.pos();
                let v = self.eval(inner, env).map_err(|e| e.add_trace(*pos, CTX))?;
                match v {
                    Value::Bool(b) => Ok(Value::Bool(!b)),
                    other => Err(expected(&other, "a Boolean", *pos).add_trace(*pos, CTX)),
                }
            }
            Expr::Neg(inner, pos) => {
                // `-x` is `__sub 0 x`.
                self.eval(inner, env)
                    .and_then(|v| crate::ops::sub(&Value::Int(0), &v, *pos))
                    .map_err(|e| e.add_trace(*pos, "while calling the 'sub' builtin"))
            }
            Expr::Bin { op, lhs, rhs, pos } => self.eval_bin(*op, lhs, rhs, *pos, env),
            Expr::Interpolate { parts, .. } => {
                // Built in a reused buffer, then copied once at its final
                // size (a nested interpolation gets a fresh buffer).
                let mut out = std::mem::take(&mut self.str_buf);
                out.clear();
                let mut ctx = Context::new();
                for p in parts.iter() {
                    let v = self.eval(p, env)?;
                    self.coerce_into(
                        &v,
                        Pos::NONE,
                        Coerce {
                            more: false,
                            copy_to_store: true,
                            ctx: "while evaluating a path segment",
                        },
                        &mut out,
                        &mut ctx,
                    )
                    .map_err(|e| segment_at(e, p.pos().interpolation_start()))?;
                }
                let s = NixString::with_context(out.as_str().to_owned(), ctx);
                self.str_buf = out;
                Ok(Value::String(s))
            }
            Expr::PathInterpolate { parts, pos } => {
                let mut out = String::new();
                let mut ctx = Context::new();
                for (i, p) in parts.iter().enumerate() {
                    let v = self.eval(p, env)?;
                    if i == 0 {
                        if let Value::Path(p) = &v {
                            out.push_str(p);
                            continue;
                        }
                    }
                    self.coerce_into(
                        &v,
                        Pos::NONE,
                        Coerce {
                            more: false,
                            copy_to_store: false,
                            ctx: "while evaluating a path segment",
                        },
                        &mut out,
                        &mut ctx,
                    )
                    .map_err(|e| segment_at(e, p.pos().interpolation_start()))?;
                }
                if !ctx.is_empty() {
                    return Err(EvalError::new(
                        ErrorKind::Other,
                        "a string that refers to a store path cannot be appended to a path",
                        *pos,
                    ));
                }
                Ok(Value::path(canon_path(&out)))
            }
            Expr::CurPos(pos) => Ok(self.pos_to_value(*pos)),
        }
    }

    fn lookup_with(
        &mut self,
        name: Symbol,
        withs: &[u32],
        env: &Rc<Env>,
        pos: Pos,
    ) -> Result<Value> {
        for &d in withs {
            let scope = env.lookup(d, 0);
            let attrs = self.force_attrs(&scope, pos).map_err(|e| {
                at(e, pos).add_trace(
                    pos,
                    "while evaluating the first subexpression of a with expression",
                )
            })?;
            if let Some(v) = attrs.get(name) {
                return Ok(v.clone());
            }
        }
        Err(EvalError::new(
            ErrorKind::UndefinedVariable,
            format!("undefined variable '{name}'"),
            pos,
        ))
    }

    pub(crate) fn attr_key(&mut self, key: &AttrKey, env: &Rc<Env>) -> Result<Symbol> {
        match key {
            AttrKey::Static(s) => Ok(*s),
            AttrKey::Dynamic(e) => {
                let v = self.eval(e, env)?;
                self.force_symbol(&v, e.pos())
                    .map_err(|err| err.add_trace(e.pos(), "while evaluating an attribute name"))
            }
        }
    }

    fn eval_select(
        &mut self,
        expr: &ExprRef,
        path: &[AttrKey],
        default: Option<&ExprRef>,
        pos: Pos,
        env: &Rc<Env>,
    ) -> Result<Value> {
        let mut v = self.eval_operand(expr, env)?;
        // The position of the attribute found last, for Nix 2.26's "while
        // evaluating the attribute 'a.b'" frame on errors after it.
        let mut pos2 = Pos::NONE;
        for key in path {
            let name = match self.attr_key(key, env) {
                Ok(n) => n,
                Err(e) => return Err(self.select_trace(e, pos2, path, env)),
            };
            match &v {
                Value::Attrs(a) => match a.get_attr(name) {
                    Some(x) => {
                        pos2 = x.pos;
                        let x = x.value.clone();
                        v = match self.force(&x) {
                            Ok(v) => v,
                            Err(e) => return Err(self.select_trace(at(e, pos), pos2, path, env)),
                        };
                    }
                    None => {
                        if let Some(d) = default {
                            return self.eval(d, env);
                        }
                        let e = missing_attr(name, a, pos);
                        return Err(self.select_trace(e, pos2, path, env));
                    }
                },
                other => {
                    if let Some(d) = default {
                        return self.eval(d, env);
                    }
                    let e = expected_ctx(other, "a set", pos, "while selecting an attribute");
                    return Err(self.select_trace(e, pos2, path, env));
                }
            }
        }
        Ok(v)
    }

    /// Nix 2.26's frame for an error while selecting `path`, once an
    /// attribute (at `pos2`) was found: "while evaluating the attribute 'a.b'".
    #[cold]
    fn select_trace(
        &mut self,
        e: Box<EvalError>,
        pos2: Pos,
        path: &[AttrKey],
        env: &Rc<Env>,
    ) -> Box<EvalError> {
        if pos2.is_none() || crate::builtins::derivation::is_internal(pos2) {
            return e;
        }
        let mut shown = String::new();
        for (i, key) in path.iter().enumerate() {
            if i > 0 {
                shown.push('.');
            }
            match key {
                AttrKey::Static(s) => shown.push_str(s.as_str()),
                AttrKey::Dynamic(x) => match self.attr_key(key, env) {
                    Ok(s) => shown.push_str(s.as_str()),
                    Err(_) => {
                        shown.push_str("\"${");
                        shown.push_str(&crate::show::show(x));
                        shown.push_str("}\"");
                    }
                },
            }
        }
        e.add_trace(pos2, format!("while evaluating the attribute '{shown}'"))
    }

    /// The error of an `assert` whose condition is false: for `a == b`, why
    /// they differ (Nix 2.26's `assertEqValues`), else "assertion '...' failed".
    #[cold]
    fn assertion_failed(&mut self, cond: &ExprRef, env: &Rc<Env>, pos: Pos) -> Box<EvalError> {
        let text = crate::show::show(cond);
        if let Expr::Bin {
            op: BinOp::Eq,
            lhs,
            rhs,
            pos: _,
        } = &**cond
        {
            let r = self.eval(lhs, env).and_then(|a| {
                let b = self.eval(rhs, env)?;
                self.assert_eq_values(&a, &b, Pos::NONE)
            });
            match r {
                Err(e) if e.kind == ErrorKind::Assertion => {
                    return e.add_trace(
                        pos,
                        format!("while evaluating the condition of the assertion '{text}'"),
                    )
                }
                Err(e) => return e,
                Ok(()) => {}
            }
        }
        EvalError::new(
            ErrorKind::Assertion,
            format!("assertion '{text}' failed"),
            pos,
        )
    }

    fn eval_attrs(&mut self, a: &Rc<AttrsExpr>, env: &Rc<Env>) -> Result<Value> {
        let mut entries = Vec::with_capacity(a.bindings.len() + a.dynamic.len());
        let scope_env = if a.rec {
            let overrides = self.syms.overrides;
            let has_overrides = a.bindings.iter().any(|b| b.name == overrides);
            let mut pending = Vec::new();
            let from: Vec<Value> = a
                .inherit_from
                .iter()
                .map(|e| {
                    let t = Thunk::new(ThunkState::Blackhole);
                    pending.push((t.clone(), e.clone()));
                    Value::Thunk(t)
                })
                .collect();
            let mut vals = Slots::with_capacity(a.bindings.len());
            for b in &a.bindings {
                let v = match &b.value {
                    BindingValue::Outer(e) => outer_slot(e, env),
                    BindingValue::Expr(e) | BindingValue::Inherit(e) => {
                        if has_overrides {
                            let t = Thunk::new(ThunkState::Blackhole);
                            pending.push((t.clone(), e.clone()));
                            Value::Thunk(t)
                        } else {
                            self.init_slot(e, env, &vals, &mut pending)
                        }
                    }
                    BindingValue::InheritFrom(k, name) => Thunk::value(ThunkState::Select(
                        Box::new((from[*k as usize].clone(), *name, b.pos)),
                    )),
                };
                entries.push(Attr {
                    name: b.name,
                    value: v.clone(),
                    pos: b.pos,
                });
                vals.push(v);
            }
            let new_env = Env::new(Some(env.clone()), vals);
            fill_pending(pending, &new_env);
            // `__overrides` replaces attributes, in the set and in the scope.
            if let Some(i) = a.bindings.iter().position(|b| b.name == overrides) {
                let ov_value = entries[i].value.clone();
                let ov = match self.force(&ov_value) {
                    Ok(Value::Attrs(ov)) => ov,
                    Ok(other) => {
                        return Err(expected(&other, "a set", Pos::NONE)
                            .add_trace(Pos::NONE, "while evaluating the `__overrides` attribute"))
                    }
                    Err(e) => return Err(e),
                };
                for attr in ov.iter() {
                    match a.bindings.iter().position(|b| b.name == attr.name) {
                        Some(j) => {
                            entries[j] = attr.clone();
                            if let Value::Thunk(t) = &new_env.vals[j] {
                                t.set(ThunkState::Select(Box::new((
                                    ov_value.clone(),
                                    attr.name,
                                    attr.pos,
                                ))));
                            }
                        }
                        None => entries.push(attr.clone()),
                    }
                }
                entries = Attrs::from_unsorted(entries).into_entries();
            }
            new_env
        } else {
            let from = self.inherit_from_thunks(&a.inherit_from, env);
            for b in &a.bindings {
                entries.push(Attr {
                    name: b.name,
                    value: self.binding_value(&b.value, &from, env, b.pos),
                    pos: b.pos,
                });
            }
            env.clone()
        };
        let mut attrs = Attrs::from_sorted(entries);
        for d in &a.dynamic {
            let name = self.eval(&d.name, &scope_env)?;
            let sym = match name {
                Value::Null => continue,
                other => self.force_symbol(&other, d.pos)?,
            };
            let name = sym.as_str();
            if let Some(prev) = attrs.get_attr(sym) {
                let prev = prev
                    .pos
                    .resolve()
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "«unknown»".into());
                return Err(EvalError::new(
                    ErrorKind::Other,
                    format!("dynamic attribute '{name}' already defined at {prev}"),
                    d.pos,
                ));
            }
            let v = self.thunk(&d.value, &scope_env);
            attrs.insert(sym, v, d.pos);
        }
        Ok(Value::attrs(attrs))
    }

    fn inherit_from_thunks(&self, from: &[ExprRef], env: &Rc<Env>) -> Vec<Value> {
        from.iter().map(|e| self.thunk(e, env)).collect()
    }

    fn binding_value(&self, b: &BindingValue, from: &[Value], env: &Rc<Env>, pos: Pos) -> Value {
        match b {
            BindingValue::Expr(e) | BindingValue::Inherit(e) | BindingValue::Outer(e) => {
                self.thunk_in_data(e, env)
            }
            BindingValue::InheritFrom(k, name) => Thunk::value(ThunkState::Select(Box::new((
                from[*k as usize].clone(),
                *name,
                pos,
            )))),
        }
    }

    fn eval_let(&mut self, l: &Rc<LetExpr>, env: &Rc<Env>) -> Result<Value> {
        let mut pending = Vec::new();
        let from: Vec<Value> = l
            .inherit_from
            .iter()
            .map(|e| {
                let t = Thunk::new(ThunkState::Blackhole);
                pending.push((t.clone(), e.clone()));
                Value::Thunk(t)
            })
            .collect();
        let mut vals = Slots::with_capacity(l.bindings.len());
        for b in &l.bindings {
            vals.push(match &b.value {
                BindingValue::Expr(e) | BindingValue::Inherit(e) => {
                    self.init_slot(e, env, &vals, &mut pending)
                }
                BindingValue::Outer(e) => outer_slot(e, env),
                BindingValue::InheritFrom(k, name) => Thunk::value(ThunkState::Select(Box::new((
                    from[*k as usize].clone(),
                    *name,
                    b.pos,
                )))),
            });
        }
        let new_env = Env::new(Some(env.clone()), vals);
        fill_pending(pending, &new_env);
        self.eval(&l.body, &new_env)
    }

    #[inline]
    fn eval_bin(
        &mut self,
        op: BinOp,
        lhs: &ExprRef,
        rhs: &ExprRef,
        pos: Pos,
        env: &Rc<Env>,
    ) -> Result<Value> {
        match op {
            BinOp::And => {
                if !self.bool_operand(
                    lhs,
                    env,
                    pos,
                    "in the left operand of the AND (&&) operator",
                )? {
                    return Ok(Value::Bool(false));
                }
                let r = self.bool_operand(
                    rhs,
                    env,
                    pos,
                    "in the right operand of the AND (&&) operator",
                )?;
                Ok(Value::Bool(r))
            }
            BinOp::Or => {
                if self.bool_operand(
                    lhs,
                    env,
                    pos,
                    "in the left operand of the OR (||) operator",
                )? {
                    return Ok(Value::Bool(true));
                }
                let r = self.bool_operand(
                    rhs,
                    env,
                    pos,
                    "in the right operand of the OR (||) operator",
                )?;
                Ok(Value::Bool(r))
            }
            BinOp::Impl => {
                if !self.bool_operand(
                    lhs,
                    env,
                    pos,
                    "in the left operand of the IMPL (->) operator",
                )? {
                    return Ok(Value::Bool(true));
                }
                let r = self.bool_operand(
                    rhs,
                    env,
                    pos,
                    "in the right operand of the IMPL (->) operator",
                )?;
                Ok(Value::Bool(r))
            }
            _ => {
                let l = match self.eval_operand(lhs, env) {
                    Ok(v) => v,
                    Err(e) => return Err(bin_trace(e, op, pos, true)),
                };
                let r = match self.eval_operand(rhs, env) {
                    Ok(v) => v,
                    Err(e) => return Err(bin_trace(e, op, pos, false)),
                };
                if let (Value::Int(x), Value::Int(y)) = (&l, &r) {
                    let (x, y) = (*x, *y);
                    match op {
                        BinOp::Less => return Ok(Value::Bool(x < y)),
                        BinOp::LessEq => return Ok(Value::Bool(x <= y)),
                        BinOp::Greater => return Ok(Value::Bool(x > y)),
                        BinOp::GreaterEq => return Ok(Value::Bool(x >= y)),
                        BinOp::Eq => return Ok(Value::Bool(x == y)),
                        BinOp::NotEq => return Ok(Value::Bool(x != y)),
                        BinOp::Add => {
                            if let Some(z) = x.checked_add(y) {
                                return Ok(Value::Int(z));
                            }
                        }
                        BinOp::Sub => {
                            if let Some(z) = x.checked_sub(y) {
                                return Ok(Value::Int(z));
                            }
                        }
                        _ => {}
                    }
                }
                self.bin_values(op, l, r, pos, lhs.pos())
                    .map_err(|e| match op {
                        BinOp::Concat | BinOp::Update => e,
                        _ => bin_trace(e, op, pos, false),
                    })
            }
        }
    }

    /// A binary operator on evaluated operands (the cases `eval_bin` does
    /// not do in place).
    #[inline(never)]
    fn bin_values(&mut self, op: BinOp, l: Value, r: Value, pos: Pos, lpos: Pos) -> Result<Value> {
        use crate::ops;
        match op {
            BinOp::Add => {
                // The right operand's position is found only on error.
                self.add_at(&l, &r, pos, lpos, Pos::NONE)
                    .map_err(|e| segment_at(e, pos.operand_after(1)))
            }
            BinOp::Sub => ops::sub(&l, &r, pos),
            BinOp::Mul => ops::mul(&l, &r, pos),
            BinOp::Div => ops::div(&l, &r, pos),
            BinOp::Concat => {
                const CTX: &str = "while evaluating one of the elements to concatenate";
                let a = match l {
                    Value::List(a) => a,
                    other => return Err(expected_ctx(&other, "a list", pos, CTX)),
                };
                let b = match r {
                    Value::List(b) => b,
                    other => return Err(expected_ctx(&other, "a list", pos, CTX)),
                };
                if a.is_empty() {
                    return Ok(Value::List(b));
                }
                if b.is_empty() {
                    return Ok(Value::List(a));
                }
                let mut v = Vec::with_capacity(a.len() + b.len());
                v.extend(a.iter().cloned());
                v.extend(b.iter().cloned());
                Ok(Value::list(v))
            }
            BinOp::Update => {
                let a = match l {
                    Value::Attrs(a) => a,
                    other => {
                        return Err(expected(&other, "a set", Pos::NONE)
                            .add_trace(pos, "in the left operand of the update (//) operator"))
                    }
                };
                let b = match r {
                    Value::Attrs(b) => b,
                    other => {
                        return Err(expected(&other, "a set", Pos::NONE)
                            .add_trace(pos, "in the right operand of the update (//) operator"))
                    }
                };
                if b.is_empty() {
                    return Ok(Value::Attrs(a));
                }
                if a.is_empty() {
                    return Ok(Value::Attrs(b));
                }
                Ok(Value::attrs(a.update(&b)))
            }
            BinOp::Eq => Ok(Value::Bool(self.eq_values(&l, &r, pos)?)),
            BinOp::NotEq => Ok(Value::Bool(!self.eq_values(&l, &r, pos)?)),
            BinOp::Less => Ok(Value::Bool(self.less_than(&l, &r, Pos::NONE)?)),
            BinOp::Greater => Ok(Value::Bool(self.less_than(&r, &l, Pos::NONE)?)),
            BinOp::LessEq => Ok(Value::Bool(!self.less_than(&r, &l, Pos::NONE)?)),
            BinOp::GreaterEq => Ok(Value::Bool(!self.less_than(&l, &r, Pos::NONE)?)),
            BinOp::And | BinOp::Or | BinOp::Impl => unreachable!(),
        }
    }

    /// An operand of `&&`, `||`, `->`: Nix 2.26's `evalBool` with its frame.
    #[inline]
    fn bool_operand(
        &mut self,
        e: &ExprRef,
        env: &Rc<Env>,
        pos: Pos,
        ctx: &'static str,
    ) -> Result<bool> {
        match self.eval_operand(e, env) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(expected(&other, "a Boolean", pos).add_trace(pos, ctx)),
            Err(e) => Err(e.add_trace(pos, ctx)),
        }
    }

    /// `+`: numbers, path + string, string + anything coercible. Mirrors
    /// `ExprConcatStrings::eval` with two operands.
    pub fn add(&mut self, l: &Value, r: &Value, pos: Pos) -> Result<Value> {
        self.add_at(l, r, pos, pos, pos)
    }

    /// [`Self::add`] with the position of the right operand (where Nix 2.26
    /// reports what cannot be added or coerced).
    fn add_at(&mut self, l: &Value, r: &Value, pos: Pos, lpos: Pos, rpos: Pos) -> Result<Value> {
        const SEGMENT: &str = "while evaluating a path segment";
        match (l, r) {
            (Value::Int(_) | Value::Float(_), _) => crate::ops::add_numbers(l, r, rpos),
            (Value::Path(p), _) => {
                let mut out = String::from(p.as_str());
                let mut ctx = Context::new();
                self.coerce_into(
                    r,
                    rpos,
                    Coerce {
                        more: false,
                        copy_to_store: false,
                        ctx: SEGMENT,
                    },
                    &mut out,
                    &mut ctx,
                )?;
                if !ctx.is_empty() {
                    return Err(EvalError::new(
                        ErrorKind::Other,
                        "a string that refers to a store path cannot be appended to a path",
                        pos,
                    ));
                }
                Ok(Value::path(canon_path(&out)))
            }
            _ => {
                let mut out = String::new();
                let mut ctx = Context::new();
                let opts = Coerce {
                    more: false,
                    copy_to_store: true,
                    ctx: SEGMENT,
                };
                self.coerce_into(l, lpos, opts, &mut out, &mut ctx)?;
                self.coerce_into(r, rpos, opts, &mut out, &mut ctx)?;
                Ok(Value::String(NixString::with_context(out, ctx)))
            }
        }
    }

    // ----- calls -----

    /// Applies `f` (possibly a thunk) to `arg`.
    pub fn call(&mut self, f: &Value, arg: Value, pos: Pos) -> Result<Value> {
        let f = self.force(f)?;
        self.call_forced(f, arg, pos)
    }

    /// `f x y`.
    pub fn call2(&mut self, f: &Value, x: Value, y: Value, pos: Pos) -> Result<Value> {
        if let Value::Lambda(c) = f {
            return self.with_call_depth(pos, |ev| ev.call_lambda2(c, x, y, pos));
        }
        let f = self.force(f)?;
        match &f {
            Value::Lambda(c) => {
                return self.with_call_depth(pos, |ev| ev.call_lambda2(c, x, y, pos))
            }
            Value::PrimOp(op) if op.arity == 2 => return self.call_primop(op, &[x, y], pos),
            _ => {}
        }
        let g = self.call_forced(f, x, pos)?;
        self.call_forced(g, y, pos)
    }

    /// Runs a call with the call-depth bound, growing the native stack when
    /// it runs low.
    #[inline(always)]
    fn with_call_depth<T>(
        &mut self,
        pos: Pos,
        call: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        if self.call_depth >= self.opts.max_call_depth {
            return Err(EvalError::new(
                ErrorKind::StackOverflow,
                "stack overflow; max-call-depth exceeded",
                pos,
            ));
        }
        self.call_depth += 1;
        let r = if self.call_depth.is_multiple_of(4) {
            stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || call(self))
        } else {
            call(self)
        };
        self.call_depth -= 1;
        r
    }

    /// A closure applied to several arguments, with the call-depth bound.
    fn call_many(&mut self, c: &Closure, args: &[Value], pos: Pos) -> Result<Value> {
        self.with_call_depth(pos, |ev| ev.call_lambda_n(c, args, pos))
    }

    /// A closure applied to one argument, with the call-depth bound.
    #[inline]
    fn call_closure(&mut self, c: &Closure, arg: Value, pos: Pos) -> Result<Value> {
        self.with_call_depth(pos, |ev| ev.call_lambda(c, arg, pos))
    }

    /// `c x y`, for the common `x: y: body`: both arguments moved into one frame.
    fn call_lambda2(&mut self, c: &Closure, x: Value, y: Value, pos: Pos) -> Result<Value> {
        if let (Param::Ident(_), Expr::Lambda(inner)) = (&c.lambda.param, &*c.lambda.body) {
            if matches!(inner.param, Param::Ident(_)) && inner.prefix() == c.lambda.prefix() + 1 {
                let env = match c.lambda.flat {
                    None => Env::new(Some(c.env.clone()), Slots::from_buf([x, y])),
                    Some(_) => {
                        let (up, mut vals) = frame_prefix(&c.lambda, &c.env);
                        vals.push(x);
                        vals.push(y);
                        Env::new(up, vals)
                    }
                };
                let r = self.eval(&inner.body, &env);
                if self.opts.show_trace {
                    return r.map_err(|e| call_trace(e, inner, pos));
                }
                return r;
            }
        }
        self.call_lambda_n(c, &[x, y], pos)
    }

    pub(crate) fn call_forced(&mut self, f: Value, arg: Value, pos: Pos) -> Result<Value> {
        match f {
            Value::Lambda(c) => self.call_closure(&c, arg, pos),
            Value::PrimOp(op) => {
                if op.arity == 1 {
                    self.call_primop(&op, &[arg], pos)
                } else {
                    Ok(Value::PrimOpApp(Rc::new(PrimOpApp {
                        op,
                        args: vec![arg],
                    })))
                }
            }
            Value::PrimOpApp(app) => {
                let mut args = Vec::with_capacity(app.args.len() + 1);
                args.extend(app.args.iter().cloned());
                args.push(arg);
                if args.len() == app.op.arity {
                    let op = app.op.clone();
                    self.call_primop(&op, &args, pos)
                } else {
                    Ok(Value::PrimOpApp(Rc::new(PrimOpApp {
                        op: app.op.clone(),
                        args,
                    })))
                }
            }
            Value::Attrs(a) => match a.get(self.syms.functor) {
                Some(functor) => {
                    let functor = functor.clone();
                    // Bounded: `{ __functor = s: s; } 1` never ends.
                    self.with_call_depth(pos, |ev| {
                        let g = ev.call(&functor, Value::Attrs(a.clone()), pos)?;
                        ev.call(&g, arg, pos)
                    })
                    .map_err(|e| {
                        e.add_trace(
                            pos,
                            "while calling a functor (an attribute set with a '__functor' attribute)",
                        )
                    })
                }
                None => Err(not_a_function(&Value::Attrs(a), pos)),
            },
            Value::Thunk(t) => {
                let f = self.force_thunk(&t)?;
                self.call_forced(f, arg, pos)
            }
            other => Err(not_a_function(&other, pos)),
        }
    }

    fn call_primop(&mut self, op: &Rc<PrimOp>, args: &[Value], pos: Pos) -> Result<Value> {
        if self.call_depth >= self.opts.max_call_depth {
            return Err(EvalError::new(
                ErrorKind::StackOverflow,
                "stack overflow; max-call-depth exceeded",
                pos,
            ));
        }
        self.call_depth += 1;
        // As in Nix 2.26, a builtin's own errors have no position (it is
        // called with the primop value's, none): the frame below has it.
        let r = stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || (op.f)(self, args, Pos::NONE));
        self.call_depth -= 1;
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(primop_trace(e, op, pos)),
        }
    }

    fn call_lambda(&mut self, c: &Closure, arg: Value, pos: Pos) -> Result<Value> {
        let r = match frameless_body(&c.lambda, &c.env, &arg) {
            Some(Value::Thunk(t)) => self.force_thunk(&t).map_err(|e| at(e, c.lambda.body.pos())),
            Some(v) => Ok(v),
            None => {
                let env = self.bind_args(&c.lambda, &c.env, arg, pos)?;
                self.eval(&c.lambda.body, &env)
            }
        };
        if self.opts.show_trace {
            return r.map_err(|e| call_trace(e, &c.lambda, pos));
        }
        r
    }

    /// Applies a closure to several arguments at once: `a: b: body` applied
    /// to two arguments builds one frame for both (see [`crate::ast::Lambda::flat`])
    /// without the intermediate closure.
    fn call_lambda_n(&mut self, c: &Closure, args: &[Value], pos: Pos) -> Result<Value> {
        let mut lambda = &c.lambda;
        let mut used = 1;
        let mut env = if let Param::Ident(_) = lambda.param {
            let (up, mut vals) = frame_prefix(lambda, &c.env);
            vals.push(args[0].clone());
            while let (Some(arg), Expr::Lambda(inner)) = (args.get(used), &*lambda.body) {
                if !matches!(inner.param, Param::Ident(_)) || inner.prefix() != vals.len() {
                    break;
                }
                vals.push(arg.clone());
                lambda = inner;
                used += 1;
            }
            Env::new(up, vals)
        } else {
            self.bind_args(lambda, &c.env, args[0].clone(), pos)?
        };
        while let (Some(arg), Expr::Lambda(inner)) = (args.get(used), &*lambda.body) {
            env = self.bind_args(inner, &env, arg.clone(), pos)?;
            lambda = inner;
            used += 1;
        }
        let r = self.eval(&lambda.body, &env);
        let mut v = if self.opts.show_trace {
            r.map_err(|e| call_trace(e, lambda, pos))?
        } else {
            r?
        };
        for a in &args[used..] {
            v = self.call_forced(v, a.clone(), pos)?;
        }
        Ok(v)
    }

    /// The frame of `lambda`, closed over `closure_env`, applied to `arg`.
    fn bind_args(
        &mut self,
        lambda: &Rc<crate::ast::Lambda>,
        closure_env: &Rc<Env>,
        arg: Value,
        pos: Pos,
    ) -> Result<Rc<Env>> {
        if let (Param::Ident(_), None) = (&lambda.param, lambda.flat) {
            // The common case, built in place.
            let vals = Slots::from_buf_and_len([arg, Value::Null], 1);
            return Ok(Env::new(Some(closure_env.clone()), vals));
        }
        let (up, mut vals) = frame_prefix(lambda, closure_env);
        let env = match &lambda.param {
            Param::Ident(_) => {
                vals.push(arg);
                Env::new(up, vals)
            }
            Param::Formals {
                formals,
                ellipsis,
                at,
            } => {
                let attrs = match self.force(&arg) {
                    Ok(Value::Attrs(a)) => a,
                    Ok(other) => {
                        let e = expected_ctx(
                            &other,
                            "a set",
                            lambda.pos,
                            "while evaluating the value passed for the lambda argument",
                        );
                        return Err(from_call_site(e, pos));
                    }
                    Err(e) => return Err(from_call_site(e, pos)),
                };
                // Defaults are evaluated in the new frame; their variables of
                // enclosing frames are looked up from its parent.
                let outer = up.as_ref().unwrap_or(closure_env);
                let mut pending = Vec::new();
                vals.reserve(lambda.frame_size());
                let mut used = 0;
                for f in formals {
                    match attrs.get(f.name) {
                        Some(v) => {
                            used += 1;
                            vals.push(v.clone());
                        }
                        None => match &f.default {
                            Some(d) => {
                                let v = self.init_slot(d, outer, &vals, &mut pending);
                                vals.push(v);
                            }
                            None => {
                                let e = EvalError::new(
                                    ErrorKind::Type,
                                    format!(
                                        "{} called without required argument '{}'",
                                        lambda_name(lambda.name),
                                        f.name
                                    ),
                                    lambda.pos,
                                );
                                return Err(from_call_site(e, pos));
                            }
                        },
                    }
                }
                if at.is_some() {
                    vals.push(arg.clone());
                }
                if !ellipsis && used < attrs.len() {
                    for a in attrs.iter() {
                        if !formals.iter().any(|f| f.name == a.name) {
                            let e = EvalError::new(
                                ErrorKind::Type,
                                format!(
                                    "{} called with unexpected argument '{}'",
                                    lambda_name(lambda.name),
                                    crate::show::identifier_string(a.name.as_str())
                                ),
                                lambda.pos,
                            )
                            .with_suggestions(
                                a.name.as_str(),
                                formals.iter().map(|f| f.name.as_str().to_owned()),
                            );
                            return Err(from_call_site(e, pos));
                        }
                    }
                }
                let env = Env::new(up, vals);
                fill_pending(pending, &env);
                env
            }
        };
        Ok(env)
    }

    // ----- coercion -----

    /// Appends `v` coerced to a string to `out`, collecting context. Mirrors `coerceToString`.
    pub fn coerce_into(
        &mut self,
        v: &Value,
        pos: Pos,
        opts: Coerce,
        out: &mut String,
        ctx: &mut Context,
    ) -> Result<()> {
        let v = self.force(v)?;
        match &v {
            Value::String(s) => {
                out.push_str(s.as_str());
                if s.has_context() {
                    ctx.extend(s.context().iter().cloned());
                }
                Ok(())
            }
            Value::Path(p) => {
                if opts.copy_to_store {
                    let sp = self.copy_path_to_store(p, pos)?;
                    out.push_str(&sp);
                    ctx.insert(Rc::from(sp.as_str()));
                } else {
                    out.push_str(p);
                }
                Ok(())
            }
            Value::Attrs(a) => {
                // Bounded: `let a = { outPath = a; }; in "${a}"` never ends.
                if let Some(f) = a.get(self.syms.to_string) {
                    let f = f.clone();
                    return self.with_call_depth(pos, |ev| {
                        let r = ev.call(&f, v.clone(), pos)?;
                        let opts = Coerce {
                            ctx: "while evaluating the result of the `__toString` attribute",
                            ..opts
                        };
                        ev.coerce_into(&r, pos, opts, out, ctx)
                    });
                }
                if let Some(o) = a.get(self.syms.out_path) {
                    let o = o.clone();
                    return self.with_call_depth(pos, |ev| ev.coerce_into(&o, pos, opts, out, ctx));
                }
                Err(cannot_coerce(&v, pos, opts.ctx))
            }
            _ if opts.more => match &v {
                Value::Null | Value::Bool(false) => Ok(()),
                Value::Bool(true) => {
                    out.push('1');
                    Ok(())
                }
                Value::Int(i) => {
                    out.push_str(itoa::Buffer::new().format(*i));
                    Ok(())
                }
                Value::Float(f) => {
                    out.push_str(&format!("{f:.6}"));
                    Ok(())
                }
                Value::List(l) => {
                    let item_opts = Coerce {
                        ctx: "while evaluating one element of the list",
                        ..opts
                    };
                    for (i, item) in l.iter().enumerate() {
                        self.with_call_depth(pos, |ev| {
                            ev.coerce_into(item, pos, item_opts, out, ctx)
                        })
                        .map_err(|e| e.add_trace(pos, opts.ctx))?;
                        if i + 1 < l.len() {
                            let item = self.force(item)?;
                            let empty_list = matches!(&item, Value::List(x) if x.is_empty());
                            if !empty_list {
                                out.push(' ');
                            }
                        }
                    }
                    Ok(())
                }
                other => Err(cannot_coerce(other, pos, opts.ctx)),
            },
            other => Err(cannot_coerce(other, pos, opts.ctx)),
        }
    }

    /// `v` as a string with its context.
    pub fn coerce_to_string(&mut self, v: &Value, pos: Pos, opts: Coerce) -> Result<NixString> {
        match v {
            Value::String(s) => return Ok(s.clone()),
            // `toString i`, common in names: no formatter, no growing buffer.
            Value::Int(i) if opts.more => {
                return Ok(NixString::new(itoa::Buffer::new().format(*i).to_owned()))
            }
            _ => {}
        }
        let mut out = String::new();
        let mut ctx = Context::new();
        self.coerce_into(v, pos, opts, &mut out, &mut ctx)?;
        Ok(NixString::with_context(out, ctx))
    }

    /// A path from a path value or a string that is an absolute path. Mirrors `coerceToPath`.
    pub fn coerce_to_path(&mut self, v: &Value, pos: Pos) -> Result<(String, Context)> {
        self.coerce_to_path_ctx(v, pos, "")
    }

    /// [`Self::coerce_to_path`] with Nix 2.26's frame `ctx` for what fails.
    pub fn coerce_to_path_ctx(
        &mut self,
        v: &Value,
        pos: Pos,
        ctx: &'static str,
    ) -> Result<(String, Context)> {
        let forced = self.force(v).map_err(|e| e.add_trace(pos, ctx))?;
        let s = self.coerce_to_string(
            &forced,
            pos,
            Coerce {
                more: false,
                copy_to_store: false,
                ctx,
            },
        )?;
        if !s.as_str().starts_with('/') {
            return Err(EvalError::new(
                ErrorKind::Other,
                format!("string '{}' doesn't represent an absolute path", s.as_str()),
                Pos::NONE,
            )
            .add_trace(pos, ctx));
        }
        Ok((s.as_str().to_owned(), s.context().clone()))
    }

    /// Before reading `path`: if it is in the store, makes sure what
    /// evaluation wrote there is on disk.
    pub(crate) fn before_reading(&self, path: &str, pos: Pos) -> Result<()> {
        let dir = self.opts.store.store_dir().as_str();
        if path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/') {
            self.opts.store.flush().map_err(|e| {
                EvalError::new(ErrorKind::Io, format!("writing to the store: {e}"), pos)
            })?;
        }
        Ok(())
    }

    /// Copies a source path to the store (once per path). Mirrors `copyPathToStore`.
    pub fn copy_path_to_store(&mut self, path: &str, pos: Pos) -> Result<String> {
        if let Some(p) = self.src_to_store.get(path) {
            return Ok(p.clone());
        }
        let name = base_name(path);
        if name.ends_with(".drv") {
            return Err(EvalError::new(
                ErrorKind::Other,
                "file names are not allowed to end in '.drv'",
                pos,
            ));
        }
        let store = self.opts.store.clone();
        let sp = store
            .add_to_store(
                name,
                &self.fs_path(path),
                FileIngestionMethod::Recursive,
                HashAlgo::Sha256,
                None,
            )
            .map_err(|e| {
                let msg = if std::fs::symlink_metadata(self.fs_path(path)).is_err() {
                    format!("path '{path}' does not exist")
                } else {
                    format!("while copying '{path}' to the store: {}", io_msg(&e))
                };
                EvalError::new(ErrorKind::Io, msg, Pos::NONE)
            })?;
        let full = store.store_dir().display(&sp);
        self.src_to_store.insert(path.to_owned(), full.clone());
        Ok(full)
    }

    // ----- comparison -----

    /// `==`. Mirrors `eqValues`.
    ///
    /// As Nix 2.8's `eqValues`: both sides are forced first; two elements (or
    /// attribute values) that are the very same slot are then equal without
    /// comparing further, which is also how `elem f [ f ]` holds for a function.
    pub fn eq_values(&mut self, a: &Value, b: &Value, pos: Pos) -> Result<bool> {
        self.with_call_depth(pos, |ev| ev.eq_values_inner(a, b, pos))
    }

    /// [`Self::eq_values`] of two slots (list elements, attribute values, the
    /// operands of `elem`): forced, then equal if they are the same slot.
    pub(crate) fn eq_slots(&mut self, a: &Value, b: &Value, pos: Pos) -> Result<bool> {
        if identical(a, b) {
            self.force(a).map_err(|e| at(e, pos))?;
            return Ok(true);
        }
        self.eq_values(a, b, pos)
    }

    fn eq_values_inner(&mut self, a: &Value, b: &Value, pos: Pos) -> Result<bool> {
        let a = self.force(a).map_err(|e| at(e, pos))?;
        let b = self.force(b).map_err(|e| at(e, pos))?;
        Ok(match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Int(x), Value::Float(y)) => (*x as f64) == *y,
            (Value::Float(x), Value::Int(y)) => *x == (*y as f64),
            (Value::Float(x), Value::Float(y)) => x == y,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Null, Value::Null) => true,
            (Value::String(x), Value::String(y)) => x.as_str() == y.as_str(),
            (Value::Path(x), Value::Path(y)) => x == y,
            (Value::List(x), Value::List(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (i, j) in x.iter().zip(y.iter()) {
                    if !self.eq_slots(i, j, pos)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Value::Attrs(x), Value::Attrs(y)) => {
                if self.is_derivation(x)? && self.is_derivation(y)? {
                    if let (Some(p), Some(q)) =
                        (x.get(self.syms.out_path), y.get(self.syms.out_path))
                    {
                        let (p, q) = (p.clone(), q.clone());
                        return self.eq_values(&p, &q, pos);
                    }
                }
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (i, j) in x.iter().zip(y.iter()) {
                    if i.name != j.name || !self.eq_slots(&i.value, &j.value, pos)? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => false,
        })
    }

    pub(crate) fn is_derivation(&mut self, a: &Attrs) -> Result<bool> {
        match a.get(self.syms.type_) {
            Some(t) => {
                let t = t.clone();
                match self.force(&t)? {
                    Value::String(s) => Ok(s.as_str() == "derivation"),
                    _ => Ok(false),
                }
            }
            None => Ok(false),
        }
    }

    /// `<`. Mirrors `CompareValues`.
    pub fn less_than(&mut self, a: &Value, b: &Value, pos: Pos) -> Result<bool> {
        let a = self.force(a)?;
        let b = self.force(b)?;
        match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => Ok(x < y),
            (Value::Int(x), Value::Float(y)) => Ok((*x as f64) < *y),
            (Value::Float(x), Value::Int(y)) => Ok(*x < (*y as f64)),
            (Value::Float(x), Value::Float(y)) => Ok(x < y),
            (Value::String(x), Value::String(y)) => Ok(x.as_str() < y.as_str()),
            (Value::Path(x), Value::Path(y)) => Ok(x < y),
            (Value::List(x), Value::List(y)) => {
                for (i, j) in x.iter().zip(y.iter()) {
                    if !self.eq_values(i, j, pos)? {
                        return self.less_than(i, j, pos).map_err(|e| {
                            e.add_trace(Pos::NONE, "while comparing two list elements")
                        });
                    }
                }
                Ok(x.len() < y.len())
            }
            _ if a.type_name() == b.type_name() => Err(EvalError::new(
                ErrorKind::Other,
                format!(
                    "cannot compare {} with {}; values of that type are incomparable",
                    a.show_type(),
                    b.show_type()
                ),
                Pos::NONE,
            )),
            _ => Err(EvalError::new(
                ErrorKind::Other,
                format!("cannot compare {} with {}", a.show_type(), b.show_type()),
                Pos::NONE,
            )),
        }
    }

    /// Why `a == b` is false, as an assertion error (Nix 2.26's
    /// `assertEqValues`); `Ok` if they are equal after all.
    #[cold]
    pub(crate) fn assert_eq_values(&mut self, a: &Value, b: &Value, pos: Pos) -> Result<()> {
        use crate::print::error_value as show;
        let a = self.force(a)?;
        let b = self.force(b)?;
        let fail = |msg: String| Err(EvalError::new(ErrorKind::Assertion, msg, Pos::NONE));
        let num = |v: &Value| matches!(v, Value::Int(_) | Value::Float(_));
        if num(&a) && num(&b) {
            if self.eq_values(&a, &b, pos)? {
                return Ok(());
            }
            return fail(format!(
                "{} with value '{}' is not equal to {} with value '{}'",
                a.show_type(),
                show(&a),
                b.show_type(),
                show(&b)
            ));
        }
        if a.type_name() != b.type_name() {
            return fail(format!(
                "{} of value '{}' is not equal to {} of value '{}'",
                a.show_type(),
                show(&a),
                b.show_type(),
                show(&b)
            ));
        }
        match (&a, &b) {
            (Value::Bool(x), Value::Bool(y)) if x != y => fail(format!(
                "boolean '{}' is not equal to boolean '{}'",
                show(&a),
                show(&b)
            )),
            (Value::String(x), Value::String(y)) if x.as_str() != y.as_str() => fail(format!(
                "string '{}' is not equal to string '{}'",
                show(&a),
                show(&b)
            )),
            (Value::Path(x), Value::Path(y)) if x != y => fail(format!(
                "path '{}' is not equal to path '{}'",
                show(&a),
                show(&b)
            )),
            (Value::List(x), Value::List(y)) => {
                if x.len() != y.len() {
                    return fail(format!(
                        "list of size '{}' is not equal to list of size '{}', left hand side is '{}', right hand side is '{}'",
                        x.len(),
                        y.len(),
                        show(&a),
                        show(&b)
                    ));
                }
                for (n, (i, j)) in x.iter().zip(y.iter()).enumerate() {
                    self.assert_eq_values(i, j, pos)
                        .map_err(|e| e.add_trace(pos, format!("while comparing list element {n}")))?;
                }
                Ok(())
            }
            (Value::Attrs(x), Value::Attrs(y)) => {
                if self.is_derivation(x)? && self.is_derivation(y)? {
                    if let (Some(p), Some(q)) =
                        (x.get(self.syms.out_path), y.get(self.syms.out_path))
                    {
                        let (p, q) = (p.clone(), q.clone());
                        return self.assert_eq_values(&p, &q, pos).map_err(|e| {
                            e.add_trace(
                                pos,
                                "while comparing a derivation by its 'outPath' attribute",
                            )
                        });
                    }
                }
                if x.len() != y.len() {
                    return fail(format!(
                        "attribute names of attribute set '{}' differs from attribute set '{}'",
                        show(&a),
                        show(&b)
                    ));
                }
                for (i, j) in x.iter().zip(y.iter()) {
                    if i.name != j.name {
                        if y.get(i.name).is_none() {
                            return fail(format!(
                                "attribute name '{}' is contained in '{}', but not in '{}'",
                                i.name,
                                show(&a),
                                show(&b)
                            ));
                        }
                        return fail(format!(
                            "attribute name '{}' is missing in '{}', but is contained in '{}'",
                            j.name,
                            show(&a),
                            show(&b)
                        ));
                    }
                    if let Err(mut e) = self.assert_eq_values(&i.value, &j.value, pos) {
                        if !j.pos.is_none() {
                            e = e.add_trace(j.pos, "where right hand side is");
                        }
                        if !i.pos.is_none() {
                            e = e.add_trace(i.pos, "where left hand side is");
                        }
                        return Err(e.add_trace(pos, format!("while comparing attribute '{}'", i.name)));
                    }
                }
                Ok(())
            }
            (Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_), _) => fail(
                "distinct functions and immediate comparisons of identical functions compare as unequal"
                    .to_owned(),
            ),
            // Numbers were compared above.
            _ => Ok(()),
        }
    }

    // ----- helpers -----

    /// `{ file, line, column }` for `__curPos` and `unsafeGetAttrPos`.
    pub fn pos_to_value(&self, pos: Pos) -> Value {
        match pos.resolve() {
            None => Value::Null,
            Some(loc) => {
                let Some(file) = loc.file_for_language() else {
                    return Value::Null;
                };
                let file = Value::string(file);
                Value::attrs(Attrs::from_unsorted(vec![
                    Attr {
                        name: Symbol::new("file"),
                        value: file,
                        pos: Pos::NONE,
                    },
                    Attr {
                        name: Symbol::new("line"),
                        value: Value::Int(loc.line as i64),
                        pos: Pos::NONE,
                    },
                    Attr {
                        name: Symbol::new("column"),
                        value: Value::Int(loc.column as i64),
                        pos: Pos::NONE,
                    },
                ]))
            }
        }
    }

    /// `evaluation warning: MSG` (its further lines aligned under the
    /// first), as Nix 2.26 logs `builtins.warn`; to the trace sink if any.
    pub(crate) fn warn(&mut self, msg: &str) {
        const PREFIX: &str = "evaluation warning: ";
        let mut text = String::new();
        let msg = msg.trim_end_matches([' ', '\n', '\r', '\t']);
        for (i, line) in msg.split('\n').enumerate() {
            if i > 0 {
                text.push('\n');
            }
            let l = format!(
                "{}{line}",
                if i == 0 {
                    PREFIX
                } else {
                    "                    "
                }
            );
            text.push_str(l.trim_end_matches([' ', '\n', '\r', '\t']));
        }
        match &mut self.opts.trace_sink {
            Some(sink) => sink(&text),
            None => crate::error::log_stderr(&text),
        }
    }

    pub(crate) fn trace(&mut self, msg: &str) {
        match &mut self.opts.trace_sink {
            Some(sink) => sink(msg),
            None => crate::error::log_stderr(&format!("trace: {msg}")),
        }
    }

    /// Looks up `<name/rest>` in the search path. Mirrors `findFile`.
    pub fn find_file(
        &self,
        search_path: &[SearchPathEntry],
        name: &str,
        pos: Pos,
    ) -> Result<String> {
        for entry in search_path {
            let rest = if entry.prefix.is_empty() {
                Some(name)
            } else if name == entry.prefix {
                Some("")
            } else {
                name.strip_prefix(&entry.prefix)
                    .and_then(|r| r.strip_prefix('/'))
            };
            let Some(rest) = rest else { continue };
            if entry.path.contains("://") {
                continue;
            }
            let root = if entry.path.starts_with('/') {
                entry.path.clone()
            } else {
                format!(
                    "{}/{}",
                    std::env::current_dir()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default(),
                    entry.path
                )
            };
            let candidate = if rest.is_empty() {
                canon_path(&root)
            } else {
                canon_path(&format!("{root}/{rest}"))
            };
            if Path::new(&candidate).exists() {
                return Ok(candidate);
            }
        }
        if let Some(file) = name.strip_prefix("nix/") {
            if crate::builtins::corepkg_exists(file) {
                return Ok(format!("{}/{file}", crate::builtins::COREPKGS_DIR));
            }
        }
        Err(EvalError::new(
            ErrorKind::Throw,
            format!(
                "file '{name}' was not found in the Nix search path (add it using $NIX_PATH or -I)"
            ),
            pos,
        ))
    }
}

/// Whether two stored values are the same object (Nix compares `Value*`
/// first, so a function equals itself inside lists and sets).
fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Thunk(x), Value::Thunk(y)) => x.ptr_eq(y),
        (Value::Lambda(x), Value::Lambda(y)) => Rc::ptr_eq(x, y),
        (Value::PrimOp(x), Value::PrimOp(y)) => Rc::ptr_eq(x, y),
        (Value::PrimOpApp(x), Value::PrimOpApp(y)) => Rc::ptr_eq(x, y),
        (Value::Attrs(x), Value::Attrs(y)) => Rc::ptr_eq(x, y),
        (Value::List(x), Value::List(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

/// An integer operand known without evaluation: a constant, or a variable
/// holding (or a forced thunk of) an integer.
#[inline(always)]
fn ready_int(e: &Expr, env: &Env) -> Option<i64> {
    match e {
        Expr::Const(Value::Int(i)) => Some(*i),
        Expr::Var { depth, idx, .. } => match env.get(*depth, *idx) {
            Value::Int(i) => Some(*i),
            Value::Thunk(t) => match t.get()? {
                Value::Int(i) => Some(i),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Computes `a + 1`, `n - 2`, `i < n`... right away when both operands are
/// integers already known: the result is the same as the thunk's would be,
/// without the thunk. Anything that could fail (overflow) stays lazy.
#[inline]
fn eager_arith(e: &Expr, env: &Env) -> Option<Value> {
    let Expr::Bin { op, lhs, rhs, .. } = e else {
        return None;
    };
    if !matches!(
        op,
        BinOp::Add
            | BinOp::Sub
            | BinOp::Mul
            | BinOp::Less
            | BinOp::LessEq
            | BinOp::Greater
            | BinOp::GreaterEq
            | BinOp::Eq
            | BinOp::NotEq
    ) {
        return None;
    }
    let x = ready_int(lhs, env)?;
    let y = ready_int(rhs, env)?;
    match op {
        BinOp::Add => x.checked_add(y).map(Value::Int),
        BinOp::Sub => x.checked_sub(y).map(Value::Int),
        BinOp::Mul => x.checked_mul(y).map(Value::Int),
        BinOp::Less => Some(Value::Bool(x < y)),
        BinOp::LessEq => Some(Value::Bool(x <= y)),
        BinOp::Greater => Some(Value::Bool(x > y)),
        BinOp::GreaterEq => Some(Value::Bool(x >= y)),
        BinOp::Eq => Some(Value::Bool(x == y)),
        BinOp::NotEq => Some(Value::Bool(x != y)),
        _ => None,
    }
}

/// The unforced value of `lambda`'s body applied to `arg`, when that body is
/// a variable or a constant (`x: x`, `_: null`, `a: b: a`): such a call
/// needs no frame. `None` for any other body.
#[inline]
fn frameless_body(lambda: &crate::ast::Lambda, env: &Env, arg: &Value) -> Option<Value> {
    if !matches!(lambda.param, Param::Ident(_)) {
        return None;
    }
    match &*lambda.body {
        Expr::Const(v) => Some(v.clone()),
        // The frame would be the prefix copied from `env`, then `arg`.
        Expr::Var { depth: 0, idx, .. } => {
            let (idx, prefix) = (*idx as usize, lambda.prefix());
            match idx.cmp(&prefix) {
                std::cmp::Ordering::Less => env.vals.get(idx).cloned(),
                std::cmp::Ordering::Equal => Some(arg.clone()),
                std::cmp::Ordering::Greater => None,
            }
        }
        Expr::Var { depth, idx, .. } => {
            let parent = match lambda.flat {
                Some(_) => env.up.as_deref()?,
                None => env,
            };
            Some(parent.lookup(*depth - 1, *idx))
        }
        _ => None,
    }
}

/// The parent and first slots of a frame of `lambda` closed over `env`: for
/// the body of a curried function, the slots of `env` (the enclosing
/// lambda's frame) and its parent; otherwise `env` and none.
#[inline]
fn frame_prefix(lambda: &crate::ast::Lambda, env: &Rc<Env>) -> (Option<Rc<Env>>, Slots) {
    match lambda.flat {
        None => (Some(env.clone()), Slots::new()),
        Some(n) => (
            env.up.clone(),
            env.vals[..n as usize].iter().cloned().collect(),
        ),
    }
}

/// A slot of a frame still being built whose expression belongs to the
/// enclosing frame `outer` ([`BindingValue::Outer`]): what
/// [`Evaluator::init_slot`] gives (a constant, a variable's value, or else a
/// thunk), but the thunk closes over `outer`, not the new frame.
fn outer_slot(e: &ExprRef, outer: &Rc<Env>) -> Value {
    match &**e {
        Expr::Const(v) => v.clone(),
        Expr::Var { depth, idx, .. } => outer.lookup(*depth, *idx),
        _ => Thunk::value(ThunkState::Expr(e.clone(), outer.clone())),
    }
}

/// Completes the placeholder thunks of a frame that now exists.
fn fill_pending(pending: Vec<(Thunk, ExprRef)>, env: &Rc<Env>) {
    for (t, e) in pending {
        t.set(ThunkState::Expr(e, env.clone()));
    }
}

/// CR and CR LF become LF, as Nix's lexer treats them.
fn normalize_newlines(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The frames `--show-trace` adds for a failed call. Mirrors `callFunction`.
#[cold]
fn call_trace(e: Box<EvalError>, lambda: &crate::ast::Lambda, pos: Pos) -> Box<EvalError> {
    let what = match lambda.name {
        Some(n) if !n.as_str().is_empty() => format!("'{n}'"),
        _ => "anonymous lambda".to_owned(),
    };
    let e = e.add_trace(lambda.pos, format!("while calling {what}"));
    from_call_site(e, pos)
}

/// "while calling the 'X' builtin" (not for `addErrorContext`, whose own
/// frame says more).
#[cold]
fn primop_trace(e: Box<EvalError>, op: &PrimOp, pos: Pos) -> Box<EvalError> {
    if op.name == "addErrorContext" {
        return e;
    }
    e.add_trace(pos, format!("while calling the '{}' builtin", op.name))
}

/// Nix's "from call site" frame, added where the call has a position.
#[cold]
fn from_call_site(e: Box<EvalError>, pos: Pos) -> Box<EvalError> {
    if pos.is_none() {
        e
    } else {
        e.add_trace(pos, "from call site")
    }
}

pub(crate) fn lambda_name(name: Option<Symbol>) -> String {
    match name {
        Some(n) if !n.as_str().is_empty() => format!("function '{n}'"),
        _ => "function 'anonymous lambda'".to_owned(),
    }
}

/// `expected a list but found an integer: 3` (Nix 2.26's type errors).
#[cold]
pub fn expected(v: &Value, what: &str, pos: Pos) -> Box<EvalError> {
    type_error(
        format!(
            "expected {what} but found {}: {}",
            v.show_type(),
            crate::print::error_value(v)
        ),
        pos,
    )
}

/// [`expected`] with Nix's `errorCtx` frame at `pos` (as `forceList`,
/// `forceAttrs` add it: the message without a position).
#[cold]
pub fn expected_ctx(v: &Value, what: &str, pos: Pos, ctx: &str) -> Box<EvalError> {
    expected(v, what, Pos::NONE).add_trace(pos, ctx.to_owned())
}

/// Gives the frames and the error of an operand of `+` or an interpolated
/// value that have no position yet the operand's (computed only on error).
#[cold]
fn segment_at(mut e: Box<EvalError>, pos: Pos) -> Box<EvalError> {
    for f in e.trace.iter_mut() {
        if f.pos.is_none()
            && (f.message == "while evaluating a path segment"
                || f.message == "while evaluating the result of the `__toString` attribute")
        {
            f.pos = pos;
        }
    }
    if e.pos.is_none()
        && (e.message.starts_with("cannot add ")
            || e.message.starts_with("integer overflow in adding")
            || e.message
                .starts_with("attempt to call something which is not a function"))
    {
        e.pos = pos;
    }
    e
}

/// `attempt to call something which is not a function but an integer: 1`.
#[cold]
fn not_a_function(v: &Value, pos: Pos) -> Box<EvalError> {
    type_error(
        format!(
            "attempt to call something which is not a function but {}: {}",
            v.show_type(),
            crate::print::error_value(v)
        ),
        pos,
    )
}

/// `cannot coerce a set to a string: { }`, with the caller's frame.
#[cold]
fn cannot_coerce(v: &Value, pos: Pos, ctx: &'static str) -> Box<EvalError> {
    type_error(
        format!(
            "cannot coerce {} to a string: {}",
            v.show_type(),
            crate::print::error_value(v)
        ),
        Pos::NONE,
    )
    .add_trace(pos, ctx)
}

/// The frame Nix 2.26 adds for an error in an operand of `op`: `-`, `*`,
/// `/`, `<`... are calls of builtins (`a <= b` is `!(b < a)`).
#[cold]
fn bin_trace(e: Box<EvalError>, op: BinOp, pos: Pos, left: bool) -> Box<EvalError> {
    if op == BinOp::Update {
        let side = if left { "left" } else { "right" };
        return e.add_trace(
            pos,
            format!("in the {side} operand of the update (//) operator"),
        );
    }
    let name = match op {
        BinOp::Sub => "sub",
        BinOp::Mul => "mul",
        BinOp::Div => "div",
        BinOp::Less | BinOp::Greater | BinOp::LessEq | BinOp::GreaterEq => "lessThan",
        _ => return e,
    };
    let e = e.add_trace(pos, format!("while calling the '{name}' builtin"));
    match op {
        BinOp::LessEq | BinOp::GreaterEq => e.add_trace(pos, "in the argument of the not operator"),
        _ => e,
    }
}

/// `attribute 'x' missing`, with "Did you mean ...?" among the set's names.
#[cold]
pub(crate) fn missing_attr(name: Symbol, attrs: &Attrs, pos: Pos) -> Box<EvalError> {
    EvalError::new(
        ErrorKind::MissingAttribute,
        format!("attribute '{name}' missing"),
        pos,
    )
    .with_suggestions(
        name.as_str(),
        attrs.iter().map(|a| a.name.as_str().to_owned()),
    )
}

/// Gives an infinite recursion error without a position the position where
/// the value being computed was asked for again (Nix 2.26's
/// `tryFixupBlackHolePos`); other errors keep theirs.
pub(crate) fn at(mut e: Box<EvalError>, pos: Pos) -> Box<EvalError> {
    if e.pos.is_none() && e.kind == ErrorKind::InfiniteRecursion {
        e.pos = pos;
    }
    e
}

pub(crate) fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".to_owned(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
    }
}

/// The store path of a context element (`=p`, `!out!p` or `p`).
pub(crate) fn decode_context_path(elem: &str) -> &str {
    if let Some(rest) = elem.strip_prefix('=') {
        rest
    } else if let Some(rest) = elem.strip_prefix('!') {
        rest.split_once('!').map(|(_, p)| p).unwrap_or(rest)
    } else {
        elem
    }
}

/// Nix's `baseNameOf` on a path string.
pub(crate) fn base_name(path: &str) -> &str {
    let p = path.strip_suffix('/').unwrap_or(path);
    match p.rfind('/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

pub(crate) fn parent_dir(path: &str) -> String {
    match PathBuf::from(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.display().to_string(),
        _ => "/".to_owned(),
    }
}
