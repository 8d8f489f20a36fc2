//! Nix's worker protocol (the daemon protocol, `nix-daemon` and `ssh-ng://`), as
//! a pure, synchronous codec: values from `std::io::Read` and to
//! `std::io::Write`, no sockets. Byte for byte as Nix 2.8 to 2.26 (protocols
//! 1.34 to 1.38); tested against Nix's own golden files
//! (`tests/vectors/nix-libstore/worker-protocol/`).
//!
//! | module | concept | mirrors in Nix |
//! | --- | --- | --- |
//! | [`wire`] | `u64`, booleans, padded byte strings, counted lists; [`Limits`] checked before allocating; [`WireError`]; framed streams ([`FramedReader`], [`FramedWriter`]) | `serialise.cc`, `serialise.hh` (`FramedSource`, `FramedSink`) |
//! | [`version`] | [`ProtocolVersion`] (1.34–1.38 and what each adds), negotiation, magic numbers | `worker-protocol.hh` |
//! | [`op`] | [`WorkerOp`], the operation codes | `WorkerProto::Op` |
//! | [`serialise`] | the [`Serialise`] trait, its [`Ctx`]; strings, lists, sets, maps, store paths, content addresses | `common-protocol.cc`, `common-protocol-impl.hh` |
//! | [`handshake`] | magic numbers, versions, features, obsolete client options, [`ClientHandshakeInfo`] | `worker-protocol-connection.cc` |
//! | [`stderr`] | [`StderrMsg`]: log lines, activities, results, data requests, errors | `daemon.cc` (`TunnelLogger`), `processStderrReturn` |
//! | [`derived_path`] | [`DerivedPath`], [`OutputsSpec`] in the 1.30 form | `derived-path.cc` |
//! | [`realisation`] | [`DrvOutput`], [`Realisation`] (JSON on the wire) | `realisation.cc` |
//! | [`build_result`] | [`BuildMode`], [`BuildStatus`], [`BuildResult`], [`KeyedBuildResult`] | `build-result.hh`, `worker-protocol.cc` |
//! | [`path_info`] | [`UnkeyedValidPathInfo`], [`ValidPathInfo`] as they travel | `path-info.hh`, `worker-protocol.cc` |
//! | [`request`] | [`Request`]: one operation and its arguments, read by the daemon and written by a client; [`ClientSettings`] (`SetOptions`), the `BasicDerivation` of `BuildDerivation` | `daemon.cc` (`performOp`), `remote-store.cc`, `derivations.cc` (`readDerivation`/`writeDerivation`) |
//!
//! Every reader takes untrusted bytes: it returns a [`WireError`] naming the
//! field, never panics (property tests and the `worker_protocol` fuzz target
//! check this), and allocates no more than the peer has actually sent.

pub mod build_result;
pub mod derived_path;
pub mod handshake;
pub mod op;
pub mod path_info;
pub mod realisation;
pub mod request;
pub mod serialise;
pub mod stderr;
pub mod version;
pub mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod tests;

pub use build_result::{BuildMode, BuildResult, BuildStatus, KeyedBuildResult};
pub use derived_path::{DerivedPath, OutputsSpec};
pub use handshake::{ClientHandshakeInfo, ClientOptions, Features, ServerHello, TrustedFlag};
pub use op::WorkerOp;
pub use path_info::{UnkeyedValidPathInfo, ValidPathInfo};
pub use realisation::{DrvOutput, Realisation};
pub use request::{
    AddMethod, ClientSettings, ContentAddressMethodWithAlgo, GcAction, GcRequest, Request,
};
pub use serialise::{from_bytes, to_bytes, Ctx, Serialise};
pub use stderr::{ActivityResult, Field, RemoteError, StartActivity, StderrMsg};
pub use version::{ProtocolVersion, RawVersion, VersionError, WORKER_MAGIC_1, WORKER_MAGIC_2};
pub use wire::{FramedReader, FramedWriter, Limits, WireError};
