//! The mask condition encoder (`SegMaskEncoder`): a face mask to 19 context
//! tokens, one per class, for the mask-driven UNet to cross-attend to.
//!
//! Each class token is that class's indicator image (the mask shrunk with
//! nearest neighbour, flattened row-major) through one shared Linear layer.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{linear, Linear};
use serde::Deserialize;

use crate::data::mask::{Mask, NUM_CLASSES};

/// The `params` of `SegMaskEncoder` in the original YAML (`cond_stage_config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaskEncoderConfig {
    /// Pixels of the shrunken mask: a square number (1024 = 32 x 32).
    #[serde(default = "default_mask_embed_dim")]
    pub mask_embed_dim: usize,
    pub context_dim: usize,
}

fn default_mask_embed_dim() -> usize {
    1024
}

impl MaskEncoderConfig {
    /// Side of the square the mask is shrunk to, or an error when
    /// `mask_embed_dim` is not a square number.
    pub fn mask_side(&self) -> Result<usize> {
        square_side(self.mask_embed_dim)
    }
}

fn square_side(pixels: usize) -> Result<usize> {
    let side = (pixels as f64).sqrt().round() as usize;
    if side * side != pixels || side == 0 {
        candle_core::bail!("mask_embed_dim {pixels} is not a square number of pixels; check the model config");
    }
    Ok(side)
}

/// `SegMaskEncoder`: the Linear layer that maps each class indicator to a
/// context vector (the original's `PassSegMaskEncoder` stage has no weights).
pub struct MaskEncoder {
    linear: Linear,
    config: MaskEncoderConfig,
}

impl MaskEncoder {
    /// `vb` at the encoder's prefix: `cond_stage_model` in a mask-only
    /// checkpoint, `cond_stage_model.seg_mask_cond_stage_model` in a composed one.
    pub fn new(vb: VarBuilder, config: &MaskEncoderConfig) -> Result<Self> {
        config.mask_side()?;
        Ok(Self { linear: linear(config.mask_embed_dim, config.context_dim, vb.pp("linear"))?, config: config.clone() })
    }

    pub fn config(&self) -> &MaskEncoderConfig {
        &self.config
    }

    /// The encoder's input for `mask`: 1 x 19 x `mask_embed_dim`, f32.
    ///
    /// The mask is shrunk to a sqrt(`mask_embed_dim`) square with PIL's
    /// nearest-neighbour rule, flattened row-major and one-hot encoded over
    /// the 19 classes; row c is the indicator image of class c.
    pub fn one_hot(mask: &Mask, mask_embed_dim: usize, device: &Device) -> Result<Tensor> {
        let side = square_side(mask_embed_dim)?;
        let small = mask.resize_nearest(side, side);
        let mut onehot = vec![0f32; NUM_CLASSES * mask_embed_dim];
        for (pixel, &class) in small.classes().iter().enumerate() {
            onehot[class as usize * mask_embed_dim + pixel] = 1.0;
        }
        Tensor::from_vec(onehot, (1, NUM_CLASSES, mask_embed_dim), device)
    }

    /// The null mask's input, which classifier-free guidance contrasts with:
    /// no class anywhere (all zeros), which no real mask's one-hot is.
    pub fn null_one_hot(mask_embed_dim: usize, device: &Device) -> Result<Tensor> {
        Tensor::zeros((1, NUM_CLASSES, mask_embed_dim), candle_core::DType::F32, device)
    }

    /// One-hot masks (B x 19 x `mask_embed_dim`) to context tokens (B x 19 x `context_dim`).
    pub fn forward(&self, onehot: &Tensor) -> Result<Tensor> {
        self.linear.forward(onehot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mask::class;

    #[test]
    fn one_hot_marks_each_pixel_in_its_class_row() {
        // A 4 x 4 mask, left half skin, right half hair, shrunk to 2 x 2.
        let classes = (0..16).map(|i| if i % 4 < 2 { class::SKIN } else { class::HAIR }).collect();
        let mask = Mask::from_classes(4, 4, classes).unwrap();
        let onehot = MaskEncoder::one_hot(&mask, 4, &Device::Cpu).unwrap();
        assert_eq!(onehot.dims(), &[1, NUM_CLASSES, 4]);
        let rows = onehot.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(rows[class::SKIN as usize], vec![1.0, 0.0, 1.0, 0.0]);
        assert_eq!(rows[class::HAIR as usize], vec![0.0, 1.0, 0.0, 1.0]);
        let total: f32 = rows.iter().flatten().sum();
        assert_eq!(total, 4.0);
    }

    #[test]
    fn non_square_embed_dim_is_refused() {
        let mask = Mask::filled(8, 8, class::BACKGROUND);
        assert!(MaskEncoder::one_hot(&mask, 1000, &Device::Cpu).is_err());
    }
}
