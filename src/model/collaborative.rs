//! The models as the original assembles them: a uni-modal latent diffusion
//! model (UNet + condition encoder + autoencoder) and the composed model of
//! Collaborative Diffusion (two uni-modal branches sharing the text model's
//! autoencoder, plus a dynamic diffuser per modality).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use thiserror::Error;

use super::autoencoder::AutoencoderKL;
use super::checkpoint::{CheckpointError, LoadProgress, StrictLoader, Weights};
use super::config::{ComposedConfig, CondStageConfig, ConfigError, LdmConfig};
use super::mask_encoder::MaskEncoder;
use super::text_encoder::TextEncoder;
use super::tokenizer::BertTokenizer;
use super::unet::UNetModel;
use super::precision::WeightsDtype;
use super::preview::LatentPreview;
use crate::data::image::RgbFrame;
use crate::data::mask::{Mask, MaskError};
use crate::diffusion::collaborate::{combine, Combination, CombineMode, Influence, PostProcess};
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::diffusion::modality::PerModality;
use crate::diffusion::parameterization::Parameterization;
use crate::diffusion::sampler::{Sampler, SamplingError, Step};
use crate::diffusion::schedule::NoiseSchedule;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error("{0}")]
    Tokenizer(String),
    #[error("the model failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
}

/// What a condition encoder takes.
#[derive(Debug, Clone)]
pub enum Condition {
    /// One caption per batch item.
    Text(Vec<String>),
    /// One mask for the whole batch.
    Mask(Mask),
}

/// The caption of the null condition (as the original LDM's text-to-image guidance).
pub const NULL_CAPTION: &str = "";

/// A condition encoder as the original configures it.
pub enum ConditionEncoder {
    Text { encoder: TextEncoder, tokenizer: Box<BertTokenizer> },
    Mask { encoder: MaskEncoder, mask_embed_dim: usize },
}

/// An encoded condition (the cross-attention context) and what the encoder had to say about its input.
pub struct Encoded {
    pub context: Tensor,
    /// Sentences for the person, e.g. that a caption was truncated to 77 tokens.
    pub warnings: Vec<String>,
}

impl ConditionEncoder {
    pub fn new(vb: VarBuilder, cfg: &CondStageConfig) -> Result<Self, ModelError> {
        Ok(match cfg {
            CondStageConfig::Text(c) => Self::Text {
                encoder: TextEncoder::new(vb, c)?,
                tokenizer: Box::new(BertTokenizer::new().map_err(|e| ModelError::Tokenizer(e.to_string()))?),
            },
            CondStageConfig::Mask(c) => Self::Mask { encoder: MaskEncoder::new(vb, c)?, mask_embed_dim: c.mask_embed_dim },
        })
    }

    /// The context (one batch item) of the null condition classifier-free
    /// guidance contrasts with: the empty caption, or the mask of no class
    /// ([`MaskEncoder::null_one_hot`]); the default models learn it from
    /// training items whose condition was dropped.
    pub fn encode_null(&self, device: &Device) -> Result<Tensor, ModelError> {
        match self {
            Self::Text { .. } => Ok(self.encode(&Condition::Text(vec![NULL_CAPTION.to_string()]), 1, device)?.context),
            Self::Mask { encoder, mask_embed_dim } => Ok(encoder.forward(&MaskEncoder::null_one_hot(*mask_embed_dim, device)?)?),
        }
    }

    /// Encodes `condition` for a batch of `batch` items.
    pub fn encode(&self, condition: &Condition, batch: usize, device: &Device) -> Result<Encoded, ModelError> {
        match (self, condition) {
            (Self::Text { encoder, tokenizer }, Condition::Text(captions)) => {
                let mut ids = Vec::with_capacity(batch * super::tokenizer::MAX_TOKENS);
                let mut warnings = Vec::new();
                for i in 0..batch {
                    let caption = captions.get(i).or(captions.last()).map(String::as_str).unwrap_or("");
                    let tokens = tokenizer.encode(caption).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                    if tokens.truncated {
                        warnings.push(format!(
                            "the caption has {} tokens; the model reads the first {} (as the original does)",
                            tokens.count,
                            super::tokenizer::MAX_TOKENS
                        ));
                    }
                    ids.extend(tokens.ids);
                }
                let ids = Tensor::from_vec(ids, (batch, super::tokenizer::MAX_TOKENS), device)?;
                Ok(Encoded { context: encoder.forward(&ids)?, warnings })
            }
            (Self::Mask { encoder, mask_embed_dim }, Condition::Mask(mask)) => {
                mask.square_size("the mask")?;
                let one_hot = MaskEncoder::one_hot(mask, *mask_embed_dim, device)?;
                let context = encoder.forward(&one_hot)?;
                let context = context.repeat((batch, 1, 1))?;
                Ok(Encoded { context, warnings: Vec::new() })
            }
            (Self::Text { .. }, Condition::Mask(_)) | (Self::Mask { .. }, Condition::Text(_)) => {
                Err(candle_core::Error::Msg("condition does not match the encoder's modality".into()).into())
            }
        }
    }
}

/// A uni-modal latent diffusion model, as the original releases `256_mask.ckpt` and `256_text.ckpt`.
pub struct LatentDiffusion {
    pub config: LdmConfig,
    pub unet: UNetModel,
    pub encoder: ConditionEncoder,
    pub vae: AutoencoderKL,
}

impl LatentDiffusion {
    /// Loads a uni-modal config and its checkpoint, strictly.
    pub fn load(config: impl AsRef<Path>, ckpt: impl AsRef<Path>, device: &Device) -> Result<Self, ModelError> {
        let config = LdmConfig::load(config)?;
        load_strictly(ckpt.as_ref(), device, |vb| Self::build(vb, config))
    }

    /// Builds the architecture at the uni-modal checkpoint's key prefixes.
    pub fn build(vb: VarBuilder, config: LdmConfig) -> Result<Self, ModelError> {
        Ok(Self {
            unet: UNetModel::new(vb.pp("model.diffusion_model"), &config.unet)?,
            encoder: ConditionEncoder::new(vb.pp("cond_stage_model"), &config.cond_stage)?,
            vae: AutoencoderKL::new(vb.pp("first_stage_model"), &config.first_stage)?,
            config,
        })
    }
}

/// The original LatentDiffusion's training loss (`p_losses`) for `unet` as
/// `config` describes it: `z0` noised to uniform timesteps, the MSE of the
/// prediction against its parameterization's target, each item weighted by
/// the config's SNR cap where it has one.
pub fn denoising_loss(
    unet: &UNetModel,
    config: &LdmConfig,
    schedule: &NoiseSchedule,
    z0: &Tensor,
    context: &Tensor,
    rng: &mut impl rand::Rng,
) -> candle_core::Result<Tensor> {
    let noised = schedule.noised(z0, rng)?;
    let target = config.parameterization.target(z0, &noised.eps, &noised.levels)?;
    let per_item = (unet.forward(&noised.x_t, &noised.t, context)? - target)?.sqr()?.flatten_from(1)?.mean(1)?;
    match config.snr_weight_cap {
        Some(cap) => (per_item * noised.levels.capped_snr_weights(cap)?)?.mean_all(),
        None => per_item.mean_all(),
    }
}

/// Collaborative Diffusion: the mask-driven and text-driven models, their
/// dynamic diffusers and the shared autoencoder.
pub struct CollaborativeModel {
    pub config: ComposedConfig,
    /// The collaborators: the noise predictors of the two latent diffusion models.
    pub unets: PerModality<UNetModel>,
    /// The dynamic diffusers: each predicts its model's influence (before the softmax).
    pub diffusers: PerModality<UNetModel>,
    pub encoders: PerModality<ConditionEncoder>,
    /// Each collaborator's classifier-free guidance, where its config asks
    /// for it: computed by [`Self::load`] from the loaded encoders, none
    /// after [`Self::build`] alone (which `random.rs` runs on a var builder that
    /// only records shapes).
    pub guidance: PerModality<Option<Guidance>>,
    pub vae: AutoencoderKL,
    pub schedule: NoiseSchedule,
    /// Fitted on first use (loading fits it at once, so the first step is not delayed).
    preview: OnceLock<LatentPreview>,
    pub device: Device,
    /// The checkpoint the model was loaded from (fine-tuning starts from its tensors).
    pub weights_path: Option<std::path::PathBuf>,
}

/// How [`CollaborativeModel::load`] loads: where it counts the weights
/// copied as it goes, and the precision it keeps them in (f16 halves their
/// memory; every layer still computes in f32).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub progress: Arc<LoadProgress>,
    pub precision: WeightsDtype,
}

/// Where each collaborator's UNet lives in a composed checkpoint.
pub const MASK_UNET_PREFIX: &str = "model.seg_mask_unet.diffusion_model";
pub const TEXT_UNET_PREFIX: &str = "model.text_unet.diffusion_model";

/// Classifier-free guidance of one collaborator: its null condition's
/// context (one batch item) and how far past the null's noise its own is taken.
pub struct Guidance {
    pub null_context: Tensor,
    pub scale: f64,
}

impl Guidance {
    /// The guidance `config` asks for, with `encoder`'s null context; none
    /// at scale 1, so that the original's models run no null pass.
    pub fn for_model(config: &LdmConfig, encoder: &ConditionEncoder, device: &Device) -> Result<Option<Self>, ModelError> {
        if config.guidance_scale == 1.0 {
            return Ok(None);
        }
        Ok(Some(Self { null_context: encoder.encode_null(device)?, scale: config.guidance_scale }))
    }

    /// `unet`'s output for `x` at `t` under `context`, guided: out_null +
    /// scale * (out - out_null), both from one forward pass of twice the
    /// batch. Under either parameterization this is the guided eps's output.
    pub fn output(guidance: Option<&Self>, unet: &UNetModel, x: &Tensor, t: &Tensor, context: &Tensor) -> candle_core::Result<Tensor> {
        let Some(guidance) = guidance else {
            return unet.forward(x, t, context);
        };
        let batch = x.dim(0)?;
        let null = guidance.null_context.repeat((batch, 1, 1))?;
        let both = unet.forward(&Tensor::cat(&[x, x], 0)?, &Tensor::cat(&[t, t], 0)?, &Tensor::cat(&[context, &null], 0)?)?;
        let (conditional, unconditional) = (both.narrow(0, 0, batch)?, both.narrow(0, batch, batch)?);
        &unconditional + ((conditional - &unconditional)? * guidance.scale)?
    }
}

/// One network of each modality on `x` at timesteps `t` (one per batch
/// item), each under its own modality's context, side by side.
pub fn side_by_side(networks: PerModality<&UNetModel>, x: &Tensor, t: &Tensor, contexts: &Contexts) -> candle_core::Result<PerModality<Tensor>> {
    networks.zip(contexts.as_ref()).par_map(|(network, context)| network.forward(x, t, context)).transpose()
}

/// The composed model as one sampling run's noise predictor: which
/// collaborators, under which conditions, combined how.
#[derive(Clone, Copy)]
pub struct Collaboration<'a> {
    pub model: &'a CollaborativeModel,
    pub collaborators: PerModality<&'a UNetModel>,
    pub contexts: &'a Contexts,
    pub mode: CombineMode,
    pub post: &'a PostProcess,
    /// The mask model's influence at every step, which [`CombineMode::NoTemporal`] needs.
    pub pinned: Option<&'a Tensor>,
}

impl<'a> Collaboration<'a> {
    /// The model's own collaborators, nothing pinned.
    pub fn new(model: &'a CollaborativeModel, contexts: &'a Contexts, mode: CombineMode, post: &'a PostProcess) -> Self {
        Self { model, collaborators: model.unets.as_ref(), contexts, mode, post, pinned: None }
    }

    /// The noise in `x` at timestep `t`: each collaborator's eps, weighted
    /// per pixel by the influence functions (which the dynamic diffusers
    /// predict from x_t, t and their own condition), before the sampler's
    /// noise corrections. Models the mode does not use are not run.
    pub fn predict(&self, x: &Tensor, t: usize) -> Result<Combination, ModelError> {
        let (model, collaborators, contexts) = (self.model, self.collaborators, self.contexts);
        let t_batch = CollaborativeModel::timesteps(x, t)?;
        let alpha = model.schedule.alphas_cumprod()[t];
        let parameterizations = model.parameterizations();
        let guided = |unet: &UNetModel, context: &Tensor, guidance: &Option<Guidance>, parameterization: Parameterization| {
            parameterization.eps_at(&Guidance::output(guidance.as_ref(), unet, x, &t_batch, context)?, x, alpha)
        };
        // A model with weight zero everywhere contributes nothing; stand in the other's eps.
        let eps = match self.mode {
            CombineMode::Mask => {
                let eps = guided(collaborators.mask, &contexts.mask, &model.guidance.mask, parameterizations.mask)?;
                PerModality { mask: eps.clone(), text: eps }
            }
            CombineMode::Text => {
                let eps = guided(collaborators.text, &contexts.text, &model.guidance.text, parameterizations.text)?;
                PerModality { mask: eps.clone(), text: eps }
            }
            _ => collaborators
                .zip(contexts.as_ref().zip(model.guidance.as_ref()).zip(parameterizations))
                .par_map(|(unet, ((context, guidance), parameterization))| guided(unet, context, guidance, parameterization))
                .transpose()?,
        };
        let maps = if self.mode.uses_diffusers() { Some(model.diffuser_maps(x, t, contexts)?) } else { None };
        let influence = match (&maps, self.pinned) {
            (Some(maps), _) => Influence::Diffusers(maps.as_ref()),
            (None, Some(pinned)) => Influence::Pinned(pinned),
            (None, None) => Influence::Fixed,
        };
        Ok(combine(&eps.mask, &eps.text, influence, t, self.mode, self.post)?)
    }

    /// DDIM from a start latent drawn from `noise` down to z0 (returned, in
    /// the diffusion's latent scale), calling `on_step` after every step.
    pub fn sample<E>(
        &self,
        ddim: &DdimSchedule,
        noise: &mut NoiseSource,
        cancel: &AtomicBool,
        on_step: impl FnMut(&Step<Combination>) -> Result<(), E>,
    ) -> Result<Tensor, E>
    where
        E: From<ModelError> + From<candle_core::Error> + From<SamplingError>,
    {
        let settings = &self.model.config.diffusion;
        let (size, channels) = (settings.latent_size, settings.latent_channels);
        let x_t = noise.start_latent(&[self.contexts.batch(), channels, size, size], &self.model.device)?;
        self.model.sampler(ddim).sample(x_t, noise, cancel, |x, t| Ok(self.predict(x, t)?), on_step)
    }

    /// Deterministic DDIM inversion of `z0` up to the start latent that
    /// [`Self::sample`] would walk back down from.
    pub fn invert<E>(
        &self,
        z0: &Tensor,
        ddim: &DdimSchedule,
        cancel: &AtomicBool,
        on_step: impl FnMut(&Step<Combination>) -> Result<(), E>,
    ) -> Result<Tensor, E>
    where
        E: From<ModelError> + From<candle_core::Error> + From<SamplingError>,
    {
        self.model.sampler(ddim).invert(z0.clone(), cancel, |x, t| Ok(self.predict(x, t)?), on_step)
    }
}

/// Both models' cross-attention contexts for a batch.
pub type Contexts = PerModality<Tensor>;

impl Contexts {
    pub fn batch(&self) -> usize {
        self.mask.dims().first().copied().unwrap_or(0)
    }
}

impl CollaborativeModel {
    /// Loads a composed config and its checkpoint, strictly, as `options` say.
    pub fn load(config: impl AsRef<Path>, ckpt: impl AsRef<Path>, device: &Device, options: LoadOptions) -> Result<Self, ModelError> {
        let LoadOptions { progress, precision } = options;
        let config = ComposedConfig::load(config)?;
        let loader = StrictLoader::keeping(Arc::new(Weights::open(ckpt.as_ref())?), progress, precision);
        let mut model = load_with(loader, device, |vb| Self::build(vb, config, device))?;
        model.weights_path = Some(ckpt.as_ref().to_path_buf());
        model.guidance = PerModality {
            mask: Guidance::for_model(&model.config.mask, &model.encoders.mask, device)?,
            text: Guidance::for_model(&model.config.text, &model.encoders.text, device)?,
        };
        model.latent_preview()?;
        Ok(model)
    }

    /// Builds the architecture at the composed checkpoint's key prefixes.
    pub fn build(vb: VarBuilder, config: ComposedConfig, device: &Device) -> Result<Self, ModelError> {
        let unets = vb.pp("model");
        let conds = vb.pp("cond_stage_model");
        let vae = AutoencoderKL::new(vb.pp("first_stage_model"), config.first_stage())?;
        let schedule = NoiseSchedule::from_config(&config.diffusion.schedule).map_err(|e| ConfigError::Invalid {
            path: config.path.clone(),
            reason: e.to_string(),
        })?;
        let encoders = PerModality {
            mask: ConditionEncoder::new(conds.pp("seg_mask_cond_stage_model"), &config.mask.cond_stage)?,
            text: ConditionEncoder::new(conds.pp("text_cond_stage_model"), &config.text.cond_stage)?,
        };
        Ok(Self {
            unets: PerModality {
                mask: UNetModel::new(vb.pp(MASK_UNET_PREFIX), &config.mask.unet)?,
                text: UNetModel::new(vb.pp(TEXT_UNET_PREFIX), &config.text.unet)?,
            },
            diffusers: PerModality {
                mask: UNetModel::new(unets.pp("seg_mask_confidence_predictor.diffusion_model"), &config.diffuser)?,
                text: UNetModel::new(unets.pp("text_confidence_predictor.diffusion_model"), &config.diffuser)?,
            },
            encoders,
            guidance: PerModality::default(),
            vae,
            schedule,
            preview: OnceLock::new(),
            config,
            device: device.clone(),
            weights_path: None,
        })
    }

    /// Side of the images the model makes.
    pub fn image_size(&self) -> usize {
        self.config.diffusion.latent_size * self.vae.downsampling_factor()
    }

    /// Encodes the mask (shared by the batch) and one caption per batch item.
    /// Returns the contexts and any warnings for the person.
    pub fn encode_conditions(&self, mask: &Mask, captions: &[String]) -> Result<(Contexts, Vec<String>), ModelError> {
        let batch = captions.len().max(1);
        let mask = self.encoders.mask.encode(&Condition::Mask(mask.clone()), batch, &self.device)?;
        let text = self.encoders.text.encode(&Condition::Text(captions.to_vec()), batch, &self.device)?;
        let warnings = mask.warnings.into_iter().chain(text.warnings).collect();
        Ok((Contexts { mask: mask.context, text: text.context }, warnings))
    }

    /// One collaborative step's noise prediction at timestep `t` (see
    /// [`Collaboration::predict`]), with the model's own collaborators.
    pub fn predict_noise(
        &self,
        x: &Tensor,
        t: usize,
        contexts: &Contexts,
        mode: CombineMode,
        post: &PostProcess,
    ) -> Result<Combination, ModelError> {
        Collaboration::new(self, contexts, mode, post).predict(x, t)
    }

    /// What each collaborator's UNet predicts.
    pub fn parameterizations(&self) -> PerModality<Parameterization> {
        PerModality { mask: self.config.mask.parameterization, text: self.config.text.parameterization }
    }

    /// The DDIM loop for this model's schedule and noise corrections.
    pub fn sampler<'a>(&'a self, ddim: &'a DdimSchedule) -> Sampler<'a> {
        Sampler { schedule: &self.schedule, ddim, corrections: &self.config.diffusion.corrections }
    }

    /// The dynamic diffusers' raw maps, before any softmax.
    pub fn diffuser_maps(&self, x: &Tensor, t: usize, contexts: &Contexts) -> Result<PerModality<Tensor>, ModelError> {
        let t_batch = Self::timesteps(x, t)?;
        Ok(side_by_side(self.diffusers.as_ref(), x, &t_batch, contexts)?)
    }

    fn timesteps(x: &Tensor, t: usize) -> candle_core::Result<Tensor> {
        Tensor::full(t as f32, x.dim(0)?, x.device())
    }

    /// The cheap per-step preview of B latents (diffusion scale).
    pub fn preview(&self, z: &Tensor) -> Result<Vec<RgbFrame>, ModelError> {
        Ok(self.latent_preview()?.render(z)?)
    }

    fn latent_preview(&self) -> Result<&LatentPreview, ModelError> {
        if let Some(preview) = self.preview.get() {
            return Ok(preview);
        }
        let settings = &self.config.diffusion;
        let fitted = LatentPreview::fit(&self.vae, settings.scale_factor, settings.latent_channels, &self.device)?;
        Ok(self.preview.get_or_init(|| fitted))
    }

    /// Decodes a latent in the diffusion's scale to an image in [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor, ModelError> {
        Ok(self.vae.decode(&(z / self.config.diffusion.scale_factor)?)?)
    }
}

/// Builds a network from a checkpoint, refusing the file unless it holds
/// exactly what the network asks for (see [`StrictLoader`]).
fn load_strictly<T>(
    ckpt: &Path,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    load_with(StrictLoader::new(Arc::new(Weights::open(ckpt)?)), device, build)
}

fn load_with<T>(loader: StrictLoader, device: &Device, build: impl FnOnce(VarBuilder) -> Result<T, ModelError>) -> Result<T, ModelError> {
    let model = build(loader.var_builder(DType::F32, device))?;
    loader.finish(unused_ok)?;
    Ok(model)
}

/// Keys a checkpoint may hold that no network reads: the schedule buffers the
/// original registers, and the text encoder's logits layer (unused for conditioning).
pub fn unused_ok(key: &str) -> bool {
    const SCHEDULE_BUFFERS: [&str; 13] = [
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "logvar",
    ];
    SCHEDULE_BUFFERS.contains(&key) || key.contains(".transformer.to_logits.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::defaults::ModelFiles;

    #[test]
    fn guidance_takes_the_noise_past_the_null_conditions_by_its_scale() -> Result<(), ModelError> {
        let files = ModelFiles::default_models().expect("the default models are committed");
        let mut model = CollaborativeModel::load(&files.config, &files.weights, &Device::Cpu, LoadOptions::default())?;
        let mut unguided = model.config.text.clone();
        unguided.guidance_scale = 1.0;
        assert!(Guidance::for_model(&unguided, &model.encoders.text, &Device::Cpu)?.is_none(), "scale 1 runs no null pass");
        let mask = Mask::from_classes(16, 16, (0..256).map(|i| (i % 19) as u8).collect())?;
        let (contexts, _) = model.encode_conditions(&mask, &["She is in her twenties.".to_string(), "He has a beard.".to_string()])?;
        // The model's own latent size: a 4 x 4 latent is 1 x 1 at the UNet's
        // lowest level, where each group norm sees two values, and dividing
        // by their spread amplified the batched pass's reordered sums past
        // the bound (on an AVX2-only EPYC).
        let side = model.config.diffusion.latent_size;
        let shape = (2, model.config.diffusion.latent_channels, side, side);
        let x = (Tensor::arange(0f32, (2 * shape.1 * side * side) as f32, &Device::Cpu)? * 0.7)?.sin()?.reshape(shape)?;
        let t = Tensor::full(500f32, 2, &Device::Cpu)?;
        let scale = 3.0;
        let guidance = Guidance { null_context: model.encoders.text.encode_null(&Device::Cpu)?, scale };
        let unet = &model.unets.text;
        let eps = unet.forward(&x, &t, &contexts.text)?;
        let eps_null = unet.forward(&x, &t, &guidance.null_context.repeat((2, 1, 1))?)?;
        let expected = (&eps_null + ((&eps - &eps_null)? * scale)?)?;
        model.guidance.text = Some(guidance);
        let guided = model.predict_noise(&x, 500, &contexts, CombineMode::Text, &PostProcess::default())?.eps;
        let worst = (guided - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let moved = (&expected - &eps)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(moved > 1e-2, "the guidance must change the noise: {moved}");
        // One batched pass against two single ones: only the float summation order differs.
        assert!(worst < 1e-3 * moved, "guided noise off by {worst} (guidance moved it by {moved})");

        // Read as v, the same outputs guide to the eps of the guided v, which
        // is the guided eps of the two outputs read as v.
        model.config.text.parameterization = Parameterization::V;
        let alpha = model.schedule.alphas_cumprod()[500];
        let as_eps = |out: &Tensor| Parameterization::V.eps_at(out, &x, alpha);
        let expected_v = as_eps(&expected)?;
        let from_eps = (as_eps(&eps_null)? + ((as_eps(&eps)? - as_eps(&eps_null)?)? * scale)?)?;
        assert!((&expected_v - &from_eps)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-5);
        let guided_v = model.predict_noise(&x, 500, &contexts, CombineMode::Text, &PostProcess::default())?.eps;
        let worst_v = (guided_v - &expected_v)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(worst_v < 1e-3 * moved, "guided noise under v off by {worst_v}");
        Ok(())
    }

    #[test]
    fn loading_reports_its_progress_up_to_every_weight() {
        let files = ModelFiles::default_models().expect("the default models are committed");
        let progress = Arc::new(LoadProgress::default());
        assert_eq!(progress.fraction(), None, "nothing is known before the checkpoint is open");
        let options = LoadOptions { progress: progress.clone(), ..LoadOptions::default() };
        CollaborativeModel::load(&files.config, &files.weights, &Device::Cpu, options).unwrap();
        let done = progress.fraction().expect("known once open");
        assert!(done > 0.99, "all but the unused buffers are loaded: {done}");
    }
}
