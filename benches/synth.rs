//! Synthetic face world speed: attributes + mask + photo + caption per second on one thread.
//!
//! `cargo bench --bench synth`. The issue asks for at least 200 samples/s at
//! 128 x 128 on one core; the figure measured when this was written is in
//! docs/synth.md.

use std::hint::black_box;
use std::time::Instant;

use codiff::data::synth::generate;

fn samples_per_sec(size: usize, count: u64) -> f64 {
    for i in 0..20 {
        black_box(generate(1, i, size));
    }
    let start = Instant::now();
    for i in 0..count {
        black_box(generate(7, i, size));
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    for (size, count) in [(128, 2000), (256, 500)] {
        let rate = samples_per_sec(size, count);
        println!("synth {size}x{size}: {rate:.0} samples/s on one thread ({:.2} ms per sample)", 1000.0 / rate);
    }
}
