//! Data the engine reads and writes: face masks, images with their
//! parameters, and the synthetic face world.

pub mod augment;
pub mod conditions;
pub mod coverage;
pub mod faces;
pub mod image;
pub mod image_params;
pub mod mask;
pub mod output;
pub mod painted;
pub mod png_kind;
pub mod synth;
