//! Parity with the original implementation, against a golden directory
//! ($CODIFF_GOLDEN_DIR, else ../shared/golden; see its README.md).
//!
//! Everything is read from the directory itself: the composed config is the
//! YAML whose target is `LatentDiffusionCompose`, its weights the checkpoint
//! of the same name; every uni-modal config with a checkpoint of its name is
//! checked too. Captions, mask, steps and eta come from the metadata of
//! `expected.safetensors`, and only the tensors it holds are checked.

mod common;

use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use codiff::diffusion::collaborate::{CombineMode, PostProcess};
use codiff::diffusion::ddim::{DdimSchedule, NoiseSource};
use codiff::model::collaborative::{Condition, Contexts, LatentDiffusion};
use codiff::pipeline::generate::sample;
use common::{assert_close, Golden, FORWARD_TOLERANCE, TRAJECTORY_TOLERANCE};

/// The contexts the golden tensors were computed with, from the golden inputs.
fn golden_contexts(golden: &Golden) -> Contexts {
    let model = golden.composed();
    let (contexts, _) = model.encode_conditions(&golden.mask(), &golden.captions()).unwrap();
    contexts
}

#[test]
fn condition_encoders_match() {
    let Some(golden) = Golden::get() else { return };
    let contexts = golden_contexts(golden);
    assert_close("text.context", &contexts.text, golden.tensor("text.context"), FORWARD_TOLERANCE);
    assert_close("mask.context", &contexts.mask, golden.tensor("mask.context"), FORWARD_TOLERANCE);
}

#[test]
fn collaborators_predict_the_same_noise() {
    let Some(golden) = Golden::get() else { return };
    let model = golden.composed();
    let contexts = golden_contexts(golden);
    let x = golden.tensor("unet.x");
    let t = golden.tensor("unet.t").to_dtype(candle_core::DType::F32).unwrap();
    let eps_mask = model.mask_unet.forward(x, &t, &contexts.mask).unwrap();
    let eps_text = model.text_unet.forward(x, &t, &contexts.text).unwrap();
    assert_close("unet.mask_eps", &eps_mask, golden.tensor("unet.mask_eps"), FORWARD_TOLERANCE);
    assert_close("unet.text_eps", &eps_text, golden.tensor("unet.text_eps"), FORWARD_TOLERANCE);
}

#[test]
fn autoencoder_matches() {
    let Some(golden) = Golden::get() else { return };
    let model = golden.composed();
    let posterior = model.vae.encode(golden.tensor("vae.image")).unwrap();
    assert_close("vae.mean", &posterior.mean, golden.tensor("vae.mean"), FORWARD_TOLERANCE);
    assert_close("vae.logvar", &posterior.logvar, golden.tensor("vae.logvar"), FORWARD_TOLERANCE);
    let decoded = model.decode(golden.tensor("vae.z_scaled")).unwrap();
    assert_close("vae.decoded", &decoded, golden.tensor("vae.decoded"), FORWARD_TOLERANCE);
}

/// `compose.t{T}.*` (the sampler's post-processing) and `compose_raw.t{T}.*`
/// (plain softmax): one collaborative step on unet.x at timestep T.
#[test]
fn collaborative_steps_match() {
    let Some(golden) = Golden::get() else { return };
    let model = golden.composed();
    let contexts = golden_contexts(golden);
    let x = golden.tensor("unet.x");
    let mut checked = 0;
    for (prefix, mode) in [("compose", CombineMode::Collaborative), ("compose_raw", CombineMode::Softmax)] {
        for t in golden.timesteps_under(prefix) {
            let step = model.predict_noise(x, t, &contexts, mode, &PostProcess::default()).unwrap();
            let name = |what: &str| format!("{prefix}.t{t}.{what}");
            assert_close(&name("eps"), &step.eps, golden.tensor(&name("eps")), FORWARD_TOLERANCE);
            assert_close(&name("w_mask"), &step.w_mask, golden.tensor(&name("w_mask")), FORWARD_TOLERANCE);
            if let Some(w_text) = golden.try_tensor(&name("w_text")) {
                assert_close(&name("w_text"), &step.w_text, w_text, FORWARD_TOLERANCE);
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "expected.safetensors holds no compose.t*.eps");
}

/// The whole DDIM trajectory with the golden start latent and per-step noise,
/// then the decoded image.
#[test]
fn sampling_trajectory_matches() {
    let Some(golden) = Golden::get() else { return };
    let model = golden.composed();
    let contexts = golden_contexts(golden);
    let steps: usize = golden.meta("sample_S").parse().unwrap();
    let eta: f64 = golden.meta("sample_eta").parse().unwrap();
    let ddim = DdimSchedule::new(&model.schedule, steps, eta).unwrap();
    let mut noise = NoiseSource::injected(golden.tensor("sample.x_T").clone(), golden.tensor("sample.noise").clone());
    let (mut x_inter, mut pred_x0, mut w_mask) = (Vec::new(), Vec::new(), Vec::new());
    let never = AtomicBool::new(false);
    let z0 = sample(model, &contexts, &ddim, CombineMode::Collaborative, &PostProcess::default(), &mut noise, &never, |s| {
        x_inter.push(s.x_prev.clone());
        pred_x0.push(s.pred_x0.clone());
        w_mask.push(s.w_mask.clone());
        Ok(())
    })
    .unwrap();
    let stack = |v: &[Tensor]| Tensor::stack(v, 0).unwrap();
    assert_close("sample.x_inter", &stack(&x_inter), golden.tensor("sample.x_inter"), TRAJECTORY_TOLERANCE);
    assert_close("sample.pred_x0", &stack(&pred_x0), golden.tensor("sample.pred_x0"), TRAJECTORY_TOLERANCE);
    assert_close("sample.w_mask", &stack(&w_mask), golden.tensor("sample.w_mask"), TRAJECTORY_TOLERANCE);
    assert_close("sample.z0", &z0, golden.tensor("sample.z0"), TRAJECTORY_TOLERANCE);
    let image = model.decode(&z0).unwrap();
    assert_close("sample.image", &image, golden.tensor("sample.image"), TRAJECTORY_TOLERANCE);
}

/// A uni-modal checkpoint gives the same outputs as its branch of the composed model.
#[test]
fn unimodal_checkpoints_match() {
    let Some(golden) = Golden::get() else { return };
    let unimodal = golden.unimodal_models();
    for (config, ckpt) in &unimodal {
        let model = LatentDiffusion::load(config, ckpt, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{} with {}: {e}", config.display(), ckpt.display()));
        let (condition, modality) = match &model.config.cond_stage {
            codiff::model::config::CondStageConfig::Text(_) => (Condition::Text(golden.captions()), "text"),
            codiff::model::config::CondStageConfig::Mask(_) => (Condition::Mask(golden.mask()), "mask"),
        };
        let batch = golden.tensor("unet.x").dim(0).unwrap();
        let context = model.encoder.encode(&condition, batch, &Device::Cpu).unwrap().context;
        let what = format!("{modality}.context ({})", ckpt.display());
        assert_close(&what, &context, golden.tensor(&format!("{modality}.context")), FORWARD_TOLERANCE);
        let t = golden.tensor("unet.t").to_dtype(candle_core::DType::F32).unwrap();
        let eps = model.unet.forward(golden.tensor("unet.x"), &t, &context).unwrap();
        let what = format!("unet.{modality}_eps ({})", ckpt.display());
        assert_close(&what, &eps, golden.tensor(&format!("unet.{modality}_eps")), FORWARD_TOLERANCE);
        let posterior = model.vae.encode(golden.tensor("vae.image")).unwrap();
        assert_close("vae.mean (uni-modal)", &posterior.mean, golden.tensor("vae.mean"), FORWARD_TOLERANCE);
    }
    eprintln!("checked {} uni-modal checkpoint(s)", unimodal.len());
}
