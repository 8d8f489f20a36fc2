//! The Nix language parser (rnix, then rix's lowering to its AST) must never
//! panic on any text: it returns an expression or a parse error with a position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_eval::eval::{EvalOptions, Evaluator};
use rix_eval::source::Origin;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    thread_local! {
        static EV: Evaluator = Evaluator::new(EvalOptions::default());
    }
    EV.with(|ev| {
        let _ = ev.parse(text, Origin::String, "/fuzz");
    });
});
