//! The diffusion math, free of I/O: noise schedule and forward process, the
//! DDIM sampler (one loop for sampling and inversion over any noise
//! predictor), the noise corrections it applies, and the collaborative
//! combination of two models' noise predictions.

pub mod channel_means;
pub mod collaborate;
pub mod corrections;
pub mod ddim;
pub mod modality;
pub mod parameterization;
pub mod sampler;
pub mod schedule;
pub mod x0_detail;
