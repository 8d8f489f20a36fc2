//! Interned identifiers.
//!
//! A [`Symbol`] is a pointer to a leaked, interned string: equality is a pointer
//! comparison, ordering is the string's byte order (the order in which Nix prints
//! attribute names). Mirrors Nix's `SymbolTable`, which also never frees symbols.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// An interned string, one machine word wide (a thin pointer to the
/// interned `&str`).
#[derive(Clone, Copy)]
pub struct Symbol(&'static &'static str);

/// FxHash (as in rustc): symbol names are short and not adversarial, and
/// SipHash dominated interning.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// Interned names live in leaked chunks, carved up as needed: two
/// allocations per chunk instead of two per symbol.
struct Arena {
    bytes: &'static mut [u8],
    slots: &'static mut [&'static str],
}

const BYTES_CHUNK: usize = 64 * 1024;
const SLOTS_CHUNK: usize = 4096;

impl Arena {
    fn alloc(&mut self, s: &str) -> &'static &'static str {
        let n = s.len();
        if self.bytes.len() < n {
            self.bytes = Box::leak(vec![0u8; BYTES_CHUNK.max(n)].into_boxed_slice());
        }
        let (head, tail) = std::mem::take(&mut self.bytes).split_at_mut(n);
        self.bytes = tail;
        head.copy_from_slice(s.as_bytes());
        let text: &'static str = std::str::from_utf8(head).expect("copied from a str");
        if self.slots.is_empty() {
            self.slots = Box::leak(vec![""; SLOTS_CHUNK].into_boxed_slice());
        }
        let (slot, rest) = std::mem::take(&mut self.slots).split_at_mut(1);
        self.slots = rest;
        slot[0] = text;
        let slot: &'static [&'static str] = slot;
        &slot[0]
    }
}

thread_local! {
    static TABLE: RefCell<HashMap<&'static str, Symbol, FxBuild>> =
        // Large from the start: growing re-hashes every name (a tenth of the
        // time of building a 100,000-attribute set went to that).
        RefCell::new(HashMap::with_capacity_and_hasher(1 << 15, FxBuild::default()));
    static ARENA: RefCell<Arena> = const { RefCell::new(Arena { bytes: &mut [], slots: &mut [] }) };
}

impl Symbol {
    /// Interns `s`, returning the one symbol for that string.
    pub fn new(s: &str) -> Symbol {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            if let Some(sym) = t.get(s) {
                return *sym;
            }
            let interned = ARENA.with(|a| a.borrow_mut().alloc(s));
            let sym = Symbol(interned);
            t.insert(interned, sym);
            sym
        })
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq for Symbol {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for Symbol {}

impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Symbol {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self == other {
            std::cmp::Ordering::Equal
        } else {
            self.0.as_bytes().cmp(other.0.as_bytes())
        }
    }
}

impl std::hash::Hash for Symbol {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.0 as *const &'static str).hash(state)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &**self.0)
    }
}

impl From<&str> for Symbol {
    fn from(s: &str) -> Self {
        Symbol::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning() {
        let a = Symbol::new("foo");
        let b = Symbol::new(&String::from("foo"));
        assert_eq!(a, b);
        assert_ne!(a, Symbol::new("bar"));
        assert!(Symbol::new("a") < Symbol::new("b"));
        assert_eq!(a.as_str(), "foo");
    }
}
