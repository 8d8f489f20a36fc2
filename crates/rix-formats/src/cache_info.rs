//! A binary cache's `nix-cache-info` file: `StoreDir`, `WantMassQuery`, `Priority`.
//!
//! Nix writes only `StoreDir: <dir>\n` when it creates a cache; servers such as
//! cache.nixos.org add `WantMassQuery: 1` and `Priority: 40`, in that order.
//! Reading follows `BinaryCacheStore::init` in Nix's `binary-cache-store.cc`: lines
//! without `:` and unknown keys are ignored, the key is everything before the first
//! `:` (untrimmed), the value is trimmed, `WantMassQuery` is true only for `1`, and
//! `Priority` is read like C's `std::stoi` (leading integer, rest ignored, an error when
//! there is none).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::store_path::StoreDir;

/// Why a `nix-cache-info` was rejected. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheInfoError {
    #[error("line {line}: invalid Priority {value:?}: expected an integer")]
    InvalidPriority { line: usize, value: String },
    /// Nix's message when a cache was made for another store directory.
    #[error("binary cache is for Nix stores with prefix '{cache}', not '{ours}'")]
    StoreDirMismatch { cache: String, ours: String },
    #[error("StoreDir value {0:?} cannot be written to nix-cache-info")]
    InvalidStoreDir(String),
}

/// The contents of `nix-cache-info`. Absent fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// The store directory the cache's paths belong to.
    pub store_dir: Option<String>,
    /// Whether clients may query many paths at once.
    pub want_mass_query: Option<bool>,
    /// Substituter priority: lower is tried first.
    pub priority: Option<i32>,
}

/// `std::stoi` on a trimmed string: optional sign, then at least one digit; anything
/// after the digits is ignored; out-of-range is an error.
fn stoi(s: &str) -> Option<i32> {
    let digits_from = usize::from(s.starts_with(['+', '-']));
    let end = s[digits_from..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(s.len(), |i| i + digits_from);
    if end == digits_from {
        return None;
    }
    s[..end].parse().ok()
}

impl CacheInfo {
    /// What Nix writes into a new cache: just the store directory.
    pub fn new(store_dir: &StoreDir) -> Self {
        Self {
            store_dir: Some(store_dir.as_str().to_owned()),
            ..Self::default()
        }
    }

    /// Parses `nix-cache-info`. Mirrors the reading half of `BinaryCacheStore::init`;
    /// later lines override earlier ones.
    pub fn parse(text: &str) -> Result<Self, CacheInfoError> {
        let mut info = Self::default();
        for (i, line) in text.split('\n').enumerate() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim_matches([' ', '\t', '\n', '\r']);
            match key {
                "StoreDir" => info.store_dir = Some(value.to_owned()),
                "WantMassQuery" => info.want_mass_query = Some(value == "1"),
                "Priority" => {
                    info.priority =
                        Some(stoi(value).ok_or_else(|| CacheInfoError::InvalidPriority {
                            line: i + 1,
                            value: value.to_owned(),
                        })?)
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// Checks that the cache was made for `ours`, as Nix does when opening it (a cache
    /// without `StoreDir` fits any store).
    pub fn check_store_dir(&self, ours: &StoreDir) -> Result<(), CacheInfoError> {
        match &self.store_dir {
            Some(dir) if dir != ours.as_str() => Err(CacheInfoError::StoreDirMismatch {
                cache: dir.clone(),
                ours: ours.as_str().to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks that printing and parsing gives back `self`: the store directory must
    /// have no newline nor surrounding whitespace.
    pub fn validate(&self) -> Result<(), CacheInfoError> {
        match &self.store_dir {
            Some(d) if d.contains('\n') || d.trim() != d => {
                Err(CacheInfoError::InvalidStoreDir(d.clone()))
            }
            _ => Ok(()),
        }
    }
}

/// `StoreDir`, `WantMassQuery` (`1`/`0`), `Priority`, each on its own line when set.
impl fmt::Display for CacheInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dir) = &self.store_dir {
            writeln!(f, "StoreDir: {dir}")?;
        }
        if let Some(want) = self.want_mass_query {
            writeln!(f, "WantMassQuery: {}", u8::from(want))?;
        }
        if let Some(priority) = self.priority {
            writeln!(f, "Priority: {priority}")?;
        }
        Ok(())
    }
}

impl FromStr for CacheInfo {
    type Err = CacheInfoError;
    fn from_str(s: &str) -> Result<Self, CacheInfoError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nix_writes_store_dir_only() {
        let info = CacheInfo::new(&StoreDir::default());
        assert_eq!(info.to_string(), "StoreDir: /nix/store\n");
        assert_eq!(CacheInfo::parse(&info.to_string()).unwrap(), info);
    }

    #[test]
    fn cache_nixos_org() {
        let text = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n";
        let info = CacheInfo::parse(text).unwrap();
        assert_eq!(
            info,
            CacheInfo {
                store_dir: Some("/nix/store".into()),
                want_mass_query: Some(true),
                priority: Some(40),
            }
        );
        assert_eq!(info.to_string(), text);
        assert!(info.check_store_dir(&StoreDir::default()).is_ok());
        let other = StoreDir::new("/tmp/x/store").unwrap();
        assert!(matches!(
            info.check_store_dir(&other),
            Err(CacheInfoError::StoreDirMismatch { .. })
        ));
    }

    /// Behaviour checked against Nix 2.8 opening a `file://` cache.
    #[test]
    fn lenient_like_nix() {
        let info = CacheInfo::parse(
            "garbage\n\nStoreDir:   /nix/store  \r\nWantMassQuery: true\nPriority: 30abc\nFoo: bar\n",
        )
        .unwrap();
        assert_eq!(info.store_dir.as_deref(), Some("/nix/store"));
        assert_eq!(info.want_mass_query, Some(false));
        assert_eq!(info.priority, Some(30));
        assert_eq!(CacheInfo::parse("Priority: -5").unwrap().priority, Some(-5));
        assert_eq!(
            CacheInfo::parse("StoreDir: /nix/store\nPriority: abc\n").unwrap_err(),
            CacheInfoError::InvalidPriority {
                line: 2,
                value: "abc".into()
            }
        );
        assert!(CacheInfo::parse("Priority: 99999999999").is_err());
        assert!(CacheInfo::parse("Priority: +").is_err());
        assert_eq!(CacheInfo::parse("").unwrap(), CacheInfo::default());
        assert_eq!(
            CacheInfo::parse("StoreDir: /nix/store/")
                .unwrap()
                .check_store_dir(&StoreDir::default()),
            Err(CacheInfoError::StoreDirMismatch {
                cache: "/nix/store/".into(),
                ours: "/nix/store".into()
            })
        );
    }

    proptest! {
        #[test]
        fn roundtrip(dir in proptest::option::of("/[a-z0-9/._-]{0,30}"), want in any::<Option<bool>>(), priority in any::<Option<i32>>()) {
            let info = CacheInfo { store_dir: dir, want_mass_query: want, priority };
            prop_assert!(info.validate().is_ok());
            prop_assert_eq!(CacheInfo::parse(&info.to_string()).unwrap(), info);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = CacheInfo::parse(&s);
        }
    }
}
