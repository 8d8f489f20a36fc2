//! Every request `rix store serve` reads (the serve protocol): arbitrary bytes
//! after a command code must be refused without panicking, and whatever is
//! accepted must read back the same after being written again. The first byte
//! picks the protocol version (2.0 to 2.7), the next byte the command; the
//! serve forms of build results and path infos are read from the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::serve_protocol::{ServeCtx, ServeRequest, ServeSerialise, ServeVersion};
use rix_formats::worker_protocol::{BuildResult, UnkeyedValidPathInfo};
use rix_formats::StoreDir;

fuzz_target!(|data: &[u8]| {
    let [v, code, bytes @ ..] = data else {
        return;
    };
    let ctx = ServeCtx::new(ServeVersion::new(2, v % 8), StoreDir::default());
    let code = u64::from(*code % 11);
    if let Ok(req) = ServeRequest::read(code, &mut &bytes[..], &ctx) {
        let mut out = Vec::new();
        req.write(&mut out, &ctx).expect("writes to a Vec");
        let again = ServeRequest::read(code, &mut &out[8..], &ctx).expect("reads back");
        assert_eq!(again, req);
    }
    let _ = BuildResult::read(&mut &bytes[..], &ctx);
    let _ = UnkeyedValidPathInfo::read(&mut &bytes[..], &ctx);
});
