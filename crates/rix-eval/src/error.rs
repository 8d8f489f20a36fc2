//! Evaluation errors.
//!
//! An [`EvalError`] carries a kind (which decides, for instance, whether
//! `builtins.tryEval` catches it), Nix's message, the position it is about and
//! a trace of enclosing contexts (`while evaluating ...`), innermost first.
//! Its `Display` mimics Nix's: message, `at file:line:col`, the source line and
//! a caret. Mirrors Nix's `EvalError` hierarchy (`ThrownError`, `AssertionError`,
//! `TypeError`, ...) in `libexpr/nixexpr.hh`.

use std::fmt;

use crate::source::Pos;

pub type Result<T> = std::result::Result<T, Box<EvalError>>;

/// What went wrong, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not valid Nix.
    Parse,
    /// A variable is not in scope.
    UndefinedVariable,
    /// `throw` (caught by `tryEval`).
    Throw,
    /// `abort`.
    Abort,
    /// `assert` failed (caught by `tryEval`).
    Assertion,
    /// A value has the wrong type.
    Type,
    /// An attribute is missing.
    MissingAttribute,
    /// A thunk was re-entered while being evaluated.
    InfiniteRecursion,
    /// Too deep a recursion.
    StackOverflow,
    /// Reading files, directories, the store.
    Io,
    /// A fetcher or other feature needing the network.
    NeedsNetwork,
    /// Anything else (bad arguments to builtins, overflow, ...).
    Other,
}

/// One `while ...` line of context.
#[derive(Debug, Clone)]
pub struct TraceFrame {
    pub pos: Pos,
    pub message: String,
}

/// An error raised by parsing or evaluation.
#[derive(Debug, Clone)]
pub struct EvalError {
    pub kind: ErrorKind,
    pub message: String,
    pub pos: Pos,
    pub trace: Vec<TraceFrame>,
}

impl EvalError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, pos: Pos) -> Box<EvalError> {
        Box::new(EvalError {
            kind,
            message: message.into(),
            pos,
            trace: Vec::new(),
        })
    }

    /// Whether `builtins.tryEval` turns this error into `{ success = false; }`.
    pub fn is_catchable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throw | ErrorKind::Assertion)
    }

    /// Adds a `while ...` frame (outermost last).
    pub fn add_trace(mut self: Box<Self>, pos: Pos, message: impl Into<String>) -> Box<Self> {
        self.trace.push(TraceFrame {
            pos,
            message: message.into(),
        });
        self
    }

    /// The error with its trace (innermost frame first), as Nix 2.8 prints
    /// it with `--show-trace`.
    pub fn display_with_trace(&self) -> String {
        let mut out = String::new();
        let mut code = write_section(&mut out, &format!("error: {}", self.message), self.pos);
        for frame in &self.trace {
            if code {
                out.push('\n');
            }
            out.push('\n');
            code = write_section(&mut out, &format!("       … {}", frame.message), frame.pos);
        }
        out
    }
}

/// Writes a heading and, when the position is known, `at FILE:LINE:COL:`
/// with the lines around it and a caret under the column, as Nix 2.8's
/// `printCodeLines`; returns whether code was shown.
fn write_section(out: &mut String, heading: &str, pos: Pos) -> bool {
    use std::fmt::Write;
    out.push_str(heading);
    let Some(loc) = pos.resolve() else {
        return false;
    };
    let _ = write!(out, "\n\n       at {loc}:");
    let (prev, line, next) = loc.context_lines();
    out.push('\n');
    if let Some(p) = prev {
        let _ = write!(out, "\n        {:>5}| {p}", loc.line - 1);
    }
    let _ = write!(out, "\n        {:>5}| {line}", loc.line);
    let _ = write!(out, "\n             |{}^", " ".repeat(loc.column as usize));
    if let Some(n) = next {
        let _ = write!(out, "\n        {:>5}| {n}", loc.line + 1);
    }
    true
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_section(&mut out, &format!("error: {}", self.message), self.pos);
        f.write_str(&out)
    }
}

impl std::error::Error for EvalError {}

/// Shorthand constructors.
pub fn type_error(message: impl Into<String>, pos: Pos) -> Box<EvalError> {
    EvalError::new(ErrorKind::Type, message, pos)
}

pub fn other(message: impl Into<String>, pos: Pos) -> Box<EvalError> {
    EvalError::new(ErrorKind::Other, message, pos)
}
