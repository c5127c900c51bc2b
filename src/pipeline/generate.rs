//! Generation job: a mask and a caption in, faces out, streaming every DDIM step.
//!
//! The contract the studio and the command line share: a [`GenerateRequest`],
//! a cancel flag, and a sink that receives [`Event`]s as the job runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use thiserror::Error;

use crate::data::image::{images_to_frames, scalar_maps};
use crate::data::image_params::ImageParams;
use crate::data::mask::{class, Mask};
use crate::diffusion::collaborate::{Combination, CombineMode, PostProcess};
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::diffusion::sampler::{SamplingError, Step};
use crate::model::collaborative::{CollaborativeModel, Collaboration, Contexts, ModelError};

/// The frames the job's events carry.
pub use crate::data::image::{RgbFrame, ScalarMap};

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
    /// Settings of the collaborative mode's post-processing of the influence functions.
    pub post: PostProcess,
    /// How many variations to sample at once (seeds `seed`, `seed + 1`, ...).
    pub batch: usize,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        Self {
            mask: Mask::filled(512, 512, class::BACKGROUND),
            text: String::new(),
            steps: 50,
            eta: 1.0,
            seed: 0,
            mode: CombineMode::Collaborative,
            post: PostProcess::default(),
            batch: 1,
        }
    }
}

impl GenerateRequest {
    /// What batch item `item`'s PNG carries (its seed is `seed + item`), made by `model`.
    pub fn image_params(&self, item: usize, model: Option<String>) -> ImageParams {
        ImageParams {
            prompt: self.text.clone(),
            seed: self.seed + item as u64,
            steps: self.steps,
            eta: self.eta,
            mode: self.mode,
            model,
            mask: Some(self.mask.clone()),
            edit: None,
        }
    }
}

/// What one denoising step produced, for one batch item.
#[derive(Debug, Clone)]
pub struct StepFrame {
    /// Cheap preview of the predicted final image x0.
    pub pred_x0: RgbFrame,
    /// Cheap preview of the current noisy latent x_t.
    pub x_t: RgbFrame,
    /// The mask model's influence function at this step.
    pub w_mask: ScalarMap,
    /// The text model's (`1 - w_mask` in every mode; sent so that consumers need not know).
    pub w_text: ScalarMap,
}

/// Progress of a running job.
#[derive(Debug, Clone)]
pub enum Event {
    /// Sentences for the person about the request (e.g. a caption truncated to 77 tokens).
    Warning(String),
    /// Step `index` (0-based) of `total` finished, at diffusion timestep `t`.
    Step { index: usize, total: usize, t: usize, elapsed_secs: f64, frames: Vec<StepFrame> },
    /// The job finished: one fully decoded image per batch item.
    Done { images: Vec<RgbFrame>, elapsed_secs: f64 },
}

#[derive(Debug, Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Request(String),
    #[error("cancelled")]
    Cancelled,
    #[error("cannot write the step's output: {0}")]
    Output(String),
}

impl From<candle_core::Error> for GenerateError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(ModelError::Tensor(e))
    }
}

impl From<SamplingError> for GenerateError {
    fn from(e: SamplingError) -> Self {
        match e {
            SamplingError::Cancelled => Self::Cancelled,
            other => Self::Model(ModelError::Sampling(other)),
        }
    }
}

/// A request made ready to sample: its conditions encoded and its noise seeded.
pub struct Prepared {
    pub ddim: DdimSchedule,
    contexts: Contexts,
    noise: NoiseSource,
    mode: CombineMode,
    post: PostProcess,
    /// Sentences for the person (e.g. a caption truncated to 77 tokens).
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Checks the request, encodes its conditions and seeds its noise.
    pub fn new(model: &CollaborativeModel, request: &GenerateRequest) -> Result<Self, GenerateError> {
        if request.batch == 0 {
            return Err(GenerateError::Request("the batch must hold at least one image".into()));
        }
        if request.mode == CombineMode::NoTemporal {
            return Err(GenerateError::Request(
                "the no-temporal ablation needs an influence function pinned from a collaborative run; `codiff eval` runs it".into(),
            ));
        }
        let ddim = DdimSchedule::new(&model.schedule, request.steps, request.eta).map_err(|e| GenerateError::Request(e.to_string()))?;
        let captions = vec![request.text.clone(); request.batch];
        let (contexts, warnings) = model.encode_conditions(&request.mask, &captions)?;
        let noise = NoiseSource::seeded((0..request.batch as u64).map(|k| request.seed.wrapping_add(k)));
        Ok(Self { ddim, contexts, noise, mode: request.mode, post: request.post, warnings })
    }

    /// Samples the composed model, calling `on_step` after every step, and
    /// decodes the result: one frame per batch item.
    pub fn generate(
        mut self,
        model: &CollaborativeModel,
        cancel: &AtomicBool,
        on_step: impl FnMut(&Step<Combination>) -> Result<(), GenerateError>,
    ) -> Result<Vec<RgbFrame>, GenerateError> {
        let collaboration = Collaboration::new(model, &self.contexts, self.mode, &self.post);
        let z0 = collaboration.sample(&self.ddim, &mut self.noise, cancel, on_step)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }
        Ok(images_to_frames(&model.decode(&z0)?)?)
    }
}

/// Runs a whole generation, streaming a preview of every step and the decoded images to `sink`.
pub fn run(
    model: &CollaborativeModel,
    request: &GenerateRequest,
    cancel: &AtomicBool,
    sink: &mut dyn FnMut(Event),
) -> Result<Vec<RgbFrame>, GenerateError> {
    let started = Instant::now();
    let mut prepared = Prepared::new(model, request)?;
    for warning in std::mem::take(&mut prepared.warnings) {
        sink(Event::Warning(warning));
    }
    let images = prepared.generate(model, cancel, |step| {
        let pred = model.preview(&step.pred_x0)?;
        let noisy = model.preview(&step.x)?;
        let w_mask = scalar_maps(&step.prediction.w_mask)?;
        let w_text = scalar_maps(&step.prediction.w_text)?;
        let frames = pred
            .into_iter()
            .zip(noisy)
            .zip(w_mask.into_iter().zip(w_text))
            .map(|((pred_x0, x_t), (w_mask, w_text))| StepFrame { pred_x0, x_t, w_mask, w_text })
            .collect();
        sink(Event::Step {
            index: step.index,
            total: step.total,
            t: step.t,
            elapsed_secs: started.elapsed().as_secs_f64(),
            frames,
        });
        Ok(())
    })?;
    sink(Event::Done { images: images.clone(), elapsed_secs: started.elapsed().as_secs_f64() });
    Ok(images)
}
