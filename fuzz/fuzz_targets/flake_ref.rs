//! Flake references (command lines, `flake.lock`, `builtins.parseFlakeRef`)
//! must never panic; a parsed reference prints, and its attributes parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::flake_ref::FlakeRef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = FlakeRef::parse(text) {
        let _ = r.to_url();
        let _ = FlakeRef::from_attrs(&r.to_attrs());
    }
});
