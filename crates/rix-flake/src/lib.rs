//! Flakes: `flake.nix` read, its inputs locked into `flake.lock`, its
//! outputs evaluated with `self` and the inputs. Mirrors Nix 2.26's
//! `libflake`.
//!
//! Layer: above the evaluator (flakes are evaluated) and the fetchers
//! (inputs are fetched), below the command line. The evaluator gets
//! `builtins.getFlake` from here through `EvalOptions::extra_primops`.
//!
//! | module | concept | mirrors in Nix |
//! | --- | --- | --- |
//! | [`lock_file`] | `flake.lock` (v7) read and printed byte for byte, its graph, diff | `lockfile.cc` |
//! | [`reference`] | flake references on this machine: base directory, Git work trees, `#fragment`, `^outputs` | `flakeref.cc` |
//! | [`registry`] | flake registries (flag, user, system, global) and lookups | `registry.cc` |
//! | [`flake`] | reading `flake.nix`: description, inputs, outputs' formals, `nixConfig` | `readFlake` |
//! | [`lock`] | computing and writing the lock file (`follows`, overrides, updates) | `lockFlake` |
//! | [`call`] | evaluating the outputs with `self` and inputs; `builtins.getFlake` | `callFlake`, `call-flake.nix` |
//! | [`config`] | `nixConfig`: trusted settings | `ConfigFile::apply` |

pub mod call;
pub mod config;
pub mod error;
pub mod eval_cache;
pub mod flake;
pub mod lock;
pub mod lock_file;
pub mod reference;
pub mod registry;

use std::cell::RefCell;
use std::path::PathBuf;

pub use call::{call_flake, get_flake_primop};
pub use error::{FlakeError, Result};
pub use flake::Flake;
pub use lock::{lock_flake, LockFlags, LockedFlake};
pub use lock_file::LockFile;

/// The settings flakes read (Nix's `flake::Settings` and the registry paths).
#[derive(Debug, Clone)]
pub struct FlakeSettings {
    pub fetch: rix_fetch::FetchSettings,
    /// `use-registries` (true).
    pub use_registries: bool,
    /// `accept-flake-config` (false).
    pub accept_flake_config: bool,
    /// `flake-registry`: the global registry's file. Nix's default is a URL
    /// on the network; rix's is empty (no global registry).
    pub flake_registry: String,
    pub user_registry: PathBuf,
    pub system_registry: PathBuf,
    /// `--override-flake FROM TO`.
    pub flag_registry: Vec<registry::Entry>,
    /// The `nixConfig` settings a flake set and that were accepted.
    pub accepted_config: RefCell<Vec<(String, String)>>,
}

impl FlakeSettings {
    /// Defaults, with the registries where Nix keeps them.
    pub fn from_env(fetch: rix_fetch::FetchSettings) -> Self {
        FlakeSettings {
            fetch,
            use_registries: true,
            accept_flake_config: false,
            flake_registry: String::new(),
            user_registry: registry::user_registry_path(),
            system_registry: registry::system_registry_path(),
            flag_registry: Vec::new(),
            accepted_config: RefCell::new(Vec::new()),
        }
    }
}
