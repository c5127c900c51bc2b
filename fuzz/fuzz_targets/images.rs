//! The mask and photo readers (PNG bombs included).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codiff_fuzz::images(data));
