//! The original Collaborative Diffusion networks, one file each, named after
//! the checkpoint keys, plus the YAML configs and checkpoint loading.

pub mod attention;
pub mod autoencoder;
pub mod layers;
pub mod unet;
