//! The adversarial half of the original autoencoder loss
//! (`LPIPSWithDiscriminator`): a PatchGAN discriminator (pix2pix's
//! `NLayerDiscriminator`, three strided layers) judged by the hinge loss, and
//! the adaptive weight that scales the generator's adversarial term so its
//! gradient at the decoder's last layer is as large as the reconstruction's.

use candle_core::{Module, Result, Tensor, Var};
use candle_nn::VarBuilder;

use crate::model::layers::{group_norm, Conv2d, GroupNorm};

/// Width of the first layer (the original's 64, halved for the 2-core budget).
const WIDTH: usize = 32;
/// The original's `disc_weight`.
pub const DISC_WEIGHT: f64 = 0.5;

/// Image -> a map of real/fake logits, one per overlapping patch.
pub struct PatchDiscriminator {
    first: Conv2d,
    /// 4x4 convolutions, then a norm over each image's whole feature map
    /// (one group: the original's batch norm would tie each image's logits
    /// to its batch, and one group per channel would hide a tinted image's
    /// colour from every later layer) and leaky ReLU.
    layers: Vec<(Conv2d, GroupNorm)>,
    last: Conv2d,
}

impl PatchDiscriminator {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let first = Conv2d::new(vb.pp("first"), 3, WIDTH, 4, 2, 1)?;
        let widths = [(WIDTH, 2 * WIDTH, 2), (2 * WIDTH, 4 * WIDTH, 2), (4 * WIDTH, 8 * WIDTH, 1)];
        let layers = widths
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, stride))| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok((Conv2d::new(vb.pp("conv"), cin, cout, 4, stride, 1)?, group_norm(vb.pp("norm"), cout, 1, 1e-5)?))
            })
            .collect::<Result<_>>()?;
        let last = Conv2d::new(vb.pp("last"), 8 * WIDTH, 1, 4, 1, 1)?;
        Ok(Self { first, layers, last })
    }

    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = leaky_relu(&self.first.forward(x)?)?;
        for (conv, norm) in &self.layers {
            h = leaky_relu(&norm.forward(&conv.forward(&h)?)?)?;
        }
        self.last.forward(&h)
    }

    /// The discriminator's hinge loss on real photos and (detached) reconstructions.
    pub fn hinge_loss(&self, real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        let real = (1.0 - self.logits(real)?)?.relu()?.mean_all()?;
        let fake = (self.logits(&fake.detach())? + 1.0)?.relu()?.mean_all()?;
        (real + fake)? * 0.5
    }

    /// The generator's adversarial loss: minus the mean logit of its images.
    pub fn generator_loss(&self, fake: &Tensor) -> Result<Tensor> {
        self.logits(fake)?.mean_all()?.neg()
    }
}

fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    x.maximum(&(x * 0.2)?)
}

/// `DISC_WEIGHT` x |grad of `reconstruction` at `last_layer`| / |grad of `adversarial` there|,
/// the ratio clamped to [0, `max_ratio`] (the original's 1e4). Both losses must depend on
/// `last_layer` through a graph of their own (the caller rebuilds the last
/// layer on detached inputs, so these backward passes stay small).
pub fn adaptive_weight(reconstruction: &Tensor, adversarial: &Tensor, last_layer: &Var, max_ratio: f64) -> Result<f64> {
    let norm = |loss: &Tensor| -> Result<f64> {
        let grads = loss.backward()?;
        let g = grads
            .get(last_layer.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("the loss does not reach the decoder's last layer".into()))?;
        Ok(g.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt() as f64)
    };
    let ratio = norm(reconstruction)? / (norm(adversarial)? + 1e-4);
    Ok(ratio.clamp(0.0, max_ratio) * DISC_WEIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn patch_logits_cover_the_image_and_hinge_loss_starts_near_one() {
        let device = Device::Cpu;
        let vars = VarMap::new();
        let d = PatchDiscriminator::new(VarBuilder::from_varmap(&vars, DType::F32, &device)).unwrap();
        let x = Tensor::randn(0f32, 0.5, (2, 3, 64, 64), &device).unwrap();
        let logits = d.logits(&x).unwrap();
        assert_eq!(logits.dims(), &[2, 1, 6, 6]);
        let loss = d.hinge_loss(&x, &x).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - 1.0).abs() < 0.5, "hinge loss of an untrained discriminator {loss}");
    }

    #[test]
    fn adaptive_weight_balances_the_gradients_at_the_last_layer() {
        let device = Device::Cpu;
        let w = Var::new(&[1f32, 2.0], &device).unwrap();
        // d/dw of sum(3w) has norm 3 sqrt(2); of sum(w) norm sqrt(2): the ratio is 3.
        let big = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap();
        let small = w.as_tensor().sum_all().unwrap();
        let weight = adaptive_weight(&big, &small, &w, 1e4).unwrap();
        assert!((weight - 3.0 * DISC_WEIGHT).abs() < 1e-3, "{weight}");
        let capped = adaptive_weight(&big, &small, &w, 1.0).unwrap();
        assert!((capped - DISC_WEIGHT).abs() < 1e-6, "{capped}");
    }
}
