//! A model config (YAML) through `ModelConfig::load`, with its bounds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codiff_fuzz::config(data));
