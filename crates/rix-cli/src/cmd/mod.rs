//! One module per `rix` subcommand group.

pub mod build;
pub mod config;
pub mod copy;
pub mod daemon;
pub mod derivation;
pub mod develop;
pub mod eval;
pub mod flake;
pub mod flake_check;
pub mod flake_init;
pub mod gc;
pub mod hash;
pub mod instantiate;
pub mod key;
pub mod nar;
pub mod path_info;
pub mod profile;
pub mod query;
pub mod repair;
pub mod repl;
pub mod resolve;
pub mod run;
pub mod serve;
pub mod store;
pub mod store_serve;
pub mod why_rebuild;

/// An error that ends the command with a particular exit status, such as
/// Nix's build statuses (100 failed, 101 timed out, 102 hash mismatch, 104
/// not deterministic); `main` prints the message as any other error's.
#[derive(Debug)]
pub struct ExitStatus {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitStatus {}
