//! `rix nar`: create, list and unpack Nix archives.

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum NarCommand {}

impl NarCommand {
    pub fn run(&self) -> Result<()> {
        match *self {}
    }
}
