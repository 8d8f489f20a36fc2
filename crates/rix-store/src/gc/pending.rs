//! The collector's journal of deletions in progress, `<state>/gc-pending`.
//!
//! The collector removes a path's row before its files ("invalidate before
//! delete"), so that a valid path always has complete files. A collector
//! killed between the two leaves files without rows, which would look like
//! garbage of unknown origin to `rix store verify`. So before each batch's rows
//! go, the batch's names are appended here and synced: an entry of the store
//! directory that is not valid and is named here is a deletion the collector
//! had committed to, which the next collection finishes (it deletes every
//! invalid entry; so does `rix store verify --repair`, through
//! [`super::finish_pending_deletions`]), and which the verifier reports as such
//! instead of as an inconsistency. At the end of a collection the journal keeps only the names
//! whose entries are still there and not valid (none, usually: it is removed).
//!
//! Nix knows nothing of this file (it lives in the state directory, which Nix
//! does not scan); a Nix collection deletes the leftovers as any garbage, and
//! the names left in the journal are then dropped by rix's next collection.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::layout::StoreLayout;

/// `<state>/gc-pending`.
pub fn journal_path(layout: &StoreLayout) -> PathBuf {
    layout.state_dir.join("gc-pending")
}

/// The journal, open for appending (by the collector, under the GC lock).
pub struct Journal {
    path: PathBuf,
    file: Option<File>,
}

impl Journal {
    /// Opens lazily: a collection that deletes no valid path writes nothing.
    pub fn new(layout: &StoreLayout) -> Self {
        Self {
            path: journal_path(layout),
            file: None,
        }
    }

    /// Appends `names` (base names of store directory entries) and syncs.
    pub fn record<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let annotate = |e: io::Error| crate::gc_lock::annotate(e, &self.path);
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(annotate)?;
            self.file = Some(f);
        }
        let file = self.file.as_mut().expect("opened above");
        let mut text = String::new();
        for n in names {
            text.push_str(n);
            text.push('\n');
        }
        file.write_all(text.as_bytes()).map_err(annotate)?;
        file.sync_data().map_err(annotate)
    }
}

/// The names in the journal (none when there is no journal).
pub fn read_journal(layout: &StoreLayout) -> io::Result<BTreeSet<String>> {
    let path = journal_path(layout);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(crate::gc_lock::annotate(e, &path)),
    }
}

/// Rewrites the journal with the names for which `pending` holds (entries still
/// there and not valid), atomically; removes it when none is left.
pub fn prune_journal(layout: &StoreLayout, pending: impl Fn(&str) -> bool) -> io::Result<()> {
    let path = journal_path(layout);
    let left: Vec<String> = read_journal(layout)?
        .into_iter()
        .filter(|n| pending(n))
        .collect();
    if left.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(crate::gc_lock::annotate(e, &path))
            }
            _ => Ok(()),
        };
    }
    let tmp = path.with_extension("tmp");
    let mut text = left.join("\n");
    text.push('\n');
    std::fs::write(&tmp, text).map_err(|e| crate::gc_lock::annotate(e, &tmp))?;
    std::fs::rename(&tmp, &path).map_err(|e| crate::gc_lock::annotate(e, &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reads_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StoreLayout::from_url(&format!(
            "local?store={0}/store&state={0}/state",
            dir.path().display()
        ))
        .unwrap();
        std::fs::create_dir_all(&layout.state_dir).unwrap();
        assert!(read_journal(&layout).unwrap().is_empty());
        let mut j = Journal::new(&layout);
        j.record(["a", "b"]).unwrap();
        j.record(["c"]).unwrap();
        let all: Vec<String> = read_journal(&layout).unwrap().into_iter().collect();
        assert_eq!(all, ["a", "b", "c"]);
        prune_journal(&layout, |n| n == "b").unwrap();
        let left: Vec<String> = read_journal(&layout).unwrap().into_iter().collect();
        assert_eq!(left, ["b"]);
        prune_journal(&layout, |_| false).unwrap();
        assert!(!journal_path(&layout).exists());
    }
}
