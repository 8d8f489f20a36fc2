//! rix's realisation engine: from `.drv` files to valid output paths.
//!
//! | module | concept |
//! | --- | --- |
//! | [`plan`] | which derivations need building, and their dependency edges |
//! | [`realise`] | running a plan in dependency order, `max_jobs` at a time |
//! | [`builder`] | running one builder and registering its outputs |
//! | [`resolve`] | content-addressed derivations: realised outputs, resolution, early cutoff, realisations |
//! | [`ca_output`] | building a floating content-addressed derivation: scratch paths, content address, move into place |
//! | [`basic`] | building a derivation sent in full (`BuildDerivation` of the worker and serve protocols) |
//! | [`builtins`] | builders built into rix: `builtin:fetchurl` |
//! | [`drv_diff`] | how two derivations differ, as nix-diff says it (`rix why-rebuild`) |
//! | [`explain`] | why each derivation of a plan is built (`rix build --explain`) |
//! | [`env`] | the builder's environment, exactly as Nix sets it |
//! | [`machines`] | remote build machines: the `builders` setting in Nix's syntax (`;`/newlines, `#`, `@FILE`, eight columns) |
//! | [`log`] | build logs (bzip2, Nix's layout) |
//! | [`events`] | progress events for the CLI |
//! | [`options`] | builder settings and substituters read from settings, for `rix build` and `rix daemon` |
//! | [`substitute`] | fetching outputs from binary caches instead of building them |
//! | [`repair`] | rebuilding a valid output from its deriver to repair it |
//! | [`sandbox`] | the Linux build sandbox: namespaces, mounts, the store at its logical path |
//! | [`running`] | process groups of running builders (cancellation) |
//! | [`error`] | why a build failed |

pub mod basic;
pub mod builder;
pub mod builtins;
pub mod ca_output;
pub mod drv_diff;
pub mod env;
pub mod error;
pub mod events;
pub mod explain;
pub mod log;
pub mod machines;
pub mod options;
pub mod plan;
pub mod realise;
pub mod repair;
pub mod resolve;
pub mod running;
pub mod sandbox;
pub mod substitute;

pub use builder::BuildSettings;
pub use error::BuildError;
pub use realise::{realise, RealiseOptions, RealiseReport};
