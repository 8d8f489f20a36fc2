//! `rix serve`'s request-path parser (what follows the host in an HTTP request to
//! a binary cache) must never panic, and must accept only the paths it serves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_substitute::serve::{parse_request, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    match parse_request(path) {
        None => {}
        Some(Request::CacheInfo) => assert_eq!(path, "/nix-cache-info"),
        Some(Request::NarInfo { hash_part }) => {
            assert_eq!(path, format!("/{hash_part}.narinfo"));
        }
        Some(Request::Nar {
            hash_part,
            nar_hash,
            ..
        }) => {
            assert!(path.starts_with(&format!("/nar/{hash_part}-{nar_hash}.nar")));
        }
    }
});
