//! The reference graph of every valid path, loaded in one pass over the database
//! (`ValidPaths`, `Refs`, and `DerivationOutputs` or derivers when the
//! `keep-outputs` / `keep-derivations` edges are wanted), held in flat arrays so
//! that marking and ordering millions of paths costs memory walks, not queries.

use std::collections::{HashMap, VecDeque};

use rusqlite::Connection;

/// A node index.
pub type Node = u32;

/// What a liveness edge means (for explaining why a path is alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// The source refers to the target.
    Reference,
    /// keep-derivations: the target is the source's deriver.
    Deriver,
    /// keep-outputs: the target is an output of the source derivation.
    Output,
}

/// Adjacency lists in compressed form.
#[derive(Debug, Default)]
struct Csr {
    offsets: Vec<u32>,
    targets: Vec<Node>,
}

impl Csr {
    fn build(n: usize, edges: &[(Node, Node)]) -> Self {
        let mut offsets = vec![0u32; n + 1];
        for &(a, _) in edges {
            offsets[a as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0; edges.len()];
        for &(a, b) in edges {
            targets[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
        Self { offsets, targets }
    }

    fn of(&self, n: Node) -> &[Node] {
        let n = n as usize;
        &self.targets[self.offsets[n] as usize..self.offsets[n + 1] as usize]
    }
}

/// Every valid path and the edges liveness follows.
#[derive(Debug, Default)]
pub struct Graph {
    /// Base names (`<hash>-<name>`).
    pub names: Vec<Box<str>>,
    /// `ValidPaths.id`.
    pub ids: Vec<i64>,
    pub nar_sizes: Vec<u64>,
    by_hash: HashMap<[u8; 32], Node>,
    /// References, self-references left out.
    refs: Csr,
    /// keep-derivations (path → deriver) and keep-outputs (drv → output) edges.
    extra: Csr,
    extra_kinds: Vec<EdgeKind>,
}

impl Graph {
    /// Loads the graph in one read transaction. `store_prefix` is the logical
    /// store directory followed by `/`.
    pub fn load(
        conn: &mut Connection,
        store_prefix: &str,
        keep_outputs: bool,
        keep_derivations: bool,
    ) -> rusqlite::Result<Self> {
        let tx = conn.transaction()?;
        let mut g = Graph::default();
        let mut derivers: Vec<(Node, String)> = Vec::new();
        let mut max_id = 0i64;
        {
            let sql = if keep_derivations {
                "select id, path, narSize, deriver from ValidPaths"
            } else {
                "select id, path, narSize, null from ValidPaths"
            };
            let mut stmt = tx.prepare(sql)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let path = row.get_ref(1)?.as_str()?;
                let Some(base) = path.strip_prefix(store_prefix) else {
                    continue;
                };
                let Some(hash) = hash_key(base) else {
                    continue;
                };
                let node = g.names.len() as Node;
                g.by_hash.insert(hash, node);
                g.names.push(base.into());
                g.ids.push(id);
                g.nar_sizes
                    .push(row.get::<_, Option<i64>>(2)?.unwrap_or(0).max(0) as u64);
                max_id = max_id.max(id);
                if let Some(d) = row.get_ref(3)?.as_str_or_null()? {
                    if let Some(d) = d.strip_prefix(store_prefix) {
                        if !d.is_empty() {
                            derivers.push((node, d.to_owned()));
                        }
                    }
                }
            }
        }
        let index = IdIndex::new(&g.ids, max_id);
        let mut refs = Vec::new();
        {
            let mut stmt = tx.prepare("select referrer, reference from Refs")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (Some(a), Some(b)) = (index.get(row.get(0)?), index.get(row.get(1)?)) else {
                    continue;
                };
                if a != b {
                    refs.push((a, b));
                }
            }
        }
        let mut extra = Vec::new();
        for (node, deriver) in derivers {
            if let Some(d) = g.lookup(&deriver) {
                if d != node {
                    extra.push((node, d, EdgeKind::Deriver));
                }
            }
        }
        if keep_outputs {
            let mut stmt = tx.prepare("select drv, path from DerivationOutputs")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let Some(drv) = index.get(row.get(0)?) else {
                    continue;
                };
                let out = row.get_ref(1)?.as_str()?;
                if let Some(o) = out.strip_prefix(store_prefix).and_then(|b| g.lookup(b)) {
                    if o != drv {
                        extra.push((drv, o, EdgeKind::Output));
                    }
                }
            }
        }
        tx.finish()?;
        let n = g.names.len();
        g.refs = Csr::build(n, &refs);
        extra.sort_unstable_by_key(|&(a, b, _)| (a, b));
        let pairs: Vec<(Node, Node)> = extra.iter().map(|&(a, b, _)| (a, b)).collect();
        g.extra = Csr::build(n, &pairs);
        g.extra_kinds = extra.iter().map(|&(_, _, k)| k).collect();
        Ok(g)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The node of a base name, if valid.
    pub fn lookup(&self, base: &str) -> Option<Node> {
        let node = *self.by_hash.get(&hash_key(base)?)?;
        (*self.names[node as usize] == *base).then_some(node)
    }

    /// The node with this hash part, if valid.
    pub fn lookup_hash(&self, hash_part: &str) -> Option<Node> {
        self.by_hash.get(&hash_key(hash_part)?).copied()
    }

    /// References of `n` (without itself).
    pub fn references(&self, n: Node) -> &[Node] {
        self.refs.of(n)
    }

    /// Every liveness edge out of `n`, with its kind.
    pub fn edges(&self, n: Node) -> impl Iterator<Item = (Node, EdgeKind)> + '_ {
        let start = self.extra.offsets[n as usize] as usize;
        self.refs
            .of(n)
            .iter()
            .map(|&t| (t, EdgeKind::Reference))
            .chain(
                self.extra
                    .of(n)
                    .iter()
                    .enumerate()
                    .map(move |(i, &t)| (t, self.extra_kinds[start + i])),
            )
    }

    /// Marks everything reachable from `roots` (following every liveness edge)
    /// in `alive`; returns how many nodes were newly marked.
    pub fn mark(&self, roots: impl IntoIterator<Item = Node>, alive: &mut [bool]) -> usize {
        let mut stack: Vec<Node> = Vec::new();
        let mut marked = 0;
        for r in roots {
            if !alive[r as usize] {
                alive[r as usize] = true;
                marked += 1;
                stack.push(r);
            }
            while let Some(n) = stack.pop() {
                for (t, _) in self.edges(n) {
                    if !alive[t as usize] {
                        alive[t as usize] = true;
                        marked += 1;
                        stack.push(t);
                    }
                }
            }
        }
        marked
    }

    /// Orders `dead` (a subset) so that every path comes before the paths it
    /// refers to: the order in which rows can leave the database.
    pub fn deletion_order(&self, dead: &[bool]) -> Vec<Node> {
        let n = self.len();
        let mut indegree = vec![0u32; n];
        for a in 0..n {
            if dead[a] {
                for &b in self.refs.of(a as Node) {
                    if dead[b as usize] {
                        indegree[b as usize] += 1;
                    }
                }
            }
        }
        let mut queue: VecDeque<Node> = (0..n as Node)
            .filter(|&a| dead[a as usize] && indegree[a as usize] == 0)
            .collect();
        let mut order = Vec::with_capacity(queue.len());
        while let Some(a) = queue.pop_front() {
            order.push(a);
            for &b in self.refs.of(a) {
                if dead[b as usize] {
                    indegree[b as usize] -= 1;
                    if indegree[b as usize] == 0 {
                        queue.push_back(b);
                    }
                }
            }
        }
        // A reference cycle (never made by Nix or rix): leave its members last.
        if order.len() < dead.iter().filter(|&&d| d).count() {
            let placed: std::collections::HashSet<Node> = order.iter().copied().collect();
            order.extend((0..n as Node).filter(|&a| dead[a as usize] && !placed.contains(&a)));
        }
        order
    }

    /// The liveness edges reversed: for each node, who keeps it alive and how.
    pub fn predecessors(&self) -> Vec<Vec<(Node, EdgeKind)>> {
        let mut preds = vec![Vec::new(); self.len()];
        for a in 0..self.len() as Node {
            for (b, kind) in self.edges(a) {
                preds[b as usize].push((a, kind));
            }
        }
        preds
    }
}

/// The 32 hash characters of a base name (or of a bare hash part).
pub fn hash_key(base: &str) -> Option<[u8; 32]> {
    base.as_bytes().get(..32)?.try_into().ok()
}

/// `ValidPaths.id` → node: a dense table when ids are compact, else a map.
enum IdIndex {
    Dense(Vec<u32>),
    Sparse(HashMap<i64, Node>),
}

impl IdIndex {
    fn new(ids: &[i64], max_id: i64) -> Self {
        if max_id >= 0 && (max_id as usize) <= ids.len() * 4 + 1024 {
            let mut v = vec![u32::MAX; max_id as usize + 1];
            for (n, &id) in ids.iter().enumerate() {
                if id >= 0 {
                    v[id as usize] = n as u32;
                }
            }
            Self::Dense(v)
        } else {
            Self::Sparse(
                ids.iter()
                    .enumerate()
                    .map(|(n, &id)| (id, n as Node))
                    .collect(),
            )
        }
    }

    fn get(&self, id: i64) -> Option<Node> {
        match self {
            Self::Dense(v) => usize::try_from(id)
                .ok()
                .and_then(|i| v.get(i))
                .copied()
                .filter(|&n| n != u32::MAX),
            Self::Sparse(m) => m.get(&id).copied(),
        }
    }
}
