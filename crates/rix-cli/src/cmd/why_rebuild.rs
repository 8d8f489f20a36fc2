//! `rix why-rebuild OLD [NEW]`: why two derivations differ, recursively, in
//! nix-diff's words (and its `--json`). Each side is a `.drv`, an output
//! path or result link (through its deriver), or an installable (a Nix
//! file, `-f FILE ATTR`, a flake reference). With one argument, the other
//! side is the last derivation of the same name rix built in this store.

use std::io::IsTerminal as _;
use std::rc::Rc;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use rix_build::drv_diff::{self, render, DiffOptions, Differ, Orientation};
use rix_build::explain::StoreReader;
use rix_formats::StorePath;
use rix_store::local_store::LocalStore;

use crate::context::Context;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Color {
    Always,
    Auto,
    Never,
}

#[derive(Args, Debug)]
pub struct WhyRebuildArgs {
    /// The old side: a `.drv`, an output path or result link, or an installable.
    #[arg(value_name = "OLD")]
    pub old: String,
    /// The new side (default: OLD is the new side, compared with the last
    /// derivation of its name built in this store).
    #[arg(value_name = "NEW")]
    pub new: Option<String>,
    /// Print nix-diff's JSON.
    #[arg(long)]
    pub json: bool,
    /// Compare environments also where an input derivation differs.
    #[arg(long)]
    pub environment: bool,
    /// Show text differences line by line.
    #[arg(long, conflicts_with_all = ["word_oriented", "character_oriented"])]
    pub line_oriented: bool,
    /// Show text differences word by word (the default).
    #[arg(long, conflicts_with = "character_oriented")]
    pub word_oriented: bool,
    /// Show text differences character by character.
    #[arg(long)]
    pub character_oriented: bool,
    /// Show at most this many unchanged lines, words or characters around each change.
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// Colours: always, auto (on a terminal) or never.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: Color,
    #[command(flatten)]
    pub nix: Box<crate::cmd::instantiate::NixInstallableArgs>,
}

pub fn run(ctx: &Context, args: &WhyRebuildArgs) -> Result<()> {
    let store = Rc::new(ctx.open_store()?);
    let first = resolve(ctx, &store, &args.old, &args.nix)?;
    let (old, new) = match &args.new {
        Some(n) => (first, resolve(ctx, &store, n, &args.nix)?),
        None => (last_build_of(&store, &first)?, first),
    };
    let orientation = if args.line_oriented {
        Orientation::Line
    } else if args.character_oriented {
        Orientation::Character
    } else {
        Orientation::Word
    };
    let reader = StoreReader(&store);
    let options = DiffOptions {
        orientation,
        environment: args.environment,
    };
    let diff = Differ::new(store.store_dir(), &reader, options)
        .diff_top(&old, &new)
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", drv_diff::json::to_json(&diff));
        return Ok(());
    }
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal(),
    };
    let text = render::render(
        &diff,
        render::RenderOptions {
            orientation,
            color,
            context: args.context,
        },
    );
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    Ok(())
}

/// A command-line argument as a `.drv` path.
fn resolve(
    ctx: &Context,
    store: &Rc<LocalStore>,
    arg: &str,
    nix: &crate::cmd::instantiate::NixInstallableArgs,
) -> Result<StorePath> {
    use crate::cmd::instantiate::{build_targets, is_flake_installable, is_nix_installable};
    if nix.is_set() || is_nix_installable(arg) || is_flake_installable(arg) {
        let targets = build_targets(ctx, store, &[arg.to_owned()], nix)?;
        return match targets.as_slice() {
            [(drv, _)] => Ok(drv.clone()),
            [] => bail!("'{arg}' does not evaluate to a derivation"),
            _ => bail!(
                "'{arg}' evaluates to {} derivations; name one",
                targets.len()
            ),
        };
    }
    let (path, _) = crate::cmd::resolve::follow_to_store_path(store.layout(), arg)
        .with_context(|| format!("'{arg}' is neither a store path nor an installable"))?;
    if path.is_derivation() {
        if !store.is_valid(&path)? {
            bail!("derivation '{}' is not valid", store.print(&path));
        }
        return Ok(path);
    }
    let info = store
        .query_path_info(&path)?
        .with_context(|| format!("path '{}' is not valid", store.print(&path)))?;
    match info.deriver {
        Some(d) if store.is_valid(&d)? => Ok(d),
        Some(d) => bail!(
            "the deriver of '{}', '{}', is no longer in the store",
            store.print(&path),
            store.print(&d)
        ),
        None => bail!("path '{}' has no known deriver", store.print(&path)),
    }
}

/// The last derivation built here with the same name as `drv` (other than it).
fn last_build_of(store: &LocalStore, drv: &StorePath) -> Result<StorePath> {
    let name = drv_diff::drv_name(drv);
    let built = store.db().built_derivations()?;
    let mut last = rix_build::explain::last_by_name(built.into_iter().filter(|(p, _)| p != drv));
    match last.remove(name) {
        Some((p, _)) if store.is_valid(&p)? => Ok(p),
        Some((p, _)) => bail!(
            "the last build of '{name}', '{}', is no longer in the store",
            store.print(&p)
        ),
        None => bail!(
            "no earlier build of '{name}' is recorded in this store; name both sides: rix why-rebuild OLD NEW"
        ),
    }
}
