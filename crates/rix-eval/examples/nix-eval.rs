//! A minimal `nix-instantiate --eval` for benchmarks and manual checks:
//! `nix-eval [--strict] [--json|--xml] [-I PATH]... [-A ATTR] (-E EXPR | FILE)`.

use rix_eval::{EvalOptions, Evaluator, SearchPathEntry};

/// As in the `rix` binary: evaluation allocates many small, short-lived objects.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut strict = false;
    let mut json = false;
    let mut xml = false;
    let mut expr = None;
    let mut file = None;
    let mut attr = String::new();
    let mut search_path = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--strict" => strict = true,
            "--json" => json = true,
            "--xml" => xml = true,
            "--eval" => {}
            "-E" => expr = args.next(),
            "-A" => attr = args.next().unwrap_or_default(),
            "-I" => search_path.push(SearchPathEntry::parse(&args.next().unwrap_or_default())),
            _ => file = Some(a),
        }
    }
    if let Ok(p) = std::env::var("NIX_PATH") {
        search_path.extend(SearchPathEntry::parse_nix_path(&p));
    }
    let mut ev = Evaluator::new(EvalOptions {
        search_path,
        ..EvalOptions::default()
    });
    let cwd = std::env::current_dir().unwrap().display().to_string();
    let result = (|| {
        let v = match (&expr, &file) {
            (Some(e), _) => ev.eval_expr(e, &cwd)?,
            (None, Some(f)) => ev.eval_file(f)?,
            (None, None) => ev.eval_file("default.nix")?,
        };
        let args = ev.auto_args(&[])?;
        let v = ev.select_attr_path(&v, &attr, &args)?;
        if json {
            ev.to_json(&v)
        } else if xml {
            ev.to_xml(&v, strict, true)
        } else {
            ev.print(&v, strict)
        }
    })();
    match result {
        Ok(out) => println!("{}", out.trim_end()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
