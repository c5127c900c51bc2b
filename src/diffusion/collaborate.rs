//! Influence functions and the ways two noise predictions are combined.

use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

use super::modality::PerModality;

/// How the mask-driven and text-driven predictions are combined at each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CombineMode {
    /// Dynamic diffusers' influence functions with the sampler's post-processing
    /// (mask scale and cosine decay), as the original generation script uses.
    #[default]
    Collaborative,
    /// Plain per-pixel softmax of the two diffuser maps, as in training.
    Softmax,
    /// The plain average of both predictions (Composable Diffusion, the paper's baseline).
    Composable,
    /// The mask-driven model alone.
    Mask,
    /// The text-driven model alone.
    Text,
    /// Ablation: each step's collaborative influence functions replaced by
    /// their spatial means (how much each model counts, not where).
    NoSpatial,
    /// Ablation: one collaborative influence function at every step, pinned
    /// from a collaborative run (the evaluation pins its step nearest t = 500).
    #[value(skip)]
    NoTemporal,
}

impl CombineMode {
    /// Whether this mode needs the dynamic diffusers' maps at every step.
    pub fn uses_diffusers(self) -> bool {
        matches!(self, Self::Collaborative | Self::Softmax | Self::NoSpatial)
    }
}

/// The sampler's post-processing of the softmax influence functions, which the
/// original applies at inference only (training uses the plain softmax).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostProcess {
    /// Multiplies the mask model's weight before renormalising (None: no scaling).
    pub mask_scale: Option<f64>,
    /// Fades the mask model's weight out as t falls, so the text model shapes the details.
    pub cosine_decay: bool,
}

impl Default for PostProcess {
    /// The original generation script's settings.
    fn default() -> Self {
        Self { mask_scale: Some(2.0), cosine_decay: true }
    }
}

/// The original's decay counts time in thousandths whatever the schedule's length.
const DECAY_TIMESTEPS: f32 = 1000.0;

impl PostProcess {
    /// The factor the mask weight is multiplied by at timestep t:
    /// (cos((1 - t/1000) pi) + 1) / 2, from 1 at t = 1000 to 0 at t = 0.
    /// Computed in f32 as the original does (torch tensors): near t = 0 the
    /// result is a small difference of numbers near 1, so f64 would differ.
    pub fn decay(&self, t: usize) -> f64 {
        if self.cosine_decay {
            let angle = (1.0 - t as f32 / DECAY_TIMESTEPS) * std::f32::consts::PI;
            ((angle.cos() + 1.0) / 2.0) as f64
        } else {
            1.0
        }
    }

    /// Post-processes the softmax weight of the mask model at timestep t:
    /// w_m = decay(t) w_m, w_x = 1 - w_m, w_m = scale w_m, both divided by their sum.
    pub fn apply(&self, w_mask: &Tensor, t: usize) -> Result<(Tensor, Tensor)> {
        let w_mask = (w_mask * self.decay(t))?;
        let w_text = (1.0 - &w_mask)?;
        let Some(scale) = self.mask_scale else {
            return Ok((w_mask, w_text));
        };
        let w_mask = (w_mask * scale)?;
        let sum = (&w_mask + &w_text)?;
        Ok((w_mask.div(&sum)?, w_text.div(&sum)?))
    }
}

/// Where a step's influence functions come from.
#[derive(Debug, Clone, Copy)]
pub enum Influence<'a> {
    /// The dynamic diffusers' raw one-channel maps at this step, B x 1 x h x w
    /// ([`CombineMode::uses_diffusers`]).
    Diffusers(PerModality<&'a Tensor>),
    /// The mask model's influence pinned for the whole run ([`CombineMode::NoTemporal`]).
    Pinned(&'a Tensor),
    /// Nothing learned: the modes with fixed weights.
    Fixed,
}

/// One step's combined noise prediction and the influence functions behind it
/// (B x C x h x w and B x 1 x h x w).
#[derive(Debug, Clone)]
pub struct Combination {
    pub eps: Tensor,
    pub w_mask: Tensor,
    pub w_text: Tensor,
}

impl Combination {
    /// eps = w_mask * eps_mask + w_text * eps_text, per pixel; the weights
    /// broadcast (a 1 x 1 x h x w map serves the whole batch).
    pub fn weighted(eps_mask: &Tensor, eps_text: &Tensor, w_mask: Tensor, w_text: Tensor) -> Result<Self> {
        let eps = (eps_mask.broadcast_mul(&w_mask)? + eps_text.broadcast_mul(&w_text)?)?;
        Ok(Self { eps, w_mask, w_text })
    }
}

/// Combines the two models' noise predictions at timestep t.
///
/// The modes that use the dynamic diffusers need their maps
/// ([`Influence::Diffusers`]), the no-temporal ablation its pinned influence;
/// the others ignore `influence`.
pub fn combine(
    eps_mask: &Tensor,
    eps_text: &Tensor,
    influence: Influence,
    t: usize,
    mode: CombineMode,
    post: &PostProcess,
) -> Result<Combination> {
    let (w_mask, w_text) = match (mode, influence) {
        (CombineMode::Collaborative, Influence::Diffusers(maps)) => post.apply(&softmax_mask_weight(maps)?, t)?,
        (CombineMode::Softmax, Influence::Diffusers(maps)) => complemented(softmax_mask_weight(maps)?)?,
        (CombineMode::NoSpatial, Influence::Diffusers(maps)) => {
            complemented(spatial_mean(&post.apply(&softmax_mask_weight(maps)?, t)?.0)?)?
        }
        (CombineMode::NoTemporal, Influence::Pinned(w_mask)) => complemented(w_mask.clone())?,
        (CombineMode::Collaborative | CombineMode::Softmax | CombineMode::NoSpatial, _) => {
            candle_core::bail!("the {mode:?} combination needs the dynamic diffusers' influence maps")
        }
        (CombineMode::NoTemporal, _) => {
            candle_core::bail!("the no-temporal ablation needs an influence function pinned from a collaborative run")
        }
        (CombineMode::Composable, _) => constant_weights(eps_mask, 0.5, 0.5)?,
        (CombineMode::Mask, _) => constant_weights(eps_mask, 1.0, 0.0)?,
        (CombineMode::Text, _) => constant_weights(eps_mask, 0.0, 1.0)?,
    };
    Combination::weighted(eps_mask, eps_text, w_mask, w_text)
}

/// A mask influence and the text influence 1 - w_mask.
fn complemented(w_mask: Tensor) -> Result<(Tensor, Tensor)> {
    let w_text = (1.0 - &w_mask)?;
    Ok((w_mask, w_text))
}

/// The mask model's share of a per-pixel softmax over [d_mask, d_text].
fn softmax_mask_weight(maps: PerModality<&Tensor>) -> Result<Tensor> {
    // The differentiable softmax: training backpropagates through it into the diffusers.
    let both = Tensor::cat(&[maps.mask, maps.text], 1)?;
    candle_nn::ops::softmax(&both, 1)?.narrow(1, 0, 1)
}

/// Weights that are the same at every pixel, shaped B x 1 x h x w like `eps`'s batch and size.
fn constant_weights(eps: &Tensor, w_mask: f64, w_text: f64) -> Result<(Tensor, Tensor)> {
    let (b, _, h, w) = eps.dims4()?;
    let ones = Tensor::ones((b, 1, h, w), eps.dtype(), eps.device())?;
    Ok(((&ones * w_mask)?, (ones * w_text)?))
}

/// Each item's influence map replaced by its spatial mean (same shape): the
/// ablation that keeps how much each model counts but not where.
fn spatial_mean(w: &Tensor) -> Result<Tensor> {
    w.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?.broadcast_as(w.shape())?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn full(value: f32, shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::full(value, shape, &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn assert_all_close(t: &Tensor, want: f32) {
        for v in values(t) {
            assert!((v - want).abs() < 1e-6, "{v} != {want}");
        }
    }

    #[test]
    fn post_processing_at_known_timesteps() {
        // Equal diffuser maps give softmax weights 1/2; then at t = 1000 no decay
        // (mask weight 1/2 * 2 against 1/2), at t = 500 half (1/4 * 2 against 3/4),
        // at t = 0 the text model alone.
        let post = PostProcess::default();
        let half = full(0.5, (1, 1, 2, 2));
        for (t, want) in [(1000, 2.0 / 3.0), (500, 0.4), (0, 0.0)] {
            let (w_mask, w_text) = post.apply(&half, t).unwrap();
            assert_all_close(&w_mask, want);
            assert_all_close(&w_text, 1.0 - want);
        }
        let plain = PostProcess { mask_scale: None, cosine_decay: false };
        assert_all_close(&plain.apply(&half, 500).unwrap().0, 0.5);
    }

    #[test]
    fn softmax_mode_weights_are_the_plain_softmax() {
        let d_mask = full(1.0, (2, 1, 2, 2));
        let d_text = full(0.0, (2, 1, 2, 2));
        let (eps_mask, eps_text) = (full(1.0, (2, 3, 2, 2)), full(0.0, (2, 3, 2, 2)));
        let maps = Influence::Diffusers(PerModality { mask: &d_mask, text: &d_text });
        let c = combine(&eps_mask, &eps_text, maps, 501, CombineMode::Softmax, &PostProcess::default()).unwrap();
        let w = 1.0 / (1.0 + (-1.0f32).exp());
        assert_all_close(&c.w_mask, w);
        assert_all_close(&c.w_text, 1.0 - w);
        assert_all_close(&c.eps, w);
        assert_eq!(c.eps.dims(), &[2, 3, 2, 2]);
    }

    #[test]
    fn fixed_modes_need_no_diffusers() {
        let (eps_mask, eps_text) = (full(2.0, (1, 3, 2, 2)), full(4.0, (1, 3, 2, 2)));
        let post = PostProcess::default();
        for (mode, want) in [(CombineMode::Composable, 3.0), (CombineMode::Mask, 2.0), (CombineMode::Text, 4.0)] {
            assert!(!mode.uses_diffusers());
            assert_all_close(&combine(&eps_mask, &eps_text, Influence::Fixed, 981, mode, &post).unwrap().eps, want);
        }
        for mode in [CombineMode::Collaborative, CombineMode::NoSpatial, CombineMode::NoTemporal] {
            assert!(combine(&eps_mask, &eps_text, Influence::Fixed, 981, mode, &post).is_err());
        }
    }

    #[test]
    fn spatial_mean_keeps_the_share_not_the_place() {
        let w = Tensor::new(&[0.0f32, 1.0, 0.25, 0.75, 1.0, 1.0, 1.0, 0.0], &Device::Cpu).unwrap().reshape((2, 1, 2, 2)).unwrap();
        assert_eq!(values(&spatial_mean(&w).unwrap()), vec![0.5, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75]);
        let (eps_mask, eps_text) = (full(1.0, (2, 3, 2, 2)), full(0.0, (2, 3, 2, 2)));
        let pinned = w.narrow(0, 0, 1).unwrap();
        let c = combine(&eps_mask, &eps_text, Influence::Pinned(&pinned), 981, CombineMode::NoTemporal, &PostProcess::default()).unwrap();
        assert_eq!(c.eps.dims(), &[2, 3, 2, 2]);
        assert_eq!(values(&c.eps.get(1).unwrap().get(2).unwrap()), vec![0.0, 1.0, 0.25, 0.75]);
        // No spatial: the collaborative influence, averaged over each item.
        let d_text = full(0.0, (2, 1, 2, 2));
        let maps = Influence::Diffusers(PerModality { mask: &w, text: &d_text });
        let post = PostProcess::default();
        let collaborative = combine(&eps_mask, &eps_text, maps, 700, CombineMode::Collaborative, &post).unwrap();
        let no_spatial = combine(&eps_mask, &eps_text, maps, 700, CombineMode::NoSpatial, &post).unwrap();
        assert_eq!(values(&no_spatial.w_mask), values(&spatial_mean(&collaborative.w_mask).unwrap()));
        assert_eq!(values(&no_spatial.w_text), values(&(1.0 - &no_spatial.w_mask).unwrap()));
    }
}
