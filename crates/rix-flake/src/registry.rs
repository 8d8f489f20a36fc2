//! Flake registries: names (`nixpkgs`, `flake:foo/branch`) mapped to flake
//! references, in Nix's JSON format (version 2). Looked up in order: the
//! command line's (`--override-flake`), the user's
//! (`$XDG_CONFIG_HOME/nix/registry.json`), the system's
//! (`$NIX_CONF_DIR/registry.json`), the global one (the `flake-registry`
//! setting). Nix's global registry is downloaded from the network; here it
//! is empty unless `flake-registry` names a file. Mirrors
//! `libfetchers/registry.cc`.

use std::path::{Path, PathBuf};

use rix_fetch::input::json_to_attrs;
use rix_formats::flake_ref::{AttrValue, Attrs, FlakeRef, InputType};
use serde_json::{Map, Value as Json};

use crate::error::{FlakeError, Result};
use crate::lock_file::{attrs_json, pretty};
use crate::reference::{self, warn};
use crate::FlakeSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryType {
    Flag,
    User,
    System,
    Global,
    Custom,
}

/// One mapping (Nix's `Registry::Entry`).
#[derive(Clone, Debug)]
pub struct Entry {
    pub from: FlakeRef,
    pub to: FlakeRef,
    /// `dir` of the target.
    pub extra_attrs: Attrs,
    pub exact: bool,
}

#[derive(Clone, Debug)]
pub struct Registry {
    pub ty: RegistryType,
    pub entries: Vec<Entry>,
}

fn input_ref(attrs: Attrs) -> Result<FlakeRef> {
    let r = FlakeRef::from_attrs(&attrs)?;
    reference::to_input(&r)?;
    Ok(r)
}

impl Registry {
    pub fn new(ty: RegistryType) -> Self {
        Registry {
            ty,
            entries: Vec::new(),
        }
    }

    /// Reads a registry file; a missing file is an empty registry, a bad
    /// one a warning and an empty registry (`Registry::read`).
    pub fn read(path: &Path, ty: RegistryType) -> Registry {
        let mut reg = Registry::new(ty);
        let Ok(text) = std::fs::read_to_string(path) else {
            return reg;
        };
        let r = (|| -> Result<Vec<Entry>> {
            let json: Json = serde_json::from_str(&text).map_err(|e| {
                FlakeError::msg(format!(
                    "cannot parse flake registry '{}': {e}",
                    path.display()
                ))
            })?;
            let version = json.get("version").and_then(Json::as_i64).unwrap_or(0);
            if version != 2 {
                return Err(FlakeError::msg(format!(
                    "flake registry '{}' has unsupported version {version}",
                    path.display()
                )));
            }
            let mut entries = Vec::new();
            for i in json
                .get("flakes")
                .and_then(Json::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let mut to = json_to_attrs(i.get("to").unwrap_or(&Json::Null))?;
                let mut extra = Attrs::new();
                if let Some(d) = to.remove("dir") {
                    extra.insert("dir".into(), d);
                }
                let from = json_to_attrs(i.get("from").unwrap_or(&Json::Null))?;
                entries.push(Entry {
                    from: input_ref(from)?,
                    to: input_ref(to)?,
                    extra_attrs: extra,
                    exact: i.get("exact").and_then(Json::as_bool).unwrap_or(false),
                });
            }
            Ok(entries)
        })();
        match r {
            Ok(e) => reg.entries = e,
            Err(e) => warn(&format!(
                "cannot read flake registry '{}': {e}",
                path.display()
            )),
        }
        reg
    }

    /// The file's text (`Registry::write`: `dump(2)`, no final newline).
    pub fn to_text(&self) -> String {
        let mut flakes = Vec::new();
        for e in &self.entries {
            let mut obj = Map::new();
            if e.exact {
                obj.insert("exact".into(), Json::Bool(true));
            }
            obj.insert("from".into(), attrs_json(&e.from.attrs));
            let mut to = e.to.attrs.clone();
            to.extend(e.extra_attrs.clone());
            obj.insert("to".into(), attrs_json(&to));
            flakes.push(Json::Object(obj));
        }
        let mut top = Map::new();
        top.insert("flakes".into(), Json::Array(flakes));
        top.insert("version".into(), Json::from(2));
        pretty(&Json::Object(top))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(path, self.to_text())
            .map_err(|e| FlakeError::msg(format!("writing file '{}': {e}", path.display())))
    }

    pub fn add(&mut self, from: FlakeRef, to: FlakeRef, extra_attrs: Attrs) {
        self.entries.push(Entry {
            from,
            to,
            extra_attrs,
            exact: false,
        });
    }

    /// Removes the entries from `from` (`Registry::remove`).
    pub fn remove(&mut self, from: &FlakeRef) {
        self.entries.retain(|e| e.from.attrs != from.attrs);
    }
}

/// `~/.config/nix/registry.json` (`getUserRegistryPath`).
pub fn user_registry_path() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/.config"));
    config.join("nix/registry.json")
}

/// `$NIX_CONF_DIR/registry.json` (`/etc/nix`).
pub fn system_registry_path() -> PathBuf {
    let dir = std::env::var_os("NIX_CONF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/nix"));
    dir.join("registry.json")
}

/// The registries in lookup order (`getRegistries`).
pub fn registries(settings: &FlakeSettings) -> Vec<Registry> {
    let mut flag = Registry::new(RegistryType::Flag);
    flag.entries = settings.flag_registry.clone();
    let mut out = vec![
        flag,
        Registry::read(&settings.user_registry, RegistryType::User),
        Registry::read(&settings.system_registry, RegistryType::System),
    ];
    let global = &settings.flake_registry;
    let global = global.strip_prefix("file://").unwrap_or(global);
    if global.starts_with('/') {
        out.push(Registry::read(Path::new(global), RegistryType::Global));
    } else if !global.is_empty() {
        warn(&format!(
            "the global flake registry '{global}' is not read: rix reads registries from files only (set 'flake-registry' to a path)"
        ));
        out.push(Registry::new(RegistryType::Global));
    } else {
        out.push(Registry::new(RegistryType::Global));
    }
    out
}

fn get_str<'a>(r: &'a FlakeRef, k: &str) -> Option<&'a str> {
    match r.attrs.get(k) {
        Some(AttrValue::Str(s)) => Some(s),
        _ => None,
    }
}

/// `Input::contains`: equal, or equal once `ref` and `rev` are dropped.
fn contains(from: &FlakeRef, input: &FlakeRef) -> bool {
    if from.attrs == input.attrs {
        return true;
    }
    let mut a = input.attrs.clone();
    a.remove("ref");
    a.remove("rev");
    from.attrs == a
}

/// `Input::applyOverrides`: the target with the looked-up name's `ref`/`rev`.
fn apply_overrides(to: &FlakeRef, r: Option<&str>, rev: Option<&str>) -> Result<FlakeRef> {
    let mut out = to.clone();
    match to.input_type {
        Some(InputType::Git) | Some(InputType::Mercurial) => {
            if let Some(rev) = rev {
                out.attrs.insert("rev".into(), AttrValue::Str(rev.into()));
            }
            if let Some(r) = r {
                out.attrs.insert("ref".into(), AttrValue::Str(r.into()));
            }
        }
        Some(
            InputType::Github | InputType::Gitlab | InputType::Sourcehut | InputType::Indirect,
        ) => {
            if let Some(rev) = rev {
                out.attrs.insert("rev".into(), AttrValue::Str(rev.into()));
                out.attrs.remove("ref");
            }
            if let Some(r) = r {
                out.attrs.insert("ref".into(), AttrValue::Str(r.into()));
                out.attrs.remove("rev");
            }
        }
        _ => {
            if let Some(r) = r {
                return Err(FlakeError::msg(format!(
                    "don't know how to set branch/tag name of input '{to}' to '{r}'"
                )));
            }
            if let Some(rev) = rev {
                return Err(FlakeError::msg(format!(
                    "don't know how to set revision of input '{to}' to '{rev}'"
                )));
            }
        }
    }
    Ok(out)
}

/// Resolves an indirect reference through the registries
/// (`FlakeRef::resolve`, `lookupInRegistries`).
pub fn resolve(settings: &FlakeSettings, r: &FlakeRef) -> Result<FlakeRef> {
    let regs = registries(settings);
    let mut input = FlakeRef {
        dir: String::new(),
        ..r.clone()
    };
    let mut extra = Attrs::new();
    let mut n = 0;
    'restart: loop {
        n += 1;
        if n > 100 {
            return Err(FlakeError::msg(format!(
                "cycle detected in flake registry for '{input}'"
            )));
        }
        for reg in &regs {
            for e in &reg.entries {
                if e.exact {
                    if e.from.attrs == input.attrs {
                        input = e.to.clone();
                        extra = e.extra_attrs.clone();
                        continue 'restart;
                    }
                } else if contains(&e.from, &input) {
                    let r = (get_str(&e.from, "ref").is_none())
                        .then(|| get_str(&input, "ref"))
                        .flatten()
                        .map(str::to_owned);
                    let rev = (get_str(&e.from, "rev").is_none())
                        .then(|| get_str(&input, "rev"))
                        .flatten()
                        .map(str::to_owned);
                    input = apply_overrides(&e.to, r.as_deref(), rev.as_deref())?;
                    extra = e.extra_attrs.clone();
                    continue 'restart;
                }
            }
        }
        break;
    }
    if reference::is_indirect(&input) {
        return Err(FlakeError::msg(format!(
            "cannot find flake '{input}' in the flake registries"
        )));
    }
    let dir = match extra.get("dir") {
        Some(AttrValue::Str(d)) => d.clone(),
        _ => r.dir.clone(),
    };
    Ok(FlakeRef { dir, ..input })
}
