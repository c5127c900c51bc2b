//! This project's corrections of a predicted noise for UNets too narrow to
//! predict it near t = 1000, applied by the sampler to every prediction (see
//! [`ChannelMeanPrior`] and [`DetailFactors`]). The original configs carry
//! neither, and then the noise passes unchanged.

use candle_core::{Result, Tensor};

use super::channel_means::ChannelMeanPrior;
use super::x0_detail::DetailFactors;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoiseCorrections {
    pub channel_mean_prior: Option<ChannelMeanPrior>,
    pub x0_detail_factors: Option<DetailFactors>,
}

impl NoiseCorrections {
    /// `eps`, predicted from `x_t` at timestep `t` (alpha-bar `alpha_bar`),
    /// with the channel means filled in, then the x0 detail scaled.
    pub fn apply(&self, x_t: &Tensor, eps: &Tensor, alpha_bar: f64, t: usize) -> Result<Tensor> {
        let eps = match &self.channel_mean_prior {
            Some(prior) => prior.complete(x_t, eps, alpha_bar)?,
            None => eps.clone(),
        };
        match &self.x0_detail_factors {
            Some(factors) => factors.apply(x_t, &eps, alpha_bar, t),
            None => Ok(eps),
        }
    }
}
