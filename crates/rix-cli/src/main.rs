//! `rix`: the command-line front end. This file only parses arguments, dispatches
//! to `cmd::*`, and turns errors into messages and exit codes.

mod cmd;
mod context;
mod progress;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use context::{Context, GlobalArgs};

/// Evaluation allocates many small, short-lived objects: mimalloc is much
/// faster at that than glibc's malloc.
#[global_allocator]
static GLOBAL: Allocator = Allocator;

/// mimalloc, through its plain entry points whenever the alignment allows.
/// (`mimalloc::MiMalloc` always goes through `mi_malloc_aligned`, a slower
/// path: the evaluator's many small allocations spent a tenth of their time
/// there.)
struct Allocator;

/// `mi_malloc` aligns every block to this (`MI_MAX_ALIGN_SIZE`).
const MI_MAX_ALIGN: usize = 16;

// SAFETY: every method hands the request to mimalloc, whose blocks are valid
// until freed with `mi_free`. `mi_malloc`, `mi_zalloc` and `mi_realloc`
// return blocks aligned to `MI_MAX_ALIGN` (16 bytes, documented as the
// alignment of `max_align_t`), so they are used only when the layout asks for
// no more; larger alignments use mimalloc's `_aligned` functions, as
// `mimalloc::MiMalloc` does. Null is returned on exhaustion, as `GlobalAlloc`
// expects.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= MI_MAX_ALIGN {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= MI_MAX_ALIGN {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MI_MAX_ALIGN {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

/// rix: a Nix-compatible incremental build system.
///
/// It computes the same store paths, `.drv` files, NARs and signatures as Nix, and
/// builds only what is not already in the store.
#[derive(Parser)]
#[command(
    name = "rix",
    version,
    propagate_version = true,
    arg_required_else_help = true,
    // As Nix: a flag given twice is taken once (`--strict --strict`).
    args_override_self = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build derivations, only what is not already valid (like `nix build`).
    Build(cmd::build::BuildArgs),
    /// Evaluate a Nix expression and print its value (like `nix eval`).
    Eval(cmd::eval::EvalCmdArgs),
    /// Evaluate Nix expressions and write their derivations (a drop-in `nix-instantiate`).
    Instantiate(cmd::instantiate::InstantiateArgs),
    /// Evaluate expressions interactively (like `nix repl`).
    Repl(cmd::repl::ReplArgs),
    /// Work with the store: add, query, realise, verify (like `nix-store`).
    #[command(subcommand)]
    Store(cmd::store::StoreCommand),
    /// Compute and convert cryptographic hashes (like `nix hash`).
    #[command(subcommand)]
    Hash(cmd::hash::HashCommand),
    /// Create, inspect and unpack Nix archives (like `nix nar` and `nix-store --dump/--restore`).
    #[command(subcommand)]
    Nar(cmd::nar::NarCommand),
    /// Inspect and check `.drv` files (like `nix show-derivation`).
    #[command(subcommand)]
    Derivation(cmd::derivation::DerivationCommand),
    /// Show what the store knows about paths: hashes, sizes, references (like `nix path-info`).
    PathInfo(cmd::path_info::PathInfoArgs),
    /// Show why a path depends on another: a shortest chain of references (like `nix why-depends`).
    WhyDepends(cmd::path_info::WhyDependsArgs),
    /// Show why two derivations differ, recursively (like `nix-diff`), or why one differs from its last build.
    WhyRebuild(cmd::why_rebuild::WhyRebuildArgs),
    /// Print the build log of a derivation or an output path (like `nix log`).
    Log(cmd::path_info::LogArgs),
    /// Copy store paths with their closures to or from a binary cache (like `nix copy`).
    Copy(cmd::copy::CopyArgs),
    /// Serve the store as a binary cache over HTTP (like `nix-serve`).
    Serve(cmd::serve::ServeArgs),
    /// Serve the store to Nix clients over the daemon protocol (like `nix-daemon`).
    Daemon(cmd::daemon::DaemonArgs),
    /// Run a program from the store, with the store at its logical path (like `nix run`).
    Run(cmd::run::RunArgs),
    /// Start a shell (or run a command) with store paths on PATH (like `nix shell`).
    Shell(cmd::run::ShellArgs),
    /// Install, remove and roll back packages in profiles (like `nix profile`).
    #[command(subcommand)]
    Profile(cmd::profile::ProfileCommand),
    /// Run a bash shell with the build environment of a derivation (like `nix develop`).
    Develop(cmd::develop::DevelopArgs),
    /// Print bash code (or JSON) recreating the build environment of a derivation (like `nix print-dev-env`).
    PrintDevEnv(cmd::develop::PrintDevEnvArgs),
    /// Start a shell in a derivation's build environment, as `nix-shell` (rix run as `nix-shell` is this).
    ShellNix(cmd::develop::shell_nix::ShellNixArgs),
    /// Work with flakes: lock, update, metadata, show, check, init, prefetch, archive (like `nix flake`).
    #[command(subcommand)]
    Flake(cmd::flake::FlakeCommand),
    /// List and change the flake registries (like `nix registry`).
    #[command(subcommand)]
    Registry(cmd::flake::RegistryCommand),
    /// Generate and convert signing keys (like `nix key`).
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// Show the effective settings and where each came from (like `nix config`).
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Print a shell completion script for rix.
    Completions {
        /// The shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = || Context::new(&cli.global);
    match &cli.command {
        Command::Build(args) => cmd::build::run(&ctx()?, args),
        Command::Eval(args) => cmd::eval::run(&ctx()?, args),
        Command::Instantiate(args) => cmd::instantiate::run(&ctx()?, args),
        Command::Repl(args) => cmd::repl::run(&ctx()?, args),
        Command::Store(c) => c.run(&ctx()?),
        Command::Hash(c) => c.run(),
        Command::Nar(c) => c.run(),
        Command::Derivation(c) => c.run(&ctx()?),
        Command::PathInfo(a) => cmd::path_info::path_info(&ctx()?, a),
        Command::WhyDepends(a) => cmd::path_info::why_depends(&ctx()?, a),
        Command::WhyRebuild(a) => cmd::why_rebuild::run(&ctx()?, a),
        Command::Log(a) => cmd::path_info::log(&ctx()?, a),
        Command::Copy(a) => cmd::copy::run(&ctx()?, a),
        Command::Serve(a) => cmd::serve::run(&ctx()?, a),
        Command::Daemon(a) => cmd::daemon::run(&ctx()?, a),
        Command::Run(a) => cmd::run::run(&ctx()?, a),
        Command::Shell(a) => cmd::run::shell(&ctx()?, a),
        Command::Develop(a) => cmd::develop::develop(&ctx()?, a),
        Command::PrintDevEnv(a) => cmd::develop::print_dev_env(&ctx()?, a),
        Command::ShellNix(a) => cmd::develop::shell_nix::run(&ctx()?, a),
        Command::Flake(c) => c.run(&ctx()?),
        Command::Profile(c) => c.run(&ctx()?),
        Command::Registry(c) => c.run(&ctx()?),
        Command::Key(c) => c.run(),
        Command::Config(c) => c.run(&ctx()?),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "rix", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
            Ok(())
        }
    }
}

/// On Ctrl-C or SIGTERM, kill every running builder's process group; the
/// realisation then fails those builds, deletes their partial outputs and ends
/// with "interrupted by the user" (exit status 1, as Nix). With no builder
/// running, or on a second signal, exit at once with that message.
pub(crate) fn handle_interrupts() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        let mut seen = 0;
        for _ in signals.forever() {
            seen += 1;
            let busy = rix_build::running::any_running();
            rix_build::running::cancel_all();
            if seen > 1 || !busy {
                // As Nix ends on SIGINT: its message, exit status 1.
                eprintln!("error: interrupted by the user");
                std::process::exit(1);
            }
            eprintln!("interrupted: stopping builds (press Ctrl-C again to quit at once)");
        }
    });
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    // Usage errors exit with 1, as Nix's do (clap's default is 2); help and
    // --version print to standard output and exit with 0.
    let cli = Cli::try_parse_from(argv_by_name()).unwrap_or_else(|e| {
        let code = if e.use_stderr() { 1 } else { 0 };
        let _ = e.print();
        std::process::exit(code)
    });
    choose_huge_pages(&cli.command);
    choose_purging(&cli.command);
    // `rix run` and `rix shell` exec the program, possibly after entering a user
    // namespace, which needs a single-threaded process; `rix daemon` forks a
    // process per connection (each starts its own handler).
    if !matches!(
        cli.command,
        Command::Run(_)
            | Command::Shell(_)
            | Command::Daemon(_)
            | Command::Develop(_)
            | Command::ShellNix(_)
    ) {
        handle_interrupts();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // As Nix's logger: ANSI escapes removed unless stderr is a terminal.
            if let Some(r) = err.downcast_ref::<cmd::instantiate::RenderedError>() {
                rix_eval::error::log_stderr(&r.0);
                return ExitCode::from(r.1);
            }
            // An error already reported (a failed build, as it failed) ends
            // the command with its status alone.
            if let Some(e) = err.downcast_ref::<cmd::ExitStatus>() {
                if e.message.is_empty() {
                    return ExitCode::from(e.code);
                }
            }
            // A message laid out on lines of its own starts after `error:`.
            let text = err.to_string();
            let sep = if text.starts_with('\n') { "" } else { " " };
            rix_eval::error::log_stderr(&format!("error:{sep}{text}"));
            // Each cause once: an I/O error wrapped with its path is not
            // followed by the same error without it.
            let mut said = err.to_string();
            for cause in err.chain().skip(1) {
                let text = cause.to_string();
                if !said.contains(&text) {
                    rix_eval::error::log_stderr(&format!("  caused by: {text}"));
                }
                said = text;
            }
            match err.downcast_ref::<cmd::ExitStatus>() {
                Some(e) => ExitCode::from(e.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// The command line, with rix called by another name turned into the
/// subcommand it stands for: `nix-shell ARGS` is `rix shell-nix ARGS`.
fn argv_by_name() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    if name == "nix-shell" {
        args[0] = "rix".into();
        args.insert(1, "shell-nix".into());
    }
    args
}

/// Transparent huge pages for pure evaluation, while its heap is small.
/// mimalloc asks for them (`madvise`) on its arenas: an evaluation's heap of
/// tens of MiB then takes a few hundred page faults instead of ~16,000 (a
/// fifth of `foldl'` over a million elements went to the kernel). A large heap
/// pays for them instead: on a virtual machine whose host takes back the
/// guest's free memory in 2 MiB blocks (free page reporting, as here), each
/// new huge page is memory the host must supply again, and a 2.4 GiB module
/// evaluation spent 5.2 s in the kernel with huge pages against 1.4 s
/// without. So evaluation starts with them and a watcher turns them off for
/// the rest of the process once it holds [`HUGE_PAGES_UP_TO`] bytes.
/// Everywhere else the 2 MiB granularity costs more memory than it saves time
/// (instantiating 2,001 derivations: 56 MiB peak instead of 30 MiB), so the
/// process turns them off from the start, as mimalloc's `no_thp` build did
/// for everything. Builders get the kernel's policy back before they start
/// (rix-build clears the flag between fork and exec).
fn choose_huge_pages(command: &Command) {
    let evaluation = match command {
        Command::Eval(_) => true,
        Command::Instantiate(args) => args.eval,
        _ => false,
    };
    if evaluation {
        limit_huge_pages();
    } else {
        // Failure only means the kernel keeps its own policy.
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
}

/// The resident size beyond which evaluation stops taking huge pages.
const HUGE_PAGES_UP_TO: u64 = 128 << 20;

/// Turns huge pages off once the process's resident size passes
/// [`HUGE_PAGES_UP_TO`]: a thread that looks every few milliseconds (a read
/// of `/proc/self/statm`), then ends. The flag is the process's, so it holds
/// for the evaluating thread's later page faults.
fn limit_huge_pages() {
    let watcher = || {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p as u64);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(5));
            let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
                return;
            };
            let resident: u64 = statm
                .split_whitespace()
                .nth(1)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            if resident * page > HUGE_PAGES_UP_TO {
                let _ = nix::sys::prctl::set_thp_disable(true);
                return;
            }
        }
    };
    // Without the watcher, huge pages simply stay on.
    let _ = std::thread::Builder::new()
        .name("huge-pages".into())
        .stack_size(64 << 10)
        .spawn(watcher);
}

/// mimalloc's `mi_option_purge_delay` (v3's `enum mi_option_e`; the crate
/// names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed during a command is kept for reuse, not returned to the
/// kernel, except in the long-lived servers. mimalloc returns ("purges")
/// pages that stay free for a while; evaluation frees and reallocates in
/// waves, and each wave then faults the pages back in, which the kernel
/// clears again: on a module-system evaluation of 500 modules, half of
/// rix's time was `clear_page` under huge-page faults (0.6 s of system time;
/// 0.02 s without purging). A command's heap goes back to the kernel when it
/// exits; Nix's garbage-collected heap does not shrink either.
fn choose_purging(command: &Command) {
    if matches!(command, Command::Daemon(_) | Command::Serve(_)) {
        return;
    }
    // SAFETY: sets an integer option; mimalloc reads it when it next decides
    // whether to purge.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

/// `rix nar dump x | head` must not print an error when `head` closes the pipe.
/// Output into a closed pipe (`rix ... | head -1`) ends the command quietly,
/// as a write error does (see [`is_broken_pipe`]), instead of with a panic:
/// `print!` panics when standard output is a pipe whose reader has gone.
/// (Restoring `SIGPIPE`'s default action would do the same for standard
/// output, but would also kill a client whose daemon connection closes.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if payload.starts_with("failed printing to stdout") && payload.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    /// Every subcommand's flags are consistent (no short or long flag twice):
    /// clap checks that only when a command is parsed in a debug build.
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// The option number names mimalloc's purge delay: its default is
    /// mimalloc v3's (1000 ms), and setting it reads back.
    #[test]
    #[allow(unsafe_code)]
    fn purge_delay_option_is_mimallocs() {
        use libmimalloc_sys::{mi_option_get, mi_option_set};
        // SAFETY: reads and sets an integer option.
        unsafe {
            assert_eq!(mi_option_get(super::MI_OPTION_PURGE_DELAY), 1000);
            mi_option_set(super::MI_OPTION_PURGE_DELAY, -1);
            assert_eq!(mi_option_get(super::MI_OPTION_PURGE_DELAY), -1);
        }
    }
}
