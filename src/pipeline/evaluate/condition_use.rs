//! How much each latent diffusion model listens to its condition: its noise
//! prediction error on held-out photos noised to t, given the photo's own
//! condition and given another held-out sample's. A model that ignores its
//! condition errs the same with both, and then no weighting of the two models
//! can add what that model never learned.

use candle_core::{DType, Tensor};
use serde::Serialize;

use super::{chunk_contexts, face_targets};
use crate::data::faces::FaceSet;
use crate::diffusion::ddim::{renoised, NoiseSource};
use crate::model::collaborative::{side_by_side, CollaborativeModel, Contexts, ModelError};

/// The timesteps measured: from nearly clean to nearly pure noise.
const TIMESTEPS: [usize; 6] = [50, 200, 400, 600, 800, 950];

/// Mean squared error of the predicted noise at one timestep, per model, with
/// the sample's own condition and with another sample's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConditionUse {
    pub t: usize,
    pub mask_own: f64,
    pub mask_swapped: f64,
    pub text_own: f64,
    pub text_swapped: f64,
}

impl ConditionUse {
    /// How much lower the error is with the own condition, as a share of the swapped error.
    pub fn gains(&self) -> (f64, f64) {
        let gain = |own: f64, swapped: f64| if swapped > 0.0 { 1.0 - own / swapped } else { 0.0 };
        (gain(self.mask_own, self.mask_swapped), gain(self.text_own, self.text_swapped))
    }
}

/// Measures every timestep on `faces` in batches of `batch`; sample i's
/// condition is swapped with sample (i + n/2) mod n's. The noise is seeded from
/// `seed`, so equal seeds give equal figures.
pub fn measure(model: &CollaborativeModel, faces: &FaceSet, batch: usize, seed: u64) -> Result<Vec<ConditionUse>, ModelError> {
    let n = faces.len();
    let indices: Vec<usize> = (0..n).collect();
    let timesteps: Vec<usize> = TIMESTEPS.into_iter().filter(|&t| t < model.schedule.num_timesteps()).collect();
    let mut sums = vec![[0f64; 4]; timesteps.len()];
    for chunk in indices.chunks(batch.max(1)) {
        let swapped: Vec<usize> = chunk.iter().map(|&i| (i + n / 2) % n).collect();
        let own = chunk_contexts(model, &face_targets(faces, chunk))?;
        let other = chunk_contexts(model, &face_targets(faces, &swapped))?;
        let z0 = (model.vae.encode(&faces.photos(chunk, &model.device)?)?.mean * model.config.diffusion.scale_factor)?;
        for (k, &t) in timesteps.iter().enumerate() {
            let a = model.schedule.alphas_cumprod()[t];
            let seeds = chunk.iter().map(|&i| seed.wrapping_add((i * TIMESTEPS.len() + k) as u64));
            let eps = NoiseSource::seeded(seeds).start_latent(z0.dims(), &model.device)?;
            let x_t = renoised(&z0, &eps, a, 0.0)?;
            let t_batch = Tensor::full(t as f32, chunk.len(), &model.device)?;
            let error_sum = |contexts: &Contexts| -> Result<[f64; 2], ModelError> {
                let outputs = side_by_side(model.unets.as_ref(), &x_t, &t_batch, contexts)?;
                let eps_hat = outputs.zip(model.parameterizations()).map(|(out, p)| p.eps_at(&out, &x_t, a)).transpose()?;
                let sum = |p: Tensor| -> candle_core::Result<f64> {
                    let per_item = (p - &eps)?.sqr()?.flatten_from(1)?.mean(1)?;
                    per_item.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()
                };
                Ok([sum(eps_hat.mask)?, sum(eps_hat.text)?])
            };
            let ([mask_own, text_own], [mask_swapped, text_swapped]) = (error_sum(&own)?, error_sum(&other)?);
            for (acc, v) in sums[k].iter_mut().zip([mask_own, mask_swapped, text_own, text_swapped]) {
                *acc += v;
            }
        }
    }
    let n = n.max(1) as f64;
    Ok(timesteps
        .iter()
        .zip(sums)
        .map(|(&t, s)| ConditionUse { t, mask_own: s[0] / n, mask_swapped: s[1] / n, text_own: s[2] / n, text_swapped: s[3] / n })
        .collect())
}
