//! The part of the noise that a narrow UNet cannot predict: each latent
//! channel's spatial mean.
//!
//! With `model_channels` 32, every GroupNorm(32) of the UNet normalises each
//! channel on its own, so the network never sees how far a channel's mean
//! sits from zero, and the output layer's norm removes whatever mean it
//! carried. Its predicted noise then misses the mean of the true noise, which
//! in a 16 x 16 latent is N(0, 1/256) per channel. Near t = 1000 the predicted
//! x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) divides that miss by sqrt(a) ~ 0.012:
//! channel means several standard deviations off, which the sampler turns
//! into colour blobs and textures for about half the start noises.
//!
//! The means are three numbers per image, and given the data's distribution
//! of them, N(mu, S) over the training latents, their best estimate from the
//! noisy latent's own means has a closed form. [`ChannelMeanPrior::complete`]
//! puts that estimate in place of the network's. Near t = 0 it reduces to the
//! means x_t already shows, near t = 1000 to the data's average; the released
//! models (320 channels, 10 per norm group, 64 x 64 latents) need none and
//! their configs carry no prior.

use candle_core::{DType, Result, Tensor};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// The distribution of a latent's per-channel spatial means over the
/// training set, in the diffusion's scale: mean and covariance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelMeanPrior {
    pub mean: Vec<f64>,
    pub covariance: Vec<Vec<f64>>,
}

impl ChannelMeanPrior {
    /// Fits the prior to latents shaped B x C x H x W (B at least 2).
    pub fn fit(latents: &Tensor) -> Result<Self> {
        let means = latents.to_dtype(DType::F64)?.mean((2, 3))?.to_vec2::<f64>()?;
        let (n, c) = (means.len(), means.first().map_or(0, Vec::len));
        if n < 2 {
            candle_core::bail!("the channel-mean prior needs at least 2 latents, got {n}");
        }
        let rows = DMatrix::from_fn(n, c, |i, j| means[i][j]);
        let mean = rows.row_mean().transpose();
        let centred = DMatrix::from_fn(n, c, |i, j| rows[(i, j)] - mean[j]);
        let covariance = centred.transpose() * &centred / (n - 1) as f64;
        Ok(Self {
            mean: mean.iter().copied().collect(),
            covariance: (0..c).map(|i| (0..c).map(|j| covariance[(i, j)]).collect()).collect(),
        })
    }

    /// Checks the shapes and that the covariance is symmetric positive semi-definite.
    pub fn validate(&self, channels: usize) -> std::result::Result<(), String> {
        let c = self.mean.len();
        if c != channels || self.covariance.len() != c || self.covariance.iter().any(|r| r.len() != c) {
            return Err(format!("channel_mean_prior must give {channels} means and a {channels} x {channels} covariance"));
        }
        let s = self.covariance_matrix();
        if (&s - s.transpose()).amax() > 1e-9 * s.amax().max(1.0) || s.symmetric_eigenvalues().min() < -1e-12 {
            return Err("channel_mean_prior's covariance is not symmetric positive semi-definite".into());
        }
        Ok(())
    }

    fn covariance_matrix(&self) -> DMatrix<f64> {
        let c = self.mean.len();
        DMatrix::from_fn(c, c, |i, j| self.covariance[i][j])
    }

    /// `eps` (B x C x H x W, predicted at a level with alpha-bar `alpha_bar`
    /// from `x_t`) with each channel's spatial mean replaced by its best
    /// estimate: eps_mean = (x_mean - sqrt(a) E[z_mean | x_mean]) / sqrt(1 - a),
    /// where x_mean = sqrt(a) z_mean + sqrt(1 - a) e_mean, e_mean ~ N(0, I / HW)
    /// and z_mean ~ N(mu, S), so E[z_mean | x_mean] = mu + G (x_mean - sqrt(a) mu)
    /// with G = sqrt(a) S (a S + (1 - a) / HW I)^-1.
    pub fn complete(&self, x_t: &Tensor, eps: &Tensor, alpha_bar: f64) -> Result<Tensor> {
        let (_, c, h, w) = x_t.dims4()?;
        if c != self.mean.len() {
            candle_core::bail!("the channel-mean prior has {} channels, the latent {c}", self.mean.len());
        }
        let (a, pixels) = (alpha_bar, (h * w) as f64);
        let s = self.covariance_matrix();
        let k = &s * a + DMatrix::identity(c, c) * ((1.0 - a) / pixels);
        let k_inv = k.try_inverse().ok_or_else(|| candle_core::Error::Msg("the channel-mean prior's covariance is singular".into()))?;
        let gain = &s * k_inv * a.sqrt();
        let mu = DVector::from_vec(self.mean.clone());
        // Row-vector form on the device: z_mean = x_mean G^T + (mu - sqrt(a) G mu)^T.
        let offset = &mu - &gain * &mu * a.sqrt();
        let device = x_t.device();
        // G^T row-major: entry (i, j) = G(j, i).
        let gain_t = Tensor::from_vec((0..c * c).map(|k| gain[(k % c, k / c)] as f32).collect::<Vec<_>>(), (c, c), device)?;
        let offset = Tensor::from_vec(offset.iter().map(|&v| v as f32).collect::<Vec<_>>(), (1, c), device)?;
        let x_mean = x_t.mean((2, 3))?;
        let z_mean = x_mean.matmul(&gain_t)?.broadcast_add(&offset)?;
        let eps_mean = ((&x_mean - (z_mean * a.sqrt())?)? / (1.0 - a).sqrt())?;
        let correction = (eps_mean - eps.mean((2, 3))?)?.unsqueeze(2)?.unsqueeze(3)?;
        eps.broadcast_add(&correction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn prior() -> ChannelMeanPrior {
        ChannelMeanPrior { mean: vec![-1.4, 0.05, -0.5], covariance: vec![vec![0.24, 0.22, -0.12], vec![0.22, 0.21, -0.12], vec![-0.12, -0.12, 0.11]] }
    }

    #[test]
    fn fit_recovers_mean_and_covariance() {
        // Two channels: means (1, -2) with the second channel twice the first's deviation.
        let devs = [-1.0f64, 0.5, 0.5, 0.0];
        let mut values = Vec::new();
        for d in devs {
            values.extend(std::iter::repeat_n((1.0 + d) as f32, 4));
            values.extend(std::iter::repeat_n((-2.0 + 2.0 * d) as f32, 4));
        }
        let latents = Tensor::from_vec(values, (4, 2, 2, 2), &Device::Cpu).unwrap();
        let p = ChannelMeanPrior::fit(&latents).unwrap();
        let var = devs.iter().map(|d| d * d).sum::<f64>() / 3.0;
        assert!((p.mean[0] - 1.0).abs() < 1e-6 && (p.mean[1] + 2.0).abs() < 1e-6, "{:?}", p.mean);
        for (got, want) in [(p.covariance[0][0], var), (p.covariance[0][1], 2.0 * var), (p.covariance[1][1], 4.0 * var)] {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!(p.validate(2).is_ok());
        assert!(p.validate(3).is_err());
    }

    /// The correction changes only the channel means, and sets them to the
    /// closed form: the prior's mean near pure noise, the latent's own near t = 0.
    #[test]
    fn complete_replaces_only_the_channel_means() {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 4), &device).unwrap();
        let eps = Tensor::randn(0f32, 1.0, (2, 3, 4, 4), &device).unwrap();
        for a in [1e-4, 0.3, 0.999] {
            let fixed = prior().complete(&x, &eps, a).unwrap();
            let centred = |t: &Tensor| t.broadcast_sub(&t.mean_keepdim((2, 3)).unwrap()).unwrap();
            let residual = (centred(&fixed) - centred(&eps)).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(residual < 1e-5, "a = {a}: the residual moved by {residual}");
            // The implied x0 means.
            let x0 = ((&x - (&fixed * (1.0 - a).sqrt()).unwrap()).unwrap() / a.sqrt()).unwrap();
            let x0_mean = x0.mean((2, 3)).unwrap().to_vec2::<f32>().unwrap();
            let x_mean = x.mean((2, 3)).unwrap().to_vec2::<f32>().unwrap();
            for (row, x_row) in x0_mean.iter().zip(&x_mean) {
                for ch in 0..3 {
                    let (got, prior_mean, own) = (row[ch] as f64, prior().mean[ch], x_row[ch] as f64 / a.sqrt());
                    if a < 1e-3 {
                        assert!((got - prior_mean).abs() < 0.05, "a = {a}: x0 mean {got}, prior {prior_mean}");
                    } else if a > 0.99 {
                        assert!((got - own).abs() < 0.05, "a = {a}: x0 mean {got}, own {own}");
                    }
                }
            }
        }
    }

    /// With uncorrelated channels each mean follows the scalar Gaussian posterior.
    #[test]
    fn complete_matches_the_scalar_posterior() {
        let device = Device::Cpu;
        let (mu, var) = ([0.5, -1.0], [0.2, 0.05]);
        let prior = ChannelMeanPrior { mean: mu.to_vec(), covariance: vec![vec![var[0], 0.0], vec![0.0, var[1]]] };
        let x = Tensor::randn(0f32, 1.0, (3, 2, 4, 4), &device).unwrap();
        let eps = Tensor::randn(0f32, 1.0, (3, 2, 4, 4), &device).unwrap();
        let a = 0.3f64;
        let fixed = prior.complete(&x, &eps, a).unwrap().mean((2, 3)).unwrap().to_vec2::<f32>().unwrap();
        let x_mean = x.mean((2, 3)).unwrap().to_vec2::<f32>().unwrap();
        for (row, x_row) in fixed.iter().zip(&x_mean) {
            for ch in 0..2 {
                let xm = x_row[ch] as f64;
                let z = mu[ch] + a.sqrt() * var[ch] / (a * var[ch] + (1.0 - a) / 16.0) * (xm - a.sqrt() * mu[ch]);
                let want = (xm - a.sqrt() * z) / (1.0 - a).sqrt();
                assert!((row[ch] as f64 - want).abs() < 1e-5, "channel {ch}: {} vs {want}", row[ch]);
            }
        }
    }

    #[test]
    fn complete_refuses_a_channel_mismatch() {
        let x = Tensor::zeros((1, 4, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(prior().complete(&x, &x, 0.5).is_err());
    }
}
