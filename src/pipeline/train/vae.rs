//! The autoencoder stage: the original AutoencoderKL, trained to reconstruct
//! synthetic photos (L1 plus an L1 on image gradients for sharp edges) with the
//! paper's small KL weight. It then sets the latent `scale_factor` in the
//! configs, as the original's `scale_by_std` does, so diffusion sees unit
//! variance, and the prior of the latents' channel means that the sampler
//! fills in for the narrow default UNets.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;

use super::{fit, io_error, save_weights, set_param, write_metrics, Context, FaceSet, Schedule, Stage, TrainError, TrainEvent, HELD_OUT_SEED, TRAIN_SEED};
use super::latents::gaussian_like;
use crate::diffusion::channel_means::ChannelMeanPrior;
use crate::model::autoencoder::AutoencoderKL;
use crate::model::config::ComposedConfig;
use crate::pipeline::generate::images_to_frames;

/// Training faces (the held-out ones come from another world seed).
pub const TRAIN_COUNT: usize = 8192;
const BATCH: usize = 8;
/// Relative to a per-pixel mean L1, the original's 1e-6 on a per-image sum.
const KL_WEIGHT: f64 = 1e-6;
const HELD_OUT: usize = 64;
/// Held-out photos the channel-mean prior is fitted to (a 3 x 3 covariance
/// wants more than the 64 that set the scale).
const PRIOR_COUNT: usize = 512;

pub fn train(ctx: &Context, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    let config = ComposedConfig::load(ctx.path("codiff.yaml"))?;
    let vae_config = config.first_stage().clone();
    let size = vae_config.ddconfig.resolution;
    sink(TrainEvent::Note(format!("vae: making {TRAIN_COUNT} synthetic faces at {size} px")));
    let faces = FaceSet::generate(TRAIN_SEED, TRAIN_COUNT, size);
    let held_out = FaceSet::generate(HELD_OUT_SEED, HELD_OUT, size);
    let vars = VarMap::new();
    let vb = ctx.var_builder(&vars, "vae");
    let vae = AutoencoderKL::new(vb.pp("first_stage_model"), &vae_config)?;
    let device = ctx.device.clone();
    let schedule = Schedule { steps: 500, lr: 5e-4, ema_decay: None, sample_every: 100 };
    let held_photos = held_out.photos(&(0..HELD_OUT).collect::<Vec<_>>(), &device)?;
    let opt = fit(
        ctx,
        Stage::Vae,
        "vae",
        &vars,
        &schedule,
        sink,
        |rng| loss(&vae, &faces.photos(&faces.draw(rng, BATCH), &device)?, rng),
        |step, samples| {
            let rec = vae.decode(&vae.encode(&held_photos.narrow(0, 0, 8)?)?.mean)?;
            let path = samples.join(format!("step{step:06}.png"));
            pairs_grid(&held_photos.narrow(0, 0, 8)?, &rec)?.save(&path).map_err(|e| io_error("write", &path, e))
        },
    )?;
    let weights = opt.final_weights();
    let psnr_db = held_out_psnr(&weights, &config, &held_out, &device)?;
    let vae = AutoencoderKL::new(VarBuilder::from_tensors(weights.clone(), DType::F32, &device).pp("first_stage_model"), &vae_config)?;
    // Held-out samples depend only on their index, so the first HELD_OUT of
    // these are the PSNR photos: the scale comes from them (one batch, as
    // the original's `scale_by_std`), the channel-mean prior from all.
    let prior_faces = FaceSet::generate(HELD_OUT_SEED, PRIOR_COUNT, size);
    let mut means = Vec::new();
    for chunk in (0..PRIOR_COUNT).collect::<Vec<_>>().chunks(64) {
        means.push(vae.encode(&prior_faces.photos(chunk, &device)?)?.mean);
    }
    let latents = Tensor::cat(&means, 0)?;
    let spread = latents.narrow(0, 0, HELD_OUT)?.flatten_all()?.var(0)?.sqrt()?.to_scalar::<f32>()? as f64;
    let scale_factor = 1.0 / spread;
    // The sampler fills in these channel means for the narrow default UNets (see [`ChannelMeanPrior`]).
    let mut prior = ChannelMeanPrior::fit(&(latents * scale_factor)?)?;
    let round = |v: &mut f64| *v = (*v * 1e6).round() / 1e6;
    prior.mean.iter_mut().chain(prior.covariance.iter_mut().flatten()).for_each(round);
    let prior_yaml = serde_json::to_string(&prior).map_err(|e| TrainError::Io(e.to_string()))?;
    for name in ["codiff.yaml", "mask.yaml", "text.yaml"] {
        let path = ctx.path(name);
        set_param(&path, "scale_factor", &format!("{scale_factor:.6}"))?;
        set_param(&path, "channel_mean_prior", &prior_yaml)?;
    }
    sink(TrainEvent::Note(format!("vae: held-out PSNR {psnr_db:.2} dB; latent std {spread:.4}, scale_factor {scale_factor:.5}; channel means {prior_yaml}")));
    write_metrics(ctx, Stage::Vae, &serde_json::json!({ "held_out_psnr_db": psnr_db, "held_out_count": HELD_OUT, "latent_std": spread, "scale_factor": scale_factor, "steps": opt.step, "batch": BATCH }))?;
    save_weights(&weights, &ctx.path(Stage::Vae.output()))
}

/// The autoencoder's training loss on photos `x`: L1 and image-gradient L1
/// of the reconstruction from a posterior sample, plus the weighted KL term.
pub(crate) fn loss(vae: &AutoencoderKL, x: &Tensor, rng: &mut impl rand::Rng) -> candle_core::Result<Tensor> {
    let posterior = vae.encode(x)?;
    let z = posterior.sample(&gaussian_like(&posterior.mean, rng)?)?;
    let rec = vae.decode(&z)?;
    let kl = ((posterior.mean.sqr()? + posterior.logvar.exp()?)? - 1.0 - &posterior.logvar)?;
    let kl = (kl.sum_all()? * (0.5 * KL_WEIGHT / x.elem_count() as f64))?;
    reconstruction_loss(&rec, x)? + kl
}

/// L1 plus image-gradient L1 between a reconstruction and its photos.
fn reconstruction_loss(rec: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    (rec - x)?.abs()?.mean_all()? + gradient_l1(rec, x)?
}

/// PSNR (dB, images in [0, 1]) of every held-out photo encoded to its
/// posterior mean and decoded by the autoencoder in `weights`.
fn held_out_psnr(weights: &HashMap<String, Tensor>, config: &ComposedConfig, faces: &FaceSet, device: &candle_core::Device) -> Result<f64, TrainError> {
    let vae = AutoencoderKL::new(VarBuilder::from_tensors(weights.clone(), DType::F32, device).pp("first_stage_model"), config.first_stage())?;
    let mut squared_error = 0f64;
    for chunk in (0..faces.len()).collect::<Vec<_>>().chunks(16) {
        let x = faces.photos(chunk, device)?;
        let rec = vae.decode(&vae.encode(&x)?.mean)?.clamp(-1f32, 1f32)?;
        squared_error += ((rec - &x)? / 2.0)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let size = faces.size;
    Ok(-10.0 * (squared_error / (faces.len() * 3 * size * size) as f64).log10())
}

/// Mean L1 distance between the horizontal and vertical differences of two image batches.
fn gradient_l1(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let diff = |x: &Tensor, dim: usize| -> candle_core::Result<Tensor> {
        let n = x.dim(dim)?;
        x.narrow(dim, 1, n - 1)? - x.narrow(dim, 0, n - 1)?
    };
    let dx = (diff(a, 3)? - diff(b, 3)?)?.abs()?.mean_all()?;
    let dy = (diff(a, 2)? - diff(b, 2)?)?.abs()?.mean_all()?;
    dx + dy
}

/// Two rows of images in [-1, 1], `top` above `bottom`.
pub(crate) fn pairs_grid(top: &Tensor, bottom: &Tensor) -> Result<RgbImage, TrainError> {
    let rows = [top, bottom].map(|t| images_to_frames(t).map_err(|e| TrainError::Io(e.to_string())));
    let [top, bottom] = rows;
    let (top, bottom) = (top?, bottom?);
    let frame = crate::data::image::vstack(&[crate::data::image::hstack(&top), crate::data::image::hstack(&bottom)]);
    RgbImage::from_raw(frame.width as u32, frame.height as u32, frame.pixels).ok_or_else(|| TrainError::Io("bad grid".into()))
}

/// The trained autoencoder from its stage output, at `first_stage_model`.
pub(crate) fn load(ctx: &Context, config: &ComposedConfig) -> Result<(AutoencoderKL, HashMap<String, Tensor>), TrainError> {
    let path = ctx.require(Stage::Vae, "this")?;
    let weights = candle_core::safetensors::load(&path, &ctx.device)?;
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &ctx.device);
    Ok((AutoencoderKL::new(vb.pp("first_stage_model"), config.first_stage())?, weights))
}
