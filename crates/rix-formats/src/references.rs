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
                let window: &[u8; HASH_PART_LEN] = data[i + 1 - HASH_PART_LEN..=i].try_into().expect("32 bytes");
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
        let mut v: Vec<StorePath> = self.found.iter().filter_map(|k| self.candidates.get(k).cloned()).collect();
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
