//! `rix develop` and `rix print-dev-env`, as Nix 2.26's `nix develop` and
//! `nix print-dev-env` (`src/nix/develop.cc`): a derivation's build
//! environment, captured by building a modified derivation that runs
//! `get-env.sh` ([`capture`]), read back ([`build_env`]) and turned into a
//! bash rc script ([`rc`]); a shell is then started with it, or the script
//! printed. Captured environments are remembered ([`cache`]) so that
//! entering an unchanged project again is immediate. `rix shell-nix` (and
//! rix called as `nix-shell`) is [`shell_nix`].

pub mod build_env;
pub mod cache;
pub mod capture;
pub mod installable;
pub mod rc;
pub mod shell_nix;
pub mod store;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_formats::StorePath;

use crate::cmd::instantiate::NixInstallableArgs;
use crate::context::Context;
use build_env::{shell_escape, BuildEnvironment};
use installable::Target;
use store::DevStore;

/// What `rix develop` and `rix print-dev-env` share (Nix's `Common`).
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The derivation: a flake installable (default `.`: its
    /// `devShells.<system>.default`, then its default package), a Nix file,
    /// an attribute path with `--file`/`--expr`, a `.drv`, or a captured
    /// environment (a store path ending in `-env`).
    #[arg(value_name = "INSTALLABLE")]
    pub installable: Option<String>,
    #[command(flatten)]
    pub nix: NixInstallableArgs,
    /// Make the captured environment a generation of this profile (a GC root).
    #[arg(long, value_name = "PATH")]
    pub profile: Option<PathBuf>,
    /// Redirect a store path to a mutable location: the outputs of
    /// INSTALLABLE are replaced by OUTPUTS-DIR in the environment.
    #[arg(long, num_args = 2, value_names = ["INSTALLABLE", "OUTPUTS-DIR"], action = clap::ArgAction::Append)]
    pub redirect: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DevelopArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run this command with its arguments instead of an interactive shell.
    #[arg(short = 'c', long, num_args = 1.., allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Option<Vec<String>>,
    /// The stdenv phase to run (e.g. `build` or `configure`).
    #[arg(long, value_name = "PHASE-NAME")]
    pub phase: Option<String>,
    /// Run the `unpack` phase.
    #[arg(long)]
    pub unpack: bool,
    /// Run the `configure` phase.
    #[arg(long)]
    pub configure: bool,
    /// Run the `build` phase.
    #[arg(long)]
    pub build: bool,
    /// Run the `check` phase.
    #[arg(long)]
    pub check: bool,
    /// Run the `install` phase.
    #[arg(long)]
    pub install: bool,
    /// Run the `installcheck` phase.
    #[arg(long)]
    pub installcheck: bool,
    /// Clear the entire environment (except the variables given to `--keep`).
    #[arg(short = 'i', long)]
    pub ignore_environment: bool,
    /// Keep this environment variable (with `--ignore-environment`).
    #[arg(short = 'k', long, value_name = "NAME")]
    pub keep: Vec<String>,
    /// Unset this environment variable.
    #[arg(short = 'u', long, value_name = "NAME")]
    pub unset: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct PrintDevEnvArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print the environment as JSON (variables, functions).
    #[arg(long)]
    pub json: bool,
}

/// A captured environment, the path that holds it, and the flake source
/// directory of the installable (where `--phase` runs).
struct Captured {
    env: BuildEnvironment,
    path: StorePath,
    store: DevStore,
    source_dir: Option<PathBuf>,
}

/// The environment of the installable: from the cache when the project is
/// unchanged, else evaluated and captured. Mirrors `getBuildEnvironment`.
fn build_environment(ctx: &Context, args: &CommonArgs) -> Result<Captured> {
    let dev = DevStore::open(ctx)?;
    let store = &*dev.store;
    let installable = installable::installable_or_default(args.installable.as_deref(), &args.nix);
    let key = cache::flake_key(ctx, &installable, &args.nix);
    let cached = key.as_ref().and_then(|k| k.get(store));
    let path = match cached {
        Some((_, env)) => env,
        None => match installable::resolve(ctx, &dev, &installable, &args.nix)? {
            Target::Environment(p) => p,
            Target::Derivation(drv) => {
                let env = match cache::environment_of(store, &drv) {
                    Some(env) => env,
                    None => {
                        let ctx = &crate::cmd::flake::with_flake_config(ctx);
                        let env = capture::derivation_environment(ctx, &dev, &drv)?;
                        cache::remember(store, &drv, &env);
                        env
                    }
                };
                if let Some(k) = &key {
                    k.put(&drv, &env);
                }
                env
            }
        },
    };
    // Kept from the garbage collector until the shell runs (then
    // `NIX_GCROOT` in its environment is a root, as in Nix).
    store
        .add_temp_root(&path)
        .with_context(|| format!("cannot keep '{}' from the collector", store.print(&path)))?;
    if let Some(profile) = &args.profile {
        if let Some(dir) = std::path::absolute(profile)?.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory '{}'", dir.display()))?;
        }
        // Through a daemon as Nix's client: the link made here, then
        // registered as an indirect root by the daemon.
        rix_store::profiles::update_profile(store, profile, &path)?;
    }
    let bytes = dev
        .read_file(&path)
        .with_context(|| format!("cannot read the environment '{}'", store.print(&path)))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("the environment '{}' is not UTF-8", store.print(&path)))?;
    let env = BuildEnvironment::from_json(&text)
        .with_context(|| format!("in the environment '{}'", store.print(&path)))?;
    let source_dir = crate::cmd::instantiate::is_flake_installable(&installable)
        .then(|| flake_source_dir(&installable))
        .flatten();
    Ok(Captured {
        env,
        path,
        store: dev,
        source_dir,
    })
}

/// `--redirect`s: each installable's paths (evaluated, nothing built) and
/// the directory that replaces them.
fn redirects(ctx: &Context, c: &Captured, args: &CommonArgs) -> Result<Vec<rc::Redirect>> {
    args.redirect
        .chunks(2)
        .map(|pair| {
            let paths = installable::output_paths(ctx, &c.store, &pair[0], &args.nix)?;
            let dir = std::path::absolute(&pair[1])
                .with_context(|| format!("cannot resolve '{}'", pair[1]))?;
            Ok(rc::Redirect {
                what: pair[0].clone(),
                paths: paths.iter().map(|p| c.store.print(p)).collect(),
                dir: dir.display().to_string(),
            })
        })
        .collect()
}

/// The directory of a local (`path:`, `git+file:`) flake.
fn flake_source_dir(installable: &str) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?.display().to_string();
    let inst = rix_flake::reference::parse_installable(installable, &cwd).ok()?;
    rix_flake::lock::source_path(&inst.flake_ref).map(PathBuf::from)
}

/// `rix print-dev-env`.
pub fn print_dev_env(ctx: &Context, args: &PrintDevEnvArgs) -> Result<()> {
    let c = build_environment(ctx, &args.common)?;
    let out = if args.json {
        c.env.to_json()
    } else {
        // Removed when done, as Nix's (the script then names files that
        // are gone: Nix's behaviour for structured attributes).
        let redirects = redirects(ctx, &c, &args.common)?;
        let tmp = create_temp_dir("nix-dev-env")?;
        let script = rc::make_rc_script(&c.env, &tmp, &outputs_dir()?, None, &redirects);
        let _ = std::fs::remove_dir_all(&tmp);
        script?
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // As Nix's `writeToStdout`: a newline after.
    stdout.write_all(out.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// `$PWD/outputs`, where the outputs of the shell's builds go.
fn outputs_dir() -> Result<PathBuf> {
    Ok(std::env::current_dir()
        .context("cannot find the current directory")?
        .join("outputs"))
}

impl DevelopArgs {
    /// The phase asked for, by any of its flags.
    fn phase(&self) -> Option<String> {
        let flags = [
            (self.unpack, "unpack"),
            (self.configure, "configure"),
            (self.build, "build"),
            (self.check, "check"),
            (self.install, "install"),
            (self.installcheck, "installCheck"),
        ];
        flags
            .iter()
            .rev()
            .find(|(on, _)| *on)
            .map(|(_, p)| (*p).to_owned())
            .or_else(|| self.phase.clone())
    }
}

/// `rix develop`.
pub fn develop(ctx: &Context, args: &DevelopArgs) -> Result<()> {
    let phase = args.phase();
    if phase.is_some() && args.command.is_some() {
        bail!("you cannot use both '--command' and '--phase'");
    }
    if args.ignore_environment && !args.unset.is_empty() {
        bail!("--unset does not make sense with --ignore-environment");
    }
    if !args.ignore_environment && !args.keep.is_empty() {
        bail!("--keep does not make sense without --ignore-environment");
    }
    let c = build_environment(ctx, &args.common)?;
    let redirects = redirects(ctx, &c, &args.common)?;
    let mut env: Vec<(OsString, OsString)> = if args.ignore_environment {
        args.keep
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
            .collect()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| !args.unset.iter().any(|u| k == u.as_str()))
            .collect()
    };
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    // Where the shell's `mktemp -t` would make `NIX_BUILD_TOP`.
    let temp_base = var("TMPDIR")
        .filter(|t| !t.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let shell = find_program("bash", var("PATH").as_ref());
    // Written only for structured attributes (Nix makes it always).
    let tmp_dir = if c.env.structured_attrs.is_some() {
        create_temp_dir("nix-develop")?
    } else {
        temp_base.clone()
    };
    // `NIX_BUILD_TOP`, made here as the rc script's `mktemp -d -t
    // nix-shell.XXXXXX` would (mode 0700), and the rc script given to bash
    // as an unlinked file it reads through `/dev/fd` (Nix's script removes
    // its file with `rm`): two processes fewer to start, for each entry.
    let build_top = tempfile::Builder::new()
        .prefix("nix-shell.")
        .rand_bytes(6)
        .tempdir_in(&temp_base)
        .with_context(|| format!("cannot create a directory in '{}'", temp_base.display()))?
        .keep();
    let mut script = rc::make_rc_script(
        &c.env,
        &tmp_dir,
        &outputs_dir()?,
        Some(&build_top),
        &redirects,
    )?;
    if let Some(phase) = &phase {
        script += "foundMakefile=1\n";
        script += &format!("runHook {phase}Phase\n");
    } else if let Some(command) = &args.command {
        let words: Vec<String> = command.iter().map(|s| shell_escape(s)).collect();
        script += &format!("exec {}\n", words.join(" "));
    } else {
        script = format!(
            "[ -n \"$PS1\" ] && [ -e ~/.bashrc ] && source ~/.bashrc;\nshopt -u expand_aliases\n{script}\nshopt -s expand_aliases\n"
        );
        let s = &ctx.settings;
        let prompt = s.get("bash-prompt");
        if !prompt.is_empty() {
            script += &format!("[ -n \"$PS1\" ] && PS1={};\n", shell_escape(&prompt));
        }
        let prefix = s.get("bash-prompt-prefix");
        if !prefix.is_empty() {
            script += &format!(
                "[ -n \"$PS1\" ] && PS1={}\"$PS1\";\n",
                shell_escape(&prefix)
            );
        }
        let suffix = s.get("bash-prompt-suffix");
        if !suffix.is_empty() {
            script += &format!("[ -n \"$PS1\" ] && PS1+={};\n", shell_escape(&suffix));
        }
    }
    let rc_path = rc_descriptor(&script, &temp_base)?;

    env.retain(|(k, _)| k != "NIX_GCROOT" && k != "SHELL");
    env.push(("NIX_GCROOT".into(), c.store.print(&c.path).into()));
    // As Nix when nixpkgs' bashInteractive is not at hand: `bash`, found
    // on PATH.
    env.push(("SHELL".into(), "bash".into()));

    let mut cmd = std::process::Command::new(&shell);
    cmd.arg0("bash").env_clear().envs(env);
    if phase.is_some() || args.command.is_some() {
        cmd.arg(&rc_path);
    } else {
        cmd.arg("--rcfile").arg(&rc_path);
    }
    // Phases assume they run in the flake's directory.
    if phase.is_some() {
        if let Some(dir) = &c.source_dir {
            std::env::set_current_dir(dir)
                .with_context(|| format!("chdir to '{}' failed", dir.display()))?;
        }
    }
    let layout = c.store.layout.clone();
    drop(c);
    rix_build::sandbox::enter::enter_store_namespace(&layout).map_err(anyhow::Error::msg)?;
    let e = cmd.exec();
    Err(e).with_context(|| format!("cannot run '{shell}'"))
}

/// The rc script in an unlinked file of `dir`, open (and inherited across
/// `exec`) as `/dev/fd/N`, which is returned.
fn rc_descriptor(script: &str, dir: &Path) -> Result<String> {
    use std::io::{Seek, Write};
    use std::os::fd::IntoRawFd;
    let mut f = tempfile::tempfile_in(dir)
        .with_context(|| format!("cannot create the rc file in '{}'", dir.display()))?;
    f.write_all(script.as_bytes())
        .and_then(|()| f.rewind())
        .context("cannot write the rc file")?;
    let fd = f.into_raw_fd();
    nix::fcntl::fcntl(
        // SAFETY: `fd` was just taken from the file and stays open.
        #[allow(unsafe_code)]
        unsafe {
            std::os::fd::BorrowedFd::borrow_raw(fd)
        },
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .context("cannot pass the rc file to the shell")?;
    Ok(format!("/dev/fd/{fd}"))
}

/// `$TMPDIR/<prefix>-<pid>-<n>`, mode 0700, as Nix's `createTempDir`.
pub(crate) fn create_temp_dir(prefix: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0.. {
        let p = base.join(format!("{prefix}-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("creating directory '{}'", p.display()))
            }
        }
    }
    unreachable!("some name is free")
}

/// `name` found in `path` (`/bin:/usr/bin` when unset, as `execvp`), or
/// `name` itself.
fn find_program(name: &str, path: Option<&OsString>) -> String {
    let default = OsString::from("/bin:/usr/bin");
    let path = path.unwrap_or(&default);
    for dir in std::env::split_paths(path) {
        let p = dir.join(name);
        if is_executable(&p) {
            return p.display().to_string();
        }
    }
    name.to_owned()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
