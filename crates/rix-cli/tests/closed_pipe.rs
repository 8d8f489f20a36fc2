//! Output into a pipe whose reader has gone (`rix ... | head -1`): every
//! command ends quietly, without a panic, whatever it was printing.

use std::process::{Command, Output, Stdio};

/// Runs `rix ARGS` with standard output a pipe already closed for reading.
fn into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Runs `rix ARGS` and returns its standard output.
fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a `--help` text lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

fn assert_quiet(args: &[&str]) {
    let out = into_closed_pipe(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && out.status.code().is_some_and(|c| c != 101),
        "rix {} into a closed pipe: {:?}\n{stderr}",
        args.join(" "),
        out.status
    );
}

#[test]
fn every_help_into_a_closed_pipe_is_quiet() {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        assert_quiet(&args);
        seen += 1;
        for sub in subcommands(&stdout_of(&args)) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
    }
    // The top level, its commands and the store/hash/nar/... subcommands.
    assert!(seen > 30, "only {seen} help texts found");
}

#[test]
fn outputs_into_a_closed_pipe_are_quiet() {
    assert_quiet(&["completions", "bash"]);
    assert_quiet(&["eval", "--expr", "builtins.genList (x: x) 100000"]);
    assert_quiet(&[
        "instantiate",
        "--eval",
        "--strict",
        "-E",
        "builtins.genList (x: x) 100000",
    ]);
    assert_quiet(&[
        "hash",
        "convert",
        "--to",
        "nix32",
        "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    ]);
}
