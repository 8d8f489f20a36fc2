//! What a client asks to build or substitute: a store path as is, or outputs of
//! a derivation. Mirrors `DerivedPath` and `OutputsSpec` in Nix's
//! `derived-path.hh` / `outputs-spec.hh`, on the wire in the form of protocol
//! 1.30 and later (`DerivedPath::to_string_legacy` / `parseLegacy`):
//! `/nix/store/…-foo`, `/nix/store/…-bar.drv!*`, `/nix/store/…-bar.drv!out,dev`.
//!
//! Only constant derivation paths are supported: the nested form
//! (`drv!out!out`) of the `dynamic-derivations` experimental feature is refused
//! (its `!`-separated prefix is not a store path).

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use super::serialise::{Ctx, Serialise};
use super::wire::{read_string, write_bytes, WireError};
use crate::store_path::{check_name, StoreDir, StorePath};

/// Which outputs of a derivation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputsSpec {
    /// `*`: every output.
    All,
    /// Named outputs; never empty.
    Names(BTreeSet<String>),
}

impl OutputsSpec {
    /// Parses `*` or `name,name,...`, as `OutputsSpec::parse`.
    pub fn parse(s: &str) -> Result<OutputsSpec, String> {
        if s == "*" {
            return Ok(OutputsSpec::All);
        }
        let mut names = BTreeSet::new();
        for name in s.split(',') {
            check_name(name).map_err(|e| format!("invalid output name '{name}': {e}"))?;
            names.insert(name.to_owned());
        }
        Ok(OutputsSpec::Names(names))
    }

    fn print(&self) -> String {
        match self {
            OutputsSpec::All => "*".to_owned(),
            OutputsSpec::Names(names) => names.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }
}

/// A store path to make valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DerivedPath {
    /// A path that exists by itself (a source, or a `.drv` file as a file).
    Opaque(StorePath),
    /// Outputs of a derivation, to build or substitute.
    Built {
        drv_path: StorePath,
        outputs: OutputsSpec,
    },
}

impl DerivedPath {
    /// Parses the 1.30 form: the last `!` separates the derivation from its
    /// outputs.
    pub fn parse(store_dir: &StoreDir, s: &str) -> Result<DerivedPath, String> {
        match s.rsplit_once('!') {
            None => store_dir
                .parse(s)
                .map(DerivedPath::Opaque)
                .map_err(|e| e.to_string()),
            Some((drv, outputs)) => Ok(DerivedPath::Built {
                drv_path: store_dir.parse(drv).map_err(|e| e.to_string())?,
                outputs: OutputsSpec::parse(outputs)?,
            }),
        }
    }

    /// The 1.30 form.
    pub fn print(&self, store_dir: &StoreDir) -> String {
        match self {
            DerivedPath::Opaque(p) => store_dir.display(p),
            DerivedPath::Built { drv_path, outputs } => {
                format!("{}!{}", store_dir.display(drv_path), outputs.print())
            }
        }
    }
}

impl Serialise for DerivedPath {
    fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Self, WireError> {
        let s = read_string(r, &ctx.limits, "derived path")?;
        DerivedPath::parse(&ctx.store_dir, &s).map_err(|e| WireError::invalid("derived path", e))
    }
    fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &Ctx) -> io::Result<()> {
        write_bytes(w, self.print(&ctx.store_dir).as_bytes())
    }
}
