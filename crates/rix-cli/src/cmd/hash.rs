//! `rix hash`: hash files and trees, convert hash encodings. Mirrors `nix hash`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use rix_formats::hash::{Encoding, Hash, HashAlgo};

#[derive(Subcommand)]
pub enum HashCommand {
    /// Print the hash of the NAR serialisation of each path (what `nix-hash` and store paths use).
    Path(HashArgs),
    /// Print the hash of each file's contents.
    File(HashArgs),
    /// Convert hashes between encodings (like `nix hash convert`).
    Convert {
        /// Encoding to print.
        #[arg(long, value_enum, default_value = "sri")]
        to: EncodingArg,
        /// Algorithm of hashes given without an `algo:` prefix or SRI form.
        #[arg(long = "hash-algo", alias = "type", value_parser = parse_algo)]
        hash_algo: Option<HashAlgo>,
        /// Hashes to convert (`sha256:...`, SRI, or bare with --hash-algo).
        #[arg(required = true)]
        hashes: Vec<String>,
    },
    /// Convert hashes to base16 (Nix 2.8's `nix hash to-base16`).
    #[command(name = "to-base16")]
    ToBase16(ToArgs),
    /// Convert hashes to Nix's base-32 (Nix 2.8's `nix hash to-base32`).
    #[command(name = "to-base32")]
    ToBase32(ToArgs),
    /// Convert hashes to base64 (Nix 2.8's `nix hash to-base64`).
    #[command(name = "to-base64")]
    ToBase64(ToArgs),
    /// Convert hashes to SRI form (Nix 2.8's `nix hash to-sri`).
    #[command(name = "to-sri")]
    ToSri(ToArgs),
}

#[derive(Args)]
pub struct ToArgs {
    /// Algorithm of hashes given without an `algo:` prefix or SRI form.
    #[arg(long = "type", value_parser = parse_algo)]
    algo: Option<HashAlgo>,
    /// Hashes to convert.
    #[arg(required = true)]
    hashes: Vec<String>,
}

#[derive(Args)]
pub struct HashArgs {
    /// Hash algorithm.
    #[arg(long = "type", alias = "algo", default_value = "sha256", value_parser = parse_algo)]
    algo: HashAlgo,
    /// Print in base16 (hexadecimal).
    #[arg(long, group = "enc")]
    base16: bool,
    /// Print in Nix's base-32.
    #[arg(long, alias = "nix32", group = "enc")]
    base32: bool,
    /// Print in base64.
    #[arg(long, group = "enc")]
    base64: bool,
    /// Print in SRI form `algo-base64` (the default).
    #[arg(long, group = "enc")]
    sri: bool,
    /// Files or directories to hash.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EncodingArg {
    Base16,
    #[value(alias = "base32")]
    Nix32,
    Base64,
    Sri,
}

impl From<EncodingArg> for Encoding {
    fn from(e: EncodingArg) -> Self {
        match e {
            EncodingArg::Base16 => Encoding::Base16,
            EncodingArg::Nix32 => Encoding::Nix32,
            EncodingArg::Base64 => Encoding::Base64,
            EncodingArg::Sri => Encoding::Sri,
        }
    }
}

fn parse_algo(s: &str) -> Result<HashAlgo, String> {
    s.parse()
        .map_err(|e: rix_formats::hash::HashError| e.to_string())
}

impl HashArgs {
    fn encoding(&self) -> Encoding {
        match (self.base16, self.base32, self.base64) {
            (true, _, _) => Encoding::Base16,
            (_, true, _) => Encoding::Nix32,
            (_, _, true) => Encoding::Base64,
            _ => Encoding::Sri,
        }
    }
}

impl HashCommand {
    pub fn run(&self) -> Result<()> {
        match self {
            Self::Path(args) => print_each(args, |p| {
                let (hash, _size) = rix_store::archive::hash_path(p, args.algo)?;
                Ok(hash)
            }),
            Self::File(args) => print_each(args, |p| {
                Ok(rix_store::local_store::hash_file(p, args.algo)?)
            }),
            Self::Convert {
                to,
                hash_algo,
                hashes,
            } => convert(hashes, *hash_algo, (*to).into()),
            Self::ToBase16(a) => convert(&a.hashes, a.algo, Encoding::Base16),
            Self::ToBase32(a) => convert(&a.hashes, a.algo, Encoding::Nix32),
            Self::ToBase64(a) => convert(&a.hashes, a.algo, Encoding::Base64),
            Self::ToSri(a) => convert(&a.hashes, a.algo, Encoding::Sri),
        }
    }
}

fn convert(hashes: &[String], algo: Option<HashAlgo>, to: Encoding) -> Result<()> {
    for s in hashes {
        let h = Hash::parse_any(s, algo).with_context(|| format!("cannot convert '{s}'"))?;
        println!("{}", h.encode(to));
    }
    Ok(())
}

fn print_each(args: &HashArgs, hash: impl Fn(&std::path::Path) -> Result<Hash>) -> Result<()> {
    for p in &args.paths {
        let h = hash(p).with_context(|| format!("cannot hash '{}'", p.display()))?;
        println!("{}", h.encode(args.encoding()));
    }
    Ok(())
}
