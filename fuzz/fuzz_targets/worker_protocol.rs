//! Every worker protocol reader must refuse bad bytes without panicking, and
//! whatever it accepts must read back the same after being written again. The
//! first byte picks the protocol version (1.34 to 1.38).
#![no_main]

use std::collections::BTreeSet;
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use rix_formats::content_address::ContentAddress;
use rix_formats::worker_protocol::handshake::{read_client_magic, read_raw_version};
use rix_formats::worker_protocol::{
    from_bytes, to_bytes, BuildMode, BuildResult, ClientHandshakeInfo, ClientOptions, Ctx,
    DerivedPath, DrvOutput, KeyedBuildResult, ProtocolVersion, Realisation, Serialise, ServerHello,
    StderrMsg, TrustedFlag, UnkeyedValidPathInfo, ValidPathInfo, WorkerOp,
};
use rix_formats::{StoreDir, StorePath};

fn check<T: Serialise + PartialEq + Debug>(bytes: &[u8], ctx: &Ctx) {
    if let Ok(value) = T::read(&mut &bytes[..], ctx) {
        let again: T = from_bytes(&to_bytes(&value, ctx), ctx).expect("reads back");
        assert_eq!(again, value);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&v, bytes)) = data.split_first() else {
        return;
    };
    let version = ProtocolVersion::new(1, 34 + v % 5).expect("in range");
    let ctx = Ctx::new(version, StoreDir::default());
    check::<String>(bytes, &ctx);
    check::<Vec<String>>(bytes, &ctx);
    check::<BTreeSet<String>>(bytes, &ctx);
    check::<StorePath>(bytes, &ctx);
    check::<Option<StorePath>>(bytes, &ctx);
    check::<BTreeSet<StorePath>>(bytes, &ctx);
    check::<ContentAddress>(bytes, &ctx);
    check::<Option<ContentAddress>>(bytes, &ctx);
    check::<DrvOutput>(bytes, &ctx);
    check::<Realisation>(bytes, &ctx);
    check::<DerivedPath>(bytes, &ctx);
    check::<BuildMode>(bytes, &ctx);
    check::<BuildResult>(bytes, &ctx);
    check::<KeyedBuildResult>(bytes, &ctx);
    check::<UnkeyedValidPathInfo>(bytes, &ctx);
    check::<ValidPathInfo>(bytes, &ctx);
    check::<Option<TrustedFlag>>(bytes, &ctx);
    check::<ClientHandshakeInfo>(bytes, &ctx);
    check::<ClientOptions>(bytes, &ctx);
    if let Ok(msg) = StderrMsg::read(&mut &bytes[..], &ctx) {
        let mut out = Vec::new();
        msg.write(&mut out).expect("writes to a Vec");
        assert_eq!(
            StderrMsg::read(&mut &out[..], &ctx).expect("reads back"),
            msg
        );
    }
    let _ = WorkerOp::read(&mut &bytes[..]);
    let _ = ServerHello::read(&mut &bytes[..]);
    let _ = read_client_magic(&mut &bytes[..]);
    let _ = read_raw_version(&mut &bytes[..], "version");
});
