//! rix's store layer: the local store, shared with Nix.
//!
//! | module | concept |
//! | --- | --- |
//! | [`archive`] | file system objects to and from NAR: dump, hash, restore |
//! | [`local_store`] | the local store: adding, querying, atomic registration |
//! | [`layout`] | store URLs and the directories of a local store |
//! | [`drv_check`] | derivations' output paths checked as they enter the store |
//! | [`db`] | the SQLite database in Nix's schema |
//! | [`realisations`] | realisations of derivation outputs (content-addressed derivations), Nix's `Realisations` tables |
//! | [`ref_graph`] | a closure's reference graph, and Nix's dependencies-first order |
//! | [`path_info`] | `ValidPathInfo`: what is known about a valid path |
//! | [`lock`] | per-path locks compatible with Nix's |
//! | [`canonicalise`] | canonical file metadata of store objects |
//! | [`settings`] | `rix.conf` / `--option` settings with Nix's names and syntax |
//! | [`profiles`] | profiles and their generations (`P-N-link`), as Nix's `profiles.cc` |
//! | [`buildenv`] | user environments: the symlink tree of a profile (Nix's `buildProfile`) |
//! | [`roots`] | garbage collector roots: `gcroots`, profiles, running processes |
//! | [`temp_roots`] | temporary roots of running processes (Nix's protocol) |
//! | [`gc_lock`] | the global GC lock (`gc.lock`, `flock` as Nix 2.8) |
//! | [`gc`] | garbage collection: liveness, batched deletion, `.links` cleanup |
//! | [`optimise`] | hard-linking identical files through `.links` |
//! | [`verify`] | checking the store against its database, and repairing it |

pub mod archive;
pub mod buildenv;
pub mod canonicalise;
pub mod db;
pub mod drv_check;
pub mod gc;
pub mod gc_lock;
pub mod layout;
pub mod local_store;
pub mod lock;
pub mod optimise;
pub mod path_info;
pub mod profiles;
pub mod realisations;
pub mod ref_graph;
pub mod roots;
pub mod settings;
pub mod store_api;
pub mod temp_roots;
pub mod verify;
pub mod write;
