//! Training the default models on the synthetic face world, stage by stage:
//! the autoencoder, the mask- and text-driven latent diffusion models, the two
//! dynamic diffusers, and the judges the evaluation uses.
//!
//! Everything a stage needs and makes lives in one directory: the YAML configs
//! in the original format (a fresh directory gets the project's defaults), the
//! stage outputs, and under `train/<stage>/` the resumable checkpoint, the loss
//! log (CSV) and sample grids.

mod adversarial;
mod diffusers;
pub(crate) mod init;
mod judges;
mod latents;
mod ldm;
mod perceptual;
mod vae;

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::data::faces::{FaceSet, HELD_OUT_SEED, TRAIN_SEED};

use crate::model::collaborative::ModelError;
use crate::model::optim::AdamW;

/// The stages, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The feature network of the autoencoder's perceptual loss.
    Perceptual,
    Vae,
    Mask,
    Text,
    Diffusers,
    Judges,
}

impl Stage {
    pub const ALL: [Stage; 6] = [Stage::Perceptual, Stage::Vae, Stage::Mask, Stage::Text, Stage::Diffusers, Stage::Judges];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Perceptual => "perceptual",
            Stage::Vae => "vae",
            Stage::Mask => "mask",
            Stage::Text => "text",
            Stage::Diffusers => "diffusers",
            Stage::Judges => "judges",
        }
    }

    /// The file a finished stage leaves, relative to the model directory.
    pub fn output(self) -> &'static str {
        match self {
            Stage::Perceptual => "train/perceptual.safetensors",
            Stage::Vae => "train/vae.safetensors",
            Stage::Mask => "train/mask.safetensors",
            Stage::Text => "train/text.safetensors",
            Stage::Diffusers => "codiff.safetensors",
            Stage::Judges => "judges.safetensors",
        }
    }
}

/// What to train and where.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub dir: PathBuf,
    /// Overrides the stage's default number of optimiser steps.
    pub steps: Option<usize>,
    /// Continue from the stage's last checkpoint instead of starting afresh.
    pub resume: bool,
    /// Start networks that have no checkpoint to resume from these trained
    /// weights (names and shapes as the stage's own) instead of a seeded draw.
    pub init: Option<PathBuf>,
    pub seed: u64,
    /// Where the networks train (the CLI picks it as for inference).
    pub device: Device,
    /// Stop at the first step past this much training time, keeping the
    /// checkpoint (a stretch of a run that spans sessions or device calls).
    pub time_limit: Option<std::time::Duration>,
}

/// What a training run reports as it goes.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    Started { stage: Stage, total_steps: usize, first_step: usize },
    Step { stage: Stage, step: usize, loss: f32 },
    Note(String),
}

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Io(String),
    #[error("the {0} stage needs {1} first: run `codiff train {2}`")]
    Missing(&'static str, String, &'static str),
    #[error("training was cancelled; the last checkpoint is kept (continue with --resume)")]
    Cancelled,
    #[error("{name}: stopped at the time limit at step {step} of {total}; the checkpoint is kept (continue with --resume)")]
    TimeLimit { name: String, step: usize, total: usize },
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(ModelError::Tensor(e))
    }
}

impl From<crate::model::config::ConfigError> for TrainError {
    fn from(e: crate::model::config::ConfigError) -> Self {
        Self::Model(ModelError::Config(e))
    }
}

pub(crate) fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io(format!("could not {what} {}: {e}", path.display()))
}

/// The training recipe's configs (`recipe/`), written into a model directory that has none.
const DEFAULT_CONFIGS: [(&str, &str); 3] = [
    ("codiff.yaml", include_str!("recipe/codiff.yaml")),
    ("mask.yaml", include_str!("recipe/mask.yaml")),
    ("text.yaml", include_str!("recipe/text.yaml")),
];

/// Runs one stage.
pub fn run(stage: Stage, request: &TrainRequest, cancel: &AtomicBool, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    let ctx = Context::new(request, cancel)?;
    match stage {
        Stage::Perceptual => perceptual::train(&ctx, sink),
        Stage::Vae => vae::train(&ctx, sink),
        Stage::Mask => ldm::train(&ctx, ldm::Modality::Mask, sink),
        Stage::Text => ldm::train(&ctx, ldm::Modality::Text, sink),
        Stage::Diffusers => diffusers::train(&ctx, sink),
        Stage::Judges => judges::train(&ctx, sink),
    }
}

/// Runs every stage whose output is missing, in order.
pub fn run_all(request: &TrainRequest, cancel: &AtomicBool, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    for stage in Stage::ALL {
        if request.dir.join(stage.output()).exists() {
            sink(TrainEvent::Note(format!("{}: done already ({} exists)", stage.name(), stage.output())));
            continue;
        }
        run(stage, request, cancel, sink)?;
    }
    Ok(())
}

/// What every stage shares: the directory, the device, the seed and the cancel flag.
pub(crate) struct Context<'a> {
    pub dir: PathBuf,
    pub device: Device,
    pub request: &'a TrainRequest,
    pub cancel: &'a AtomicBool,
}

impl<'a> Context<'a> {
    fn new(request: &'a TrainRequest, cancel: &'a AtomicBool) -> Result<Self, TrainError> {
        let dir = request.dir.clone();
        std::fs::create_dir_all(dir.join("train")).map_err(|e| io_error("create", &dir, e))?;
        for (name, text) in DEFAULT_CONFIGS {
            let path = dir.join(name);
            if !path.exists() {
                std::fs::write(&path, text).map_err(|e| io_error("write", &path, e))?;
            }
        }
        Ok(Self { dir, device: request.device.clone(), request, cancel })
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The output of an earlier stage, or an error that names the stage to run.
    pub fn require(&self, stage: Stage, by: &'static str) -> Result<PathBuf, TrainError> {
        let path = self.path(stage.output());
        if path.exists() {
            Ok(path)
        } else {
            Err(TrainError::Missing(by, stage.output().into(), stage.name()))
        }
    }

    /// A builder whose new variables go into `vars`, drawn from the run's seed and `name`.
    pub fn var_builder(&self, vars: &VarMap, name: &str) -> candle_nn::VarBuilder<'static> {
        let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        init::seeded_var_builder(vars, self.request.seed ^ salt, &self.device)
    }

    /// `train/<stage>/`, created.
    pub fn work_dir(&self, stage: Stage) -> Result<PathBuf, TrainError> {
        let dir = self.path("train").join(stage.name());
        std::fs::create_dir_all(dir.join("samples")).map_err(|e| io_error("create", &dir, e))?;
        Ok(dir)
    }
}

/// How one network is optimised.
pub(crate) struct Schedule {
    pub steps: usize,
    pub lr: f64,
    pub ema_decay: Option<f64>,
    /// Write a sample grid every this many steps (and at the end).
    pub sample_every: usize,
    /// Steps whose checkpoint is also kept under its own name
    /// (`<name>.step<N>.checkpoint.safetensors`): where the recipe switches
    /// terms on, so a switch that goes wrong can be run again from before it.
    pub keep_at: &'static [usize],
}

/// Checkpoints are written at least this often, and when a run stops.
const CHECKPOINT_SECS: u64 = 180;

/// What [`fit`] trains: the variables `vars` of `stage`, logged and
/// checkpointed under `name`, with the optimisers `loss_at` steps itself
/// (`companions`, e.g. a GAN's discriminator).
pub(crate) struct Network<'a> {
    pub stage: Stage,
    pub name: &'a str,
    pub vars: &'a VarMap,
    pub companions: &'a [(&'a str, &'a RefCell<AdamW>)],
}

/// The optimisation loop every stage shares: AdamW over `vars`, `loss_at`
/// giving each step's loss from a generator seeded by (seed, step) so that a
/// resumed run draws the same batches, a CSV loss log, periodic checkpoints
/// and `sample` called every `sample_every` steps. `companions` are optimisers
/// that `loss_at` steps itself (a GAN's discriminator), checkpointed and
/// resumed together with the main one. Returns the optimiser,
/// whose [`AdamW::final_weights`] are the trained weights.
pub(crate) fn fit(
    ctx: &Context,
    network: Network,
    schedule: &Schedule,
    sink: &mut dyn FnMut(TrainEvent),
    mut loss_at: impl FnMut(usize, &mut ChaCha8Rng) -> candle_core::Result<Tensor>,
    mut sample: impl FnMut(usize, &Path) -> Result<(), TrainError>,
) -> Result<AdamW, TrainError> {
    let Network { stage, name, vars, companions } = network;
    let work = ctx.work_dir(stage)?;
    let total = ctx.request.steps.unwrap_or(schedule.steps);
    let checkpoint = work.join(format!("{name}.checkpoint.safetensors"));
    let mut opt = AdamW::new(vars, schedule.lr, schedule.ema_decay)?;
    opt.end_step = Some(total);
    let companion_path = |c: &str| work.join(format!("{c}.checkpoint.safetensors"));
    let save = |opt: &AdamW| -> candle_core::Result<()> {
        for (c, companion) in companions {
            companion.borrow().save(&companion_path(c))?;
        }
        opt.save(&checkpoint)
    };
    for (_, companion) in companions {
        companion.borrow_mut().end_step = Some(total);
    }
    if ctx.request.resume && checkpoint.exists() {
        opt.load(&checkpoint)?;
        for (c, companion) in companions {
            companion.borrow_mut().load(&companion_path(c))?;
        }
        sink(TrainEvent::Note(format!("{name}: resumed at step {}", opt.step)));
    } else if let Some(init) = &ctx.request.init {
        opt.start_from(init)?;
        sink(TrainEvent::Note(format!("{name}: starting from the weights in {}", init.display())));
    }
    let log_path = work.join(format!("{name}.loss.csv"));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(opt.step > 0)
        .write(true)
        .truncate(opt.step == 0)
        .open(&log_path)
        .map_err(|e| io_error("open", &log_path, e))?;
    if opt.step == 0 {
        writeln!(log, "step,loss,grad_norm,seconds").map_err(|e| io_error("write", &log_path, e))?;
    }
    sink(TrainEvent::Started { stage, total_steps: total, first_step: opt.step });
    let started = Instant::now();
    let mut saved = Instant::now();
    let stage_seed = ctx.request.seed ^ ((stage as u64 + 1) << 32) ^ name.len() as u64;
    while opt.step < total {
        if ctx.cancel.load(Ordering::Relaxed) {
            save(&opt)?;
            return Err(TrainError::Cancelled);
        }
        if ctx.request.time_limit.is_some_and(|limit| started.elapsed() >= limit) {
            save(&opt)?;
            return Err(TrainError::TimeLimit { name: name.to_string(), step: opt.step, total });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(stage_seed);
        rng.set_stream(opt.step as u64);
        let loss = loss_at(opt.step, &mut rng)?;
        let grad_norm = opt.backward_step(&loss)?;
        let loss = loss.to_scalar::<f32>()?;
        if !loss.is_finite() {
            return Err(TrainError::Io(format!("{name}: the loss became {loss} at step {}; lower the learning rate", opt.step)));
        }
        writeln!(log, "{},{loss},{grad_norm},{:.1}", opt.step, started.elapsed().as_secs_f64())
            .map_err(|e| io_error("write", &log_path, e))?;
        sink(TrainEvent::Step { stage, step: opt.step, loss });
        if opt.step % schedule.sample_every == 0 && opt.step < total {
            sample(opt.step, &work.join("samples"))?;
        }
        if schedule.keep_at.contains(&opt.step) {
            save(&opt)?;
            saved = Instant::now();
            for file in std::iter::once(name).chain(companions.iter().map(|(c, _)| *c)) {
                let from = work.join(format!("{file}.checkpoint.safetensors"));
                let kept = work.join(format!("{file}.step{:06}.checkpoint.safetensors", opt.step));
                std::fs::copy(&from, &kept).map_err(|e| io_error("copy", &kept, e))?;
            }
        } else if saved.elapsed().as_secs() >= CHECKPOINT_SECS {
            save(&opt)?;
            saved = Instant::now();
        }
    }
    save(&opt)?;
    sample(opt.step, &work.join("samples"))?;
    Ok(opt)
}

/// Saves `tensors` as safetensors (atomically, so a crash never leaves half a model).
pub(crate) fn save_weights(tensors: &std::collections::HashMap<String, Tensor>, path: &Path) -> Result<(), TrainError> {
    crate::data::output::save_safetensors(tensors, path).map_err(|e| io_error("write", path, e))
}

/// Writes a small JSON report of a stage's measured figures (read by the model card).
pub(crate) fn write_metrics(ctx: &Context, stage: Stage, metrics: &serde_json::Value) -> Result<(), TrainError> {
    let path = ctx.path("train").join(format!("{}.json", stage.name()));
    let text = serde_json::to_string_pretty(metrics).map_err(|e| io_error("encode", &path, e))?;
    let mut file = File::create(&path).map_err(|e| io_error("create", &path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| io_error("write", &path, e))
}

/// Sets `key: value` at every place a YAML config has `key:`; where it has
/// none, adds it after each `scale_factor:` line, at the same indentation.
pub(crate) fn set_param(path: &std::path::Path, key: &str, value: &str) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error("read", path, e))?;
    let field = format!("{key}:");
    let has_key = text.lines().any(|line| line.trim_start().starts_with(&field));
    let mut rewritten = Vec::new();
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        if line.trim_start().starts_with(&field) {
            rewritten.push(format!("{indent}{field} {value}"));
            continue;
        }
        rewritten.push(line.to_string());
        if !has_key && line.trim_start().starts_with("scale_factor:") {
            rewritten.push(format!("{indent}{field} {value}"));
        }
    }
    std::fs::write(path, rewritten.join("\n") + "\n").map_err(|e| io_error("write", path, e))
}

#[cfg(test)]
mod tests;
