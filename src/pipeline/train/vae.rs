//! The autoencoder stage: the original AutoencoderKL trained with the
//! original LDM recipe (`LPIPSWithDiscriminator`): L1 plus an L1 on image
//! gradients (for edges), the paper's small KL weight and, once plain
//! reconstruction has found the faces and their colours, a perceptual
//! distance (from a network trained here, see `perceptual`) and a PatchGAN
//! discriminator whose term is weighted adaptively. From step 0 the
//! perceptual term held the reconstructions at blurred average colours. It then sets the latent `scale_factor` in the
//! configs, as the original's `scale_by_std` does, so diffusion sees unit
//! variance, and the prior of the latents' channel means that the sampler
//! fills in for narrow UNets.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;

use super::adversarial::{adaptive_weight, PatchDiscriminator};
use super::perceptual::PerceptualNet;
use super::{fit, Network, io_error, save_weights, set_param, write_metrics, Context, FaceSet, Schedule, Stage, TrainError, TrainEvent, HELD_OUT_SEED, TRAIN_SEED};
use crate::diffusion::schedule::gaussian_like;
use crate::model::optim::AdamW;
use crate::diffusion::channel_means::ChannelMeanPrior;
use crate::model::autoencoder::AutoencoderKL;
use crate::model::config::ComposedConfig;
use crate::data::image::images_to_frames;

/// Training faces (the held-out ones come from another world seed).
pub const TRAIN_COUNT: usize = 8192;
/// Whole photos, never crops: with 32 channels the decoder's last GroupNorm
/// normalises each channel alone, so a flat crop (all background) reaches
/// `conv_out` as zeros whatever its colour, and the crops trained the decoder
/// to paint every flat region one average colour. Two 128-px photos hold the
/// pixels of eight 64-px crops.
const BATCH: usize = 2;
/// Relative to a per-pixel mean L1, the original's 1e-6 on a per-image sum.
const KL_WEIGHT: f64 = 1e-6;
/// The step from which the perceptual distance counts, once L1 has found
/// the faces and their colours (its loss left a plateau only at step ~500,
/// and L1 alone still gained 1 dB from step 1,000 to 1,500).
pub const PERCEPTUAL_START: usize = 2000;
/// The distance was 0.85 on the held-out grid at step 500 against 0.27 for
/// the pixel terms together; at 0.25 it starts as about their equal, where
/// at the original's 1.0 it would outweigh them threefold as it did in the
/// runs it held at blurred average colours.
const PERCEPTUAL_WEIGHT: f64 = 0.25;
/// The step from which the discriminator trains and the generator sees it
/// (the original's `disc_start`, scaled to this run's length), a thousand
/// steps after the perceptual term so that each switch is measured alone.
pub const DISC_START: usize = 3000;
/// Steps over which the generator's adversarial term ramps in from zero.
/// Switched on at full weight, the untrained discriminator's first verdicts
/// tinted every face and its term ran away (loss -11.5 within 533 steps).
const DISC_RAMP: usize = 500;
/// The most the adaptive weight may scale the adversarial gradient at the
/// last layer, relative to the reconstruction's. The original clamps the
/// ratio at 1e4, which is no bound once the generator term's gradient
/// vanishes on a fooled discriminator.
const MAX_ADAPTIVE_RATIO: f64 = 1.0;
/// From this step the cap is a tenth: at 1 the term had tinted every
/// held-out face green by step 4,500 (the discriminator's group norms make
/// it blind to a shift of the whole image's colour, which only L1 holds).
const COLOUR_HOLD_START: usize = 4747;

fn max_adaptive_ratio(step: usize) -> f64 {
    if step < COLOUR_HOLD_START { MAX_ADAPTIVE_RATIO } else { MAX_ADAPTIVE_RATIO / 10.0 }
}
const DISC_LR: f64 = 2e-4;
const HELD_OUT: usize = 64;
/// Held-out photos the channel-mean prior is fitted to (a 3 x 3 covariance
/// wants more than the 64 that set the scale).
const PRIOR_COUNT: usize = 512;
/// The decoder's last layer, where the adaptive weight compares gradients.
const LAST_LAYER: &str = "first_stage_model.decoder.conv_out.weight";
/// The posterior log-variance a fresh autoencoder starts from. At the usual
/// zero (a standard deviation of 1) the sampled latent is mostly noise for
/// hundreds of steps, and the decoder learns little but the average colour
/// (blurred, desaturated grids); the original's 100k+ steps hide that.
const INITIAL_LOGVAR: f32 = -6.0;

pub fn train(ctx: &Context, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    let config = ComposedConfig::load(ctx.path("codiff.yaml"))?;
    let vae_config = config.first_stage().clone();
    let size = vae_config.ddconfig.resolution;
    let perceptual = PerceptualNet::load(ctx)?;
    sink(TrainEvent::Note(format!("vae: making {TRAIN_COUNT} synthetic faces at {size} px")));
    let faces = FaceSet::augmented(TRAIN_SEED, TRAIN_COUNT, size);
    let held_out = FaceSet::generate(HELD_OUT_SEED, HELD_OUT, size);
    let vars = VarMap::new();
    let vae = AutoencoderKL::new(ctx.var_builder(&vars, "vae").pp("first_stage_model"), &vae_config)?;
    start_with_small_posterior_noise(&vars)?;
    let disc_vars = VarMap::new();
    let criterion = AutoencoderLoss {
        perceptual: &perceptual,
        discriminator: PatchDiscriminator::new(ctx.var_builder(&disc_vars, "discriminator"))?,
        last_layer: variable(&vars, LAST_LAYER)?,
    };
    let disc_opt = RefCell::new(AdamW::new(&disc_vars, DISC_LR, None)?);
    let device = ctx.device.clone();
    // 5,200 steps: the stretch that had planned 6,000 gave the difference to
    // the latent diffusion models, which CPU hours bound more.
    let schedule = Schedule { steps: 5200, lr: 5e-4, ema_decay: None, sample_every: 250, keep_at: &[PERCEPTUAL_START, DISC_START] };
    let held_photos = held_out.photos(&(0..8).collect::<Vec<_>>(), &device)?;
    let opt = fit(
        ctx,
        Network { stage: Stage::Vae, name: "vae", vars: &vars, companions: &[("discriminator", &disc_opt)] },
        &schedule,
        sink,
        |step, rng| {
            criterion.loss(&vae, &faces.photos(&faces.draw(rng, BATCH), &device)?, step, &disc_opt, rng)
        },
        |step, samples| {
            let rec = reconstructed(&vae, &held_photos)?;
            let path = samples.join(format!("step{step:06}.png"));
            pairs_grid(&held_photos, &rec)?.save(&path).map_err(|e| io_error("write", &path, e))?;
            let Fidelity { psnr_db, gradient_energy_ratio } = fidelity([Ok((held_photos.clone(), rec.clone()))])?;
            let distance = perceptual.distance(&rec, &held_photos)?.to_scalar::<f32>()?;
            let log = samples.join("fidelity.csv");
            let line = format!("{step},{psnr_db:.3},{gradient_energy_ratio:.4},{distance:.4}\n");
            std::fs::OpenOptions::new().create(true).append(true).open(&log).and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes())).map_err(|e| io_error("write", &log, e))
        },
    )?;
    let weights = opt.final_weights();
    let vae = AutoencoderKL::new(VarBuilder::from_tensors(weights.clone(), DType::F32, &device).pp("first_stage_model"), &vae_config)?;
    let batches: Vec<usize> = (0..held_out.len()).collect();
    let fidelity = fidelity(batches.chunks(16).map(|chunk| {
        let x = held_out.photos(chunk, &device)?;
        let rec = reconstructed(&vae, &x)?;
        Ok((x, rec))
    }))?;
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
    let Fidelity { psnr_db, gradient_energy_ratio } = fidelity;
    sink(TrainEvent::Note(format!(
        "vae: held-out PSNR {psnr_db:.2} dB, gradient energy {gradient_energy_ratio:.3} of the photos'; latent std {spread:.4}, scale_factor {scale_factor:.5}; channel means {prior_yaml}"
    )));
    write_metrics(
        ctx,
        Stage::Vae,
        &serde_json::json!({ "held_out_psnr_db": psnr_db, "held_out_gradient_energy_ratio": gradient_energy_ratio, "held_out_count": HELD_OUT, "latent_std": spread, "scale_factor": scale_factor, "steps": opt.step, "batch": BATCH }),
    )?;
    save_weights(&weights, &ctx.path(Stage::Vae.output()))
}

/// Sets the log-variance half of the posterior's bias to [`INITIAL_LOGVAR`]
/// (a resumed run then loads its checkpoint over it).
fn start_with_small_posterior_noise(vars: &VarMap) -> Result<(), TrainError> {
    let bias = variable(vars, "first_stage_model.quant_conv.bias")?;
    let half = bias.dim(0)? / 2;
    let logvar = Tensor::full(INITIAL_LOGVAR, half, bias.device())?;
    bias.set(&Tensor::cat(&[bias.narrow(0, 0, half)?, logvar], 0)?)?;
    Ok(())
}

fn variable(vars: &VarMap, name: &str) -> Result<Var, TrainError> {
    let data = vars.data().lock().expect("the VarMap lock is never poisoned");
    data.get(name).cloned().ok_or_else(|| TrainError::Io(format!("the autoencoder has no {name}")))
}

/// The original's `LPIPSWithDiscriminator`, generator side.
pub(crate) struct AutoencoderLoss<'a> {
    pub perceptual: &'a PerceptualNet,
    pub discriminator: PatchDiscriminator,
    pub last_layer: Var,
}

impl AutoencoderLoss<'_> {
    /// The autoencoder's loss at `step` on photos `x`: L1 and image-gradient
    /// L1 of the reconstruction from a posterior sample (plus its perceptual
    /// distance from [`PERCEPTUAL_START`]), the weighted KL term and, from
    /// [`DISC_START`], the adaptively weighted generator term (after one step
    /// of the discriminator, with `disc_opt`, on this batch).
    pub fn loss(&self, vae: &AutoencoderKL, x: &Tensor, step: usize, disc_opt: &RefCell<AdamW>, rng: &mut impl rand::Rng) -> candle_core::Result<Tensor> {
        let posterior = vae.encode(x)?;
        let z = posterior.sample(&gaussian_like(&posterior.mean, rng)?)?;
        let features = vae.decode_features(&z)?;
        let rec = vae.decode_last_layer(&features)?;
        let kl = ((posterior.mean.sqr()? + posterior.logvar.exp()?)? - 1.0 - &posterior.logvar)?;
        let kl = (kl.sum_all()? * (0.5 * KL_WEIGHT / x.elem_count() as f64))?;
        let reconstruction = (self.reconstruction(&rec, x, step)? + kl)?;
        if step < DISC_START {
            return Ok(reconstruction);
        }
        disc_opt.borrow_mut().backward_step(&self.discriminator.hinge_loss(x, &rec)?)?;
        // The gradients at the last layer depend only on its input, so both
        // are taken through a copy of that layer on the detached features.
        let head = vae.decode_last_layer(&features.detach())?;
        let weight = adaptive_weight(&self.reconstruction(&head, x, step)?, &self.discriminator.generator_loss(&head)?, &self.last_layer, max_adaptive_ratio(step))?;
        let ramp = ((step - DISC_START) as f64 / DISC_RAMP as f64).min(1.0);
        reconstruction + (self.discriminator.generator_loss(&rec)? * (weight * ramp))?
    }

    fn reconstruction(&self, rec: &Tensor, x: &Tensor, step: usize) -> candle_core::Result<Tensor> {
        let pixels = ((rec - x)?.abs()?.mean_all()? + gradient_l1(rec, x)?)?;
        if step < PERCEPTUAL_START {
            return Ok(pixels);
        }
        pixels + (self.perceptual.distance(rec, x)? * PERCEPTUAL_WEIGHT)?
    }
}

/// Mean L1 distance between the horizontal and vertical differences of two image batches.
fn gradient_l1(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let dx = (differences(a, 3)? - differences(b, 3)?)?.abs()?.mean_all()?;
    let dy = (differences(a, 2)? - differences(b, 2)?)?.abs()?.mean_all()?;
    dx + dy
}

/// Neighbouring pixels' differences along `dim`.
fn differences(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(dim)?;
    x.narrow(dim, 1, n - 1)? - x.narrow(dim, 0, n - 1)?
}

/// How faithfully the autoencoder gives held-out photos back.
struct Fidelity {
    psnr_db: f64,
    /// Mean squared image gradient of the reconstructions over the photos'
    /// (sharpness, which PSNR alone rewards blurring against).
    gradient_energy_ratio: f64,
}

/// Photos `x` (B x 3 x H x W in [-1, 1]) encoded to their posterior means
/// and decoded: what the autoencoder gives back at best.
pub(crate) fn reconstructed(vae: &AutoencoderKL, x: &Tensor) -> candle_core::Result<Tensor> {
    vae.decode(&vae.encode(x)?.mean)
}

/// PSNR (dB, images in [0, 1]) and gradient energy of each batch of photos
/// against its reconstruction (pairs of B x 3 x H x W in [-1, 1]).
fn fidelity(pairs: impl IntoIterator<Item = candle_core::Result<(Tensor, Tensor)>>) -> Result<Fidelity, TrainError> {
    let (mut squared_error, mut energy_rec, mut energy_photo, mut values) = (0f64, 0f64, 0f64, 0usize);
    for pair in pairs {
        let (x, rec) = pair?;
        values += x.elem_count();
        let rec = rec.clamp(-1f32, 1f32)?;
        squared_error += ((&rec - &x)? / 2.0)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        energy_rec += gradient_energy(&rec)?;
        energy_photo += gradient_energy(&x)?;
    }
    Ok(Fidelity { psnr_db: -10.0 * (squared_error / values as f64).log10(), gradient_energy_ratio: energy_rec / energy_photo })
}

/// Sum of squared horizontal and vertical pixel differences.
fn gradient_energy(x: &Tensor) -> candle_core::Result<f64> {
    let energy = |dim: usize| -> candle_core::Result<f64> { Ok(differences(x, dim)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64) };
    Ok(energy(2)? + energy(3)?)
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
