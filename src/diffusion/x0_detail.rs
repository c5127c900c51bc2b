//! How much of a narrow UNet's predicted x0 detail to trust near t = 1000.
//!
//! With the channel means filled in (see [`super::channel_means`]), what is
//! left of the predicted x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) is its
//! detail: x0 minus its channel means. Near t = 1000 the small noise error
//! of a narrow UNet is divided by sqrt(a) ~ 0.012, and the default models'
//! detail then errs more than a flat image would (mean squared error 5.2
//! against 0.43 at t = 961). Deterministic sampling (eta 0) follows that
//! detail into colour textures; fresh noise (eta 1) mostly washes it out.
//! The least-squares factor for the detail, measured per timestep on
//! held-out photos, scales it down where it is noise and leaves it alone
//! where the model knows (1 from about t = 400 down).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// Least-squares factors for the predicted x0's detail at ascending
/// timesteps, `[t, factor]` pairs; linear in between, constant beyond the ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetailFactors(pub Vec<(usize, f64)>);

impl DetailFactors {
    /// Checks that the timesteps ascend and every factor is in [0, 1].
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.0.is_empty() {
            return Err("x0_detail_factors is empty".into());
        }
        if self.0.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("x0_detail_factors' timesteps must ascend".into());
        }
        if self.0.iter().any(|&(_, f)| !(0.0..=1.0).contains(&f)) {
            return Err("x0_detail_factors' factors must lie in [0, 1]".into());
        }
        Ok(())
    }

    /// The factor at timestep `t`.
    pub fn at(&self, t: usize) -> f64 {
        let points = &self.0;
        let after = points.partition_point(|&(s, _)| s <= t);
        match (after.checked_sub(1).map(|i| points[i]), points.get(after)) {
            (Some((s0, f0)), Some(&(s1, f1))) => f0 + (f1 - f0) * (t - s0) as f64 / (s1 - s0) as f64,
            (Some((_, f)), None) | (None, Some(&(_, f))) => f,
            (None, None) => 1.0,
        }
    }

    /// `eps` (predicted from `x_t` at alpha-bar `alpha_bar`, timestep `t`)
    /// rewritten so that its x0's detail is scaled by the factor at `t` and
    /// its channel means are kept.
    pub fn apply(&self, x_t: &Tensor, eps: &Tensor, alpha_bar: f64, t: usize) -> Result<Tensor> {
        let factor = self.at(t);
        if factor >= 1.0 {
            return Ok(eps.clone());
        }
        let x0 = super::ddim::predicted_x0(x_t, eps, alpha_bar)?;
        let means = x0.mean_keepdim((2, 3))?;
        let x0 = (x0.broadcast_sub(&means)? * factor)?.broadcast_add(&means)?;
        (x_t - (x0 * alpha_bar.sqrt())?)? / (1.0 - alpha_bar).sqrt()
    }

    /// The least-squares factor (clamped to [0, 1]) that best maps predicted
    /// x0 detail onto true x0 detail: sum(p r) / sum(p p) over both tensors'
    /// channel-mean-free parts.
    pub fn fit_one(predicted_x0: &Tensor, true_x0: &Tensor) -> Result<f64> {
        let detail = |x: &Tensor| -> Result<Tensor> { x.broadcast_sub(&x.mean_keepdim((2, 3))?) };
        let (p, r) = (detail(predicted_x0)?, detail(true_x0)?);
        let dot = |u: &Tensor, v: &Tensor| -> Result<f64> { (u * v)?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>() };
        let pp = dot(&p, &p)?;
        Ok(if pp > 0.0 { (dot(&p, &r)? / pp).clamp(0.0, 1.0) } else { 1.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn factors_interpolate_and_hold_at_the_ends() {
        let f = DetailFactors(vec![(0, 1.0), (500, 1.0), (900, 0.2), (999, 0.0)]);
        assert!(f.validate().is_ok());
        assert_eq!(f.at(0), 1.0);
        assert_eq!(f.at(300), 1.0);
        assert!((f.at(700) - 0.6).abs() < 1e-12);
        assert_eq!(f.at(999), 0.0);
        assert_eq!(f.at(5000), 0.0);
        assert!(DetailFactors(vec![(5, 0.5), (5, 0.6)]).validate().is_err());
        assert!(DetailFactors(vec![(5, 1.5)]).validate().is_err());
    }

    /// The rewritten eps gives an x0 with the same channel means and the
    /// detail scaled by the factor.
    #[test]
    fn apply_scales_only_the_detail() {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 4), &device).unwrap();
        let eps = Tensor::randn(0f32, 1.0, (2, 3, 4, 4), &device).unwrap();
        let (a, t) = (0.2f64, 700);
        let factors = DetailFactors(vec![(0, 0.25)]);
        let x0 = |e: &Tensor| ((&x - (e * (1.0 - a).sqrt()).unwrap()).unwrap() / a.sqrt()).unwrap();
        let before = x0(&eps);
        let after = x0(&factors.apply(&x, &eps, a, t).unwrap());
        let means = |v: &Tensor| v.mean_keepdim((2, 3)).unwrap();
        let gap = |u: &Tensor, v: &Tensor| (u - v).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(gap(&means(&before), &means(&after)) < 1e-4);
        let detail = |v: &Tensor| v.broadcast_sub(&means(v)).unwrap();
        assert!(gap(&(detail(&before) * 0.25).unwrap(), &detail(&after)) < 1e-4);
        // A factor of 1 changes nothing.
        let same = DetailFactors(vec![(0, 1.0)]).apply(&x, &eps, a, t).unwrap();
        assert_eq!(gap(&same, &eps), 0.0);
    }

    #[test]
    fn fit_recovers_a_known_factor() {
        let device = Device::Cpu;
        let truth = Tensor::randn(0f32, 1.0, (4, 3, 8, 8), &device).unwrap();
        // Predicted detail = twice the truth's, plus constant channel offsets: factor 0.5.
        let predicted = ((&truth * 2.0).unwrap() + 3.0).unwrap();
        assert!((DetailFactors::fit_one(&predicted, &truth).unwrap() - 0.5).abs() < 1e-6);
        // Unrelated noise: a factor near 0.
        let noise = Tensor::randn(0f32, 1.0, (4, 3, 8, 8), &device).unwrap();
        assert!(DetailFactors::fit_one(&noise, &truth).unwrap() < 0.2);
    }
}
