//! One serve protocol request: its command and arguments, as `nix-store
//! --serve` reads them (`opServe` in Nix's `nix-store.cc`) and as its clients
//! write them (`ServeProto::BasicClientConnection`, `LegacySSHStore`).
//!
//! Bytes that follow some requests are not part of the value: an export
//! stream after [`ServeRequest::ImportPaths`], the NAR (of
//! [`AddToStoreNarInfo::nar_size`] bytes) after [`ServeRequest::AddToStoreNar`].

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Read, Write};

use super::command::ServeCommand;
use super::values::{BuildOptions, ServeSerialise};
use super::version::ServeCtx;
use crate::content_address::ContentAddress;
use crate::derivation::Derivation;
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{StoreDir, StorePath};
use crate::worker_protocol::request::{read_basic_derivation, write_basic_derivation};
use crate::worker_protocol::serialise::read_field;
use crate::worker_protocol::wire::{
    read_bool, read_i64, read_string, read_strings, read_u64, write_bool, write_bytes, write_i64,
    write_strings, write_u64, WireError,
};
use crate::worker_protocol::Serialise;

/// `path` or `path!out1,out2` (Nix's `StorePathWithOutputs`, the form of
/// `BuildPaths`' arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePathWithOutputs {
    pub path: StorePath,
    pub outputs: BTreeSet<String>,
}

impl StorePathWithOutputs {
    /// `parsePathWithOutputs`.
    pub fn parse(store_dir: &StoreDir, s: &str) -> Result<StorePathWithOutputs, String> {
        let (path, outputs) = match s.split_once('!') {
            Some((p, o)) => (p, o.split(',').map(str::to_owned).collect()),
            None => (s, BTreeSet::new()),
        };
        Ok(StorePathWithOutputs {
            path: store_dir.parse(path).map_err(|e| e.to_string())?,
            outputs,
        })
    }

    /// `StorePathWithOutputs::to_string`.
    pub fn display(&self, store_dir: &StoreDir) -> String {
        let path = store_dir.display(&self.path);
        if self.outputs.is_empty() {
            path
        } else {
            let outputs: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
            format!("{path}!{}", outputs.join(","))
        }
    }
}

/// What `AddToStoreNar` says of the path whose NAR follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddToStoreNarInfo {
    pub path: StorePath,
    pub deriver: Option<StorePath>,
    pub nar_hash: Hash,
    pub references: BTreeSet<StorePath>,
    pub registration_time: i64,
    pub nar_size: u64,
    pub ultimate: bool,
    pub sigs: BTreeSet<String>,
    pub ca: Option<ContentAddress>,
}

/// One request and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeRequest {
    /// Which of `paths` are valid; `lock` makes them temporary roots, and
    /// `substitute` lets the server fetch them first (both only with
    /// `--write`).
    QueryValidPaths {
        lock: bool,
        substitute: bool,
        paths: BTreeSet<StorePath>,
    },
    /// The infos of the valid ones of `paths`.
    QueryPathInfos { paths: BTreeSet<StorePath> },
    /// The NAR of `path`.
    DumpStorePath { path: StorePath },
    /// An export stream follows (`nix-store --export`'s format).
    ImportPaths,
    /// Build these paths (derivations with outputs, or plain paths).
    BuildPaths {
        paths: Vec<StorePathWithOutputs>,
        options: BuildOptions,
    },
    /// Build a derivation sent in full (`BasicDerivation`).
    BuildDerivation {
        drv_path: StorePath,
        drv: Derivation,
        options: BuildOptions,
    },
    /// The closure of `paths`, with derivations' outputs when
    /// `include_outputs`.
    QueryClosure {
        include_outputs: bool,
        paths: BTreeSet<StorePath>,
    },
    /// A path's info; its NAR follows.
    AddToStoreNar(AddToStoreNarInfo),
}

/// A request that cannot be read: an unknown command, or bad arguments.
#[derive(Debug)]
pub enum RequestError {
    /// A code `nix-store --serve` does not answer (Nix 2.26 answers no
    /// `ExportPaths` either): "unknown serve command N".
    UnknownCommand(u64),
    Wire(WireError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::UnknownCommand(n) => write!(f, "unknown serve command {n}"),
            RequestError::Wire(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<WireError> for RequestError {
    fn from(e: WireError) -> Self {
        RequestError::Wire(e)
    }
}

impl ServeRequest {
    /// The request's command.
    pub fn command(&self) -> ServeCommand {
        match self {
            ServeRequest::QueryValidPaths { .. } => ServeCommand::QueryValidPaths,
            ServeRequest::QueryPathInfos { .. } => ServeCommand::QueryPathInfos,
            ServeRequest::DumpStorePath { .. } => ServeCommand::DumpStorePath,
            ServeRequest::ImportPaths => ServeCommand::ImportPaths,
            ServeRequest::BuildPaths { .. } => ServeCommand::BuildPaths,
            ServeRequest::BuildDerivation { .. } => ServeCommand::BuildDerivation,
            ServeRequest::QueryClosure { .. } => ServeCommand::QueryClosure,
            ServeRequest::AddToStoreNar(_) => ServeCommand::AddToStoreNar,
        }
    }

    /// Reads the arguments of the request whose code was `code`.
    pub fn read<R: Read + ?Sized>(
        code: u64,
        r: &mut R,
        ctx: &ServeCtx,
    ) -> Result<ServeRequest, RequestError> {
        use ServeCommand as C;
        let common = ctx.common();
        let command = match ServeCommand::from_u64(code) {
            Some(C::ExportPaths) | None => return Err(RequestError::UnknownCommand(code)),
            Some(c) => c,
        };
        Ok(match command {
            C::QueryValidPaths => ServeRequest::QueryValidPaths {
                lock: read_bool(r, "QueryValidPaths.lock")?,
                substitute: read_bool(r, "QueryValidPaths.substitute")?,
                paths: read_field(r, &common, "QueryValidPaths.paths")?,
            },
            C::QueryPathInfos => ServeRequest::QueryPathInfos {
                paths: read_field(r, &common, "QueryPathInfos.paths")?,
            },
            C::DumpStorePath => ServeRequest::DumpStorePath {
                path: read_field(r, &common, "DumpStorePath.path")?,
            },
            C::ImportPaths => ServeRequest::ImportPaths,
            C::BuildPaths => {
                let strings = read_strings(r, &ctx.limits, "BuildPaths.paths")?;
                let paths = strings
                    .iter()
                    .map(|s| StorePathWithOutputs::parse(&ctx.store_dir, s))
                    .collect::<Result<_, _>>()
                    .map_err(|e| WireError::invalid("BuildPaths.paths", e))?;
                ServeRequest::BuildPaths {
                    paths,
                    options: BuildOptions::read(r, ctx)
                        .map_err(|e| e.within("BuildPaths.options"))?,
                }
            }
            C::BuildDerivation => {
                let drv_path: StorePath = read_field(r, &common, "BuildDerivation.drvPath")?;
                let name = Derivation::name_from_drv_path(&drv_path)
                    .ok_or_else(|| {
                        WireError::invalid("BuildDerivation.drvPath", "not a derivation (.drv)")
                    })?
                    .to_owned();
                let drv = read_basic_derivation(r, &common, name)
                    .map_err(|e| e.within("BuildDerivation.drv"))?;
                ServeRequest::BuildDerivation {
                    drv_path,
                    drv,
                    options: BuildOptions::read(r, ctx)
                        .map_err(|e| e.within("BuildDerivation.options"))?,
                }
            }
            C::QueryClosure => ServeRequest::QueryClosure {
                include_outputs: read_bool(r, "QueryClosure.includeOutputs")?,
                paths: read_field(r, &common, "QueryClosure.paths")?,
            },
            C::AddToStoreNar => {
                let path = read_field(r, &common, "AddToStoreNar.path")?;
                let deriver = read_field(r, &common, "AddToStoreNar.deriver")?;
                let hash = read_string(r, &ctx.limits, "AddToStoreNar.narHash")?;
                let nar_hash = Hash::parse_any(&hash, Some(HashAlgo::Sha256))
                    .map_err(|e| WireError::invalid("AddToStoreNar.narHash", e))?;
                let references = read_field(r, &common, "AddToStoreNar.references")?;
                let registration_time = read_i64(r, "AddToStoreNar.registrationTime")?;
                let nar_size = read_u64(r, "AddToStoreNar.narSize")?;
                let ultimate = read_bool(r, "AddToStoreNar.ultimate")?;
                let sigs = read_field(r, &common, "AddToStoreNar.sigs")?;
                let ca = read_field(r, &common, "AddToStoreNar.ca")?;
                if nar_size == 0 {
                    return Err(WireError::invalid(
                        "AddToStoreNar.narSize",
                        "narInfo is too old and missing the narSize field",
                    )
                    .into());
                }
                ServeRequest::AddToStoreNar(AddToStoreNarInfo {
                    path,
                    deriver,
                    nar_hash,
                    references,
                    registration_time,
                    nar_size,
                    ultimate,
                    sigs,
                    ca,
                })
            }
            C::ExportPaths => unreachable!("refused above"),
        })
    }

    /// Writes the request, its code first.
    pub fn write<W: Write + ?Sized>(&self, w: &mut W, ctx: &ServeCtx) -> io::Result<()> {
        let common = ctx.common();
        write_u64(w, self.command() as u64)?;
        match self {
            ServeRequest::QueryValidPaths {
                lock,
                substitute,
                paths,
            } => {
                write_bool(w, *lock)?;
                write_bool(w, *substitute)?;
                paths.write(w, &common)
            }
            ServeRequest::QueryPathInfos { paths } => paths.write(w, &common),
            ServeRequest::DumpStorePath { path } => path.write(w, &common),
            ServeRequest::ImportPaths => Ok(()),
            ServeRequest::BuildPaths { paths, options } => {
                write_strings(w, paths.iter().map(|p| p.display(&ctx.store_dir)))?;
                options.write(w, ctx)
            }
            ServeRequest::BuildDerivation {
                drv_path,
                drv,
                options,
            } => {
                drv_path.write(w, &common)?;
                write_basic_derivation(w, &common, drv)?;
                options.write(w, ctx)
            }
            ServeRequest::QueryClosure {
                include_outputs,
                paths,
            } => {
                write_bool(w, *include_outputs)?;
                paths.write(w, &common)
            }
            ServeRequest::AddToStoreNar(info) => {
                info.path.write(w, &common)?;
                info.deriver.write(w, &common)?;
                write_bytes(w, info.nar_hash.to_base16().as_bytes())?;
                info.references.write(w, &common)?;
                write_i64(w, info.registration_time)?;
                write_u64(w, info.nar_size)?;
                write_bool(w, info.ultimate)?;
                info.sigs.write(w, &common)?;
                info.ca.write(w, &common)
            }
        }
    }
}
