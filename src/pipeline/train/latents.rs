//! The training set as the diffusion stages see it: each photo's posterior
//! (mean and standard deviation) under the trained autoencoder, computed once
//! and cached, since the autoencoder is frozen from here on.

use candle_core::{Result, Tensor};
use rand::Rng;

use super::{io_error, Context, FaceSet, TrainError, TrainEvent, TRAIN_SEED};
use crate::diffusion::schedule::gaussian_like;
use crate::model::autoencoder::AutoencoderKL;
use crate::model::config::ComposedConfig;

/// The conditions and latents of the training set.
pub struct LatentSet {
    pub faces: FaceSet,
    mean: Tensor,
    std: Tensor,
    scale_factor: f64,
}

const CACHE: &str = "train/latents.safetensors";

impl LatentSet {
    /// Makes the training faces and their latents (from the cache when it matches).
    pub fn load(ctx: &Context, config: &ComposedConfig, sink: &mut dyn FnMut(TrainEvent)) -> std::result::Result<Self, TrainError> {
        let size = config.first_stage().ddconfig.resolution;
        let faces = FaceSet::augmented(TRAIN_SEED, super::vae::TRAIN_COUNT, size);
        let cache = ctx.path(CACHE);
        let vae_time = std::fs::metadata(ctx.path(super::Stage::Vae.output())).and_then(|m| m.modified()).ok();
        let cache_time = std::fs::metadata(&cache).and_then(|m| m.modified()).ok();
        let fresh = matches!((vae_time, cache_time), (Some(v), Some(c)) if c >= v);
        let (mean, std) = if fresh {
            let saved = candle_core::safetensors::load(&cache, &ctx.device)?;
            match (saved.get("mean"), saved.get("std")) {
                (Some(m), Some(s)) if m.dim(0)? == faces.len() => (m.clone(), s.clone()),
                _ => Self::encode(ctx, config, &faces, &cache, sink)?,
            }
        } else {
            Self::encode(ctx, config, &faces, &cache, sink)?
        };
        Ok(Self { faces, mean, std, scale_factor: config.diffusion.scale_factor })
    }

    fn encode(
        ctx: &Context,
        config: &ComposedConfig,
        faces: &FaceSet,
        cache: &std::path::Path,
        sink: &mut dyn FnMut(TrainEvent),
    ) -> std::result::Result<(Tensor, Tensor), TrainError> {
        sink(TrainEvent::Note(format!("encoding {} training photos with the autoencoder (once)", faces.len())));
        let (vae, _) = super::vae::load(ctx, config)?;
        let (mut means, mut stds) = (Vec::new(), Vec::new());
        let indices: Vec<usize> = (0..faces.len()).collect();
        for chunk in indices.chunks(128) {
            let posterior = vae.encode(&faces.photos(chunk, &ctx.device)?)?;
            stds.push((&posterior.logvar * 0.5)?.exp()?);
            means.push(posterior.mean);
        }
        let (mean, std) = (Tensor::cat(&means, 0)?, Tensor::cat(&stds, 0)?);
        let tensors = [("mean".to_string(), mean.clone()), ("std".to_string(), std.clone())].into_iter().collect();
        super::save_weights(&tensors, cache).map_err(|e| io_error("write", cache, e))?;
        Ok((mean, std))
    }

    /// The first `count` training faces as `vae` decodes their posterior
    /// means: what a generated image looks like at best (the judges read
    /// such photos too).
    pub fn decoded(&self, vae: &AutoencoderKL, count: usize) -> Result<FaceSet> {
        self.faces.first(count).rendered(|chunk| vae.decode(&self.mean.narrow(0, chunk[0], chunk.len())?))
    }

    /// Latents of `indices` in the diffusion's scale, sampled from their posteriors.
    pub fn latents(&self, indices: &[usize], rng: &mut impl Rng) -> Result<Tensor> {
        let ids = Tensor::from_vec(indices.iter().map(|&i| i as u32).collect::<Vec<_>>(), indices.len(), self.mean.device())?;
        let mean = self.mean.index_select(&ids, 0)?;
        let std = self.std.index_select(&ids, 0)?;
        let noise = gaussian_like(&mean, rng)?;
        (mean + (std * noise)?)? * self.scale_factor
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Result};
    use candle_nn::VarMap;

    use super::LatentSet;
    use crate::data::faces::FaceSet;
    use crate::model::autoencoder::AutoencoderKL;
    use crate::model::config::ComposedConfig;
    use crate::pipeline::train::init::seeded_var_builder;

    #[test]
    fn decoded_renders_the_first_faces_from_their_cached_means() -> Result<()> {
        let config = ComposedConfig::load(concat!(env!("CARGO_MANIFEST_DIR"), "/models/codiff.yaml")).expect("the default configs parse");
        let dev = Device::Cpu;
        let faces = FaceSet::generate(1, 3, config.first_stage().ddconfig.resolution);
        let vars = VarMap::new();
        let vae = AutoencoderKL::new(seeded_var_builder(&vars, 1, &dev).pp("first_stage_model"), config.first_stage())?;
        let mean = vae.encode(&faces.photos(&[0, 1, 2], &dev)?)?.mean;
        let set = LatentSet { faces: faces.first(3), std: mean.ones_like()?, mean: mean.clone(), scale_factor: 1.0 };
        let decoded = set.decoded(&vae, 2)?;
        assert_eq!((decoded.len(), &decoded.masks[..], &decoded.captions[..]), (2, &faces.masks[..2], &faces.captions[..2]));
        let want = vae.decode(&mean.narrow(0, 0, 2)?)?.clamp(-1f32, 1f32)?;
        let worst = (decoded.photos(&[0, 1], &dev)? - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(worst <= 0.5 / 127.5 + 1e-5, "decoded photos differ from the decoder's output by {worst}, more than 8-bit rounding");
        Ok(())
    }
}
