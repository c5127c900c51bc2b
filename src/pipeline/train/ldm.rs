//! The mask-driven and text-driven latent diffusion stages: the original
//! LatentDiffusion recipe (eps prediction, linear schedule, cross-attention
//! context from a condition encoder trained jointly with the UNet), on the
//! cached latents of the synthetic faces, with the autoencoder frozen.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::Rng;

use super::latents::LatentSet;
use super::{fit, Network, io_error, save_weights, write_metrics, Context, FaceSet, Schedule, Stage, TrainError, TrainEvent, HELD_OUT_SEED};
use crate::data::synth::sheet::{contact_sheet, SheetEntry};
use crate::data::image::images_to_frames;
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::diffusion::sampler::Sampler;
use crate::diffusion::schedule::NoiseSchedule;
use crate::model::autoencoder::AutoencoderKL;
use crate::model::collaborative::{denoising_loss, Condition, ConditionEncoder, LatentDiffusion, ModelError, NULL_CAPTION};
use crate::model::config::{ComposedConfig, LdmConfig};
use crate::model::mask_encoder::MaskEncoder;
use crate::model::unet::UNetModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Mask,
    Text,
}

impl Modality {
    fn stage(self) -> Stage {
        match self {
            Modality::Mask => Stage::Mask,
            Modality::Text => Stage::Text,
        }
    }

    pub fn config(self, config: &ComposedConfig) -> &LdmConfig {
        match self {
            Modality::Mask => &config.mask,
            Modality::Text => &config.text,
        }
    }
}

const BATCH: usize = 16;
/// The share of training items whose condition is dropped for the null one,
/// so that the model also learns the unconditional noise that
/// classifier-free guidance contrasts with. Stable Diffusion drops a tenth;
/// a fifth lets a fine-tune of a conditional model learn it in a few
/// thousand steps.
const NULL_CONDITION_SHARE: f64 = 0.2;
const SAMPLES: usize = 8;
const SAMPLE_STEPS: usize = 25;
/// The sample grids' DDIM eta: 1, as the studio and the original generation
/// script sample (at eta 0 these small models turn about half the seeds into colour blobs).
pub(crate) const SAMPLE_ETA: f64 = 1.0;

pub fn train(ctx: &Context, modality: Modality, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    let stage = modality.stage();
    let config = ComposedConfig::load(ctx.path("codiff.yaml"))?;
    let ldm = modality.config(&config);
    let set = LatentSet::load(ctx, &config, sink)?;
    let (vae, vae_weights) = super::vae::load(ctx, &config)?;
    let held_out = FaceSet::generate(HELD_OUT_SEED, SAMPLES, set.faces.size);
    let schedule = NoiseSchedule::from_config(&config.diffusion.schedule).map_err(|e| TrainError::Io(e.to_string()))?;
    let vars = VarMap::new();
    let vb = ctx.var_builder(&vars, stage.name());
    let unet = UNetModel::new(vb.pp("model.diffusion_model"), &ldm.unet)?;
    let encoder = ConditionEncoder::new(vb.pp("cond_stage_model"), &ldm.cond_stage)?;
    let parameters = parameter_count(&vars);
    sink(TrainEvent::Note(format!("{}: {parameters} trainable parameters (UNet and condition encoder)", stage.name())));
    let device = ctx.device.clone();
    // The shipped 64-px models needed 14,000-16,500 steps; 12,000 spans several
    // resumed stretches, each cooling down towards the same end.
    let plan = Schedule { steps: 12000, lr: 3e-4, ema_decay: Some(0.999), sample_every: 500, keep_at: &[] };
    let held: Vec<usize> = (0..SAMPLES).collect();
    let opt = fit(
        ctx,
        Network { stage, name: stage.name(), vars: &vars, companions: &[] },
        &plan,
        sink,
        |_, rng| {
            let indices = set.faces.draw(rng, BATCH);
            let z0 = set.latents(&indices, rng)?;
            let items: Vec<Option<usize>> = indices.iter().map(|&i| (!rng.random_bool(NULL_CONDITION_SHARE)).then_some(i)).collect();
            let context = encode_items(&encoder, &set.faces, &items, &device)?;
            denoising_loss(&unet, ldm, &schedule, &z0, &context, rng)
        },
        |step, samples| {
            let context = encode_batch(&encoder, &held_out, &held, &device)?;
            let z0 = sample(&unet, ldm, &context, &schedule, &config, step as u64)?;
            let path = samples.join(format!("step{step:06}.png"));
            samples_sheet(&vae, &z0, &config, &held_out).and_then(|s| s.save(&path).map_err(|e| io_error("write", &path, e)))
        },
    )?;
    let mut weights = opt.final_weights();
    weights.extend(vae_weights);
    let out = ctx.path(stage.output());
    save_weights(&weights, &out)?;
    // The file must load with the same strict loader users' checkpoints go through.
    LatentDiffusion::load(&ldm.path, &out, &ctx.device)?;
    write_metrics(ctx, stage, &serde_json::json!({ "parameters": parameters, "steps": opt.step, "batch": BATCH, "lr": plan.lr }))?;
    Ok(())
}

/// The cross-attention context of a batch of training items.
pub(crate) fn encode_batch(encoder: &ConditionEncoder, faces: &FaceSet, indices: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    let items: Vec<Option<usize>> = indices.iter().copied().map(Some).collect();
    encode_items(encoder, faces, &items, device)
}

/// The cross-attention context of training items, `None` standing for the
/// null condition ([`ConditionEncoder::encode_null`]).
pub(crate) fn encode_items(encoder: &ConditionEncoder, faces: &FaceSet, items: &[Option<usize>], device: &Device) -> candle_core::Result<Tensor> {
    match encoder {
        ConditionEncoder::Mask { encoder, mask_embed_dim } => {
            let rows = items
                .iter()
                .map(|item| match item {
                    Some(i) => MaskEncoder::one_hot(&faces.masks[*i], *mask_embed_dim, device),
                    None => MaskEncoder::null_one_hot(*mask_embed_dim, device),
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            encoder.forward(&Tensor::cat(&rows, 0)?)
        }
        ConditionEncoder::Text { .. } => {
            let captions = items.iter().map(|item| item.map_or(NULL_CAPTION, |i| faces.captions[i].as_str()).to_string()).collect();
            let encoded = encoder.encode(&Condition::Text(captions), items.len(), device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            Ok(encoded.context)
        }
    }
}

/// DDIM sampling with one UNet, for the stage's sample grids.
fn sample(unet: &UNetModel, ldm: &LdmConfig, context: &Tensor, schedule: &NoiseSchedule, config: &ComposedConfig, seed: u64) -> Result<Tensor, ModelError> {
    let ddim = DdimSchedule::new(schedule, SAMPLE_STEPS, SAMPLE_ETA).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let batch = context.dim(0)?;
    let d = &config.diffusion;
    let mut noise = NoiseSource::seeded((0..batch as u64).map(|k| seed * 1000 + k));
    let x_t = noise.start_latent(&[batch, d.latent_channels, d.latent_size, d.latent_size], context.device())?;
    let sampler = Sampler { schedule, ddim: &ddim, corrections: &d.corrections };
    let never = AtomicBool::new(false);
    let predict = |x: &Tensor, t: usize| {
        let output = unet.forward(x, &Tensor::full(t as f32, batch, context.device())?, context)?;
        ldm.parameterization.eps_at(&output, x, schedule.alphas_cumprod()[t])
    };
    sampler.sample(x_t, &mut noise, &never, |x, t| Ok::<_, ModelError>(predict(x, t)?), |_| Ok(()))
}

/// Decoded samples beside the masks and captions they were asked for.
pub(crate) fn samples_sheet(vae: &AutoencoderKL, z0: &Tensor, config: &ComposedConfig, faces: &FaceSet) -> Result<image::RgbImage, TrainError> {
    let images = vae.decode(&(z0 / config.diffusion.scale_factor)?)?;
    let frames = images_to_frames(&images).map_err(|e| TrainError::Io(e.to_string()))?;
    let photos: Vec<image::RgbImage> = frames
        .into_iter()
        .map(|f| image::RgbImage::from_raw(f.width as u32, f.height as u32, f.pixels).ok_or_else(|| TrainError::Io("bad frame".into())))
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = (0..photos.len()).map(|i| format!("held-out {i}")).collect();
    let entries: Vec<SheetEntry> = photos
        .iter()
        .enumerate()
        .map(|(i, image)| SheetEntry { name: &names[i], image, mask: &faces.masks[i], caption: &faces.captions[i] })
        .collect();
    Ok(contact_sheet(&entries))
}

pub(crate) fn parameter_count(vars: &VarMap) -> usize {
    vars.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// A trained uni-modal model's weights from its stage output.
pub(crate) fn load_weights(ctx: &Context, modality: Modality) -> Result<HashMap<String, Tensor>, TrainError> {
    let path = ctx.require(modality.stage(), "this")?;
    Ok(candle_core::safetensors::load(&path, &ctx.device).map_err(ModelError::Tensor)?)
}
