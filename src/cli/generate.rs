//! `codiff generate`: one mask and one caption to faces, as the original `generate.py`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::data::image::{hstack, images_to_frames, influence_heatmap, save_png_with_text, scalar_maps, upscale, vstack, RgbFrame};
use crate::data::image_params::save_png_with_params;
use crate::data::mask::Mask;
use crate::diffusion::collaborate::{Combination, CombineMode, PostProcess};
use crate::diffusion::sampler::Step;
use crate::model::collaborative::{CollaborativeModel, LoadOptions};
use crate::model::precision::WeightsDtype;
use crate::pipeline::generate::{GenerateError, GenerateRequest, Prepared};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// The face mask: a palette or index PNG (pixel value = class), or RGB in the palette colours.
    #[arg(long)]
    pub mask: PathBuf,
    /// The caption, e.g. "This man has beard of medium length. He is in his thirties."
    #[arg(long)]
    pub text: String,
    /// Where to write the image (with --batch B > 1: OUT-0.png ... OUT-(B-1).png).
    #[arg(long)]
    pub out: PathBuf,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// DDIM eta (1.0 as the original generation script; 0 is deterministic).
    #[arg(long, default_value_t = 1.0)]
    pub eta: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = CombineMode::Collaborative)]
    pub mode: CombineMode,
    /// Variations to sample at once (seeds SEED, SEED + 1, ...).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Writes, per step, the decoded predicted x0 and both influence maps as image strips.
    #[arg(long)]
    pub intermediates: Option<PathBuf>,
    /// Precision the weights are kept in: f16 halves their memory (computation stays f32).
    #[arg(long, value_enum, default_value_t = WeightsDtype::F32)]
    pub weights_dtype: WeightsDtype,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Most images one run samples at once; more only runs out of memory.
const MAX_BATCH: usize = 64;

/// Refuses arguments that could only give a black image or no image, and
/// outputs that would overwrite an input or, without --force, any file.
fn check_args(args: &GenerateArgs, files: &crate::model::defaults::ModelFiles) -> anyhow::Result<()> {
    use super::output::{check_count, check_outputs, check_range, one_of};
    check_count("--steps", args.steps, 1000, "the model was trained on 1000 noise levels")?;
    check_range("--eta", args.eta, 0.0..=1.0, "0 samples deterministically, 1 adds as much noise as DDPM")?;
    check_count("--batch", args.batch, MAX_BATCH, "sample more images in several runs")?;
    let outputs: Vec<PathBuf> = (0..args.batch).map(|k| one_of(&args.out, &format!("-{k}"), args.batch)).collect();
    check_outputs(&outputs, &[&args.mask, &files.config, &files.weights], args.force)
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let files = args.model.files()?;
    check_args(&args, &files)?;
    let mask = Mask::load_square(&args.mask)?;
    let device = super::device()?;
    eprintln!("loading {}", files.weights.display());
    let model = CollaborativeModel::load(&files.config, &files.weights, &device, LoadOptions { precision: args.weights_dtype, ..Default::default() })?;
    let request = GenerateRequest {
        mask,
        text: args.text.clone(),
        steps: args.steps,
        eta: args.eta,
        seed: args.seed,
        mode: args.mode,
        post: PostProcess::default(),
        batch: args.batch,
    };
    let images = generate_with_progress(&model, &request, args.intermediates.as_deref())?;

    for (k, image) in images.iter().enumerate() {
        let out = super::output::one_of(&args.out, &format!("-{k}"), images.len());
        save_png_with_params(&out, image, &request.image_params(k, Some(files.name())))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// Samples with a progress bar; optionally writes each step's strips.
fn generate_with_progress(
    model: &CollaborativeModel,
    request: &GenerateRequest,
    intermediates: Option<&Path>,
) -> anyhow::Result<Vec<RgbFrame>> {
    let mut prepared = Prepared::new(model, request)?;
    for warning in std::mem::take(&mut prepared.warnings) {
        eprintln!("warning: {warning}");
    }
    if let Some(dir) = intermediates {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bar = super::progress::bar(prepared.ddim.len(), "{bar:40} step {pos}/{len} (t = {msg}) {elapsed} < {eta}");
    let images = prepared.generate(model, super::interrupted(), |step| {
        bar.set_message(step.t.to_string());
        bar.inc(1);
        if let Some(dir) = intermediates {
            write_step_strips(model, step, dir).map_err(|e| GenerateError::Output(format!("{e:#}")))?;
        }
        Ok(())
    });
    if let Err(GenerateError::Cancelled) = images {
        // Not `finish`, which would move the bar to its end.
        bar.abandon();
        anyhow::bail!("stopped by Ctrl-C after step {} of {}; no image was written", bar.position(), bar.length().unwrap_or_default());
    }
    bar.finish();
    Ok(images?)
}

/// One file per step: a row per batch item of [decoded pred_x0 | w_mask | w_text].
fn write_step_strips(model: &CollaborativeModel, step: &Step<Combination>, dir: &Path) -> anyhow::Result<()> {
    let decoded = images_to_frames(&model.decode(&step.pred_x0)?)?;
    let combination = &step.prediction;
    let factor = decoded.first().map_or(1, |d| d.width) / combination.w_mask.dim(3)?;
    let heatmaps = |w: &candle_core::Tensor| -> anyhow::Result<Vec<RgbFrame>> {
        Ok(scalar_maps(w)?.iter().map(|m| upscale(&influence_heatmap(m), factor)).collect())
    };
    let (w_mask, w_text) = (heatmaps(&combination.w_mask)?, heatmaps(&combination.w_text)?);
    let rows: Vec<RgbFrame> =
        decoded.into_iter().zip(w_mask).zip(w_text).map(|((x0, m), t)| hstack(&[x0, m, t])).collect();
    let path = dir.join(format!("step_{:03}_t{:04}.png", step.index, step.t));
    save_png_with_text(&path, &vstack(&rows), &[("columns", "pred_x0, w_mask, w_text".into())])?;
    Ok(())
}
