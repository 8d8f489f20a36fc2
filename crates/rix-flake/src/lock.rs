//! Locking a flake: computing its lock file from `flake.nix` and the old
//! `flake.lock` (keeping what did not change, fetching what is new),
//! `follows`, overrides (`inputs.a.inputs.b = ...` and `--override-input`),
//! `--update-input`, `--recreate-lock-file`, and writing the file back when
//! allowed. Mirrors `lockFlake` (and its `computeLocks`) in Nix 2.26's
//! `libflake/flake.cc`, step for step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use rix_eval::source::Pos;
use rix_eval::Evaluator;
use rix_formats::flake_ref::{AttrValue, FlakeRef, InputType};

use crate::error::{FlakeError, Result};
use crate::flake::{read_flake, Flake, FlakeInput, FlakeInputs};
use crate::lock_file::{Edge, InputPath, LockFile, Locked, Node, NodeId, ROOT};
use crate::reference::{self, warn};
use crate::registry;
use crate::FlakeSettings;

/// How to lock (Nix's `LockFlags`).
#[derive(Clone, Debug)]
pub struct LockFlags {
    /// `--recreate-lock-file`: ignore the old lock file.
    pub recreate_lock_file: bool,
    /// `--no-update-lock-file` clears it: changes are errors.
    pub update_lock_file: bool,
    /// `--no-write-lock-file` clears it: changes are kept in memory.
    pub write_lock_file: bool,
    /// `None`: the `use-registries` setting.
    pub use_registries: Option<bool>,
    /// Apply the flake's `nixConfig`.
    pub apply_nix_config: bool,
    /// Unlocked inputs may be locked (impure evaluation).
    pub allow_unlocked: bool,
    /// Refuse to write a lock file with unlocked inputs instead of warning.
    pub fail_on_unlocked: bool,
    /// `--reference-lock-file`.
    pub reference_lock_file_path: Option<String>,
    /// `--output-lock-file`.
    pub output_lock_file_path: Option<String>,
    /// `--override-input PATH REF`.
    pub input_overrides: BTreeMap<InputPath, FlakeRef>,
    /// `--update-input PATH` / `nix flake update PATH`.
    pub input_updates: BTreeSet<InputPath>,
}

impl Default for LockFlags {
    fn default() -> Self {
        LockFlags {
            recreate_lock_file: false,
            update_lock_file: true,
            write_lock_file: true,
            use_registries: None,
            apply_nix_config: false,
            allow_unlocked: true,
            fail_on_unlocked: false,
            reference_lock_file_path: None,
            output_lock_file_path: None,
            input_overrides: BTreeMap::new(),
            input_updates: BTreeSet::new(),
        }
    }
}

/// A flake and its computed lock file (Nix's `LockedFlake`).
pub struct LockedFlake {
    pub flake: Flake,
    pub lock_file: LockFile,
    /// Where each node fetched while locking is, as evaluation sees it
    /// (the directory of its `flake.nix`).
    pub node_paths: HashMap<NodeId, String>,
}

/// A fetched tree: its store path (as evaluation sees it) and locked reference.
#[derive(Clone)]
struct Fetched {
    path: String,
    locked: FlakeRef,
}

/// What was fetched in this locking, by reference (Nix's `FlakeCache`).
#[derive(Default)]
pub struct FlakeCache {
    entries: Vec<(FlakeRef, Fetched)>,
}

impl FlakeCache {
    fn get(&self, r: &FlakeRef) -> Option<Fetched> {
        self.entries
            .iter()
            .find(|(k, _)| k == r)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, r: FlakeRef, f: Fetched) {
        match self.entries.iter_mut().find(|(k, _)| *k == r) {
            Some(e) => e.1 = f,
            None => self.entries.push((r, f)),
        }
    }
}

/// Fetches a reference (through the registries when it is indirect), as
/// `fetchOrSubstituteTree`: its path, the resolved and the locked reference.
fn fetch_or_substitute_tree(
    ev: &mut Evaluator,
    settings: &FlakeSettings,
    original: &FlakeRef,
    use_registries: bool,
    cache: &mut FlakeCache,
) -> Result<(String, FlakeRef, FlakeRef)> {
    let mut fetched = cache.get(original);
    let mut resolved = original.clone();
    if fetched.is_none() {
        if !reference::is_indirect(original) {
            fetched = Some(fetch_tree(ev, original)?);
        } else if use_registries {
            resolved = registry::resolve(settings, original)?;
            fetched = cache.get(original);
            if fetched.is_none() {
                fetched = Some(fetch_tree(ev, &resolved)?);
            }
            cache.put(resolved.clone(), fetched.clone().expect("set above"));
        } else {
            return Err(FlakeError::msg(format!(
                "'{original}' is an indirect flake reference, but registry lookups are not allowed"
            )));
        }
        cache.put(original.clone(), fetched.clone().expect("set above"));
    }
    let f = fetched.expect("set above");
    Ok((f.path, resolved, f.locked))
}

/// `FlakeRef::fetchTree`: the input fetched into the store (final).
fn fetch_tree(ev: &mut Evaluator, r: &FlakeRef) -> Result<Fetched> {
    let input = reference::to_input(r)?;
    let (path, mut locked) =
        rix_eval::builtins::with_fetcher(ev, Pos::NONE, |f| f.fetch_to_store(&input))?;
    locked.set("__final", AttrValue::Bool(true));
    Ok(Fetched {
        path: ev.store().store_dir().display(&path),
        locked: reference::from_input(locked, &r.dir),
    })
}

/// `getFlake`: fetches and reads a flake.
pub fn get_flake(
    ev: &mut Evaluator,
    settings: &FlakeSettings,
    original: &FlakeRef,
    use_registries: bool,
    cache: &mut FlakeCache,
    lock_root_path: &InputPath,
) -> Result<Flake> {
    let (path, resolved, locked) =
        fetch_or_substitute_tree(ev, settings, original, use_registries, cache)?;
    read_flake(ev, original, &resolved, &locked, &path, lock_root_path)
}

/// Reads a lock file if it exists (`readLockFile`).
fn read_lock_file(ev: &Evaluator, settings: &FlakeSettings, path: &str) -> Result<LockFile> {
    let real = ev.fs_path(path);
    match std::fs::read_to_string(&real) {
        Ok(text) => LockFile::parse(&text, path, &settings.fetch),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockFile::default()),
        Err(e) => Err(FlakeError::msg(format!("reading '{path}': {e}"))),
    }
}

/// The node whose inputs the old lock file records, in whichever lock
/// file it is (the top-level one, or an input flake's own).
type OldNode = Option<(Rc<LockFile>, NodeId)>;

struct OverrideTarget {
    input: FlakeInput,
    /// `flake.nix` of the flake that set the override.
    source_path: String,
    parent_input_path: Option<InputPath>,
}

struct Locker<'a> {
    ev: &'a mut Evaluator,
    settings: &'a FlakeSettings,
    flags: &'a LockFlags,
    use_registries: bool,
    cache: FlakeCache,
    overrides: BTreeMap<InputPath, OverrideTarget>,
    explicit_cli_overrides: BTreeSet<InputPath>,
    overrides_used: BTreeSet<InputPath>,
    updates_used: BTreeSet<InputPath>,
    node_paths: HashMap<NodeId, String>,
    parents: Vec<FlakeRef>,
    lock: LockFile,
}

impl Locker<'_> {
    fn get_input_flake(
        &mut self,
        r: &FlakeRef,
        relative: Option<&str>,
        input_path: &InputPath,
    ) -> Result<Flake> {
        match relative {
            Some(dir) => read_flake(self.ev, r, r, r, dir, input_path),
            None => get_flake(
                self.ev,
                self.settings,
                r,
                self.use_registries,
                &mut self.cache,
                input_path,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compute_locks(
        &mut self,
        flake_inputs: &FlakeInputs,
        node: NodeId,
        prefix: &InputPath,
        old_node: OldNode,
        follows_prefix: &InputPath,
        source_path: &str,
        trust_lock: bool,
    ) -> Result<()> {
        // Overrides of the inputs' inputs (`inputs.a.inputs.b = ...`).
        for (id, input) in flake_inputs {
            for (id2, o) in &input.overrides {
                let mut p = prefix.clone();
                p.push(id.clone());
                p.push(id2.clone());
                self.overrides.entry(p).or_insert_with(|| OverrideTarget {
                    input: o.clone(),
                    source_path: source_path.to_owned(),
                    parent_input_path: Some(prefix.clone()),
                });
            }
        }
        for p in self.overrides.keys() {
            let (last, parent) = p.split_last().expect("override paths are not empty");
            if parent == prefix.as_slice() && !flake_inputs.contains_key(last) {
                warn(&format!(
                    "input '{}' has an override for a non-existent input '{last}'",
                    prefix.join("/")
                ));
            }
        }
        for (id, input2) in flake_inputs {
            let mut input_path = prefix.clone();
            input_path.push(id.clone());
            self.compute_input(
                id,
                input2,
                node,
                prefix,
                &input_path,
                old_node.clone(),
                follows_prefix,
                source_path,
                trust_lock,
            )
            .map_err(|e| {
                e.with_trace(format!(
                    "while updating the flake input '{}'",
                    input_path.join("/")
                ))
            })?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn compute_input(
        &mut self,
        id: &str,
        input2: &FlakeInput,
        node: NodeId,
        prefix: &InputPath,
        input_path: &InputPath,
        old_node: OldNode,
        follows_prefix: &InputPath,
        source_path: &str,
        trust_lock: bool,
    ) -> Result<()> {
        let has_override = self.overrides.contains_key(input_path);
        let has_cli_override = self.explicit_cli_overrides.contains(input_path);
        if has_override {
            self.overrides_used.insert(input_path.clone());
        }
        let (mut input, overridden_source_path, override_parent) =
            match self.overrides.get(input_path) {
                Some(o) => (
                    o.input.clone(),
                    o.source_path.clone(),
                    o.parent_input_path.clone(),
                ),
                None => (input2.clone(), source_path.to_owned(), None),
            };
        if has_override {
            input.is_flake = input2.is_flake;
        }
        if let Some(f) = &input.follows {
            self.lock.nodes[node]
                .inputs
                .insert(id.to_owned(), Edge::Follows(f.clone()));
            return Ok(());
        }
        let input_ref = input
            .r
            .clone()
            .expect("an input without follows has a reference");
        let relative = reference::relative_path(&input_ref).map(str::to_owned);
        let overridden_parent_path = relative.as_ref().and_then(|_| {
            if has_override {
                override_parent.clone()
            } else {
                Some(prefix.clone())
            }
        });
        let resolved_relative = relative.as_ref().map(|rel| {
            reference::canon_path(&format!(
                "{}/{rel}",
                reference::parent(&overridden_source_path)
            ))
        });

        self.updates_used.insert(input_path.clone());
        let mut old_lock: Option<(Rc<LockFile>, NodeId)> = None;
        if let Some((lf, n)) = &old_node {
            if !self.flags.input_updates.contains(input_path) {
                if let Some(Edge::Node(c)) = lf.nodes[*n].inputs.get(id) {
                    old_lock = Some((lf.clone(), *c));
                }
            }
        }
        let old_locked = old_lock
            .as_ref()
            .and_then(|(lf, n)| lf.nodes[*n].locked.clone());

        if let (Some(old), Some((old_lf, old_id))) = (&old_locked, &old_lock) {
            if old.original == input_ref
                && old.parent == overridden_parent_path
                && !has_cli_override
            {
                // Keep the old lock: the reference did not change.
                let child = self.lock.add(Node {
                    inputs: BTreeMap::new(),
                    locked: Some(old.clone()),
                });
                self.lock.nodes[node]
                    .inputs
                    .insert(id.to_owned(), Edge::Node(child));
                let mut must_refetch = self
                    .flags
                    .input_updates
                    .range(input_path.clone()..)
                    .next()
                    .is_some_and(|u| u.len() > input_path.len() && u.starts_with(input_path));
                let mut fake_inputs = FlakeInputs::new();
                if !must_refetch {
                    for (name, edge) in &old_lf.nodes[*old_id].inputs {
                        match edge {
                            Edge::Node(c) => {
                                let l = old_lf.nodes[*c]
                                    .locked
                                    .as_ref()
                                    .expect("a non-root node is locked");
                                fake_inputs.insert(
                                    name.clone(),
                                    FlakeInput {
                                        r: Some(l.original.clone()),
                                        is_flake: l.is_flake,
                                        ..FlakeInput::default()
                                    },
                                );
                            }
                            Edge::Follows(f) => {
                                if !trust_lock {
                                    let mut op = input_path.clone();
                                    op.push(name.clone());
                                    if !self.overrides.contains_key(&op) {
                                        must_refetch = true;
                                        break;
                                    }
                                }
                                let mut abs = follows_prefix.clone();
                                abs.extend(f.iter().cloned());
                                fake_inputs.insert(
                                    name.clone(),
                                    FlakeInput {
                                        follows: Some(abs),
                                        is_flake: true,
                                        ..FlakeInput::default()
                                    },
                                );
                            }
                        }
                    }
                }
                if must_refetch {
                    let f = self.get_input_flake(
                        &old.locked,
                        resolved_relative.as_deref(),
                        input_path,
                    )?;
                    self.node_paths.insert(child, f.dir());
                    return self.compute_locks(
                        &f.inputs,
                        child,
                        input_path,
                        old_lock.clone(),
                        follows_prefix,
                        &f.path,
                        false,
                    );
                }
                return self.compute_locks(
                    &fake_inputs,
                    child,
                    input_path,
                    old_lock.clone(),
                    follows_prefix,
                    source_path,
                    true,
                );
            }
        }

        // A new entry: fetch the input.
        if !self.flags.allow_unlocked
            && !reference::to_input(&input_ref)?.is_locked()
            && relative.is_none()
        {
            return Err(FlakeError::msg(format!(
                "cannot update unlocked flake input '{}' in pure mode",
                input_path.join("/")
            )));
        }
        // With `--override-input`, `original` stays what the flake says, so
        // that the override does not stick.
        let original = match &input2.r {
            Some(r) if self.explicit_cli_overrides.contains(input_path) => r.clone(),
            _ => input_ref.clone(),
        };
        if input.is_flake {
            let f = self.get_input_flake(&input_ref, resolved_relative.as_deref(), input_path)?;
            let child = self.lock.add(Node {
                inputs: BTreeMap::new(),
                locked: Some(Locked {
                    locked: f.locked_ref.clone(),
                    original,
                    is_flake: true,
                    parent: overridden_parent_path,
                }),
            });
            self.lock.nodes[node]
                .inputs
                .insert(id.to_owned(), Edge::Node(child));
            if let Some(p) = self.parents.iter().find(|p| **p == input_ref) {
                return Err(FlakeError::msg(format!(
                    "found circular import of flake '{p}'"
                )));
            }
            self.parents.push(input_ref.clone());
            self.node_paths.insert(child, f.dir());
            let (old, fp) = match old_lock {
                Some(o) => (Some(o), follows_prefix.clone()),
                None => {
                    let lf = read_lock_file(self.ev, self.settings, &f.lock_file_path())?;
                    (Some((Rc::new(lf), ROOT)), input_path.clone())
                }
            };
            let r = self.compute_locks(&f.inputs, child, input_path, old, &fp, &f.path, false);
            self.parents.pop();
            r
        } else {
            let (path, locked) = match &resolved_relative {
                Some(p) => (p.clone(), input_ref.clone()),
                None => {
                    let (path, _, locked) = fetch_or_substitute_tree(
                        self.ev,
                        self.settings,
                        &input_ref,
                        self.use_registries,
                        &mut self.cache,
                    )?;
                    (path, locked)
                }
            };
            let child = self.lock.add(Node {
                inputs: BTreeMap::new(),
                locked: Some(Locked {
                    locked,
                    original,
                    is_flake: false,
                    parent: overridden_parent_path,
                }),
            });
            self.node_paths.insert(child, path);
            self.lock.nodes[node]
                .inputs
                .insert(id.to_owned(), Edge::Node(child));
            Ok(())
        }
    }
}

/// Where the flake's sources are on this machine, for writing its lock
/// file (`Input::getSourcePath`): a `path:` input's path, a local Git
/// repository's work tree.
pub fn source_path(r: &FlakeRef) -> Option<String> {
    match r.input_type? {
        InputType::Path => match r.attrs.get("path") {
            Some(AttrValue::Str(p)) => Some(p.clone()),
            _ => None,
        },
        InputType::Git => match r.attrs.get("url") {
            Some(AttrValue::Str(u)) => u.strip_prefix("file://").map(str::to_owned),
            _ => None,
        },
        _ => None,
    }
}

/// Computes the lock file of `top_ref` and writes it when it changed and
/// the flags allow (`lockFlake`).
pub fn lock_flake(
    ev: &mut Evaluator,
    settings: &FlakeSettings,
    top_ref: &FlakeRef,
    flags: &LockFlags,
) -> Result<LockedFlake> {
    let use_registries = flags.use_registries.unwrap_or(settings.use_registries);
    let mut cache = FlakeCache::default();
    let mut flake = get_flake(
        ev,
        settings,
        top_ref,
        use_registries,
        &mut cache,
        &Vec::new(),
    )?;
    if flags.apply_nix_config {
        crate::config::apply(settings, &flake)?;
    }
    let trace = format!(
        "while updating the lock file of flake '{}'",
        flake.locked_ref
    );
    let r = (|| -> Result<LockedFlake> {
        let old_lock_file = read_lock_file(
            ev,
            settings,
            flags
                .reference_lock_file_path
                .as_deref()
                .unwrap_or(&flake.lock_file_path()),
        )?;
        let old = Rc::new(old_lock_file);
        let mut locker = Locker {
            ev,
            settings,
            flags,
            use_registries,
            cache,
            overrides: BTreeMap::new(),
            explicit_cli_overrides: BTreeSet::new(),
            overrides_used: BTreeSet::new(),
            updates_used: BTreeSet::new(),
            node_paths: HashMap::new(),
            parents: Vec::new(),
            lock: LockFile::default(),
        };
        for (p, r) in &flags.input_overrides {
            locker.overrides.insert(
                p.clone(),
                OverrideTarget {
                    input: FlakeInput {
                        r: Some(r.clone()),
                        is_flake: true,
                        ..FlakeInput::default()
                    },
                    source_path: flake.path.clone(),
                    parent_input_path: None,
                },
            );
            locker.explicit_cli_overrides.insert(p.clone());
        }
        locker.node_paths.insert(ROOT, flake.dir());
        let old_root = (!flags.recreate_lock_file).then(|| (old.clone(), ROOT));
        locker.compute_locks(
            &flake.inputs.clone(),
            ROOT,
            &Vec::new(),
            old_root,
            &Vec::new(),
            &flake.path.clone(),
            false,
        )?;
        for (p, r) in &flags.input_overrides {
            if !locker.overrides_used.contains(p) {
                warn(&format!(
                    "the flag '--override-input {} {r}' does not match any input",
                    p.join("/")
                ));
            }
        }
        for p in &flags.input_updates {
            if !locker.updates_used.contains(p) {
                warn(&format!(
                    "'{}' does not match any input of this flake",
                    p.join("/")
                ));
            }
        }
        let new_lock = std::mem::take(&mut locker.lock);
        let node_paths = std::mem::take(&mut locker.node_paths);
        drop(locker);
        new_lock.check()?;
        let src = source_path(top_ref);
        let changed = new_lock.to_json().0 != old.to_json().0;
        if changed || flags.output_lock_file_path.is_some() {
            let diff = LockFile::diff(&old, &new_lock);
            let chomped = diff.trim_end_matches([' ', '\n', '\r', '\t']).to_owned();
            if flags.write_lock_file {
                if src.is_some() || flags.output_lock_file_path.is_some() {
                    if let Some(unlocked) = new_lock.unlocked(&settings.fetch) {
                        if flags.fail_on_unlocked {
                            return Err(FlakeError::msg(format!(
                                "Will not write lock file of flake '{top_ref}' because it has an unlocked input ('{unlocked}'). Use '--allow-dirty-locks' to allow this anyway."
                            )));
                        }
                        if settings.fetch.warn_dirty {
                            warn(&format!(
                                "will not write lock file of flake '{top_ref}' because it has an unlocked input ('{unlocked}')"
                            ));
                        }
                    } else {
                        if !flags.update_lock_file {
                            return Err(FlakeError::msg(format!(
                                "flake '{top_ref}' requires lock file changes but they're not allowed due to '--no-update-lock-file'"
                            )));
                        }
                        let text = new_lock.to_text();
                        if let Some(out) = &flags.output_lock_file_path {
                            std::fs::write(out, &text).map_err(|e| {
                                FlakeError::msg(format!("writing file '{out}': {e}"))
                            })?;
                        } else {
                            let rel = if top_ref.dir.is_empty() {
                                "flake.lock".to_owned()
                            } else {
                                format!("{}/flake.lock", top_ref.dir)
                            };
                            let src = src.expect("checked above");
                            let out = format!("{src}/{rel}");
                            let exists = std::fs::symlink_metadata(&out).is_ok();
                            if exists {
                                if chomped.is_empty() {
                                    warn(&format!("updating lock file '\"{out}\"'"));
                                } else {
                                    warn(&format!("updating lock file '\"{out}\"':\n{chomped}"));
                                }
                            } else {
                                warn(&format!("creating lock file '\"{out}\"': \n{chomped}"));
                            }
                            put_file(top_ref, &out, &text)?;
                        }
                        // The flake's tree changed: read it again.
                        let mut cache = FlakeCache::default();
                        flake = get_flake(
                            ev,
                            settings,
                            top_ref,
                            use_registries,
                            &mut cache,
                            &Vec::new(),
                        )?;
                    }
                } else {
                    return Err(FlakeError::msg(format!(
                        "cannot write modified lock file of flake '{top_ref}' (use '--no-write-lock-file' to ignore)"
                    )));
                }
            } else {
                warn(&format!(
                    "not writing modified lock file of flake '{top_ref}':\n{chomped}"
                ));
                flake.force_dirty = true;
            }
        }
        Ok(LockedFlake {
            flake: flake.clone(),
            lock_file: new_lock,
            node_paths,
        })
    })();
    r.map_err(|e| e.with_trace(trace))
}

/// `Input::putFile`: writes the lock file into the flake's sources (and,
/// in a Git work tree, makes Git see it, as Nix's `git add --intent-to-add`).
fn put_file(top_ref: &FlakeRef, path: &str, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| FlakeError::msg(format!("writing file '{path}': {e}")))?;
    if top_ref.input_type == Some(InputType::Git) {
        if let Some(root) = source_path(top_ref) {
            let _ = std::process::Command::new("git")
                .args(["-C", &root, "add", "--intent-to-add", "--", path])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    Ok(())
}
