//! `rix key`: ed25519 signing keys in Nix's `name:base64` format. Like Nix 2.8's
//! `nix key generate-secret` and `convert-secret-to-public`, output has no
//! trailing newline, so `rix key generate n > secret` writes what Nix writes.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use clap::Subcommand;
use rix_formats::signature::SecretKey;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate a secret key named NAME (e.g. `cache.example.org-1`) and print it.
    #[command(alias = "generate-secret")]
    Generate {
        /// The key's name, written before the colon; signatures carry it.
        #[arg(value_name = "NAME", long = "key-name", num_args = 1)]
        key_name: Option<String>,
        #[arg(
            value_name = "NAME",
            conflicts_with = "key_name",
            required_unless_present = "key_name"
        )]
        name: Option<String>,
    },
    /// Read a secret key on standard input and print its public key.
    #[command(alias = "convert-secret-to-public")]
    Public,
}

impl KeyCommand {
    pub fn run(&self) -> Result<()> {
        let out = match self {
            Self::Generate { key_name, name } => {
                let name = key_name
                    .as_ref()
                    .or(name.as_ref())
                    .expect("clap requires one");
                SecretKey::generate(name)?.to_string()
            }
            Self::Public => {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                let key: SecretKey = text.parse().context("standard input is not a secret key")?;
                key.to_public().to_string()
            }
        };
        std::io::stdout().write_all(out.as_bytes())?;
        Ok(())
    }
}
