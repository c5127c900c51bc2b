//! A `.safetensors` file through `Weights` (it maps a file, so the input is written to one).
#![no_main]

use codiff::model::checkpoint::Weights;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("codiff-fuzz-{}.safetensors", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(weights) = Weights::open(&path) {
        for name in weights.shapes().keys() {
            let _ = weights.get(name);
        }
    }
});
