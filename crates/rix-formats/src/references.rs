//! Finding references: which candidate store paths' hash parts occur in a byte
//! stream. This is how Nix discovers the runtime dependencies of a build output
//! (`scanForReferences` / `RefScanSink` in Nix).
//!
//! The scanner is fed chunks of any size; it keeps the last 31 bytes so that a
//! hash part split across two chunks is still found.

use std::collections::{HashMap, HashSet};

use crate::nixbase32;
use crate::store_path::{StorePath, HASH_PART_LEN};

fn is_nix32(b: u8) -> bool {
    nixbase32::ALPHABET.contains(&b)
}

/// A streaming scanner for hash parts of candidate store paths.
pub struct ReferenceScanner {
    candidates: HashMap<[u8; HASH_PART_LEN], StorePath>,
    found: HashSet<[u8; HASH_PART_LEN]>,
    /// The stream's last bytes so far (at most 31).
    tail: Vec<u8>,
}

impl ReferenceScanner {
    pub fn new<'a>(candidates: impl IntoIterator<Item = &'a StorePath>) -> Self {
        let candidates = candidates
            .into_iter()
            .map(|p| {
                let mut key = [0u8; HASH_PART_LEN];
                key.copy_from_slice(p.hash_part().as_bytes());
                (key, p.clone())
            })
            .collect();
        Self {
            candidates,
            found: HashSet::new(),
            tail: Vec::with_capacity(HASH_PART_LEN),
        }
    }

    /// Scans the next chunk of the stream.
    pub fn update(&mut self, chunk: &[u8]) {
        if self.candidates.is_empty() || self.found.len() == self.candidates.len() {
            return;
        }
        // Windows that straddle the previous chunk and this one.
        if !self.tail.is_empty() {
            let mut joined = self.tail.clone();
            joined.extend_from_slice(&chunk[..chunk.len().min(HASH_PART_LEN - 1)]);
            self.scan(&joined);
        }
        self.scan(chunk);
        // Keep the stream's last 31 bytes for the next call.
        let keep = HASH_PART_LEN - 1;
        if chunk.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }

    fn scan(&mut self, data: &[u8]) {
        let mut run = 0usize;
        for (i, &b) in data.iter().enumerate() {
            if !is_nix32(b) {
                run = 0;
                continue;
            }
            run += 1;
            if run >= HASH_PART_LEN {
                let window: &[u8; HASH_PART_LEN] = data[i + 1 - HASH_PART_LEN..=i]
                    .try_into()
                    .expect("32 bytes");
                if self.candidates.contains_key(window) {
                    self.found.insert(*window);
                }
            }
        }
    }

    /// The candidates seen so far.
    pub fn found(&self) -> impl Iterator<Item = &StorePath> {
        self.found.iter().filter_map(|k| self.candidates.get(k))
    }

    pub fn into_found(self) -> Vec<StorePath> {
        let mut v: Vec<StorePath> = self
            .found
            .iter()
            .filter_map(|k| self.candidates.get(k).cloned())
            .collect();
        v.sort();
        v
    }
}

impl std::io::Write for ReferenceScanner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path(h: &str, n: &str) -> StorePath {
        StorePath::from_base_name(&format!("{h}-{n}")).unwrap()
    }

    #[test]
    fn finds_hash_parts_anywhere() {
        let a = path("7rjj86a15146cq1d3qy068lml7n8ykzm", "a");
        let b = path("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "b");
        let c = path("cccccccccccccccccccccccccccccccc", "c");
        let text = b"#!/bin/sh\nexec /nix/store/7rjj86a15146cq1d3qy068lml7n8ykzm-a/bin/x \
                     xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbx ccccccccccccccccccccccccccccccc";
        let mut s = ReferenceScanner::new([&a, &b, &c]);
        s.update(text);
        assert_eq!(s.into_found(), vec![a.clone(), b.clone()]);
        // Byte by byte: every boundary.
        let mut s = ReferenceScanner::new([&a, &b, &c]);
        for byte in text.iter() {
            s.update(std::slice::from_ref(byte));
        }
        assert_eq!(s.into_found(), vec![a, b]);
    }

    proptest! {
        #[test]
        fn chunking_does_not_matter(prefix in "[a-z0-9 ]{0,50}", suffix in "[a-z0-9 ]{0,50}", split in 0usize..150) {
            let p = path("7rjj86a15146cq1d3qy068lml7n8ykzm", "x");
            let data = format!("{prefix}{}{suffix}", p.hash_part()).into_bytes();
            let split = split.min(data.len());
            let mut s = ReferenceScanner::new([&p]);
            s.update(&data[..split]);
            s.update(&data[split..]);
            prop_assert_eq!(s.into_found(), vec![p]);
        }
    }
}

/// Replaces hash parts in a byte stream (all of the same length, 32 characters,
/// so sizes never change), as Nix's `rewriteStrings` / `HashRewriter` when it
/// moves a build result from a temporary path to its real one.
pub struct HashRewriter<W> {
    inner: W,
    map: HashMap<[u8; HASH_PART_LEN], [u8; HASH_PART_LEN]>,
    /// Bytes not yet passed on (at most 31), which may start a hash part.
    pending: Vec<u8>,
}

impl<W: std::io::Write> HashRewriter<W> {
    /// `map`: hash part → replacement hash part.
    pub fn new(inner: W, map: impl IntoIterator<Item = (StorePath, StorePath)>) -> Self {
        let key = |p: &StorePath| -> [u8; HASH_PART_LEN] {
            p.hash_part().as_bytes().try_into().expect("32 bytes")
        };
        Self {
            inner,
            map: map
                .into_iter()
                .map(|(from, to)| (key(&from), key(&to)))
                .collect(),
            pending: Vec::with_capacity(2 * HASH_PART_LEN),
        }
    }

    /// `map`: raw 32-byte strings → replacements (for rewrites to strings that
    /// are not hash parts, such as the zeros of Nix's `HashModuloSink`).
    pub fn from_parts(
        inner: W,
        map: impl IntoIterator<Item = ([u8; HASH_PART_LEN], [u8; HASH_PART_LEN])>,
    ) -> Self {
        Self {
            inner,
            map: map.into_iter().collect(),
            pending: Vec::with_capacity(2 * HASH_PART_LEN),
        }
    }

    /// Rewrites `buf` in place; returns how many leading bytes are final.
    fn rewrite(&self, buf: &mut [u8], last: bool) -> usize {
        let mut i = 0;
        while i + HASH_PART_LEN <= buf.len() {
            let window: [u8; HASH_PART_LEN] =
                buf[i..i + HASH_PART_LEN].try_into().expect("32 bytes");
            if let Some(to) = self.map.get(&window) {
                buf[i..i + HASH_PART_LEN].copy_from_slice(to);
                i += HASH_PART_LEN;
            } else {
                i += 1;
            }
        }
        if last {
            buf.len()
        } else {
            // The last 31 bytes may be the start of a hash part that continues.
            i.max(buf.len().saturating_sub(HASH_PART_LEN - 1))
        }
    }

    /// Flushes the held-back bytes and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let mut pending = std::mem::take(&mut self.pending);
        self.rewrite(&mut pending, true);
        self.inner.write_all(&pending)?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for HashRewriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(buf);
        let done = self.rewrite(&mut data, false);
        self.inner.write_all(&data[..done])?;
        self.pending = data.split_off(done);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rewrites_across_any_chunking() {
        let from = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-x").unwrap();
        let to = StorePath::from_base_name("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x").unwrap();
        let input = format!("a/{0}-x b {0}{0}!", from.hash_part()).into_bytes();
        let want = format!("a/{0}-x b {0}{0}!", to.hash_part()).into_bytes();
        for chunk in [1, 2, 7, 31, 32, 33, 1000] {
            let mut w = HashRewriter::new(Vec::new(), [(from.clone(), to.clone())]);
            for c in input.chunks(chunk) {
                w.write_all(c).unwrap();
            }
            assert_eq!(w.finish().unwrap(), want, "chunk {chunk}");
        }
    }
}
