//! `rix store`: the store itself (like `nix-store` and `nix store`).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use rix_formats::hash::HashAlgo;
use rix_formats::store_path::FileIngestionMethod;

use crate::context::Context;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Say which store is used, where it lives, and why it was chosen.
    Info,
    /// Add files or directories to the store and print their paths (like `nix-store --add`).
    Add {
        /// Hash the file's contents rather than its NAR serialisation (regular files only).
        #[arg(long, conflicts_with = "recursive")]
        flat: bool,
        /// Hash the NAR serialisation (the default).
        #[arg(long)]
        recursive: bool,
        /// Hash algorithm of the content address.
        #[arg(long = "hash-algo", default_value = "sha256")]
        algo: HashAlgo,
        /// Store path name (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Files or directories to add.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Add standard input as a text file named NAME (like `builtins.toFile`).
    AddText {
        name: String,
        /// Store paths the text refers to.
        #[arg(long = "reference")]
        references: Vec<String>,
    },
    /// Sign paths with a secret key, adding to the signatures in the database (like `nix store sign`).
    Sign {
        /// The secret key file (`rix key generate`).
        #[arg(short = 'k', long = "key-file", value_name = "FILE")]
        key_file: std::path::PathBuf,
        /// Store paths to sign.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Build derivations and print their output paths (like `nix-store --realise`).
    Realise(crate::cmd::build::BuildArgs),
    /// Serve the store over the serve protocol on stdin/stdout (like `nix-store --serve`).
    Serve(crate::cmd::store_serve::ServeArgs),
    #[command(flatten)]
    Gc(crate::cmd::gc::GcCommand),
    #[command(flatten)]
    Query(crate::cmd::query::QueryCommand),
}

impl StoreCommand {
    pub fn run(&self, ctx: &Context) -> Result<()> {
        match self {
            Self::Info => {
                if let Some(url) = ctx.daemon_url() {
                    let store = ctx.store()?;
                    println!("store directory:  {}", store.store_dir());
                    println!("daemon:           {}", store.url());
                    println!("chosen because:   {}", ctx.daemon_why(&url));
                    return Ok(());
                }
                let choice = ctx.store_choice()?;
                let l = &choice.layout;
                println!("store directory:  {}", l.store_dir);
                println!("real location:    {}", l.real_store_dir.display());
                println!("state directory:  {}", l.state_dir.display());
                println!("log directory:    {}", l.log_dir.display());
                println!("chosen because:   {}", choice.why);
                if l.needs_remap() {
                    println!("note: builds in this store need the sandbox's mount namespace");
                }
                Ok(())
            }
            Self::Add {
                flat,
                algo,
                name,
                paths,
                ..
            } => {
                let store = ctx.store()?;
                let method = if *flat {
                    FileIngestionMethod::Flat
                } else {
                    FileIngestionMethod::Recursive
                };
                for p in paths {
                    let n = match name {
                        Some(n) => n.clone(),
                        None => p
                            .file_name()
                            .with_context(|| format!("cannot name '{}': give --name", p.display()))?
                            .to_string_lossy()
                            .into_owned(),
                    };
                    let sp = store
                        .add_path(p, &n, method, *algo)
                        .with_context(|| format!("cannot add '{}' to the store", p.display()))?;
                    println!("{}", store.print(&sp));
                }
                Ok(())
            }
            Self::AddText { name, references } => {
                let store = ctx.store()?;
                let mut text = Vec::new();
                std::io::stdin().read_to_end(&mut text)?;
                let refs: BTreeSet<_> = references
                    .iter()
                    .map(|r| store.parse_path(r))
                    .collect::<Result<_, _>>()?;
                let p = store.add_text(name, &text, &refs)?;
                println!("{}", store.print(&p));
                Ok(())
            }
            Self::Sign { key_file, paths } => crate::cmd::copy::sign(ctx, key_file, paths),
            Self::Query(q) => q.run(ctx),
            Self::Gc(c) => c.run(ctx),
            Self::Serve(args) => crate::cmd::store_serve::run(ctx, args),
            Self::Realise(args) => {
                let mut args_owned = crate::cmd::build::BuildArgs { ..args.clone() };
                args_owned.no_link = true;
                args_owned.print_out_paths = !args.json;
                crate::cmd::build::run(ctx, &args_owned)
            }
        }
    }
}
