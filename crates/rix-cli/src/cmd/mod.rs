//! One module per `rix` subcommand group.

pub mod build;
pub mod copy;
pub mod daemon;
pub mod derivation;
pub mod eval;
pub mod flake;
pub mod gc;
pub mod hash;
pub mod instantiate;
pub mod key;
pub mod nar;
pub mod path_info;
pub mod query;
pub mod repair;
pub mod repl;
pub mod resolve;
pub mod run;
pub mod serve;
pub mod store;
