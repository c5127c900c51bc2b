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
use codiff::model::collaborative::{Collaboration, Condition, Contexts, LatentDiffusion, ModelError};
use codiff::model::config::CondStageConfig;
use codiff::model::mask_encoder::MaskEncoder;
use codiff::model::tokenizer::BertTokenizer;
use common::{assert_close, relative_error, Golden, FORWARD_TOLERANCE, HALF_PRECISION_TOLERANCE, TRAJECTORY_TOLERANCE};

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
    let eps_mask = model.unets.mask.forward(x, &t, &contexts.mask).unwrap();
    let eps_text = model.unets.text.forward(x, &t, &contexts.text).unwrap();
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
    let post = PostProcess::default();
    let collaboration = Collaboration::new(model, &contexts, CombineMode::Collaborative, &post);
    let z0 = collaboration
        .sample(&ddim, &mut noise, &never, |s| {
            x_inter.push(s.x.clone());
            pred_x0.push(s.pred_x0.clone());
            w_mask.push(s.prediction.w_mask.clone());
            Ok::<_, ModelError>(())
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

/// With its weights kept in f16 (`--weights-dtype f16`) the composed model
/// gives every golden output (encoders, both UNets, the VAE, collaborative
/// steps, the whole trajectory and its image) within 1e-2 relative error.
#[test]
fn half_precision_weights_stay_within_a_percent() {
    let Some(golden) = Golden::get() else { return };
    let model = golden.composed_f16();
    let mut errors: Vec<(String, f64)> = Vec::new();
    let mut check = |name: &str, got: &Tensor| {
        assert_eq!(got.dims(), golden.tensor(name).dims(), "{name}: shape");
        errors.push((name.to_string(), relative_error(got, golden.tensor(name))));
    };
    let (contexts, _) = model.encode_conditions(&golden.mask(), &golden.captions()).unwrap();
    check("text.context", &contexts.text);
    check("mask.context", &contexts.mask);
    let x = golden.tensor("unet.x");
    let t = golden.tensor("unet.t").to_dtype(candle_core::DType::F32).unwrap();
    let eps_mask = model.unets.mask.forward(x, &t, &contexts.mask).unwrap();
    check("unet.mask_eps", &eps_mask);
    check("unet.text_eps", &model.unets.text.forward(x, &t, &contexts.text).unwrap());
    let posterior = model.vae.encode(golden.tensor("vae.image")).unwrap();
    check("vae.mean", &posterior.mean);
    check("vae.decoded", &model.decode(golden.tensor("vae.z_scaled")).unwrap());
    for t in golden.timesteps_under("compose") {
        let step = model.predict_noise(x, t, &contexts, CombineMode::Collaborative, &PostProcess::default()).unwrap();
        check(&format!("compose.t{t}.eps"), &step.eps);
        check(&format!("compose.t{t}.w_mask"), &step.w_mask);
    }
    let steps: usize = golden.meta("sample_S").parse().unwrap();
    let eta: f64 = golden.meta("sample_eta").parse().unwrap();
    let ddim = DdimSchedule::new(&model.schedule, steps, eta).unwrap();
    let mut noise = NoiseSource::injected(golden.tensor("sample.x_T").clone(), golden.tensor("sample.noise").clone());
    let mut x_inter = Vec::new();
    let never = AtomicBool::new(false);
    let post = PostProcess::default();
    let collaboration = Collaboration::new(model, &contexts, CombineMode::Collaborative, &post);
    let z0 = collaboration
        .sample(&ddim, &mut noise, &never, |s| {
            x_inter.push(s.x.clone());
            Ok::<_, ModelError>(())
        })
        .unwrap();
    check("sample.x_inter", &Tensor::stack(&x_inter, 0).unwrap());
    check("sample.z0", &z0);
    check("sample.image", &model.decode(&z0).unwrap());

    for (name, err) in &errors {
        eprintln!("f16 weights, {name}: relative error {err:.2e}");
    }
    let (worst, err) = errors.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    eprintln!("f16 weights: largest relative error {err:.2e} ({worst})");
    assert!(*err < HALF_PRECISION_TOLERANCE, "{worst}: relative error {err:.3e} exceeds {HALF_PRECISION_TOLERANCE:.0e}");
    // The weights were narrowed: the f32 model's output differs.
    let eps_f32 = golden.composed().unets.mask.forward(x, &t, &contexts.mask).unwrap();
    assert!(relative_error(&eps_mask, &eps_f32) > 0.0, "the f16 model computed exactly what the f32 one did");
}

/// A uni-modal checkpoint gives the same outputs as its branch of the composed model.
#[test]
fn unimodal_checkpoints_match() {
    let Some(golden) = Golden::get() else { return };
    let unimodal = golden.unimodal_models();
    for (config, ckpt) in &unimodal {
        let model = LatentDiffusion::load(config, ckpt, &golden.device)
            .unwrap_or_else(|e| panic!("{} with {}: {e}", config.display(), ckpt.display()));
        let (condition, modality) = match &model.config.cond_stage {
            CondStageConfig::Text(_) => (Condition::Text(golden.captions()), "text"),
            CondStageConfig::Mask(_) => (Condition::Mask(golden.mask()), "mask"),
        };
        let batch = golden.tensor("unet.x").dim(0).unwrap();
        let context = model.encoder.encode(&condition, batch, &golden.device).unwrap().context;
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

#[test]
fn tokenizer_ids_match_exactly() {
    let Some(golden) = Golden::get() else { return };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.dir.join("tokenizer.json")).unwrap()).unwrap();
    let captions: Vec<String> = serde_json::from_value(json["captions"].clone()).unwrap();
    let want: Vec<Vec<u32>> = serde_json::from_value(json["ids"].clone()).unwrap();
    let tokenizer = BertTokenizer::new().unwrap();
    for (caption, want) in captions.iter().zip(&want) {
        assert_eq!(&tokenizer.encode(caption).unwrap().ids, want, "caption {caption:?}");
    }
    let stacked: Vec<Vec<i64>> = golden.tensor("tokenizer.ids").to_vec2().unwrap();
    let want: Vec<Vec<i64>> = want.iter().map(|row| row.iter().map(|&id| id as i64).collect()).collect();
    assert_eq!(stacked, want, "tokenizer.ids");
}

#[test]
fn mask_one_hot_matches_pil_nearest() {
    let Some(golden) = Golden::get() else { return };
    let CondStageConfig::Mask(config) = &golden.composed().config.mask.cond_stage else {
        panic!("the mask branch has no mask encoder");
    };
    let one_hot = MaskEncoder::one_hot(&golden.mask(), config.mask_embed_dim, &Device::Cpu).unwrap();
    assert_close("mask.onehot", &one_hot, golden.tensor("mask.onehot"), 1e-12);
}

fn f64_tensor(values: &[f64]) -> Tensor {
    Tensor::new(values, &Device::Cpu).unwrap()
}

#[test]
fn noise_schedule_matches() {
    let Some(golden) = Golden::get() else { return };
    let schedule = &golden.composed().schedule;
    assert_close("schedule.betas", &f64_tensor(schedule.betas()), golden.tensor("schedule.betas"), FORWARD_TOLERANCE);
    let acp = f64_tensor(schedule.alphas_cumprod());
    assert_close("schedule.alphas_cumprod", &acp, golden.tensor("schedule.alphas_cumprod"), FORWARD_TOLERANCE);
}

/// Every `ddim.S{n}.eta{e}.sigmas` with the timesteps, alphas and alphas_prev beside it.
#[test]
fn every_ddim_table_matches() {
    let Some(golden) = Golden::get() else { return };
    let schedule = &golden.composed().schedule;
    let mut checked = 0;
    for name in golden.names() {
        let Some(rest) = name.strip_prefix("ddim.S").and_then(|r| r.strip_suffix(".sigmas")) else { continue };
        let (steps, eta) = rest.split_once(".eta").unwrap();
        let ddim = DdimSchedule::new(schedule, steps.parse().unwrap(), eta.parse().unwrap()).unwrap();
        let prefix = format!("ddim.S{steps}");
        let timesteps: Vec<i64> = golden.tensor(&format!("{prefix}.timesteps")).to_vec1().unwrap();
        assert_eq!(ddim.timesteps().iter().map(|&t| t as i64).collect::<Vec<_>>(), timesteps, "{prefix}.timesteps");
        for (what, values) in [("alphas", ddim.alphas()), ("alphas_prev", ddim.alphas_prev())] {
            let key = format!("{prefix}.{what}");
            assert_close(&key, &f64_tensor(values), golden.tensor(&key), FORWARD_TOLERANCE);
        }
        assert_close(name, &f64_tensor(ddim.sigmas()), golden.tensor(name), FORWARD_TOLERANCE);
        checked += 1;
    }
    assert!(checked > 0, "no ddim.S*.eta*.sigmas tensors in the golden file");
}
