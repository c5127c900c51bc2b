//! Data the engine reads and writes: face masks, images with their
//! parameters, and the synthetic face world.

pub mod image;
pub mod mask;
