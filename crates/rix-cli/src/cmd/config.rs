//! `rix config show`: the effective settings (as `nix config show`), and
//! where each came from (Nix's and rix's configuration files, the
//! environment, `--option`).

use std::io::Write;

use anyhow::{bail, Result};
use clap::Subcommand;
use rix_store::settings::Settings;

use crate::context::Context;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings as `name = value` lines, or one setting's
    /// value (like `nix config show`).
    Show {
        /// Print only this setting's value.
        name: Option<String>,
        /// Print a JSON object: each setting's value, default and origin.
        #[arg(long)]
        json: bool,
        /// Follow each line with where its value came from.
        #[arg(long)]
        origins: bool,
    },
}

impl ConfigCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        let Self::Show {
            name,
            json,
            origins,
        } = self;
        let settings = &ctx.settings;
        let origin = |n: &str| settings.origin(n).unwrap_or("default").to_owned();
        let mut out = std::io::stdout().lock();
        if let Some(name) = name {
            let all = settings.all();
            let Some((_, value)) = all.iter().find(|(n, _)| n == name) else {
                bail!("could not find setting '{name}'");
            };
            if *json {
                writeln!(out, "{}", serde_json::Value::String(value.clone()))?;
            } else if *origins {
                writeln!(out, "{value}\t# {}", origin(name))?;
            } else {
                writeln!(out, "{value}")?;
            }
            return Ok(());
        }
        if *json {
            let map: serde_json::Map<String, serde_json::Value> = settings
                .all()
                .into_iter()
                .map(|(n, value)| {
                    let entry = serde_json::json!({
                        "value": value,
                        "defaultValue": Settings::default_of(&n),
                        "origin": origin(&n),
                    });
                    (n, entry)
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Object(map))?;
            return Ok(());
        }
        for (n, value) in settings.all() {
            if *origins {
                writeln!(out, "{n} = {value}\t# {}", origin(&n))?;
            } else {
                writeln!(out, "{n} = {value}")?;
            }
        }
        Ok(())
    }
}
