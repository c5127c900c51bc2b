//! Generation job: a mask and a caption in, faces out, streaming every DDIM step.
//!
//! The contract the studio and the command line share: a [`GenerateRequest`],
//! a cancel flag, and a sink that receives [`Event`]s as the job runs.

use crate::data::mask::Mask;
use crate::diffusion::collaborate::CombineMode;

/// Everything that determines a generation; equal requests give equal images.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub mask: Mask,
    pub text: String,
    /// DDIM steps S (the original's quirk: some S give S + 1 steps).
    pub steps: usize,
    pub eta: f64,
    pub seed: u64,
    pub mode: CombineMode,
    /// How many variations to sample at once (seeds `seed`, `seed + 1`, ...).
    pub batch: usize,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        Self {
            mask: Mask::filled(512, 512, 0),
            text: String::new(),
            steps: 50,
            eta: 1.0,
            seed: 0,
            mode: CombineMode::Collaborative,
            batch: 1,
        }
    }
}

/// An RGB image, row-major, 8 bits per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// A single-channel map in [0, 1] (an influence function), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// What one denoising step produced, for one batch item.
#[derive(Debug, Clone)]
pub struct StepFrame {
    /// Cheap preview of the predicted final image x0.
    pub pred_x0: RgbFrame,
    /// Cheap preview of the current noisy latent x_t.
    pub x_t: RgbFrame,
    /// The mask model's influence function at this step (the text model's is `1 - w_mask`
    /// for the collaborative modes; both are sent because the ablations break that).
    pub w_mask: ScalarMap,
    pub w_text: ScalarMap,
}

/// Progress of a running job.
#[derive(Debug, Clone)]
pub enum Event {
    /// Step `index` (0-based) of `total` finished, at diffusion timestep `t`.
    Step { index: usize, total: usize, t: usize, elapsed_secs: f64, frames: Vec<StepFrame> },
    /// The job finished: one fully decoded image per batch item.
    Done { images: Vec<RgbFrame>, elapsed_secs: f64 },
}
