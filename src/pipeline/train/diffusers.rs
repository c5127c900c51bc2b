//! The dynamic diffusers stage, the paper's Algorithm 1: both latent diffusion
//! models (UNets, condition encoders, autoencoder) frozen, only the two
//! diffusers train. Each predicts a map from x_t, t and its own condition; a
//! plain softmax over the two maps weights the two noise predictions per
//! pixel; the loss is the MSE between that combination and the true noise,
//! with t uniform over 0..T. The stage ends by assembling the composed
//! checkpoint the studio opens and fitting, for the sampler, how far to
//! trust the two models' x0 detail near t = 1000 (`x0_detail_factors`).

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::latents::LatentSet;
use super::ldm::{encode_batch, load_weights, parameter_count, samples_sheet, Modality};
use super::{fit, Network, io_error, save_weights, set_param, write_metrics, Context, FaceSet, Schedule, Stage, TrainError, TrainEvent, HELD_OUT_SEED};
use crate::diffusion::collaborate::{combine, CombineMode, Influence, PostProcess};
use crate::diffusion::modality::PerModality;
use crate::diffusion::corrections::NoiseCorrections;
use crate::diffusion::parameterization::Parameterization;
use crate::diffusion::ddim::{predicted_x0, renoised, DdimSchedule, NoiseSource};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::x0_detail::DetailFactors;
use crate::model::autoencoder::AutoencoderKL;
use crate::model::collaborative::{side_by_side, CollaborativeModel, Collaboration, ConditionEncoder, Contexts, ModelError};
use crate::model::config::ComposedConfig;
use crate::model::unet::UNetModel;

const BATCH: usize = 8;
const SAMPLES: usize = 8;

/// Where each uni-modal checkpoint's parts go in the composed one.
const MASK_PREFIXES: [(&str, &str); 2] =
    [("model.diffusion_model.", "model.seg_mask_unet.diffusion_model."), ("cond_stage_model.", "cond_stage_model.seg_mask_cond_stage_model.")];
const TEXT_PREFIXES: [(&str, &str); 2] =
    [("model.diffusion_model.", "model.text_unet.diffusion_model."), ("cond_stage_model.", "cond_stage_model.text_cond_stage_model.")];

pub fn train(ctx: &Context, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    let config = ComposedConfig::load(ctx.path("codiff.yaml"))?;
    let mut composed = renamed(load_weights(ctx, Modality::Mask)?, &MASK_PREFIXES);
    composed.extend(renamed(load_weights(ctx, Modality::Text)?, &TEXT_PREFIXES));
    let (vae, vae_weights) = super::vae::load(ctx, &config)?;
    composed.extend(vae_weights);
    let set = LatentSet::load(ctx, &config, sink)?;
    let frozen = VarBuilder::from_tensors(composed.clone(), DType::F32, &ctx.device);
    let mask_unet = UNetModel::new(frozen.pp("model.seg_mask_unet.diffusion_model"), &config.mask.unet)?;
    let text_unet = UNetModel::new(frozen.pp("model.text_unet.diffusion_model"), &config.text.unet)?;
    let mask_encoder = ConditionEncoder::new(frozen.pp("cond_stage_model.seg_mask_cond_stage_model"), &config.mask.cond_stage)?;
    let text_encoder = ConditionEncoder::new(frozen.pp("cond_stage_model.text_cond_stage_model"), &config.text.cond_stage)?;
    let schedule = NoiseSchedule::from_config(&config.diffusion.schedule).map_err(|e| TrainError::Io(e.to_string()))?;

    let vars = VarMap::new();
    let vb = ctx.var_builder(&vars, "diffusers").pp("model");
    let mask_diffuser = UNetModel::new(vb.pp("seg_mask_confidence_predictor.diffusion_model"), &config.diffuser)?;
    let text_diffuser = UNetModel::new(vb.pp("text_confidence_predictor.diffusion_model"), &config.diffuser)?;
    let parameters = parameter_count(&vars);
    sink(TrainEvent::Note(format!("diffusers: {parameters} trainable parameters (both dynamic diffusers)")));
    let held_out = FaceSet::generate(HELD_OUT_SEED, SAMPLES, set.faces.size);
    let device = ctx.device.clone();
    let plan = Schedule { steps: 600, lr: 2e-4, ema_decay: Some(0.99), sample_every: usize::MAX, keep_at: &[] };
    let opt = fit(
        ctx,
        Network { stage: Stage::Diffusers, name: "diffusers", vars: &vars, companions: &[] },
        &plan,
        sink,
        |_, rng| {
            let indices = set.faces.draw(rng, BATCH);
            let z0 = set.latents(&indices, rng)?;
            let contexts = Contexts {
                mask: encode_batch(&mask_encoder, &set.faces, &indices, &device)?,
                text: encode_batch(&text_encoder, &set.faces, &indices, &device)?,
            };
            let collaborators = PerModality { mask: (&mask_unet, config.mask.parameterization), text: (&text_unet, config.text.parameterization) };
            loss(collaborators, PerModality { mask: &mask_diffuser, text: &text_diffuser }, &z0, &contexts, &schedule, rng)
        },
        |_, _| Ok(()),
    )?;
    composed.extend(opt.final_weights());
    let out = ctx.path(Stage::Diffusers.output());
    save_weights(&composed, &out)?;
    let factors = fit_detail_factors(PerModality { mask: &mask_unet, text: &text_unet }, [&mask_encoder, &text_encoder], &vae, &config, &schedule, ctx)?;
    let factors_yaml = serde_json::to_string(&factors).map_err(|e| TrainError::Io(e.to_string()))?;
    for name in ["codiff.yaml", "mask.yaml", "text.yaml"] {
        set_param(&ctx.path(name), "x0_detail_factors", &factors_yaml)?;
    }
    sink(TrainEvent::Note(format!("diffusers: x0 detail factors {factors_yaml}")));
    // Loads through the studio's own strict path, then samples a grid with it.
    let model = CollaborativeModel::load(&config.path, &out, &ctx.device, Default::default())?;
    let sheet_path = ctx.work_dir(Stage::Diffusers)?.join("samples").join("collaborative.png");
    let ddim = DdimSchedule::new(&model.schedule, 50, super::ldm::SAMPLE_ETA).map_err(|e| TrainError::Io(e.to_string()))?;
    let (post, never) = (PostProcess::default(), std::sync::atomic::AtomicBool::new(false));
    let mut z0 = Vec::new();
    for i in 0..SAMPLES {
        let (contexts, _) = model.encode_conditions(&held_out.masks[i], std::slice::from_ref(&held_out.captions[i]))?;
        let collaboration = Collaboration::new(&model, &contexts, CombineMode::Collaborative, &post);
        z0.push(collaboration.sample(&ddim, &mut NoiseSource::seeded([i as u64]), &never, |_| Ok::<_, ModelError>(()))?);
    }
    let sheet = samples_sheet(&model.vae, &Tensor::cat(&z0, 0)?, &config, &held_out)?;
    sheet.save(&sheet_path).map_err(|e| io_error("write", &sheet_path, e))?;
    write_metrics(ctx, Stage::Diffusers, &serde_json::json!({ "parameters": parameters, "steps": opt.step, "batch": BATCH, "lr": plan.lr }))?;
    Ok(())
}

/// Held-out photos the x0 detail factors are fitted on, and the timesteps they are fitted at.
const FACTOR_PHOTOS: usize = 64;
const FACTOR_STEP: usize = 50;

/// The least-squares factor for the predicted x0's detail (see
/// [`DetailFactors`]) at every 50th timestep and the last, pooled over both
/// latent diffusion models given their own conditions, with the config's
/// channel-mean prior already applied as the sampler applies it.
fn fit_detail_factors(
    unets: PerModality<&UNetModel>,
    encoders: [&ConditionEncoder; 2],
    vae: &AutoencoderKL,
    config: &ComposedConfig,
    schedule: &NoiseSchedule,
    ctx: &Context,
) -> Result<DetailFactors, TrainError> {
    let device = &ctx.device;
    let faces = FaceSet::generate(HELD_OUT_SEED, FACTOR_PHOTOS, config.first_stage().ddconfig.resolution);
    let indices: Vec<usize> = (0..FACTOR_PHOTOS).collect();
    let z0 = (vae.encode(&faces.photos(&indices, device)?)?.mean * config.diffusion.scale_factor)?;
    let contexts = [encode_batch(encoders[0], &faces, &indices, device)?, encode_batch(encoders[1], &faces, &indices, device)?];
    // The sampler's corrections as they stand before these factors (a rerun must not fit on top of old ones).
    let before_factors = NoiseCorrections { x0_detail_factors: None, ..config.diffusion.corrections.clone() };
    let last = schedule.num_timesteps() - 1;
    let timesteps: Vec<usize> = (0..last).step_by(FACTOR_STEP).chain([last]).collect();
    let mut factors = Vec::new();
    for (k, &t) in timesteps.iter().enumerate() {
        let a = schedule.alphas_cumprod()[t];
        let eps = NoiseSource::seeded((0..FACTOR_PHOTOS as u64).map(|i| i * 1000 + k as u64)).start_latent(z0.dims(), device)?;
        let x_t = renoised(&z0, &eps, a, 0.0)?;
        let t_batch = Tensor::full(t as f32, FACTOR_PHOTOS, device)?;
        let mut predicted = Vec::new();
        for ((unet, ldm), context) in [(unets.mask, &config.mask), (unets.text, &config.text)].into_iter().zip(&contexts) {
            let eps_hat = ldm.parameterization.eps_at(&unet.forward(&x_t, &t_batch, context)?, &x_t, a)?;
            let eps_hat = before_factors.apply(&x_t, &eps_hat, a, t)?;
            predicted.push(predicted_x0(&x_t, &eps_hat, a)?);
        }
        let truth = Tensor::cat(&[&z0, &z0], 0)?;
        let factor = DetailFactors::fit_one(&Tensor::cat(&predicted, 0)?, &truth)?;
        factors.push((t, (factor * 1e4).round() / 1e4));
    }
    Ok(DetailFactors(factors))
}

/// Algorithm 1's loss: the frozen collaborators' noise predictions weighted
/// per pixel by the softmax over the two diffusers' maps, against the true
/// noise; measured in the collaborators' own parameterization where they
/// share one (under v, the error of the combined v), since under v an eps
/// error near t = 1000 is scaled down by sqrt(a) and would teach the
/// diffusers nothing about the steps that lay the face out.
pub(crate) fn loss(
    collaborators: PerModality<(&UNetModel, Parameterization)>,
    diffusers: PerModality<&UNetModel>,
    z0: &Tensor,
    contexts: &Contexts,
    schedule: &NoiseSchedule,
    rng: &mut impl rand::Rng,
) -> candle_core::Result<Tensor> {
    let noised = schedule.noised(z0, rng)?;
    let outputs = side_by_side(collaborators.map(|(unet, _)| unet), &noised.x_t, &noised.t, contexts)?;
    let eps_hat = outputs.zip(collaborators.map(|(_, p)| p)).map(|(out, p)| p.eps(&out, &noised.x_t, &noised.levels)).transpose()?;
    let maps = side_by_side(diffusers, &noised.x_t, &noised.t, contexts)?;
    // The sampler's combination in its training form: the plain softmax, which is differentiable.
    let combined = combine(&eps_hat.mask, &eps_hat.text, Influence::Diffusers(maps.as_ref()), 0, CombineMode::Softmax, &PostProcess::default())?;
    let measured_in = if collaborators.mask.1 == collaborators.text.1 { collaborators.mask.1 } else { Parameterization::Eps };
    let per_item = (combined.eps - &noised.eps)?.sqr()?.flatten_from(1)?.mean(1)?;
    (per_item * measured_in.error_scale(&noised.levels)?.sqr()?)?.mean_all()
}

/// `weights` with each key's prefix replaced by its place in the composed checkpoint; keys under no listed prefix are dropped.
fn renamed(weights: HashMap<String, Tensor>, prefixes: &[(&str, &str)]) -> HashMap<String, Tensor> {
    weights
        .into_iter()
        .filter_map(|(key, tensor)| {
            prefixes.iter().find_map(|(from, to)| key.strip_prefix(from).map(|rest| (format!("{to}{rest}"), tensor.clone())))
        })
        .collect()
}
