//! The training stages' losses on the default architectures: every trainable
//! variable receives a gradient (candle has ops whose gradient silently stops),
//! and a small UNet overfits one batch.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::adversarial::PatchDiscriminator;
use super::diffusers;
use crate::diffusion::modality::PerModality;
use super::perceptual::PerceptualNet;
use super::init::seeded_var_builder;
use super::{judges, ldm, vae, FaceSet, TRAIN_SEED};
use crate::model::optim::AdamW;
use crate::diffusion::schedule::NoiseSchedule;
use crate::model::autoencoder::AutoencoderKL;
use crate::diffusion::parameterization::Parameterization;
use crate::model::collaborative::{denoising_loss, ConditionEncoder, Contexts};
use crate::model::config::{ComposedConfig, LdmConfig};
use crate::model::judges::{AttributeJudge, FaceParser};
use crate::model::unet::{UNetConfig, UNetModel};

fn default_config() -> ComposedConfig {
    ComposedConfig::load(concat!(env!("CARGO_MANIFEST_DIR"), "/models/codiff.yaml")).expect("the default configs parse")
}

/// Moves every variable off its initial value, so that zero-initialised
/// output layers (the original's `zero_module`) do not block the gradient.
fn perturb(vars: &VarMap, rng: &mut ChaCha8Rng) -> Result<()> {
    for var in vars.all_vars() {
        var.set(&(var.as_tensor() + (crate::diffusion::schedule::gaussian_like(var.as_tensor(), rng)? * 0.05)?)?)?;
    }
    Ok(())
}

/// Asserts that `loss` has a non-zero gradient for every variable of `vars`.
fn assert_every_variable_learns(vars: &VarMap, loss: &Tensor, what: &str) -> Result<()> {
    let grads = loss.backward()?;
    let data = vars.data().lock().expect("unpoisoned");
    let mut silent: Vec<&String> = Vec::new();
    for (name, var) in data.iter() {
        let moved = match grads.get(var.as_tensor()) {
            Some(g) => g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0,
            None => false,
        };
        if !moved {
            silent.push(name);
        }
    }
    silent.sort();
    assert!(silent.is_empty(), "{what}: {} of {} variables get no gradient, e.g. {:?}", silent.len(), data.len(), &silent[..silent.len().min(5)]);
    Ok(())
}

#[test]
fn every_trainable_variable_of_every_stage_gets_a_gradient() -> Result<()> {
    let config = default_config();
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let faces = FaceSet::generate(TRAIN_SEED, 2, config.first_stage().ddconfig.resolution);
    let indices = [0, 1];
    let schedule = NoiseSchedule::from_config(&config.diffusion.schedule).expect("valid schedule");
    let d = &config.diffusion;
    let z0 = Tensor::randn(0f32, 1.0, (2, d.latent_channels, d.latent_size, d.latent_size), &dev)?;

    let vars = VarMap::new();
    let autoencoder = AutoencoderKL::new(seeded_var_builder(&vars, 1, &dev).pp("first_stage_model"), config.first_stage())?;
    perturb(&vars, &mut rng)?;
    let (perceptual_vars, disc_vars) = (VarMap::new(), VarMap::new());
    let criterion = vae::AutoencoderLoss {
        perceptual: &PerceptualNet::new(seeded_var_builder(&perceptual_vars, 3, &dev))?,
        discriminator: PatchDiscriminator::new(seeded_var_builder(&disc_vars, 4, &dev))?,
        last_layer: vars.data().lock().expect("unpoisoned")["first_stage_model.decoder.conv_out.weight"].clone(),
    };
    let disc_opt = std::cell::RefCell::new(AdamW::new(&disc_vars, 1e-4, None)?);
    let photos = faces.photos(&indices, &dev)?;
    let every_term = vae::DISC_START.max(vae::PERCEPTUAL_START);
    assert_every_variable_learns(&vars, &criterion.loss(&autoencoder, &photos, every_term, &disc_opt, &mut rng)?, "autoencoder")?;

    let mut collaborators = Vec::new();
    for (ldm_config, what) in [(&config.mask, "mask-driven LDM"), (&config.text, "text-driven LDM")] {
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, 2, &dev);
        let unet = UNetModel::new(vb.pp("model.diffusion_model"), &ldm_config.unet)?;
        let encoder = ConditionEncoder::new(vb.pp("cond_stage_model"), &ldm_config.cond_stage).expect("encoder");
        perturb(&vars, &mut rng)?;
        let context = ldm::encode_batch(&encoder, &faces, &indices, &dev)?;
        assert_every_variable_learns(&vars, &denoising_loss(&unet, ldm_config, &schedule, &z0, &context, &mut rng)?, what)?;
        let as_v = LdmConfig { parameterization: Parameterization::V, snr_weight_cap: Some(5.0), ..ldm_config.clone() };
        assert_every_variable_learns(&vars, &denoising_loss(&unet, &as_v, &schedule, &z0, &context, &mut rng)?, what)?;
        collaborators.push((unet, context.detach()));
    }

    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, 3, &dev);
    let mask_diffuser = UNetModel::new(vb.pp("mask"), &config.diffuser)?;
    let text_diffuser = UNetModel::new(vb.pp("text"), &config.diffuser)?;
    perturb(&vars, &mut rng)?;
    let contexts = Contexts { mask: collaborators[0].1.clone(), text: collaborators[1].1.clone() };
    let loss = diffusers::loss(
        PerModality { mask: (&collaborators[0].0, Parameterization::V), text: (&collaborators[1].0, Parameterization::V) },
        PerModality { mask: &mask_diffuser, text: &text_diffuser },
        &z0,
        &contexts,
        &schedule,
        &mut rng,
    )?;
    assert_every_variable_learns(&vars, &loss, "dynamic diffusers")?;

    let vars = VarMap::new();
    let parser = FaceParser::new(seeded_var_builder(&vars, 4, &dev))?;
    assert_every_variable_learns(&vars, &judges::parser_loss(&parser, &faces, &indices, &dev, &mut rng)?, "face parser")?;
    let vars = VarMap::new();
    let judge = AttributeJudge::new(seeded_var_builder(&vars, 5, &dev))?;
    assert_every_variable_learns(&vars, &judges::attribute_loss(&judge, &faces, &indices, &dev, &mut rng)?, "attribute judge")
}

#[test]
fn a_small_unet_overfits_one_batch() -> Result<()> {
    let config: UNetConfig = serde_yaml::from_str(
        "image_size: 8\nin_channels: 3\nout_channels: 3\nmodel_channels: 32\nattention_resolutions: [2]\nnum_res_blocks: 1\n\
         channel_mult: [1, 2]\nnum_head_channels: 32\nuse_spatial_transformer: true\ntransformer_depth: 1\ncontext_dim: 16\nlegacy: false\n",
    )
    .expect("valid UNet config");
    let dev = Device::Cpu;
    let vars = VarMap::new();
    let unet = UNetModel::new(seeded_var_builder(&vars, 11, &dev), &config)?;
    let x_t = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
    let eps = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
    let t = Tensor::new(&[100f32, 700.], &dev)?;
    let context = Tensor::randn(0f32, 1.0, (2, 5, 16), &dev)?;
    let mut opt = AdamW::new(&vars, 3e-3, None)?;
    opt.warmup_steps = 1;
    let loss = || (unet.forward(&x_t, &t, &context)? - &eps)?.sqr()?.mean_all();
    let first = loss()?.to_scalar::<f32>()?;
    for _ in 0..60 {
        opt.backward_step(&loss()?)?;
    }
    let last = loss()?.to_scalar::<f32>()?;
    assert!(last < 0.2 * first, "the loss went from {first} to {last} on one repeated batch");
    Ok(())
}

#[test]
fn seeded_initialisation_is_reproducible() -> Result<()> {
    let config = default_config();
    let values = |seed: u64| -> Result<Vec<f32>> {
        let vars = VarMap::new();
        UNetModel::new(seeded_var_builder(&vars, seed, &Device::Cpu), &config.diffuser)?;
        let data = vars.data().lock().expect("unpoisoned");
        data.get("input_blocks.0.0.weight").expect("the first conv").as_tensor().flatten_all()?.to_vec1()
    };
    assert_eq!(values(5)?, values(5)?);
    assert_ne!(values(5)?, values(6)?);
    Ok(())
}

#[test]
fn autoencoded_faces_keep_their_truth_and_change_only_the_photos() -> Result<()> {
    let config = default_config();
    let dev = Device::Cpu;
    let faces = FaceSet::generate(TRAIN_SEED, 3, config.first_stage().ddconfig.resolution);
    let vars = VarMap::new();
    let autoencoder = AutoencoderKL::new(seeded_var_builder(&vars, 1, &dev).pp("first_stage_model"), config.first_stage())?;
    let coded = judges::autoencoded(&faces, &autoencoder, &dev)?;
    assert_eq!((coded.len(), coded.size), (faces.len(), faces.size));
    assert_eq!((&coded.masks, &coded.captions, &coded.attributes), (&faces.masks, &faces.captions, &faces.attributes));
    let indices = [0, 1, 2];
    let (original, decoded) = (faces.photos(&indices, &dev)?, coded.photos(&indices, &dev)?);
    assert_eq!(original.dims(), decoded.dims());
    // An untrained autoencoder cannot reproduce the photos: they must have been replaced.
    let difference = (original - decoded)?.abs()?.mean_all()?.to_scalar::<f32>()?;
    assert!(difference > 0.05, "decoded photos differ from the originals by only {difference}");
    Ok(())
}

#[test]
fn fit_keeps_the_checkpoint_of_each_switch_and_resumes_from_it() -> std::result::Result<(), super::TrainError> {
    use super::{fit, Context, Network, Schedule, Stage, TrainRequest};
    let dir = std::env::temp_dir().join(format!("codiff-fit-keep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let request = TrainRequest { dir: dir.clone(), steps: None, resume: false, init: None, seed: 0, device: Device::Cpu, time_limit: None };
    let ctx = Context::new(&request, &cancel)?;
    let vars = VarMap::new();
    let w = vars.get(1, "w", candle_nn::Init::Const(1.0), candle_core::DType::F32, &Device::Cpu)?;
    let schedule = Schedule { steps: 4, lr: 0.1, ema_decay: None, sample_every: usize::MAX, keep_at: &[2] };
    let network = || Network { stage: Stage::Vae, name: "toy", vars: &vars, companions: &[] };
    fit(&ctx, network(), &schedule, &mut |_| {}, |_, _| w.sqr()?.sum_all(), |_, _| Ok(()))?;
    let kept = ctx.work_dir(Stage::Vae)?.join("toy.step000002.checkpoint.safetensors");
    assert!(kept.exists(), "no checkpoint kept at the switch");
    let mut at_switch = AdamW::new(&vars, 0.1, None)?;
    at_switch.load(&kept)?;
    assert_eq!(at_switch.step, 2);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn training_drops_conditions_for_the_null_one_that_guidance_samples_against() -> Result<()> {
    let config = default_config();
    let dev = Device::Cpu;
    let faces = FaceSet::generate(TRAIN_SEED, 2, config.first_stage().ddconfig.resolution);
    for ldm_config in [&config.mask, &config.text] {
        let vars = VarMap::new();
        let encoder = ConditionEncoder::new(seeded_var_builder(&vars, 2, &dev), &ldm_config.cond_stage).expect("encoder");
        let trained = ldm::encode_items(&encoder, &faces, &[Some(0), None, Some(1)], &dev)?;
        let null = encoder.encode_null(&dev).expect("null context");
        let distance = |row: usize| -> Result<f32> { (trained.narrow(0, row, 1)? - &null)?.abs()?.max_all()?.to_scalar::<f32>() };
        assert_eq!(distance(1)?, 0.0, "the dropped item is encoded as the null condition");
        assert!(distance(0)? > 1e-3 && distance(2)? > 1e-3, "real conditions differ from the null one");
        let kept = ldm::encode_batch(&encoder, &faces, &[0, 1], &dev)?;
        assert_eq!((kept.narrow(0, 1, 1)? - trained.narrow(0, 2, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
    }
    Ok(())
}

#[test]
fn a_time_limit_stops_at_the_next_step_keeping_the_checkpoint() -> std::result::Result<(), super::TrainError> {
    use super::{fit, Context, Network, Schedule, Stage, TrainError, TrainRequest};
    let dir = std::env::temp_dir().join(format!("codiff-fit-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let limit = Some(std::time::Duration::from_millis(50));
    let request = TrainRequest { dir: dir.clone(), steps: None, resume: false, init: None, seed: 0, device: Device::Cpu, time_limit: limit };
    let ctx = Context::new(&request, &cancel)?;
    let vars = VarMap::new();
    let w = vars.get(1, "w", candle_nn::Init::Const(1.0), candle_core::DType::F32, &Device::Cpu)?;
    let schedule = Schedule { steps: 1_000_000, lr: 0.1, ema_decay: None, sample_every: usize::MAX, keep_at: &[] };
    let network = Network { stage: Stage::Vae, name: "toy", vars: &vars, companions: &[] };
    let slow_step = |_: usize, _: &mut ChaCha8Rng| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        w.sqr()?.sum_all()
    };
    let Err(TrainError::TimeLimit { step, total, .. }) = fit(&ctx, network, &schedule, &mut |_| {}, slow_step, |_, _| Ok(())) else {
        panic!("the run did not stop at its time limit")
    };
    assert!((1..100).contains(&step) && total == 1_000_000, "stopped at step {step} of {total}");
    let mut kept = AdamW::new(&vars, 0.1, None)?;
    kept.load(&ctx.work_dir(Stage::Vae)?.join("toy.checkpoint.safetensors"))?;
    assert_eq!(kept.step, step, "the checkpoint holds the step it stopped at");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
