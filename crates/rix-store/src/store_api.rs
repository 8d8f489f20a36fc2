//! The store interface: what every store answers, whether it is this machine's
//! store on disk ([`LocalStore`]), a daemon reached over the worker protocol
//! (`rix-remote`), or, later, another machine.
//!
//! Commands hold an `Arc<dyn Store>` chosen from `--store` at run time, so the
//! trait is synchronous and object-safe. Abilities not every store has are
//! optional accessors instead of methods that fail at run time:
//! [`Store::gc`] (roots and collection), [`Store::realisations`]
//! (content-addressed derivations' outputs) and [`Store::as_local`] (the store is on
//! this disk: the builder, the sandbox, `run`/`shell` and the direct database
//! readers need its files). Building is a separate interface ([`Realise`]) that
//! sits above the store (rix-build implements it for a local store, the daemon
//! client forwards it).
//!
//! Naming (printing and parsing store paths) is [`StoreDir`]'s job, not the
//! store's: [`Store::store_dir`] gives it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::path::Path;

use rix_formats::derivation::Derivation;
use rix_formats::hash::HashAlgo;
use rix_formats::store_path::{FileIngestionMethod, StoreDir, StorePath};

use crate::gc::{GcOptions, GcResults};
use crate::local_store::{LocalStore, Result, StoreError};
use crate::path_info::ValidPathInfo;
use crate::realisations::{DrvOutput, Realisation};

/// How a path enters a store from outside ([`Store::add_to_store_nar`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddFlags {
    /// Replace the path even when it is valid (`--repair`).
    pub repair: bool,
    /// Require a trusted signature (or a content address) as `require-sigs` does.
    pub check_sigs: bool,
}

/// A store: query, read and write store objects, and add roots.
pub trait Store: Send + Sync {
    /// The store directory its paths live in (`/nix/store`).
    fn store_dir(&self) -> &StoreDir;

    /// The URL it was opened with, for messages (`local`, `daemon`, `unix:///…`).
    fn url(&self) -> String;

    /// What the store knows about `path`, or `None` when it is not valid there.
    fn query_path_info(&self, path: &StorePath) -> Result<Option<ValidPathInfo>>;

    /// `query_path_info`, with an invalid path an error naming it.
    fn path_info(&self, path: &StorePath) -> Result<ValidPathInfo> {
        self.query_path_info(path)?
            .ok_or_else(|| StoreError::NotValid(self.store_dir().display(path)))
    }

    fn is_valid(&self, path: &StorePath) -> Result<bool> {
        Ok(self.query_path_info(path)?.is_some())
    }

    /// [`Self::query_path_info`] of each of `paths`, in order. A store behind
    /// a connection asks for them all before it reads the answers (one round
    /// trip for many paths).
    fn query_path_infos(&self, paths: &[StorePath]) -> Result<Vec<Option<ValidPathInfo>>> {
        paths.iter().map(|p| self.query_path_info(p)).collect()
    }

    /// `path` as text (`/nix/store/…`).
    fn print(&self, path: &StorePath) -> String {
        self.store_dir().display(path)
    }

    /// A store path (or a path below one) given as text.
    fn parse_path(&self, s: &str) -> Result<StorePath> {
        Ok(self.store_dir().parse_prefix(s)?.0)
    }

    /// Sorts `paths` so that every path comes after the paths it refers to
    /// (references outside `paths` are ignored), in Nix's order.
    fn topo_sort(&self, paths: &BTreeSet<StorePath>) -> Result<Vec<StorePath>> {
        let asked: Vec<StorePath> = paths.iter().cloned().collect();
        let infos = self
            .query_path_infos(&asked)?
            .into_iter()
            .zip(&asked)
            .map(|(info, p)| info.ok_or_else(|| StoreError::NotValid(self.store_dir().display(p))))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&BTreeSet<StorePath>> = infos.iter().map(|i| &i.references).collect();
        Ok(crate::ref_graph::topo_sort_subset(paths, &refs))
    }

    /// The subset of `paths` that is valid.
    fn query_valid_paths(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        let mut valid = BTreeSet::new();
        for p in paths {
            if self.is_valid(p)? {
                valid.insert(p.clone());
            }
        }
        Ok(valid)
    }

    /// Every valid path (`nix-store -q --all`-like listings, `nix path-info --all`).
    fn query_all_valid_paths(&self) -> Result<BTreeSet<StorePath>>;

    /// Valid paths that refer to `path`.
    fn query_referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>>;

    /// Valid derivations known to produce `path`.
    fn query_valid_derivers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>>;

    /// The outputs of derivation `drv` by name, with their paths where known.
    fn query_derivation_output_map(
        &self,
        drv: &StorePath,
    ) -> Result<BTreeMap<String, Option<StorePath>>>;

    /// The valid path whose hash part is `hash_part`, if any.
    fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>>;

    /// The closure of `paths` under references (each path included).
    fn closure(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut queue: VecDeque<StorePath> = paths.iter().cloned().collect();
        while let Some(p) = queue.pop_front() {
            if seen.contains(&p) {
                continue;
            }
            let info = self.path_info(&p)?;
            for r in info.references {
                if !seen.contains(&r) {
                    queue.push_back(r);
                }
            }
            seen.insert(p);
        }
        Ok(seen)
    }

    /// Writes the NAR serialisation of valid `path` to `out`.
    fn nar_from_path(&self, path: &StorePath, out: &mut dyn Write) -> Result<()>;

    /// Adds a store object from its NAR, checked against `info` (hash, size,
    /// content address, signatures as `flags` say) before it becomes valid.
    fn add_to_store_nar(
        &self,
        info: &ValidPathInfo,
        nar: &mut dyn Read,
        flags: AddFlags,
    ) -> Result<()>;

    /// Adds the store objects of `infos` in this order (dependencies first),
    /// each NAR written by `nar` as it is sent and checked as
    /// [`Self::add_to_store_nar`] checks it. A store reached over a
    /// connection takes them in one stream (a daemon's `AddMultipleToStore`,
    /// pipelined `AddToStoreNar`s of the serve protocol) instead of a round
    /// trip per path. By default each is added by itself from a buffer.
    fn add_multiple_nars(
        &self,
        infos: &[ValidPathInfo],
        nar: &mut dyn FnMut(&ValidPathInfo, &mut dyn Write) -> Result<()>,
        flags: AddFlags,
    ) -> Result<()> {
        for info in infos {
            // (The size is the source's word: a bounded reservation.)
            let mut buf = Vec::with_capacity(info.nar_size.min(1 << 26) as usize);
            nar(info, &mut buf)?;
            self.add_to_store_nar(info, &mut &buf[..], flags)?;
        }
        Ok(())
    }

    /// Adds a text file named by its contents and references (`builtins.toFile`,
    /// `.drv` files).
    fn add_text(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath>;

    /// Writes a derivation as a `.drv` file (its outputs checked by the store).
    fn add_derivation(&self, drv: &Derivation) -> Result<StorePath> {
        let aterm = drv
            .to_aterm(self.store_dir())
            .map_err(|e| StoreError::Derivation {
                name: drv.name.clone(),
                message: e.to_string(),
            })?;
        let refs: BTreeSet<StorePath> = drv.references().into_iter().cloned().collect();
        self.add_text(&format!("{}.drv", drv.name), &aterm, &refs)
    }

    /// Adds a file or tree of this machine as a fixed-output path (`nix-store
    /// --add`, `--add-fixed`, path literals).
    fn add_path(
        &self,
        src: &Path,
        name: &str,
        method: FileIngestionMethod,
        algo: HashAlgo,
    ) -> Result<StorePath>;

    /// Adds signatures to a valid path.
    fn add_signatures(&self, path: &StorePath, sigs: &BTreeSet<String>) -> Result<()>;

    /// Keeps `path` from collection while this handle lives.
    fn add_temp_root(&self, path: &StorePath) -> Result<()>;

    /// Makes the symlink `link` (outside the store) a root for whatever it points to.
    fn add_indirect_root(&self, link: &Path) -> Result<()>;

    /// Roots and garbage collection, where the store offers them.
    fn gc(&self) -> Option<&dyn GcStore> {
        None
    }

    /// The store on this disk, for what needs its files or database.
    fn as_local(&self) -> Option<&LocalStore> {
        None
    }

    /// Realisations of content-addressed derivations' outputs, where the
    /// store keeps them (a local store with the experimental feature
    /// `ca-derivations`, a daemon).
    fn realisations(&self) -> Option<&dyn RealisationStore> {
        None
    }
}

/// Realisations: where the outputs of content-addressed derivations went
/// (see [`crate::realisations`]).
pub trait RealisationStore {
    /// The realisation of `id`, with the realisations it depends on.
    fn query_realisation(&self, id: &DrvOutput) -> Result<Option<Realisation>>;

    /// Registers `r`: its output path and the realisations it depends on
    /// must be there already; one registered before gains its signatures.
    /// Mirrors `registerDrvOutput`.
    fn register_realisation(&self, r: &Realisation) -> Result<()>;

    /// The realisations whose output is `path` (their dependencies left
    /// out); empty where the store cannot tell (a daemon: the protocol has
    /// no such query).
    fn realisations_of_path(&self, path: &StorePath) -> Result<Vec<Realisation>> {
        let _ = path;
        Ok(Vec::new())
    }
}

/// Copies the realisations of `src` whose outputs are among `paths` (as
/// [`copy_paths`] leaves them in `dst`), with the realisations they depend
/// on, dependencies first. Nothing when either store keeps no realisations
/// (as Nix's `copyPaths` ignores a destination without `ca-derivations`).
/// Returns how many were registered. Mirrors the realisation part of Nix's
/// `copyPaths`; Nix starts from the realisations of the derivation outputs
/// given (`nix copy DRV^out`), rix from every copied path that has one.
pub fn copy_realisations(
    src: &dyn Store,
    dst: &dyn Store,
    paths: &BTreeSet<StorePath>,
) -> Result<usize> {
    let (Some(from), Some(to)) = (src.realisations(), dst.realisations()) else {
        return Ok(0);
    };
    let mut top = Vec::new();
    for p in paths {
        top.extend(from.realisations_of_path(p)?);
    }
    // Depth first, each realisation after those it depends on.
    let mut order: Vec<Realisation> = Vec::new();
    let mut seen: BTreeSet<DrvOutput> = BTreeSet::new();
    let mut stack: Vec<(Realisation, bool)> = top.into_iter().map(|r| (r, false)).collect();
    while let Some((r, expanded)) = stack.pop() {
        if expanded {
            order.push(r);
            continue;
        }
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let deps: Vec<DrvOutput> = r.dependent_realisations.keys().cloned().collect();
        stack.push((r, true));
        for dep in deps.into_iter().filter(|d| !seen.contains(d)) {
            let child = from.query_realisation(&dep)?.ok_or_else(|| {
                StoreError::Protocol(format!(
                    "incomplete realisation closure in '{}': '{dep}' is a dependency of another one but isn't registered",
                    src.url()
                ))
            })?;
            stack.push((child, false));
        }
    }
    for r in &order {
        to.register_realisation(r)?;
    }
    Ok(order.len())
}

/// Roots and garbage collection.
pub trait GcStore {
    /// Every root, by the path it keeps alive, with the links naming it.
    /// `censor` hides other users' runtime roots as the collector does.
    fn find_roots(&self, censor: bool) -> Result<BTreeMap<StorePath, BTreeSet<String>>>;

    fn collect_garbage(&self, options: &GcOptions) -> Result<GcResults>;
}

/// What [`copy_paths`] did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Paths copied, dependencies first.
    pub copied: Vec<StorePath>,
    /// Paths the destination had already.
    pub present: Vec<StorePath>,
    /// NAR bytes sent.
    pub nar_bytes: u64,
}

/// Copies the closure of `paths` from `src` to `dst`, dependencies first,
/// skipping what `dst` has; each NAR is checked by `dst` against the source's
/// record (as Nix's `copyPaths`). `check_sigs` asks `dst` to require trusted
/// signatures (a daemon refuses unsigned paths from untrusted users anyway).
pub fn copy_paths(
    src: &dyn Store,
    dst: &dyn Store,
    paths: &BTreeSet<StorePath>,
    check_sigs: bool,
) -> Result<CopyReport> {
    copy_paths_checked(src, dst, paths, check_sigs, &|_| Ok(()))
}

/// [`copy_paths`], with `accept` asked about each source record before
/// anything of it is sent (the copying side's own policy, e.g. signatures
/// into a local store). The missing paths go in one
/// [`Store::add_multiple_nars`]: each NAR streams from `src` into `dst`.
pub fn copy_paths_checked(
    src: &dyn Store,
    dst: &dyn Store,
    paths: &BTreeSet<StorePath>,
    check_sigs: bool,
    accept: &dyn Fn(&ValidPathInfo) -> Result<()>,
) -> Result<CopyReport> {
    let closure = src.closure(paths)?;
    let present = dst.query_valid_paths(&closure)?;
    let mut report = CopyReport::default();
    let mut missing = Vec::new();
    for p in src.topo_sort(&closure)? {
        if present.contains(&p) {
            report.present.push(p);
        } else {
            missing.push(p);
        }
    }
    let mut infos = Vec::with_capacity(missing.len());
    for (p, info) in missing.iter().zip(src.query_path_infos(&missing)?) {
        let info = info.ok_or_else(|| StoreError::NotValid(src.print(p)))?;
        accept(&info)?;
        infos.push(info);
    }
    let flags = AddFlags {
        repair: false,
        check_sigs,
    };
    let mut nar_bytes = 0u64;
    dst.add_multiple_nars(
        &infos,
        &mut |info, out| {
            let mut counted = Counted {
                inner: out,
                bytes: 0,
            };
            src.nar_from_path(&info.path, &mut counted)?;
            nar_bytes += counted.bytes;
            Ok(())
        },
        flags,
    )?;
    report.nar_bytes = nar_bytes;
    report.copied = missing;
    Ok(report)
}

/// A writer that counts what goes through it.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Error for an ability `store` lacks, in Nix's words.
pub fn unsupported(operation: &str, store: &dyn Store) -> StoreError {
    StoreError::Unsupported {
        operation: operation.to_string(),
        store: store.url(),
    }
}

impl Store for LocalStore {
    fn store_dir(&self) -> &StoreDir {
        LocalStore::store_dir(self)
    }

    fn url(&self) -> String {
        match &self.layout().root {
            Some(root) => root.display().to_string(),
            None => "local".to_string(),
        }
    }

    fn query_path_info(&self, path: &StorePath) -> Result<Option<ValidPathInfo>> {
        LocalStore::query_path_info(self, path)
    }

    fn is_valid(&self, path: &StorePath) -> Result<bool> {
        LocalStore::is_valid(self, path)
    }

    fn query_valid_paths(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        LocalStore::query_valid_paths(self, paths)
    }

    fn print(&self, path: &StorePath) -> String {
        LocalStore::print(self, path)
    }

    /// Also accepts the path's real location (a store rooted elsewhere).
    fn parse_path(&self, s: &str) -> Result<StorePath> {
        LocalStore::parse_path(self, s)
    }

    fn topo_sort(&self, paths: &BTreeSet<StorePath>) -> Result<Vec<StorePath>> {
        LocalStore::topo_sort(self, paths)
    }

    fn query_all_valid_paths(&self) -> Result<BTreeSet<StorePath>> {
        Ok(self.db().all_valid_paths()?.into_iter().collect())
    }

    fn query_referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        Ok(self.db().referrers(path)?)
    }

    fn query_valid_derivers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        Ok(self.db().valid_derivers(path)?.into_iter().collect())
    }

    fn query_derivation_output_map(
        &self,
        drv: &StorePath,
    ) -> Result<BTreeMap<String, Option<StorePath>>> {
        Ok(self
            .db()
            .derivation_outputs(drv)?
            .into_iter()
            .map(|(name, path)| (name, Some(path)))
            .collect())
    }

    fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>> {
        Ok(self.db().query_path_from_hash_part(hash_part)?)
    }

    fn closure(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        LocalStore::closure(self, paths.iter().cloned())
    }

    fn nar_from_path(&self, path: &StorePath, mut out: &mut dyn Write) -> Result<()> {
        if !LocalStore::is_valid(self, path)? {
            return Err(StoreError::NotValid(self.print(path)));
        }
        crate::archive::dump(&self.real_path(path), &mut out)?;
        Ok(())
    }

    /// Checks hash and size (a `.drv` also its outputs); signatures are the
    /// caller's policy (the daemon checks them for clients it does not trust).
    fn add_to_store_nar(
        &self,
        info: &ValidPathInfo,
        nar: &mut dyn Read,
        flags: AddFlags,
    ) -> Result<()> {
        if flags.repair && LocalStore::is_valid(self, &info.path)? {
            return Err(unsupported("repairing a valid path from a NAR", self));
        }
        self.add_nar(info, nar).map(drop)
    }

    fn add_text(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath> {
        LocalStore::add_text(self, name, contents, references)
    }

    fn add_path(
        &self,
        src: &Path,
        name: &str,
        method: FileIngestionMethod,
        algo: HashAlgo,
    ) -> Result<StorePath> {
        LocalStore::add_path(self, src, name, method, algo)
    }

    fn add_signatures(&self, path: &StorePath, sigs: &BTreeSet<String>) -> Result<()> {
        let mut info = self.path_info(path)?;
        info.sigs.extend(sigs.iter().cloned());
        Ok(self.db().register(&[info], &[])?)
    }

    fn add_temp_root(&self, path: &StorePath) -> Result<()> {
        LocalStore::add_temp_root(self, path)
    }

    fn add_indirect_root(&self, link: &Path) -> Result<()> {
        crate::roots::add_indirect_root(self.layout(), link)
    }

    fn gc(&self) -> Option<&dyn GcStore> {
        Some(self)
    }

    fn as_local(&self) -> Option<&LocalStore> {
        Some(self)
    }

    fn realisations(&self) -> Option<&dyn RealisationStore> {
        self.ca_derivations()
            .then_some(self as &dyn RealisationStore)
    }
}

impl RealisationStore for LocalStore {
    fn query_realisation(&self, id: &DrvOutput) -> Result<Option<Realisation>> {
        LocalStore::query_realisation(self, id)
    }

    fn register_realisation(&self, r: &Realisation) -> Result<()> {
        LocalStore::register_realisation(self, r)
    }

    fn realisations_of_path(&self, path: &StorePath) -> Result<Vec<Realisation>> {
        Ok(self.db().realisations_of_path(path)?)
    }
}

impl GcStore for LocalStore {
    fn find_roots(&self, censor: bool) -> Result<BTreeMap<StorePath, BTreeSet<String>>> {
        let is_valid = |p: &StorePath| LocalStore::is_valid(self, p).unwrap_or(false);
        let roots = if censor {
            crate::roots::find_roots_no_temp(self, &is_valid, true, true, &crate::roots::Silent)
        } else {
            crate::roots::find_all_roots(self, &is_valid, &crate::roots::Silent)
        };
        let roots = roots.map_err(StoreError::io(self.layout().gcroots_dir()))?;
        Ok(roots)
    }

    fn collect_garbage(&self, options: &GcOptions) -> Result<GcResults> {
        crate::gc::collect_garbage(self, options, &crate::gc::Quiet).map_err(StoreError::from)
    }
}
