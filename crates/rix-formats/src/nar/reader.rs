//! A streaming, validating NAR reader.
//!
//! [`NarReader`] is a pull parser: each call to [`NarReader::next`] yields the next
//! [`Event`] (a node, an entry name, the end of a directory) and validates
//! everything on the way: the magic, every token, zero padding, entry names
//! (not empty, not `.` or `..`, no `/` or NUL, bounded), their strict byte order,
//! symlink targets, nesting depth. A regular file's contents are then available as
//! a bounded [`Read`] ([`NarReader::contents`]) and are skipped if not read.
//! Every error carries the byte offset at which the problem was found, and no
//! input makes the reader panic. It never reads past the end of the archive, so
//! an archive embedded in a longer stream can be read in place; when the source
//! is a file or a socket, give it a [`std::io::BufReader`].
//! Mirrors `parseDump` and `parse` in Nix's `archive.cc`, which accepts the same
//! archives apart from the [`Limits`] and the empty or NUL-containing symlink
//! targets rejected here (no file system can hold them).

use std::io::{self, Read};

use thiserror::Error;

use super::wire::{self, Limits, NameError, TargetError};

/// What the reader found next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A regular file of `size` bytes whose contents start at NAR offset `offset`;
    /// read them with [`NarReader::contents`] before the next call to `next`.
    Regular {
        executable: bool,
        size: u64,
        offset: u64,
    },
    /// A symlink.
    Symlink { target: &'a [u8] },
    /// The start of a directory; its entries follow, then [`Event::EndDirectory`].
    Directory,
    /// An entry of the current directory; its node is the next event.
    Entry { name: &'a [u8] },
    /// The end of the current directory.
    EndDirectory,
}

/// Why an archive was rejected. Every variant carries the byte offset at which
/// the problem was found (see [`NarReadError::offset`]).
#[derive(Debug, Error)]
pub enum NarReadError {
    #[error("reading the NAR failed at offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
    #[error("NAR is truncated: input ends at offset {offset}")]
    UnexpectedEof { offset: u64 },
    #[error("input doesn't look like a Nix archive: bad magic at offset {offset}")]
    BadMagic { offset: u64 },
    #[error(
        "bad archive: expected {expected} at offset {offset}, got {}",
        wire::show(found)
    )]
    UnexpectedToken {
        offset: u64,
        expected: &'static str,
        found: Vec<u8>,
    },
    #[error("bad archive: string at offset {offset} is {len} bytes long, at most {max} allowed for {what}")]
    TooLong {
        offset: u64,
        len: u64,
        max: u64,
        what: &'static str,
    },
    #[error("bad archive: non-zero padding byte at offset {offset}")]
    NonZeroPadding { offset: u64 },
    #[error(
        "bad archive: unknown file type {} at offset {offset}",
        wire::show(found)
    )]
    UnknownType { offset: u64, found: Vec<u8> },
    #[error(
        "bad archive: invalid file name {} at offset {offset}: {reason}",
        wire::show(name)
    )]
    InvalidName {
        offset: u64,
        name: Vec<u8>,
        reason: NameError,
    },
    #[error(
        "bad archive: directory is not sorted: {} at offset {offset} comes after {}",
        wire::show(name),
        wire::show(prev)
    )]
    NotSorted {
        offset: u64,
        prev: Vec<u8>,
        name: Vec<u8>,
    },
    #[error(
        "bad archive: duplicate file name {} at offset {offset}",
        wire::show(name)
    )]
    Duplicate { offset: u64, name: Vec<u8> },
    #[error(
        "bad archive: invalid symlink target {} at offset {offset}: {reason}",
        wire::show(target)
    )]
    InvalidTarget {
        offset: u64,
        target: Vec<u8>,
        reason: TargetError,
    },
    #[error("bad archive: directories nested deeper than {max} at offset {offset}")]
    TooDeep { offset: u64, max: usize },
    #[error(
        "bad archive: file at offset {offset} claims {size} bytes, more than an archive can hold"
    )]
    SizeOverflow { offset: u64, size: u64 },
    #[error("trailing data after the archive at offset {offset}")]
    TrailingData { offset: u64 },
    #[error("the NAR reader failed earlier, at offset {offset}")]
    Poisoned { offset: u64 },
}

impl NarReadError {
    /// The byte offset in the archive at which the problem was found.
    pub fn offset(&self) -> u64 {
        match *self {
            Self::Io { offset, .. }
            | Self::UnexpectedEof { offset }
            | Self::BadMagic { offset }
            | Self::UnexpectedToken { offset, .. }
            | Self::TooLong { offset, .. }
            | Self::NonZeroPadding { offset }
            | Self::UnknownType { offset, .. }
            | Self::InvalidName { offset, .. }
            | Self::NotSorted { offset, .. }
            | Self::Duplicate { offset, .. }
            | Self::InvalidTarget { offset, .. }
            | Self::TooDeep { offset, .. }
            | Self::SizeOverflow { offset, .. }
            | Self::TrailingData { offset }
            | Self::Poisoned { offset } => offset,
        }
    }

    /// Recovers the reader's error from an [`io::Error`] returned by [`Contents`];
    /// any other I/O error is wrapped as [`NarReadError::Io`] at `offset`.
    pub fn from_io(e: io::Error, offset: u64) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<NarReadError>()) {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<NarReadError>().expect("checked above");
        }
        Self::Io { offset, source: e }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing read: the magic and the root node are due.
    Start,
    /// A node is due (after the magic or an entry's `node` token).
    Node,
    /// Inside a regular file's contents.
    Contents { size: u64, remaining: u64 },
    /// A node is complete; the entry holding it (if any) must be closed.
    AfterNode,
    /// Inside a directory: `entry` or `)` is due.
    Directory,
    /// The root node is complete.
    Done,
    /// An error was returned; the archive cannot be read further.
    Poisoned { offset: u64 },
}

/// What `step` found, without borrowing the reader.
enum Found {
    Regular {
        executable: bool,
        size: u64,
        offset: u64,
    },
    Symlink,
    Directory,
    Entry,
    EndDirectory,
    End,
}

/// A token read from the archive: at most [`wire::MAX_TOKEN_LEN`] bytes.
struct Token {
    offset: u64,
    len: usize,
    bytes: [u8; wire::MAX_TOKEN_LEN],
}

impl Token {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Size of the scratch buffer used to skip unread file contents.
const SKIP_BUF_LEN: usize = 64 * 1024;

/// A streaming NAR reader; see the [module docs](self).
///
/// ```
/// use rix_formats::nar::{Event, NarReader, NarWriter};
/// use std::io::Read;
/// let mut w = NarWriter::new(Vec::new());
/// w.file(false, b"Hello World!")?;
/// let nar = w.finish()?;
///
/// let mut r = NarReader::new(&nar[..]);
/// assert!(matches!(r.next()?, Some(Event::Regular { executable: false, size: 12, .. })));
/// let mut text = String::new();
/// r.contents().read_to_string(&mut text)?;
/// assert_eq!(text, "Hello World!");
/// assert!(r.next()?.is_none());
/// r.finish_at_eof()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NarReader<R: Read> {
    inner: R,
    pos: u64,
    limits: Limits,
    state: State,
    /// The last entry name of each open directory, innermost last; empty before
    /// the first entry (names are never empty).
    dirs: Vec<Vec<u8>>,
    target: Vec<u8>,
    skip_buf: Vec<u8>,
}

impl<R: Read> NarReader<R> {
    /// A reader with the default [`Limits`].
    pub fn new(inner: R) -> Self {
        Self::with_limits(inner, Limits::default())
    }

    /// A reader that rejects names, targets and nesting beyond `limits`.
    pub fn with_limits(inner: R, limits: Limits) -> Self {
        Self {
            inner,
            pos: 0,
            limits,
            state: State::Start,
            dirs: Vec::new(),
            target: Vec::new(),
            skip_buf: Vec::new(),
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.pos
    }

    /// Number of directories currently open.
    pub fn depth(&self) -> usize {
        self.dirs.len()
    }

    /// Whether the whole archive has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The source, positioned wherever the reader stopped.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next event, or `None` once the root node is complete. Unread contents of
    /// the previous regular file are skipped (and still validated).
    #[allow(clippy::should_implement_trait)] // events borrow the reader: not an Iterator
    pub fn next(&mut self) -> Result<Option<Event<'_>>, NarReadError> {
        if let State::Poisoned { offset } = self.state {
            return Err(NarReadError::Poisoned { offset });
        }
        let found = match self.step() {
            Ok(f) => f,
            Err(e) => {
                self.state = State::Poisoned { offset: e.offset() };
                return Err(e);
            }
        };
        Ok(Some(match found {
            Found::Regular {
                executable,
                size,
                offset,
            } => Event::Regular {
                executable,
                size,
                offset,
            },
            Found::Symlink => Event::Symlink {
                target: &self.target,
            },
            Found::Directory => Event::Directory,
            Found::Entry => Event::Entry {
                name: self.dirs.last().expect("an entry is inside a directory"),
            },
            Found::EndDirectory => Event::EndDirectory,
            Found::End => return Ok(None),
        }))
    }

    /// The current regular file's unread contents, as a [`Read`] that ends with the
    /// file. Empty unless the last event was [`Event::Regular`]. A truncated
    /// archive is an [`io::Error`] wrapping a [`NarReadError`]
    /// (recover it with [`NarReadError::from_io`]).
    pub fn contents(&mut self) -> Contents<'_, R> {
        Contents { reader: self }
    }

    /// Reads and validates the rest of the archive and returns the source,
    /// positioned just after the archive.
    pub fn finish(mut self) -> Result<R, NarReadError> {
        while self.next()?.is_some() {}
        Ok(self.inner)
    }

    /// Like [`finish`](Self::finish), and also requires the source to end there.
    pub fn finish_at_eof(mut self) -> Result<(), NarReadError> {
        while self.next()?.is_some() {}
        let end = self.pos;
        let mut byte = [0u8; 1];
        loop {
            return match self.inner.read(&mut byte) {
                Ok(0) => Ok(()),
                Ok(_) => Err(NarReadError::TrailingData { offset: end }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => Err(NarReadError::Io {
                    offset: end,
                    source,
                }),
            };
        }
    }

    fn step(&mut self) -> Result<Found, NarReadError> {
        loop {
            match self.state {
                State::Start => {
                    self.read_magic()?;
                    self.state = State::Node;
                }
                State::Node => return self.read_node(),
                State::Contents { size, remaining } => {
                    self.skip(remaining)?;
                    self.read_padding(size)?;
                    self.expect(wire::CLOSE, "')' after the file contents")?;
                    self.state = State::AfterNode;
                }
                State::AfterNode => {
                    if self.dirs.is_empty() {
                        self.state = State::Done;
                    } else {
                        self.expect(wire::CLOSE, "')' closing the entry")?;
                        self.state = State::Directory;
                    }
                }
                State::Directory => return self.read_directory_item(),
                State::Done => return Ok(Found::End),
                State::Poisoned { offset } => return Err(NarReadError::Poisoned { offset }),
            }
        }
    }

    fn read_magic(&mut self) -> Result<(), NarReadError> {
        let len = self.read_u64()?;
        if len != wire::MAGIC.len() as u64 {
            return Err(NarReadError::BadMagic { offset: 0 });
        }
        let mut magic = [0u8; 13];
        self.fill(&mut magic)?;
        if magic != wire::MAGIC {
            return Err(NarReadError::BadMagic { offset: 8 });
        }
        self.read_padding(len)
    }

    fn read_node(&mut self) -> Result<Found, NarReadError> {
        self.expect(wire::OPEN, "'(' opening a node")?;
        self.expect(wire::TYPE, "'type'")?;
        let ty = self.read_token("a file type")?;
        match ty.as_bytes() {
            wire::REGULAR => {
                let mut tag = self.read_token("'executable' or 'contents'")?;
                let executable = tag.as_bytes() == wire::EXECUTABLE;
                if executable {
                    self.expect(b"", "'' after 'executable'")?;
                    tag = self.read_token("'contents'")?;
                    if tag.as_bytes() != wire::CONTENTS {
                        return Err(unexpected(&tag, "'contents'"));
                    }
                } else if tag.as_bytes() != wire::CONTENTS {
                    return Err(unexpected(&tag, "'executable' or 'contents'"));
                }
                let size_offset = self.pos;
                let size = self.read_u64()?;
                let offset = self.pos;
                if wire::str_wire_len(size)
                    .and_then(|n| offset.checked_add(n))
                    .is_none()
                {
                    return Err(NarReadError::SizeOverflow {
                        offset: size_offset,
                        size,
                    });
                }
                self.state = State::Contents {
                    size,
                    remaining: size,
                };
                Ok(Found::Regular {
                    executable,
                    size,
                    offset,
                })
            }
            wire::SYMLINK => {
                self.expect(wire::TARGET, "'target'")?;
                let mut target = std::mem::take(&mut self.target);
                let read =
                    self.read_string(&mut target, self.limits.max_target_len, "a symlink target");
                self.target = target;
                let offset = read?;
                if let Err(reason) = wire::check_target(&self.target, usize::MAX) {
                    return Err(NarReadError::InvalidTarget {
                        offset,
                        target: self.target.clone(),
                        reason,
                    });
                }
                self.expect(wire::CLOSE, "')' after the symlink target")?;
                self.state = State::AfterNode;
                Ok(Found::Symlink)
            }
            wire::DIRECTORY => {
                if self.dirs.len() >= self.limits.max_depth {
                    return Err(NarReadError::TooDeep {
                        offset: ty.offset,
                        max: self.limits.max_depth,
                    });
                }
                self.dirs.push(Vec::new());
                self.state = State::Directory;
                Ok(Found::Directory)
            }
            _ => Err(NarReadError::UnknownType {
                offset: ty.offset,
                found: ty.as_bytes().to_vec(),
            }),
        }
    }

    fn read_directory_item(&mut self) -> Result<Found, NarReadError> {
        let tag = self.read_token("'entry' or ')'")?;
        match tag.as_bytes() {
            wire::CLOSE => {
                self.dirs.pop();
                self.state = State::AfterNode;
                Ok(Found::EndDirectory)
            }
            wire::ENTRY => {
                self.expect(wire::OPEN, "'(' opening an entry")?;
                self.expect(wire::NAME, "'name'")?;
                let mut name = std::mem::take(&mut self.target);
                let result = self.read_entry_name(&mut name);
                self.target = name;
                result?;
                self.expect(wire::NODE, "'node'")?;
                self.state = State::Node;
                Ok(Found::Entry)
            }
            _ => Err(unexpected(&tag, "'entry' or ')'")),
        }
    }

    /// Reads an entry name into `name` (scratch), checks it, and records it as the
    /// directory's last name.
    fn read_entry_name(&mut self, name: &mut Vec<u8>) -> Result<(), NarReadError> {
        let offset = self.read_string(name, self.limits.max_name_len, "a file name")?;
        if let Err(reason) = wire::check_name(name, usize::MAX) {
            return Err(NarReadError::InvalidName {
                offset,
                name: name.clone(),
                reason,
            });
        }
        let prev = self.dirs.last_mut().expect("inside a directory");
        match name.as_slice().cmp(prev.as_slice()) {
            std::cmp::Ordering::Greater => {
                prev.clear();
                prev.extend_from_slice(name);
                Ok(())
            }
            std::cmp::Ordering::Equal => Err(NarReadError::Duplicate {
                offset,
                name: name.clone(),
            }),
            std::cmp::Ordering::Less => Err(NarReadError::NotSorted {
                offset,
                prev: prev.clone(),
                name: name.clone(),
            }),
        }
    }

    /// Reads exactly `buf.len()` bytes.
    fn fill(&mut self, mut buf: &mut [u8]) -> Result<(), NarReadError> {
        while !buf.is_empty() {
            match self.inner.read(buf) {
                Ok(0) => return Err(NarReadError::UnexpectedEof { offset: self.pos }),
                Ok(n) => {
                    self.pos += n as u64;
                    buf = &mut buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(NarReadError::Io {
                        offset: self.pos,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn read_u64(&mut self) -> Result<u64, NarReadError> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_padding(&mut self, len: u64) -> Result<(), NarReadError> {
        let n = wire::padding_len(len);
        let start = self.pos;
        let mut pad = [0u8; 8];
        self.fill(&mut pad[..n])?;
        match pad[..n].iter().position(|&b| b != 0) {
            Some(i) => Err(NarReadError::NonZeroPadding {
                offset: start + i as u64,
            }),
            None => Ok(()),
        }
    }

    fn read_token(&mut self, expected: &'static str) -> Result<Token, NarReadError> {
        let offset = self.pos;
        let len = self.read_u64()?;
        if len > wire::MAX_TOKEN_LEN as u64 {
            return Err(NarReadError::TooLong {
                offset,
                len,
                max: wire::MAX_TOKEN_LEN as u64,
                what: expected,
            });
        }
        let mut t = Token {
            offset,
            len: len as usize,
            bytes: [0; wire::MAX_TOKEN_LEN],
        };
        self.fill(&mut t.bytes[..t.len])?;
        self.read_padding(len)?;
        Ok(t)
    }

    fn expect(&mut self, token: &[u8], expected: &'static str) -> Result<(), NarReadError> {
        let t = self.read_token(expected)?;
        if t.as_bytes() != token {
            return Err(unexpected(&t, expected));
        }
        Ok(())
    }

    /// Reads a string of at most `max` bytes into `buf`; returns its offset.
    fn read_string(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        what: &'static str,
    ) -> Result<u64, NarReadError> {
        let offset = self.pos;
        let len = self.read_u64()?;
        if len > max as u64 {
            return Err(NarReadError::TooLong {
                offset,
                len,
                max: max as u64,
                what,
            });
        }
        buf.clear();
        buf.resize(len as usize, 0);
        self.fill(buf)?;
        self.read_padding(len)?;
        Ok(offset)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), NarReadError> {
        if n == 0 {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.skip_buf);
        buf.resize(SKIP_BUF_LEN, 0);
        let mut result = Ok(());
        while n > 0 {
            let chunk = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            if let Err(e) = self.fill(&mut buf[..chunk]) {
                result = Err(e);
                break;
            }
            n -= chunk as u64;
        }
        self.skip_buf = buf;
        result
    }
}

fn unexpected(t: &Token, expected: &'static str) -> NarReadError {
    NarReadError::UnexpectedToken {
        offset: t.offset,
        expected,
        found: t.as_bytes().to_vec(),
    }
}

/// The contents of the current regular file; see [`NarReader::contents`].
pub struct Contents<'a, R: Read> {
    reader: &'a mut NarReader<R>,
}

impl<R: Read> Contents<'_, R> {
    /// Bytes of the file not read yet.
    pub fn remaining(&self) -> u64 {
        match self.reader.state {
            State::Contents { remaining, .. } => remaining,
            _ => 0,
        }
    }
}

impl<R: Read> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        let State::Contents { size, remaining } = r.state else {
            return Ok(0);
        };
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        match r.inner.read(&mut buf[..want]) {
            Ok(0) => {
                let e = NarReadError::UnexpectedEof { offset: r.pos };
                r.state = State::Poisoned { offset: r.pos };
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, e))
            }
            Ok(n) => {
                r.pos += n as u64;
                r.state = State::Contents {
                    size,
                    remaining: remaining - n as u64,
                };
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(source) => {
                let kind = source.kind();
                r.state = State::Poisoned { offset: r.pos };
                Err(io::Error::new(
                    kind,
                    NarReadError::Io {
                        offset: r.pos,
                        source,
                    },
                ))
            }
        }
    }
}
