//! The diffusion math, free of I/O: noise schedule, DDIM sampler and the
//! collaborative combination of two models' noise predictions.

pub mod channel_means;
pub mod collaborate;
pub mod ddim;
pub mod schedule;
pub mod x0_detail;
