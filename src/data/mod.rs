//! Data the engine reads and writes: face masks, images with their
//! parameters, and the synthetic face world.

pub mod image;
pub mod mask;
pub mod output;
pub mod synth;
