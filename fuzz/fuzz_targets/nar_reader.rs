//! The NAR reader must reject bad archives with an error, never panic, and
//! re-encode every archive it accepts to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::nar::{copy, validate, NarReader, NarWriter};

fuzz_target!(|data: &[u8]| {
    if let Ok(size) = validate(data) {
        let mut reader = NarReader::new(data);
        let mut writer = NarWriter::new(Vec::new());
        copy(&mut reader, &mut writer).expect("a valid NAR copies");
        let out = writer.finish().expect("complete archive");
        assert_eq!(&out[..], &data[..size as usize]);
    }
});
