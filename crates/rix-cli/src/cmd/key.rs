//! `rix key`: generate and convert signing keys.

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeyCommand {}

impl KeyCommand {
    pub fn run(self) -> Result<()> {
        match self {}
    }
}
