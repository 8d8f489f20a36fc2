//! The NAR reader must reject bad archives with an error, never panic, and
//! re-encode every archive it accepts to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::nar::{copy, validate};

fuzz_target!(|data: &[u8]| {
    if let Ok(size) = validate(data) {
        let mut out = Vec::new();
        copy(data, &mut out).expect("a valid NAR copies");
        assert_eq!(&out[..], &data[..size as usize]);
    }
});
