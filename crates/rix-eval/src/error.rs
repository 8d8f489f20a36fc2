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

    /// The error with its trace, as `nix --show-trace` prints it.
    pub fn display_with_trace(&self) -> String {
        let mut out = String::new();
        for frame in self.trace.iter().rev() {
            out.push_str("       … ");
            out.push_str(&frame.message);
            out.push('\n');
            write_location(&mut out, frame.pos);
            out.push('\n');
        }
        out.push_str(&self.to_string());
        out
    }
}

fn write_location(out: &mut String, pos: Pos) {
    use std::fmt::Write;
    if let Some(loc) = pos.resolve() {
        let _ = writeln!(out, "\n       at {loc}:\n");
        let line_no = loc.line.to_string();
        let _ = writeln!(out, "       {:>4}| {}", line_no, loc.line_text());
        let caret_pad: String = loc
            .line_text()
            .chars()
            .take(loc.column.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(out, "       {:>4}| {}^", "", caret_pad);
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        let mut s = String::new();
        write_location(&mut s, self.pos);
        if !s.is_empty() {
            write!(f, "\n{}", s.trim_end_matches('\n'))?;
        }
        Ok(())
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
