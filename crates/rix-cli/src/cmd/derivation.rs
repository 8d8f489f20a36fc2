//! `rix derivation`: inspect and check `.drv` files.

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DerivationCommand {}

impl DerivationCommand {
    pub fn run(&self, _ctx: &crate::context::Context) -> Result<()> {
        match *self {}
    }
}
