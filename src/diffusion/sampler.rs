//! The one DDIM loop: sampling (x_T down to x_0) and deterministic inversion
//! (x_0 up to x_T) over any noise predictor, with the noise corrections
//! applied to every prediction, a cancel check before every step, and a check
//! after it that the latent is still finite.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor};
use thiserror::Error;

use super::collaborate::Combination;
use super::corrections::NoiseCorrections;
use super::ddim::{DdimSchedule, NoiseSource};
use super::schedule::NoiseSchedule;

#[derive(Debug, Error, PartialEq)]
pub enum SamplingError {
    #[error("cancelled")]
    Cancelled,
    #[error(
        "the latent became NaN or infinite at step {step} of {total} (t = {t}): the model's weights or its noise corrections are broken"
    )]
    NotFinite { step: usize, total: usize, t: usize },
}

/// What a noise predictor returns: the noise it predicts, and whatever else
/// it computed that a caller may want to see at each step.
pub trait Prediction {
    fn eps(&self) -> &Tensor;
}

impl Prediction for Tensor {
    fn eps(&self) -> &Tensor {
        self
    }
}

impl Prediction for Combination {
    fn eps(&self) -> &Tensor {
        &self.eps
    }
}

/// What one step of the loop computed.
pub struct Step<P> {
    /// 0-based, in the order the loop runs.
    pub index: usize,
    pub total: usize,
    /// The timestep the noise was predicted at.
    pub t: usize,
    /// The latent the step arrived at (x_{t-1} when sampling, the next level up when inverting).
    pub x: Tensor,
    pub pred_x0: Tensor,
    /// The predictor's output (its noise before the corrections).
    pub prediction: P,
}

/// A DDIM discretisation of a schedule, with the corrections its model needs.
#[derive(Clone, Copy)]
pub struct Sampler<'a> {
    pub schedule: &'a NoiseSchedule,
    pub ddim: &'a DdimSchedule,
    pub corrections: &'a NoiseCorrections,
}

/// Which way the loop walks the DDIM timesteps.
enum Walk<'n> {
    /// From noise to data, drawing each step's noise from the source.
    Sample(&'n mut NoiseSource),
    /// From data to noise, deterministically.
    Invert,
}

impl Sampler<'_> {
    /// DDIM from the start latent `x_t` down to x_0 (returned), the steps'
    /// noise drawn from `noise`; `predict` gives the noise in x at timestep t
    /// and `on_step` sees every step.
    pub fn sample<P: Prediction, E>(
        &self,
        x_t: Tensor,
        noise: &mut NoiseSource,
        cancel: &AtomicBool,
        predict: impl FnMut(&Tensor, usize) -> Result<P, E>,
        on_step: impl FnMut(&Step<P>) -> Result<(), E>,
    ) -> Result<Tensor, E>
    where
        E: From<candle_core::Error> + From<SamplingError>,
    {
        self.walk(x_t, Walk::Sample(noise), cancel, predict, on_step)
    }

    /// Deterministic DDIM inversion of `x0` up to the start latent of
    /// sampling (returned): the sampling steps walked backwards.
    pub fn invert<P: Prediction, E>(
        &self,
        x0: Tensor,
        cancel: &AtomicBool,
        predict: impl FnMut(&Tensor, usize) -> Result<P, E>,
        on_step: impl FnMut(&Step<P>) -> Result<(), E>,
    ) -> Result<Tensor, E>
    where
        E: From<candle_core::Error> + From<SamplingError>,
    {
        self.walk(x0, Walk::Invert, cancel, predict, on_step)
    }

    fn walk<P: Prediction, E>(
        &self,
        mut x: Tensor,
        mut walk: Walk,
        cancel: &AtomicBool,
        mut predict: impl FnMut(&Tensor, usize) -> Result<P, E>,
        mut on_step: impl FnMut(&Step<P>) -> Result<(), E>,
    ) -> Result<Tensor, E>
    where
        E: From<candle_core::Error> + From<SamplingError>,
    {
        let total = self.ddim.len();
        for index in 0..total {
            if cancel.load(Ordering::Relaxed) {
                return Err(SamplingError::Cancelled.into());
            }
            // Sampling step k goes from level a_k to a_prev_k; inversion walks those steps backwards.
            let step = match walk {
                Walk::Sample(_) => index,
                Walk::Invert => total - 1 - index,
            };
            let t = self.ddim.timestep(step);
            let prediction = predict(&x, t)?;
            let eps = self.corrections.apply(&x, prediction.eps(), self.schedule.alphas_cumprod()[t], t)?;
            let (next, pred_x0) = match &mut walk {
                Walk::Sample(noise) => self.ddim.step_from(&x, &eps, step, noise)?,
                Walk::Invert => self.ddim.invert_step(&x, &eps, step)?,
            };
            if !is_finite(&next)? {
                return Err(SamplingError::NotFinite { step: index + 1, total, t }.into());
            }
            x = next;
            on_step(&Step { index, total, t, x: x.clone(), pred_x0, prediction })?;
        }
        Ok(x)
    }
}

/// Whether every value of `x` is finite (a NaN or an infinity makes the sum non-finite).
fn is_finite(x: &Tensor) -> candle_core::Result<bool> {
    Ok(x.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn released() -> NoiseSchedule {
        NoiseSchedule::linear(0.0015, 0.0195, 1000).unwrap()
    }

    /// With the same noise predicted at every level, DDIM's path is exact:
    /// x at alpha-bar a is sqrt(a) x0 + sqrt(1 - a) eps, both ways.
    #[test]
    fn inversion_and_sampling_walk_the_same_path_both_ways() {
        let schedule = released();
        let ddim = DdimSchedule::new(&schedule, 10, 0.0).unwrap();
        let corrections = NoiseCorrections::default();
        let sampler = Sampler { schedule: &schedule, ddim: &ddim, corrections: &corrections };
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &dev).unwrap();
        let eps = Tensor::new(&[[1.0f32, 0.25], [-0.5, -1.5]], &dev).unwrap();
        let at = |a: f64| ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap();
        let gap = |u: &Tensor, v: &Tensor| (u - v).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let never = AtomicBool::new(false);
        let constant = |_: &Tensor, _: usize| Ok::<_, SamplingOrTensor>(eps.clone());
        let (start, top) = (ddim.alphas_prev()[0], ddim.alphas()[ddim.len() - 1]);
        let mut seen = Vec::new();
        let x_t = sampler
            .invert(at(start), &never, constant, |s| {
                seen.push(s.t);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, ddim.timesteps(), "inversion walks the timesteps upwards");
        assert!(gap(&x_t, &at(top)) < 1e-5, "inverted to {}", gap(&x_t, &at(top)));
        let back = sampler.sample(x_t, &mut NoiseSource::seeded([]), &never, constant, |_| Ok(())).unwrap();
        assert!(gap(&back, &at(start)) < 1e-4, "sampled back to {}", gap(&back, &at(start)));
    }

    #[test]
    fn a_nan_stops_the_loop_naming_its_step_and_cancel_stops_it_before_any() {
        let schedule = released();
        let ddim = DdimSchedule::new(&schedule, 10, 0.0).unwrap();
        let corrections = NoiseCorrections::default();
        let sampler = Sampler { schedule: &schedule, ddim: &ddim, corrections: &corrections };
        let x = Tensor::zeros((1, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let never = AtomicBool::new(false);
        let nan_at_third = |x: &Tensor, t: usize| -> Result<Tensor, SamplingOrTensor> {
            Ok(if t == ddim.timestep(2) { (x.ones_like()? * f64::NAN)? } else { x.zeros_like()? })
        };
        let err = sampler.sample(x.clone(), &mut NoiseSource::seeded([0]), &never, nan_at_third, |_| Ok(())).unwrap_err();
        assert_eq!(err, SamplingOrTensor::Sampling(SamplingError::NotFinite { step: 3, total: 10, t: ddim.timestep(2) }));
        let cancelled = AtomicBool::new(true);
        let err = sampler.invert(x, &cancelled, nan_at_third, |_| Ok(())).unwrap_err();
        assert_eq!(err, SamplingOrTensor::Sampling(SamplingError::Cancelled));
    }

    #[derive(Debug, PartialEq)]
    enum SamplingOrTensor {
        Sampling(SamplingError),
        Tensor(String),
    }

    impl From<SamplingError> for SamplingOrTensor {
        fn from(e: SamplingError) -> Self {
            Self::Sampling(e)
        }
    }

    impl From<candle_core::Error> for SamplingOrTensor {
        fn from(e: candle_core::Error) -> Self {
            Self::Tensor(e.to_string())
        }
    }
}
