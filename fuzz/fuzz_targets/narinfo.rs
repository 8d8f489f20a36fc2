//! The narinfo parser must never panic, and must print what it accepts back
//! byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::narinfo::NarInfo;
use rix_formats::StoreDir;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = NarInfo::parse(&StoreDir::default(), text) {
        assert_eq!(info.to_string(), text);
        let _ = info.fingerprint();
    }
});
