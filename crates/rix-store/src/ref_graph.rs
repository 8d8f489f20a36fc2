//! A closure's reference graph held by index: the valid paths of a closure, each
//! with the paths it refers to, and the dependencies-first order in which Nix
//! lists them (`nix-store -qR`, exports, copies).
//!
//! The database gives the graph as rows of integer ids ([`crate::db::Db::reference_graph`]);
//! this keeps it as vectors indexed by position so that sorting thousands of
//! paths costs a few array reads per edge rather than map lookups keyed by path.

use std::collections::BTreeSet;

use rix_formats::StorePath;

/// The paths of a closure (sorted) and, for each, the positions of its references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefGraph {
    paths: Vec<StorePath>,
    refs: Vec<Vec<u32>>,
}

impl RefGraph {
    /// Builds the graph from nodes `(id, path)` and edges `(referrer id,
    /// reference id)` as the database has them. Nodes may repeat; edges whose ends
    /// are not both nodes are dropped.
    pub fn from_ids(mut nodes: Vec<(i64, StorePath)>, edges: &[(i64, i64)]) -> Self {
        nodes.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        nodes.dedup_by(|a, b| a.0 == b.0);
        // Position of each id, for the edges: ids sorted, binary search.
        let mut by_id: Vec<(i64, u32)> = nodes
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i as u32))
            .collect();
        by_id.sort_unstable();
        let pos = |id: i64| {
            by_id
                .binary_search_by_key(&id, |&(k, _)| k)
                .ok()
                .map(|i| by_id[i].1)
        };
        let mut refs = vec![Vec::new(); nodes.len()];
        for &(from, to) in edges {
            if let (Some(from), Some(to)) = (pos(from), pos(to)) {
                refs[from as usize].push(to);
            }
        }
        for r in &mut refs {
            r.sort_unstable();
            r.dedup();
        }
        Self {
            paths: nodes.into_iter().map(|(_, p)| p).collect(),
            refs,
        }
    }

    /// The paths, in path order.
    pub fn paths(&self) -> &[StorePath] {
        &self.paths
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn contains(&self, path: &StorePath) -> bool {
        self.paths.binary_search(path).is_ok()
    }

    /// The references of `path` within the graph, or `None` if it is not in it.
    pub fn references(&self, path: &StorePath) -> Option<impl Iterator<Item = &StorePath>> {
        let i = self.paths.binary_search(path).ok()?;
        Some(self.refs[i].iter().map(|&r| &self.paths[r as usize]))
    }

    /// The paths as a set.
    pub fn into_set(self) -> BTreeSet<StorePath> {
        // Already sorted and distinct: built in linear time.
        self.paths.into_iter().collect()
    }

    /// The paths so that each comes after every path it refers to (self-references
    /// aside), in the order Nix lists a closure: a depth-first walk over the paths
    /// and their references in path order.
    pub fn topo_order(&self) -> Vec<&StorePath> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut state = vec![NEW; self.paths.len()];
        let mut out = Vec::with_capacity(self.paths.len());
        // (node, index of the next reference to visit)
        let mut stack: Vec<(u32, usize)> = Vec::new();
        for root in 0..self.paths.len() as u32 {
            if state[root as usize] != NEW {
                continue;
            }
            state[root as usize] = OPEN;
            stack.push((root, 0));
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let refs = &self.refs[node as usize];
                if let Some(&r) = refs.get(*next) {
                    *next += 1;
                    // OPEN means a cycle through `r` (only self-references occur
                    // in a store): it is skipped, as Nix does.
                    if state[r as usize] == NEW {
                        state[r as usize] = OPEN;
                        stack.push((r, 0));
                    }
                } else {
                    state[node as usize] = DONE;
                    out.push(&self.paths[node as usize]);
                    stack.pop();
                }
            }
        }
        out
    }
}

/// `paths` sorted so that every path comes after the paths it refers to, in
/// Nix's order; `refs[i]` are the references of the `i`-th of `paths`
/// (references outside `paths` are ignored).
pub fn topo_sort_subset(
    paths: &BTreeSet<StorePath>,
    refs: &[&BTreeSet<StorePath>],
) -> Vec<StorePath> {
    // Positions in `paths` (sorted) stand in for database ids.
    let sorted: Vec<&StorePath> = paths.iter().collect();
    let mut edges = Vec::new();
    for (i, refs) in refs.iter().enumerate() {
        edges.extend(
            refs.iter()
                .filter_map(|r| sorted.binary_search(&r).ok())
                .map(|j| (i as i64, j as i64)),
        );
    }
    let nodes = paths
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, p)| (i as i64, p))
        .collect();
    RefGraph::from_ids(nodes, &edges)
        .topo_order()
        .into_iter()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, hash_char: char) -> StorePath {
        StorePath::from_base_name(&format!("{}-{name}", hash_char.to_string().repeat(32))).unwrap()
    }

    #[test]
    fn dependencies_come_first_and_ties_follow_path_order() {
        // d -> b, c; b -> a; c -> a; a -> a (self); e isolated.
        let (a, b, c, d, e) = (
            p("a", 'a'),
            p("b", 'b'),
            p("c", 'c'),
            p("d", 'd'),
            p("e", '0'),
        );
        let nodes = vec![
            (4, d.clone()),
            (2, b.clone()),
            (1, a.clone()),
            (3, c.clone()),
            (5, e.clone()),
            (2, b.clone()), // repeated, as from two roots
        ];
        let edges = [(4, 2), (4, 3), (2, 1), (3, 1), (1, 1), (4, 99)];
        let g = RefGraph::from_ids(nodes, &edges);
        assert_eq!(g.len(), 5);
        let order: Vec<&StorePath> = g.topo_order();
        assert_eq!(order, [&e, &a, &b, &c, &d]);
        assert_eq!(g.references(&d).unwrap().collect::<Vec<_>>(), [&b, &c]);
        assert!(g.references(&p("x", 'x')).is_none());
        assert!(g.contains(&a) && !g.contains(&p("x", 'x')));
    }
}
