//! `rix store serve`: serve the store over the serve protocol on stdin and
//! stdout, as `nix-store --serve [--write]` does for an `ssh://` store on the
//! other end of an SSH connection (its `remote-program=`). See
//! [`rix_daemon::serve`].

use std::os::fd::AsFd as _;

use anyhow::Result;
use clap::Args;

use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Allow imports and builds (`nix-store --serve --write`).
    #[arg(long)]
    pub write: bool,
    /// Accepted and ignored: Nix's client starts `<remote-program> --serve
    /// --write`, so `remote-program=rix store serve` works as it is.
    #[arg(long, hide = true)]
    pub serve: bool,
}

pub fn run(ctx: &Context, args: &ServeArgs) -> Result<()> {
    let layout = ctx.store_choice()?.layout;
    let store = rix_store::local_store::LocalStore::open(layout)?;
    let importer = |store: &dyn rix_store::store_api::Store, input: &mut dyn std::io::Read| {
        crate::cmd::query::import(store, &mut &mut *input)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    let session = rix_daemon::serve::ServeSession {
        store: &store,
        settings: &ctx.settings,
        write: args.write,
        importer: &importer,
    };
    // Unbuffered by std: the session buffers and flushes itself.
    let input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let output = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    session.run(input, output)?;
    Ok(())
}
