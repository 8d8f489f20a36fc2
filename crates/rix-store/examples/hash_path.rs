//! Prints the NAR hash of a path like `nix-hash --type ALGO --base32 PATH`.
//!
//! Usage: `hash_path PATH [md5|sha1|sha256|sha512]` (default sha256); prints the
//! nix32 hash, and the NAR size on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use rix_formats::HashAlgo;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: hash_path PATH [md5|sha1|sha256|sha512]");
        return ExitCode::from(2);
    };
    let algo = match args.next().map(|a| a.to_string_lossy().parse::<HashAlgo>()) {
        None => HashAlgo::Sha256,
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match rix_store::archive::hash_path(&path, algo) {
        Ok((hash, size)) => {
            println!("{}", hash.to_nix32());
            eprintln!("NAR size: {size}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
