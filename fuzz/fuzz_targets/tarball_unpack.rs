//! Downloaded archives (`fetchTarball`, `tarball` inputs) must never panic
//! when unpacked, and never write outside the directory they unpack into.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(outer) = tempfile::tempdir() else {
        return;
    };
    let dest = outer.path().join("tree");
    if std::fs::create_dir(&dest).is_err() {
        return;
    }
    let _ = rix_fetch::unpack::unpack(Box::new(std::io::Cursor::new(data.to_vec())), &dest);
    // Only the destination is in the outer directory.
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![std::ffi::OsString::from("tree")]);
});
