//! DDIM sampling (Song et al.), exactly as the original's sampler discretises it.
//!
//! Steps are counted in sampling order: step 0 is the noisiest (largest t).

use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use thiserror::Error;

use super::schedule::NoiseSchedule;

#[derive(Debug, Error, PartialEq)]
pub enum DdimError {
    #[error("DDIM needs between 1 and {max} steps for a {timesteps}-step schedule, got {steps}")]
    BadStepCount { steps: usize, max: usize, timesteps: usize },
    #[error("eta must be a finite number >= 0, got {0}")]
    BadEta(f64),
    #[error(
        "{steps} DDIM steps would end at timestep {timesteps}, one past the schedule's last (the original fails there too); \
         pick {} or {} steps",
        steps - 1,
        steps + 1
    )]
    PastTheEnd { steps: usize, timesteps: usize },
}

/// The DDIM sub-sequence of timesteps and its coefficients for S steps and a given eta.
#[derive(Debug, Clone, PartialEq)]
pub struct DdimSchedule {
    /// Ascending, as the original stores them: 1, 1 + c, 1 + 2c, ... with c = T / S.
    timesteps: Vec<usize>,
    alphas: Vec<f64>,
    alphas_prev: Vec<f64>,
    sigmas: Vec<f64>,
}

impl DdimSchedule {
    /// The original's "uniform" discretisation: c = T / S (integer division),
    /// timesteps = 0, c, 2c, ... below T, each plus one. Whenever c does not
    /// divide T this gives more than S steps (S = 7 gives 8), a quirk kept on
    /// purpose. a_prev of the last step is alpha-bar_0, not 1.
    pub fn new(schedule: &NoiseSchedule, steps: usize, eta: f64) -> std::result::Result<Self, DdimError> {
        let total = schedule.num_timesteps();
        let max = Self::max_steps(total);
        if steps == 0 || steps > max {
            return Err(DdimError::BadStepCount { steps, max, timesteps: total });
        }
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(DdimError::BadEta(eta));
        }
        let stride = total / steps;
        let timesteps: Vec<usize> = (0..total).step_by(stride).map(|t| t + 1).collect();
        // Where the stride divides T - 1 (S = 3, 9, 27, 37, 111 or 333 of 1000) the last step lands on T.
        if timesteps.last().is_some_and(|&t| t >= total) {
            return Err(DdimError::PastTheEnd { steps, timesteps: total });
        }
        // The original reads alpha-bar from a float32 buffer.
        let acp = |t: usize| schedule.alphas_cumprod()[t] as f32 as f64;
        let alphas: Vec<f64> = timesteps.iter().map(|&t| acp(t)).collect();
        let alphas_prev: Vec<f64> = std::iter::once(acp(0)).chain(alphas[..alphas.len() - 1].iter().copied()).collect();
        let sigmas = alphas
            .iter()
            .zip(&alphas_prev)
            .map(|(&a, &a_prev)| eta * ((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)).sqrt())
            .collect();
        Ok(Self { timesteps, alphas, alphas_prev, sigmas })
    }

    /// The most steps a schedule of `timesteps` allows: the last DDIM timestep,
    /// (S - 1) * (T / S) + 1, must stay below T, which needs a stride of at least 2.
    pub fn max_steps(timesteps: usize) -> usize {
        timesteps / 2
    }

    /// Number of denoising steps actually taken.
    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// The timesteps in ascending order (the UNet gets these raw values).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// alpha-bar at each timestep, ascending order.
    pub fn alphas(&self) -> &[f64] {
        &self.alphas
    }

    /// alpha-bar the step lands on, ascending order.
    pub fn alphas_prev(&self) -> &[f64] {
        &self.alphas_prev
    }

    /// Standard deviation of the noise each step adds, ascending order.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// The timestep of sampling step `step` (0 = the noisiest).
    pub fn timestep(&self, step: usize) -> usize {
        self.timesteps[self.index(step)]
    }

    /// Whether sampling step `step` adds noise (eta > 0).
    pub fn needs_noise(&self, step: usize) -> bool {
        self.sigmas[self.index(step)] > 0.0
    }

    fn index(&self, step: usize) -> usize {
        assert!(step < self.len(), "DDIM step {step} out of range 0..{}", self.len());
        self.len() - 1 - step
    }

    /// One DDIM update at sampling step `step`, from x_t and the predicted noise:
    /// returns (x_{t-1}, predicted x_0). `noise` (standard normal, shaped like
    /// x_t) is required when the step adds noise and ignored otherwise.
    pub fn step(&self, x_t: &Tensor, eps: &Tensor, step: usize, noise: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let i = self.index(step);
        let (a, a_prev, sigma) = (self.alphas[i], self.alphas_prev[i], self.sigmas[i]);
        let pred_x0 = predicted_x0(x_t, eps, a)?;
        let mut x_prev = renoised(&pred_x0, eps, a_prev, sigma)?;
        if sigma > 0.0 {
            let Some(noise) = noise else {
                candle_core::bail!("DDIM step {step} has sigma {sigma} > 0 and needs noise");
            };
            x_prev = (x_prev + (noise * sigma)?)?;
        }
        Ok((x_prev, pred_x0))
    }

    /// Sampling step `step` walked backwards, deterministically (DDIM
    /// inversion): from the level it lands on up to the level it starts from,
    /// the predicted x0 re-noised with the noise predicted at the lower level.
    /// Returns (x at the higher level, predicted x_0).
    pub fn invert_step(&self, x: &Tensor, eps: &Tensor, step: usize) -> Result<(Tensor, Tensor)> {
        let i = self.index(step);
        let pred_x0 = predicted_x0(x, eps, self.alphas_prev[i])?;
        Ok((renoised(&pred_x0, eps, self.alphas[i], 0.0)?, pred_x0))
    }

    /// [`Self::step`] drawing the step's noise from `source` when it needs any.
    pub fn step_from(&self, x_t: &Tensor, eps: &Tensor, step: usize, source: &mut NoiseSource) -> Result<(Tensor, Tensor)> {
        let noise = if self.needs_noise(step) { Some(source.step_noise(step, x_t.dims(), x_t.device())?) } else { None };
        self.step(x_t, eps, step, noise.as_ref())
    }
}

/// The x_0 that `x_t` at alpha-bar `alpha_bar` and the noise `eps` in it imply:
/// (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar).
pub fn predicted_x0(x_t: &Tensor, eps: &Tensor, alpha_bar: f64) -> Result<Tensor> {
    (x_t - (eps * (1.0 - alpha_bar).sqrt())?)? / alpha_bar.sqrt()
}

/// The DDIM update without its fresh noise: `pred_x0` taken to alpha-bar
/// `alpha_bar` along `eps`, leaving room for noise of standard deviation `sigma`:
/// sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar - sigma^2) eps. With sigma 0 it
/// is the forward process's x_t for a given x0 and noise.
pub fn renoised(pred_x0: &Tensor, eps: &Tensor, alpha_bar: f64, sigma: f64) -> Result<Tensor> {
    let towards_x_t = (eps * (1.0 - alpha_bar - sigma * sigma).sqrt())?;
    (pred_x0 * alpha_bar.sqrt())? + towards_x_t
}

/// Where the start latent x_T and each step's noise come from.
pub enum NoiseSource {
    /// One generator per batch item, so item k of a batch seeded s, s + 1, ...
    /// equals a single image seeded s + k.
    Seeded(Vec<StdRng>),
    /// Given tensors, to replay a recorded run: x_T and the noise of every
    /// step stacked in sampling order (steps x B x ...).
    Injected { x_t: Tensor, per_step: Tensor },
}

impl NoiseSource {
    pub fn seeded(seeds: impl IntoIterator<Item = u64>) -> Self {
        Self::Seeded(seeds.into_iter().map(StdRng::seed_from_u64).collect())
    }

    pub fn injected(x_t: Tensor, per_step: Tensor) -> Self {
        Self::Injected { x_t, per_step }
    }

    /// The start latent x_T, shaped `shape` (batch first).
    pub fn start_latent(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        match self {
            Self::Seeded(rngs) => gaussian(rngs, shape, device),
            Self::Injected { x_t, .. } => checked(x_t.clone(), shape, "start latent"),
        }
    }

    /// Standard normal noise for sampling step `step`, shaped `shape` (batch first).
    pub fn step_noise(&mut self, step: usize, shape: &[usize], device: &Device) -> Result<Tensor> {
        match self {
            Self::Seeded(rngs) => gaussian(rngs, shape, device),
            Self::Injected { per_step, .. } => {
                let steps = per_step.dim(0)?;
                if step >= steps {
                    candle_core::bail!("the injected noise holds {steps} steps, step {step} asked for noise");
                }
                checked(per_step.get(step)?, shape, "step noise")
            }
        }
    }
}

fn checked(tensor: Tensor, shape: &[usize], what: &str) -> Result<Tensor> {
    if tensor.dims() != shape {
        candle_core::bail!("the injected {what} is {:?}, the sampler needs {shape:?}", tensor.dims());
    }
    Ok(tensor)
}

fn gaussian(rngs: &mut [StdRng], shape: &[usize], device: &Device) -> Result<Tensor> {
    let Some((&batch, item_shape)) = shape.split_first() else {
        candle_core::bail!("noise needs a batch dimension, got shape {shape:?}");
    };
    if batch != rngs.len() {
        candle_core::bail!("noise for a batch of {batch} asked of {} seeds", rngs.len());
    }
    let per_item: usize = item_shape.iter().product();
    let values: Vec<f32> =
        rngs.iter_mut().flat_map(|rng| StandardNormal.sample_iter(rng).take(per_item).collect::<Vec<f32>>()).collect();
    Tensor::from_vec(values, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released() -> NoiseSchedule {
        NoiseSchedule::linear(0.0015, 0.0195, 1000).unwrap()
    }

    #[test]
    fn fifty_steps_run_from_981_down_to_1() {
        let ddim = DdimSchedule::new(&released(), 50, 1.0).unwrap();
        assert_eq!(ddim.len(), 50);
        assert_eq!((ddim.timestep(0), ddim.timestep(49)), (981, 1));
        assert_eq!(ddim.timesteps()[1], 21);
    }

    #[test]
    fn seven_steps_give_eight() {
        let ddim = DdimSchedule::new(&released(), 7, 0.0).unwrap();
        assert_eq!(ddim.timesteps(), &[1, 143, 285, 427, 569, 711, 853, 995]);
    }

    #[test]
    fn last_step_lands_on_alpha_bar_zero() {
        let s = released();
        let ddim = DdimSchedule::new(&s, 4, 1.0).unwrap();
        assert_eq!(ddim.alphas_prev()[0], s.alphas_cumprod()[0] as f32 as f64);
        assert_eq!(ddim.alphas_prev()[1], ddim.alphas()[0]);
    }

    #[test]
    fn eta_zero_has_no_noise_and_needs_none() {
        let ddim = DdimSchedule::new(&released(), 10, 0.0).unwrap();
        assert!(ddim.sigmas().iter().all(|&s| s == 0.0));
        let x = Tensor::ones((1, 3, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(ddim.step(&x, &x, 0, None).is_ok());
    }

    #[test]
    fn noisy_step_without_noise_is_an_error() {
        let ddim = DdimSchedule::new(&released(), 10, 1.0).unwrap();
        let x = Tensor::ones((1, 3, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(ddim.step(&x, &x, 0, None).is_err());
    }

    #[test]
    fn exact_eps_recovers_x0_and_eta_zero_step_is_deterministic_ddim() {
        // x_t built from a known x0 and eps: the step must return x0 exactly and
        // x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps.
        let s = released();
        let ddim = DdimSchedule::new(&s, 10, 0.0).unwrap();
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap();
        let eps = Tensor::new(&[1.0f32, 0.25, -0.5], &dev).unwrap();
        let (a, a_prev) = (ddim.alphas()[9], ddim.alphas_prev()[9]);
        let x_t = ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap();
        let (x_prev, pred_x0) = ddim.step(&x_t, &eps, 0, None).unwrap();
        let want = ((&x0 * a_prev.sqrt()).unwrap() + (&eps * (1.0 - a_prev).sqrt()).unwrap()).unwrap();
        let close = |u: &Tensor, v: &Tensor| {
            let d = (u - v).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "differs by {d}");
        };
        close(&pred_x0, &x0);
        close(&x_prev, &want);
    }

    #[test]
    fn bad_step_counts_and_eta_are_refused() {
        let s = released();
        assert!(matches!(DdimSchedule::new(&s, 0, 1.0), Err(DdimError::BadStepCount { .. })));
        assert!(matches!(DdimSchedule::new(&s, 501, 1.0), Err(DdimError::BadStepCount { .. })));
        assert_eq!(DdimSchedule::new(&s, 500, 1.0).unwrap().timesteps().last(), Some(&999));
        assert_eq!(DdimSchedule::new(&s, 10, -1.0), Err(DdimError::BadEta(-1.0)));
        for steps in [3, 9, 27, 37, 111, 333] {
            assert_eq!(DdimSchedule::new(&s, steps, 1.0), Err(DdimError::PastTheEnd { steps, timesteps: 1000 }));
        }
    }

    #[test]
    fn seeded_noise_is_per_item_reproducible() {
        let dev = Device::Cpu;
        let pair = NoiseSource::seeded([7, 8]).start_latent(&[2, 3, 4, 4], &dev).unwrap();
        let single = NoiseSource::seeded([8]).start_latent(&[1, 3, 4, 4], &dev).unwrap();
        let diff = (pair.get(1).unwrap() - single.get(0).unwrap()).unwrap().abs().unwrap();
        assert_eq!(diff.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        let values = pair.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.3 && (var - 1.0).abs() < 0.4, "mean {mean} var {var}");
    }
}
