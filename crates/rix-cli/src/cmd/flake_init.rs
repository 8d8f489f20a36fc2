//! `rix flake init` and `rix flake new DIR`, as Nix 2.26's
//! `CmdFlakeInitCommon`: the template (`-t FLAKEREF#NAME`; its attribute
//! `templates.NAME`, or `templates.default` / `defaultTemplate`) is
//! evaluated, the tree its `path` names is copied into the directory
//! (identical files skipped, different ones refused), new files are added to
//! Git with `--intent-to-add` when the directory is a repository, and its
//! `welcomeText` is printed.
//!
//! Nix's default template flake is `templates`, found in the registries; the
//! global registry needs the network and is empty by default here, so with
//! no `-t` and no `templates` entry rix writes a minimal `flake.nix` instead.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_eval::source::Pos;
use rix_eval::Evaluator;
use rix_flake::reference::{self, ParseOptions};
use rix_flake::FlakeError;

use crate::cmd::flake;
use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// The template: `FLAKEREF#NAME` (`templates.NAME` of that flake;
    /// default: `templates`, from the registries).
    #[arg(short = 't', long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    #[command(flatten)]
    pub eval_args: crate::cmd::instantiate::EvalArgs,
}

#[derive(Args, Debug, Clone)]
pub struct NewArgs {
    /// The directory to create the flake in.
    #[arg(value_name = "DEST_DIR")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub init: InitArgs,
}

const MINIMAL: &str = r#"{
  description = "A very basic flake";

  outputs = { self }: {
  };
}
"#;

pub fn init(ctx: &Context, a: &InitArgs) -> Result<()> {
    create(ctx, a, Path::new("."))
}

pub fn new(ctx: &Context, a: &NewArgs) -> Result<()> {
    create(ctx, &a.init, &a.dest)
}

fn create(ctx: &Context, a: &InitArgs, dest: &Path) -> Result<()> {
    let dest = PathBuf::from(rix_eval::lower::canon_path(
        &std::path::absolute(dest)?.to_string_lossy(),
    ));
    let url = a.template.as_deref().unwrap_or("templates");
    let cwd = std::env::current_dir()?.display().to_string();
    let show_trace = a.eval_args.show_trace();
    let err = |e: FlakeError| flake::flake_err(e, show_trace);
    let (flake_ref, fragment) = reference::parse_with_fragment(
        url,
        ParseOptions {
            base_dir: Some(&cwd),
            ..ParseOptions::default()
        },
    )
    .map_err(err)?;
    let settings = flake::FlakeLockArgs::default().settings(ctx).map_err(err)?;
    if a.template.is_none()
        && reference::is_indirect(&flake_ref)
        && rix_flake::registry::resolve(&settings, &flake_ref).is_err()
    {
        rix_flake::reference::warn(
            "no 'templates' flake in the flake registries (the global registry is empty unless \
             'flake-registry' names one); writing a minimal flake.nix instead",
        );
        return write_minimal(&dest);
    }
    let store = crate::cmd::instantiate::dry_run_store(ctx)?;
    let mut ev = Evaluator::new(flake::eval_options(ctx, &a.eval_args, store));
    let flags = rix_flake::lock::LockFlags {
        write_lock_file: false,
        ..Default::default()
    };
    let (template, welcome) = (|| -> Result<(PathBuf, Option<String>), FlakeError> {
        let locked = rix_flake::lock_flake(&mut ev, &settings, &flake_ref, &flags)?;
        let root = rix_flake::call_flake(&mut ev, &locked)?;
        let outputs = flake::get_attr(&mut ev, &root, "outputs")?.unwrap_or(root);
        let paths: Vec<String> = if fragment.is_empty() {
            vec!["templates.default".into(), "defaultTemplate".into()]
        } else {
            vec![format!("templates.{fragment}"), fragment.clone()]
        };
        let mut found = None;
        for p in &paths {
            if let Some(v) = flake::select(&mut ev, &outputs, p)? {
                found = Some(v);
                break;
            }
        }
        let v = found.ok_or_else(|| {
            FlakeError::msg(format!(
                "flake '{flake_ref}' does not provide attribute {}",
                flake::show_attr_paths(&paths)
            ))
        })?;
        let path = flake::get_attr(&mut ev, &v, "path")?
            .ok_or_else(|| FlakeError::msg("template lacks attribute 'path'".to_owned()))?;
        let (dir, _) = ev.coerce_to_path(&path, Pos::NONE)?;
        let welcome = match flake::get_attr(&mut ev, &v, "welcomeText")? {
            Some(w) => Some(ev.force_string_no_ctx(&w, Pos::NONE)?),
            None => None,
        };
        Ok((ev.fs_path(&dir), welcome))
    })()
    .map_err(err)?;

    let mut copier = Copier::default();
    copier.copy_dir(&template, &dest)?;
    if !copier.changed.is_empty() && dest.join(".git").exists() {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(&dest)
            .args(["add", "--intent-to-add", "--force", "--"])
            .args(&copier.changed)
            .status()
            .context("running git add")?;
        if !status.success() {
            bail!("program 'git' failed with {status}");
        }
    }
    if let Some(w) = welcome {
        rix_eval::error::log_stderr("\n");
        rix_eval::error::log_stderr(&w);
    }
    if !copier.conflicts.is_empty() {
        bail!(
            "encountered {} conflicts - see above",
            copier.conflicts.len()
        );
    }
    Ok(())
}

fn write_minimal(dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    let path = dest.join("flake.nix");
    if path.exists() {
        bail!("refusing to overwrite existing file '{}'", path.display());
    }
    std::fs::write(&path, MINIMAL)?;
    rix_eval::error::log_stderr(&format!("wrote: {:?}", path.display().to_string()));
    Ok(())
}

#[derive(Default)]
struct Copier {
    changed: Vec<PathBuf>,
    conflicts: Vec<PathBuf>,
}

impl Copier {
    fn conflict(&mut self, to: &Path, from: &Path) {
        rix_eval::error::log_stderr(&format!(
            "refusing to overwrite existing file '{}'\n please merge it manually with '{}'",
            to.display(),
            from.display()
        ));
        self.conflicts.push(to.to_owned());
    }

    /// Nix's `copyDir` (entries in name order).
    fn copy_dir(&mut self, from: &Path, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("creating '{}'", to.display()))?;
        let mut entries: Vec<_> = std::fs::read_dir(from)
            .with_context(|| format!("reading '{}'", from.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let (from2, to2) = (e.path(), to.join(e.file_name()));
            let ft = e.file_type()?;
            let exists = std::fs::symlink_metadata(&to2).is_ok();
            // A directory is reported (and added to Git) after its
            // contents, as Nix does.
            if ft.is_dir() {
                self.copy_dir(&from2, &to2)?;
            } else if ft.is_file() {
                let contents = std::fs::read(&from2)?;
                if exists {
                    if std::fs::read(&to2).ok().as_deref() != Some(&contents[..]) {
                        self.conflict(&to2, &from2);
                    } else {
                        rix_eval::error::log_stderr(&format!(
                            "skipping identical file: {}",
                            from2.display()
                        ));
                    }
                    continue;
                }
                std::fs::write(&to2, contents)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&from2)?;
                if exists {
                    if std::fs::read_link(&to2).ok().as_ref() != Some(&target) {
                        self.conflict(&to2, &from2);
                    } else {
                        rix_eval::error::log_stderr(&format!(
                            "skipping identical file: {}",
                            from2.display()
                        ));
                    }
                    continue;
                }
                std::os::unix::fs::symlink(&target, &to2)?;
            } else {
                bail!(
                    "path '{}' needs to be a symlink, file, or directory",
                    from2.display()
                );
            }
            // Nix prints a `std::filesystem::path`: quoted.
            rix_eval::error::log_stderr(&format!("wrote: {:?}", to2.display().to_string()));
            self.changed.push(to2);
        }
        Ok(())
    }
}
