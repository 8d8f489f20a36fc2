//! Source positions.
//!
//! Every parsed text gets a range of a single 32-bit offset space (as rustc's
//! code map does), so a position is one `u32` wherever it is stored: in the AST,
//! in attribute sets (for `unsafeGetAttrPos`) and in errors. The table is
//! per-thread, like values. Mirrors Nix's `PosTable`.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// A byte position in some parsed source; `Pos::NONE` when unknown.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Pos(pub u32);

impl Pos {
    pub const NONE: Pos = Pos(0);

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// File, line and column of this position, if known.
    pub fn resolve(self) -> Option<Location> {
        if self.is_none() {
            return None;
        }
        SOURCES.with(|s| {
            let s = s.borrow();
            let idx = s
                .files
                .partition_point(|f| f.base <= self.0)
                .checked_sub(1)?;
            let f = &s.files[idx];
            let off = (self.0 - f.base) as usize;
            if off > f.text.len() {
                return None;
            }
            let line = f.line_starts.partition_point(|&l| l as usize <= off);
            let line_start = f.line_starts[line - 1] as usize;
            let col = f.text[line_start..off.min(f.text.len())].chars().count() + 1;
            Some(Location {
                origin: f.origin.clone(),
                line: line as u32,
                column: col as u32,
                text: f.text.clone(),
                line_start,
            })
        })
    }
}

impl Pos {
    /// The text this position is in, and its byte offset there.
    fn text_at(self) -> Option<(Rc<str>, usize)> {
        if self.is_none() {
            return None;
        }
        SOURCES.with(|s| {
            let s = s.borrow();
            let idx = s
                .files
                .partition_point(|f| f.base <= self.0)
                .checked_sub(1)?;
            let f = &s.files[idx];
            let off = (self.0 - f.base) as usize;
            (off <= f.text.len()).then(|| (f.text.clone(), off))
        })
    }

    /// The start of the operand after the operator at this position (`op`
    /// bytes long): past the operator, whitespace and comments. Where Nix
    /// reports an operand of `+` (for error messages only).
    pub fn operand_after(self, op: usize) -> Pos {
        let Some((text, off)) = self.text_at() else {
            return self;
        };
        let b = text.as_bytes();
        let mut i = off + op;
        loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if b.get(i) == Some(&b'#') {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            } else if b.get(i) == Some(&b'/') && b.get(i + 1) == Some(&b'*') {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            } else {
                break;
            }
        }
        Pos(self.0 + (i - off) as u32)
    }

    /// For the expression of an interpolation `${ e }`: the position of its
    /// `${` (where Nix reports it), else this one.
    pub fn interpolation_start(self) -> Pos {
        let Some((text, off)) = self.text_at() else {
            return self;
        };
        let b = text.as_bytes();
        let mut i = off;
        while i > 0 && b[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        if i >= 2 && &b[i - 2..i] == b"${" {
            Pos(self.0 - (off - (i - 2)) as u32)
        } else {
            self
        }
    }
}

/// Where a source text came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk.
    Path(Rc<str>),
    /// An expression given on the command line (`«string»`).
    String,
    /// Standard input (`«stdin»`).
    Stdin,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Path(p) => f.write_str(p),
            Origin::String => f.write_str("«string»"),
            Origin::Stdin => f.write_str("«stdin»"),
        }
    }
}

/// A resolved position.
#[derive(Clone, Debug)]
pub struct Location {
    pub origin: Origin,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    text: Rc<str>,
    line_start: usize,
}

impl Location {
    /// The file as Nix 2.26 gives it to the language (`unsafeGetAttrPos`,
    /// `__curPos`, XML `path`): the path of a file; none for an expression
    /// from the command line or standard input (those positions are `null`,
    /// where Nix 2.8 gave the whole text as the file).
    pub fn file_for_language(&self) -> Option<String> {
        match &self.origin {
            Origin::Path(p) => Some(p.to_string()),
            Origin::String | Origin::Stdin => None,
        }
    }

    /// The text of the line this position is on.
    pub fn line_text(&self) -> &str {
        let rest = &self.text[self.line_start..];
        rest.split('\n').next().unwrap_or("")
    }

    /// The line before (if any), this line, and the line after (if any; as
    /// Nix 2.26's `Pos::getCodeLines`, a final newline starts an empty line).
    pub fn context_lines(&self) -> (Option<&str>, &str, Option<&str>) {
        let before = &self.text[..self.line_start];
        let prev = before
            .strip_suffix('\n')
            .map(|b| b.rsplit('\n').next().unwrap_or(b));
        let rest = &self.text[self.line_start..];
        let (line, next) = match rest.split_once('\n') {
            Some((l, after)) => (l, after.split('\n').next()),
            None => (rest, None),
        };
        (prev, line, next)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

struct SourceFile {
    base: u32,
    origin: Origin,
    text: Rc<str>,
    line_starts: Vec<u32>,
}

#[derive(Default)]
struct Sources {
    files: Vec<SourceFile>,
    next: u32,
}

thread_local! {
    static SOURCES: RefCell<Sources> = const { RefCell::new(Sources { files: Vec::new(), next: 1 }) };
}

/// Registers a source text; positions in it are `base + byte offset`.
pub fn add_source(origin: Origin, text: Rc<str>) -> u32 {
    SOURCES.with(|s| {
        let mut s = s.borrow_mut();
        let base = s.next;
        let mut line_starts = vec![0u32];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i as u32 + 1),
        );
        s.next = base.saturating_add(text.len() as u32 + 1);
        s.files.push(SourceFile {
            base,
            origin,
            text,
            line_starts,
        });
        base
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_lines_and_columns() {
        let base = add_source(Origin::String, Rc::from("ab\ncd\n"));
        let loc = Pos(base + 4).resolve().unwrap();
        assert_eq!((loc.line, loc.column), (2, 2));
        assert_eq!(loc.line_text(), "cd");
        assert_eq!(loc.to_string(), "«string»:2:2");
        assert!(Pos::NONE.resolve().is_none());
    }
}
