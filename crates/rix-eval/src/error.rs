//! Evaluation errors.
//!
//! An [`EvalError`] carries a kind (which decides, for instance, whether
//! `builtins.tryEval` catches it), Nix's message, the position it is about and
//! a trace of enclosing contexts (`while evaluating ...`), innermost first.
//! [`EvalError::render`] prints it as Nix 2.26 does (`showErrorInfo` in
//! `libutil/error.cc`): the frames outermost first, then the message, its
//! position and the code around it. Mirrors Nix's `EvalError` hierarchy (`ThrownError`, `AssertionError`,
//! `TypeError`, ...) in `libexpr/nixexpr.hh`.

use std::borrow::Cow;
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
    /// A download's content is not what its hash says (Nix's exit status 102).
    HashMismatch,
    /// Anything else (bad arguments to builtins, overflow, ...).
    Other,
}

/// One `… while ...` line of context.
#[derive(Debug, Clone)]
pub struct TraceFrame {
    pub pos: Pos,
    /// Most frames' messages are constant: not allocated as errors unwind.
    pub message: Cow<'static, str>,
    /// Shown even where the trace is truncated (Nix's `TracePrint::Always`:
    /// `builtins.addErrorContext`'s frames).
    pub always: bool,
}

/// An error raised by parsing or evaluation.
#[derive(Debug, Clone)]
pub struct EvalError {
    pub kind: ErrorKind,
    pub message: String,
    pub pos: Pos,
    /// Innermost first (the order they are added in as the error unwinds);
    /// printed outermost first.
    pub trace: Vec<TraceFrame>,
    /// "Did you mean ...?": the candidates the name was compared with (an
    /// attribute name, a formal argument), ranked when printed.
    pub suggestions: Option<Box<Suggestions>>,
}

/// Candidates for "Did you mean ...?" and the name they are for. Mirrors
/// Nix's `Suggestions::bestMatches` (ranked when the error is printed).
#[derive(Debug, Clone)]
pub struct Suggestions {
    pub query: String,
    pub candidates: Vec<String>,
}

impl EvalError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, pos: Pos) -> Box<EvalError> {
        Box::new(EvalError {
            kind,
            message: message.into(),
            pos,
            trace: Vec::new(),
            suggestions: None,
        })
    }

    /// Whether `builtins.tryEval` turns this error into `{ success = false; }`.
    pub fn is_catchable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throw | ErrorKind::Assertion)
    }

    /// Adds a `… while ...` frame (outer to those added before).
    #[cold]
    pub fn add_trace(
        mut self: Box<Self>,
        pos: Pos,
        message: impl Into<Cow<'static, str>>,
    ) -> Box<Self> {
        self.trace.push(TraceFrame {
            pos,
            message: message.into(),
            always: false,
        });
        self
    }

    /// Adds a frame shown even in a truncated trace.
    #[cold]
    pub fn add_trace_always(
        mut self: Box<Self>,
        pos: Pos,
        message: impl Into<Cow<'static, str>>,
    ) -> Box<Self> {
        self.trace.push(TraceFrame {
            pos,
            message: message.into(),
            always: true,
        });
        self
    }

    /// Attaches "Did you mean ...?" candidates for `query`.
    #[cold]
    pub fn with_suggestions(
        mut self: Box<Self>,
        query: &str,
        candidates: impl IntoIterator<Item = String>,
    ) -> Box<Self> {
        self.suggestions = Some(Box::new(Suggestions {
            query: query.to_owned(),
            candidates: candidates.into_iter().collect(),
        }));
        self
    }

    /// The error as Nix 2.26 prints it with `--show-trace`: every frame.
    pub fn display_with_trace(&self) -> String {
        self.render(true)
    }

    /// The error as Nix 2.26's `showErrorInfo` prints it (without the final
    /// newline): `error:`, the frames outermost first (after a few, only
    /// those always shown unless `show_trace`; repeats collapsed), then
    /// `error: MESSAGE`, its position and code, and suggestions, every line
    /// after the first indented by 7 spaces.
    pub fn render(&self, show_trace: bool) -> String {
        let mut oss = String::new();
        if !self.trace.is_empty() {
            let mut seen: std::collections::HashSet<(FrameKey, &str)> =
                std::collections::HashSet::new();
            let mut skipped: Vec<&TraceFrame> = Vec::new();
            let mut count = 0usize;
            let mut truncate = false;
            for frame in self.trace.iter().rev() {
                if frame.message.is_empty() {
                    continue;
                }
                if !show_trace && count > 3 {
                    truncate = true;
                }
                if !truncate || frame.always {
                    let key = (frame_key(frame.pos), &*frame.message);
                    if seen.contains(&key) {
                        skipped.push(frame);
                        continue;
                    }
                    seen.insert(key);
                    print_skipped(&mut oss, &mut count, &mut skipped);
                    count += 1;
                    print_trace(&mut oss, &mut count, frame);
                }
            }
            print_skipped(&mut oss, &mut count, &mut skipped);
            if truncate {
                oss.push_str(
                    "\n(stack trace truncated; use '--show-trace' to show the full, detailed trace)\n",
                );
            }
            oss.push_str("\nerror: ");
        }
        oss.push_str(&self.message);
        oss.push('\n');
        print_pos(&mut oss, "", self.pos);
        if let Some(s) = &self.suggestions {
            let best = best_matches(&s.query, &s.candidates);
            if !best.is_empty() {
                oss.push_str("Did you mean ");
                if best.len() == 1 {
                    oss.push_str(best[0]);
                } else {
                    oss.push_str("one of ");
                    for (i, b) in best.iter().enumerate() {
                        if i > 0 {
                            oss.push_str(if i + 1 == best.len() { " or " } else { ", " });
                        }
                        oss.push_str(b);
                    }
                }
                oss.push_str("?\n");
            }
        }
        indent("error: ", "       ", chomp(&oss))
    }
}

/// A frame's resolved position (file, line, column), which with its message
/// makes two frames the same for collapsing repeats.
type FrameKey = Option<(String, u32, u32)>;

fn frame_key(pos: Pos) -> FrameKey {
    pos.resolve()
        .map(|l| (l.origin.to_string(), l.line, l.column))
}

fn print_trace(out: &mut String, count: &mut usize, frame: &TraceFrame) {
    out.push_str("\n… ");
    out.push_str(&frame.message);
    out.push('\n');
    if print_pos(out, "  ", frame.pos) {
        *count += 1;
    }
}

/// Nix's `printSkippedTracesMaybe`: up to five repeated frames are printed,
/// more are counted.
fn print_skipped(out: &mut String, count: &mut usize, skipped: &mut Vec<&TraceFrame>) {
    if skipped.is_empty() {
        return;
    }
    if skipped.len() <= 5 {
        for f in skipped.iter() {
            print_trace(out, count, f);
        }
    } else {
        use std::fmt::Write;
        let _ = write!(out, "\n({} duplicate frames omitted)\n", skipped.len());
    }
    skipped.clear();
}

/// `at FILE:LINE:COL:` and the code around it, as Nix 2.26's
/// `printPosMaybe` / `printCodeLines`; whether the position is known.
fn print_pos(out: &mut String, indent: &str, pos: Pos) -> bool {
    use std::fmt::Write;
    let Some(loc) = pos.resolve() else {
        return false;
    };
    let _ = write!(out, "{indent}at {loc}:");
    let (prev, line, next) = loc.context_lines();
    if let Some(p) = prev {
        let _ = write!(out, "\n {:>5}| {p}", loc.line - 1);
    }
    let _ = write!(out, "\n {:>5}| {line}", loc.line);
    if loc.column > 0 {
        let _ = write!(out, "\n      |{}^", " ".repeat(loc.column as usize));
    }
    if let Some(n) = next {
        let _ = write!(out, "\n {:>5}| {n}", loc.line + 1);
    }
    out.push('\n');
    true
}

/// Nix's `chomp`: without trailing whitespace.
fn chomp(s: &str) -> &str {
    s.trim_end_matches([' ', '\n', '\r', '\t'])
}

/// Nix's `indent` in `error.cc`: every line prefixed (the first with
/// `first`), then chomped.
fn indent(first: &str, rest: &str, s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 64);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let l = format!("{}{line}", if i == 0 { first } else { rest });
        out.push_str(chomp(&l));
    }
    out
}

/// Levenshtein distance in bytes, as Nix's `levenshteinDistance`.
fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut v0: Vec<usize> = (0..=b.len()).collect();
    let mut v1 = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        v1[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = if ca == cb { v0[j] } else { v0[j] + 1 };
            v1[j + 1] = (v0[j + 1] + 1).min(v1[j] + 1).min(sub);
        }
        std::mem::swap(&mut v0, &mut v1);
    }
    v0[b.len()]
}

/// The at most five candidates at distance 2 or less, best first (then by
/// name), as Nix's `Suggestions::bestMatches(...).trim()`.
fn best_matches<'a>(query: &str, candidates: &'a [String]) -> Vec<&'a str> {
    let mut ranked: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (levenshtein(query, c), c.as_str()))
        .collect();
    ranked.sort();
    ranked.dedup();
    ranked
        .into_iter()
        .take(5)
        .take_while(|(d, _)| *d <= 2)
        .map(|(_, c)| c)
        .collect()
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for EvalError {}

/// Nix's `filterANSIEscapes` (`libutil/terminal.cc`) as its logger applies
/// it to everything written to stderr: escape sequences removed (all of
/// them, or with `keep_colors` all but SGR `...m` ones, as on a terminal),
/// tabs expanded to 8 columns, `\r` and `\a` dropped.
pub fn filter_ansi_escapes(s: &str, keep_colors: bool) -> String {
    let mut t = String::with_capacity(s.len());
    let mut w = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            let mut e = String::from(c);
            let mut last = '\0';
            match chars.peek() {
                Some('[') => {
                    e.push(chars.next().unwrap_or('['));
                    while let Some(&p) = chars.peek() {
                        if ('\x30'..='\x3f').contains(&p) {
                            e.push(p);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    while let Some(&p) = chars.peek() {
                        if ('\x20'..='\x2f').contains(&p) {
                            e.push(p);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if let Some(&p) = chars.peek() {
                        if ('\x40'..='\x7e').contains(&p) {
                            e.push(p);
                            last = p;
                            chars.next();
                        }
                    }
                }
                Some(']') => {
                    e.push(chars.next().unwrap_or(']'));
                    while let Some(&p) = chars.peek() {
                        if p == '\x1b' {
                            break;
                        }
                        e.push(p);
                        chars.next();
                    }
                    if chars.peek() == Some(&'\\') {
                        e.push('\\');
                        last = '\\';
                        chars.next();
                    }
                }
                Some(&p) if ('\x40'..='\x5f').contains(&p) => {
                    e.push(p);
                    chars.next();
                }
                _ => {}
            }
            if keep_colors && last == 'm' {
                t.push_str(&e);
            }
        } else if c == '\t' {
            loop {
                w += 1;
                t.push(' ');
                if w.is_multiple_of(8) {
                    break;
                }
            }
        } else if c == '\r' || c == '\x07' {
        } else {
            if !c.is_control() {
                w += 1;
            }
            t.push(c);
        }
    }
    t
}

/// Whether stderr is a terminal that shows colours, as Nix's `isTTY`:
/// a terminal, `TERM` set and not `dumb`, neither `NO_COLOR` nor `NOCOLOR` set.
pub fn stderr_is_tty() -> bool {
    use std::io::IsTerminal;
    static TTY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TTY.get_or_init(|| {
        std::io::stderr().is_terminal()
            && std::env::var("TERM").is_ok_and(|t| t != "dumb")
            && std::env::var_os("NO_COLOR").is_none()
            && std::env::var_os("NOCOLOR").is_none()
    })
}

/// Writes one message and a newline to stderr as Nix's logger does: ANSI
/// escapes removed unless stderr is a terminal (see [`filter_ansi_escapes`]).
pub fn log_stderr(msg: &str) {
    use std::io::Write;
    let mut text = filter_ansi_escapes(msg, stderr_is_tty());
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Shorthand constructors.
pub fn type_error(message: impl Into<String>, pos: Pos) -> Box<EvalError> {
    EvalError::new(ErrorKind::Type, message, pos)
}

pub fn other(message: impl Into<String>, pos: Pos) -> Box<EvalError> {
    EvalError::new(ErrorKind::Other, message, pos)
}
