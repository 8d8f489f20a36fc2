//! NAR compression as binary caches use it: `xz`, `zstd`, `bzip2`, `none`.

use std::io::{self, Read, Write};

/// A compression method named as in narinfo `Compression:` and `?compression=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    /// Parses a narinfo `Compression` value or a `compression=` parameter
    /// (an empty value means `bzip2`, as in narinfo files).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "xz" => Self::Xz,
            "zstd" => Self::Zstd,
            "bzip2" | "" => Self::Bzip2,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
        }
    }

    /// File name extension of a NAR compressed this way (Nix's: `.nar.xz`, ...).
    pub fn nar_extension(self) -> &'static str {
        match self {
            Self::None => ".nar",
            Self::Xz => ".nar.xz",
            Self::Zstd => ".nar.zst",
            Self::Bzip2 => ".nar.bz2",
        }
    }

    /// A reader that decompresses `inner`.
    pub fn decoder<'a, R: Read + Send + 'a>(
        self,
        inner: R,
    ) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Self::None => Box::new(inner),
            Self::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(inner)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
            Self::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(inner)),
        })
    }

    /// A writer that compresses into `inner` at `level` (the method's default
    /// when `None`); call [`Encoder::finish`] at the end.
    pub fn encoder<W: Write>(self, inner: W, level: Option<i32>) -> io::Result<Encoder<W>> {
        Ok(match self {
            Self::None => Encoder::None(inner),
            Self::Xz => Encoder::Xz(liblzma::write::XzEncoder::new(
                inner,
                level.unwrap_or(6).clamp(0, 9) as u32,
            )),
            Self::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                inner,
                level.unwrap_or(3),
            )?),
            Self::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(
                inner,
                bzip2::Compression::new(level.unwrap_or(9).clamp(1, 9) as u32),
            )),
        })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
            .ok_or_else(|| format!("unknown compression '{s}' (expected xz, zstd, bzip2 or none)"))
    }
}

/// A compressing writer.
pub enum Encoder<W: Write> {
    None(W),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// Flushes the compressed stream's end and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Self::None(w) => Ok(w),
            Self::Xz(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
            Self::Bzip2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::None(w) => w.write(buf),
            Self::Xz(e) => e.write(buf),
            Self::Zstd(e) => e.write(buf),
            Self::Bzip2(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::None(w) => w.flush(),
            Self::Xz(e) => e.flush(),
            Self::Zstd(e) => e.flush(),
            Self::Bzip2(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for c in [
            Compression::None,
            Compression::Xz,
            Compression::Zstd,
            Compression::Bzip2,
        ] {
            let mut enc = c.encoder(Vec::new(), None).unwrap();
            enc.write_all(&data).unwrap();
            let packed = enc.finish().unwrap();
            let mut out = Vec::new();
            c.decoder(&packed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{c}");
            assert_eq!(Compression::parse(c.name()), Some(c));
        }
        assert_eq!(Compression::parse(""), Some(Compression::Bzip2));
        assert_eq!(Compression::parse("br"), None);
    }
}
