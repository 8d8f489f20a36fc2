//! `rix eval`: evaluate a file or an expression and print the value (as
//! `nix-instantiate --eval` prints it, or as JSON, or a string raw).

use anyhow::{bail, Result};
use clap::Args;
use rix_eval::Evaluator;

use crate::cmd::instantiate::{
    dry_run_store, eval_error, eval_source, open_eval_store, EvalArgs, Source,
};
use crate::context::Context;

#[derive(Args, Debug, Clone)]
pub struct EvalCmdArgs {
    /// The file to evaluate (`-` reads standard input; a directory means its
    /// `default.nix`; `<name>` is looked up in the search path), or a flake
    /// installable (`.#x`); with `--file`, the attribute path to select (as
    /// `nix eval --file FILE ATTRPATH`).
    #[arg(value_name = "FILE", conflicts_with = "expr")]
    pub file: Option<String>,
    /// Evaluate this expression instead of a file.
    #[arg(short = 'E', long, value_name = "EXPR")]
    pub expr: Option<String>,
    /// The file to evaluate (same as the positional FILE).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "expr"
    )]
    pub file_flag: Option<String>,
    /// Select an attribute (`a.b.0`) of the result.
    #[arg(
        short = 'A',
        long = "attr",
        value_name = "ATTRPATH",
        default_value = "",
        hide_default_value = true
    )]
    pub attr: String,
    /// Print the result as JSON (evaluating it completely).
    #[arg(long, conflicts_with_all = ["raw", "xml"])]
    pub json: bool,
    /// Print the result as XML.
    #[arg(long, conflicts_with = "raw")]
    pub xml: bool,
    /// Evaluate the result completely before printing it.
    #[arg(long)]
    pub strict: bool,
    /// Print a string result as it is, without quotes or escapes.
    #[arg(long)]
    pub raw: bool,
    /// Let evaluation write to the store (copy sources, write `.drv` files).
    /// Without it, store paths are computed but nothing is written.
    #[arg(long)]
    pub read_write_mode: bool,
    #[command(flatten)]
    pub eval_args: EvalArgs,
    #[command(flatten)]
    pub flake: crate::cmd::flake::FlakeLockArgs,
}

pub fn run(ctx: &Context, args: &EvalCmdArgs) -> Result<()> {
    crate::cmd::instantiate::on_big_stack(|| run_inner(ctx, args))
}

fn run_inner(ctx: &Context, args: &EvalCmdArgs) -> Result<()> {
    let show_trace = args.eval_args.show_trace();
    let store = if args.read_write_mode {
        open_eval_store(ctx)?.1
    } else {
        dry_run_store(ctx)?
    };
    // `FLAKEREF#ATTRPATH` (or a flake's directory): a flake installable.
    let flake = match (&args.expr, &args.file_flag, &args.file) {
        (None, None, Some(f)) if rix_flake::reference::looks_like_flake_installable(f) => Some(f),
        _ => None,
    };
    // A flake's answer from the evaluation cache, when the flake, its lock
    // and the question are what they were.
    let cached = match flake {
        Some(f)
            if !args.eval_args.impure
                && args.eval_args.auto_args().is_empty()
                && args.flake.is_plain() =>
        {
            let mode = match (args.json, args.xml, args.raw) {
                (true, _, _) => "json",
                (_, true, _) => "xml",
                (_, _, true) => "raw",
                _ => "print",
            };
            crate::cmd::flake::eval_cache_key(ctx, f, &["eval", mode, &args.attr])
                .and_then(|(key, source)| Some((crate::cmd::flake::eval_cache()?, key, source)))
        }
        _ => None,
    };
    if let Some((cache, key, _)) = &cached {
        if let Some(out) = cache.get(key) {
            return print_eval_output(&out, args.raw);
        }
    }
    let mut ev = match flake {
        Some(_) => Evaluator::new(crate::cmd::flake::eval_options(ctx, &args.eval_args, store)),
        None => Evaluator::new(args.eval_args.options(ctx, store)),
    };
    // `-f FILE ATTRPATH`: the positional argument is the attribute path.
    let (file, attr) = match (&args.file_flag, &args.file) {
        (Some(f), Some(a)) if args.attr.is_empty() => (Some(f), a.clone()),
        (Some(f), Some(a)) => (Some(f), format!("{}.{a}", args.attr)),
        (Some(f), None) => (Some(f), args.attr.clone()),
        (None, f) => (f.as_ref(), args.attr.clone()),
    };
    let src = match (&args.expr, file) {
        (Some(e), _) => Source::Expr(e),
        (None, Some(f)) => Source::File(f),
        (None, None) => bail!("nothing to evaluate: give a FILE or --expr EXPR"),
    };
    let flake_root = match flake {
        Some(f) => Some(
            crate::cmd::flake::eval_flake_value(ctx, &mut ev, f, &args.flake).map_err(|e| {
                anyhow::Error::new(crate::cmd::instantiate::RenderedError(
                    e.render(show_trace),
                    1,
                ))
            })?,
        ),
        None => None,
    };
    let strict = args.strict || flake_root.is_some();
    let out = (|| -> rix_eval::Result<String> {
        let auto_args = ev.auto_args(&args.eval_args.auto_args())?;
        let root = match flake_root {
            Some(v) => v,
            None => eval_source(&mut ev, &src)?,
        };
        let v = ev.select_attr_path(&root, &attr, &auto_args)?;
        if args.json {
            return ev.to_json(&v);
        }
        if args.xml {
            return ev.to_xml(&v, strict, true);
        }
        if args.raw {
            let v = ev.force(&v)?;
            return match v {
                rix_eval::Value::String(s) => Ok(s.as_str().to_owned()),
                other => Err(rix_eval::EvalError::new(
                    rix_eval::ErrorKind::Type,
                    format!(
                        "--raw needs a string, but the value is {}",
                        other.type_description()
                    ),
                    rix_eval::source::Pos::NONE,
                )),
            };
        }
        // As `nix eval`: forced through (`--strict` is what it always does).
        ev.print_as_nix_eval(&v)
    })()
    .map_err(|e| eval_error(e, show_trace))?;
    crate::cmd::instantiate::flush(&ev).map_err(|e| eval_error(e, show_trace))?;
    if let (Some((cache, key, source)), Some(f)) = (&cached, flake) {
        if crate::cmd::flake::eval_cache_source_unchanged(f, source) {
            cache.put(key, &out);
        }
    }
    print_eval_output(&out, args.raw)
}

fn print_eval_output(out: &str, raw: bool) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if raw {
        stdout.write_all(out.as_bytes())?;
    } else {
        writeln!(stdout, "{}", out.trim_end_matches('\n'))?;
    }
    Ok(())
}
