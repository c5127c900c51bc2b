//! A `.safetensors` file through `Weights`, with its dtype and non-finite checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codiff_fuzz::safetensors(data));
