//! Store path and hash parsing must never panic; accepted paths print back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::hash::Hash;
use rix_formats::StoreDir;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = StoreDir::default();
    if let Ok(p) = dir.parse(text) {
        assert_eq!(dir.display(&p), text);
    }
    let _ = dir.parse_prefix(text);
    let _ = Hash::parse_any(text, None);
    let _ = text.parse::<rix_formats::content_address::ContentAddress>();
});
