//! A flake's `nixConfig`: settings it asks for, applied when trusted
//! (a few harmless ones always; the rest with `accept-flake-config`, or a
//! saved answer in `~/.local/share/nix/trusted-settings.json`), otherwise
//! ignored with Nix's warning. Mirrors `ConfigFile::apply` (`config.cc`);
//! rix asks no questions (it runs as Nix does without a terminal).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::flake::{ConfigValue, Flake};
use crate::reference::warn;
use crate::FlakeSettings;

const ALWAYS_TRUSTED: &[&str] = &[
    "bash-prompt",
    "bash-prompt-prefix",
    "bash-prompt-suffix",
    "flake-registry",
    "commit-lock-file-summary",
    "commit-lockfile-summary",
];

/// A setting's value as text.
pub fn value_string(v: &ConfigValue) -> String {
    match v {
        ConfigValue::Str(s) => s.clone(),
        ConfigValue::Int(i) => i.to_string(),
        ConfigValue::Bool(b) => b.to_string(),
        ConfigValue::List(l) => {
            let l: Vec<&str> = l
                .iter()
                .map(String::as_str)
                .skip_while(|s| s.is_empty())
                .collect();
            l.join(" ")
        }
    }
}

fn trusted_list_path() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_default();
    data.join("nix/trusted-settings.json")
}

fn trusted_list() -> BTreeMap<String, BTreeMap<String, bool>> {
    std::fs::read_to_string(trusted_list_path())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Decides which of the flake's settings apply and records them in
/// `settings.accepted_config` (the command applies those it knows).
pub fn apply(settings: &FlakeSettings, flake: &Flake) -> Result<()> {
    for (name, value) in &flake.config {
        let base = name.strip_prefix("extra-").unwrap_or(name);
        let text = value_string(value);
        if !ALWAYS_TRUSTED.contains(&base) && !settings.accept_flake_config {
            let saved = trusted_list().get(name).and_then(|m| m.get(&text)).copied();
            let trusted = match saved {
                Some(t) => {
                    eprintln!("Using saved setting for '{name} = {text}' from ~/.local/share/nix/trusted-settings.json.");
                    t
                }
                None => false,
            };
            if !trusted {
                warn(&format!(
                    "ignoring untrusted flake configuration setting '{name}'.\nPass '--accept-flake-config' to trust it"
                ));
                continue;
            }
        }
        settings
            .accepted_config
            .borrow_mut()
            .push((name.clone(), text));
    }
    Ok(())
}
