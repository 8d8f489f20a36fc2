//! Why each derivation of a plan is going to be built (`rix build
//! --explain`): forced by `--check`/`--rebuild`; or its output is not valid
//! and no cache has it, and then what changed since the last build of a
//! derivation of the same name (rix records every build in its `RixBuilds`
//! table): the first difference found going down from the derivation
//! through the input derivations that changed ([`crate::drv_diff`]), e.g.
//! "input /nix/store/…-src.drv changed: environment variable `outputHash`
//! differs".

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

use rix_formats::derivation::Derivation;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;

use crate::drv_diff::{
    drv_name, DiffOptions, Differ, DrvDiff, DrvReader, EnvDiff, InputDrvDiff, Item, SourceFileDiff,
};
use crate::plan::Plan;

/// Why one derivation is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `--check` or `--rebuild` asked for it.
    Forced { flag: String },
    /// No derivation of this name was built here before.
    NeverBuilt,
    /// This very derivation was built before; its output has gone since.
    OutputDeleted { built_at: i64 },
    /// The last build of this name was of another derivation, whose `.drv`
    /// is no longer in the store.
    PreviousGone { previous: StorePath },
    /// The last build of this name was of another derivation; `input` is
    /// the input derivation (of the new one, maybe several levels down)
    /// where the first difference is, `None` if it is in the derivation
    /// itself; `what` says what differs there.
    Changed {
        previous: StorePath,
        input: Option<StorePath>,
        what: Vec<String>,
    },
}

/// A derivation of the plan and why it is built.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub drv: StorePath,
    pub reason: Reason,
}

/// `reason` in words, paths printed by `store`.
pub struct Display<'a> {
    pub store: &'a LocalStore,
    pub reason: &'a Reason,
}

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |x: &StorePath| self.store.print(x);
        match self.reason {
            Reason::Forced { flag } => write!(f, "forced by {flag}"),
            Reason::NeverBuilt => write!(
                f,
                "output not valid and no cache has it (no earlier build of this name recorded)"
            ),
            Reason::OutputDeleted { .. } => write!(
                f,
                "output not valid and no cache has it (this derivation was built before; its output has been deleted since)"
            ),
            Reason::PreviousGone { previous } => write!(
                f,
                "changed since its last build ({}, no longer in the store)",
                p(previous)
            ),
            Reason::Changed {
                previous,
                input,
                what,
            } => {
                let what = summary(what);
                match input {
                    Some(i) => write!(f, "input {} changed: {what}", p(i)),
                    None => write!(f, "changed since its last build ({}): {what}", p(previous)),
                }
            }
        }
    }
}

fn summary(what: &[String]) -> String {
    match what {
        [] => "it differs".to_owned(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// The JSON form of an explanation (`rix build --explain --json`).
pub fn to_json(store: &LocalStore, e: &Explanation) -> serde_json::Value {
    let p = |x: &StorePath| serde_json::Value::String(store.print(x));
    let (kind, previous, input, what) = match &e.reason {
        Reason::Forced { .. } => ("forced", None, None, vec![]),
        Reason::NeverBuilt => ("neverBuilt", None, None, vec![]),
        Reason::OutputDeleted { .. } => ("outputDeleted", None, None, vec![]),
        Reason::PreviousGone { previous } => ("previousGone", Some(previous), None, vec![]),
        Reason::Changed {
            previous,
            input,
            what,
        } => ("changed", Some(previous), input.as_ref(), what.clone()),
    };
    serde_json::json!({
        "drvPath": store.print(&e.drv),
        "kind": kind,
        "reason": Display { store, reason: &e.reason }.to_string(),
        "previous": previous.map(p),
        "changedInput": input.map(p),
        "differences": what,
    })
}

/// Reads derivations and sources from a local store.
pub struct StoreReader<'a>(pub &'a LocalStore);

impl DrvReader for StoreReader<'_> {
    fn read_drv(&self, path: &StorePath) -> Result<Derivation, String> {
        crate::plan::read_derivation(self.0, path).map_err(|e| e.to_string())
    }

    fn real_path(&self, path: &StorePath) -> PathBuf {
        self.0.real_path(path)
    }
}

/// Explains every build of `plan`, in its build order; `forced` names the
/// flag that forces them all (`--check`, `--rebuild`).
pub fn explain_plan(store: &LocalStore, plan: &Plan, forced: Option<&str>) -> Vec<Explanation> {
    let order = plan.build_order();
    if let Some(flag) = forced {
        return order
            .into_iter()
            .map(|drv| Explanation {
                drv,
                reason: Reason::Forced {
                    flag: flag.to_owned(),
                },
            })
            .collect();
    }
    let last = store
        .db()
        .built_derivations()
        .map(last_by_name)
        .unwrap_or_default();
    let reader = StoreReader(store);
    order
        .into_iter()
        .map(|drv| {
            let reason = match last.get(drv_name(&drv)) {
                None => Reason::NeverBuilt,
                Some((prev, at)) if *prev == drv => Reason::OutputDeleted { built_at: *at },
                Some((prev, _)) if !store.is_valid(prev).unwrap_or(false) => Reason::PreviousGone {
                    previous: prev.clone(),
                },
                Some((prev, _)) => {
                    let options = DiffOptions {
                        environment: true,
                        ..Default::default()
                    };
                    let mut differ = Differ::new(store.store_dir(), &reader, options);
                    match differ.diff_top(prev, &drv) {
                        Ok(d) => {
                            let (input, what) = first_cause(&d);
                            Reason::Changed {
                                previous: prev.clone(),
                                input: input
                                    .map(|s| store.store_dir().parse(&s))
                                    .and_then(Result::ok),
                                what,
                            }
                        }
                        Err(_) => Reason::PreviousGone {
                            previous: prev.clone(),
                        },
                    }
                }
            };
            Explanation { drv, reason }
        })
        .collect()
}

/// The last build of each derivation name among `built` (drv, end time):
/// the latest end time wins, the first of equal ones.
pub fn last_by_name(
    built: impl IntoIterator<Item = (StorePath, i64)>,
) -> HashMap<String, (StorePath, i64)> {
    let mut last: HashMap<String, (StorePath, i64)> = HashMap::new();
    for (drv, at) in built {
        let name = drv_name(&drv).to_owned();
        match last.get(&name) {
            Some((_, t)) if *t >= at => {}
            _ => {
                last.insert(name, (drv, at));
            }
        }
    }
    last
}

/// The shallowest derivation in `diff` that differs by more than its inputs'
/// paths: its (new) path, `None` for the top, and what differs there.
pub fn first_cause(diff: &DrvDiff) -> (Option<String>, Vec<String>) {
    let mut queue: VecDeque<(&DrvDiff, bool)> = VecDeque::from([(diff, true)]);
    while let Some((d, top)) = queue.pop_front() {
        let what = local_differences(d);
        if !what.is_empty() {
            let path = match d {
                DrvDiff::Differs(x) => Some(x.structure.now.path.clone()),
                DrvDiff::NamesDontMatch(s) | DrvDiff::OutputsDontMatch(s) => {
                    Some(s.now.path.clone())
                }
                _ => None,
            };
            return (if top { None } else { path }, what);
        }
        if let DrvDiff::Differs(x) = d {
            for i in &x.inputs.drvs {
                if let InputDrvDiff::One { diff, .. } = i {
                    queue.push_back((diff, false));
                }
            }
        }
    }
    (None, Vec::new())
}

/// What differs in `d` itself, not counting store paths that changed
/// because inputs did.
pub fn local_differences(d: &DrvDiff) -> Vec<String> {
    let x = match d {
        DrvDiff::Differs(x) => x,
        DrvDiff::NamesDontMatch(_) => return vec!["the derivation names differ".to_owned()],
        DrvDiff::OutputsDontMatch(_) => return vec!["the requested outputs differ".to_owned()],
        DrvDiff::Same | DrvDiff::AlreadyCompared => return vec![],
    };
    let mut what = Vec::new();
    if let Some(e) = &x.outputs.extra {
        what.push(format!(
            "outputs differ ({})",
            names_changed(e.before.keys(), e.now.keys())
        ));
    }
    for (name, _) in &x.outputs.hash_algo {
        what.push(format!("the hash algorithm of output `{name}` differs"));
    }
    if let Some(p) = &x.platform {
        what.push(format!("system differs ({} → {})", p.before, p.now));
    }
    if let Some(b) = &x.builder {
        if mask_store_hashes(&b.before) != mask_store_hashes(&b.now) {
            what.push(format!("builder differs ({} → {})", b.before, b.now));
        }
    }
    if let Some(args) = &x.args {
        let old: Vec<String> = args
            .iter()
            .filter_map(|i| match i {
                Item::Old(a) | Item::Both(a) => Some(mask_store_hashes(a)),
                Item::New(_) => None,
            })
            .collect();
        let new: Vec<String> = args
            .iter()
            .filter_map(|i| match i {
                Item::New(a) | Item::Both(a) => Some(mask_store_hashes(a)),
                Item::Old(_) => None,
            })
            .collect();
        if old != new {
            what.push("builder arguments differ".to_owned());
        }
    }
    if let Some(n) = &x.sources.extra_names {
        what.push(format!(
            "sources differ ({})",
            names_changed(n.before.iter(), n.now.iter())
        ));
    }
    for f in &x.sources.files {
        match f {
            SourceFileDiff::One { name, .. } => what.push(format!("source `{name}` differs")),
            SourceFileDiff::Some { name, .. } => {
                what.push(format!("sources named `{name}` differ"))
            }
        }
    }
    if let Some(n) = &x.inputs.extra_names {
        what.push(format!(
            "input derivations differ ({})",
            names_changed(n.before.iter(), n.now.iter())
        ));
    }
    for i in &x.inputs.drvs {
        if let InputDrvDiff::Some { name, .. } = i {
            what.push(format!("input derivations named `{name}` differ"));
        }
    }
    if let Some(EnvDiff::Differs { extra, values }) = &x.env {
        for k in extra.before.keys() {
            what.push(format!("environment variable `{k}` was removed"));
        }
        for k in extra.now.keys() {
            what.push(format!("environment variable `{k}` was added"));
        }
        for (k, diff) in values {
            let side = |keep_old: bool| -> String {
                diff.iter()
                    .filter_map(|i| match i {
                        Item::Both(t) => Some(t.as_str()),
                        Item::Old(t) if keep_old => Some(t.as_str()),
                        Item::New(t) if !keep_old => Some(t.as_str()),
                        _ => None,
                    })
                    .collect()
            };
            if mask_store_hashes(&side(true)) != mask_store_hashes(&side(false)) {
                if k == "outputHash" {
                    what.push("fixed output hash differs (`outputHash`)".to_owned());
                } else {
                    what.push(format!("environment variable `{k}` differs"));
                }
            }
        }
    }
    what
}

fn names_changed<'a>(
    before: impl Iterator<Item = &'a String>,
    now: impl Iterator<Item = &'a String>,
) -> String {
    let before: Vec<String> = before.map(|n| format!("-{n}")).collect();
    let now: Vec<String> = now.map(|n| format!("+{n}")).collect();
    before.into_iter().chain(now).collect::<Vec<_>>().join(" ")
}

/// `s` with the hash part of every store path replaced, so that values that
/// differ only in the paths of rebuilt inputs compare equal.
fn mask_store_hashes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let is_nix32 = |c: u8| c.is_ascii_digit() || (c.is_ascii_lowercase() && !b"eotu".contains(&c));
    while i < b.len() {
        // A hash part: 32 base-32 characters followed by '-', after a '/'.
        if b[i] == b'/'
            && i + 34 <= b.len()
            && b[i + 1..i + 33].iter().all(|&c| is_nix32(c))
            && b[i + 33] == b'-'
        {
            out.push_str("/<hash>-");
            i += 34;
            continue;
        }
        let ch = s[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_hash_parts_only() {
        assert_eq!(
            mask_store_hashes("/nix/store/0ijwj4k5vdyawhk12yghx3cdsic6w8ly-second x"),
            "/nix/store/<hash>-second x"
        );
        assert_eq!(mask_store_hashes("/usr/bin"), "/usr/bin");
        assert_eq!(mask_store_hashes("héllo"), "héllo");
    }
}
