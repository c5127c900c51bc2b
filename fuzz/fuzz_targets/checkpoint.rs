//! A `.ckpt` (zip + pickle) through the restricted pickle reader and `Weights`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codiff_fuzz::checkpoint(data));
