//! The forward process: its noise schedule (betas and their cumulative
//! products) and the noising of clean latents to random timesteps.

use candle_core::Tensor;
use rand::Rng;
use serde::Deserialize;
use thiserror::Error;

use super::parameterization::Levels;

#[derive(Debug, Error, PartialEq)]
pub enum ScheduleError {
    #[error("the noise schedule needs at least 2 timesteps, the config gives {0}")]
    TooFewTimesteps(usize),
    #[error("linear_start {start} and linear_end {end} must satisfy 0 < start <= end < 1; check the model config")]
    BadRange { start: f64, end: f64 },
}

/// The schedule's settings among the `params` of an original LDM YAML config
/// (other keys are ignored); defaults are LDM's.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ScheduleConfig {
    #[serde(default = "default_linear_start")]
    pub linear_start: f64,
    #[serde(default = "default_linear_end")]
    pub linear_end: f64,
    #[serde(default = "default_timesteps")]
    pub timesteps: usize,
}

fn default_linear_start() -> f64 {
    1e-4
}

fn default_linear_end() -> f64 {
    2e-2
}

fn default_timesteps() -> usize {
    1000
}

/// LDM's "linear" schedule, kept in f64 as the original computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// betas = linspace(sqrt(start), sqrt(end), timesteps)^2; alphas_cumprod = cumprod(1 - betas).
    pub fn linear(linear_start: f64, linear_end: f64, timesteps: usize) -> Result<Self, ScheduleError> {
        if timesteps < 2 {
            return Err(ScheduleError::TooFewTimesteps(timesteps));
        }
        if !(0.0 < linear_start && linear_start <= linear_end && linear_end < 1.0) {
            return Err(ScheduleError::BadRange { start: linear_start, end: linear_end });
        }
        let betas: Vec<f64> =
            linspace(linear_start.sqrt(), linear_end.sqrt(), timesteps).into_iter().map(|b| b * b).collect();
        let alphas_cumprod = betas
            .iter()
            .scan(1.0, |acc, beta| {
                *acc *= 1.0 - beta;
                Some(*acc)
            })
            .collect();
        Ok(Self { betas, alphas_cumprod })
    }

    pub fn from_config(config: &ScheduleConfig) -> Result<Self, ScheduleError> {
        Self::linear(config.linear_start, config.linear_end, config.timesteps)
    }

    /// Number of diffusion timesteps T (t runs over 0..T).
    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// alpha-bar_t: the fraction of the signal's variance left at timestep t.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// Draws a timestep per item uniformly from 0..T and noises `z0` to it:
    /// x_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps.
    pub fn noised(&self, z0: &Tensor, rng: &mut impl Rng) -> candle_core::Result<Noised> {
        let batch = z0.dim(0)?;
        let ts: Vec<usize> = (0..batch).map(|_| rng.random_range(0..self.alphas_cumprod.len())).collect();
        let levels = Levels::new(ts.iter().map(|&t| self.alphas_cumprod[t]).collect(), z0.device())?;
        let eps = gaussian_like(z0, rng)?;
        let x_t = (z0.broadcast_mul(&levels.signal)? + eps.broadcast_mul(&levels.noise)?)?;
        let t = Tensor::from_vec(ts.iter().map(|&t| t as f32).collect::<Vec<_>>(), batch, z0.device())?;
        Ok(Noised { x_t, t, eps, levels })
    }
}

/// A training batch noised by [`NoiseSchedule::noised`].
pub struct Noised {
    pub x_t: Tensor,
    /// Each item's timestep, as the UNet takes it.
    pub t: Tensor,
    /// The noise that was added.
    pub eps: Tensor,
    pub levels: Levels,
}

/// Standard normal noise shaped like `x`, drawn from `rng` (so a resumed run draws the same).
pub fn gaussian_like(x: &Tensor, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..x.elem_count()).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)).collect();
    Tensor::from_vec(values, x.shape(), x.device())
}

/// torch.linspace's rule: stepping up from `start` for the first half and down
/// from `end` for the second, so both ends are exact.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    let step = (end - start) / (n - 1) as f64;
    let half = n / 2;
    (0..n).map(|i| if i < half { start + step * i as f64 } else { end - step * (n - 1 - i) as f64 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_schedule_ends_and_cumprod() {
        let s = NoiseSchedule::linear(0.0015, 0.0195, 1000).unwrap();
        assert_eq!(s.num_timesteps(), 1000);
        assert!((s.betas()[0] - 0.0015).abs() < 1e-15);
        assert!((s.betas()[999] - 0.0195).abs() < 1e-15);
        assert!((s.alphas_cumprod()[0] - 0.9985).abs() < 1e-15);
        assert!((s.alphas_cumprod()[1] - 0.9985 * (1.0 - s.betas()[1])).abs() < 1e-15);
        assert!(s.alphas_cumprod().windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn config_reads_yaml_params() {
        let cfg: ScheduleConfig =
            serde_yaml::from_str("linear_start: 0.0015\nlinear_end: 0.0195\ntimesteps: 10\nimage_size: 64\n").unwrap();
        assert_eq!(NoiseSchedule::from_config(&cfg).unwrap().num_timesteps(), 10);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(NoiseSchedule::linear(0.1, 0.01, 1000), Err(ScheduleError::BadRange { start: 0.1, end: 0.01 }));
        assert_eq!(NoiseSchedule::linear(0.001, 0.01, 1), Err(ScheduleError::TooFewTimesteps(1)));
    }
}
