//! The operation codes a client sends before each request. Mirrors
//! `WorkerProto::Op` in Nix's `worker-protocol.hh` (numbers 2, 15 and 17 were
//! retired long ago and are not listed there either).

use std::io::Read;

use super::wire::{read_u32, WireError};

macro_rules! ops {
    ($($(#[$doc:meta])* $name:ident = $n:literal,)*) => {
        /// A worker operation, with Nix's number.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u64)]
        pub enum WorkerOp {
            $($(#[$doc])* $name = $n,)*
        }

        impl WorkerOp {
            /// Every operation, in numeric order.
            pub const ALL: &'static [WorkerOp] = &[$(WorkerOp::$name,)*];

            /// The operation with Nix's number `n`.
            pub fn from_u64(n: u64) -> Option<WorkerOp> {
                match n {
                    $($n => Some(WorkerOp::$name),)*
                    _ => None,
                }
            }

            /// Nix's name for it (`WorkerProto::Op::IsValidPath` is `IsValidPath`).
            pub fn name(self) -> &'static str {
                match self {
                    $(WorkerOp::$name => stringify!($name),)*
                }
            }
        }
    };
}

ops! {
    IsValidPath = 1,
    HasSubstitutes = 3,
    /// Obsolete.
    QueryPathHash = 4,
    /// Obsolete.
    QueryReferences = 5,
    QueryReferrers = 6,
    AddToStore = 7,
    /// Obsolete since 1.25; `AddToStore` replaces it.
    AddTextToStore = 8,
    BuildPaths = 9,
    EnsurePath = 10,
    AddTempRoot = 11,
    AddIndirectRoot = 12,
    SyncWithGC = 13,
    FindRoots = 14,
    /// Obsolete.
    ExportPath = 16,
    /// Obsolete.
    QueryDeriver = 18,
    SetOptions = 19,
    CollectGarbage = 20,
    QuerySubstitutablePathInfo = 21,
    /// Obsolete.
    QueryDerivationOutputs = 22,
    QueryAllValidPaths = 23,
    QueryFailedPaths = 24,
    ClearFailedPaths = 25,
    QueryPathInfo = 26,
    /// Obsolete.
    ImportPaths = 27,
    /// Obsolete.
    QueryDerivationOutputNames = 28,
    QueryPathFromHashPart = 29,
    QuerySubstitutablePathInfos = 30,
    QueryValidPaths = 31,
    QuerySubstitutablePaths = 32,
    QueryValidDerivers = 33,
    OptimiseStore = 34,
    VerifyStore = 35,
    BuildDerivation = 36,
    AddSignatures = 37,
    NarFromPath = 38,
    AddToStoreNar = 39,
    QueryMissing = 40,
    QueryDerivationOutputMap = 41,
    RegisterDrvOutput = 42,
    QueryRealisation = 43,
    AddMultipleToStore = 44,
    AddBuildLog = 45,
    BuildPathsWithResults = 46,
    /// Since 1.36.
    AddPermRoot = 47,
}

impl WorkerOp {
    /// Reads an operation code (Nix's daemon reads it with `readInt`).
    pub fn read<R: Read + ?Sized>(r: &mut R) -> Result<WorkerOp, WireError> {
        let n = read_u32(r, "operation")?;
        WorkerOp::from_u64(n.into()).ok_or(WireError::UnknownTag {
            field: "operation",
            value: n.into(),
        })
    }

    /// The code as sent on the wire.
    pub fn code(self) -> u64 {
        self as u64
    }

    /// Writes the operation code.
    pub fn write<W: std::io::Write + ?Sized>(self, w: &mut W) -> std::io::Result<()> {
        super::wire::write_u64(w, self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nix's numbers, checked against `worker-protocol.hh` (2.26.3).
    #[test]
    fn numbers() {
        assert_eq!(WorkerOp::IsValidPath.code(), 1);
        assert_eq!(WorkerOp::ExportPath.code(), 16);
        assert_eq!(WorkerOp::QueryPathInfo.code(), 26);
        assert_eq!(WorkerOp::BuildDerivation.code(), 36);
        assert_eq!(WorkerOp::AddMultipleToStore.code(), 44);
        assert_eq!(WorkerOp::AddBuildLog.code(), 45);
        assert_eq!(WorkerOp::BuildPathsWithResults.code(), 46);
        assert_eq!(WorkerOp::AddPermRoot.code(), 47);
        assert_eq!(WorkerOp::ALL.len(), 44);
        for &op in WorkerOp::ALL {
            assert_eq!(WorkerOp::from_u64(op.code()), Some(op), "{}", op.name());
        }
        for retired in [0, 2, 15, 17, 48] {
            assert_eq!(WorkerOp::from_u64(retired), None);
        }
    }
}
