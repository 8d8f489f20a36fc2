//! The worker protocol's primitives: little-endian `u64`s, booleans as `u64`,
//! byte strings (a `u64` length, the bytes, zero padding to a multiple of 8) and
//! counted lists. Mirrors `readNum`, `readString`, `readStrings` and `readPadding`
//! in Nix's `serialise.cc` / `serialise.hh`.
//!
//! The input is untrusted: every length is checked against a caller-given
//! [`Limits`] before anything is allocated, and even then buffers grow only as
//! bytes actually arrive, so a peer cannot make rix allocate more than it sends.
//! Every error names the field being read.

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::nar::wire::{padding_len, write_str};

/// The most a peer may make us read in one string or one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest string, in bytes.
    pub max_string: u64,
    /// Most elements in one list, set or map.
    pub max_list: u64,
}

impl Limits {
    /// No limit at all (buffers still grow only as data arrives).
    pub const UNLIMITED: Limits = Limits {
        max_string: u64::MAX,
        max_list: u64::MAX,
    };
}

impl Default for Limits {
    /// 16 MiB strings (log lines, error messages, `STDERR_WRITE` chunks) and
    /// 16 Mi elements (closures of the largest stores).
    fn default() -> Self {
        Limits {
            max_string: 16 << 20,
            max_list: 16 << 20,
        }
    }
}

/// Why a worker protocol value could not be read.
#[derive(Debug, Error)]
pub enum WireError {
    /// The stream failed or ended early (`UnexpectedEof`).
    #[error("{field}: {source}")]
    Io {
        field: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{field}: length {len} is over the limit of {max}")]
    TooLong {
        field: &'static str,
        len: u64,
        max: u64,
    },
    #[error("{field}: non-zero padding byte")]
    NonZeroPadding { field: &'static str },
    #[error("{field}: {value} is too large (at most {max})")]
    OutOfRange {
        field: &'static str,
        value: u64,
        max: u64,
    },
    #[error("{field}: unknown value {value:#x}")]
    UnknownTag { field: &'static str, value: u64 },
    #[error("{field}: not valid UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// An error inside a part of a larger value.
    #[error("{field}: {source}")]
    Within {
        field: &'static str,
        #[source]
        source: Box<WireError>,
    },
}

impl WireError {
    /// Wraps this error with the name of the enclosing field.
    pub fn within(self, field: &'static str) -> WireError {
        WireError::Within {
            field,
            source: Box::new(self),
        }
    }

    /// The innermost error (what actually went wrong, without the field path).
    pub fn root(&self) -> &WireError {
        match self {
            WireError::Within { source, .. } => source.root(),
            e => e,
        }
    }

    /// An `Invalid` error from anything printable.
    pub fn invalid(field: &'static str, message: impl ToString) -> WireError {
        WireError::Invalid {
            field,
            message: message.to_string(),
        }
    }
}

fn io_err(field: &'static str) -> impl FnOnce(io::Error) -> WireError {
    move |source| WireError::Io { field, source }
}

/// Reads one little-endian `u64`.
pub fn read_u64<R: Read + ?Sized>(r: &mut R, field: &'static str) -> Result<u64, WireError> {
    let mut buf = [0u8; 8];
    r.read_exact(&mut buf).map_err(io_err(field))?;
    Ok(u64::from_le_bytes(buf))
}

/// Reads a `u64` that must not exceed `max` (Nix's `readNum<T>` for a narrower
/// `T`: `readInt` is `max = u32::MAX`).
pub fn read_u64_max<R: Read + ?Sized>(
    r: &mut R,
    max: u64,
    field: &'static str,
) -> Result<u64, WireError> {
    let value = read_u64(r, field)?;
    if value > max {
        return Err(WireError::OutOfRange { field, value, max });
    }
    Ok(value)
}

/// Reads a `u32` sent as a `u64` (Nix's `readInt`).
pub fn read_u32<R: Read + ?Sized>(r: &mut R, field: &'static str) -> Result<u32, WireError> {
    Ok(read_u64_max(r, u32::MAX.into(), field)? as u32)
}

/// Reads a signed value Nix sends as a `u64` (`time_t`, `int64_t`): negative
/// values cannot be read back, as in Nix's `readNum`.
pub fn read_i64<R: Read + ?Sized>(r: &mut R, field: &'static str) -> Result<i64, WireError> {
    Ok(read_u64_max(r, i64::MAX as u64, field)? as i64)
}

/// Reads a boolean: any non-zero `u64` is true, as in Nix.
pub fn read_bool<R: Read + ?Sized>(r: &mut R, field: &'static str) -> Result<bool, WireError> {
    Ok(read_u64(r, field)? != 0)
}

/// Reads a byte string of at most `limits.max_string` bytes; its padding must be
/// zero.
pub fn read_bytes<R: Read + ?Sized>(
    r: &mut R,
    limits: &Limits,
    field: &'static str,
) -> Result<Vec<u8>, WireError> {
    let len = read_u64(r, field)?;
    if len > limits.max_string {
        return Err(WireError::TooLong {
            field,
            len,
            max: limits.max_string,
        });
    }
    // Grows with the data actually received, never by the announced length.
    let mut buf = Vec::with_capacity(len.min(64 << 10) as usize);
    r.take(len).read_to_end(&mut buf).map_err(io_err(field))?;
    if (buf.len() as u64) < len {
        return Err(WireError::Io {
            field,
            source: io::ErrorKind::UnexpectedEof.into(),
        });
    }
    let mut pad = [0u8; 8];
    let pad = &mut pad[..padding_len(len)];
    r.read_exact(pad).map_err(io_err(field))?;
    if pad.iter().any(|&b| b != 0) {
        return Err(WireError::NonZeroPadding { field });
    }
    Ok(buf)
}

/// Reads a string that must be UTF-8 (store paths, hashes, names).
pub fn read_string<R: Read + ?Sized>(
    r: &mut R,
    limits: &Limits,
    field: &'static str,
) -> Result<String, WireError> {
    String::from_utf8(read_bytes(r, limits, field)?).map_err(|_| WireError::NotUtf8 { field })
}

/// Reads human-readable text (error messages): bytes that are not UTF-8 are
/// replaced by U+FFFD rather than refused, since a message is still worth showing.
pub fn read_text<R: Read + ?Sized>(
    r: &mut R,
    limits: &Limits,
    field: &'static str,
) -> Result<String, WireError> {
    let bytes = read_bytes(r, limits, field)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Reads a list's element count, at most `limits.max_list`.
pub fn read_count<R: Read + ?Sized>(
    r: &mut R,
    limits: &Limits,
    field: &'static str,
) -> Result<usize, WireError> {
    let len = read_u64(r, field)?;
    if len > limits.max_list || usize::try_from(len).is_err() {
        return Err(WireError::TooLong {
            field,
            len,
            max: limits.max_list,
        });
    }
    Ok(len as usize)
}

/// A capacity to reserve for `count` elements announced by the peer: bounded, so
/// that the real allocation follows the elements actually received.
pub fn initial_capacity(count: usize) -> usize {
    count.min(1024)
}

/// Reads a list of UTF-8 strings (Nix's `readStrings<Strings>`).
pub fn read_strings<R: Read + ?Sized>(
    r: &mut R,
    limits: &Limits,
    field: &'static str,
) -> Result<Vec<String>, WireError> {
    let count = read_count(r, limits, field)?;
    let mut out = Vec::with_capacity(initial_capacity(count));
    for _ in 0..count {
        out.push(read_string(r, limits, field)?);
    }
    Ok(out)
}

/// Writes a little-endian `u64`.
pub fn write_u64<W: Write + ?Sized>(w: &mut W, n: u64) -> io::Result<()> {
    w.write_all(&n.to_le_bytes())
}

/// Writes a boolean as `0` or `1`.
pub fn write_bool<W: Write + ?Sized>(w: &mut W, b: bool) -> io::Result<()> {
    write_u64(w, b.into())
}

/// Writes a signed value as Nix does: its two's complement bits as a `u64`.
pub fn write_i64<W: Write + ?Sized>(w: &mut W, n: i64) -> io::Result<()> {
    write_u64(w, n as u64)
}

/// Writes a byte string with its length and zero padding.
pub fn write_bytes<W: Write + ?Sized>(w: &mut W, s: &[u8]) -> io::Result<()> {
    // `nar::wire::write_str` is generic over sized writers only.
    let mut w = w;
    write_str(&mut w, s)
}

/// Writes a list of strings: the count, then each string.
pub fn write_strings<W, S>(w: &mut W, items: impl ExactSizeIterator<Item = S>) -> io::Result<()>
where
    W: Write + ?Sized,
    S: AsRef<[u8]>,
{
    write_u64(w, items.len() as u64)?;
    for s in items {
        write_bytes(w, s.as_ref())?;
    }
    Ok(())
}

/// Reads a framed stream (Nix's `FramedSource`): chunks, each a `u64` length
/// and that many bytes (no padding), ended by an empty chunk. The data is
/// copied straight into the caller's buffers, so a chunk length is never
/// allocated; the total is bounded by `max_total`.
///
/// A reader dropped before the end leaves the rest unread: call
/// [`FramedReader::drain`] to skip to the end (as Nix's destructor does) and keep
/// the stream in step.
#[derive(Debug)]
pub struct FramedReader<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: u64,
    eof: bool,
    total: u64,
    max_total: u64,
}

impl<R: Read> FramedReader<R> {
    /// A reader of at most `max_total` bytes of data (`u64::MAX`: no limit).
    pub fn new(inner: R, max_total: u64) -> Self {
        FramedReader {
            inner,
            left: 0,
            eof: false,
            total: 0,
            max_total,
        }
    }

    /// Whether the final empty chunk has been read.
    pub fn is_finished(&self) -> bool {
        self.eof
    }

    /// Reads and discards the rest of the stream, up to its end marker.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// The underlying stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for FramedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.left == 0 {
            if self.eof {
                return Ok(0);
            }
            let mut len = [0u8; 8];
            self.inner.read_exact(&mut len)?;
            let len = u64::from_le_bytes(len);
            if len == 0 {
                self.eof = true;
                return Ok(0);
            }
            if self.total.saturating_add(len) > self.max_total {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("framed data is over the limit of {} bytes", self.max_total),
                ));
            }
            self.total += len;
            self.left = len;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes a framed stream (Nix's `FramedSink`): the data in chunks of at most
/// [`FramedWriter::CHUNK`] bytes, then, from [`FramedWriter::finish`], the
/// empty chunk that ends it.
#[derive(Debug)]
pub struct FramedWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FramedWriter<W> {
    /// Nix's `BufferedSink` size.
    pub const CHUNK: usize = 32 << 10;

    pub fn new(inner: W) -> Self {
        FramedWriter {
            inner,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_u64(&mut self.inner, self.buf.len() as u64)?;
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what is buffered and the end marker; returns the stream.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_chunk()?;
        write_u64(&mut self.inner, 0)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FramedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(Self::CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == Self::CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_chunk()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod framed_tests {
    use super::*;

    #[test]
    fn framed_round_trip_and_limits() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut w = FramedWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.extend_from_slice(b"after");
        let mut r = FramedReader::new(&bytes[..], u64::MAX);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(r.is_finished());
        let mut rest = r.into_inner();
        let mut after = Vec::new();
        rest.read_to_end(&mut after).unwrap();
        assert_eq!(after, b"after");

        // Draining a partly read stream stops at its end.
        let mut r = FramedReader::new(&bytes[..], u64::MAX);
        let mut some = [0u8; 10];
        r.read_exact(&mut some).unwrap();
        assert_eq!(r.drain().unwrap(), data.len() as u64 - 10);

        // Over the limit.
        let mut r = FramedReader::new(&bytes[..], 1000);
        assert_eq!(
            r.read_to_end(&mut Vec::new()).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );

        // A huge announced chunk allocates nothing and ends early.
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"abc");
        let mut r = FramedReader::new(&huge[..], u64::MAX);
        assert_eq!(
            r.read_to_end(&mut Vec::new()).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
