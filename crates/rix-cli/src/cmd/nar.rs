//! `rix nar`: create, list and unpack Nix archives. Mirrors `nix nar dump-path`,
//! `nix-store --dump/--restore`, `nix nar ls` and `nix nar cat` of Nix 2.8.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use rix_formats::nar::listing::{self, JsonStyle, Node, TextOptions};
use rix_formats::nar::{Event, NarReadError, NarReader};

#[derive(Subcommand)]
pub enum NarCommand {
    /// Serialise a file, symlink or directory tree to a NAR on standard output
    /// (like `nix nar dump-path` and `nix-store --dump`).
    #[command(alias = "dump-path")]
    Dump {
        /// The file system object to serialise (symlinks are not followed).
        path: PathBuf,
    },
    /// Unpack a NAR read from standard input into DIR, which must not exist (like
    /// `nix-store --restore`). Nothing is written outside DIR, and nothing is left
    /// behind when the archive is bad.
    Restore {
        /// Where to create the unpacked file system object.
        dir: PathBuf,
    },
    /// List the contents of a NAR at PATH inside it (like `nix nar ls`).
    Ls {
        #[command(flatten)]
        ls: LsArgs,
        /// The NAR file (`-` or `/dev/stdin` for standard input).
        nar: PathBuf,
        /// An absolute path inside the archive: `/` for its root.
        path: String,
    },
    /// Print the contents of a regular file inside a NAR (like `nix nar cat`).
    Cat {
        /// The NAR file (`-` or `/dev/stdin` for standard input).
        nar: PathBuf,
        /// An absolute path inside the archive: `/` when the archive is a single file.
        path: String,
    },
}

/// The listing flags `nix nar ls` and `nix store ls` share.
#[derive(Args, Clone, Copy)]
pub struct LsArgs {
    /// Show type, permissions, size and symlink targets.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// List subdirectories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Show a directory itself rather than its entries.
    #[arg(short = 'd', long)]
    pub directory: bool,
    /// Print the listing as JSON (as Nix 2.8: entries of subdirectories only with -R).
    #[arg(long)]
    pub json: bool,
}

impl LsArgs {
    /// Prints `node`, found at `path`, as `nix nar ls` / `nix store ls` do.
    pub fn print(&self, node: &Node, path: &str) -> Result<()> {
        let out = if self.json {
            // Nix 2.8 ends its JSON without a newline.
            node.to_json(JsonStyle::Nix28, self.recursive)
        } else {
            let options = TextOptions {
                long: self.long,
                recursive: self.recursive,
                directory: self.directory,
            };
            node.to_text(path.as_bytes(), options)
        };
        let mut stdout = io::stdout().lock();
        stdout.write_all(&out)?;
        stdout.flush()?;
        Ok(())
    }
}

impl NarCommand {
    pub fn run(&self) -> Result<()> {
        match self {
            Self::Dump { path } => dump(path),
            // The archive error names the target and the offset already.
            Self::Restore { dir } => rix_store::archive::restore(io::stdin().lock(), dir)
                .map_err(|e| anyhow::anyhow!("cannot unpack the NAR on standard input: {e}")),
            Self::Ls { ls, nar, path } => {
                check_absolute(path)?;
                let root = listing::list(open_nar(nar)?).with_context(|| bad_nar(nar))?;
                let node = root.lookup(path.as_bytes()).with_context(|| {
                    format!("path '{path}' does not exist in NAR '{}' (list it with `rix nar ls -R {} /`)", nar.display(), nar.display())
                })?;
                ls.print(node, path)
            }
            Self::Cat { nar, path } => {
                check_absolute(path)?;
                cat(nar, path)
            }
        }
    }
}

fn dump(path: &Path) -> Result<()> {
    let stdout = io::stdout();
    if stdout.is_terminal() {
        bail!("refusing to write a NAR to a terminal: redirect standard output (`rix nar dump {} > x.nar`)", path.display());
    }
    let mut out = stdout.lock();
    match rix_store::archive::dump(path, &mut out) {
        Ok(_) => {}
        // Keeps the io::Error, so that a closed pipe is no error (see main).
        Err(rix_store::archive::ArchiveError::Write(e)) => return Err(e.into()),
        // The message names the file and its cause already.
        Err(e) => bail!("cannot dump '{}': {e}", path.display()),
    }
    out.flush()?;
    Ok(())
}

/// Paths inside an archive are absolute, as in Nix.
fn check_absolute(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        bail!("not an absolute path: '{path}' (paths inside a NAR start with '/', e.g. '/' or '/bin/sh')");
    }
    Ok(())
}

fn bad_nar(nar: &Path) -> String {
    format!("cannot read NAR '{}'", nar.display())
}

fn open_nar(nar: &Path) -> Result<BufReader<Box<dyn Read>>> {
    let source: Box<dyn Read> = if nar == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(nar).with_context(|| format!("cannot open NAR '{}'", nar.display()))?)
    };
    Ok(BufReader::with_capacity(64 * 1024, source))
}

/// Streams the file at `path` to standard output, then validates the rest of the
/// archive (an error after the contents were printed still fails the command).
fn cat(nar: &Path, path: &str) -> Result<()> {
    let want: Vec<&[u8]> = path
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let mut reader = NarReader::new(open_nar(nar)?);
    // Names of the open directories (`None` for the root), and the name of the
    // entry whose node is next.
    let mut dirs: Vec<Option<Vec<u8>>> = Vec::new();
    let mut entry: Option<Vec<u8>> = None;
    let mut found = false;
    loop {
        let event = reader.next().with_context(|| bad_nar(nar))?;
        let Some(event) = event else { break };
        let at_target = |dirs: &Vec<Option<Vec<u8>>>, entry: &Option<Vec<u8>>| {
            let components = dirs
                .iter()
                .flatten()
                .map(Vec::as_slice)
                .chain(entry.as_deref());
            components.clone().count() == want.len() && components.zip(&want).all(|(a, b)| a == *b)
        };
        match event {
            Event::Entry { name } => entry = Some(name.to_vec()),
            Event::Regular { offset, .. } => {
                if at_target(&dirs, &entry) {
                    copy_contents(&mut reader, offset, nar)?;
                    found = true;
                }
                entry = None;
            }
            Event::Symlink { .. } => {
                if at_target(&dirs, &entry) {
                    bail!(
                        "path '{path}' in NAR '{}' is a symlink, not a regular file",
                        nar.display()
                    );
                }
                entry = None;
            }
            Event::Directory => {
                if at_target(&dirs, &entry) {
                    bail!(
                        "path '{path}' in NAR '{}' is a directory, not a regular file (list it with `rix nar ls`)",
                        nar.display()
                    );
                }
                dirs.push(entry.take());
            }
            Event::EndDirectory => {
                dirs.pop();
            }
        }
    }
    reader.finish_at_eof().with_context(|| bad_nar(nar))?;
    if !found {
        bail!(
            "path '{path}' does not exist in NAR '{}' (list it with `rix nar ls -R {} /`)",
            nar.display(),
            nar.display()
        );
    }
    Ok(())
}

/// Copies the current file's contents to standard output. Read errors are the
/// archive's (with their offset); write errors are returned unwrapped.
fn copy_contents<R: Read>(reader: &mut NarReader<R>, offset: u64, nar: &Path) -> Result<()> {
    let mut stdout = io::stdout().lock();
    let mut contents = reader.contents();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match contents.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(
                    anyhow::Error::new(NarReadError::from_io(e, offset)).context(bad_nar(nar))
                )
            }
        };
        if let Err(e) = stdout.write_all(&buf[..n]) {
            return Err(anyhow::Error::new(e).context("cannot write to standard output"));
        }
    }
    stdout.flush().context("cannot write to standard output")?;
    Ok(())
}
