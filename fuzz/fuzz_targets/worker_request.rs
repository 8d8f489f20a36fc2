//! Every request the daemon reads: arbitrary bytes after an operation code must
//! be refused without panicking, and whatever is accepted must read back the
//! same after being written again. The first byte picks the protocol version
//! (1.34 to 1.38), the next byte the operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::worker_protocol::{Ctx, ProtocolVersion, Request, WorkerOp};
use rix_formats::StoreDir;

fuzz_target!(|data: &[u8]| {
    let [v, op, bytes @ ..] = data else {
        return;
    };
    let version = ProtocolVersion::new(1, 34 + v % 5).expect("in range");
    let ctx = Ctx::new(version, StoreDir::default());
    let op = WorkerOp::ALL[usize::from(*op) % WorkerOp::ALL.len()];
    if let Ok(req) = Request::read(op, &mut &bytes[..], &ctx) {
        assert_eq!(req.op(), op);
        let mut out = Vec::new();
        req.write(&mut out, &ctx).expect("writes to a Vec");
        let mut rest = &out[..];
        let again_op = WorkerOp::read(&mut rest).expect("op reads back");
        let again = Request::read(again_op, &mut rest, &ctx).expect("reads back");
        assert!(rest.is_empty());
        assert_eq!(again, req);
    }
});
