//! The original Collaborative Diffusion networks, one file each, named after
//! the checkpoint keys, plus the YAML configs and checkpoint loading.

pub mod attention;
pub mod autoencoder;
pub mod checkpoint;
pub mod collaborative;
pub mod config;
pub mod defaults;
pub mod judges;
pub mod layers;
pub mod mask_encoder;
pub mod preview;
pub mod text_encoder;
pub mod tokenizer;
pub mod unet;

/// The device inference runs on: the GPU when built with the `cuda` or
/// `metal` feature, else the CPU.
pub fn device() -> candle_core::Result<candle_core::Device> {
    #[cfg(feature = "cuda")]
    return candle_core::Device::new_cuda(0);
    #[cfg(all(feature = "metal", not(feature = "cuda")))]
    return candle_core::Device::new_metal(0);
    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    Ok(candle_core::Device::Cpu)
}
