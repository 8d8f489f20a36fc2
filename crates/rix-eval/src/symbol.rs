//! Interned identifiers.
//!
//! A [`Symbol`] is a pointer to a leaked, interned string: equality is a pointer
//! comparison, ordering is the string's byte order (the order in which Nix prints
//! attribute names). Mirrors Nix's `SymbolTable`, which also never frees symbols.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// An interned string, one machine word wide (hence the boxed `str`: a thin pointer).
#[derive(Clone, Copy)]
#[allow(clippy::borrowed_box)]
pub struct Symbol(&'static Box<str>);

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

thread_local! {
    static TABLE: RefCell<HashMap<&'static str, Symbol, FxBuild>> =
        RefCell::new(HashMap::with_capacity_and_hasher(4096, FxBuild::default()));
}

impl Symbol {
    /// Interns `s`, returning the one symbol for that string.
    #[allow(clippy::borrowed_box)]
    pub fn new(s: &str) -> Symbol {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            if let Some(sym) = t.get(s) {
                return *sym;
            }
            let leaked: &'static Box<str> = Box::leak(Box::new(Box::from(s)));
            let sym = Symbol(leaked);
            t.insert(&leaked[..], sym);
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
        (self.0 as *const Box<str>).hash(state)
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
