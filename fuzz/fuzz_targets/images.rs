//! Mask and photo readers: a mask from its bytes, a photo from a file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = codiff::data::mask::Mask::decode(data, "fuzzed.png");
    let path = std::env::temp_dir().join(format!("codiff-fuzz-photo-{}", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = codiff::pipeline::edit::Photo::load(&path, None);
    }
});
