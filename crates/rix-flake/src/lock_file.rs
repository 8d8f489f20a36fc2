//! `flake.lock`: the graph of locked inputs (version 7), read and written
//! byte for byte as Nix 2.26 does (`lockfile.cc`): nodes named after the
//! input that first reaches them (`nixpkgs`, `nixpkgs_2`, ...), `follows`
//! edges as arrays of input names, `locked`/`original` attributes, `flake =
//! false`, `parent` for relative paths; keys sorted, two-space indentation
//! (nlohmann's `dump(2)`), and a final newline.

use std::collections::{BTreeMap, HashMap, HashSet};

use rix_fetch::FetchSettings;
use rix_formats::flake_ref::{AttrValue, FlakeRef};
use serde_json::{Map, Value as Json};

use crate::error::{FlakeError, Result};
use crate::reference;

/// A path of input names from the root (`["b", "c"]` is `b/c`).
pub type InputPath = Vec<String>;

/// Index of a node in [`LockFile::nodes`]; the root is [`ROOT`].
pub type NodeId = usize;

pub const ROOT: NodeId = 0;

/// An edge from a node to one of its inputs: a node, or a `follows` path
/// from the root (Nix's `Node::Edge`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edge {
    Node(NodeId),
    Follows(InputPath),
}

/// What a non-root node records (Nix's `LockedNode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// What the input was fetched as (final: `__final` set).
    pub locked: FlakeRef,
    /// What the flake asked for.
    pub original: FlakeRef,
    pub is_flake: bool,
    /// The node relative to which a relative `path:` input is interpreted.
    pub parent: Option<InputPath>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub inputs: BTreeMap<String, Edge>,
    /// `None` for the root.
    pub locked: Option<Locked>,
}

/// A lock file: its nodes, the root first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockFile {
    pub nodes: Vec<Node>,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            nodes: vec![Node::default()],
        }
    }
}

fn ref_from_node(json: &Json, attr: &str, info: Option<&str>) -> Result<FlakeRef> {
    let Some(v) = json.get(attr) else {
        return Err(FlakeError::msg(format!(
            "attribute '{attr}' missing in lock file"
        )));
    };
    let mut attrs = rix_fetch::input::json_to_attrs(v)?;
    if let Some(extra) = info.and_then(|i| json.get(i)) {
        attrs.extend(rix_fetch::input::json_to_attrs(extra)?);
    }
    Ok(FlakeRef::from_attrs(&attrs)?)
}

impl Locked {
    /// `LockedNode(json)`: the entry must be locked (or relative); it is final.
    fn from_json(json: &Json, settings: &FetchSettings) -> Result<Locked> {
        let mut locked = ref_from_node(json, "locked", Some("info"))?;
        let original = ref_from_node(json, "original", None)?;
        let is_flake = match json.get("flake") {
            None => true,
            Some(Json::Bool(b)) => *b,
            Some(_) => return Err(FlakeError::msg("type must be boolean, but is not")),
        };
        let parent = match json.get("parent") {
            None => None,
            Some(p) => Some(json_input_path(p)?),
        };
        let input = reference::to_input(&locked)?;
        if !input.is_considered_locked(settings) && reference::relative_path(&locked).is_none() {
            return Err(FlakeError::msg(format!(
                "Lock file contains unlocked input '{}'. Use '--allow-dirty-locks' to accept this lock file.",
                rix_fetch::input::attrs_to_json(&locked.attrs)
            )));
        }
        locked.attrs.insert("__final".into(), AttrValue::Bool(true));
        Ok(Locked {
            locked,
            original,
            is_flake,
            parent,
        })
    }
}

fn json_input_path(v: &Json) -> Result<InputPath> {
    let Some(items) = v.as_array() else {
        return Err(FlakeError::msg("type must be array, but is not"));
    };
    items
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| FlakeError::msg("type must be string, but is not"))
        })
        .collect()
}

impl LockFile {
    /// Parses a lock file (versions 5 to 7), as `LockFile::LockFile`.
    /// `path` names it in errors.
    pub fn parse(contents: &str, path: &str, settings: &FetchSettings) -> Result<LockFile> {
        let json: Json = serde_json::from_str(contents)
            .map_err(|e| FlakeError::msg(format!("[json.exception.parse_error] {e}")))?;
        let version = json.get("version").and_then(Json::as_i64).unwrap_or(0);
        if !(5..=7).contains(&version) {
            return Err(FlakeError::msg(format!(
                "lock file '{path}' has unsupported version {version}"
            )));
        }
        let root_key = json
            .get("root")
            .and_then(Json::as_str)
            .ok_or_else(|| FlakeError::msg("lock file has no root node"))?;
        let nodes_json = json
            .get("nodes")
            .and_then(Json::as_object)
            .ok_or_else(|| FlakeError::msg("lock file has no nodes"))?;
        let mut lf = LockFile::default();
        let mut by_key: HashMap<String, NodeId> = HashMap::new();
        by_key.insert(root_key.to_owned(), ROOT);
        let root_json = nodes_json.get(root_key).ok_or_else(|| {
            FlakeError::msg(format!("lock file references missing node '{root_key}'"))
        })?;
        // Depth first, as Nix's `getInputs`, without recursion on the stack:
        // (node, its JSON).
        let mut todo: Vec<(NodeId, &Json)> = vec![(ROOT, root_json)];
        while let Some((id, node_json)) = todo.pop() {
            let Some(inputs) = node_json.get("inputs").and_then(Json::as_object) else {
                continue;
            };
            for (name, v) in inputs {
                if v.is_array() {
                    let path = json_input_path(v)?;
                    lf.nodes[id]
                        .inputs
                        .insert(name.clone(), Edge::Follows(path));
                    continue;
                }
                let key = v
                    .as_str()
                    .ok_or_else(|| FlakeError::msg("type must be string, but is not"))?;
                let child = match by_key.get(key) {
                    Some(&c) => c,
                    None => {
                        let child_json = nodes_json.get(key).ok_or_else(|| {
                            FlakeError::msg(format!("lock file references missing node '{key}'"))
                        })?;
                        let locked = Locked::from_json(child_json, settings)?;
                        lf.nodes.push(Node {
                            inputs: BTreeMap::new(),
                            locked: Some(locked),
                        });
                        let c = lf.nodes.len() - 1;
                        by_key.insert(key.to_owned(), c);
                        todo.push((c, child_json));
                        c
                    }
                };
                if child == ROOT {
                    return Err(FlakeError::msg("lock file contains cycle to root node"));
                }
                lf.nodes[id].inputs.insert(name.clone(), Edge::Node(child));
            }
        }
        Ok(lf)
    }

    /// Adds a node, returning its id.
    pub fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The JSON form and each reachable node's key (`LockFile::toJSON`).
    pub fn to_json(&self) -> (Json, HashMap<NodeId, String>) {
        let mut nodes: BTreeMap<String, Json> = BTreeMap::new();
        let mut keys: HashMap<NodeId, String> = HashMap::new();
        let mut used: HashSet<String> = HashSet::new();
        let root = self.dump_node("root".into(), ROOT, &mut nodes, &mut keys, &mut used);
        let mut top = Map::new();
        top.insert("nodes".into(), Json::Object(nodes.into_iter().collect()));
        top.insert("root".into(), Json::String(root));
        top.insert("version".into(), Json::from(7));
        (Json::Object(top), keys)
    }

    fn dump_node(
        &self,
        key: String,
        id: NodeId,
        nodes: &mut BTreeMap<String, Json>,
        keys: &mut HashMap<NodeId, String>,
        used: &mut HashSet<String>,
    ) -> String {
        if let Some(k) = keys.get(&id) {
            return k.clone();
        }
        let mut key = key;
        if !used.insert(key.clone()) {
            for n in 2.. {
                let k = format!("{key}_{n}");
                if used.insert(k.clone()) {
                    key = k;
                    break;
                }
            }
        }
        keys.insert(id, key.clone());
        let node = &self.nodes[id];
        let mut n: BTreeMap<String, Json> = BTreeMap::new();
        if !node.inputs.is_empty() {
            let mut inputs = Map::new();
            for (name, edge) in &node.inputs {
                let v = match edge {
                    Edge::Node(child) => {
                        Json::String(self.dump_node(name.clone(), *child, nodes, keys, used))
                    }
                    Edge::Follows(path) => {
                        Json::Array(path.iter().cloned().map(Json::String).collect())
                    }
                };
                inputs.insert(name.clone(), v);
            }
            n.insert("inputs".into(), Json::Object(inputs));
        }
        if let Some(l) = &node.locked {
            n.insert("original".into(), attrs_json(&l.original.to_attrs()));
            let mut locked = l.locked.to_attrs();
            locked.remove("__final");
            n.insert("locked".into(), attrs_json(&locked));
            if !l.is_flake {
                n.insert("flake".into(), Json::Bool(false));
            }
            if let Some(p) = &l.parent {
                n.insert(
                    "parent".into(),
                    Json::Array(p.iter().cloned().map(Json::String).collect()),
                );
            }
        }
        nodes.insert(key.clone(), Json::Object(n.into_iter().collect()));
        key
    }

    /// The file's text: `dump(2)` and a newline, as `nix flake lock` writes it.
    pub fn to_text(&self) -> String {
        format!("{}\n", pretty(&self.to_json().0))
    }

    /// `Node` reached by following `path` from the root, through `follows`
    /// (`LockFile::findInput`); an error on a cycle of follows.
    pub fn find_input(&self, path: &[String]) -> Result<Option<NodeId>> {
        let mut visited: Vec<InputPath> = Vec::new();
        self.do_find(path, &mut visited)
    }

    fn do_find(&self, path: &[String], visited: &mut Vec<InputPath>) -> Result<Option<NodeId>> {
        if let Some(i) = visited.iter().position(|p| p == path) {
            let mut cycle: Vec<String> = visited[i..].iter().map(|p| p.join("/")).collect();
            cycle.push(path.join("/"));
            return Err(FlakeError::msg(format!(
                "follow cycle detected: [{}]",
                cycle.join(" -> ")
            )));
        }
        visited.push(path.to_vec());
        let mut pos = ROOT;
        for elem in path {
            match self.nodes[pos].inputs.get(elem) {
                Some(Edge::Node(n)) => pos = *n,
                Some(Edge::Follows(f)) => match self.do_find(&f.clone(), visited)? {
                    Some(n) => pos = n,
                    None => return Ok(None),
                },
                None => return Ok(None),
            }
        }
        Ok(Some(pos))
    }

    /// Every input path and its edge, nodes visited once (`getAllInputs`).
    pub fn all_inputs(&self) -> BTreeMap<InputPath, Edge> {
        let mut done = HashSet::new();
        let mut res = BTreeMap::new();
        self.collect_inputs(&[], ROOT, &mut done, &mut res);
        res
    }

    fn collect_inputs(
        &self,
        prefix: &[String],
        id: NodeId,
        done: &mut HashSet<NodeId>,
        res: &mut BTreeMap<InputPath, Edge>,
    ) {
        if !done.insert(id) {
            return;
        }
        for (name, edge) in &self.nodes[id].inputs {
            let mut p = prefix.to_vec();
            p.push(name.clone());
            res.entry(p.clone()).or_insert_with(|| edge.clone());
            if let Edge::Node(c) = edge {
                self.collect_inputs(&p, *c, done, res);
            }
        }
    }

    /// Every `follows` names an input that exists (`LockFile::check`).
    pub fn check(&self) -> Result<()> {
        for (path, edge) in self.all_inputs() {
            if let Edge::Follows(f) = edge {
                if !f.is_empty() && self.find_input(&f)?.is_none() {
                    return Err(FlakeError::msg(format!(
                        "input '{}' follows a non-existent input '{}'",
                        path.join("/"),
                        f.join("/")
                    )));
                }
            }
        }
        Ok(())
    }

    /// A reachable node that is not locked (or not final), if any
    /// (`LockFile::isUnlocked`).
    pub fn unlocked(&self, settings: &FetchSettings) -> Option<FlakeRef> {
        let mut seen = HashSet::new();
        let mut todo = vec![ROOT];
        let mut order = Vec::new();
        while let Some(n) = todo.pop() {
            if !seen.insert(n) {
                continue;
            }
            order.push(n);
            for e in self.nodes[n].inputs.values() {
                if let Edge::Node(c) = e {
                    todo.push(*c);
                }
            }
        }
        order.sort();
        for n in order {
            let Some(l) = &self.nodes[n].locked else {
                continue;
            };
            let Ok(input) = reference::to_input(&l.locked) else {
                return Some(l.locked.clone());
            };
            if (!input.is_considered_locked(settings) || !input.is_final())
                && reference::relative_path(&l.locked).is_none()
            {
                return Some(l.locked.clone());
            }
        }
        None
    }

    /// What changed from `old` to `new`, as Nix prints it when it writes a
    /// lock file (`LockFile::diff`).
    pub fn diff(old: &LockFile, new: &LockFile) -> String {
        let a = old.all_inputs();
        let b = new.all_inputs();
        let mut i = a.iter().peekable();
        let mut j = b.iter().peekable();
        let mut res = String::new();
        loop {
            match (i.peek(), j.peek()) {
                (None, None) => break,
                (ip, Some((jk, jv))) if ip.is_none_or_gt(jk) => {
                    res += &format!(
                        "• \x1b[32;1mAdded input '{}':\x1b[0m\n    {}\n",
                        jk.join("/"),
                        new.describe_edge(jv)
                    );
                    j.next();
                }
                (Some((ik, _)), jp) if jp.is_none_or_gt(ik) => {
                    res += &format!("• \x1b[31;1mRemoved input '{}'\x1b[0m\n", ik.join("/"));
                    i.next();
                }
                (Some((ik, iv)), Some((_, jv))) => {
                    if !old.edge_equals(iv, new, jv) {
                        res += &format!(
                            "• \x1b[1mUpdated input '{}':\x1b[0m\n    {}\n  → {}\n",
                            ik.join("/"),
                            old.describe_edge(iv),
                            new.describe_edge(jv)
                        );
                    }
                    i.next();
                    j.next();
                }
                _ => unreachable!("covered above"),
            }
        }
        res
    }

    fn edge_equals(&self, a: &Edge, other: &LockFile, b: &Edge) -> bool {
        match (a, b) {
            (Edge::Node(x), Edge::Node(y)) => {
                let lx = self.nodes[*x].locked.as_ref().map(|l| &l.locked);
                let ly = other.nodes[*y].locked.as_ref().map(|l| &l.locked);
                lx == ly
            }
            (Edge::Follows(x), Edge::Follows(y)) => x == y,
            _ => false,
        }
    }

    /// An edge as the diff shows it: `'URL' (DATE)` or `follows 'PATH'`.
    pub fn describe_edge(&self, e: &Edge) -> String {
        match e {
            Edge::Node(n) => match &self.nodes[*n].locked {
                Some(l) => describe(&l.locked),
                None => "'root'".into(),
            },
            Edge::Follows(p) => format!("follows '{}'", p.join("/")),
        }
    }
}

/// `'URL'` and, when known, ` (YYYY-MM-DD)` of its last modification.
pub fn describe(r: &FlakeRef) -> String {
    let mut s = format!("'{}'", reference::to_string(r));
    if let Some(AttrValue::Int(t)) = r.attrs.get("lastModified") {
        let d = rix_eval::builtins::utc_timestamp(*t as i64);
        s += &format!(" ({}-{}-{})", &d[0..4], &d[4..6], &d[6..8]);
    }
    s
}

/// Comparison of an optional key with a present one, for the diff's merge.
trait NoneOrGt {
    fn is_none_or_gt(&self, other: &InputPath) -> bool;
}

impl NoneOrGt for Option<&(&InputPath, &Edge)> {
    fn is_none_or_gt(&self, other: &InputPath) -> bool {
        match self {
            None => true,
            Some((k, _)) => *k > other,
        }
    }
}

/// Input attributes as a JSON object (`attrsToJSON`), keys sorted.
pub fn attrs_json(attrs: &rix_formats::flake_ref::Attrs) -> Json {
    Json::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), rix_fetch::input::attr_to_json(v)))
            .collect(),
    )
}

/// nlohmann's `dump(2)`: two-space indentation, `": "` after keys, empty
/// containers as `{}` and `[]`, non-ASCII text as it is.
pub fn pretty(v: &Json) -> String {
    serde_json::to_string_pretty(v).expect("JSON values print")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
  "nodes": {
    "b": {
      "inputs": {
        "c": [
          "c"
        ]
      },
      "locked": {
        "lastModified": 1796667534,
        "narHash": "sha256-YPQItph47A2BLZbeZqLdsVTGetVuNvi9/+TlOxcQVMs=",
        "path": "/tmp/fl/b",
        "type": "path"
      },
      "original": {
        "path": "/tmp/fl/b",
        "type": "path"
      }
    },
    "c": {
      "locked": {
        "lastModified": 1796667534,
        "narHash": "sha256-SckgXEpQ+oZdDjdtJvsSWtK17zkgwPPgpiDcnihmPhY=",
        "path": "/tmp/fl/c",
        "type": "path"
      },
      "original": {
        "path": "/tmp/fl/c",
        "type": "path"
      }
    },
    "d": {
      "flake": false,
      "locked": {
        "lastModified": 1796667534,
        "narHash": "sha256-SckgXEpQ+oZdDjdtJvsSWtK17zkgwPPgpiDcnihmPhY=",
        "path": "/tmp/fl/c",
        "type": "path"
      },
      "original": {
        "path": "/tmp/fl/c",
        "type": "path"
      }
    },
    "root": {
      "inputs": {
        "b": "b",
        "c": "c",
        "d": "d"
      }
    }
  },
  "root": "root",
  "version": 7
}
"#;

    /// A lock file Nix 2.26 wrote (`nix flake lock`) reads and prints back
    /// byte for byte.
    #[test]
    fn round_trips_nix_output() {
        let lf = LockFile::parse(SAMPLE, "flake.lock", &FetchSettings::default()).unwrap();
        assert_eq!(lf.to_text(), SAMPLE);
        assert_eq!(
            lf.find_input(&["b".into(), "c".into()]).unwrap(),
            lf.find_input(&["c".into()]).unwrap()
        );
        lf.check().unwrap();
        assert!(lf.unlocked(&FetchSettings::default()).is_none());
    }

    #[test]
    fn empty_lock_file() {
        assert_eq!(
            LockFile::default().to_text(),
            "{\n  \"nodes\": {\n    \"root\": {}\n  },\n  \"root\": \"root\",\n  \"version\": 7\n}\n"
        );
    }

    #[test]
    fn rejects_bad_versions_and_unlocked_inputs() {
        let s = FetchSettings::default();
        let e =
            LockFile::parse(r#"{"version": 4, "root": "r", "nodes": {}}"#, "x", &s).unwrap_err();
        assert_eq!(e.to_string(), "lock file 'x' has unsupported version 4");
        let unlocked = r#"{"version":7,"root":"root","nodes":{"root":{"inputs":{"a":"a"}},
            "a":{"locked":{"type":"path","path":"/x"},"original":{"type":"path","path":"/x"}}}}"#;
        let e = LockFile::parse(unlocked, "x", &s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Lock file contains unlocked input '{\"path\":\"/x\",\"type\":\"path\"}'. Use '--allow-dirty-locks' to accept this lock file."
        );
        let missing = r#"{"version":7,"root":"root","nodes":{"root":{"inputs":{"a":"zz"}}}}"#;
        let e = LockFile::parse(missing, "x", &s).unwrap_err();
        assert_eq!(e.to_string(), "lock file references missing node 'zz'");
    }

    #[test]
    fn follow_cycles_are_errors() {
        let mut lf = LockFile::default();
        lf.nodes[ROOT]
            .inputs
            .insert("a".into(), Edge::Follows(vec!["b".into()]));
        lf.nodes[ROOT]
            .inputs
            .insert("b".into(), Edge::Follows(vec!["a".into()]));
        let e = lf.find_input(&["a".into()]).unwrap_err();
        assert_eq!(e.to_string(), "follow cycle detected: [a -> b -> a]");
    }
}
