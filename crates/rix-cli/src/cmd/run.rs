//! `rix run` and `rix shell`: run programs from the store. For a store whose
//! directory is not at its logical path (`--store /some/root`), the program runs
//! in a mount namespace where the store is there ([`enter_store_namespace`]), so
//! the paths baked into it resolve; for a store at its logical path, directly.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_build::sandbox::enter::enter_store_namespace;
use rix_formats::StorePath;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;

use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// What to run: a store path (a program, or a package whose `bin/<name>` is
    /// run), a path inside one, or `DRV.drv^OUTPUT`; it must be valid.
    #[arg(value_name = "INSTALLABLE")]
    pub installable: String,
    /// Arguments for the program (after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

/// A valid store path and the part of the argument below it (`/bin/x`, or empty).
pub struct Resolved {
    pub path: StorePath,
    pub rest: String,
}

/// Resolves a store path (logical or real location), a path inside one, or
/// `X.drv[^out]` to a valid store path.
pub fn resolve(store: &LocalStore, arg: &str) -> Result<Resolved> {
    let (path, rest, output) = split_arg(store.layout(), arg)?;
    let path = match output {
        Some(name) => {
            let drv = rix_build::plan::read_derivation(store, &path)?;
            let outs = rix_build::plan::output_paths(store, &path, &drv)?;
            outs.get(name)
                .with_context(|| format!("derivation '{arg}' has no output '{name}'"))?
                .clone()
        }
        None => path,
    };
    if !store.is_valid(&path)? {
        bail!(
            "'{}' is not valid in the store: build it first (rix build)",
            store.print(&path)
        );
    }
    Ok(Resolved { path, rest })
}

/// A store path, the part of `arg` below it, and the output wanted when it
/// names a derivation (`X.drv` alone means `X.drv^out`).
fn split_arg<'a>(
    layout: &StoreLayout,
    arg: &'a str,
) -> Result<(StorePath, String, Option<&'a str>)> {
    let (text, output) = match arg.split_once('^') {
        Some((p, o)) => (p, Some(o)),
        None => (arg, None),
    };
    let (path, rest) = crate::cmd::resolve::follow_to_store_path(layout, text)?;
    if path.is_derivation() && rest.is_empty() {
        return Ok((path, rest, Some(output.unwrap_or("out"))));
    }
    Ok((path, rest, None))
}

/// [`resolve`] through a daemon: what is not valid yet is realised by it
/// (built, or fetched), as `nix run` does.
fn resolve_through_daemon(
    daemon: &rix_remote::DaemonStore,
    layout: &StoreLayout,
    arg: &str,
) -> Result<Resolved> {
    use rix_formats::worker_protocol::OutputsSpec;
    use rix_store::store_api::Store;
    let (path, rest, output) = split_arg(layout, arg)?;
    let Some(name) = output else {
        if !daemon.is_valid(&path)? {
            daemon.ensure_path(&path).with_context(|| {
                format!(
                    "'{}' is not valid in the daemon's store",
                    daemon.print(&path)
                )
            })?;
        }
        return Ok(Resolved { path, rest });
    };
    let out = daemon
        .build_outputs(&path, OutputsSpec::Names([name.to_owned()].into()))?
        .remove(name)
        .with_context(|| format!("derivation '{arg}' has no output '{name}'"))?;
    Ok(Resolved { path: out, rest })
}

/// The selected store's layout and each installable resolved in it.
fn resolve_all(ctx: &Context, args: &[String]) -> Result<(StoreLayout, Vec<Resolved>)> {
    if let Some(url) = ctx.daemon_url() {
        let layout = ctx.layout()?;
        let daemon = ctx.open_daemon(&url)?;
        let found = args
            .iter()
            .map(|a| resolve_through_daemon(&daemon, &layout, a))
            .collect::<Result<_>>()?;
        return Ok((layout, found));
    }
    let store = ctx.open_store()?;
    let found = args
        .iter()
        .map(|a| resolve(&store, a))
        .collect::<Result<_>>()?;
    Ok((store.layout().clone(), found))
}

/// The package name of a store path's name, as Nix's `DrvName`: up to the first
/// dash followed by something other than a letter (`hello-2.12` → `hello`).
fn package_name(name: &str) -> &str {
    let b = name.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'-' && b.get(i + 1).is_some_and(|n| !n.is_ascii_alphabetic()) {
            return &name[..i];
        }
    }
    name
}

/// The program to run for `r`: the path itself when it is a file, else
/// `bin/<package name>` (or the only program in `bin/`).
fn program(layout: &StoreLayout, r: &Resolved) -> Result<String> {
    let logical = format!("{}{}", layout.store_dir.display(&r.path), r.rest);
    let real = PathBuf::from(format!("{}{}", layout.real_path(&r.path).display(), r.rest));
    let meta = std::fs::metadata(&real).with_context(|| format!("'{logical}'"))?;
    if !meta.is_dir() {
        return Ok(logical);
    }
    let bin = real.join("bin");
    let main = package_name(r.path.name());
    if bin.join(main).exists() {
        return Ok(format!("{logical}/bin/{main}"));
    }
    let entries: Vec<String> = std::fs::read_dir(&bin)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    match entries.as_slice() {
        [only] => Ok(format!("{logical}/bin/{only}")),
        [] => bail!("'{logical}' has no program to run (no bin/{main})"),
        _ => bail!(
            "'{logical}' has no bin/{main}; name the program, e.g. {logical}/bin/{}",
            entries[0]
        ),
    }
}

fn exec(layout: &StoreLayout, cmd: &mut Command, what: &str) -> Result<()> {
    enter_store_namespace(layout).map_err(anyhow::Error::msg)?;
    let e = cmd.exec();
    Err(e).with_context(|| format!("cannot run '{what}'"))
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<()> {
    let (layout, found) = resolve_all(ctx, std::slice::from_ref(&args.installable))?;
    let r = found.into_iter().next().context("nothing to run")?;
    let prog = program(&layout, &r)?;
    let mut cmd = Command::new(&prog);
    cmd.args(&args.args);
    exec(&layout, &mut cmd, &prog)
}

#[derive(Args, Debug, Clone)]
pub struct ShellArgs {
    /// Store paths (or `DRV.drv^OUTPUT`) whose `bin` directories go first on PATH.
    #[arg(required = true, value_name = "INSTALLABLES")]
    pub installables: Vec<String>,
    /// Run this command with its arguments instead of `$SHELL`.
    #[arg(short = 'c', long, num_args = 1.., allow_hyphen_values = true, value_name = "CMD")]
    pub command: Option<Vec<OsString>>,
}

pub fn shell(ctx: &Context, args: &ShellArgs) -> Result<()> {
    let (layout, found) = resolve_all(ctx, &args.installables)?;
    let mut dirs = Vec::new();
    for r in &found {
        dirs.push(PathBuf::from(format!(
            "{}{}/bin",
            layout.store_dir.display(&r.path),
            r.rest
        )));
    }
    if let Some(old) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&old));
    }
    let path = std::env::join_paths(dirs).context("PATH")?;
    let (prog, rest): (OsString, &[OsString]) = match &args.command {
        Some(c) if !c.is_empty() => (c[0].clone(), &c[1..]),
        _ => (
            std::env::var_os("SHELL").unwrap_or_else(|| "bash".into()),
            &[],
        ),
    };
    let mut cmd = Command::new(&prog);
    cmd.args(rest).env("PATH", &path);
    // Command looks the program up in the PATH it is given.
    let shown = Path::new(&prog).display().to_string();
    exec(&layout, &mut cmd, &shown)
}

#[cfg(test)]
mod tests {
    use super::package_name;

    #[test]
    fn package_names_like_nix() {
        assert_eq!(package_name("hello-2.12.1"), "hello");
        assert_eq!(package_name("hello"), "hello");
        assert_eq!(package_name("gnu-hello-world"), "gnu-hello-world");
        assert_eq!(package_name("foo-bar-1"), "foo-bar");
    }
}
