//! The ATerm parser must never panic, and what it accepts must print and parse
//! back to the same derivation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rix_formats::derivation::Derivation;
use rix_formats::StoreDir;

fuzz_target!(|data: &[u8]| {
    let dir = StoreDir::default();
    if let Ok(drv) = Derivation::from_aterm(data, &dir, Some("fuzz")) {
        if let Ok(printed) = drv.to_aterm(&dir) {
            let again =
                Derivation::from_aterm(&printed, &dir, Some("fuzz")).expect("printed ATerm parses");
            assert_eq!(again, drv);
        }
    }
});
