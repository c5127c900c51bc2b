//! What a latent diffusion UNet predicts (`parameterization` in the LDM
//! config): the noise eps, as the original's models do, or the velocity
//! v = sqrt(a) eps - sqrt(1 - a) x0 (Stable Diffusion 2's). Under eps an
//! error in the prediction reaches the predicted x0 multiplied by
//! sqrt(1 - a) / sqrt(a), 84 at t = 999 of the linear schedule; under v it
//! reaches it multiplied by sqrt(1 - a), at most 1. Guidance, collaboration,
//! DDIM and inversion all work on the eps a prediction stands for, which is
//! exact: each combines predictions of the same x_t with weights summing to 1,
//! and eps is affine in v at a fixed x_t.

use candle_core::{Device, Result, Tensor};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parameterization {
    #[default]
    Eps,
    V,
}

impl Parameterization {
    /// The config's word for it (`eps` or `v`), or `None` for any other.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "eps" => Some(Self::Eps),
            "v" => Some(Self::V),
            _ => None,
        }
    }

    /// The noise that `output`, predicted from `x_t` at `levels`, stands for:
    /// eps = sqrt(a) v + sqrt(1 - a) x_t under v.
    pub fn eps(self, output: &Tensor, x_t: &Tensor, levels: &Levels) -> Result<Tensor> {
        match self {
            Self::Eps => Ok(output.clone()),
            Self::V => output.broadcast_mul(&levels.signal)? + x_t.broadcast_mul(&levels.noise)?,
        }
    }

    /// [`Self::eps`] for a batch all at alpha-bar `alpha`, as at one sampling step.
    pub fn eps_at(self, output: &Tensor, x_t: &Tensor, alpha: f64) -> Result<Tensor> {
        self.eps(output, x_t, &Levels::uniform(alpha, output.dim(0)?, output.device())?)
    }

    /// What the network learns to output for `x0` noised with `eps` at `levels`.
    pub fn target(self, x0: &Tensor, eps: &Tensor, levels: &Levels) -> Result<Tensor> {
        match self {
            Self::Eps => Ok(eps.clone()),
            Self::V => eps.broadcast_mul(&levels.signal)? - x0.broadcast_mul(&levels.noise)?,
        }
    }

    /// Per item, what an error in eps becomes in this parameterization's
    /// output at the same x_t: 1 under eps, 1 / sqrt(a) under v.
    pub fn error_scale(self, levels: &Levels) -> Result<Tensor> {
        let scales: Vec<f32> = levels.alphas.iter().map(|&a| if self == Self::V { (1.0 / a.sqrt()) as f32 } else { 1.0 }).collect();
        Tensor::from_vec(scales, levels.alphas.len(), levels.signal.device())
    }
}

/// The noise level of each batch item: sqrt(a) and sqrt(1 - a) for its
/// alpha-bar a, shaped B x 1 x 1 x 1 to scale a latent.
#[derive(Debug, Clone)]
pub struct Levels {
    pub alphas: Vec<f64>,
    pub signal: Tensor,
    pub noise: Tensor,
}

impl Levels {
    pub fn new(alphas: Vec<f64>, device: &Device) -> Result<Self> {
        let column = |f: fn(f64) -> f64| Tensor::from_vec(alphas.iter().map(|&a| f(a) as f32).collect::<Vec<_>>(), (alphas.len(), 1, 1, 1), device);
        Ok(Self { signal: column(|a| a.sqrt())?, noise: column(|a| (1.0 - a).sqrt())?, alphas })
    }

    /// Every one of `batch` items at alpha-bar `alpha`, as at one sampling step.
    pub fn uniform(alpha: f64, batch: usize, device: &Device) -> Result<Self> {
        Self::new(vec![alpha; batch], device)
    }

    /// Each item's weight in a training loss capped at `cap` times the
    /// weight of the noisiest levels: min(SNR + 1, cap) / (SNR + 1), with
    /// SNR = a / (1 - a). For a v-prediction this weights the error of the
    /// x0 it implies by min(SNR + 1, cap): nearly clean items stop
    /// dominating, and the noisiest keep their full weight (unlike min-SNR,
    /// whose min(SNR, cap) / (SNR + 1) vanishes at high t).
    pub fn capped_snr_weights(&self, cap: f64) -> Result<Tensor> {
        let weights: Vec<f32> = self
            .alphas
            .iter()
            .map(|&a| {
                let snr_plus_one = 1.0 / (1.0 - a);
                (snr_plus_one.min(cap) / snr_plus_one) as f32
            })
            .collect();
        Tensor::from_vec(weights, self.alphas.len(), self.signal.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    /// With x_t = sqrt(a) x0 + sqrt(1 - a) eps, the v target read back as
    /// eps is eps, and sqrt(a) x_t - sqrt(1 - a) v is x0, at every level.
    #[test]
    fn eps_v_and_x0_identities_hold() -> Result<()> {
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5], &dev)?.reshape((3, 2, 1, 1))?;
        let eps = Tensor::new(&[1.0f32, 0.25, -0.5, -1.5, 0.1, 2.0], &dev)?.reshape((3, 2, 1, 1))?;
        let levels = Levels::new(vec![0.9985, 0.5, 0.0047], &dev)?;
        let x_t = (x0.broadcast_mul(&levels.signal)? + eps.broadcast_mul(&levels.noise)?)?;
        let v = Parameterization::V.target(&x0, &eps, &levels)?;
        assert!(gap(&Parameterization::V.eps(&v, &x_t, &levels)?, &eps) < 1e-6);
        let x0_back = (x_t.broadcast_mul(&levels.signal)? - v.broadcast_mul(&levels.noise)?)?;
        assert!(gap(&x0_back, &x0) < 1e-6);
        // At a = 0.5 both scales are sqrt(0.5): v = (eps - x0) / sqrt 2.
        let middle = ((&eps - &x0)? / 2f64.sqrt())?.narrow(0, 1, 1)?;
        assert!(gap(&v.narrow(0, 1, 1)?, &middle) < 1e-6);
        assert_eq!(gap(&Parameterization::Eps.target(&x0, &eps, &levels)?, &eps), 0.0);
        assert_eq!(gap(&Parameterization::Eps.eps(&eps, &x_t, &levels)?, &eps), 0.0);
        Ok(())
    }

    /// A deterministic DDIM step from a v prediction lands where the true
    /// x0 and eps put the lower level: sqrt(a_prev) x0 + sqrt(1 - a_prev) eps.
    #[test]
    fn a_ddim_step_under_v_reaches_the_exact_lower_level() -> Result<()> {
        use crate::diffusion::ddim::DdimSchedule;
        use crate::diffusion::schedule::NoiseSchedule;
        let dev = Device::Cpu;
        let schedule = NoiseSchedule::linear(0.0015, 0.0195, 1000).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let ddim = DdimSchedule::new(&schedule, 10, 0.0).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        // Step 0 is the noisiest (the schedule keeps its levels ascending).
        let last = ddim.len() - 1;
        let (a, a_prev) = (ddim.alphas()[last], ddim.alphas_prev()[last]);
        let x0 = Tensor::new(&[0.8f32, -0.4, 1.2, 0.0], &dev)?.reshape((1, 4, 1, 1))?;
        let eps = Tensor::new(&[-1.0f32, 0.5, 0.3, 2.0], &dev)?.reshape((1, 4, 1, 1))?;
        let levels = Levels::uniform(a, 1, &dev)?;
        let x_t = ((&x0 * a.sqrt())? + (&eps * (1.0 - a).sqrt())?)?;
        let v = Parameterization::V.target(&x0, &eps, &levels)?;
        let (x_prev, pred_x0) = ddim.step(&x_t, &Parameterization::V.eps(&v, &x_t, &levels)?, 0, None)?;
        let want = ((&x0 * a_prev.sqrt())? + (&eps * (1.0 - a_prev).sqrt())?)?;
        assert!(gap(&pred_x0, &x0) < 1e-5 && gap(&x_prev, &want) < 1e-5, "{} {}", gap(&pred_x0, &x0), gap(&x_prev, &want));
        Ok(())
    }

    /// An eps error e at a fixed x_t is the v error e / sqrt(a).
    #[test]
    fn an_eps_error_scales_into_v_by_one_over_sqrt_alpha() -> Result<()> {
        let dev = Device::Cpu;
        let levels = Levels::new(vec![0.25, 0.81], &dev)?;
        let x_t = Tensor::new(&[0.3f32, -0.2], &dev)?.reshape((2, 1, 1, 1))?;
        let v = Tensor::new(&[1.0f32, 0.5], &dev)?.reshape((2, 1, 1, 1))?;
        let nudged = (&v + 0.1)?;
        let eps_error = (Parameterization::V.eps(&nudged, &x_t, &levels)? - Parameterization::V.eps(&v, &x_t, &levels)?)?.flatten_all()?;
        let in_v = (eps_error * Parameterization::V.error_scale(&levels)?)?.to_vec1::<f32>()?;
        assert!(in_v.iter().all(|e| (e - 0.1).abs() < 1e-6), "{in_v:?}");
        assert_eq!(Parameterization::Eps.error_scale(&levels)?.to_vec1::<f32>()?, vec![1.0, 1.0]);
        Ok(())
    }

    #[test]
    fn capped_weights_fall_only_where_the_signal_dominates() -> Result<()> {
        let levels = Levels::new(vec![0.99, 0.8, 0.5, 0.01], &Device::Cpu)?;
        let weights = levels.capped_snr_weights(5.0)?.to_vec1::<f32>()?;
        // SNR + 1 = 100, 5, 2, 1.0101.
        let want = [0.05f32, 1.0, 1.0, 1.0];
        for (got, want) in weights.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{weights:?}");
        }
        Ok(())
    }

    #[test]
    fn only_eps_and_v_are_known() {
        assert_eq!(Parameterization::parse("v"), Some(Parameterization::V));
        assert_eq!(Parameterization::parse("eps"), Some(Parameterization::Eps));
        assert_eq!(Parameterization::parse("x0"), None);
    }
}
