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

/// Collects one build's output.
pub struct LogSink {
    file: Option<BzEncoder<BufWriter<File>>>,
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
        Ok(Self {
            file: Some(BzEncoder::new(
                BufWriter::new(file),
                bzip2::Compression::default(),
            )),
            path: path.to_path_buf(),
            partial: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            bytes: 0,
        })
    }

    /// Appends output, calling `line` for each completed line.
    pub fn write(&mut self, data: &[u8], mut line: impl FnMut(&str)) -> std::io::Result<()> {
        self.bytes += data.len() as u64;
        if let Some(f) = self.file.as_mut() {
            f.write_all(data)?;
        }
        self.partial.extend_from_slice(data);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let rest = self.partial.split_off(nl + 1);
            let mut l = std::mem::replace(&mut self.partial, rest);
            l.pop();
            self.push_line(&l, &mut line);
        }
        Ok(())
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

    /// Flushes the file; returns the last lines.
    pub fn finish(mut self, mut line: impl FnMut(&str)) -> std::io::Result<Vec<String>> {
        if !self.partial.is_empty() {
            let l = std::mem::take(&mut self.partial);
            self.push_line(&l, &mut line);
        }
        if let Some(f) = self.file.take() {
            f.finish()?.flush()?;
        }
        Ok(self.tail.into_iter().collect())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
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
            })
            .unwrap();
        }
        sink.write(b"partial", |l| lines.push(l.to_owned()))
            .unwrap();
        let tail = sink.finish(|l| lines.push(l.to_owned())).unwrap();
        assert_eq!(lines.len(), 31);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "partial");
        assert_eq!(tail[0], "line 6");
        let text = read_log(&path).unwrap();
        assert!(text.starts_with(b"line 0\n") && text.ends_with(b"line 29\npartial"));
    }
}
