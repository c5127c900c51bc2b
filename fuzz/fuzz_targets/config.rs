//! A model config (YAML) through `ModelConfig::load`; its parts are looked up
//! beside it, so a composed config may name itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("codiff-fuzz-config-{}", std::process::id()));
    let path = dir.join("fuzzed.yaml");
    if std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, data)).is_err() {
        return;
    }
    let _ = codiff::model::config::ModelConfig::load(&path);
});
