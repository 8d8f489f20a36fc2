//! Runs Nix's language test suite (tests/vectors/nix-lang) the way Nix runs it:
//! eval-okay cases must print their `.exp` (or `.exp.xml`), eval-fail cases
//! must fail, parse-okay cases must parse and parse-fail cases must not.
//! Prints per-category counts and the failing cases, and asserts floors.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use rix_eval::lower::{LintLevel, Lints};
use rix_eval::{AutoArg, EvalOptions, Evaluator, SearchPathEntry};

/// Floors: raise these as the evaluator improves.
const MIN_EVAL_OKAY: usize = 148;
const MIN_EVAL_FAIL: usize = 283;
const MIN_PARSE_OKAY: usize = 13;
const MIN_PARSE_FAIL: usize = 41;
/// parse-okay cases whose `--parse` output equals their `.exp`.
const MIN_PARSE_SHOWN: usize = 13;

#[derive(Default)]
struct Flags {
    args: Vec<AutoArg>,
    attr: Option<String>,
    include: Vec<String>,
    features: Vec<String>,
    max_call_depth: Option<usize>,
    lints: Lints,
}

fn parse_flags(text: &str) -> Flags {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let mut f = Flags::default();
    // Nix's functional tests enable `flakes` in their nix.conf.
    f.features.push("flakes".into());
    let mut i = 0;
    while i < words.len() {
        match words[i].as_str() {
            "--arg" if i + 2 < words.len() => {
                f.args
                    .push(AutoArg::Expr(words[i + 1].clone(), words[i + 2].clone()));
                i += 2;
            }
            "--argstr" if i + 2 < words.len() => {
                f.args
                    .push(AutoArg::Str(words[i + 1].clone(), words[i + 2].clone()));
                i += 2;
            }
            "-A" if i + 1 < words.len() => {
                f.attr = Some(words[i + 1].clone());
                i += 1;
            }
            "-I" if i + 1 < words.len() => {
                f.include.push(words[i + 1].clone());
                i += 1;
            }
            "--extra-experimental-features" if i + 1 < words.len() => {
                f.features.push(words[i + 1].clone());
                i += 1;
            }
            "--max-call-depth" if i + 1 < words.len() => {
                f.max_call_depth = words[i + 1].parse().ok();
                i += 1;
            }
            w if w.starts_with("--lint-") && i + 1 < words.len() => {
                let level = match words[i + 1].as_str() {
                    "fatal" => LintLevel::Fatal,
                    "warn" => LintLevel::Warn,
                    _ => LintLevel::Off,
                };
                match w {
                    "--lint-absolute-path-literals" => f.lints.absolute_path_literals = level,
                    "--lint-short-path-literals" => f.lints.short_path_literals = level,
                    "--lint-url-literals" => f.lints.url_literals = level,
                    _ => {}
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    f
}

enum Mode {
    Print,
    Xml,
}

/// Evaluates `file` (relative to the vectors directory) as nix-instantiate would.
fn evaluate(file: &str, flags: &Flags, mode: Mode) -> Result<String, String> {
    let mut search_path: Vec<SearchPathEntry> = flags
        .include
        .iter()
        .map(|s| SearchPathEntry::parse(s))
        .collect();
    search_path.extend(SearchPathEntry::parse_nix_path("lang/dir3:lang/dir4"));
    let opts = EvalOptions {
        search_path,
        home: Some("/fake-home".into()),
        max_call_depth: flags.max_call_depth.unwrap_or(10_000),
        features: flags.features.clone(),
        lints: flags.lints,
        trace_sink: Some(Box::new(|_| {})),
        ..EvalOptions::default()
    };
    let mut ev = Evaluator::new(opts);
    let run = |ev: &mut Evaluator| -> rix_eval::Result<String> {
        let v = ev.eval_file(file)?;
        let args = ev.auto_args(&flags.args)?;
        let v = ev.select_attr_path(&v, flags.attr.as_deref().unwrap_or(""), &args)?;
        match mode {
            Mode::Print => ev.print(&v, true),
            Mode::Xml => ev.to_xml(&v, true, false),
        }
    };
    run(&mut ev).map_err(|e| e.to_string())
}

/// Parses `file`; returns the expression as `nix-instantiate --parse` shows it.
fn parses(file: &str) -> Result<String, String> {
    let ev = Evaluator::new(EvalOptions {
        home: Some("/fake-home".into()),
        ..EvalOptions::default()
    });
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let dir = Path::new(file).parent().unwrap().display().to_string();
    ev.parse(&text, rix_eval::source::Origin::Path(Rc::from(file)), &dir)
        .map(|e| rix_eval::show::show(&e))
        .map_err(|e| e.to_string())
}

/// Runs `f` on a thread with a time limit (a hung case must not hang the suite).
fn with_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

#[test]
fn nix_language_suite() {
    // The suite as Nix has it: in a directory named `lang`, with its
    // symbolic links (the repository's copy has them as files holding the target).
    let tmp = rix_testutil::nix_lang_suite();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let lang = dir.join("lang");
    std::env::set_current_dir(&dir).unwrap();
    std::env::set_var("TEST_VAR", "foo");
    let pwd = std::env::current_dir().unwrap().display().to_string();

    let mut names: Vec<String> = std::fs::read_dir(&lang)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".nix"))
        .collect();
    names.sort();

    let mut counts = [(0usize, 0usize); 4];
    let mut shown_same = 0;
    let mut failures: [Vec<String>; 4] = Default::default();
    for name in names {
        let base = name.trim_end_matches(".nix").to_owned();
        let rel = format!("lang/{name}");
        let stem = lang.join(&base);
        let flags_text = std::fs::read_to_string(stem.with_extension("flags")).unwrap_or_default();
        let flags = parse_flags(&flags_text);
        let (cat, ok) = if base.starts_with("eval-okay-") {
            if Path::new(&format!("{}.exp-disabled", stem.display())).exists() {
                continue;
            }
            let xml = PathBuf::from(format!("{}.exp.xml", stem.display()));
            let (exp_file, mode) = if xml.exists() {
                (xml, Mode::Xml)
            } else {
                (
                    PathBuf::from(format!("{}.exp", stem.display())),
                    Mode::Print,
                )
            };
            let Ok(expected) = std::fs::read_to_string(&exp_file) else {
                continue;
            };
            let pwd2 = pwd.clone();
            let got = with_timeout(move || evaluate(&rel, &flags, mode));
            let ok = match got {
                Some(Ok(out)) => {
                    let out = out
                        .replace(&format!("{pwd2}/lang"), "/pwd/lang")
                        .replace(&pwd2, "/pwd");
                    let same = out.trim_end() == expected.trim_end();
                    if !same && std::env::var("RIX_LANG_VERBOSE").is_ok() {
                        eprintln!(
                            "--- {base}\nexpected: {}\n     got: {}",
                            expected.trim_end(),
                            out.trim_end()
                        );
                    }
                    same
                }
                Some(Err(e)) => {
                    if std::env::var("RIX_LANG_VERBOSE").is_ok() {
                        eprintln!("--- {base}\n{e}");
                    }
                    false
                }
                None => false,
            };
            (0, ok)
        } else if base.starts_with("eval-fail-") {
            let got = with_timeout(move || evaluate(&rel, &flags, Mode::Print));
            (1, matches!(got, Some(Err(_))))
        } else if base.starts_with("parse-okay-") {
            let exp = std::fs::read_to_string(stem.with_extension("exp")).unwrap_or_default();
            let pwd2 = pwd.clone();
            let r = with_timeout(move || parses(&rel));
            if let Some(Ok(shown)) = &r {
                let shown = shown
                    .replace(&format!("{pwd2}/lang"), "/pwd/lang")
                    .replace(&pwd2, "/pwd");
                if shown.trim_end() == exp.trim_end() {
                    shown_same += 1;
                } else if std::env::var("RIX_LANG_VERBOSE").is_ok() {
                    eprintln!(
                        "--- {base} (--parse)\nexpected: {}\n     got: {}",
                        exp.trim_end(),
                        shown
                    );
                }
            }
            (2, r.is_some_and(|r| r.is_ok()))
        } else if base.starts_with("parse-fail-") {
            (
                3,
                with_timeout(move || parses(&rel)).is_some_and(|r| r.is_err()),
            )
        } else {
            continue;
        };
        counts[cat].1 += 1;
        if ok {
            counts[cat].0 += 1;
        } else {
            failures[cat].push(base);
        }
    }
    let labels = ["eval-okay", "eval-fail", "parse-okay", "parse-fail"];
    for (i, label) in labels.iter().enumerate() {
        println!("{label}: {}/{} passed", counts[i].0, counts[i].1);
        if !failures[i].is_empty() {
            println!("  failing: {}", failures[i].join(" "));
        }
    }
    println!(
        "parse-okay shown as in .exp (--parse): {shown_same}/{}",
        counts[2].1
    );
    assert!(
        shown_same >= MIN_PARSE_SHOWN,
        "--parse output matches {shown_same} .exp files, below the floor of {MIN_PARSE_SHOWN}"
    );
    let mins = [MIN_EVAL_OKAY, MIN_EVAL_FAIL, MIN_PARSE_OKAY, MIN_PARSE_FAIL];
    for (i, label) in labels.iter().enumerate() {
        assert!(
            counts[i].0 >= mins[i],
            "{label}: {} passed, below the floor of {}",
            counts[i].0,
            mins[i]
        );
    }
}
