//! Generation job: a mask and a caption in, faces out, streaming every DDIM step.
//!
//! The contract the studio and the command line share: a [`GenerateRequest`],
//! a cancel flag, and a sink that receives [`Event`]s as the job runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use thiserror::Error;

use crate::data::mask::Mask;
use crate::diffusion::collaborate::{CombineMode, PostProcess};
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::model::collaborative::{CollaborativeModel, Collaborators, Contexts, ModelError};

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
            mask: Mask::filled(512, 512, 0),
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

/// An RGB image, row-major, 8 bits per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbFrame {
    pub fn from_image(image: &image::RgbImage) -> Self {
        Self { width: image.width() as usize, height: image.height() as usize, pixels: image.as_raw().clone() }
    }

    /// A mask in its palette colours.
    pub fn from_mask(mask: &crate::data::mask::Mask) -> Self {
        Self { width: mask.width(), height: mask.height(), pixels: mask.to_rgb() }
    }

    /// As an `image` buffer; `None` when the pixels do not fill width x height.
    pub fn to_image(&self) -> Option<image::RgbImage> {
        image::RgbImage::from_raw(self.width as u32, self.height as u32, self.pixels.clone())
    }
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

/// What one sampling step computed, for the whole batch (tensors, before any preview).
pub struct StepOutput {
    pub index: usize,
    pub total: usize,
    pub t: usize,
    pub x_prev: Tensor,
    pub pred_x0: Tensor,
    pub w_mask: Tensor,
    pub w_text: Tensor,
}

/// The DDIM loop of the composed model: from the start latent to z0, calling
/// `on_step` after every step. Returns z0 (in the diffusion's latent scale).
pub fn sample(
    model: &CollaborativeModel,
    contexts: &Contexts,
    ddim: &DdimSchedule,
    mode: CombineMode,
    post: &PostProcess,
    noise: &mut NoiseSource,
    cancel: &AtomicBool,
    on_step: impl FnMut(&StepOutput) -> Result<(), GenerateError>,
) -> Result<Tensor, GenerateError> {
    sample_with(model, model.collaborators(), contexts, ddim, mode, post, noise, cancel, on_step)
}

/// [`sample`] with other noise predictors in place of the model's own.
#[allow(clippy::too_many_arguments)]
pub fn sample_with(
    model: &CollaborativeModel,
    collaborators: Collaborators,
    contexts: &Contexts,
    ddim: &DdimSchedule,
    mode: CombineMode,
    post: &PostProcess,
    noise: &mut NoiseSource,
    cancel: &AtomicBool,
    mut on_step: impl FnMut(&StepOutput) -> Result<(), GenerateError>,
) -> Result<Tensor, GenerateError> {
    let batch = contexts.batch();
    let size = model.config.diffusion.latent_size;
    let shape = [batch, model.config.diffusion.latent_channels, size, size];
    let mut x = noise.start_latent(&shape, &model.device)?;
    for index in 0..ddim.len() {
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }
        let t = ddim.timestep(index);
        let combination = model.predict_noise_with(collaborators, &x, t, contexts, mode, post)?;
        let (x_prev, pred_x0) = ddim.step_from(&x, &combination.eps, index, noise)?;
        on_step(&StepOutput {
            index,
            total: ddim.len(),
            t,
            x_prev: x_prev.clone(),
            pred_x0,
            w_mask: combination.w_mask,
            w_text: combination.w_text,
        })?;
        x = x_prev;
    }
    Ok(x)
}

/// A request made ready to sample: the one path from a request to the DDIM loop.
pub struct Prepared {
    pub ddim: DdimSchedule,
    pub contexts: Contexts,
    pub noise: NoiseSource,
    /// Sentences for the person (e.g. a caption truncated to 77 tokens).
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Checks the request, encodes its conditions and seeds its noise.
    pub fn new(model: &CollaborativeModel, request: &GenerateRequest) -> Result<Self, GenerateError> {
        if request.batch == 0 {
            return Err(GenerateError::Request("the batch must hold at least one image".into()));
        }
        let ddim = DdimSchedule::new(&model.schedule, request.steps, request.eta)
            .map_err(|e| GenerateError::Request(e.to_string()))?;
        let captions = vec![request.text.clone(); request.batch];
        let (contexts, warnings) = model.encode_conditions(&request.mask, &captions)?;
        let noise = NoiseSource::seeded((0..request.batch as u64).map(|k| request.seed.wrapping_add(k)));
        Ok(Self { ddim, contexts, noise, warnings })
    }

    /// Runs the DDIM loop to z0 (see [`sample`]).
    pub fn sample(
        mut self,
        model: &CollaborativeModel,
        request: &GenerateRequest,
        cancel: &AtomicBool,
        on_step: impl FnMut(&StepOutput) -> Result<(), GenerateError>,
    ) -> Result<Tensor, GenerateError> {
        sample(model, &self.contexts, &self.ddim, request.mode, &request.post, &mut self.noise, cancel, on_step)
    }
}

/// Runs a whole generation: conditions, sampling with a preview per step, final decode.
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
    let z0 = prepared.sample(model, request, cancel, |step| {
        let pred = model.preview(&step.pred_x0)?;
        let noisy = model.preview(&step.x_prev)?;
        let w_mask = scalar_maps(&step.w_mask)?;
        let w_text = scalar_maps(&step.w_text)?;
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
    if cancel.load(Ordering::Relaxed) {
        return Err(GenerateError::Cancelled);
    }
    let images = images_to_frames(&model.decode(&z0)?)?;
    sink(Event::Done { images: images.clone(), elapsed_secs: started.elapsed().as_secs_f64() });
    Ok(images)
}

/// B x 3 x H x W images in [-1, 1] to 8-bit frames.
pub fn images_to_frames(images: &Tensor) -> Result<Vec<RgbFrame>, GenerateError> {
    let (batch, _, height, width) = images.dims4()?;
    let bytes = ((images.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?.round()?.permute((0, 2, 3, 1))?.contiguous()?;
    let bytes = bytes.to_dtype(candle_core::DType::U8)?;
    (0..batch)
        .map(|b| Ok(RgbFrame { width, height, pixels: bytes.get(b)?.flatten_all()?.to_vec1::<u8>()? }))
        .collect()
}

/// B x 1 x H x W maps to per-item value grids.
pub fn scalar_maps(maps: &Tensor) -> Result<Vec<ScalarMap>, GenerateError> {
    let (batch, _, height, width) = maps.dims4()?;
    let flat = maps.flatten_from(1)?.to_dtype(candle_core::DType::F32)?;
    (0..batch)
        .map(|b| Ok(ScalarMap { width, height, values: flat.get(b)?.to_vec1::<f32>()? }))
        .collect()
}
