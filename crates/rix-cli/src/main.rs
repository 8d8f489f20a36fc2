//! `rix`: the command-line front end. This file only parses arguments, dispatches
//! to `cmd::*`, and turns errors into messages and exit codes.

mod cmd;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// rix: a Nix-compatible incremental build system.
#[derive(Parser)]
#[command(name = "rix", version, about, propagate_version = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute and convert cryptographic hashes (like `nix hash`).
    #[command(subcommand)]
    Hash(cmd::hash::HashCommand),
    /// Create, inspect and unpack Nix archives (like `nix nar` and `nix-store --dump/--restore`).
    #[command(subcommand)]
    Nar(cmd::nar::NarCommand),
    /// Inspect and check `.drv` files (like `nix show-derivation`).
    #[command(subcommand)]
    Derivation(cmd::derivation::DerivationCommand),
    /// Generate and convert signing keys (like `nix key`).
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// Print a shell completion script for rix.
    Completions {
        /// The shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hash(c) => c.run(),
        Command::Nar(c) => c.run(),
        Command::Derivation(c) => c.run(),
        Command::Key(c) => c.run(),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rix", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `rix nar dump x | head` must not print an error when `head` closes the pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
