//! Build logs: every byte a builder prints goes to a bzip2-compressed file in Nix's
//! layout (`<log dir>/drvs/<2 chars>/<rest of the .drv name>.bz2`, read by
//! `nix log` and `rix log`), line by line to the observer, and the last lines are
//! kept for the error message of a failed build.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bzip2::write::BzEncoder;

/// How many trailing lines a failure message shows.
pub const TAIL_LINES: usize = 25;

/// The longest line shown or kept for an error message: a builder printing
/// without newlines must not make rix hold its whole output.
pub const MAX_LINE_LEN: usize = 64 * 1024;

fn cut(data: &[u8], len: usize) -> &[u8] {
    &data[..data.len().min(len)]
}

/// Collects one build's output.
pub struct LogSink {
    file: Option<BzEncoder<Box<dyn Write + Send>>>,
    /// The first failure to write the file; the build goes on without it.
    error: Option<std::io::Error>,
    path: PathBuf,
    partial: Vec<u8>,
    tail: VecDeque<String>,
    bytes: u64,
}

impl LogSink {
    /// Creates the log file at `path` (its directory is created as needed).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path)?;
        Ok(Self::to_writer(path, BufWriter::new(file)))
    }

    /// A log written (compressed) to `w`; `path` names it in errors.
    pub fn to_writer(path: &Path, w: impl Write + Send + 'static) -> Self {
        Self {
            file: Some(BzEncoder::new(Box::new(w), bzip2::Compression::default())),
            error: None,
            path: path.to_path_buf(),
            partial: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            bytes: 0,
        }
    }

    /// Appends output, calling `line` for each completed line. One pass over
    /// `data`; a line longer than [`MAX_LINE_LEN`] is shown (and kept in the
    /// tail) cut at that length, while the log file gets every byte. A failure
    /// to write the file (a full disk) stops the file, not the build: the
    /// builder's own failure, if any, is what to report; see [`LogEnd::error`].
    pub fn write(&mut self, data: &[u8], mut line: impl FnMut(&str)) {
        self.bytes += data.len() as u64;
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(data) {
                self.file = None;
                self.error = Some(e);
            }
        }
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            if self.partial.is_empty() {
                self.push_line(cut(head, MAX_LINE_LEN), &mut line);
            } else {
                self.extend_partial(head);
                let l = std::mem::take(&mut self.partial);
                self.push_line(&l, &mut line);
                self.partial = l;
                self.partial.clear();
            }
            rest = &tail[1..];
        }
        self.extend_partial(rest);
    }

    /// Adds to the unfinished line, up to [`MAX_LINE_LEN`] bytes.
    fn extend_partial(&mut self, data: &[u8]) {
        let room = MAX_LINE_LEN.saturating_sub(self.partial.len());
        self.partial.extend_from_slice(cut(data, room));
    }

    fn push_line(&mut self, l: &[u8], line: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(l);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        line(text);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_owned());
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Flushes the file; returns the last lines and whether the file was written.
    pub fn finish(mut self, mut line: impl FnMut(&str)) -> LogEnd {
        if !self.partial.is_empty() {
            let l = std::mem::take(&mut self.partial);
            self.push_line(&l, &mut line);
        }
        if let Some(f) = self.file.take() {
            if let Err(e) = f.finish().and_then(|mut w| w.flush()) {
                self.error = Some(e);
            }
        }
        LogEnd {
            tail: self.tail.into_iter().collect(),
            error: self.error.map(|source| LogWriteError {
                path: self.path,
                source,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A finished log.
#[derive(Debug)]
pub struct LogEnd {
    /// The last lines ([`TAIL_LINES`] at most), for an error message.
    pub tail: Vec<String>,
    /// Why the log file is incomplete, if it is.
    pub error: Option<LogWriteError>,
}

/// The log file could not be written (the build's output was still read).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the build log '{}': {source}", path.display())]
pub struct LogWriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Reads a stored log back (bzip2, or plain text for logs written uncompressed).
pub fn read_log(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "bz2") {
        bzip2::read::MultiBzDecoder::new(File::open(path)?).read_to_end(&mut out)?;
    } else {
        File::open(path)?.read_to_end(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_tail_and_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drvs/ab/cdef.drv.bz2");
        let mut sink = LogSink::create(&path).unwrap();
        let mut lines = Vec::new();
        for i in 0..30 {
            sink.write(format!("line {i}\n").as_bytes(), |l| {
                lines.push(l.to_owned())
            });
        }
        sink.write(b"partial", |l| lines.push(l.to_owned()));
        let end = sink.finish(|l| lines.push(l.to_owned()));
        assert!(end.error.is_none());
        let tail = end.tail;
        assert_eq!(lines.len(), 31);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "partial");
        assert_eq!(tail[0], "line 6");
        let text = read_log(&path).unwrap();
        assert!(text.starts_with(b"line 0\n") && text.ends_with(b"line 29\npartial"));
    }

    #[test]
    fn lines_spanning_chunks_are_joined() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::create(&dir.path().join("l.bz2")).unwrap();
        let mut lines = Vec::new();
        for chunk in [&b"ab"[..], b"c\nd", b"e\n\nf\r\n", b"g"] {
            sink.write(chunk, |l| lines.push(l.to_owned()));
        }
        sink.finish(|l| lines.push(l.to_owned()));
        assert_eq!(lines, ["abc", "de", "", "f", "g"]);
    }

    /// A chunk of a million short lines: splitting it used to copy the rest of
    /// the chunk once per line (hours); one pass takes moments.
    #[test]
    fn a_huge_chunk_of_short_lines_is_split_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::create(&dir.path().join("l.bz2")).unwrap();
        let chunk = b"ab\n".repeat(1 << 20);
        let mut n = 0usize;
        sink.write(&chunk, |l| {
            assert_eq!(l, "ab");
            n += 1;
        });
        assert_eq!(n, 1 << 20);
        assert_eq!(sink.len(), chunk.len() as u64);
    }

    /// Output without a newline is logged in full but held only up to
    /// MAX_LINE_LEN in memory.
    #[test]
    fn a_line_without_end_is_held_only_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.bz2");
        let mut sink = LogSink::create(&path).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            sink.write(&chunk, |_| panic!("no line ended"));
            assert!(sink.partial.len() <= MAX_LINE_LEN);
        }
        assert!(sink.partial.capacity() <= 2 * MAX_LINE_LEN);
        let mut lines = Vec::new();
        assert!(sink.finish(|l| lines.push(l.len())).error.is_none());
        assert_eq!(lines, [MAX_LINE_LEN]);
        assert_eq!(read_log(&path).unwrap().len(), 64 * chunk.len());
    }

    /// A disk that fills up after a few bytes.
    struct FullAfter(usize);

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A log that cannot be written does not stop the lines (the builder's own
    /// error is in them), and says which file failed.
    #[test]
    fn a_full_disk_stops_the_file_not_the_lines() {
        let path = Path::new("/log/drvs/ab/cdef.drv.bz2");
        let mut sink = LogSink::to_writer(path, FullAfter(10));
        let mut lines = Vec::new();
        // Incompressible enough to reach the writer before the end.
        let noise: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 | 1)
            .filter(|&b| b != b'\n')
            .collect();
        sink.write(&noise, |_| {});
        sink.write(b"\nwriting output: No space left on device\n", |l| {
            lines.push(l.to_owned())
        });
        let end = sink.finish(|l| lines.push(l.to_owned()));
        assert_eq!(
            lines.last().unwrap(),
            "writing output: No space left on device"
        );
        assert_eq!(
            end.tail.last().unwrap(),
            "writing output: No space left on device"
        );
        let e = end.error.expect("the write failed").to_string();
        assert_eq!(
            e,
            "cannot write the build log '/log/drvs/ab/cdef.drv.bz2': No space left on device (os error 28)"
        );
    }
}
