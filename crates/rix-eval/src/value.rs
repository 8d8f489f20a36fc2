//! Runtime values.
//!
//! A [`Value`] is 16 bytes: scalars inline, everything else behind an `Rc`.
//! Attribute sets are vectors sorted by name (Nix's `Bindings`), lists are
//! shared vectors, and unevaluated values are [`Thunk`]s updated in place when
//! forced. Environments ([`Env`]) are frames of slots addressed by
//! `(depth, index)`, as resolved by the lowering pass.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use crate::ast::{ExprRef, Lambda};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::{FxBuild, Symbol};

/// A Nix value, possibly not yet evaluated ([`Value::Thunk`]).
///
/// `repr(C, u64)`: an eight-byte tag, then every payload at offset 8. With a
/// one-byte tag, copies of values moved bytes 1-7 as overlapping 4-byte
/// pieces through the stack, which stalls store forwarding (fib ran 1.5x
/// slower for the same instruction count). Still 16 bytes, and the tag's
/// unused values remain niches for `Option<Value>`, `Result<Value>` and
/// [`ThunkState`].
#[repr(C, u64)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(NixString),
    /// An absolute, canonical path.
    Path(Rc<String>),
    Attrs(Rc<Attrs>),
    List(Rc<Vec<Value>>),
    Lambda(Rc<Closure>),
    PrimOp(Rc<PrimOp>),
    PrimOpApp(Rc<PrimOpApp>),
    Thunk(Thunk),
}

// By hand rather than derived: the derived `clone` was not inlined, and
// values are cloned on every variable lookup.
impl Clone for Value {
    #[inline(always)]
    fn clone(&self) -> Self {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::String(s) => Value::String(s.clone()),
            Value::Path(p) => Value::Path(Rc::clone(p)),
            Value::Attrs(a) => Value::Attrs(Rc::clone(a)),
            Value::List(l) => Value::List(Rc::clone(l)),
            Value::Lambda(c) => Value::Lambda(Rc::clone(c)),
            Value::PrimOp(p) => Value::PrimOp(Rc::clone(p)),
            Value::PrimOpApp(p) => Value::PrimOpApp(Rc::clone(p)),
            Value::Thunk(t) => Value::Thunk(t.clone()),
        }
    }
}

impl Value {
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(NixString::new(s.into()))
    }

    /// An attribute name as a string value, remembering its symbol (so that
    /// using it as a name again, `s.${n}`, needs no interning).
    pub fn name_string(name: Symbol) -> Value {
        // The text is the symbol's: one allocation, no copy (`attrNames`,
        // `mapAttrs` and `zipAttrsWith` make one per attribute).
        Value::String(NixString(Rc::new(StrInner {
            s: Text::Symbol,
            ctx: None,
            sym: Cell::new(Some(name)),
        })))
    }

    pub fn path(s: impl Into<String>) -> Value {
        Value::Path(Rc::new(s.into()))
    }

    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v))
    }

    pub fn attrs(a: Attrs) -> Value {
        Value::Attrs(Rc::new(a))
    }

    pub fn is_thunk(&self) -> bool {
        matches!(self, Value::Thunk(_))
    }

    /// Nix's `showType`, used in type errors ("value is an integer while ...").
    pub fn type_description(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a Boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::String(_) => "a string",
            Value::Path(_) => "a path",
            Value::Attrs(_) => "a set",
            Value::List(_) => "a list",
            Value::Lambda(_) => "a function",
            Value::PrimOp(_) => "a built-in function",
            Value::PrimOpApp(_) => "a partially applied built-in function",
            Value::Thunk(_) => "a thunk",
        }
    }

    /// The type as Nix 2.26's `showType` names it in errors.
    pub fn show_type(&self) -> String {
        match self {
            Value::String(s) if s.has_context() => "a string with context".to_owned(),
            Value::PrimOp(op) => format!("the built-in function '{}'", op.name),
            Value::PrimOpApp(app) => {
                format!("the partially applied built-in function '{}'", app.op.name)
            }
            Value::Thunk(t) => match t.get() {
                Some(v) => v.show_type(),
                None if t.is_blackhole() => "a black hole".to_owned(),
                None => "a thunk".to_owned(),
            },
            Value::Lambda(_) => "a function".to_owned(),
            v => v.type_description().to_owned(),
        }
    }

    /// `builtins.typeOf`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Path(_) => "path",
            Value::Attrs(_) => "set",
            Value::List(_) => "list",
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => "lambda",
            Value::Thunk(_) => "thunk",
        }
    }

    pub fn is_function(&self) -> bool {
        matches!(
            self,
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_)
        )
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{:?}", s.as_str()),
            Value::Path(p) => f.write_str(p),
            Value::Attrs(a) => {
                f.write_str("{ ")?;
                for attr in a.iter() {
                    write!(f, "{} = {:?}; ", attr.name, attr.value)?;
                }
                f.write_str("}")
            }
            Value::List(l) => f.debug_list().entries(l.iter()).finish(),
            Value::Lambda(_) => f.write_str("<LAMBDA>"),
            Value::PrimOp(_) => f.write_str("<PRIMOP>"),
            Value::PrimOpApp(_) => f.write_str("<PRIMOP-APP>"),
            Value::Thunk(t) => match t.get() {
                Some(v) => v.fmt(f),
                None => f.write_str("<CODE>"),
            },
        }
    }
}

/// A string with its context: the store paths it refers to, in Nix's encoding
/// (`/nix/store/x` for a plain path, `=/nix/store/x.drv` for a derivation and
/// all its outputs, `!out!/nix/store/x.drv` for one output).
#[derive(Clone)]
pub struct NixString(Rc<StrInner>);

/// Most strings have no context: it is boxed, so that they stay small.
struct StrInner {
    s: Text,
    ctx: Option<Box<Context>>,
    /// The string interned, once it has been used as an attribute name.
    sym: Cell<Option<Symbol>>,
}

/// The text of a string: its own, or that of the symbol it was made from
/// (then `sym` is set). Still two words (the box's pointer is never null).
enum Text {
    Owned(Box<str>),
    Symbol,
}

/// A string context: a set of encoded elements.
pub type Context = BTreeSet<Rc<str>>;

thread_local! {
    /// The context of strings without one (leaked once per thread).
    static EMPTY_CONTEXT: &'static Context = Box::leak(Box::default());
}

impl NixString {
    pub fn new(s: String) -> NixString {
        NixString(Rc::new(StrInner {
            s: Text::Owned(s.into_boxed_str()),
            ctx: None,
            sym: Cell::new(None),
        }))
    }

    pub fn with_context(s: String, ctx: Context) -> NixString {
        NixString(Rc::new(StrInner {
            s: Text::Owned(s.into_boxed_str()),
            ctx: (!ctx.is_empty()).then(|| Box::new(ctx)),
            sym: Cell::new(None),
        }))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0.s {
            Text::Owned(s) => s,
            Text::Symbol => self.0.sym.get().expect("set with the text").as_str(),
        }
    }

    pub fn context(&self) -> &Context {
        match &self.0.ctx {
            Some(c) => c,
            None => EMPTY_CONTEXT.with(|e| *e),
        }
    }

    pub fn has_context(&self) -> bool {
        self.0.ctx.is_some()
    }

    /// The string as a symbol, interned on first use and remembered.
    #[inline]
    pub fn to_symbol(&self) -> Symbol {
        if let Some(s) = self.0.sym.get() {
            return s;
        }
        let s = Symbol::new(self.as_str());
        self.0.sym.set(Some(s));
        s
    }
}

impl From<&str> for NixString {
    fn from(s: &str) -> Self {
        NixString::new(s.to_owned())
    }
}

/// One attribute of a set.
#[derive(Clone)]
pub struct Attr {
    pub name: Symbol,
    pub value: Value,
    pub pos: Pos,
}

/// An attribute set: attributes sorted by name. Large sets get a hash
/// index on their first lookup.
#[derive(Clone, Default)]
pub struct Attrs {
    entries: Vec<Attr>,
    // Boxed: most sets never need it, and an empty box is one word.
    #[allow(clippy::box_collection)]
    index: std::cell::OnceCell<Box<HashMap<Symbol, u32, FxBuild>>>,
}

/// Sets at least this large are looked up through a hash index.
const INDEX_THRESHOLD: usize = 48;

impl Attrs {
    pub fn new() -> Attrs {
        Attrs::default()
    }

    /// Builds a set from attributes in any order; on duplicates the last one wins.
    pub fn from_unsorted(mut entries: Vec<Attr>) -> Attrs {
        if !entries.windows(2).all(|w| w[0].name < w[1].name) {
            entries.sort_by_key(|a| a.name);
            // Keep the last of equal names: walk backwards.
            let mut out: Vec<Attr> = Vec::with_capacity(entries.len());
            for a in entries.into_iter().rev() {
                if out.last().is_some_and(|l| l.name == a.name) {
                    continue;
                }
                out.push(a);
            }
            out.reverse();
            entries = out;
        }
        Attrs {
            entries,
            index: Default::default(),
        }
    }

    /// Builds a set from attributes already sorted by name without duplicates.
    pub fn from_sorted(entries: Vec<Attr>) -> Attrs {
        debug_assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
        Attrs {
            entries,
            index: Default::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Attr> {
        self.entries.iter()
    }

    pub fn entries(&self) -> &[Attr] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<Attr> {
        self.entries
    }

    pub fn get_attr(&self, name: Symbol) -> Option<&Attr> {
        if self.entries.len() >= INDEX_THRESHOLD {
            let index = self.index.get_or_init(|| {
                Box::new(
                    self.entries
                        .iter()
                        .enumerate()
                        .map(|(i, a)| (a.name, i as u32))
                        .collect(),
                )
            });
            return index.get(&name).map(|&i| &self.entries[i as usize]);
        }
        self.entries
            .binary_search_by(|a| a.name.cmp(&name))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn get(&self, name: Symbol) -> Option<&Value> {
        self.get_attr(name).map(|a| &a.value)
    }

    pub fn get_str(&self, name: &str) -> Option<&Value> {
        self.get(Symbol::new(name))
    }

    /// Inserts or replaces.
    pub fn insert(&mut self, name: Symbol, value: Value, pos: Pos) {
        self.index = Default::default();
        match self.entries.binary_search_by(|a| a.name.cmp(&name)) {
            Ok(i) => self.entries[i] = Attr { name, value, pos },
            Err(i) => self.entries.insert(i, Attr { name, value, pos }),
        }
    }

    /// `self // other`: a merge of two sorted vectors, `other` winning.
    pub fn update(&self, other: &Attrs) -> Attrs {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].name.cmp(&b[j].name) {
                std::cmp::Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(b[j].clone());
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        Attrs {
            entries: out,
            index: Default::default(),
        }
    }
}

/// A lambda together with the environment it closes over.
pub struct Closure {
    pub lambda: Rc<Lambda>,
    pub env: Rc<Env>,
}

/// The Rust side of a builtin: receives exactly `arity` (unforced) arguments.
pub type PrimOpFn = fn(&mut Evaluator, &[Value], Pos) -> Result<Value>;

/// A builtin function.
pub struct PrimOp {
    pub name: &'static str,
    pub arity: usize,
    pub f: PrimOpFn,
}

/// A builtin applied to fewer arguments than its arity.
pub struct PrimOpApp {
    pub op: Rc<PrimOp>,
    pub args: Vec<Value>,
}

/// The slots of a frame: small frames (one lambda argument) stay inline.
pub type Slots = smallvec::SmallVec<[Value; 2]>;

/// A frame of variables. Frames are immutable once built: recursive
/// bindings (`let`, `rec`) get placeholder thunks that are filled in after
/// the frame exists.
pub struct Env {
    pub up: Option<Rc<Env>>,
    pub vals: Slots,
}

impl Env {
    pub fn new(up: Option<Rc<Env>>, vals: Slots) -> Rc<Env> {
        Rc::new(Env { up, vals })
    }

    /// The value in slot `idx` of the frame `depth` levels up.
    #[inline]
    pub fn get(&self, depth: u32, idx: u32) -> &Value {
        let mut env: &Env = self;
        for _ in 0..depth {
            env = env.up.as_deref().expect("lowering resolved a valid depth");
        }
        &env.vals[idx as usize]
    }

    /// Like [`Env::get`], cloned.
    #[inline]
    pub fn lookup(&self, depth: u32, idx: u32) -> Value {
        self.get(depth, idx).clone()
    }
}

/// What a thunk will compute, or has computed.
#[derive(Default)]
pub enum ThunkState {
    /// An expression in an environment.
    Expr(ExprRef, Rc<Env>),
    /// A lazy application `f x` (from `map`, `genList`, ...).
    Apply(Value, Value),
    /// A lazy application `f x y` (from `mapAttrs`, `zipAttrsWith`, ...);
    /// boxed, as the rarest and largest state.
    Apply2(Box<(Value, Value, Value)>),
    /// A lazy attribute selection (`inherit (e) a;`); boxed, so that a
    /// thunk's state is 32 bytes (the two values of `Apply`, the tag in a
    /// niche of the first).
    Select(Box<(Value, Symbol, Pos)>),
    /// Being evaluated: entering it again is infinite recursion.
    #[default]
    Blackhole,
    Done(Value),
    /// Computed in advance where Nix would still hold an unevaluated thunk
    /// (the outputs of `derivation` other than the first): the first force
    /// makes it [`ThunkState::Done`]; until then `--eval` prints `<CODE>`.
    Ready(Value),
}

/// A value computed on first use and then shared. A `Cell` (no borrow
/// flag): the state is taken out to be looked at and put back.
#[derive(Clone)]
pub struct Thunk(pub Rc<Cell<ThunkState>>);

impl Thunk {
    pub fn new(state: ThunkState) -> Thunk {
        Thunk(Rc::new(Cell::new(state)))
    }

    /// Replaces the state.
    #[inline]
    pub fn set(&self, state: ThunkState) {
        self.0.set(state);
    }

    /// Takes the state out, leaving [`ThunkState::Blackhole`].
    #[inline]
    pub fn take(&self) -> ThunkState {
        self.0.take()
    }

    pub fn value(state: ThunkState) -> Value {
        Value::Thunk(Thunk::new(state))
    }

    pub fn ptr_eq(&self, other: &Thunk) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Whether the thunk is being forced (for printing values in errors).
    pub fn is_blackhole(&self) -> bool {
        let state = self.0.take();
        let r = matches!(state, ThunkState::Blackhole);
        self.0.set(state);
        r
    }

    /// The computed value, if forced.
    #[inline]
    pub fn get(&self) -> Option<Value> {
        // Reading in place rather than `take` and `set` (two 32-byte moves and
        // a drop): every use of a forced variable goes through here.
        #[allow(unsafe_code)]
        // SAFETY: the reference lives only for this match. Nothing in it can
        // write the cell: cloning a value only increments reference counts,
        // and a `Thunk` is not `Sync` (the `Rc`), so no other thread sees it.
        let state = unsafe { &*self.0.as_ptr() };
        match state {
            ThunkState::Done(v) => Some(v.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_two_words() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
        assert_eq!(std::mem::size_of::<Option<Value>>(), 16);
        assert_eq!(std::mem::size_of::<crate::error::Result<Value>>(), 16);
    }

    #[test]
    fn strings_are_small() {
        assert_eq!(std::mem::size_of::<Text>(), 16);
        let s = Value::name_string(Symbol::new("abc"));
        let Value::String(s) = s else { unreachable!() };
        assert_eq!(s.as_str(), "abc");
        assert_eq!(s.to_symbol(), Symbol::new("abc"));
    }

    #[test]
    fn thunks_are_small() {
        // Two values (a lazy application), the tag in a niche of the first:
        // with the `Rc` counts, a thunk is 48 bytes.
        assert!(std::mem::size_of::<ThunkState>() <= 32);
    }

    #[test]
    fn attrs_update_and_lookup() {
        let s = |n: &str| Symbol::new(n);
        let a = Attrs::from_unsorted(vec![
            Attr {
                name: s("b"),
                value: Value::Int(1),
                pos: Pos::NONE,
            },
            Attr {
                name: s("a"),
                value: Value::Int(2),
                pos: Pos::NONE,
            },
        ]);
        let b = Attrs::from_unsorted(vec![Attr {
            name: s("b"),
            value: Value::Int(3),
            pos: Pos::NONE,
        }]);
        let u = a.update(&b);
        assert_eq!(u.len(), 2);
        assert!(matches!(u.get(s("b")), Some(Value::Int(3))));
        assert!(matches!(u.get(s("a")), Some(Value::Int(2))));
        assert!(u.get(s("c")).is_none());
    }
}
