//! `rix profile`: packages installed into a profile, as Nix 2.26's `nix
//! profile` (`src/nix/profile.cc`), on the same files: `manifest.json`
//! (version 3) in the profile's store path, generations `P-N-link`
//! (rix-store's [`rix_store::profiles`]), the user environment of
//! [`rix_store::buildenv`]. The profile's store path is Nix's for the same
//! elements: the tree and `manifest.json` added as the content-addressed path
//! `profile` referring to every element's store paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use rix_eval::symbol::Symbol;
use rix_eval::value::Value;
use rix_eval::Evaluator;
use rix_flake::reference::{self, OutputsSpec};
use rix_formats::StorePath;
use rix_store::profiles;
use rix_store::store_api::Store;

use crate::context::Context;

const ANSI_NORMAL: &str = "\x1b[0m";
const ANSI_BOLD: &str = "\x1b[1m";
const ANSI_RED: &str = "\x1b[31;1m";
const ANSI_GREEN: &str = "\x1b[32;1m";

/// `nix profile`'s default priority.
const DEFAULT_PRIORITY: i64 = 5;

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// Install packages into a profile (like `nix profile install`).
    Install(InstallArgs),
    /// Remove packages from a profile (like `nix profile remove`).
    Remove(MatchArgs),
    /// Upgrade packages using their most recent flake (like `nix profile upgrade`).
    Upgrade(UpgradeArgs),
    /// List installed packages (like `nix profile list`).
    List(ListArgs),
    /// Show the closure difference between each version of a profile (like `nix profile diff-closures`).
    DiffClosures(ProfileArg),
    /// Show all versions of a profile (like `nix profile history`).
    History(ProfileArg),
    /// Roll back to the previous version or a given version of a profile (like `nix profile rollback`).
    Rollback(RollbackArgs),
    /// Delete non-current versions of a profile (like `nix profile wipe-history`).
    WipeHistory(WipeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ProfileArg {
    /// The profile to operate on (default: the user's, `~/.nix-profile`).
    #[arg(long, value_name = "PATH")]
    pub profile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The priority of the package to install.
    #[arg(long, value_name = "PRIORITY", allow_hyphen_values = true)]
    pub priority: Option<i64>,
    /// Store paths, flake installables (`.#pkg`), or with `--file`/`--expr`
    /// attribute paths.
    #[arg(value_name = "INSTALLABLES")]
    pub installables: Vec<String>,
    #[command(flatten)]
    pub nix: crate::cmd::instantiate::NixInstallableArgs,
}

#[derive(Args, Debug)]
pub struct MatchArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Match all packages in the profile.
    #[arg(long)]
    pub all: bool,
    /// A regular expression to match one or more packages in the profile.
    #[arg(long, value_name = "PATTERN")]
    pub regex: Vec<String>,
    /// Element names or store paths.
    #[arg(value_name = "ELEMENTS")]
    pub elements: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub matching: MatchArgs,
    #[command(flatten)]
    pub flake: crate::cmd::flake::FlakeLockArgs,
    #[command(flatten)]
    pub eval_args: crate::cmd::instantiate::EvalArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The profile version to roll back to.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u64>,
    /// Show what this command would do without doing it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct WipeArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Delete versions older than the specified age (`Nd`, N days).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Show what this command would do without doing it.
    #[arg(long)]
    pub dry_run: bool,
}

impl ProfileCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        match self {
            ProfileCommand::Install(a) => install(ctx, a),
            ProfileCommand::Remove(a) => remove(ctx, a),
            ProfileCommand::Upgrade(a) => upgrade(ctx, a),
            ProfileCommand::List(a) => list(ctx, a),
            ProfileCommand::DiffClosures(a) => diff_closures(ctx, a),
            ProfileCommand::History(a) => history(ctx, a),
            ProfileCommand::Rollback(a) => {
                let p = profile_path(ctx, &a.profile)?;
                profiles::switch_generation(&p, a.to, a.dry_run, &mut notice)?;
                Ok(())
            }
            ProfileCommand::WipeHistory(a) => {
                let p = profile_path(ctx, &a.profile)?;
                match &a.older_than {
                    Some(age) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64);
                        let t = profiles::parse_older_than_time_spec(age, now)?;
                        profiles::delete_generations_older_than(&p, t, a.dry_run, &mut notice)?;
                    }
                    None => profiles::delete_old_generations(&p, a.dry_run, &mut notice)?,
                }
                Ok(())
            }
        }
    }
}

/// An error rendered as Nix renders a message of several lines: `error: `,
/// later lines indented, the last newline dropped.
fn nix_error(msg: &str) -> anyhow::Error {
    let body: Vec<String> = msg
        .trim_end_matches('\n')
        .split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || l.is_empty() {
                l.to_owned()
            } else {
                format!("       {l}")
            }
        })
        .collect();
    anyhow::Error::new(crate::cmd::instantiate::RenderedError(
        format!("error: {}", body.join("\n")),
        1,
    ))
}

fn notice(msg: String) {
    eprintln!("{msg}");
}

fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

/// `--profile`, else the default profile (Nix's `MixDefaultProfile`).
fn profile_path(ctx: &Context, arg: &ProfileArg) -> Result<PathBuf> {
    match &arg.profile {
        Some(p) => Ok(std::path::absolute(p)?),
        None => {
            let xdg = ctx
                .settings
                .get_bool("use-xdg-base-directories")
                .unwrap_or(false);
            Ok(profiles::default_profile(xdg))
        }
    }
}

/// Where a flake element came from (Nix's `ProfileElementSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    original_url: String,
    url: String,
    attr_path: String,
    outputs: OutputsSpec,
}

fn outputs_suffix(o: &OutputsSpec) -> String {
    match o {
        OutputsSpec::Default => String::new(),
        OutputsSpec::All => "^*".into(),
        OutputsSpec::Names(n) => {
            let set: BTreeSet<&String> = n.iter().collect();
            format!(
                "^{}",
                set.into_iter().cloned().collect::<Vec<_>>().join(",")
            )
        }
    }
}

fn outputs_json(o: &OutputsSpec) -> serde_json::Value {
    match o {
        OutputsSpec::Default => serde_json::Value::Null,
        OutputsSpec::All => serde_json::json!(["*"]),
        OutputsSpec::Names(n) => {
            let set: BTreeSet<&String> = n.iter().collect();
            serde_json::json!(set)
        }
    }
}

fn outputs_from_json(v: &serde_json::Value) -> OutputsSpec {
    match v.as_array() {
        None => OutputsSpec::Default,
        Some(a) if a.len() == 1 && a[0] == "*" => OutputsSpec::All,
        Some(a) => OutputsSpec::Names(
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
        ),
    }
}

impl Source {
    fn to_installable(&self) -> String {
        format!(
            "{}#{}{}",
            self.original_url,
            self.attr_path,
            outputs_suffix(&self.outputs)
        )
    }
}

/// One element of a profile (Nix's `ProfileElement`).
#[derive(Debug, Clone)]
struct Element {
    store_paths: BTreeSet<StorePath>,
    source: Option<Source>,
    active: bool,
    priority: i64,
}

/// Nix's `DrvName`: the name ends at the first `-` not followed by a letter.
fn drv_name(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && i + 1 < b.len() && !b[i + 1].is_ascii_alphabetic() {
            return (&s[..i], &s[i + 1..]);
        }
    }
    (s, "")
}

/// Nix's `showVersions`.
fn show_versions(versions: &BTreeSet<String>) -> String {
    if versions.is_empty() {
        return "∅".into();
    }
    let shown: BTreeSet<&str> = versions
        .iter()
        .map(|v| if v.is_empty() { "ε" } else { v.as_str() })
        .collect();
    shown.into_iter().collect::<Vec<_>>().join(", ")
}

impl Element {
    fn identifier(&self) -> String {
        if let Some(s) = &self.source {
            return s.to_installable();
        }
        let names: BTreeSet<&str> = self
            .store_paths
            .iter()
            .map(|p| drv_name(p.name()).0)
            .collect();
        names
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn versions(&self) -> String {
        show_versions(
            &self
                .store_paths
                .iter()
                .map(|p| drv_name(p.name()).1.to_owned())
                .collect(),
        )
    }

    fn to_installables(&self, store: &dyn Store) -> Vec<String> {
        match &self.source {
            Some(s) => vec![s.to_installable()],
            None => self.store_paths.iter().map(|p| store.print(p)).collect(),
        }
    }

    /// Nix's `getNameFromElement`.
    fn name(&self) -> String {
        self.source
            .as_ref()
            .and_then(|s| name_from_url(&s.to_installable()))
            .unwrap_or_else(|| self.identifier())
    }
}

/// Nix's `getNameFromURL` (`flake/url-name.cc`) of a flake installable's URL.
fn name_from_url(url: &str) -> Option<String> {
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (scheme, path) = rest.split_once(':').unwrap_or(("", rest));
    let path = match path.strip_prefix("//") {
        Some(p) => p.find('/').map_or("", |i| &p[i..]),
        None => path,
    };
    for kv in query.split('&') {
        if let Some(dir) = kv.strip_prefix("dir=") {
            return Some(dir.to_owned());
        }
    }
    let seg = "[a-zA-Z0-9_-]+";
    let re = |s: &str| regex::Regex::new(s).expect("a valid regex");
    let last_attr = re(&format!(r"^((?:{seg}\.)*)({seg})(\^.*)?$"));
    if let Some(m) = last_attr.captures(fragment) {
        if &m[1] != "defaultPackage." && &m[2] != "default" {
            return Some(m[2].to_owned());
        }
    }
    let last_segment = re(&format!(r"^.*/({seg})$"));
    let second_segment = re(&format!(r"^(?:{seg})/({seg})(?:/.*)?$"));
    if re("^(github|gitlab|sourcehut)$").is_match(scheme) {
        if let Some(m) = second_segment.captures(path) {
            return Some(m[1].to_owned());
        }
    }
    if re(r"^git($|\+.*)").is_match(scheme) {
        if let Some(m) = last_segment.captures(path) {
            return Some(m[1].to_owned());
        }
    }
    last_segment.captures(path).map(|m| m[1].to_owned())
}

/// A profile's `manifest.json` (Nix's `ProfileManifest`), elements by name.
#[derive(Debug, Clone, Default)]
struct Manifest {
    elements: BTreeMap<String, Element>,
}

impl Manifest {
    /// Reads `<profile>/manifest.json` (versions 1 to 3); a profile without
    /// one is empty.
    fn read(ctx: &Context, store: &dyn Store, profile: &Path) -> Result<Manifest> {
        let mut m = Manifest::default();
        let path = profile.join("manifest.json");
        let text = match read_in_store(store, &path) {
            Ok(t) => t,
            Err(_) => {
                if read_in_store(store, &profile.join("manifest.nix")).is_ok() {
                    return Self::read_nix_env(ctx, store, profile);
                }
                return Ok(m);
            }
        };
        let json: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("cannot parse '{}'", path.display()))?;
        let version = json.get("version").and_then(|v| v.as_i64()).unwrap_or(0);
        let (s_url, s_original) = match version {
            1 => ("uri", "originalUri"),
            2 | 3 => ("url", "originalUrl"),
            v => bail!(
                "profile manifest '\"{}\"' has unsupported version {v}",
                path.display()
            ),
        };
        let parse = |e: &serde_json::Value| -> Result<Element> {
            let mut store_paths = BTreeSet::new();
            for p in e["storePaths"].as_array().into_iter().flatten() {
                store_paths.insert(store.parse_path(p.as_str().unwrap_or_default())?);
            }
            let url = e.get(s_url).and_then(|v| v.as_str()).unwrap_or_default();
            let source = (!url.is_empty()).then(|| Source {
                original_url: e[s_original].as_str().unwrap_or_default().to_owned(),
                url: url.to_owned(),
                attr_path: e["attrPath"].as_str().unwrap_or_default().to_owned(),
                outputs: outputs_from_json(&e["outputs"]),
            });
            Ok(Element {
                store_paths,
                source,
                active: e["active"].as_bool().unwrap_or(true),
                priority: e
                    .get("priority")
                    .and_then(|p| p.as_i64())
                    .unwrap_or(DEFAULT_PRIORITY),
            })
        };
        match &json["elements"] {
            serde_json::Value::Object(o) => {
                for (name, e) in o {
                    m.add(name, parse(e)?);
                }
            }
            serde_json::Value::Array(a) => {
                for e in a {
                    let e = parse(e)?;
                    m.add(&e.name(), e);
                }
            }
            _ => {}
        }
        Ok(m)
    }

    /// A `nix-env` profile's elements: each package of its `manifest.nix`
    /// by its output path (Nix's `queryInstalled`).
    fn read_nix_env(ctx: &Context, store: &dyn Store, profile: &Path) -> Result<Manifest> {
        use crate::cmd::instantiate::{eval_error, eval_source, Source};
        let env = profile_store_path(store, profile)?;
        let file = format!("{}/manifest.nix", store.print(&env));
        let outs = crate::cmd::instantiate::on_big_stack(|| -> Result<Vec<String>> {
            let (_, eval_store) = crate::cmd::instantiate::open_eval_store(ctx)?;
            let args = crate::cmd::instantiate::EvalArgs::default();
            let mut ev = Evaluator::new(args.options(ctx, eval_store));
            let r = (|| -> rix_eval::Result<Vec<String>> {
                let v = eval_source(&mut ev, &Source::File(&file))?;
                let mut outs = Vec::new();
                for d in ev.get_derivations(&v, &Default::default())? {
                    let v = Value::attrs((*d.attrs).clone());
                    if let Some(p) = get_attr(&mut ev, &v, "outPath")? {
                        let p = ev.force(&p)?;
                        outs.push(ev.force_string_no_ctx(&p, rix_eval::source::Pos::NONE)?);
                    }
                }
                Ok(outs)
            })();
            r.map_err(|e| eval_error(e, false))
        })?;
        let mut m = Manifest::default();
        for o in outs {
            let e = Element {
                store_paths: BTreeSet::from([store.parse_path(&o)?]),
                source: None,
                active: true,
                priority: DEFAULT_PRIORITY,
            };
            m.add(&e.name(), e);
        }
        Ok(m)
    }

    /// Nix's `addElement`: `name`, else `name-1`, `name-2`, … if taken.
    fn add(&mut self, name: &str, e: Element) {
        let mut final_name = name.to_owned();
        let mut i = 1;
        while self.elements.contains_key(&final_name) {
            final_name = format!("{name}-{i}");
            i += 1;
        }
        self.elements.insert(final_name, e);
    }

    /// The manifest as Nix's `toJSON(...).dump()` prints it: compact, keys
    /// sorted.
    fn to_json(&self, store: &dyn Store) -> String {
        let mut es = serde_json::Map::new();
        for (name, e) in &self.elements {
            let mut o = serde_json::Map::new();
            o.insert("active".into(), e.active.into());
            if let Some(s) = &e.source {
                o.insert("attrPath".into(), s.attr_path.clone().into());
                o.insert("originalUrl".into(), s.original_url.clone().into());
                o.insert("outputs".into(), outputs_json(&s.outputs));
            }
            o.insert("priority".into(), e.priority.into());
            o.insert(
                "storePaths".into(),
                e.store_paths
                    .iter()
                    .map(|p| serde_json::Value::String(store.print(p)))
                    .collect(),
            );
            if let Some(s) = &e.source {
                o.insert("url".into(), s.url.clone().into());
            }
            es.insert(name.clone(), serde_json::Value::Object(o));
        }
        let mut json = serde_json::Map::new();
        json.insert("elements".into(), serde_json::Value::Object(es));
        json.insert("version".into(), 3.into());
        serde_json::Value::Object(json).to_string()
    }

    /// The profile's store path (Nix's `ProfileManifest::build`): the user
    /// environment of the active elements and `manifest.json`, added as the
    /// content-addressed path `profile` referring to every element's paths.
    fn build(
        &self,
        store: &dyn Store,
    ) -> Result<Result<StorePath, rix_store::buildenv::BuildEnvError>> {
        use rix_formats::content_address::ContentAddress;
        use rix_formats::hash::HashAlgo;
        use rix_formats::store_path::FileIngestionMethod;
        let mut tree = rix_store::buildenv::MemTree::default();
        let mut pkgs = Vec::new();
        let mut references = BTreeSet::new();
        for e in self.elements.values() {
            for p in &e.store_paths {
                if e.active {
                    pkgs.push(rix_store::buildenv::Package {
                        path: store.print(p),
                        active: true,
                        priority: e.priority,
                    });
                }
                references.insert(p.clone());
            }
        }
        let real = real_of(store);
        if let Err(e) =
            rix_store::buildenv::build_profile(&mut tree, pkgs, &*real, &mut |w| warn(&w))
        {
            return Ok(Err(e));
        }
        tree.add_file(Path::new("manifest.json"), self.to_json(store).into_bytes())?;
        let nar = tree.to_nar()?;
        let nar_hash = HashAlgo::Sha256.digest(&nar);
        let method = FileIngestionMethod::Recursive;
        let path = store.store_dir().make_fixed_output_path(
            "profile",
            method,
            &nar_hash,
            &references,
            false,
        )?;
        if !store.is_valid(&path)? {
            let mut info =
                rix_store::path_info::ValidPathInfo::new(path.clone(), nar_hash, nar.len() as u64);
            info.references = references;
            info.ca = Some(ContentAddress::Fixed(method, nar_hash));
            store.add_to_store_nar(&info, &mut &nar[..], Default::default())?;
        }
        store.add_temp_root(&path)?;
        Ok(Ok(path))
    }
}

/// Where a store path's files are on this machine (a chroot store's root).
fn real_of(store: &dyn Store) -> Box<dyn Fn(&str) -> PathBuf + '_> {
    let dir = store.store_dir().as_str().to_owned();
    match store.as_local() {
        Some(local) => {
            let real = local.layout().real_store_dir.clone();
            Box::new(move |p: &str| {
                match p
                    .strip_prefix(dir.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some(rest) => real.join(rest),
                    None => PathBuf::from(p),
                }
            })
        }
        None => Box::new(|p: &str| PathBuf::from(p)),
    }
}

/// Reads a file that may be reached through links into the store (a profile
/// of a chroot store), each link followed where the store really is.
fn read_in_store(store: &dyn Store, path: &Path) -> std::io::Result<Vec<u8>> {
    let real = real_of(store);
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        let mut cur = PathBuf::from("/");
        let mut resolved = true;
        let comps: Vec<_> = p.components().collect();
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let on_disk = real(&cur.to_string_lossy());
            if let Ok(t) = std::fs::read_link(&on_disk) {
                let base = cur.parent().unwrap_or(Path::new("/")).to_path_buf();
                let mut next = base.join(t);
                for rest in &comps[i + 1..] {
                    next.push(rest);
                }
                p = next;
                resolved = false;
                break;
            }
        }
        if resolved {
            return std::fs::read(real(&cur.to_string_lossy()));
        }
    }
    Err(std::io::Error::from_raw_os_error(nix::libc::ELOOP))
}

/// The store path `profile` (or a generation) points to.
fn profile_store_path(store: &dyn Store, link: &Path) -> Result<StorePath> {
    let mut p = link.to_path_buf();
    for _ in 0..40 {
        let t =
            std::fs::read_link(&p).with_context(|| format!("reading link '{}'", p.display()))?;
        let t = p.parent().unwrap_or(Path::new("/")).join(t);
        if let Ok((path, _)) = store.store_dir().parse_prefix(&t.to_string_lossy()) {
            return Ok(path);
        }
        p = t;
    }
    bail!("'{}' does not point into the store", link.display())
}

/// Switches `profile` to a new generation of `manifest`, or explains a
/// collision as Nix does.
fn update(store: &dyn Store, profile: &Path, manifest: &Manifest) -> Result<()> {
    match manifest.build(store)? {
        Ok(path) => {
            profiles::update_profile(store, profile, &path)?;
            Ok(())
        }
        Err(rix_store::buildenv::BuildEnvError::Conflict {
            file_a,
            file_b,
            priority,
        }) => {
            let find = |rev: bool| -> Option<(String, String, Vec<String>)> {
                let mut items: Vec<_> = manifest.elements.iter().collect();
                if rev {
                    items.reverse();
                }
                for (name, e) in items {
                    for p in &e.store_paths {
                        let sp = store.print(p);
                        if file_a.starts_with(&sp) {
                            return Some((file_a.clone(), name.clone(), e.to_installables(store)));
                        }
                        if file_b.starts_with(&sp) {
                            return Some((file_b.clone(), name.clone(), e.to_installables(store)));
                        }
                    }
                }
                None
            };
            let (Some((orig_file, orig_name, _)), Some((new_file, _, new_refs))) =
                (find(false), find(true))
            else {
                return Err(nix_error(&format!(
                    "Unable to build profile. There is a conflict for the following files:\n\n  {file_a}\n  {file_b}"
                )));
            };
            let new_refs = new_refs.join(" ");
            Err(nix_error(&format!(
                "An existing package already provides the following file:\n\
                 \n  {orig_file}\n\
                 \nThis is the conflicting file from the new package:\n\
                 \n  {new_file}\n\
                 \nTo remove the existing package:\n\
                 \n  nix profile remove {orig_name}\n\
                 \nThe new package can also be installed next to the existing one by assigning a different priority.\n\
                 The conflicting packages have a priority of {priority}.\n\
                 To prioritise the new package:\n\
                 \n  nix profile install {new_refs} --priority {}\n\
                 \nTo prioritise the existing package:\n\
                 \n  nix profile install {new_refs} --priority {}\n",
                priority - 1,
                priority + 1
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// What one installable evaluated to: derivations with the outputs to
/// install, or a store path, with where it came from.
struct Resolved {
    /// `DRV^OUT1,OUT2` or a store path, for [`crate::cmd::build::realise_installables`].
    targets: Vec<String>,
    source: Option<Source>,
    priority: Option<i64>,
}

fn get_attr(ev: &mut Evaluator, v: &Value, name: &str) -> rix_eval::Result<Option<Value>> {
    match ev.force(v)? {
        Value::Attrs(a) => Ok(a.get(Symbol::new(name)).cloned()),
        _ => Ok(None),
    }
}

/// The outputs to install of a derivation (Nix's `outputsToInstall`, as
/// `InstallableFlake` and `InstallableAttrPath` choose them).
fn outputs_to_install(
    ev: &mut Evaluator,
    d: &rix_eval::api::DrvInfo,
    spec: &OutputsSpec,
    flake: bool,
) -> rix_eval::Result<Vec<String>> {
    use rix_eval::source::Pos;
    let v = Value::attrs((*d.attrs).clone());
    match spec {
        OutputsSpec::Names(n) => return Ok(n.clone()),
        OutputsSpec::All => {
            let mut out = Vec::new();
            match get_attr(ev, &v, "outputs")? {
                Some(l) => {
                    for o in ev.force_list(&l, Pos::NONE)?.iter() {
                        out.push(ev.force_string_no_ctx(o, Pos::NONE)?);
                    }
                }
                None => out.push("out".into()),
            }
            return Ok(out);
        }
        OutputsSpec::Default => {}
    }
    let mut set = BTreeSet::new();
    if let Some(spec) = get_attr(ev, &v, "outputSpecified")? {
        if ev.force_bool(&spec, Pos::NONE)? {
            set.insert(ev.output_name_of(d)?);
        }
    } else if let Some(meta) = get_attr(ev, &v, "meta")? {
        if let Some(l) = get_attr(ev, &meta, "outputsToInstall")? {
            for o in ev.force_list(&l, Pos::NONE)?.iter() {
                set.insert(ev.force_string_no_ctx(o, Pos::NONE)?);
            }
        }
    }
    if set.is_empty() {
        if flake {
            set.insert("out".into());
        } else {
            // `queryOutputs(false, true)`: every output.
            return outputs_to_install(ev, d, &OutputsSpec::All, flake);
        }
    }
    Ok(set.into_iter().collect())
}

fn meta_priority(ev: &mut Evaluator, d: &rix_eval::api::DrvInfo) -> rix_eval::Result<Option<i64>> {
    let v = Value::attrs((*d.attrs).clone());
    if get_attr(ev, &v, "outputSpecified")?.is_some() {
        return Ok(None);
    }
    let Some(meta) = get_attr(ev, &v, "meta")? else {
        return Ok(None);
    };
    match get_attr(ev, &meta, "priority")? {
        Some(p) => Ok(Some(ev.force_int(&p, rix_eval::source::Pos::NONE)?)),
        None => Ok(None),
    }
}

/// The store path an argument names (following links to it, as Nix's
/// `followLinksToStorePath`), if it names one.
fn as_store_path(store: &dyn Store, arg: &str) -> Option<StorePath> {
    if arg.contains('#') {
        return None;
    }
    let (path, _) = arg.split_once('^').unwrap_or((arg, ""));
    if let Ok(p) = store.parse_path(path) {
        return Some(p);
    }
    let layout = match store.as_local() {
        Some(l) => l.layout().clone(),
        None => rix_store::layout::StoreLayout::from_url(store.store_dir().as_str()).ok()?,
    };
    let (p, rest) = crate::cmd::resolve::follow_to_store_path(&layout, path).ok()?;
    rest.is_empty().then_some(p)
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into())
}

/// Evaluates the installables that need evaluation (writing their `.drv`s to
/// the store) and resolves each one.
fn resolve(
    ctx: &Context,
    installables: &[String],
    nix: &crate::cmd::instantiate::NixInstallableArgs,
    flake_lock: &crate::cmd::flake::FlakeLockArgs,
) -> Result<Vec<Resolved>> {
    use crate::cmd::instantiate::{eval_error, eval_source, flush};
    let show_trace = nix.eval_args.show_trace();
    let store = ctx.store()?;
    let plain = |i: &String| -> Option<Resolved> {
        let p = as_store_path(&*store, i)?;
        let target = if p.is_derivation() {
            match i.split_once('^') {
                Some((_, o)) => format!("{}^{o}", store.print(&p)),
                None => format!("{}^*", store.print(&p)),
            }
        } else {
            store.print(&p)
        };
        Some(Resolved {
            targets: vec![target],
            source: None,
            priority: None,
        })
    };
    if !nix.is_set() && installables.iter().all(|i| plain(i).is_some()) {
        return Ok(installables.iter().filter_map(plain).collect());
    }
    crate::cmd::instantiate::on_big_stack(|| -> Result<Vec<Resolved>> {
        let (_, store) = crate::cmd::instantiate::open_eval_store(ctx)?;
        let mut ev = Evaluator::new(crate::cmd::flake::eval_options(ctx, &nix.eval_args, store));
        let mut out = Vec::new();
        let drv_targets = |ev: &mut Evaluator,
                           drvs: Vec<rix_eval::api::DrvInfo>,
                           spec: &OutputsSpec,
                           flake: bool|
         -> rix_eval::Result<(Vec<String>, Option<i64>)> {
            let mut targets = Vec::new();
            let mut priority = None;
            for d in drvs {
                let drv = ev.drv_path_of(&d)?;
                let outs = outputs_to_install(ev, &d, spec, flake)?;
                targets.push(format!("{drv}^{}", outs.join(",")));
                if flake {
                    priority = meta_priority(ev, &d)?;
                }
            }
            Ok((targets, priority))
        };
        if nix.is_set() {
            let r = (|| -> rix_eval::Result<()> {
                let auto_args = ev.auto_args(&nix.eval_args.auto_args())?;
                let src = match (&nix.expr, &nix.file) {
                    (Some(e), _) => crate::cmd::instantiate::Source::Expr(e),
                    (None, Some(f)) => crate::cmd::instantiate::Source::File(f),
                    _ => unreachable!("is_set"),
                };
                let root = eval_source(&mut ev, &src)?;
                let paths: Vec<&str> = if installables.is_empty() {
                    vec![""]
                } else {
                    installables.iter().map(String::as_str).collect()
                };
                for path in paths {
                    let (path, spec) = match path.rsplit_once('^') {
                        Some((p, "*")) => (p, OutputsSpec::All),
                        Some((p, o)) => (
                            p,
                            OutputsSpec::Names(o.split(',').map(str::to_owned).collect()),
                        ),
                        None => (path, OutputsSpec::Default),
                    };
                    let v = ev.find_along_attr_path(&root, path, &auto_args)?;
                    let drvs = ev.get_derivations(&v, &auto_args)?;
                    let (targets, _) = drv_targets(&mut ev, drvs, &spec, false)?;
                    out.push(Resolved {
                        targets,
                        source: None,
                        priority: None,
                    });
                }
                flush(&ev)
            })();
            r.map_err(|e| eval_error(e, show_trace))?;
            return Ok(out);
        }
        let settings = flake_lock
            .settings(ctx)
            .map_err(|e| anyhow::anyhow!(e.render(show_trace)))?;
        let flags = flake_lock
            .lock_flags()
            .map_err(|e| anyhow::anyhow!(e.render(show_trace)))?;
        for i in installables {
            if let Some(r) = plain(i) {
                out.push(r);
                continue;
            }
            let r = (|| -> Result<Resolved, rix_flake::FlakeError> {
                let inst = reference::parse_installable(i, &cwd())?;
                let lflags = rix_flake::LockFlags {
                    apply_nix_config: true,
                    ..flags.clone()
                };
                let locked = rix_flake::lock_flake(&mut ev, &settings, &inst.flake_ref, &lflags)?;
                let (v, attr_path) = crate::cmd::flake::eval_installable(
                    &mut ev,
                    &settings,
                    &flags,
                    &inst,
                    crate::cmd::flake::Purpose::Build,
                )?;
                let drvs = ev.get_derivations(&v, &rix_eval::value::Attrs::default())?;
                if drvs.is_empty() {
                    return Err(rix_flake::FlakeError::msg(format!(
                        "flake output attribute '{attr_path}' is not a derivation or path"
                    )));
                }
                let (targets, priority) = drv_targets(&mut ev, drvs, &inst.outputs, true)?;
                Ok(Resolved {
                    targets,
                    source: Some(Source {
                        original_url: inst.flake_ref.to_string(),
                        url: locked.flake.locked_ref.to_string(),
                        attr_path,
                        outputs: inst.outputs.clone(),
                    }),
                    priority,
                })
            })();
            out.push(r.map_err(|e| anyhow::anyhow!(e.render(show_trace)))?);
        }
        flush(&ev).map_err(|e| eval_error(e, show_trace))?;
        Ok(out)
    })
}

/// Builds what the resolved installables name and returns each one's store paths.
/// Plain store paths must be valid (or fetched from a cache, as `rix build`
/// fetches them); derivations' outputs are built.
fn realise(ctx: &Context, resolved: &[Resolved]) -> Result<Vec<BTreeSet<StorePath>>> {
    let store = ctx.store()?;
    let mut built = Vec::new();
    for t in resolved.iter().flat_map(|r| &r.targets) {
        if t.contains('^')
            || !store
                .parse_path(t)
                .is_ok_and(|p| store.is_valid(&p).unwrap_or(false))
        {
            built.push(t.clone());
        }
    }
    let outs = if built.is_empty() {
        Vec::new()
    } else {
        crate::cmd::build::realise_installables(ctx, built.clone(), Default::default())?
    };
    let by_target: BTreeMap<&String, BTreeMap<String, StorePath>> =
        built.iter().zip(outs).collect();
    resolved
        .iter()
        .map(|r| {
            let mut set = BTreeSet::new();
            for t in &r.targets {
                match by_target.get(t) {
                    Some(outs) => set.extend(outs.values().cloned()),
                    None => {
                        set.insert(store.parse_path(t)?);
                    }
                }
            }
            Ok(set)
        })
        .collect()
}

fn install(ctx: &Context, a: &InstallArgs) -> Result<()> {
    let profile = profile_path(ctx, &a.profile)?;
    let store = ctx.store()?;
    let mut manifest = Manifest::read(ctx, &*store, &profile)?;
    let resolved = resolve(ctx, &a.installables, &a.nix, &a.nix.flake)?;
    let paths = realise(ctx, &resolved)?;
    for (r, store_paths) in resolved.into_iter().zip(paths) {
        let element = Element {
            store_paths,
            source: r.source,
            active: true,
            priority: a.priority.or(r.priority).unwrap_or(DEFAULT_PRIORITY),
        };
        let name = element.name();
        if let Some(existing) = manifest.elements.get(&name) {
            if let (Some(es), Some(ns)) = (&existing.source, &element.source) {
                if existing.priority == element.priority
                    && es.original_url == ns.original_url
                    && es.attr_path == ns.attr_path
                {
                    warn(&format!("'{name}' is already installed"));
                    continue;
                }
            }
        }
        manifest.add(&name, element);
    }
    update(&*store, &profile, &manifest)
}

/// The element names the arguments match (Nix's `MixProfileElementMatchers`).
fn matching(store: &dyn Store, a: &MatchArgs, manifest: &Manifest) -> Result<BTreeSet<String>> {
    enum M {
        All,
        Regex(regex::Regex, String),
        Path(StorePath),
        Name(String),
    }
    let mut matchers = Vec::new();
    if a.all {
        matchers.push(M::All);
    }
    for r in &a.regex {
        let re = regex::RegexBuilder::new(&format!("^(?:{r})$"))
            .case_insensitive(true)
            .build()
            .with_context(|| format!("invalid regular expression '{r}'"))?;
        matchers.push(M::Regex(re, r.clone()));
    }
    for e in &a.elements {
        if let Ok(n) = e.parse::<u64>() {
            bail!("'nix profile' no longer supports indices ('{n}')");
        } else if let Ok(p) = store.parse_path(e) {
            matchers.push(M::Path(p));
        } else {
            matchers.push(M::Name(e.clone()));
        }
    }
    if matchers.is_empty() {
        bail!("No packages specified.");
    }
    if a.all && matchers.len() > 1 {
        bail!("--all cannot be used with package names or regular expressions.");
    }
    if manifest.elements.is_empty() {
        warn("There are no packages in the profile.");
        return Ok(BTreeSet::new());
    }
    let mut result = BTreeSet::new();
    for m in &matchers {
        let mut found = false;
        for (name, e) in &manifest.elements {
            let hit = match m {
                M::All => true,
                M::Regex(re, _) => re.is_match(&e.identifier()),
                M::Path(p) => e.store_paths.contains(p),
                M::Name(n) => n == name,
            };
            if hit {
                result.insert(name.clone());
                found = true;
            }
        }
        if !found {
            let title = match m {
                M::All => "--all".to_owned(),
                M::Regex(_, r) => format!("Regex '{r}'"),
                M::Path(p) => format!("Store path '{p}'"),
                M::Name(n) => format!("Package name '{n}'"),
            };
            warn(&format!(
                "{title} does not match any packages in the profile."
            ));
        }
    }
    Ok(result)
}

fn remove(ctx: &Context, a: &MatchArgs) -> Result<()> {
    let profile = profile_path(ctx, &a.profile)?;
    let store = ctx.store()?;
    let old = Manifest::read(ctx, &*store, &profile)?;
    let names = matching(&*store, a, &old)?;
    if names.is_empty() {
        warn("No packages to remove. Use 'nix profile list' to see the current profile.");
        return Ok(());
    }
    let mut new = old.clone();
    for n in &names {
        eprintln!("removing '{}'", old.elements[n].identifier());
        new.elements.remove(n);
    }
    eprintln!(
        "removed {} packages, kept {} packages",
        old.elements.len() - new.elements.len(),
        new.elements.len()
    );
    update(&*store, &profile, &new)
}

/// Whether a flake reference pins its source (Nix's `Input::isLocked`, roughly:
/// a revision or a NAR hash).
fn is_locked(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .any(|kv| kv.starts_with("rev=") || kv.starts_with("narHash="))
}

fn upgrade(ctx: &Context, a: &UpgradeArgs) -> Result<()> {
    let profile = profile_path(ctx, &a.matching.profile)?;
    let store = ctx.store()?;
    let mut manifest = Manifest::read(ctx, &*store, &profile)?;
    let names = matching(&*store, &a.matching, &manifest)?;
    if names.is_empty() {
        warn("No packages to upgrade. Use 'nix profile list' to see the current profile.");
        return Ok(());
    }
    let mut chosen = Vec::new();
    for n in &names {
        let e = &manifest.elements[n];
        let Some(s) = &e.source else {
            warn(&format!(
                "Found package '{}', but it was not installed from a flake, so it can't be checked for upgrades!",
                e.identifier()
            ));
            continue;
        };
        if is_locked(&s.original_url) {
            warn(&format!(
                "Found package '{}', but it was installed from a locked flake reference so it can't be upgraded!",
                e.identifier()
            ));
            continue;
        }
        chosen.push((n.clone(), s.clone()));
    }
    if chosen.is_empty() {
        warn("Found some packages but none of them could be upgraded.");
        return Ok(());
    }
    let nix = crate::cmd::instantiate::NixInstallableArgs {
        eval_args: a.eval_args.clone(),
        flake: a.flake.clone(),
        ..Default::default()
    };
    let installables: Vec<String> = chosen
        .iter()
        .map(|(_, s)| {
            format!(
                "{}#{}{}",
                s.original_url,
                s.attr_path,
                outputs_suffix(&s.outputs)
            )
        })
        .collect();
    let resolved = resolve(ctx, &installables, &nix, &a.flake)?;
    let mut todo = Vec::new();
    for ((name, old), r) in chosen.iter().zip(resolved) {
        let new_src = r.source.clone().expect("a flake installable");
        if is_locked(&new_src.url) && old.url == new_src.url {
            continue;
        }
        eprintln!(
            "upgrading '{}' from flake '{}' to '{}'",
            old.attr_path, old.url, new_src.url
        );
        todo.push((name.clone(), r));
    }
    let rs: Vec<Resolved> = todo
        .iter()
        .map(|(_, r)| Resolved {
            targets: r.targets.clone(),
            source: r.source.clone(),
            priority: r.priority,
        })
        .collect();
    let paths = realise(ctx, &rs)?;
    for ((name, r), p) in todo.into_iter().zip(paths) {
        let e = manifest.elements.get_mut(&name).expect("matched");
        e.source = r.source;
        e.store_paths = p;
    }
    update(&*store, &profile, &manifest)
}

fn list(ctx: &Context, a: &ListArgs) -> Result<()> {
    let profile = profile_path(ctx, &a.profile)?;
    let store = ctx.store()?;
    let manifest = Manifest::read(ctx, &*store, &profile)?;
    if a.json {
        println!("{}", manifest.to_json(&*store));
        return Ok(());
    }
    let mut out = String::new();
    for (i, (name, e)) in manifest.elements.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out += &format!(
            "Name:               {ANSI_BOLD}{name}{ANSI_NORMAL}{}\n",
            if e.active {
                String::new()
            } else {
                format!(" {ANSI_RED}(inactive){ANSI_NORMAL}")
            }
        );
        if let Some(s) = &e.source {
            out += &format!(
                "Flake attribute:    {}{}\n",
                s.attr_path,
                outputs_suffix(&s.outputs)
            );
            out += &format!("Original flake URL: {}\n", s.original_url);
            out += &format!("Locked flake URL:   {}\n", s.url);
        }
        let paths: Vec<String> = e.store_paths.iter().map(|p| store.print(p)).collect();
        out += &format!("Store paths:        {}\n", paths.join(" "));
    }
    print!("{out}");
    Ok(())
}

/// `YYYY-MM-DD` of a time (UTC).
fn date(t: i64) -> String {
    let d = rix_eval::builtins::utc_timestamp(t);
    format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8])
}

fn print_diff(prev: &Manifest, cur: &Manifest, indent: &str, out: &mut String) {
    let mut changes = false;
    let names: BTreeSet<&String> = prev.elements.keys().chain(cur.elements.keys()).collect();
    for n in names {
        match (prev.elements.get(n), cur.elements.get(n)) {
            (None, Some(j)) => {
                *out += &format!("{indent}{}: ∅ -> {}\n", j.identifier(), j.versions());
                changes = true;
            }
            (Some(i), None) => {
                *out += &format!("{indent}{}: {} -> ∅\n", i.identifier(), i.versions());
                changes = true;
            }
            (Some(i), Some(j)) => {
                let (v1, v2) = (i.versions(), j.versions());
                if v1 != v2 {
                    *out += &format!("{indent}{}: {v1} -> {v2}\n", i.identifier());
                    changes = true;
                }
            }
            (None, None) => {}
        }
    }
    if !changes {
        *out += &format!("{indent}No changes.\n");
    }
}

fn history(ctx: &Context, a: &ProfileArg) -> Result<()> {
    let profile = profile_path(ctx, a)?;
    let store = ctx.store()?;
    let (gens, cur) = profiles::find_generations(&profile)?;
    let mut out = String::new();
    let mut prev: Option<(u64, Manifest)> = None;
    for (i, g) in gens.iter().enumerate() {
        let manifest = Manifest::read(ctx, &*store, &g.path)?;
        if i > 0 {
            out.push('\n');
        }
        out += &format!(
            "Version {}{}{ANSI_NORMAL} ({}){}:\n",
            if Some(g.number) == cur {
                ANSI_GREEN
            } else {
                ANSI_BOLD
            },
            g.number,
            date(g.creation_time),
            prev.as_ref()
                .map_or(String::new(), |(n, _)| format!(" <- {n}"))
        );
        print_diff(
            prev.as_ref().map_or(&Manifest::default(), |(_, m)| m),
            &manifest,
            "  ",
            &mut out,
        );
        prev = Some((g.number, manifest));
    }
    print!("{out}");
    Ok(())
}

/// Nix's `printClosureDiff`: by package name, the versions added and
/// removed and the change in size (when at least 8 KiB).
pub fn closure_diff(
    store: &dyn Store,
    before: &StorePath,
    after: &StorePath,
    indent: &str,
) -> Result<String> {
    type Grouped = BTreeMap<String, BTreeMap<String, BTreeSet<StorePath>>>;
    let re = regex::Regex::new(r"^(.*)-([a-z]+|lib32|lib64)$").expect("a valid regex");
    let group = |top: &StorePath| -> Result<Grouped> {
        let mut g = Grouped::new();
        for p in store.closure(&BTreeSet::from([top.clone()]))? {
            let name = match re.captures(p.name()) {
                Some(m) => m[1].to_owned(),
                None => p.name().to_owned(),
            };
            let (n, v) = drv_name(&name);
            g.entry(n.to_owned())
                .or_default()
                .entry(v.to_owned())
                .or_default()
                .insert(p.clone());
        }
        Ok(g)
    };
    let (b, a) = (group(before)?, group(after)?);
    let names: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let empty = BTreeMap::new();
    let mut out = String::new();
    for name in names {
        let bv = b.get(name).unwrap_or(&empty);
        let av = a.get(name).unwrap_or(&empty);
        let size = |vs: &BTreeMap<String, BTreeSet<StorePath>>| -> Result<u64> {
            let mut sum = 0;
            for paths in vs.values() {
                for p in paths {
                    sum += store.path_info(p)?.nar_size;
                }
            }
            Ok(sum)
        };
        let delta = size(av)? as i64 - size(bv)? as i64;
        let show_delta = delta.abs() >= 8 * 1024;
        let removed: BTreeSet<String> = bv
            .keys()
            .filter(|v| !av.contains_key(*v))
            .cloned()
            .collect();
        let added: BTreeSet<String> = av
            .keys()
            .filter(|v| !bv.contains_key(*v))
            .cloned()
            .collect();
        if show_delta || !removed.is_empty() || !added.is_empty() {
            let mut items = Vec::new();
            if !removed.is_empty() || !added.is_empty() {
                items.push(format!(
                    "{} → {}",
                    show_versions(&removed),
                    show_versions(&added)
                ));
            }
            if show_delta {
                items.push(format!(
                    "{}{:+.1} KiB{ANSI_NORMAL}",
                    if delta > 0 { ANSI_RED } else { ANSI_GREEN },
                    delta as f64 / 1024.0
                ));
            }
            out += &format!("{indent}{name}: {}\n", items.join(", "));
        }
    }
    Ok(out)
}

fn diff_closures(ctx: &Context, a: &ProfileArg) -> Result<()> {
    let profile = profile_path(ctx, a)?;
    let store = ctx.store()?;
    let (gens, _) = profiles::find_generations(&profile)?;
    let mut out = String::new();
    let mut first = true;
    for w in gens.windows(2) {
        if !first {
            out.push('\n');
        }
        first = false;
        out += &format!("Version {} -> {}:\n", w[0].number, w[1].number);
        let before = profile_store_path(&*store, &w[0].path)?;
        let after = profile_store_path(&*store, &w[1].path)?;
        out += &closure_diff(&*store, &before, &after, "  ")?;
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(
            name_from_url("path:/tmp/x#packages.x86_64-linux.hello").as_deref(),
            Some("hello")
        );
        assert_eq!(
            name_from_url("path:/tmp/x#packages.x86_64-linux.default").as_deref(),
            Some("x")
        );
        assert_eq!(
            name_from_url("github:NixOS/nixpkgs#legacyPackages.x.default").as_deref(),
            Some("nixpkgs")
        );
        assert_eq!(
            name_from_url("git+file:///a/b?dir=sub#x").as_deref(),
            Some("sub")
        );
        assert_eq!(drv_name("hello-2.10"), ("hello", "2.10"));
        assert_eq!(drv_name("foo-bar"), ("foo-bar", ""));
    }
}
