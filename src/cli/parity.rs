//! `codiff bench --parity`: every network of a composed model run on the GPU
//! and on the CPU from the same inputs, with the relative error of each
//! output. The golden tests tie the CPU to the original; this ties the GPU to
//! the CPU, at any model size (random weights serve as well as real ones).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use crate::data::mask::{Mask, NUM_CLASSES};
use crate::diffusion::collaborate::{CombineMode, PostProcess};
use crate::model::collaborative::{CollaborativeModel, Contexts};
use crate::model::precision::relative_error;

/// The largest relative error a float32 forward on the GPU may have against
/// the CPU's (matrix products in full float32: candle leaves TF32 off).
pub const TOLERANCE: f64 = 1e-3;

/// The relative error of each network's output, GPU against CPU, and the
/// worst of them as `worst_rel_err`, naming it in `worst`.
pub fn compare(config: &Path, checkpoint: &Path, gpu: &Device) -> anyhow::Result<Value> {
    anyhow::ensure!(!gpu.is_cpu(), "--parity compares the GPU with the CPU, but no GPU is in use (see CODIFF_DEVICE)");
    let cpu_model = CollaborativeModel::load(config, checkpoint, &Device::Cpu, Default::default())?;
    let gpu_model = CollaborativeModel::load(config, checkpoint, gpu, Default::default())?;
    let size = cpu_model.image_size();
    // Every class somewhere, so that the mask encoder sees a real mask.
    let classes = (0..size * size).map(|i| ((i / size / 8 + i % size / 8) % NUM_CLASSES) as u8).collect();
    let mask = Mask::from_classes(size, size, classes)?;
    let captions = ["This man has beard of medium length. He is in his thirties.".to_string(), "She is smiling.".to_string()];
    let (cpu_contexts, _) = cpu_model.encode_conditions(&mask, &captions)?;
    let (gpu_contexts, _) = gpu_model.encode_conditions(&mask, &captions)?;

    let d = &cpu_model.config.diffusion;
    let x = Tensor::randn(0f32, 1f32, (captions.len(), d.latent_channels, d.latent_size, d.latent_size), &Device::Cpu)?;
    let t = Tensor::new(&[981f32, 21.0], &Device::Cpu)?;
    let image = Tensor::rand(-1f32, 1f32, (1, 3, size, size), &Device::Cpu)?;
    // The GPU's networks get the CPU's inputs, so that each error is the network's own.
    let on_gpu = |tensor: &Tensor| tensor.to_device(gpu);
    let (x_gpu, t_gpu, image_gpu) = (on_gpu(&x)?, on_gpu(&t)?, on_gpu(&image)?);
    let contexts_gpu = Contexts { mask: on_gpu(&cpu_contexts.mask)?, text: on_gpu(&cpu_contexts.text)? };

    let mut errors: Vec<(&str, f64)> = vec![
        ("mask_context", relative_error(&gpu_contexts.mask, &cpu_contexts.mask)?),
        ("text_context", relative_error(&gpu_contexts.text, &cpu_contexts.text)?),
    ];
    let unets = [
        ("mask_unet", &cpu_model.unets.mask, &gpu_model.unets.mask, &cpu_contexts.mask, &contexts_gpu.mask),
        ("text_unet", &cpu_model.unets.text, &gpu_model.unets.text, &cpu_contexts.text, &contexts_gpu.text),
        ("mask_diffuser", &cpu_model.diffusers.mask, &gpu_model.diffusers.mask, &cpu_contexts.mask, &contexts_gpu.mask),
        ("text_diffuser", &cpu_model.diffusers.text, &gpu_model.diffusers.text, &cpu_contexts.text, &contexts_gpu.text),
    ];
    for (name, cpu_net, gpu_net, cpu_context, gpu_context) in unets {
        errors.push((name, relative_error(&gpu_net.forward(&x_gpu, &t_gpu, gpu_context)?, &cpu_net.forward(&x, &t, cpu_context)?)?));
    }
    let (cpu_posterior, gpu_posterior) = (cpu_model.vae.encode(&image)?, gpu_model.vae.encode(&image_gpu)?);
    errors.push(("vae_encode_mean", relative_error(&gpu_posterior.mean, &cpu_posterior.mean)?));
    errors.push(("vae_encode_logvar", relative_error(&gpu_posterior.logvar, &cpu_posterior.logvar)?));
    errors.push(("vae_decode", relative_error(&gpu_model.decode(&x_gpu)?, &cpu_model.decode(&x)?)?));
    let post = PostProcess::default();
    let cpu_step = cpu_model.predict_noise(&x, 501, &cpu_contexts, CombineMode::Collaborative, &post)?;
    let gpu_step = gpu_model.predict_noise(&x_gpu, 501, &contexts_gpu, CombineMode::Collaborative, &post)?;
    errors.push(("collab_eps", relative_error(&gpu_step.eps, &cpu_step.eps)?));
    errors.push(("collab_w_mask", relative_error(&gpu_step.w_mask, &cpu_step.w_mask)?));
    errors.push(("collab_w_text", relative_error(&gpu_step.w_text, &cpu_step.w_text)?));

    let (worst, worst_err) = errors.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or(("none", 0.0));
    let mut figures = serde_json::Map::new();
    for (name, err) in errors {
        figures.insert(format!("{name}_rel_err"), json!(err));
    }
    figures.insert("worst_rel_err".into(), json!(worst_err));
    figures.insert("worst".into(), json!(worst));
    Ok(Value::Object(figures))
}

/// The configurations whose worst error is at or over [`TOLERANCE`], as a sentence.
pub fn failures<'a>(results: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Option<String> {
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(name, figures)| {
            let worst = figures.get("worst_rel_err")?.as_f64()?;
            (worst.is_nan() || worst >= TOLERANCE).then(|| format!("{name}: {} off by {worst:.2e}", figures["worst"].as_str().unwrap_or("?")))
        })
        .collect();
    (!failed.is_empty()).then(|| format!("the GPU differs from the CPU by {TOLERANCE:.0e} or more ({})", failed.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_over_the_tolerance_is_named() {
        let results = [
            ("tiny".to_string(), json!({ "worst_rel_err": 2e-6, "worst": "mask_unet" })),
            ("full256".to_string(), json!({ "worst_rel_err": 3e-3, "worst": "vae_decode" })),
        ];
        assert_eq!(failures(results.iter().map(|(n, v)| (n, v))).unwrap(), "the GPU differs from the CPU by 1e-3 or more (full256: vae_decode off by 3.00e-3)");
        assert!(failures(results[..1].iter().map(|(n, v)| (n, v))).is_none());
    }

    #[test]
    fn parity_refuses_to_compare_the_cpu_with_itself() {
        let message = compare(Path::new("none.yaml"), Path::new("none.ckpt"), &Device::Cpu).unwrap_err().to_string();
        assert!(message.contains("no GPU is in use"), "{message}");
    }
}
