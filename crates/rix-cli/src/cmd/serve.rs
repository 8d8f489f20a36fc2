//! `rix serve`: the local store as a Nix binary cache over HTTP.

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_store::db::Db;
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
    /// NARs streamed at once; further NAR requests wait for a free stream
    /// (default: the `serve-max-nar-streams` setting, 32).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_nar_streams: Option<u64>,
}

pub fn run(ctx: &Context, args: &ServeArgs) -> Result<()> {
    let layout = ctx.store_choice()?.layout;
    // Serving only reads: the database is opened read-only, and must exist.
    Db::open_read_only(&layout.db_dir(), layout.store_dir.clone())
        .context("cannot serve this store")?;
    let max_nar_streams = match args.max_nar_streams {
        Some(n) => n,
        None => ctx.settings.get_u64("serve-max-nar-streams")?,
    };
    if max_nar_streams == 0 {
        bail!("serve-max-nar-streams must be at least 1");
    }
    let opts = ServeOptions {
        keys: read_secret_keys(args.sign_keys.iter().map(String::as_str))?,
        compression: args.compression,
        priority: args.priority,
        max_nar_streams: usize::try_from(max_nar_streams).unwrap_or(usize::MAX),
        ..ServeOptions::default()
    };
    let store_dir = layout.store_dir.clone();
    let server = Server::start(layout, &args.listen, opts)?;
    eprintln!("serving {store_dir} as a binary cache at {}", server.url());
    server.wait()?;
    Ok(())
}
