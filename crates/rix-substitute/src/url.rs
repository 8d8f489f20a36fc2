//! Binary cache URLs: `file:///dir`, `http(s)://host/path`, `s3://bucket`, each
//! with Nix's `?name=value&...` parameters (`priority`, `trusted`, `compression`,
//! `compression-level`, `secret-key`, `want-mass-query`, and for S3 `region`,
//! `endpoint`, `scheme`, `profile`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::SubstError;

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `file://DIR`.
    File(PathBuf),
    /// `http://...` or `https://...`, without the query and trailing slashes.
    Http(String),
    /// `s3://BUCKET` (an optional path prefix after the bucket).
    S3 { bucket: String, prefix: String },
}

/// A parsed binary cache URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheUrl {
    /// The URL as given.
    pub raw: String,
    pub location: Location,
    /// Query parameters, percent-decoded.
    pub params: BTreeMap<String, String>,
}

impl CacheUrl {
    pub fn parse(url: &str) -> Result<Self, SubstError> {
        let bad = |message: &str| SubstError::Url {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let mut params = BTreeMap::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(percent_decode(k), percent_decode(v));
        }
        let location = if let Some(rest) = base.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path (file:///dir)"));
            }
            let dir = percent_decode(rest);
            let trimmed = dir.trim_end_matches('/');
            Location::File(PathBuf::from(if trimmed.is_empty() {
                "/"
            } else {
                trimmed
            }))
        } else if base.starts_with("http://") || base.starts_with("https://") {
            let host = base.split_once("://").map_or("", |(_, r)| r);
            if host.is_empty() || host.starts_with('/') {
                return Err(bad("missing host"));
            }
            Location::Http(base.trim_end_matches('/').to_owned())
        } else if let Some(rest) = base.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("missing bucket name"));
            }
            Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            }
        } else {
            return Err(bad("expected file://, http://, https:// or s3://"));
        };
        Ok(Self {
            raw: url.to_owned(),
            location,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The URL without parameters (they may hold secrets such as key file names).
    pub fn display(&self) -> String {
        self.raw.split('?').next().unwrap_or_default().to_owned()
    }

    /// `?trusted=1`: signatures from this cache are not checked.
    pub fn trusted(&self) -> bool {
        matches!(self.param("trusted"), Some("1" | "true"))
    }

    /// `?priority=N`, overriding the cache's own.
    pub fn priority(&self) -> Option<i32> {
        self.param("priority").and_then(|p| p.parse().ok())
    }
}

/// Decodes `%XX` escapes (and `+` as a space is NOT decoded, as in Nix).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u =
            CacheUrl::parse("file:///tmp/cache?compression=zstd&secret-key=/k%20ey&priority=10")
                .unwrap();
        assert_eq!(u.location, Location::File("/tmp/cache".into()));
        assert_eq!(u.param("secret-key"), Some("/k ey"));
        assert_eq!(u.priority(), Some(10));
        assert_eq!(u.display(), "file:///tmp/cache");
        let u = CacheUrl::parse("https://cache.nixos.org/").unwrap();
        assert_eq!(u.location, Location::Http("https://cache.nixos.org".into()));
        let u =
            CacheUrl::parse("s3://bucket/pre/fix?region=eu-west-1&endpoint=http://127.0.0.1:9000")
                .unwrap();
        assert_eq!(
            u.location,
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "pre/fix".into()
            }
        );
        assert_eq!(u.param("endpoint"), Some("http://127.0.0.1:9000"));
        for bad in ["ftp://x", "file://relative", "s3://", "http://", "daemon"] {
            assert!(CacheUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%zz%"), "A%zz%");
    }
}
