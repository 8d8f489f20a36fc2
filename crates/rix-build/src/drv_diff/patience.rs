//! Patience diff of token sequences, with the behaviour of the Haskell
//! `patience` package that nix-diff uses (`Patience.diff`): common
//! elements at both ends are matched first; then the elements that occur
//! exactly once on each side are matched along their longest increasing
//! sequence, and the gaps between them are diffed the same way; a gap with
//! no such element is all old elements, then all new ones (no fallback to
//! another algorithm). nix-diff's output depends on that last rule (a list of
//! paths separated by spaces that all changed shows as one old run and one new
//! run), so `similar`'s patience diff, which falls back to Myers inside gaps,
//! would not give the same text.

use std::collections::HashMap;
use std::hash::Hash;

/// One element of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<T> {
    /// Only in the old sequence.
    Old(T),
    /// Only in the new sequence.
    New(T),
    /// In both (the old one is kept).
    Both(T),
}

/// Diffs `old` against `new`.
pub fn diff<T: Clone + Eq + Hash>(old: &[T], new: &[T]) -> Vec<Item<T>> {
    let mut out = Vec::with_capacity(old.len().max(new.len()));
    go(old, new, &mut out);
    out
}

fn go<T: Clone + Eq + Hash>(mut old: &[T], mut new: &[T], out: &mut Vec<Item<T>>) {
    // Common prefix.
    while let (Some(a), Some(b)) = (old.first(), new.first()) {
        if a != b {
            break;
        }
        out.push(Item::Both(a.clone()));
        old = &old[1..];
        new = &new[1..];
    }
    // Common suffix, emitted after the middle.
    let mut suffix = 0;
    while suffix < old.len()
        && suffix < new.len()
        && old[old.len() - 1 - suffix] == new[new.len() - 1 - suffix]
    {
        suffix += 1;
    }
    let (mid_old, mid_new) = (&old[..old.len() - suffix], &new[..new.len() - suffix]);
    middle(mid_old, mid_new, out);
    out.extend(old[old.len() - suffix..].iter().cloned().map(Item::Both));
}

fn middle<T: Clone + Eq + Hash>(old: &[T], new: &[T], out: &mut Vec<Item<T>>) {
    if old.is_empty() || new.is_empty() {
        out.extend(old.iter().cloned().map(Item::Old));
        out.extend(new.iter().cloned().map(Item::New));
        return;
    }
    let anchors = unique_lcs(old, new);
    if anchors.is_empty() {
        out.extend(old.iter().cloned().map(Item::Old));
        out.extend(new.iter().cloned().map(Item::New));
        return;
    }
    let (mut i, mut j) = (0, 0);
    for (ai, aj) in anchors {
        go(&old[i..ai], &new[j..aj], out);
        out.push(Item::Both(old[ai].clone()));
        i = ai + 1;
        j = aj + 1;
    }
    go(&old[i..], &new[j..], out);
}

/// The positions `(in old, in new)` of elements occurring exactly once in
/// each, along the longest sequence increasing in both (patience sorting).
fn unique_lcs<T: Eq + Hash>(old: &[T], new: &[T]) -> Vec<(usize, usize)> {
    // element -> (count in old, index in old, count in new, index in new)
    let mut seen: HashMap<&T, (u32, usize, u32, usize)> = HashMap::new();
    for (i, x) in old.iter().enumerate() {
        let e = seen.entry(x).or_insert((0, i, 0, 0));
        e.0 += 1;
    }
    for (j, y) in new.iter().enumerate() {
        if let Some(e) = seen.get_mut(y) {
            e.2 += 1;
            e.3 = j;
        }
    }
    let mut pairs: Vec<(usize, usize)> = seen
        .values()
        .filter(|e| e.0 == 1 && e.2 == 1)
        .map(|e| (e.1, e.3))
        .collect();
    pairs.sort_unstable();
    // Longest increasing subsequence of the `new` positions.
    let mut tails: Vec<usize> = Vec::new(); // index into pairs
    let mut prev: Vec<Option<usize>> = vec![None; pairs.len()];
    for (k, &(_, j)) in pairs.iter().enumerate() {
        let at = tails.partition_point(|&t| pairs[t].1 < j);
        if at > 0 {
            prev[k] = Some(tails[at - 1]);
        }
        if at == tails.len() {
            tails.push(k);
        } else {
            tails[at] = k;
        }
    }
    let mut lcs = Vec::with_capacity(tails.len());
    let mut k = tails.last().copied();
    while let Some(i) = k {
        lcs.push(pairs[i]);
        k = prev[i];
    }
    lcs.reverse();
    lcs
}

#[cfg(test)]
mod tests {
    use super::*;
    use Item::*;

    fn d<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Item<&'a str>> {
        diff(a, b)
    }

    #[test]
    fn unique_separator_anchors() {
        assert_eq!(
            d(&["a1", " ", "b1"], &["a2", " ", "b2"]),
            vec![Old("a1"), New("a2"), Both(" "), Old("b1"), New("b2")]
        );
    }

    #[test]
    fn no_unique_common_element_is_all_old_then_all_new() {
        assert_eq!(
            d(&["a", " ", "b", " ", "c"], &["x", " ", "y", " ", "z"]),
            vec![
                Old("a"),
                Old(" "),
                Old("b"),
                Old(" "),
                Old("c"),
                New("x"),
                New(" "),
                New("y"),
                New(" "),
                New("z")
            ]
        );
    }

    #[test]
    fn ends_and_middle() {
        assert_eq!(
            d(&["one", "two", "three"], &["one", "three", "four"]),
            vec![Both("one"), Old("two"), Both("three"), New("four")]
        );
        assert_eq!(d(&[], &["x"]), vec![New("x")]);
        assert_eq!(d(&["x"], &[]), vec![Old("x")]);
        assert!(d(&[], &[]).is_empty());
    }

    #[test]
    fn crossing_anchors_keep_the_longest_increasing_run() {
        // b and c cross: only one of them can be kept.
        let r = d(&["a", "b", "c", "z"], &["a", "c", "b", "z"]);
        assert_eq!(r.first(), Some(&Both("a")));
        assert_eq!(r.last(), Some(&Both("z")));
        assert_eq!(r.iter().filter(|i| matches!(i, Both(_))).count(), 3);
    }
}
