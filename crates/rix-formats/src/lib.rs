//! Nix's formats, byte for byte.
//!
//! This crate is the bottom layer of rix: pure functions from bytes to values and
//! back, with no file system and no async. Everything that names or serialises a
//! store object lives here, so that the store, the builder and the evaluator all
//! agree with Nix (and with each other) on every byte.
//!
//! | module | format |
//! | --- | --- |
//! | [`nixbase32`] | Nix's base-32 alphabet and bit order |
//! | [`hash`] | md5/sha1/sha256/sha512 digests in base16, nix32, base64 and SRI |
//! | [`store_path`] | store path parsing and computation (text, fixed-output, output paths) |
//! | [`content_address`] | `text:` / `fixed:` content addresses |
//! | [`nar`] | the Nix ARchive: streaming writer and validating reader |
//! | [`derivation`] | `.drv` ATerm, its JSON form, `hashDerivationModulo`, output paths |
//! | [`narinfo`] | binary cache `.narinfo` files, their fingerprints and signatures |
//! | [`cache_info`] | a binary cache's `nix-cache-info` |
//! | [`references`] | scanning bytes for the hash parts of store paths |
//! | [`signature`] | ed25519 keys and signatures in Nix's `name:base64` format |
//! | [`worker_protocol`] | the daemon (worker) protocol's values, 1.34 to 1.38: handshake, operations, stderr messages, build results, path infos |

pub mod cache_info;
pub mod content_address;
pub mod derivation;
pub mod flake_ref;
pub mod hash;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
pub mod references;
pub mod serve_protocol;
pub mod signature;
pub mod store_path;
pub mod worker_protocol;

pub use hash::{Hash, HashAlgo};
pub use store_path::{StoreDir, StorePath};
