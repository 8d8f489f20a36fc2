//! `rix run` and `rix shell`: run programs from the store, and from flakes
//! (`rix run .#app` as `nix run`: the app, or the package's program, built
//! first; `rix shell .#x` as `nix shell`). For a store whose
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

use crate::cmd::flake::FlakeLockArgs;
use crate::cmd::instantiate::{is_flake_installable, EvalArgs, NixInstallableArgs};
use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// What to run: a store path (a program, or a package whose `bin/<name>` is
    /// run), a path inside one, `DRV.drv^OUTPUT`, or a flake installable
    /// (`.#app`: `apps.<system>.app`, else a package's `bin/<mainProgram>`),
    /// built first when needed.
    #[arg(value_name = "INSTALLABLE", default_value = ".")]
    pub installable: String,
    #[command(flatten)]
    pub flake: FlakeLockArgs,
    #[command(flatten)]
    pub eval_args: EvalArgs,
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
pub(crate) fn package_name(name: &str) -> &str {
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

/// `nix run FLAKEREF#ATTR`: the app's context realised, then its program,
/// which must be in the store, run.
fn run_flake(ctx: &Context, args: &RunArgs) -> Result<()> {
    let app = crate::cmd::flake::app_of(ctx, &args.installable, &args.flake, &args.eval_args)?;
    let ctx = &crate::cmd::flake::with_flake_config(ctx);
    crate::cmd::build::realise_installables(ctx, app.context, NixInstallableArgs::default())?;
    let layout = ctx.layout()?;
    let dir = layout.store_dir.as_str();
    let in_store = app
        .program
        .strip_prefix(dir)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|r| !r.is_empty());
    if !in_store {
        bail!("app program '{}' is not in the Nix store", app.program);
    }
    let mut cmd = Command::new(&app.program);
    cmd.args(&args.args);
    exec(&layout, &mut cmd, &app.program)
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<()> {
    if is_flake_installable(&args.installable) {
        return run_flake(ctx, args);
    }
    let (layout, found) = resolve_all(ctx, std::slice::from_ref(&args.installable))?;
    let r = found.into_iter().next().context("nothing to run")?;
    let prog = program(&layout, &r)?;
    let mut cmd = Command::new(&prog);
    cmd.args(&args.args);
    exec(&layout, &mut cmd, &prog)
}

#[derive(Args, Debug, Clone)]
pub struct ShellArgs {
    /// Store paths (or `DRV.drv^OUTPUT`, or flake installables, built first
    /// when needed) whose `bin` directories go first on PATH.
    #[arg(required = true, value_name = "INSTALLABLES")]
    pub installables: Vec<String>,
    #[command(flatten)]
    pub flake: FlakeLockArgs,
    #[command(flatten)]
    pub eval_args: EvalArgs,
    /// Run this command with its arguments instead of `$SHELL`.
    #[arg(short = 'c', long, num_args = 1.., allow_hyphen_values = true, value_name = "CMD")]
    pub command: Option<Vec<OsString>>,
}

/// `nix shell`: each installable's outputs (flake installables built first)
/// and, recursively, the packages their `nix-support/propagated-user-env-packages`
/// name; the `bin` directory of each goes on PATH, in that order.
pub fn shell(ctx: &Context, args: &ShellArgs) -> Result<()> {
    let (flakes, others): (Vec<String>, Vec<String>) = args
        .installables
        .iter()
        .cloned()
        .partition(|i| is_flake_installable(i));
    let (layout, found) = resolve_all(ctx, &others)?;
    let mut dirs = Vec::new();
    let mut todo = std::collections::VecDeque::new();
    for r in found {
        if r.rest.is_empty() {
            todo.push_back(r.path);
        } else {
            dirs.push(PathBuf::from(format!(
                "{}{}/bin",
                layout.store_dir.display(&r.path),
                r.rest
            )));
        }
    }
    if !flakes.is_empty() {
        let nix = NixInstallableArgs {
            eval_args: args.eval_args.clone(),
            flake: args.flake.clone(),
            ..NixInstallableArgs::default()
        };
        let built: std::collections::BTreeSet<StorePath> =
            crate::cmd::build::realise_installables(ctx, flakes, nix)?
                .into_iter()
                .flat_map(|outs| outs.into_values())
                .collect();
        todo.extend(built);
    }
    let mut done = std::collections::HashSet::new();
    while let Some(p) = todo.pop_front() {
        if !done.insert(p.clone()) {
            continue;
        }
        dirs.push(PathBuf::from(format!(
            "{}/bin",
            layout.store_dir.display(&p)
        )));
        let prop = layout
            .real_path(&p)
            .join("nix-support/propagated-user-env-packages");
        if let Ok(text) = std::fs::read_to_string(&prop) {
            for word in text.split_whitespace() {
                let q = layout
                    .store_dir
                    .parse(word)
                    .with_context(|| format!("'{}'", prop.display()))?;
                todo.push_back(q);
            }
        }
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
