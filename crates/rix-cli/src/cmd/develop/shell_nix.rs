//! `rix shell-nix`, and rix called as `nix-shell`: Nix's `nix-shell`
//! (`src/nix-build/nix-build.cc`, `main_nix_build` with `isNixShell`). The
//! derivation's inputs are realised, and bash starts with the derivation's
//! environment variables and an rc file that sources `$stdenv/setup`: not
//! `get-env.sh`'s capture, which is `rix develop`'s.
//!
//! Arguments are Nix's legacy ones, parsed here as `nix-shell` parses them
//! (including the `#! nix-shell` lines of a script it runs).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rix_eval::value::Value;
use rix_eval::{AutoArg, Evaluator};
use rix_formats::StorePath;

use super::build_env::shell_escape;
use super::store::DevStore;
use crate::cmd::instantiate::{eval_error, EvalArgs};
use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct ShellNixArgs {
    /// `nix-shell`'s arguments: files (default `shell.nix`, else
    /// `default.nix`), `-A ATTR`, `--run CMD`, `--command CMD`, `--pure`,
    /// `-p PACKAGES`, `--arg NAME EXPR`, `--argstr NAME STRING`, `-E EXPR`,
    /// `--keep NAME`, `--exclude REGEX`, `-I PATH`, or a script whose
    /// `#! nix-shell` lines hold them.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Variables `--pure` keeps (`keepVars` and `networkProxyVariables`).
const KEEP_VARS: &[&str] = &[
    "HOME",
    "XDG_RUNTIME_DIR",
    "USER",
    "LOGNAME",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "WAYLAND_SOCKET",
    "PATH",
    "TERM",
    "IN_NIX_SHELL",
    "NIX_SHELL_PRESERVE_PROMPT",
    "TZ",
    "PAGER",
    "NIX_BUILD_SHELL",
    "SHLVL",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// The parsed command line.
#[derive(Default)]
struct Options {
    attr_paths: Vec<String>,
    remaining: Vec<String>,
    env_command: String,
    interactive: bool,
    pure: bool,
    packages: bool,
    from_args: bool,
    read_stdin: bool,
    dry_run: bool,
    keep: BTreeSet<String>,
    exclude: Vec<String>,
    eval: EvalArgs,
    store: Option<String>,
    settings: Vec<(String, String)>,
    script: Option<String>,
    in_shebang: bool,
}

/// Recreates perl's `shellwords`, as Nix's `shellwords`.
pub fn shellwords(s: &str) -> Result<Vec<String>> {
    #[derive(PartialEq)]
    enum St {
        Begin,
        Single,
        Double,
    }
    let mut res = Vec::new();
    let mut cur = String::new();
    let mut st = St::Begin;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if st == St::Begin && c.is_whitespace() {
            res.push(std::mem::take(&mut cur));
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                return Ok(res);
            }
            continue;
        }
        match c {
            '\'' if st != St::Double => {
                st = if st == St::Begin {
                    St::Single
                } else {
                    St::Begin
                }
            }
            '"' if st != St::Single => {
                st = if st == St::Begin {
                    St::Double
                } else {
                    St::Begin
                }
            }
            '\\' if st != St::Single => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c => cur.push(c),
        }
    }
    if st != St::Begin {
        bail!("unterminated quote in shebang line");
    }
    res.push(cur);
    Ok(res)
}

/// The arguments of a script's `#! nix-shell` lines, if `first` names a
/// script starting with `#!`.
fn shebang_args(first: &str) -> Result<Option<Vec<String>>> {
    let Ok(text) = std::fs::read_to_string(first) else {
        return Ok(None);
    };
    let mut lines = text.split('\n').filter(|l| !l.is_empty());
    if !lines.next().is_some_and(|l| l.starts_with("#!")) {
        return Ok(None);
    }
    let mut args = Vec::new();
    for line in lines {
        let line = line.trim_end();
        let Some(rest) = line.strip_prefix("#!") else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix("nix-shell") else {
            continue;
        };
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        args.extend(shellwords(rest.trim_start())?);
    }
    Ok(Some(args))
}

fn parse(argv: &[String]) -> Result<Options> {
    let mut o = Options {
        interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        ..Options::default()
    };
    let mut args: Vec<String> = argv.to_vec();
    let mut saved_args: Vec<String> = Vec::new();
    if let Some(first) = argv.first() {
        if let Some(sargs) = shebang_args(first)? {
            o.in_shebang = true;
            o.script = Some(first.clone());
            saved_args = argv[1..].to_vec();
            args = sargs;
        }
    }
    let mut it = args.into_iter();
    let need = |it: &mut std::vec::IntoIter<String>, flag: &str| -> Result<String> {
        it.next()
            .with_context(|| format!("flag '{flag}' requires 1 argument"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--help" => bail!("see 'rix shell-nix' in the README, or 'man nix-shell'"),
            "--version" => {
                println!("nix-shell (rix) {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "--add-drv-link" | "--indirect" | "--no-out-link" | "--no-link" => {}
            "--attr" | "-A" => o.attr_paths.push(need(&mut it, &arg)?),
            "--drv-link" | "--out-link" | "-o" => {
                need(&mut it, &arg)?;
            }
            "--dry-run" => o.dry_run = true,
            "--run-env" => {}
            "--command" | "--run" => {
                if arg == "--run" {
                    o.interactive = false;
                }
                o.env_command = need(&mut it, &arg)? + "\nexit";
            }
            "--exclude" => o.exclude.push(need(&mut it, &arg)?),
            "--expr" | "-E" => o.from_args = true,
            "--pure" => o.pure = true,
            "--impure" => o.pure = false,
            "--packages" | "-p" => o.packages = true,
            "-i" if o.in_shebang => {
                let interpreter = need(&mut it, &arg)?;
                o.interactive = false;
                let exec_args = if interpreter.contains("perl") {
                    "-a PERL"
                } else {
                    ""
                };
                let script = o.script.as_deref().unwrap_or_default();
                let joined: String = saved_args.iter().map(|a| shell_escape(a) + " ").collect();
                o.env_command = if interpreter.contains("ruby") {
                    format!(
                        "exec {exec_args} {interpreter} -e 'load(ARGV.shift)' -- {} {joined}",
                        shell_escape(script)
                    )
                } else {
                    format!(
                        "exec {exec_args} {interpreter} {} {joined}",
                        shell_escape(script)
                    )
                };
            }
            "--keep" => {
                o.keep.insert(need(&mut it, &arg)?);
            }
            "-" => o.read_stdin = true,
            "--arg" | "--argstr" => {
                let name = need(&mut it, &arg)?;
                let value = need(&mut it, &arg)?;
                if arg == "--arg" {
                    o.eval.arg.extend([name, value]);
                } else {
                    o.eval.argstr.extend([name, value]);
                }
            }
            "-I" | "--include" => o.eval.include.push(need(&mut it, &arg)?),
            "--show-trace" => o.eval.show_trace = true,
            "--pure-eval" => o.eval.pure_eval = true,
            "--extra-experimental-features" => o
                .eval
                .extra_experimental_features
                .push(need(&mut it, &arg)?),
            "--experimental-features" => o.eval.experimental_features = Some(need(&mut it, &arg)?),
            "--store" => o.store = Some(need(&mut it, &arg)?),
            "--option" => {
                let name = need(&mut it, &arg)?;
                let value = need(&mut it, &arg)?;
                o.settings.push((name, value));
            }
            "--max-jobs" | "-j" => {
                let v = need(&mut it, &arg)?;
                o.settings.push(("max-jobs".into(), v));
            }
            "--cores" => {
                let v = need(&mut it, &arg)?;
                o.settings.push(("cores".into(), v));
            }
            "--keep-failed" | "-K" | "--keep-going" | "-k" | "--fallback" | "--quiet"
            | "--verbose" | "-v" | "--no-build-output" | "-Q" | "--check" => {}
            a if a.starts_with('-') && !a.is_empty() => bail!("unrecognised flag '{a}'"),
            _ => o.remaining.push(arg),
        }
    }
    if o.packages && o.from_args {
        bail!("'-p' and '-E' are mutually exclusive");
    }
    Ok(o)
}

/// Whether `v` is a function with a formal argument `name`.
fn takes_formal(ev: &mut Evaluator, v: &Value, name: &str) -> bool {
    let Ok(v) = ev.force(v) else { return false };
    match &v {
        Value::Lambda(c) => match &c.lambda.param {
            rix_eval::ast::Param::Formals { formals, .. } => {
                formals.iter().any(|f| f.name.as_str() == name)
            }
            _ => false,
        },
        _ => false,
    }
}

/// `dir/shell.nix`, else `dir/default.nix`, for a directory
/// (`resolveShellExprPath`).
fn resolve_shell_expr_path(path: &std::path::Path) -> Result<String> {
    let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if p.is_dir() {
        for f in ["shell.nix", "default.nix"] {
            if p.join(f).exists() {
                return Ok(p.join(f).display().to_string());
            }
        }
        bail!(
            "neither 'shell.nix' nor 'default.nix' found in '{}'",
            p.display()
        );
    }
    Ok(path.display().to_string())
}

/// The one derivation to enter, and the shell's path when `<nixpkgs>` has
/// `bashInteractive` (its derivation, to build).
struct Evaluated {
    drv: StorePath,
    bash_drv: Option<StorePath>,
}

fn evaluate(ctx: &Context, store: &DevStore, o: &Options) -> Result<Evaluated> {
    let open = store.eval_store_opener();
    let show_trace = o.eval.show_trace();
    let cwd = std::env::current_dir()?.display().to_string();
    let script_dir = o.script.as_ref().map(|s| {
        let p = std::path::absolute(s).unwrap_or_else(|_| s.into());
        p.parent().map_or(cwd.clone(), |d| d.display().to_string())
    });
    crate::cmd::instantiate::on_big_stack(|| -> Result<Evaluated> {
        let mut ev = Evaluator::new(o.eval.options(ctx, open()?));
        let r = (|| -> rix_eval::Result<Evaluated> {
            let auto = ev.auto_args(&o.eval.auto_args())?;
            let mut with_shell = o.eval.auto_args();
            with_shell.insert(0, AutoArg::Expr("inNixShell".into(), "true".into()));
            let auto_shell = ev.auto_args(&with_shell)?;
            let mut drvs: Vec<String> = Vec::new();
            let mut roots = Vec::new();
            let base = match (&script_dir, o.in_shebang) {
                (Some(d), true) => d.clone(),
                _ => cwd.clone(),
            };
            if o.read_stdin {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text);
                roots.push(ev.eval_stdin(&text, &cwd)?);
            }
            for i in &o.remaining {
                if o.from_args {
                    roots.push(ev.eval_expr(i, &base)?);
                    continue;
                }
                let abs = std::path::absolute(i).map_or(i.clone(), |p| p.display().to_string());
                if abs.ends_with(".drv") && ev.store().store_dir().parse(&abs).is_ok() {
                    drvs.push(abs);
                    continue;
                }
                let path = if let Some(name) = i.strip_prefix('<').and_then(|s| s.strip_suffix('>'))
                {
                    let sp = ev.options().search_path.clone();
                    ev.find_file(&sp, name, rix_eval::source::Pos::NONE)?
                } else if o.in_shebang && !o.packages {
                    std::path::Path::new(&base).join(i).display().to_string()
                } else {
                    i.clone()
                };
                let file = resolve_shell_expr_path(std::path::Path::new(&path)).map_err(|e| {
                    rix_eval::EvalError::new(
                        rix_eval::ErrorKind::Other,
                        e.to_string(),
                        rix_eval::source::Pos::NONE,
                    )
                })?;
                roots.push(ev.eval_file(&file)?);
            }
            let paths: Vec<String> = if o.attr_paths.is_empty() {
                vec![String::new()]
            } else {
                o.attr_paths.clone()
            };
            for root in &roots {
                let root_takes = takes_formal(&mut ev, root, "inNixShell");
                for p in &paths {
                    let args = if root_takes { &auto_shell } else { &auto };
                    let v = ev.find_along_attr_path(root, p, args)?;
                    let args = if takes_formal(&mut ev, &v, "inNixShell") {
                        &auto_shell
                    } else {
                        &auto
                    };
                    for d in ev.get_derivations(&v, args)? {
                        drvs.push(ev.drv_path_of(&d)?);
                    }
                }
            }
            if drvs.len() != 1 {
                return Err(rix_eval::EvalError::new(
                    rix_eval::ErrorKind::Other,
                    "nix-shell requires a single derivation".to_owned(),
                    rix_eval::source::Pos::NONE,
                ));
            }
            let drv = ev.store().store_dir().parse(&drvs[0]).map_err(|e| {
                rix_eval::EvalError::new(
                    rix_eval::ErrorKind::Other,
                    format!("'{}': {e}", drvs[0]),
                    rix_eval::source::Pos::NONE,
                )
            })?;
            // The shell: `NIX_BUILD_SHELL`, else `<nixpkgs>`'s bashInteractive.
            let mut bash_drv = None;
            if std::env::var_os("NIX_BUILD_SHELL").is_none() {
                let bash = (|| -> rix_eval::Result<Option<StorePath>> {
                    let v = ev.eval_expr("(import <nixpkgs> {}).bashInteractive", &cwd)?;
                    let d = ev.get_derivations(&v, &auto)?;
                    let Some(d) = d.first() else { return Ok(None) };
                    let p = ev.drv_path_of(d)?;
                    Ok(ev.store().store_dir().parse(&p).ok())
                })();
                match bash {
                    Ok(Some(p)) => bash_drv = Some(p),
                    Ok(None) => {
                        eprintln!("error: the 'bashInteractive' attribute in <nixpkgs> did not evaluate to a derivation");
                        eprintln!("will use bash from your environment");
                    }
                    Err(e) => {
                        rix_eval::error::log_stderr(&e.render(false));
                        eprintln!("will use bash from your environment");
                    }
                }
            }
            crate::cmd::instantiate::flush(&ev)?;
            Ok(Evaluated { drv, bash_drv })
        })();
        r.map_err(|e| eval_error(e, show_trace))
    })
}

/// `rix shell-nix ARGS` (and `nix-shell ARGS`).
pub fn run(ctx: &Context, args: &ShellNixArgs) -> Result<()> {
    let o = parse(&args.args)?;
    let mut ctx = ctx.with_settings(&o.settings, "--option");
    if let Some(s) = &o.store {
        ctx.store_url = Some(s.clone());
    }
    let ctx = &ctx;
    let mut o = o;
    if o.packages {
        let mut joined = String::from(
            "{...}@args: with import <nixpkgs> args; (pkgs.runCommandCC or pkgs.runCommand) \"shell\" { buildInputs = [ ",
        );
        for i in &o.remaining {
            joined += &format!("({i}) ");
        }
        joined += "]; } \"\"";
        o.from_args = true;
        o.remaining = vec![joined];
    } else if !o.from_args && o.remaining.is_empty() && !o.read_stdin {
        let here = |f: &str| std::path::Path::new(f).exists();
        if !here("shell.nix") && !here("default.nix") {
            bail!("no argument specified and no 'shell.nix' or 'default.nix' file found in the working directory");
        }
        o.remaining = vec![".".into()];
    }
    // As Nix: set before evaluating (`builtins.getEnv "IN_NIX_SHELL"`).
    std::env::set_var("IN_NIX_SHELL", if o.pure { "pure" } else { "impure" });

    let dev = DevStore::open(ctx)?;
    let store = &*dev.store;
    let ev = evaluate(ctx, &dev, &o)?;
    let ctx = &crate::cmd::flake::with_flake_config(ctx);
    let drv = dev.read_derivation(&ev.drv)?;

    // Build or fetch every input, and the shell.
    let mut wanted: Vec<String> = Vec::new();
    if let Some(b) = &ev.bash_drv {
        wanted.push(format!("{}^out", store.print(b)));
    }
    let excludes: Vec<regex::Regex> = o
        .exclude
        .iter()
        .map(|e| regex::Regex::new(e).with_context(|| format!("invalid --exclude '{e}'")))
        .collect::<Result<_>>()?;
    for (input, outs) in &drv.input_drvs {
        let printed = store.print(input);
        if excludes.iter().all(|r| !r.is_match(&printed)) && !outs.is_empty() {
            let names: Vec<&str> = outs.iter().map(String::as_str).collect();
            wanted.push(format!("{printed}^{}", names.join(",")));
        }
    }
    for src in &drv.input_srcs {
        wanted.push(store.print(src));
    }
    if o.dry_run {
        return Ok(());
    }
    let built = if wanted.is_empty() {
        Vec::new()
    } else {
        crate::cmd::build::realise_installables(
            ctx,
            wanted,
            crate::cmd::instantiate::NixInstallableArgs::default(),
        )?
    };
    let shell = match (&ev.bash_drv, std::env::var("NIX_BUILD_SHELL")) {
        (_, Ok(s)) => s,
        (Some(_), _) => {
            // The first thing realised.
            let out = built
                .first()
                .and_then(|outs| outs.get("out"))
                .context("bashInteractive has no output 'out'")?;
            format!("{}/bin/bash", store.print(out))
        }
        _ => "bash".to_owned(),
    };

    // The environment.
    let tmp_dir = super::create_temp_dir("nix-shell")?;
    let tmp = tmp_dir.display().to_string();
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    if o.pure {
        env.retain(|k, _| {
            k.to_str()
                .is_some_and(|k| KEEP_VARS.contains(&k) || o.keep.contains(k))
        });
        env.insert("__ETC_PROFILE_SOURCED".into(), "1".into());
    }
    for v in ["NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP"] {
        env.insert(v.into(), tmp.clone().into());
    }
    env.insert("NIX_STORE".into(), store.store_dir().as_str().into());
    let cores = ctx.settings.cores().map_err(anyhow::Error::msg)?;
    env.insert("NIX_BUILD_CORES".into(), cores.to_string().into());
    let pass_as_file: BTreeSet<String> = drv
        .env_var("passAsFile")
        .map(|v| {
            String::from_utf8_lossy(v)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut file_nr = 0;
    for (k, v) in &drv.env {
        let key = String::from_utf8_lossy(k).into_owned();
        if pass_as_file.contains(&key) {
            let p = tmp_dir.join(format!(".attr-{file_nr}"));
            file_nr += 1;
            std::fs::write(&p, v).with_context(|| format!("cannot write '{}'", p.display()))?;
            env.insert(format!("{key}Path").into(), p.into_os_string());
        } else {
            use std::os::unix::ffi::OsStringExt;
            env.insert(key.into(), OsString::from_vec(v.clone()));
        }
    }
    if env.contains_key(&OsString::from("__json")) {
        bail!("'rix shell-nix' does not support structured attributes (__structuredAttrs) yet; use 'rix develop'");
    }

    let rc_file = tmp_dir.join("rc");
    let root = nix::unistd::geteuid().is_root();
    let shell_dir = match shell.rfind('/') {
        None => ".".to_owned(),
        Some(0) => "/".to_owned(),
        Some(i) => shell[..i].to_owned(),
    };
    let tz = std::env::var("TZ")
        .map(|tz| format!("export TZ={}; ", shell_escape(&tz)))
        .unwrap_or_default();
    let rc = format!(
        "_nix_shell_clean_tmpdir() {{ command rm -rf {tmp_q}; }};trap _nix_shell_clean_tmpdir EXIT; \
         exitHooks+=(_nix_shell_clean_tmpdir); failureHooks+=(_nix_shell_clean_tmpdir); \
         {bashrc}{save}unset PATH;dontAddDisableDepTrack=1;\n\
         \n[ -e $stdenv/setup ] && source $stdenv/setup; \
         {restore}PATH={dir}:\"$PATH\"; SHELL={sh}; BASH={sh}; set +e; \
         [ -n \"$PS1\" -a -z \"$NIX_SHELL_PRESERVE_PROMPT\" ] && PS1='\\n\\[\\033[1;{colour}m\\][nix-shell:\\w]\\$\\[\\033[0m\\] '; \
         if [ \"$(type -t runHook)\" = function ]; then runHook shellHook; fi; \
         unset NIX_ENFORCE_PURITY; shopt -u nullglob; unset TZ; {tz}shopt -s execfail;{cmd}",
        tmp_q = shell_escape(&tmp),
        bashrc = if o.pure {
            ""
        } else {
            "[ -n \"$PS1\" ] && [ -e ~/.bashrc ] && source ~/.bashrc;"
        },
        save = if o.pure { "" } else { "p=$PATH; " },
        restore = if o.pure { "" } else { "PATH=$PATH:$p; unset p; " },
        dir = shell_escape(&shell_dir),
        sh = shell_escape(&shell),
        colour = if root { "31" } else { "32" },
        cmd = o.env_command,
    );
    std::fs::write(&rc_file, rc)
        .with_context(|| format!("cannot write '{}'", rc_file.display()))?;

    let mut cmd = std::process::Command::new(&shell);
    cmd.arg0("bash").env_clear().envs(&env);
    if o.interactive {
        cmd.arg("--rcfile");
    }
    cmd.arg(&rc_file);
    let layout = dev.layout.clone();
    drop(dev);
    rix_build::sandbox::enter::enter_store_namespace(&layout).map_err(anyhow::Error::msg)?;
    let e = cmd.exec();
    // As Nix's `SysError`: the system's message.
    let why = e.raw_os_error().map_or_else(
        || e.to_string(),
        |n| nix::errno::Errno::from_raw(n).desc().to_owned(),
    );
    bail!("executing shell '{shell}': {why}")
}

#[cfg(test)]
mod tests {
    use super::shellwords;

    #[test]
    fn shellwords_as_perl() {
        assert_eq!(
            shellwords("-i bash -p 'a b' \"c d\" e\\ f").unwrap(),
            ["-i", "bash", "-p", "a b", "c d", "e f"]
        );
        assert_eq!(shellwords("x  ").unwrap(), ["x"]);
        assert!(shellwords("'x").is_err());
    }
}
