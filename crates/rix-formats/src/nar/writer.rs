//! A streaming NAR writer with checked events.
//!
//! The archive is written as it is described: `begin_directory`, then for each entry
//! `entry(name)` followed by exactly one node, then `end_directory`. The writer
//! keeps the grammar's state and refuses anything out of place (an entry outside a
//! directory, a node where an entry is due, names out of order, a file whose
//! contents do not match its declared size), so what it writes always parses.
//! File contents are streamed in chunks or from a [`Read`]; nothing is held whole.
//! Byte for byte the output is what Nix's `dumpPath` (`archive.cc`) writes.

use std::io::{self, Read, Write};

use thiserror::Error;

use super::wire::{self, Limits, NameError, TargetError};

/// Why the writer refused an event or failed to write it.
#[derive(Debug, Error)]
pub enum NarWriteError {
    #[error("writing the NAR failed at offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
    #[error("cannot {op}: the NAR writer expects {expected}")]
    Misuse {
        op: &'static str,
        expected: &'static str,
    },
    #[error("invalid entry name {}: {reason}", wire::show(name))]
    InvalidName { name: Vec<u8>, reason: NameError },
    #[error(
        "entry {} does not sort after the previous entry {}",
        wire::show(name),
        wire::show(prev)
    )]
    NotSorted { prev: Vec<u8>, name: Vec<u8> },
    #[error("duplicate entry {}", wire::show(name))]
    Duplicate { name: Vec<u8> },
    #[error("invalid symlink target {}: {reason}", wire::show(target))]
    InvalidTarget {
        target: Vec<u8>,
        reason: TargetError,
    },
    #[error("file declared as {declared} bytes but {written} were given")]
    SizeMismatch { declared: u64, written: u64 },
    #[error("an earlier error left the NAR incomplete")]
    Poisoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing written yet: the magic and the root node are due.
    Start,
    /// A node is due (the root's, after the magic, or an entry's).
    Node,
    /// Inside a regular file's contents.
    Contents { size: u64, remaining: u64 },
    /// Inside a directory: an entry or its end is due.
    Directory,
    /// The root node is complete.
    Done,
    /// A write failed or was refused mid-way; nothing more can be written.
    Poisoned,
}

impl State {
    fn expected(self) -> &'static str {
        match self {
            Self::Start | Self::Node => "a node (regular file, symlink or directory)",
            Self::Contents { .. } => "more file contents or the file's end",
            Self::Directory => "an entry or the directory's end",
            Self::Done => "nothing more: the archive is complete",
            Self::Poisoned => "nothing more: an earlier error left it incomplete",
        }
    }
}

/// Size of the buffer used to copy file contents from a [`Read`].
const COPY_BUF_LEN: usize = 64 * 1024;

/// A streaming NAR writer; see the [module docs](self).
///
/// ```
/// use rix_formats::nar::NarWriter;
/// let mut w = NarWriter::new(Vec::new());
/// w.begin_directory()?;
/// w.entry(b"bin")?;
/// w.begin_directory()?;
/// w.entry(b"hello")?;
/// w.file(true, b"#!/bin/sh\necho hello\n")?;
/// w.end_directory()?;
/// w.entry(b"lib")?;
/// w.symlink(b"bin")?;
/// w.end_directory()?;
/// let nar: Vec<u8> = w.finish()?;
/// # Ok::<(), rix_formats::nar::NarWriteError>(())
/// ```
pub struct NarWriter<W: Write> {
    out: W,
    pos: u64,
    limits: Limits,
    state: State,
    /// The last entry name of each open directory, innermost last; empty before the
    /// first entry (names are never empty).
    dirs: Vec<Vec<u8>>,
    copy_buf: Vec<u8>,
}

impl<W: Write> NarWriter<W> {
    /// A writer with the default [`Limits`]. Nothing is written until the first node.
    pub fn new(out: W) -> Self {
        Self::with_limits(out, Limits::default())
    }

    /// A writer that refuses names, targets and nesting beyond `limits`.
    pub fn with_limits(out: W, limits: Limits) -> Self {
        Self {
            out,
            pos: 0,
            limits,
            state: State::Start,
            dirs: Vec::new(),
            copy_buf: Vec::new(),
        }
    }

    /// Bytes written so far: the NAR offset of whatever comes next.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Whether the root node is complete (and [`finish`](Self::finish) will succeed).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Depth of directory nesting at this point (0 outside the root directory).
    pub fn depth(&self) -> usize {
        self.dirs.len()
    }

    /// The sink, for inspection.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), NarWriteError> {
        if let Err(source) = self.out.write_all(bytes) {
            self.state = State::Poisoned;
            return Err(NarWriteError::Io {
                offset: self.pos,
                source,
            });
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn misuse(&self, op: &'static str) -> NarWriteError {
        match self.state {
            State::Poisoned => NarWriteError::Poisoned,
            s => NarWriteError::Misuse {
                op,
                expected: s.expected(),
            },
        }
    }

    /// Checks that a node is due here, writing the magic first for the root.
    fn begin_node(&mut self, op: &'static str) -> Result<(), NarWriteError> {
        match self.state {
            State::Node => Ok(()),
            State::Start => {
                self.emit(&wire::MAGIC_RUN)?;
                self.state = State::Node;
                Ok(())
            }
            _ => Err(self.misuse(op)),
        }
    }

    /// Closes a non-directory node (after `extra` bytes such as padding) and the
    /// entry holding it, in one write.
    fn close_node(&mut self, extra: &[u8]) -> Result<(), NarWriteError> {
        let mut buf = [0u8; 8 + 2 * wire::CLOSE_RUN.len()];
        let mut len = extra.len();
        buf[..len].copy_from_slice(extra);
        buf[len..len + wire::CLOSE_RUN.len()].copy_from_slice(&wire::CLOSE_RUN);
        len += wire::CLOSE_RUN.len();
        if !self.dirs.is_empty() {
            buf[len..len + wire::CLOSE_RUN.len()].copy_from_slice(&wire::CLOSE_RUN);
            len += wire::CLOSE_RUN.len();
        }
        self.emit(&buf[..len])?;
        self.state = if self.dirs.is_empty() {
            State::Done
        } else {
            State::Directory
        };
        Ok(())
    }

    /// Starts a regular file of `size` bytes; give its contents with
    /// [`write_contents`](Self::write_contents), then call [`end_regular`](Self::end_regular).
    pub fn begin_regular(&mut self, executable: bool, size: u64) -> Result<(), NarWriteError> {
        self.begin_node("start a regular file")?;
        let mut head = [0u8; wire::EXECUTABLE_RUN.len() + 8];
        let run: &[u8] = if executable {
            &wire::EXECUTABLE_RUN
        } else {
            &wire::REGULAR_RUN
        };
        head[..run.len()].copy_from_slice(run);
        head[run.len()..run.len() + 8].copy_from_slice(&size.to_le_bytes());
        self.emit(&head[..run.len() + 8])?;
        self.state = State::Contents {
            size,
            remaining: size,
        };
        Ok(())
    }

    /// Writes the next chunk of the current file's contents. More bytes than the
    /// declared size are refused (and nothing of the chunk is written).
    pub fn write_contents(&mut self, chunk: &[u8]) -> Result<(), NarWriteError> {
        let State::Contents { size, remaining } = self.state else {
            return Err(self.misuse("write file contents"));
        };
        if chunk.len() as u64 > remaining {
            return Err(NarWriteError::SizeMismatch {
                declared: size,
                written: size - remaining + chunk.len() as u64,
            });
        }
        self.emit(chunk)?;
        self.state = State::Contents {
            size,
            remaining: remaining - chunk.len() as u64,
        };
        Ok(())
    }

    /// Lets `f` put the next `n` bytes of the current file's contents into the sink
    /// itself: for zero-copy paths (reading a file straight into an output buffer,
    /// handing a file descriptor to another thread, `copy_file_range`). `f` must
    /// write exactly `n` bytes; the writer counts them as written but cannot check.
    /// The outer error is the writer's (no file open, or more than its declared
    /// size); the inner one is `f`'s, after which the writer is unusable.
    pub fn write_contents_with<E>(
        &mut self,
        n: u64,
        f: impl FnOnce(&mut W) -> Result<(), E>,
    ) -> Result<Result<(), E>, NarWriteError> {
        let State::Contents { size, remaining } = self.state else {
            return Err(self.misuse("write file contents"));
        };
        if n > remaining {
            return Err(NarWriteError::SizeMismatch {
                declared: size,
                written: size - remaining + n,
            });
        }
        if let Err(e) = f(&mut self.out) {
            self.state = State::Poisoned;
            return Ok(Err(e));
        }
        self.pos += n;
        self.state = State::Contents {
            size,
            remaining: remaining - n,
        };
        Ok(Ok(()))
    }

    /// Ends the current file; all of its declared bytes must have been written.
    pub fn end_regular(&mut self) -> Result<(), NarWriteError> {
        let State::Contents { size, remaining } = self.state else {
            return Err(self.misuse("end a regular file"));
        };
        if remaining != 0 {
            return Err(NarWriteError::SizeMismatch {
                declared: size,
                written: size - remaining,
            });
        }
        self.close_node(&wire::ZEROS[..wire::padding_len(size)])
    }

    /// Writes a whole regular file whose contents are in memory.
    pub fn file(&mut self, executable: bool, contents: &[u8]) -> Result<(), NarWriteError> {
        self.begin_regular(executable, contents.len() as u64)?;
        self.write_contents(contents)?;
        self.end_regular()
    }

    /// Writes a regular file of `size` bytes read from `contents`, in 64 KiB chunks.
    /// Reads exactly `size` bytes; fewer is a [`NarWriteError::SizeMismatch`] and an
    /// error from `contents` is a [`NarWriteError::Io`] (both leave the writer
    /// unusable, since the archive is then incomplete).
    pub fn regular(
        &mut self,
        executable: bool,
        size: u64,
        mut contents: impl Read,
    ) -> Result<(), NarWriteError> {
        self.begin_regular(executable, size)?;
        let mut buf = std::mem::take(&mut self.copy_buf);
        if buf.len() < COPY_BUF_LEN {
            buf.resize(COPY_BUF_LEN, 0);
        }
        let result = self.copy_contents(size, &mut contents, &mut buf);
        self.copy_buf = buf;
        result?;
        self.end_regular()
    }

    fn copy_contents(
        &mut self,
        size: u64,
        contents: &mut impl Read,
        buf: &mut [u8],
    ) -> Result<(), NarWriteError> {
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match contents.read(&mut buf[..want]) {
                Ok(0) => {
                    self.state = State::Poisoned;
                    return Err(NarWriteError::SizeMismatch {
                        declared: size,
                        written: size - left,
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.state = State::Poisoned;
                    return Err(NarWriteError::Io {
                        offset: self.pos,
                        source,
                    });
                }
            };
            self.write_contents(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Writes a symlink to `target`.
    pub fn symlink(&mut self, target: &[u8]) -> Result<(), NarWriteError> {
        if self.state != State::Node && self.state != State::Start {
            return Err(self.misuse("write a symlink"));
        }
        wire::check_target(target, self.limits.max_target_len).map_err(|reason| {
            NarWriteError::InvalidTarget {
                target: target.to_vec(),
                reason,
            }
        })?;
        self.begin_node("write a symlink")?;
        self.emit(&wire::SYMLINK_RUN)?;
        self.emit_str(target)?;
        self.close_node(&[])
    }

    fn emit_str(&mut self, s: &[u8]) -> Result<(), NarWriteError> {
        self.emit(&(s.len() as u64).to_le_bytes())?;
        self.emit(s)?;
        self.emit(&wire::ZEROS[..wire::padding_len(s.len() as u64)])
    }

    /// Opens a directory; add entries with [`entry`](Self::entry) and close it with
    /// [`end_directory`](Self::end_directory).
    pub fn begin_directory(&mut self) -> Result<(), NarWriteError> {
        if self.state != State::Node && self.state != State::Start {
            return Err(self.misuse("start a directory"));
        }
        if self.dirs.len() >= self.limits.max_depth {
            return Err(NarWriteError::Misuse {
                op: "start a directory",
                expected: "no deeper nesting (the depth limit is reached)",
            });
        }
        self.begin_node("start a directory")?;
        self.emit(&wire::DIRECTORY_RUN)?;
        self.dirs.push(Vec::new());
        self.state = State::Directory;
        Ok(())
    }

    /// Starts an entry of the current directory; its node must follow. Names must be
    /// valid and strictly increasing (as bytes) within a directory.
    pub fn entry(&mut self, name: &[u8]) -> Result<(), NarWriteError> {
        if self.state != State::Directory {
            return Err(self.misuse("add an entry"));
        }
        wire::check_name(name, self.limits.max_name_len).map_err(|reason| {
            NarWriteError::InvalidName {
                name: name.to_vec(),
                reason,
            }
        })?;
        let prev = self.dirs.last_mut().expect("a directory is open");
        match name.cmp(prev.as_slice()) {
            std::cmp::Ordering::Greater => {}
            std::cmp::Ordering::Equal => {
                return Err(NarWriteError::Duplicate {
                    name: name.to_vec(),
                })
            }
            std::cmp::Ordering::Less => {
                return Err(NarWriteError::NotSorted {
                    prev: prev.clone(),
                    name: name.to_vec(),
                })
            }
        }
        prev.clear();
        prev.extend_from_slice(name);
        self.emit(&wire::ENTRY_RUN)?;
        self.emit_str(name)?;
        self.emit(&wire::NODE_RUN)?;
        self.state = State::Node;
        Ok(())
    }

    /// Closes the current directory (and the entry holding it, if any).
    pub fn end_directory(&mut self) -> Result<(), NarWriteError> {
        if self.state != State::Directory {
            return Err(self.misuse("end a directory"));
        }
        self.dirs.pop();
        self.close_node(&[])
    }

    /// Checks that the archive is complete, flushes and returns the sink.
    pub fn finish(mut self) -> Result<W, NarWriteError> {
        if self.state != State::Done {
            return Err(self.misuse("finish the archive"));
        }
        self.out.flush().map_err(|source| NarWriteError::Io {
            offset: self.pos,
            source,
        })?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Vec<u8> {
        let mut w = NarWriter::new(Vec::new());
        w.file(false, b"Hello World!").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn matches_fixture() {
        let expected =
            std::fs::read(rix_testutil::vectors("generated/nar/helloworld.nar")).unwrap();
        assert_eq!(hello(), expected);
    }

    #[test]
    fn checks_order_and_names() {
        let mut w = NarWriter::new(Vec::new());
        w.begin_directory().unwrap();
        w.entry(b"b").unwrap();
        w.file(false, b"").unwrap();
        assert!(matches!(
            w.entry(b"a"),
            Err(NarWriteError::NotSorted { .. })
        ));
        assert!(matches!(
            w.entry(b"b"),
            Err(NarWriteError::Duplicate { .. })
        ));
        for bad in [&b""[..], b".", b"..", b"x/y", b"x\0"] {
            assert!(
                matches!(w.entry(bad), Err(NarWriteError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        // Bytes order, not char order: 'Z' < 'a' < '\xc3'.
        w.entry(b"c").unwrap();
        assert!(matches!(w.entry(b"d"), Err(NarWriteError::Misuse { .. })));
        w.symlink(b"../x").unwrap();
        w.entry("é".as_bytes()).unwrap();
        w.begin_directory().unwrap();
        w.end_directory().unwrap();
        w.end_directory().unwrap();
        // A closed archive takes nothing more.
        assert!(matches!(
            w.begin_directory(),
            Err(NarWriteError::Misuse { .. })
        ));
        assert!(matches!(w.entry(b"z"), Err(NarWriteError::Misuse { .. })));
        w.finish().unwrap();
    }

    #[test]
    fn checks_sizes() {
        let mut w = NarWriter::new(Vec::new());
        w.begin_regular(false, 3).unwrap();
        assert!(matches!(
            w.write_contents(b"abcd"),
            Err(NarWriteError::SizeMismatch {
                declared: 3,
                written: 4
            })
        ));
        w.write_contents(b"ab").unwrap();
        assert!(matches!(
            w.end_regular(),
            Err(NarWriteError::SizeMismatch {
                declared: 3,
                written: 2
            })
        ));
        w.write_contents(b"c").unwrap();
        w.end_regular().unwrap();
        assert_eq!(w.position(), w.finish().unwrap().len() as u64);

        let mut w = NarWriter::new(Vec::new());
        assert!(matches!(
            w.regular(false, 10, &b"short"[..]),
            Err(NarWriteError::SizeMismatch {
                declared: 10,
                written: 5
            })
        ));
        assert!(matches!(w.end_regular(), Err(NarWriteError::Poisoned)));
    }

    #[test]
    fn unfinished_archive_is_refused() {
        let w = NarWriter::new(Vec::new());
        assert!(matches!(w.finish(), Err(NarWriteError::Misuse { .. })));
        let mut w = NarWriter::new(Vec::new());
        w.begin_directory().unwrap();
        assert!(matches!(w.finish(), Err(NarWriteError::Misuse { .. })));
        let mut w = NarWriter::new(Vec::new());
        assert!(matches!(
            w.symlink(b""),
            Err(NarWriteError::InvalidTarget { .. })
        ));
        assert!(matches!(
            w.end_directory(),
            Err(NarWriteError::Misuse { .. })
        ));
    }

    #[test]
    fn contents_from_the_caller() {
        let mut w = NarWriter::new(Vec::new());
        w.begin_regular(false, 12).unwrap();
        let r: Result<(), ()> = w
            .write_contents_with(5, |out| {
                out.extend_from_slice(b"Hello");
                Ok(())
            })
            .unwrap();
        r.unwrap();
        assert!(matches!(
            w.write_contents_with(8, |_| Ok::<(), ()>(())),
            Err(NarWriteError::SizeMismatch {
                declared: 12,
                written: 13
            })
        ));
        w.write_contents(b" World!").unwrap();
        w.end_regular().unwrap();
        assert_eq!(w.finish().unwrap(), hello());

        let mut w = NarWriter::new(Vec::new());
        assert!(matches!(
            w.write_contents_with(0, |_| Ok::<(), ()>(())),
            Err(NarWriteError::Misuse { .. })
        ));
        w.begin_regular(false, 3).unwrap();
        assert_eq!(
            w.write_contents_with(3, |_| Err("failed")).unwrap(),
            Err("failed")
        );
        assert!(matches!(w.end_regular(), Err(NarWriteError::Poisoned)));
    }

    #[test]
    fn regular_from_reader() {
        let mut w = NarWriter::new(Vec::new());
        w.regular(false, 12, &b"Hello World!"[..]).unwrap();
        assert_eq!(w.finish().unwrap(), hello());
    }
}
