//! The serve protocol's request codes. Mirrors `ServeProto::Command`
//! (`serve-protocol.hh`).

use std::fmt;

/// One request of a serve protocol client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServeCommand {
    QueryValidPaths = 1,
    QueryPathInfos = 2,
    DumpStorePath = 3,
    ImportPaths = 4,
    ExportPaths = 5,
    BuildPaths = 6,
    QueryClosure = 7,
    BuildDerivation = 8,
    AddToStoreNar = 9,
}

impl ServeCommand {
    /// Every command, in code order.
    pub const ALL: &'static [ServeCommand] = &[
        ServeCommand::QueryValidPaths,
        ServeCommand::QueryPathInfos,
        ServeCommand::DumpStorePath,
        ServeCommand::ImportPaths,
        ServeCommand::ExportPaths,
        ServeCommand::BuildPaths,
        ServeCommand::QueryClosure,
        ServeCommand::BuildDerivation,
        ServeCommand::AddToStoreNar,
    ];

    /// The command of a code, if there is one.
    pub fn from_u64(n: u64) -> Option<ServeCommand> {
        Self::ALL.iter().copied().find(|c| *c as u64 == n)
    }
}

impl fmt::Display for ServeCommand {
    /// The number, as Nix prints a command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u64)
    }
}
