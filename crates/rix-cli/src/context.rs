//! Options every command shares (`--store`, `--option`), settings, and opening
//! the store they select.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use rix_remote::{DaemonLogger, DaemonOptions, DaemonStore};
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::settings::Settings;
use rix_store::store_api::Store;

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// The store to use: a directory R (a store rooted at R), `local?root=R`,
    /// `local?store=DIR&state=DIR2&log=DIR3`, `daemon` (the Nix daemon's socket),
    /// `unix:///path/to/socket`, or `auto`. Default (`auto`): the `store`
    /// setting, else /nix/store if writable, else the daemon if its socket
    /// exists, else a store under $XDG_DATA_HOME/rix/root.
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
#[derive(Clone)]
pub struct Context {
    pub settings: Settings,
    pub(crate) store_url: Option<String>,
    /// The `--option` pairs of the command line, passed on to a daemon.
    pub(crate) overrides: Vec<(String, String)>,
}

/// The daemon a store URL names, if it names one: `daemon`, `unix://…`, or
/// `auto` when Nix's rule picks the daemon.
fn daemon_url(url: &str) -> Option<String> {
    if url == "auto" {
        return auto_daemon().then(|| "daemon".to_owned());
    }
    (url == "daemon" || url.starts_with("daemon?") || url.starts_with("unix://"))
        .then(|| url.to_owned())
}

/// Nix's `auto`: the daemon when the local state directory is not writable by
/// this user and the daemon's socket exists.
fn auto_daemon() -> bool {
    matches!(
        rix_remote::auto_store(
            &rix_remote::url::default_state_dir(),
            &rix_remote::default_socket_path()
        ),
        rix_remote::AutoStore::Daemon(_)
    )
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
            overrides: pairs,
        })
    }

    /// This context with settings set by the command itself after it started
    /// (a flake's accepted `nixConfig`): they win over every other source, as
    /// Nix's `globalConfig.set`, and a daemon is told of them.
    pub fn with_settings(&self, pairs: &[(String, String)], origin: &str) -> Context {
        let mut ctx = self.clone();
        for (name, value) in pairs {
            ctx.settings.set_from(name, value, origin);
            ctx.overrides.push((name.clone(), value.clone()));
        }
        ctx
    }

    /// The daemon the selected store is, if it is one (see `--store`).
    pub fn daemon_url(&self) -> Option<String> {
        self.daemon_choice()
    }

    /// Why the daemon at `url` is used (`rix store info`).
    pub fn daemon_why(&self, url: &str) -> String {
        match &self.store_url {
            Some(given) => format!("chosen with --store or the 'store' setting ({given})"),
            None => format!(
                "/nix/store is not writable by this user and the daemon's socket exists ({url})"
            ),
        }
    }

    fn daemon_choice(&self) -> Option<String> {
        match &self.store_url {
            Some(url) => daemon_url(url),
            None if !dir_writable(Path::new("/nix/store")) && auto_daemon() => {
                Some("daemon".to_owned())
            }
            None => None,
        }
    }

    /// Opens the selected store, whichever kind it is; daemon log lines and
    /// activities go to `logger`.
    pub fn open_any_store(&self, logger: Arc<dyn DaemonLogger>) -> Result<Arc<dyn Store>> {
        if let Some(url) = self.store_url.as_deref() {
            if let Some(store) = self.open_ssh(url, logger.clone())? {
                return Ok(store);
            }
        }
        match self.daemon_choice() {
            Some(url) => Ok(Arc::new(self.connect(&url, logger)?)),
            None => Ok(Arc::new(self.open_store()?)),
        }
    }

    /// The store at `url` (a local store or a daemon), or `None` when `url` is
    /// not a store's (a binary cache's, say).
    pub fn open_store_url(&self, url: &str) -> Result<Option<Arc<dyn Store>>> {
        if let Some(store) = self.open_ssh(url, Arc::new(rix_remote::StderrLogger::default()))? {
            return Ok(Some(store));
        }
        if let Some(daemon) = daemon_url(url) {
            return Ok(Some(Arc::new(self.open_daemon(&daemon)?)));
        }
        let Ok(layout) = StoreLayout::from_url(url) else {
            return Ok(None);
        };
        let dir = layout.real_store_dir.clone();
        let store = LocalStore::open(layout)
            .with_context(|| format!("cannot open the store at {}", dir.display()))?;
        if self.settings.experimental_feature("ca-derivations") {
            store.enable_ca_derivations()?;
        }
        Ok(Some(Arc::new(store)))
    }

    /// The `ssh://` or `ssh-ng://` store at `url`, or `None` when `url` is not one.
    fn open_ssh(&self, url: &str, logger: Arc<dyn DaemonLogger>) -> Result<Option<Arc<dyn Store>>> {
        if rix_remote::ssh_url::SshUrl::parse(url).is_none() {
            return Ok(None);
        }
        rix_remote::ssh_url::open_ssh_store(url, self.daemon_options()?, logger)
            .with_context(|| format!("cannot open the store '{url}'"))
    }

    /// The selected store behind the store interface, with the daemon's
    /// messages printed as Nix's client prints them.
    pub fn store(&self) -> Result<Arc<dyn Store>> {
        self.open_any_store(Arc::new(rix_remote::StderrLogger::default()))
    }

    /// What a daemon is told of this command's settings (`SetOptions`).
    pub fn daemon_options(&self) -> Result<DaemonOptions> {
        let s = &self.settings;
        Ok(DaemonOptions {
            keep_failed: s.get_bool("keep-failed")?,
            keep_going: s.get_bool("keep-going")?,
            max_jobs: s.max_jobs()? as u32,
            max_silent_time: s.get_u64("max-silent-time")? as u32,
            build_cores: s.cores()? as u32,
            overrides: self.overrides.clone(),
            ..DaemonOptions::default()
        })
    }

    /// The selected daemon, opened as itself (for its operations that are not
    /// on the store interface: `VerifyStore`, `OptimiseStore`, builds), with
    /// the daemon's messages printed as Nix's client prints them.
    pub fn open_daemon(&self, url: &str) -> Result<DaemonStore> {
        self.connect(url, Arc::new(rix_remote::StderrLogger::default()))
    }

    /// The daemon at `url`, told this command's settings, its messages to `logger`.
    fn connect(&self, url: &str, logger: Arc<dyn DaemonLogger>) -> Result<DaemonStore> {
        DaemonStore::open_url(url, self.daemon_options()?, logger)
            .with_context(|| format!("cannot connect to the daemon at '{url}'"))
    }

    /// Where the selected store's files are on this machine: a local store's
    /// layout, or for a daemon the directories its client reads as Nix's does
    /// (the store at its logical path unless `real`/`root` say otherwise, build
    /// logs under `log`, `<root>/nix/var/log/nix`, `NIX_LOG_DIR` or
    /// /nix/var/log/nix).
    pub fn layout(&self) -> Result<StoreLayout> {
        match self.daemon_choice() {
            Some(url) => daemon_layout(&url),
            None => Ok(self.store_choice()?.layout),
        }
    }

    /// Decides which store to use (see `--store`).
    pub fn store_choice(&self) -> Result<StoreChoice> {
        if let Some(url) = self.daemon_choice() {
            anyhow::bail!(
                "the store '{url}' is a daemon's, and this command needs a store on this machine \
                 (pass --store with a local store)"
            );
        }
        if let Some(url) = self.store_url.as_deref().filter(|u| *u != "auto") {
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
        if self.settings.experimental_feature("ca-derivations") {
            store.enable_ca_derivations()?;
        }
        store.set_secret_key_files(
            self.settings
                .get_list("secret-key-files")
                .into_iter()
                .map(std::path::PathBuf::from)
                .collect(),
        );
        Ok(store)
    }
}

/// The layout a Nix client gives the daemon store `url` (`LocalFSStoreConfig`:
/// `real`, `root`, `state`, `log`; Nix's defaults otherwise).
pub fn daemon_layout(url: &str) -> Result<StoreLayout> {
    let parsed = rix_remote::DaemonUrl::parse(url)?
        .with_context(|| format!("'{url}' is not a daemon's store URL"))?;
    let param = |k: &str| parsed.params.get(k).filter(|v| !v.is_empty());
    let root = param("root").map(PathBuf::from);
    let under_root = |rel: &str| root.as_ref().map(|r| r.join(rel));
    let store_dir = parsed.store_dir;
    let real_store_dir = param("real")
        .map(PathBuf::from)
        .or_else(|| under_root(store_dir.as_str().trim_start_matches('/')))
        .unwrap_or_else(|| PathBuf::from(store_dir.as_str()));
    let state_dir = param("state")
        .map(PathBuf::from)
        .or_else(|| under_root("nix/var/nix"))
        .unwrap_or_else(rix_remote::url::default_state_dir);
    let log_dir = param("log")
        .map(PathBuf::from)
        .or_else(|| under_root("nix/var/log/nix"))
        .or_else(|| {
            std::env::var_os("NIX_LOG_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/nix/var/log/nix"));
    Ok(StoreLayout {
        store_dir,
        real_store_dir,
        state_dir,
        log_dir,
        root: None,
    })
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
