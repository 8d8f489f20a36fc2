//! Why a flake operation failed: Nix's message, the trace lines added on the
//! way out ("while updating the flake input 'b'"), or an evaluation error
//! (from `flake.nix` or the outputs) to be rendered as the evaluator renders it.

use std::fmt;

use rix_eval::EvalError;
use rix_fetch::FetchError;

#[derive(Debug)]
pub enum FlakeError {
    /// A message and its trace, innermost first (Nix's `addTrace` order).
    Msg { message: String, trace: Vec<String> },
    /// An evaluation error, with the flake's trace lines added to it.
    Eval(Box<EvalError>),
}

pub type Result<T, E = FlakeError> = std::result::Result<T, E>;

impl FlakeError {
    pub fn msg(message: impl Into<String>) -> Self {
        FlakeError::Msg {
            message: message.into(),
            trace: Vec::new(),
        }
    }

    /// Adds an outer trace line (Nix's `addTrace`).
    pub fn with_trace(self, line: impl Into<String>) -> Self {
        match self {
            FlakeError::Msg { message, mut trace } => {
                trace.push(line.into());
                FlakeError::Msg { message, trace }
            }
            FlakeError::Eval(e) => {
                FlakeError::Eval(e.add_trace(rix_eval::source::Pos::NONE, line.into()))
            }
        }
    }

    /// The error as an evaluation error (for builtins such as `getFlake`).
    pub fn into_eval(self) -> Box<EvalError> {
        match self {
            FlakeError::Eval(e) => e,
            FlakeError::Msg { message, trace } => {
                let mut e = EvalError::new(
                    rix_eval::ErrorKind::Other,
                    message,
                    rix_eval::source::Pos::NONE,
                );
                for line in trace {
                    e = e.add_trace(rix_eval::source::Pos::NONE, line);
                }
                e
            }
        }
    }

    /// The error as Nix prints it: `error:`, the trace outermost first,
    /// then the message.
    pub fn render(&self, show_trace: bool) -> String {
        match self {
            FlakeError::Eval(e) => e.render(show_trace),
            FlakeError::Msg { message, trace } => FlakeError::Msg {
                message: message.clone(),
                trace: trace.clone(),
            }
            .into_eval()
            .render(show_trace),
        }
    }
}

impl fmt::Display for FlakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlakeError::Msg { message, .. } => f.write_str(message),
            FlakeError::Eval(e) => write!(f, "{}", e.message),
        }
    }
}

impl std::error::Error for FlakeError {}

impl From<FetchError> for FlakeError {
    fn from(e: FetchError) -> Self {
        FlakeError::Msg {
            message: e.message,
            trace: e.trace,
        }
    }
}

impl From<Box<EvalError>> for FlakeError {
    fn from(e: Box<EvalError>) -> Self {
        FlakeError::Eval(e)
    }
}

impl From<rix_formats::flake_ref::FlakeRefError> for FlakeError {
    fn from(e: rix_formats::flake_ref::FlakeRefError) -> Self {
        FlakeError::msg(e.0)
    }
}

impl From<std::io::Error> for FlakeError {
    fn from(e: std::io::Error) -> Self {
        FlakeError::msg(e.to_string())
    }
}
