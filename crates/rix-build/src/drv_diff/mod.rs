//! Why two derivations differ: the comparison nix-diff makes (its
//! `Nix.Diff.diff`), as a tree that [`render`] prints in nix-diff's words
//! and [`json`] as nix-diff's `--json`. `rix why-rebuild` prints it;
//! [`crate::explain`] reduces it to the one cause `rix build --explain` gives.
//!
//! Input derivations and sources are paired by name (the part of the store
//! path after the hash); one pair per name whose paths differ is compared
//! recursively (each pair of derivations once), several are listed. The
//! environment is compared only where no input derivation was descended into
//! (its differences there are the inputs' output paths), unless asked for.

pub mod json;
pub mod patience;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use rix_formats::derivation::{Derivation, DerivationOutput};
use rix_formats::{StoreDir, StorePath};

pub use patience::Item;

/// A value before and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed<T> {
    pub before: T,
    pub now: T,
}

/// How text values are split before diffing (nix-diff's `--*-oriented`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    Character,
    #[default]
    Word,
    Line,
}

/// What to compare.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    pub orientation: Orientation,
    /// Compare environments even below a descended input (`--environment`).
    pub environment: bool,
}

/// A diff of two texts, in chunks.
pub type TextDiff = Vec<Item<String>>;

/// A derivation path and the outputs wanted from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStructure {
    pub path: String,
    pub outputs: BTreeSet<String>,
}

/// How two derivations differ (nix-diff's `DerivationDiff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrvDiff {
    /// The same path.
    Same,
    /// This pair was compared (and shown) already.
    AlreadyCompared,
    NamesDontMatch(Changed<OutputStructure>),
    OutputsDontMatch(Changed<OutputStructure>),
    Differs(Box<Details>),
}

/// The parts of two derivations that differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub structure: Changed<OutputStructure>,
    pub outputs: OutputsDiff,
    pub platform: Option<Changed<String>>,
    pub builder: Option<Changed<String>>,
    pub args: Option<Vec<Item<String>>>,
    pub sources: SourcesDiff,
    pub inputs: InputsDiff,
    /// `None`: not compared (an input was descended into).
    pub env: Option<EnvDiff>,
}

/// An output as the `.drv` writes it: path, hash algorithm, hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFields {
    pub path: String,
    pub hash_algo: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputsDiff {
    /// Outputs only one side has.
    pub extra: Option<Changed<BTreeMap<String, OutputFields>>>,
    /// Outputs of the same name whose hash algorithm differs.
    pub hash_algo: Vec<(String, Changed<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourcesDiff {
    pub extra_names: Option<Changed<BTreeSet<String>>>,
    pub files: Vec<SourceFileDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFileDiff {
    /// One source of this name on each side; its text diff when both are
    /// text files under [`MAX_TEXT_SIZE`].
    One {
        name: String,
        content: Option<TextDiff>,
    },
    /// Several sources of this name.
    Some {
        name: String,
        paths: Changed<Vec<String>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputsDiff {
    pub extra_names: Option<Changed<BTreeSet<String>>>,
    pub drvs: Vec<InputDrvDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputDrvDiff {
    /// One input derivation of this name on each side, compared.
    One { name: String, diff: DrvDiff },
    /// Several, listed: path → outputs.
    Some {
        name: String,
        extra: Changed<BTreeMap<String, BTreeSet<String>>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvDiff {
    Equal,
    Differs {
        extra: Changed<BTreeMap<String, String>>,
        values: Vec<(String, TextDiff)>,
    },
}

/// Source files larger than this are not diffed as text.
pub const MAX_TEXT_SIZE: u64 = 1 << 20;

/// Reads what a comparison needs from a store.
pub trait DrvReader {
    /// The parsed `.drv` at `path`.
    fn read_drv(&self, path: &StorePath) -> Result<Derivation, String>;
    /// Where `path`'s files are on this machine.
    fn real_path(&self, path: &StorePath) -> PathBuf;
}

/// Compares derivations, each pair once (see the module docs).
pub struct Differ<'a> {
    store_dir: &'a StoreDir,
    reader: &'a dyn DrvReader,
    options: DiffOptions,
    visited: HashSet<(StorePath, BTreeSet<String>, StorePath, BTreeSet<String>)>,
}

impl<'a> Differ<'a> {
    pub fn new(store_dir: &'a StoreDir, reader: &'a dyn DrvReader, options: DiffOptions) -> Self {
        Differ {
            store_dir,
            reader,
            options,
            visited: HashSet::new(),
        }
    }

    /// Compares `old` and `new` (`.drv` paths) for their `out` output, as
    /// `nix-diff OLD NEW`.
    pub fn diff_top(&mut self, old: &StorePath, new: &StorePath) -> Result<DrvDiff, String> {
        let out = BTreeSet::from(["out".to_owned()]);
        self.diff(true, old, &out, new, &out)
    }

    fn diff(
        &mut self,
        top: bool,
        old: &StorePath,
        old_outputs: &BTreeSet<String>,
        new: &StorePath,
        new_outputs: &BTreeSet<String>,
    ) -> Result<DrvDiff, String> {
        if old == new {
            return Ok(DrvDiff::Same);
        }
        let key = (
            old.clone(),
            old_outputs.clone(),
            new.clone(),
            new_outputs.clone(),
        );
        if !self.visited.insert(key) {
            return Ok(DrvDiff::AlreadyCompared);
        }
        let structure = Changed {
            before: OutputStructure {
                path: self.store_dir.display(old),
                outputs: old_outputs.clone(),
            },
            now: OutputStructure {
                path: self.store_dir.display(new),
                outputs: new_outputs.clone(),
            },
        };
        if !top && drv_name(old) != drv_name(new) {
            return Ok(DrvDiff::NamesDontMatch(structure));
        }
        if old_outputs != new_outputs {
            return Ok(DrvDiff::OutputsDontMatch(structure));
        }
        let l = self.reader.read_drv(old)?;
        let r = self.reader.read_drv(new)?;

        let outputs = self.diff_outputs(&l, &r);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let changed = |a: &[u8], b: &[u8]| {
            (a != b).then(|| Changed {
                before: text(a),
                now: text(b),
            })
        };
        let platform = changed(&l.system, &r.system);
        let builder = changed(&l.builder, &r.builder);
        let args = (l.args != r.args).then(|| {
            let a: Vec<String> = l.args.iter().map(|a| text(a)).collect();
            let b: Vec<String> = r.args.iter().map(|a| text(a)).collect();
            patience::diff(&a, &b)
        });
        let sources = self.diff_sources(&l.input_srcs, &r.input_srcs);

        let group = |d: &Derivation| {
            let mut m: BTreeMap<String, BTreeMap<StorePath, BTreeSet<String>>> = BTreeMap::new();
            for (p, outs) in &d.input_drvs {
                m.entry(drv_name(p).to_owned())
                    .or_default()
                    .insert(p.clone(), outs.clone());
            }
            m
        };
        let (gl, gr) = (group(&l), group(&r));
        let extra_names = extra_keys(&gl, &gr);
        let mut drvs = Vec::new();
        let mut descended = false;
        for (name, lp) in &gl {
            let Some(rp) = gr.get(name) else { continue };
            if lp == rp {
                continue;
            }
            let lx: Vec<_> = lp.iter().filter(|(p, _)| !rp.contains_key(*p)).collect();
            let rx: Vec<_> = rp.iter().filter(|(p, _)| !lp.contains_key(*p)).collect();
            match (lx.as_slice(), rx.as_slice()) {
                ([(lpath, louts)], [(rpath, routs)]) if louts == routs => {
                    let diff = self.diff(false, lpath, louts, rpath, routs)?;
                    descended = true;
                    drvs.push(InputDrvDiff::One {
                        name: name.clone(),
                        diff,
                    });
                }
                _ => {
                    let show = |v: &[(&StorePath, &BTreeSet<String>)]| {
                        v.iter()
                            .map(|(p, o)| (self.store_dir.display(p), (*o).clone()))
                            .collect()
                    };
                    drvs.push(InputDrvDiff::Some {
                        name: name.clone(),
                        extra: Changed {
                            before: show(&lx),
                            now: show(&rx),
                        },
                    });
                }
            }
        }
        let inputs = InputsDiff { extra_names, drvs };
        let env = if descended && !self.options.environment {
            None
        } else {
            Some(self.diff_env(&l, &r))
        };
        Ok(DrvDiff::Differs(Box::new(Details {
            structure,
            outputs,
            platform,
            builder,
            args,
            sources,
            inputs,
            env,
        })))
    }

    fn diff_outputs(&self, l: &Derivation, r: &Derivation) -> OutputsDiff {
        let fields = |d: &Derivation, name: &str, o: &DerivationOutput| OutputFields {
            path: o
                .path(self.store_dir, &d.name, name)
                .ok()
                .flatten()
                .map(|p| self.store_dir.display(&p))
                .unwrap_or_default(),
            hash_algo: o.hash_algo_field(),
            hash: match o {
                DerivationOutput::CAFixed { hash, .. } => hash.to_base16(),
                _ => String::new(),
            },
        };
        let only = |a: &Derivation, b: &Derivation| -> BTreeMap<String, OutputFields> {
            a.outputs
                .iter()
                .filter(|(n, _)| !b.outputs.contains_key(*n))
                .map(|(n, o)| (n.clone(), fields(a, n, o)))
                .collect()
        };
        let (lx, rx) = (only(l, r), only(r, l));
        let extra = (!lx.is_empty() || !rx.is_empty()).then_some(Changed {
            before: lx,
            now: rx,
        });
        let hash_algo = l
            .outputs
            .iter()
            .filter_map(|(n, lo)| {
                let ro = r.outputs.get(n)?;
                let (a, b) = (lo.hash_algo_field(), ro.hash_algo_field());
                (a != b).then(|| (n.clone(), Changed { before: a, now: b }))
            })
            .collect();
        OutputsDiff { extra, hash_algo }
    }

    fn diff_sources(&self, l: &BTreeSet<StorePath>, r: &BTreeSet<StorePath>) -> SourcesDiff {
        let group = |s: &BTreeSet<StorePath>| {
            let mut m: BTreeMap<String, BTreeSet<StorePath>> = BTreeMap::new();
            for p in s {
                m.entry(p.name().to_owned()).or_default().insert(p.clone());
            }
            m
        };
        let (gl, gr) = (group(l), group(r));
        let extra_names = extra_keys(&gl, &gr);
        let mut files = Vec::new();
        for (name, lp) in &gl {
            let Some(rp) = gr.get(name) else { continue };
            let lx: Vec<&StorePath> = lp.difference(rp).collect();
            let rx: Vec<&StorePath> = rp.difference(lp).collect();
            match (lx.as_slice(), rx.as_slice()) {
                ([], []) => {}
                ([a], [b]) => files.push(SourceFileDiff::One {
                    name: name.clone(),
                    content: self
                        .text_of(a)
                        .zip(self.text_of(b))
                        .map(|(a, b)| text_diff(&a, &b, self.options.orientation)),
                }),
                _ => files.push(SourceFileDiff::Some {
                    name: name.clone(),
                    paths: Changed {
                        before: lx.iter().map(|p| self.store_dir.display(p)).collect(),
                        now: rx.iter().map(|p| self.store_dir.display(p)).collect(),
                    },
                }),
            }
        }
        SourcesDiff { extra_names, files }
    }

    /// A source's text: a regular file under [`MAX_TEXT_SIZE`] without NUL
    /// bytes, decoded leniently as nix-diff does.
    fn text_of(&self, p: &StorePath) -> Option<String> {
        let real = self.reader.real_path(p);
        let meta = std::fs::metadata(&real).ok()?;
        if !meta.is_file() || meta.len() > MAX_TEXT_SIZE {
            return None;
        }
        let bytes = std::fs::read(&real).ok()?;
        if bytes.contains(&0) {
            return None;
        }
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn diff_env(&self, l: &Derivation, r: &Derivation) -> EnvDiff {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let env = |d: &Derivation| -> BTreeMap<String, String> {
            d.env.iter().map(|(k, v)| (text(k), text(v))).collect()
        };
        let (le, re) = (env(l), env(r));
        // Output paths, `builder` and `system` are expected to differ (or
        // are compared on their own).
        let ignored = |k: &str, a: &str, b: &str| {
            a == b
                || (l.outputs.contains_key(k) && r.outputs.contains_key(k))
                || k == "builder"
                || k == "system"
        };
        let only = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            a.iter()
                .filter(|(k, _)| !b.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let (lx, rx) = (only(&le, &re), only(&re, &le));
        let values: Vec<(String, TextDiff)> = le
            .iter()
            .filter_map(|(k, a)| {
                let b = re.get(k)?;
                (!ignored(k, a, b)).then(|| (k.clone(), text_diff(a, b, self.options.orientation)))
            })
            .collect();
        if lx.is_empty() && rx.is_empty() && values.is_empty() {
            return EnvDiff::Equal;
        }
        EnvDiff::Differs {
            extra: Changed {
                before: lx,
                now: rx,
            },
            values,
        }
    }
}

/// The name of a derivation path without `.drv`.
pub fn drv_name(p: &StorePath) -> &str {
    p.name().strip_suffix(".drv").unwrap_or(p.name())
}

fn extra_keys<K: Ord + Clone, V>(
    l: &BTreeMap<K, V>,
    r: &BTreeMap<K, V>,
) -> Option<Changed<BTreeSet<K>>> {
    let a: BTreeSet<K> = l.keys().filter(|k| !r.contains_key(*k)).cloned().collect();
    let b: BTreeSet<K> = r.keys().filter(|k| !l.contains_key(*k)).cloned().collect();
    (!a.is_empty() || !b.is_empty()).then_some(Changed { before: a, now: b })
}

/// Diffs two texts split as `orientation` says (nix-diff's `diffText`).
pub fn text_diff(a: &str, b: &str, orientation: Orientation) -> TextDiff {
    match orientation {
        Orientation::Word => patience::diff(&words(a), &words(b)),
        Orientation::Line => patience::diff(&lines(a), &lines(b)),
        Orientation::Character => {
            let (ca, cb): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            group_runs(patience::diff(&ca, &cb))
        }
    }
}

/// Alternating runs of non-space and space (the first may be empty).
fn words(s: &str) -> Vec<String> {
    decompose(s, char::is_whitespace)
}

/// Lines, each with the newlines after it.
fn lines(s: &str) -> Vec<String> {
    let parts = decompose(s, |c| c == '\n');
    parts.chunks(2).map(|c| c.concat()).collect()
}

/// nix-diff's `decomposeOn`: spans that alternately fail and satisfy `pred`,
/// starting with a failing one (possibly empty).
fn decompose(s: &str, pred: impl Fn(char) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut satisfying = false;
    while !rest.is_empty() {
        let end = rest
            .char_indices()
            .find(|&(_, c)| pred(c) != satisfying)
            .map_or(rest.len(), |(i, _)| i);
        out.push(rest[..end].to_owned());
        rest = &rest[end..];
        satisfying = !satisfying;
    }
    out
}

/// Consecutive old (or new) characters as one chunk; common ones one by one
/// (nix-diff's `getGroupedDiff`).
fn group_runs(items: Vec<Item<char>>) -> TextDiff {
    let mut out: TextDiff = Vec::new();
    for item in items {
        match (item, out.last_mut()) {
            (Item::Old(c), Some(Item::Old(s))) | (Item::New(c), Some(Item::New(s))) => s.push(c),
            (Item::Old(c), _) => out.push(Item::Old(c.to_string())),
            (Item::New(c), _) => out.push(Item::New(c.to_string())),
            (Item::Both(c), _) => out.push(Item::Both(c.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompose_as_nix_diff() {
        assert_eq!(words("aabbaa"), vec!["aabbaa"]);
        assert_eq!(words("  When in"), vec!["", "  ", "When", " ", "in"]);
        assert!(words("").is_empty());
        assert_eq!(lines("a\nb\n\nc"), vec!["a\n", "b\n\n", "c"]);
        assert_eq!(lines("\nx"), vec!["\n", "x"]);
    }
}
