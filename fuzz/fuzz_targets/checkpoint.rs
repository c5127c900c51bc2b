//! A `.ckpt` (zip + pickle) through the restricted reader: any input may be
//! refused, none may panic, abort or run away with memory.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = codiff::model::pickle::parse(data);
    let _ = codiff::model::torch_zip::read_state_dict_from(std::io::Cursor::new(data), data.len() as u64);
});
