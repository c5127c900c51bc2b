//! The decoder stage: the autoencoder's decoder trained on, with the encoder
//! frozen, from the cached posteriors of the training photos (the latents the
//! diffusion models learn). The latent space stays exactly as it was, so the
//! diffusion models and diffusers trained on it stay valid and an already
//! composed `codiff.safetensors` takes the new decoder in place: images get
//! sharper without retraining anything downstream.

use candle_nn::VarMap;

use super::latents::LatentSet;
use super::vae::{held_out_psnr, pairs_grid, reconstruction_loss};
use super::{fit, io_error, save_weights, write_metrics, Context, FaceSet, Schedule, Stage, TrainError, TrainEvent, HELD_OUT_SEED};
use crate::model::autoencoder::AutoencoderKL;
use crate::model::config::ComposedConfig;

const BATCH: usize = 8;
const HELD_OUT: usize = 64;

pub fn train(ctx: &Context, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    let config = ComposedConfig::load(ctx.path("codiff.yaml"))?;
    let set = LatentSet::load(ctx, &config, sink)?;
    let mut vars = VarMap::new();
    let vae = AutoencoderKL::new(ctx.var_builder(&vars, "decoder").pp("first_stage_model"), config.first_stage())?;
    let source = ctx.require(Stage::Vae, "decoder")?;
    vars.load(&source)?;
    // Only the decoder path learns: the encoder's variables are dropped from
    // the optimiser, and the loss never runs the encoder anyway.
    let frozen: Vec<String> = vars.data().lock().expect("unpoisoned").keys().filter(|k| !is_decoder(k)).cloned().collect();
    let encoder_weights = {
        let mut data = vars.data().lock().expect("unpoisoned");
        frozen.iter().filter_map(|k| data.remove(k).map(|v| (k.clone(), v.as_tensor().detach()))).collect::<std::collections::HashMap<_, _>>()
    };
    let held_out = FaceSet::generate(HELD_OUT_SEED, HELD_OUT, set.faces.size);
    let device = ctx.device.clone();
    let held_photos = held_out.photos(&(0..8).collect::<Vec<_>>(), &device)?;
    let unscale = 1.0 / config.diffusion.scale_factor;
    let schedule = Schedule { steps: 2000, lr: 5e-4, ema_decay: None, sample_every: 250 };
    let opt = fit(
        ctx,
        Stage::Decoder,
        "decoder",
        &vars,
        &schedule,
        sink,
        |rng| {
            let indices = set.faces.draw(rng, BATCH);
            let z = (set.latents(&indices, rng)? * unscale)?;
            reconstruction_loss(&vae.decode(&z)?, &set.faces.photos(&indices, &device)?)
        },
        |step, samples| {
            let rec = vae.decode(&vae.encode(&held_photos)?.mean)?;
            let path = samples.join(format!("step{step:06}.png"));
            pairs_grid(&held_photos, &rec)?.save(&path).map_err(|e| io_error("write", &path, e))
        },
    )?;
    let mut weights = opt.final_weights();
    weights.extend(encoder_weights);
    let before = held_out_psnr(&candle_core::safetensors::load(&source, &device)?, &config, &held_out, &device)?;
    let after = held_out_psnr(&weights, &config, &held_out, &device)?;
    sink(TrainEvent::Note(format!("decoder: held-out PSNR {before:.2} dB -> {after:.2} dB")));
    write_metrics(ctx, Stage::Decoder, &serde_json::json!({ "held_out_psnr_db": after, "before_db": before, "held_out_count": HELD_OUT, "steps": opt.step, "batch": BATCH }))?;
    save_weights(&weights, &ctx.path(Stage::Decoder.output()))?;
    let composed = ctx.path(Stage::Diffusers.output());
    if composed.exists() {
        let mut model = candle_core::safetensors::load(&composed, &device)?;
        model.extend(weights.into_iter().filter(|(k, _)| is_decoder(k)));
        save_weights(&model, &composed)?;
        sink(TrainEvent::Note(format!("decoder: the new decoder replaces the old one in {}", composed.display())));
    }
    Ok(())
}

/// Whether a `first_stage_model` key belongs to the path from latent to pixels.
fn is_decoder(key: &str) -> bool {
    key.starts_with("first_stage_model.decoder.") || key.starts_with("first_stage_model.post_quant_conv.")
}

