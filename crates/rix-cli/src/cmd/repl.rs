//! `rix repl`: read expressions, evaluate them, print their values (like
//! `nix repl`). Lines are read from standard input (with a prompt on a
//! terminal); history is kept in `$XDG_DATA_HOME/rix/repl-history`.
//!
//! | input | what |
//! | --- | --- |
//! | `EXPR` | evaluate and print (nested values one level deep) |
//! | `NAME = EXPR` | bind a variable for later lines |
//! | `:p EXPR` | print completely |
//! | `:t EXPR` | print the type |
//! | `:b EXPR` | build a derivation, print its outputs |
//! | `:l FILE` | bring the attributes of a file into scope |
//! | `:a EXPR` | bring the attributes of a set into scope |
//! | `:q` | quit |

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use rix_eval::source::{Origin, Pos};
use rix_eval::symbol::Symbol;
use rix_eval::value::{Attr, Attrs};
use rix_eval::{Evaluator, Value};
use rix_formats::StorePath;
use rix_store::store_api::Store;

use crate::cmd::instantiate::{dry_run_store, eval_error, open_eval_store, EvalArgs, WriteStore};
use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct ReplArgs {
    /// Files whose attributes to bring into scope at the start (like `:l`).
    #[arg(value_name = "FILES")]
    pub files: Vec<String>,
    /// Write nothing to the store (no `:b`).
    #[arg(long)]
    pub readonly_mode: bool,
    #[command(flatten)]
    pub eval_args: EvalArgs,
}

struct Repl<'a> {
    ctx: &'a Context,
    ev: Evaluator,
    scope: Attrs,
    store: Option<WriteStore>,
    show_trace: bool,
}

pub fn run(ctx: &Context, args: &ReplArgs) -> Result<()> {
    crate::cmd::instantiate::on_big_stack(|| run_inner(ctx, args))
}

fn run_inner(ctx: &Context, args: &ReplArgs) -> Result<()> {
    let (store, eval_store) = if args.readonly_mode {
        (None, dry_run_store(ctx)?)
    } else {
        match open_eval_store(ctx) {
            Ok((l, s)) => (Some(l), s),
            Err(e) => {
                eprintln!("warning: cannot open the store ({e:#}); nothing will be written");
                (None, dry_run_store(ctx)?)
            }
        }
    };
    let ev = Evaluator::new(args.eval_args.options(ctx, eval_store));
    let mut repl = Repl {
        ctx,
        ev,
        scope: Attrs::new(),
        store,
        show_trace: args.eval_args.show_trace(),
    };
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!(
            "Welcome to rix {}. Type :? for help.\n",
            env!("CARGO_PKG_VERSION")
        );
    }
    for f in &args.files {
        repl.command(&format!(":l {f}"));
    }
    let history_path = history_file();
    let mut history = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&history_path)
        .ok();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut pending = String::new();
    loop {
        if interactive {
            print!(
                "{}",
                if pending.is_empty() {
                    "rix-repl> "
                } else {
                    "          "
                }
            );
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        pending.push_str(&line);
        pending.push('\n');
        let text = pending.trim().to_owned();
        if text.is_empty() {
            pending.clear();
            continue;
        }
        // An unfinished expression (open brackets, strings) continues on the
        // next line, as in nix repl.
        if !text.starts_with(':') && incomplete(&text) {
            continue;
        }
        pending.clear();
        if let Some(h) = &mut history {
            let _ = writeln!(h, "{}", text.replace('\n', " "));
        }
        if !repl.command(&text) {
            break;
        }
    }
    Ok(())
}

fn history_file() -> PathBuf {
    let dir = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("rix");
    let _ = std::fs::create_dir_all(&dir);
    dir.join("repl-history")
}

/// Whether the text still has an open bracket, string or `let` without `in`.
fn incomplete(text: &str) -> bool {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut in_ind = false;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else if in_ind {
            if c == b'\'' && b.get(i + 1) == Some(&b'\'') {
                if b.get(i + 2) == Some(&b'$') || b.get(i + 2) == Some(&b'\'') {
                    i += 2;
                } else {
                    in_ind = false;
                    i += 1;
                }
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'\'' if b.get(i + 1) == Some(&b'\'') => {
                    in_ind = true;
                    i += 1;
                }
                b'#' => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                _ => {}
            }
        }
        i += 1;
    }
    depth > 0 || in_str || in_ind
}

/// `NAME = EXPR` (not `==`).
fn split_binding(text: &str) -> Option<(&str, &str)> {
    let (name, rest) = text.split_once('=')?;
    if rest.starts_with('=') {
        return None;
    }
    let name = name.trim();
    rix_eval::print::is_var_name(name).then_some((name, rest.trim()))
}

impl Repl<'_> {
    /// Runs one input; `false` to quit.
    fn command(&mut self, text: &str) -> bool {
        let (cmd, arg) = match text.strip_prefix(':') {
            Some(rest) => {
                let (c, a) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                (Some(c), a.trim())
            }
            None => (None, text),
        };
        let r: Result<()> = match cmd {
            None => match split_binding(text) {
                Some((name, expr)) => self.bind(name, expr),
                None => self.eval(text).and_then(|v| self.print(&v, 1)),
            },
            Some("q" | "quit") => return false,
            Some("?" | "help") => {
                println!(
                    "The following commands are available:\n\n  <expr>        Evaluate and print expression\n  <x> = <expr>  Bind expression to variable\n  :a <expr>     Add attributes from resulting set to scope\n  :b <expr>     Build derivation\n  :l <path>     Load Nix expression and add it to scope\n  :p <expr>     Evaluate and print expression recursively\n  :q            Exit rix repl\n  :t <expr>     Describe result of evaluation"
                );
                Ok(())
            }
            Some("p" | "print") => self.eval(arg).and_then(|v| self.print(&v, usize::MAX)),
            Some("t") => self.eval(arg).map(|v| println!("{}", v.type_description())),
            Some("a" | "add") => self.eval(arg).and_then(|v| self.add_attrs(&v)),
            Some("l" | "load") => self.load(arg),
            Some("b" | "build") => self.build(arg),
            Some(other) => Err(anyhow::anyhow!("unknown command ':{other}'")),
        };
        if let Err(e) = r {
            match e.downcast_ref::<crate::cmd::instantiate::RenderedError>() {
                Some(r) => rix_eval::error::log_stderr(&r.0),
                None => rix_eval::error::log_stderr(&format!("error: {e:#}")),
            }
        }
        if let Err(e) = crate::cmd::instantiate::flush(&self.ev) {
            eprintln!("{e}");
        }
        true
    }

    fn eval(&mut self, text: &str) -> Result<Value> {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "/".into());
        let r = (|| {
            let e = self
                .ev
                .parse_in_scope(text, Origin::String, &cwd, &self.scope)?;
            let v = self.ev.eval_in_scope(&e, &self.scope)?;
            self.ev.force(&v)
        })();
        r.map_err(|e| eval_error(e, self.show_trace))
    }

    fn bind(&mut self, name: &str, expr: &str) -> Result<()> {
        let v = self.eval(expr)?;
        self.scope.insert(Symbol::new(name), v, Pos::NONE);
        Ok(())
    }

    fn add_attrs(&mut self, v: &Value) -> Result<()> {
        let attrs = self
            .ev
            .force_attrs(v, Pos::NONE)
            .map_err(|e| eval_error(e, self.show_trace))?;
        let entries: Vec<Attr> = attrs.iter().cloned().collect();
        for a in &entries {
            self.scope.insert(a.name, a.value.clone(), a.pos);
        }
        println!("Added {} variables.", entries.len());
        Ok(())
    }

    fn load(&mut self, file: &str) -> Result<()> {
        let v = self
            .ev
            .eval_file(file)
            .and_then(|v| {
                let args = self.ev.auto_args(&[])?;
                self.ev.auto_call(&v, &args)
            })
            .map_err(|e| eval_error(e, self.show_trace))?;
        self.add_attrs(&v)
    }

    fn build(&mut self, text: &str) -> Result<()> {
        let Some(store) = self.store.clone() else {
            anyhow::bail!("cannot build: the store is read-only here");
        };
        let v = self.eval(text)?;
        let (drv, output) = (|| {
            let found = self.ev.get_derivations(&v, &Attrs::new())?;
            let d = found.first().cloned().ok_or_else(|| {
                rix_eval::EvalError::new(
                    rix_eval::ErrorKind::Type,
                    "expression does not evaluate to a derivation, so I can't build it",
                    Pos::NONE,
                )
            })?;
            Ok((self.ev.drv_path_of(&d)?, self.ev.output_name_of(&d)?))
        })()
        .map_err(|e| eval_error(e, self.show_trace))?;
        crate::cmd::instantiate::flush(&self.ev).map_err(|e| eval_error(e, self.show_trace))?;
        let drv = store.store().parse_path(&drv)?;
        let _ = output;
        let store = match store {
            WriteStore::Local(l) => l,
            WriteStore::Any(any) => return self.build_through_daemon(&*any, &drv),
        };
        // As `rix build` builds: the same settings (sandbox, cores, the
        // substituters, ...).
        let mut opts = crate::cmd::build::options(self.ctx, &crate::cmd::build::default_args())?;
        opts.max_jobs = opts.max_jobs.max(1);
        opts.substituter =
            crate::cmd::copy::build_substituter(self.ctx, &store, None, false, false)?;
        let progress = crate::progress::Progress::new(store.store_dir().clone(), false);
        let report = rix_build::realise(&store, std::slice::from_ref(&drv), &opts, &progress);
        progress.finish();
        let report = report?;
        if let Some((_, e)) = report.failed.first() {
            anyhow::bail!("{e}");
        }
        println!("\nThis derivation produced the following outputs:");
        if let Some(outs) = report.outputs.get(&drv) {
            for (name, p) in outs {
                println!("  {name} -> {}", store.print(p));
            }
        }
        Ok(())
    }

    /// `:b` against a daemon: it builds (`BuildPathsWithResults`), its log
    /// lines and errors printed as Nix's client prints them.
    fn build_through_daemon(&self, store: &dyn Store, drv: &StorePath) -> Result<()> {
        use rix_formats::worker_protocol::OutputsSpec;
        let url = self.ctx.daemon_url().context("not a daemon store")?;
        let daemon = self.ctx.open_daemon(&url)?;
        let outputs = daemon.build_outputs(drv, OutputsSpec::All)?;
        println!("\nThis derivation produced the following outputs:");
        for (name, p) in outputs {
            println!("  {name} -> {}", store.print(&p));
        }
        Ok(())
    }

    /// Prints `v` as nix repl does: nested values down to `depth`, deeper
    /// sets and lists as `{ ... }` and `[ ... ]`, derivations as
    /// `«derivation /nix/store/….drv»`.
    fn print(&mut self, v: &Value, depth: usize) -> Result<()> {
        let mut out = String::new();
        self.show(v, depth, &mut out);
        println!("{out}");
        Ok(())
    }

    fn show(&mut self, v: &Value, depth: usize, out: &mut String) {
        let v = match self.ev.force(v) {
            Ok(v) => v,
            Err(e) => {
                out.push_str(&format!("«error: {}»", e.message));
                return;
            }
        };
        match &v {
            Value::Attrs(a) => {
                let is_drv = matches!(a.get_str("type").cloned().map(|t| self.ev.force(&t)),
                    Some(Ok(Value::String(s))) if s.as_str() == "derivation");
                if is_drv {
                    let p = a.get_str("drvPath").cloned().map(|p| self.ev.force(&p));
                    match p {
                        Some(Ok(Value::String(s))) => {
                            out.push_str(&format!("«derivation {}»", s.as_str()))
                        }
                        _ => out.push_str("«derivation ???»"),
                    }
                    return;
                }
                if depth == 0 {
                    out.push_str("{ ... }");
                    return;
                }
                out.push_str("{ ");
                for attr in a.iter() {
                    rix_eval::print::attr_name(attr.name.as_str(), out);
                    out.push_str(" = ");
                    self.show(&attr.value, depth - 1, out);
                    out.push_str("; ");
                }
                out.push('}');
            }
            Value::List(l) => {
                if depth == 0 {
                    out.push_str("[ ... ]");
                    return;
                }
                out.push_str("[ ");
                for item in l.iter() {
                    self.show(item, depth - 1, out);
                    out.push(' ');
                }
                out.push(']');
            }
            Value::Lambda(_) => out.push_str("«lambda»"),
            Value::PrimOp(_) => out.push_str("«primop»"),
            Value::PrimOpApp(_) => out.push_str("«primop-app»"),
            other => out.push_str(&rix_eval::print::print_value(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation() {
        assert!(incomplete("{ a = 1;"));
        assert!(incomplete("''abc"));
        assert!(!incomplete("{ a = \"}\"; }"));
        assert!(!incomplete("1 + 2 # {"));
        assert_eq!(split_binding("x = 1"), Some(("x", "1")));
        assert_eq!(split_binding("x == 1"), None);
    }
}
