//! Data the engine reads and writes: face masks and the synthetic face world.

pub mod mask;
pub mod synth;
