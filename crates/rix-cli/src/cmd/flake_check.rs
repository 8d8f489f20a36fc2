//! `rix flake check`, as Nix 2.26's `CmdFlakeCheck`: every known output is
//! evaluated and checked for its type (derivations, apps, overlays, modules,
//! NixOS configurations, Hydra jobs, templates, bundlers, formatters), for
//! this system (`--all-systems`: every system); deprecated and unknown
//! outputs are warned about; then the `checks` of this system are built
//! (`--no-build`: not). With `--keep-going`, every error is reported and the
//! command fails at the end.

use std::collections::BTreeSet;

use anyhow::Result;
use clap::Args;
use rix_eval::error::{log_stderr, stderr_is_tty};
use rix_eval::source::Pos;
use rix_eval::{ErrorKind, EvalError, Evaluator, Value};

use crate::cmd::flake::{self, FlakeRefArgs};
use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub base: FlakeRefArgs,
    /// Do not build checks.
    #[arg(long)]
    pub no_build: bool,
    /// Check the outputs for all systems.
    #[arg(long)]
    pub all_systems: bool,
    /// Go on after an error, report all of them.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
}

type EResult<T> = rix_eval::Result<T>;

struct Checker<'a> {
    ev: &'a mut Evaluator,
    system: String,
    all_systems: bool,
    keep_going: bool,
    show_trace: bool,
    has_errors: bool,
    omitted: BTreeSet<String>,
    /// The `checks` of this system, to build.
    drv_paths: Vec<String>,
}

fn err(message: String) -> Box<EvalError> {
    EvalError::new(ErrorKind::Other, message, Pos::NONE)
}

fn show_pos(pos: Pos) -> String {
    match pos.resolve() {
        Some(l) => format!("{}:{}:{}", l.origin, l.line, l.column),
        None => "«none»:0".to_owned(),
    }
}

impl Checker<'_> {
    /// An activity, as Nix's logger prints it off a terminal.
    fn activity(&self, what: &str) {
        if !stderr_is_tty() {
            log_stderr(&format!("{what}..."));
        }
    }

    /// An error: reported and remembered with `--keep-going`, else raised.
    fn report(&mut self, e: Box<EvalError>) -> EResult<()> {
        if !self.keep_going {
            return Err(e);
        }
        // Nix's `ignoreExceptionExceptInterrupt`.
        log_stderr(&format!(
            "\x1b[31;1merror (ignored):\x1b[0m {}",
            e.render(self.show_trace)
        ));
        self.has_errors = true;
        Ok(())
    }

    /// Runs `f`; its error gets the frame `(pos, trace)` and is reported.
    fn guarded(
        &mut self,
        pos: Pos,
        trace: String,
        f: impl FnOnce(&mut Self) -> EResult<()>,
    ) -> EResult<()> {
        match f(self) {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = e.add_trace(pos, trace);
                self.report(e)
            }
        }
    }

    /// A set's attributes in the order Nix iterates them: by symbol, that is
    /// (for names a flake introduces) by first appearance in its source,
    /// approximated by the attributes' positions.
    fn attrs(&mut self, v: &Value) -> EResult<Vec<rix_eval::value::Attr>> {
        match self.ev.force(v)? {
            Value::Attrs(a) => {
                let mut v: Vec<_> = a.iter().cloned().collect();
                v.sort_by_key(|a| if a.pos.is_none() { u32::MAX } else { a.pos.0 });
                Ok(v)
            }
            other => Err(rix_eval::error::type_error(
                format!("expected a set but found {}", other.show_type()),
                Pos::NONE,
            )),
        }
    }

    fn check_system_name(&mut self, system: &str, pos: Pos) -> EResult<()> {
        if !system.contains('-') {
            let e = err(format!(
                "'{system}' is not a valid system type, at {}",
                show_pos(pos)
            ));
            self.report(e)?;
        }
        Ok(())
    }

    fn check_system_type(&mut self, system: &str) -> bool {
        if !self.all_systems && system != self.system {
            self.omitted.insert(system.to_owned());
            false
        } else {
            true
        }
    }

    fn check_derivation(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<Option<String>> {
        let mut found = None;
        self.guarded(
            pos,
            format!("while checking the derivation '{path}'"),
            |c| {
                c.activity(&format!("checking derivation {path}"));
                if !flake::is_derivation(c.ev, v)? {
                    return Err(err(format!("flake attribute '{path}' is not a derivation")));
                }
                let drvs =
                    c.ev.get_derivations(v, &rix_eval::value::Attrs::default())?;
                if let Some(d) = drvs.first() {
                    let p = c.ev.drv_path_of(d)?;
                    log_stderr(&format!("derivation evaluated to {p}"));
                    found = Some(p);
                }
                Ok(())
            },
        )?;
        Ok(found)
    }

    fn check_app(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.guarded(
            pos,
            format!("while checking the app definition '{path}'"),
            |c| {
                c.activity(&format!("checking app '{path}'"));
                let attrs = c.attrs(v)?;
                let get = |n: &str| attrs.iter().find(|a| a.name.as_str() == n).cloned();
                match get("type") {
                    Some(t) => {
                        c.ev.force_string_no_ctx(&t.value, t.pos)?;
                    }
                    None => return Err(err(format!("app '{path}' lacks attribute 'type'"))),
                }
                match get("program") {
                    Some(p) => {
                        c.ev.force_string(&p.value, p.pos)?;
                    }
                    None => return Err(err(format!("app '{path}' lacks attribute 'program'"))),
                }
                match get("meta") {
                    Some(m) => {
                        let meta = c.attrs(&m.value)?;
                        match meta.iter().find(|a| a.name.as_str() == "description") {
                            Some(d) => {
                                c.ev.force_string_no_ctx(&d.value, d.pos)?;
                            }
                            None => rix_flake::reference::warn(&format!(
                                "app '{path}' lacks attribute 'meta.description'"
                            )),
                        }
                    }
                    None => {
                        rix_flake::reference::warn(&format!("app '{path}' lacks attribute 'meta'"))
                    }
                }
                for a in &attrs {
                    let n = a.name.as_str();
                    if !["type", "program", "meta"].contains(&n) {
                        return Err(err(format!("app '{path}' has unsupported attribute '{n}'")));
                    }
                }
                Ok(())
            },
        )
    }

    /// `final: prev: ...` (or `_final`, `_`).
    fn check_overlay(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.guarded(pos, format!("while checking the overlay '{path}'"), |c| {
            c.activity(&format!("checking overlay '{path}'"));
            let forced = c.ev.force(v)?;
            let Value::Lambda(f) = &forced else {
                return Err(err(format!(
                    "overlay is not a function, but {} instead",
                    forced.show_type()
                )));
            };
            let named_final = match &f.lambda.param {
                rix_eval::ast::Param::Ident(s) => {
                    let n = s.as_str();
                    n == "final" || n == "_" || n.strip_prefix('_') == Some("final")
                }
                rix_eval::ast::Param::Formals { .. } => false,
            };
            if !named_final {
                return Err(err("overlay does not take an argument named 'final'".into()));
            }
            Ok(())
        })
    }

    fn check_module(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.guarded(
            pos,
            format!("while checking the NixOS module '{path}'"),
            |c| {
                c.activity(&format!("checking NixOS module '{path}'"));
                c.ev.force(v)?;
                Ok(())
            },
        )
    }

    fn check_hydra_jobs(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.guarded(
            pos,
            format!("while checking the Hydra jobset '{path}'"),
            |c| {
                c.activity(&format!("checking Hydra job '{path}'"));
                let attrs = c.attrs(v)?;
                if flake::is_derivation(c.ev, v)? {
                    return Err(err("jobset should not be a derivation at top-level".into()));
                }
                for a in attrs {
                    c.attrs(&a.value)?;
                    let path2 = format!("{path}.{}", a.name.as_str());
                    if flake::is_derivation(c.ev, &a.value)? {
                        c.activity(&format!("checking Hydra job '{path2}'"));
                        c.check_derivation(&path2, &a.value, a.pos)?;
                    } else {
                        c.check_hydra_jobs(&path2, &a.value, a.pos)?;
                    }
                }
                Ok(())
            },
        )
    }

    fn check_nixos_configuration(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.guarded(
            pos,
            format!("while checking the NixOS configuration '{path}'"),
            |c| {
                c.activity(&format!("checking NixOS configuration '{path}'"));
                let mut cur = v.clone();
                for a in ["config", "system", "build", "toplevel"] {
                    cur = flake::get_attr(c.ev, &cur, a)?.ok_or_else(|| {
                        err(format!(
                        "attribute '{a}' in selection path 'config.system.build.toplevel' not found"
                    ))
                    })?;
                }
                c.ev.force(&cur)?;
                if !flake::is_derivation(c.ev, &cur)? {
                    return Err(err(
                        "attribute 'config.system.build.toplevel' is not a derivation".into(),
                    ));
                }
                Ok(())
            },
        )
    }

    fn check_template(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.guarded(pos, format!("while checking the template '{path}'"), |c| {
            c.activity(&format!("checking template '{path}'"));
            let attrs = c.attrs(v)?;
            let get = |n: &str| attrs.iter().find(|a| a.name.as_str() == n).cloned();
            match get("path") {
                Some(p) => {
                    let (dir, _) = c.ev.coerce_to_path(&p.value, p.pos)?;
                    if std::fs::symlink_metadata(c.ev.fs_path(&dir)).is_err() {
                        return Err(err(format!(
                            "template '{path}' refers to a non-existent path '{dir}'"
                        )));
                    }
                }
                None => return Err(err(format!("template '{path}' lacks attribute 'path'"))),
            }
            match get("description") {
                Some(d) => {
                    c.ev.force_string_no_ctx(&d.value, d.pos)?;
                }
                None => {
                    return Err(err(format!(
                        "template '{path}' lacks attribute 'description'"
                    )))
                }
            }
            for a in &attrs {
                let n = a.name.as_str();
                if !["path", "description", "welcomeText"].contains(&n) {
                    return Err(err(format!(
                        "template '{path}' has unsupported attribute '{n}'"
                    )));
                }
            }
            Ok(())
        })
    }

    fn check_bundler(&mut self, path: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.guarded(pos, format!("while checking the template '{path}'"), |c| {
            c.activity(&format!("checking bundler '{path}'"));
            if !matches!(c.ev.force(v)?, Value::Lambda(_)) {
                return Err(err("bundler must be a function".into()));
            }
            Ok(())
        })
    }

    /// `f` on each system of a per-system output this run checks.
    fn per_system(
        &mut self,
        v: &Value,
        mut f: impl FnMut(&mut Self, &str, &Value, Pos) -> EResult<()>,
    ) -> EResult<()> {
        for a in self.attrs(v)? {
            let sys = a.name.as_str().to_owned();
            self.check_system_name(&sys, a.pos)?;
            if self.check_system_type(&sys) {
                f(self, &sys, &a.value, a.pos)?;
            }
        }
        Ok(())
    }

    fn output(&mut self, name: &str, v: &Value, pos: Pos) -> EResult<()> {
        self.activity(&format!("checking flake output '{name}'"));
        self.guarded(pos, format!("while checking flake output '{name}'"), |c| {
            c.ev.force(v)?;
            let replacement = match name {
                "defaultPackage" => "packages.<system>.default",
                "defaultApp" => "apps.<system>.default",
                "defaultTemplate" => "templates.default",
                "defaultBundler" => "bundlers.<system>.default",
                "overlay" => "overlays.default",
                "devShell" => "devShells.<system>.default",
                "nixosModule" => "nixosModules.default",
                _ => "",
            };
            if !replacement.is_empty() {
                rix_flake::reference::warn(&format!(
                    "flake output attribute '{name}' is deprecated; use '{replacement}' instead"
                ));
            }
            match name {
                "checks" => c.per_system(v, |c, sys, per, _| {
                    for a in c.attrs(per)? {
                        let path = format!("{name}.{sys}.{}", a.name.as_str());
                        let drv = c.check_derivation(&path, &a.value, a.pos)?;
                        if let Some(d) = drv.filter(|_| sys == c.system) {
                            c.drv_paths.push(d);
                        }
                    }
                    Ok(())
                }),
                "formatter" => c.per_system(v, |c, sys, d, pos| {
                    c.check_derivation(&format!("{name}.{sys}"), d, pos)
                        .map(drop)
                }),
                "packages" | "devShells" => c.per_system(v, |c, sys, per, _| {
                    for a in c.attrs(per)? {
                        let path = format!("{name}.{sys}.{}", a.name.as_str());
                        c.check_derivation(&path, &a.value, a.pos)?;
                    }
                    Ok(())
                }),
                "apps" => c.per_system(v, |c, sys, per, _| {
                    for a in c.attrs(per)? {
                        c.check_app(
                            &format!("{name}.{sys}.{}", a.name.as_str()),
                            &a.value,
                            a.pos,
                        )?;
                    }
                    Ok(())
                }),
                "defaultPackage" | "devShell" => c.per_system(v, |c, sys, d, pos| {
                    c.check_derivation(&format!("{name}.{sys}"), d, pos)
                        .map(drop)
                }),
                "defaultApp" => c.per_system(v, |c, sys, d, pos| {
                    c.check_app(&format!("{name}.{sys}"), d, pos)
                }),
                "legacyPackages" => {
                    for a in c.attrs(v)? {
                        c.check_system_name(a.name.as_str(), a.pos)?;
                        c.check_system_type(a.name.as_str());
                    }
                    Ok(())
                }
                "overlay" => c.check_overlay(name, v, pos),
                "overlays" => {
                    for a in c.attrs(v)? {
                        c.check_overlay(&format!("{name}.{}", a.name.as_str()), &a.value, a.pos)?;
                    }
                    Ok(())
                }
                "nixosModule" => c.check_module(name, v, pos),
                "nixosModules" => {
                    for a in c.attrs(v)? {
                        c.check_module(&format!("{name}.{}", a.name.as_str()), &a.value, a.pos)?;
                    }
                    Ok(())
                }
                "nixosConfigurations" => {
                    for a in c.attrs(v)? {
                        let path = format!("{name}.{}", a.name.as_str());
                        c.check_nixos_configuration(&path, &a.value, a.pos)?;
                    }
                    Ok(())
                }
                "hydraJobs" => c.check_hydra_jobs(name, v, pos),
                "defaultTemplate" => c.check_template(name, v, pos),
                "templates" => {
                    for a in c.attrs(v)? {
                        c.check_template(&format!("{name}.{}", a.name.as_str()), &a.value, a.pos)?;
                    }
                    Ok(())
                }
                "defaultBundler" => c.per_system(v, |c, sys, b, pos| {
                    c.check_bundler(&format!("{name}.{sys}"), b, pos)
                }),
                "bundlers" => c.per_system(v, |c, sys, per, _| {
                    for a in c.attrs(per)? {
                        let path = format!("{name}.{sys}.{}", a.name.as_str());
                        c.check_bundler(&path, &a.value, a.pos)?;
                    }
                    Ok(())
                }),
                // Known but unchecked community attributes.
                "lib"
                | "darwinConfigurations"
                | "darwinModules"
                | "flakeModule"
                | "flakeModules"
                | "herculesCI"
                | "homeConfigurations"
                | "homeModule"
                | "homeModules"
                | "nixopsConfigurations" => Ok(()),
                _ => {
                    rix_flake::reference::warn(&format!("unknown flake output '{name}'"));
                    Ok(())
                }
            }
        })
    }
}

pub fn run(ctx: &Context, a: &CheckArgs) -> Result<()> {
    let show_trace = a.base.eval_args.show_trace();
    let (_, store) = crate::cmd::instantiate::open_eval_store(ctx)?;
    let mut ev = Evaluator::new(flake::eval_options(ctx, &a.base.eval_args, store));
    let (_, locked) = flake::lock_for_check(ctx, &mut ev, &a.base)?;
    let system = ev.options().system.clone();
    let keep_going = a.keep_going || ctx.settings.get_bool("keep-going").unwrap_or(false);
    let mut c = Checker {
        ev: &mut ev,
        system,
        all_systems: a.all_systems,
        keep_going,
        show_trace,
        has_errors: false,
        omitted: BTreeSet::new(),
        drv_paths: Vec::new(),
    };
    let r = (|| -> EResult<()> {
        c.activity("evaluating flake");
        let root = rix_flake::call_flake(c.ev, &locked).map_err(|e| e.into_eval())?;
        let outputs = flake::get_attr(c.ev, &root, "outputs")?.unwrap_or(root);
        // `hydraJobs` first (Nix's `enumerateOutputs`), then the others.
        let mut attrs = c.attrs(&outputs)?;
        attrs.sort_by_key(|a| a.name.as_str() != "hydraJobs");
        for a in attrs {
            c.output(a.name.as_str(), &a.value, a.pos)?;
        }
        crate::cmd::instantiate::flush(c.ev)
    })();
    r.map_err(|e| crate::cmd::instantiate::eval_error(e, show_trace))?;
    let (drv_paths, has_errors, omitted) = (
        std::mem::take(&mut c.drv_paths),
        c.has_errors,
        std::mem::take(&mut c.omitted),
    );
    drop(c);
    if !a.no_build && !drv_paths.is_empty() {
        if !stderr_is_tty() {
            log_stderr(&format!("running {} flake checks...", drv_paths.len()));
        }
        let installables = drv_paths.iter().map(|p| format!("{p}^*")).collect();
        crate::cmd::build::realise_installables(ctx, installables, Default::default())?;
    }
    if has_errors {
        anyhow::bail!("some errors were encountered during the evaluation");
    }
    if !omitted.is_empty() {
        rix_flake::reference::warn(&format!(
            "The check omitted these incompatible systems: {}\nUse '--all-systems' to check all.",
            omitted.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}
