//! `rix serve`: the local store as a Nix binary cache over HTTP.

use anyhow::Result;
use clap::Args;
use rix_substitute::serve::{ServeOptions, Server};
use rix_substitute::substituter::read_secret_keys;
use rix_substitute::Compression;

use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// Sign narinfos with this secret key (`rix key generate`); repeatable.
    #[arg(long = "sign-key", value_name = "FILE")]
    pub sign_keys: Vec<String>,
    /// Compression of the NARs served.
    #[arg(long, value_name = "METHOD", default_value = "zstd")]
    pub compression: Compression,
    /// `Priority` advertised in nix-cache-info (lower is preferred).
    #[arg(long, default_value_t = 30)]
    pub priority: i32,
}

pub fn run(ctx: &Context, args: &ServeArgs) -> Result<()> {
    let layout = ctx.store_choice()?.layout;
    // Opening the store creates it if needed and checks the database.
    drop(rix_store::local_store::LocalStore::open(layout.clone())?);
    let opts = ServeOptions {
        keys: read_secret_keys(args.sign_keys.iter().map(String::as_str))?,
        compression: args.compression,
        priority: args.priority,
    };
    let store_dir = layout.store_dir.clone();
    let server = Server::start(layout, &args.listen, opts)?;
    eprintln!("serving {store_dir} as a binary cache at {}", server.url());
    server.wait()?;
    Ok(())
}
