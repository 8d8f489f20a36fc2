//! Binary caches for rix: substituting store paths from them instead of
//! building, copying paths to them (compressed and signed), and serving the local
//! store as one over HTTP. Compatible with Nix in both directions.
//!
//! | module | concept |
//! | --- | --- |
//! | [`cache`] | the [`BinaryCache`] interface and its `file://`, `http(s)://` and `s3://` stores |
//! | [`url`] | cache URLs and their `?param=value` options |
//! | [`substituter`] | the configured caches of a store: priorities, narinfo queries, signature policy, closure plans |
//! | [`fetch`] | streaming download → decompress → hash + restore, parallel, then registration in closure order |
//! | [`upload`] | `copy --to`: NAR, compression, narinfo with `FileHash`/`FileSize`, signatures |
//! | [`serve`] | the local store as an HTTP binary cache (axum) |
//! | [`disk_cache`] | the persistent narinfo cache (SQLite, positive/negative TTLs) |
//! | [`compression`] | xz, zstd, bzip2, none |
//! | [`download`], [`netrc`] | one URL (`http(s)://`, `file://`) into a sink, as Nix's `FileTransfer::download` (fetchers, `builtin:fetchurl`) |
//! | [`realisations`] | realisations (content-addressed derivations) in caches: `realisations/<id>.doi`, signed |
//! | [`observer`] | progress events |
//! | [`runtime`] | the shared Tokio runtime and async → blocking stream bridge |

pub mod cache;
pub mod compression;
pub mod disk_cache;
pub mod download;
pub mod error;
pub mod fetch;
pub mod netrc;
pub mod observer;
pub mod realisations;
pub mod runtime;
pub mod serve;
pub mod substituter;
pub mod upload;
pub mod url;
mod util;
pub use util::Capped;

pub use cache::BinaryCache;
pub use compression::Compression;
pub use error::{CacheError, SubstError};
pub use fetch::SubstituteReport;
pub use observer::{Quiet, SubstEvent, SubstObserver};
pub use substituter::{ClosurePlan, Substituter, SubstituterConfig};
pub use url::CacheUrl;
