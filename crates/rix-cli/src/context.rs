//! Options every command shares (`--store`, `--option`), settings, and opening
//! the store they select.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::settings::Settings;

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// The store to use: a directory R (a store rooted at R), `local?root=R`, or
    /// `local?store=DIR&state=DIR2&log=DIR3`. Default: the `store` setting, else
    /// /nix/store if writable, else a store under $XDG_DATA_HOME/rix/root.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Set a setting, as in rix.conf (`--option max-jobs 4`).
    #[arg(long, global = true, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub option: Vec<String>,
}

/// The `--option NAME VALUE` pairs of a command line, in order, up to `--`.
fn options_in(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<(String, String)> {
    let mut args = args.into_iter();
    let mut out = Vec::new();
    while let Some(a) = args.next() {
        if a == "--" {
            break;
        }
        if a == "--option" {
            if let (Some(name), Some(value)) = (args.next(), args.next()) {
                out.push((
                    name.to_string_lossy().into_owned(),
                    value.to_string_lossy().into_owned(),
                ));
            }
        }
    }
    out
}

/// Settings plus the store choice, shared by all commands.
pub struct Context {
    pub settings: Settings,
    store_url: Option<String>,
}

/// Which store is used, and why.
pub struct StoreChoice {
    pub layout: StoreLayout,
    pub why: String,
}

impl Context {
    pub fn new(args: &GlobalArgs) -> Result<Self> {
        let mut settings = Settings::load_default()?;
        // clap keeps only the `--option`s of the last command level that has any
        // (a global argument given after the subcommand replaces those before it),
        // so they are read from the command line itself, in order; clap's own list
        // is the fallback for callers that build `GlobalArgs` by hand.
        let from_argv = options_in(std::env::args_os().skip(1));
        let pairs: Vec<(String, String)> = if from_argv.len() * 2 >= args.option.len() {
            from_argv
        } else {
            args.option
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect()
        };
        for (name, value) in &pairs {
            settings.set(name, value);
        }
        for name in &settings.unknown {
            eprintln!("warning: unknown setting '{name}'");
        }
        let store_url = args
            .store
            .clone()
            .or_else(|| Some(settings.get("store")).filter(|s| !s.is_empty()));
        Ok(Self {
            settings,
            store_url,
        })
    }

    /// Decides which store to use (see `--store`).
    pub fn store_choice(&self) -> Result<StoreChoice> {
        if let Some(url) = &self.store_url {
            let layout = StoreLayout::from_url(url)?;
            return Ok(StoreChoice {
                layout,
                why: format!("chosen with --store or the 'store' setting ({url})"),
            });
        }
        if dir_writable(Path::new("/nix/store")) || creatable(Path::new("/nix")) {
            return Ok(StoreChoice {
                layout: StoreLayout::rooted(Path::new("/")),
                why: "/nix/store is writable".into(),
            });
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .context("neither XDG_DATA_HOME nor HOME is set: pass --store")?;
        let root = data.join("rix/root");
        Ok(StoreChoice {
            layout: StoreLayout::rooted(&root),
            why: format!(
                "/nix/store is not writable, so a store rooted at {} is used",
                root.display()
            ),
        })
    }

    pub fn open_store(&self) -> Result<LocalStore> {
        let choice = self.store_choice()?;
        let dir = choice.layout.real_store_dir.clone();
        let store = LocalStore::open(choice.layout)
            .with_context(|| format!("cannot open the store at {}", dir.display()))?;
        store.set_auto_optimise(self.settings.get_bool("auto-optimise-store")?);
        Ok(store)
    }
}

fn dir_writable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
}

fn creatable(p: &Path) -> bool {
    !p.exists() && p.parent().is_some_and(dir_writable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_before_and_after_the_subcommand_all_count_in_order() {
        let argv = [
            "--option", "cores", "2", "build", "x.drv", "--option", "max-jobs", "3", "--option",
            "cores", "4", "--", "--option", "a", "b",
        ];
        let got = options_in(argv.iter().map(std::ffi::OsString::from));
        let want = [("cores", "2"), ("max-jobs", "3"), ("cores", "4")];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
        );
    }
}
