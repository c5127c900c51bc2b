//! Speed and memory of each model configuration on this machine: milliseconds
//! per part of a collaborative step, per generation and per first preview, and
//! the peak resident memory of each phase; and the memory one Imagic
//! fine-tuning step takes beside the estimate that admits it. Each
//! configuration is best measured in a process of its own, so that its peak
//! memory is its own (`codiff bench` does that).

pub mod memory;
pub mod peak;
pub mod side_by_side;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};
use thiserror::Error;

use self::memory::{peak_rss_mb, rss_mb, PhasePeaks};
use crate::data::mask::{class, Mask, NUM_CLASSES};
use crate::diffusion::collaborate::{CombineMode, PostProcess};
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::model::collaborative::{CollaborativeModel, LoadOptions, ModelError};
use crate::model::config::ComposedConfig;
use crate::model::defaults::ModelFiles;
use crate::model::device::DeviceChoice;
use crate::model::precision::WeightsDtype;
use crate::model::random::random_checkpoint;
use crate::pipeline::generate::{self, GenerateError, GenerateRequest};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Ddim(#[from] crate::diffusion::ddim::DdimError),
    #[error("could not read this process's memory: {0}")]
    Memory(String),
}

impl From<candle_core::Error> for BenchError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(ModelError::Tensor(e))
    }
}

/// A configuration to measure: a composed config, with its weights or, where
/// none are on this machine, a checkpoint of random ones written once.
pub struct BenchConfig {
    pub name: &'static str,
    pub config: PathBuf,
    pub weights: Option<PathBuf>,
}

impl BenchConfig {
    /// The checkpoint to load: the configuration's own, or a random one.
    pub fn checkpoint(&self) -> Result<PathBuf, ModelError> {
        match &self.weights {
            Some(weights) => Ok(weights.clone()),
            None => random_checkpoint(&self.config),
        }
    }
}

fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The configurations present on this machine: the released full-size 512
/// and 256 architectures, the tiny golden model and the default models.
pub fn configurations() -> Vec<BenchConfig> {
    let mut found = Vec::new();
    for (name, file) in [("full512", "512_codiff_mask_text.yaml"), ("full256", "256_codiff_mask_text.yaml")] {
        let full = shared_dir().join("reference/configs").join(file);
        if full.is_file() {
            found.push(BenchConfig { name, config: full, weights: None });
        }
    }
    let tiny = shared_dir().join("golden/tiny_codiff.yaml");
    if tiny.is_file() {
        found.push(BenchConfig { name: "tiny", config: tiny.clone(), weights: Some(tiny.with_extension("ckpt")) });
    }
    if let Ok(files) = ModelFiles::default_models() {
        found.push(BenchConfig { name: "default", config: files.config, weights: Some(files.weights) });
    }
    found
}

/// Median milliseconds of `reps` runs of `f`, after one warm-up run. A GPU
/// runs its kernels after the call returns: the clock stops once it is done.
fn time_ms(device: &Device, reps: usize, mut f: impl FnMut() -> Result<(), BenchError>) -> Result<f64, BenchError> {
    f()?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The speed figures of `bench` on `choice`'s device (median of `reps`), and
/// the peak memory of loading, decoding and a step.
pub fn measure(bench: &BenchConfig, choice: &DeviceChoice, reps: usize, precision: WeightsDtype) -> Result<Value, BenchError> {
    let device = choice.device.clone();
    // Loaded as the studio and `codiff generate` load it, so that the peak memory is theirs.
    let checkpoint = bench.checkpoint()?;
    let mut peaks = PhasePeaks::start();
    let model = CollaborativeModel::load(&bench.config, &checkpoint, &device, LoadOptions { precision, ..Default::default() })?;
    let rss_after_load_mb = rss_mb()?;
    peaks.end("load_peak_rss_mb");
    let size = model.config.diffusion.latent_size;
    let mask_size = model.image_size();
    let mask = Mask::filled(mask_size, mask_size, class::SKIN);
    let caption = "This man has beard of medium length. He is in his thirties.".to_string();
    let (contexts, _) = model.encode_conditions(&mask, std::slice::from_ref(&caption))?;
    let x = Tensor::randn(0f32, 1f32, (1, model.config.diffusion.latent_channels, size, size), &device)?;
    let t = Tensor::full(501f32, 1, &device)?;
    let post = PostProcess::default();

    let mut figures = BTreeMap::new();
    figures.insert("rss_after_load_mb", rss_after_load_mb);
    figures.insert("unet_ms", time_ms(&device, reps, || Ok(model.unets.mask.forward(&x, &t, &contexts.mask).map(drop)?))?);
    figures.insert("diffuser_ms", time_ms(&device, reps, || Ok(model.diffusers.mask.forward(&x, &t, &contexts.mask).map(drop)?))?);
    figures.insert("text_encode_ms", time_ms(&device, reps, || Ok(model.encode_conditions(&mask, std::slice::from_ref(&caption)).map(drop)?))?);
    peaks.start_phase();
    figures.insert("vae_decode_ms", time_ms(&device, reps, || Ok(model.decode(&x).map(drop)?))?);
    peaks.end("decode_peak_rss_mb");
    let ddim = DdimSchedule::new(&model.schedule, 50, 1.0)?;
    peaks.start_phase();
    figures.insert(
        "collab_step_ms",
        time_ms(&device, reps, || {
            let step = model.predict_noise(&x, 501, &contexts, CombineMode::Collaborative, &post)?;
            let mut noise = NoiseSource::seeded([0]);
            ddim.step_from(&x, &step.eps, 25, &mut noise)?;
            Ok(())
        })?,
    );
    peaks.end("step_peak_rss_mb");
    // 50 steps take seconds on a GPU, and minutes at full size on a CPU.
    if bench.name == "default" || !device.is_cpu() {
        let request = GenerateRequest { mask: mask.clone(), text: caption.clone(), ..GenerateRequest::default() };
        let never = AtomicBool::new(false);
        let mut first_preview_ms = None;
        let start = Instant::now();
        generate::run(&model, &request, &never, &mut |event| {
            if first_preview_ms.is_none() && matches!(event, generate::Event::Step { .. }) {
                first_preview_ms = Some(start.elapsed().as_secs_f64() * 1e3);
            }
        })?;
        figures.insert("generate50_ms", start.elapsed().as_secs_f64() * 1e3);
        figures.insert("first_preview_ms", first_preview_ms.unwrap_or(f64::NAN));
    }
    figures.extend(peaks.finish()?);
    let mut figures = json!(figures);
    figures["device"] = json!(choice.description);
    Ok(figures)
}

/// One Imagic fine-tuning step (forward, backward, AdamW) of the mask UNet at
/// batch 1, in a process that holds nothing else: the growth of its peak
/// resident memory, and `edit::memory`'s estimate for the same UNet.
pub fn finetune_memory(bench: &BenchConfig, device: &Device) -> Result<Value, BenchError> {
    let config = ComposedConfig::load(&bench.config).map_err(ModelError::from)?;
    let unet_config = &config.mask.unet;
    let (size, channels) = (config.diffusion.latent_size, config.diffusion.latent_channels);
    let before = rss_mb()?;
    let vars = VarMap::new();
    let unet = crate::model::unet::UNetModel::new(VarBuilder::from_varmap(&vars, DType::F32, device), unet_config)?;
    let parameters: usize = vars.all_vars().iter().map(|v| v.elem_count()).sum();
    let context_dim = unet_config.context_dim.unwrap_or(1);
    // The mask encoder's context: one token per class.
    let context = Tensor::randn(0f32, 1f32, (1, NUM_CLASSES, context_dim), device)?;
    let x = Tensor::randn(0f32, 1f32, (1, channels, size, size), device)?;
    let t = Tensor::full(501f32, 1, device)?;
    let mut opt = crate::model::optim::AdamW::new(&vars, 1e-6, None)?;
    for _ in 0..2 {
        let loss = (unet.forward(&x, &t, &context)? - &x)?.sqr()?.mean_all()?;
        opt.backward_step(&loss)?;
    }
    let measured = peak_rss_mb()? - before;
    let estimate = crate::pipeline::edit::memory::finetune_bytes(unet_config, parameters, size, NUM_CLASSES) as f64 / (1024.0 * 1024.0);
    Ok(json!({ "finetune_parameters_m": parameters as f64 / 1e6, "finetune_measured_mb": measured, "finetune_estimate_mb": estimate }))
}
