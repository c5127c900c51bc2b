//! The original Collaborative Diffusion networks, one file each, named after
//! the checkpoint keys, plus the YAML configs and checkpoint loading.

pub mod mask_encoder;
pub mod text_encoder;
pub mod tokenizer;
