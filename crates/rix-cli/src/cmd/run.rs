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
    let (text, output) = match arg.split_once('^') {
        Some((p, o)) => (p, Some(o)),
        None => (arg, None),
    };
    let real_dir = store.layout().real_store_dir.to_string_lossy().into_owned();
    let logical = match text.strip_prefix(real_dir.as_str()) {
        Some(rest) if real_dir != store.store_dir().as_str() => {
            format!("{}{rest}", store.store_dir())
        }
        _ => text.to_owned(),
    };
    let (path, rest) = store
        .store_dir()
        .parse_prefix(&logical)
        .with_context(|| format!("'{arg}' is not in the store {}", store.store_dir()))?;
    let (path, rest) = if path.is_derivation() && rest.is_empty() {
        let drv = rix_build::plan::read_derivation(store, &path)?;
        let outs = rix_build::plan::output_paths(store, &path, &drv)?;
        let name = output.unwrap_or("out");
        let out = outs
            .get(name)
            .with_context(|| format!("derivation '{arg}' has no output '{name}'"))?;
        (out.clone(), String::new())
    } else {
        (path, rest.to_owned())
    };
    if !store.is_valid(&path)? {
        bail!(
            "'{}' is not valid in the store: build it first (rix build)",
            store.print(&path)
        );
    }
    Ok(Resolved { path, rest })
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
fn program(store: &LocalStore, r: &Resolved) -> Result<String> {
    let logical = format!("{}{}", store.print(&r.path), r.rest);
    let real = PathBuf::from(format!("{}{}", store.real_path(&r.path).display(), r.rest));
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

fn exec(store: &LocalStore, cmd: &mut Command, what: &str) -> Result<()> {
    enter_store_namespace(store.layout()).map_err(anyhow::Error::msg)?;
    let e = cmd.exec();
    Err(e).with_context(|| format!("cannot run '{what}'"))
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let r = resolve(&store, &args.installable)?;
    let prog = program(&store, &r)?;
    let mut cmd = Command::new(&prog);
    cmd.args(&args.args);
    exec(&store, &mut cmd, &prog)
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
    let store = ctx.open_store()?;
    let mut dirs = Vec::new();
    for i in &args.installables {
        let r = resolve(&store, i)?;
        dirs.push(PathBuf::from(format!(
            "{}{}/bin",
            store.print(&r.path),
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
    exec(&store, &mut cmd, &shown)
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
