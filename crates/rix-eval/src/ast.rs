//! The evaluator's own expression tree.
//!
//! Produced from rnix's concrete syntax tree by [`crate::lower`]. Variables are
//! resolved to `(depth, index)` slots of the environment chain where static
//! scoping decides them; names that can only come from a `with` keep their
//! symbol and the depths of the enclosing `with` frames. Mirrors the `Expr*`
//! classes of Nix's `nixexpr.hh` after `bindVars`.

use std::rc::Rc;

use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::Value;

pub type ExprRef = Rc<Expr>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Concat,
    Update,
    Eq,
    NotEq,
    Less,
    LessEq,
    Greater,
    GreaterEq,
    And,
    Or,
    Impl,
}

/// An attribute name in a path (`a.${b}.c`).
pub enum AttrKey {
    Static(Symbol),
    Dynamic(ExprRef),
}

pub enum Expr {
    /// A literal: number, plain string, absolute path, URI.
    Const(Value),
    /// A statically resolved variable (`name` for printing).
    Var {
        depth: u32,
        idx: u32,
        pos: Pos,
        name: Symbol,
    },
    /// A variable only a `with` can provide; `withs` are the depths of the
    /// enclosing `with` frames, innermost first.
    WithVar {
        name: Symbol,
        withs: Box<[u32]>,
        pos: Pos,
    },
    Select {
        expr: ExprRef,
        path: Box<[AttrKey]>,
        default: Option<ExprRef>,
        pos: Pos,
    },
    HasAttr {
        expr: ExprRef,
        path: Box<[AttrKey]>,
    },
    Attrs(Rc<AttrsExpr>),
    List(Box<[ExprRef]>),
    Lambda(Rc<Lambda>),
    Call {
        func: ExprRef,
        args: Box<[ExprRef]>,
        pos: Pos,
    },
    Let(Rc<LetExpr>),
    With {
        attrs: ExprRef,
        body: ExprRef,
    },
    If {
        cond: ExprRef,
        then: ExprRef,
        else_: ExprRef,
        pos: Pos,
    },
    Assert {
        cond: ExprRef,
        body: ExprRef,
        /// The condition's source text, for the error message.
        text: Rc<str>,
        pos: Pos,
    },
    Not(ExprRef, Pos),
    Neg(ExprRef, Pos),
    Bin {
        op: BinOp,
        lhs: ExprRef,
        rhs: ExprRef,
        pos: Pos,
    },
    /// String interpolation `"a${b}c"`: the result is a string.
    Interpolate {
        parts: Box<[ExprRef]>,
        pos: Pos,
    },
    /// Path interpolation `./a/${b}`: the first part decides (a path).
    PathInterpolate {
        parts: Box<[ExprRef]>,
        pos: Pos,
    },
    /// `__curPos`.
    CurPos(Pos),
}

/// Where the value of a binding comes from.
pub enum BindingValue {
    /// An expression, evaluated in the binding's scope (the new frame for
    /// `rec` and `let`, the enclosing one otherwise).
    Expr(ExprRef),
    /// `inherit x;` — evaluated in the scope enclosing the binding's frame
    /// (already adjusted by the lowering to be evaluated in the same env as `Expr`).
    Inherit(ExprRef),
    /// `inherit (e) x;` — `e` is shared: the index into `inherit_from`.
    InheritFrom(u32, Symbol),
    /// A `let` binding whose expression names none of the `let`'s own
    /// bindings: lowered in the enclosing scope and evaluated in the
    /// enclosing frame. Its thunk then does not hold the new frame, which
    /// holds the thunk: with reference counting such a cycle (a `let`-bound
    /// function, or a set with unforced attributes) was never freed, and
    /// every call of a function with such a `let` leaked its frame.
    Outer(ExprRef),
}

pub struct Binding {
    pub name: Symbol,
    pub pos: Pos,
    pub value: BindingValue,
}

pub struct DynamicBinding {
    pub name: ExprRef,
    pub value: ExprRef,
    pub pos: Pos,
}

/// `{ ... }` or `rec { ... }`.
pub struct AttrsExpr {
    pub rec: bool,
    /// Static bindings; for `rec`, slot `i` of the new frame holds binding `i`.
    pub bindings: Vec<Binding>,
    /// `inherit (e)` sources, evaluated (lazily, once) in the binding scope.
    pub inherit_from: Vec<ExprRef>,
    pub dynamic: Vec<DynamicBinding>,
    pub pos: Pos,
}

/// `let ...; in body`: slot `i` of the new frame holds binding `i`.
pub struct LetExpr {
    pub bindings: Vec<Binding>,
    pub inherit_from: Vec<ExprRef>,
    pub body: ExprRef,
}

pub struct Formal {
    pub name: Symbol,
    pub default: Option<ExprRef>,
    pub pos: Pos,
}

pub enum Param {
    /// `x: body` — the frame has one slot.
    Ident(Symbol),
    /// `{ a, b ? d, ... } @ x: body` — one slot per formal, then one for `x`.
    Formals {
        formals: Vec<Formal>,
        ellipsis: bool,
        at: Option<Symbol>,
    },
}

pub struct Lambda {
    pub param: Param,
    pub body: ExprRef,
    pub pos: Pos,
    /// The name it was bound to, for error messages.
    pub name: Option<Symbol>,
    /// `Some(n)` for the body of a curried function (`a: b: ...`): this
    /// lambda's frame starts with the `n` slots of the frame it closes over
    /// (the enclosing lambda's), followed by its own, and hangs off that
    /// frame's parent. A call with all the arguments at once then builds one
    /// frame instead of one per argument.
    pub flat: Option<u32>,
}

impl Lambda {
    /// The slots of this lambda's own parameters.
    pub fn frame_size(&self) -> usize {
        match &self.param {
            Param::Ident(_) => 1,
            Param::Formals { formals, at, .. } => formals.len() + usize::from(at.is_some()),
        }
    }

    /// Slots copied from the enclosing lambda's frame.
    #[inline]
    pub fn prefix(&self) -> usize {
        self.flat.map_or(0, |n| n as usize)
    }
}

impl Expr {
    pub fn pos(&self) -> Pos {
        match self {
            Expr::Var { pos, .. }
            | Expr::WithVar { pos, .. }
            | Expr::Select { pos, .. }
            | Expr::Call { pos, .. }
            | Expr::If { pos, .. }
            | Expr::Assert { pos, .. }
            | Expr::Not(_, pos)
            | Expr::Neg(_, pos)
            | Expr::Bin { pos, .. }
            | Expr::Interpolate { pos, .. }
            | Expr::PathInterpolate { pos, .. }
            | Expr::CurPos(pos) => *pos,
            Expr::Attrs(a) => a.pos,
            Expr::Lambda(l) => l.pos,
            _ => Pos::NONE,
        }
    }
}
