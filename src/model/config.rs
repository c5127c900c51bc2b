//! The original YAML configs: a uni-modal `LatentDiffusion` or the composed
//! `LatentDiffusionCompose`, which names the two uni-modal configs it builds on.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use thiserror::Error;

use super::autoencoder::AutoencoderConfig;
use super::mask_encoder::MaskEncoderConfig;
use super::text_encoder::TextEncoderConfig;
use super::unet::UNetConfig;
use crate::diffusion::channel_means::ChannelMeanPrior;
use crate::diffusion::corrections::NoiseCorrections;
use crate::diffusion::parameterization::Parameterization;
use crate::diffusion::schedule::ScheduleConfig;
use crate::diffusion::x0_detail::DetailFactors;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} names {name}, which is in none of: {tried}")]
    NotFound { path: PathBuf, name: String, tried: String },
    #[error("{path} is a {found} config; {wanted}")]
    WrongKind { path: PathBuf, found: &'static str, wanted: &'static str },
}

/// The condition encoder of a uni-modal model.
#[derive(Debug, Clone)]
pub enum CondStageConfig {
    /// `BERTEmbedder`: captions.
    Text(TextEncoderConfig),
    /// `SegMaskEncoder`: 19-class face masks.
    Mask(MaskEncoderConfig),
}

/// What every latent diffusion config sets about the diffusion itself.
#[derive(Debug, Clone)]
pub struct DiffusionSettings {
    pub schedule: ScheduleConfig,
    /// Side of the latent the UNet denoises.
    pub latent_size: usize,
    pub latent_channels: usize,
    /// The latent is multiplied by this after encoding and divided by it before decoding.
    pub scale_factor: f64,
    /// This project's additions for UNets too narrow to predict the noise
    /// near t = 1000; the original configs have none.
    pub corrections: NoiseCorrections,
}

/// A uni-modal latent diffusion model (`ldm.models.diffusion.ddpm.LatentDiffusion`).
#[derive(Debug, Clone)]
pub struct LdmConfig {
    pub path: PathBuf,
    pub diffusion: DiffusionSettings,
    pub unet: UNetConfig,
    pub first_stage: AutoencoderConfig,
    pub cond_stage: CondStageConfig,
    /// Classifier-free guidance: the model's noise is taken this many times
    /// further from its null condition's (1, the original's sampling, runs
    /// no null pass).
    pub guidance_scale: f64,
    /// What the UNet predicts (`parameterization`: eps, the original's, or v).
    pub parameterization: Parameterization,
    /// Training only (`snr_weight_cap`): each item's loss weighted
    /// min(SNR + 1, cap) / (SNR + 1) (see
    /// [`crate::diffusion::parameterization::Levels::capped_snr_weights`]);
    /// none weights every timestep alike, as the original does.
    pub snr_weight_cap: Option<f64>,
}

/// The composed model (`LatentDiffusionCompose`): two uni-modal models and a
/// dynamic diffuser per modality.
#[derive(Debug, Clone)]
pub struct ComposedConfig {
    pub path: PathBuf,
    pub diffusion: DiffusionSettings,
    pub mask: LdmConfig,
    pub text: LdmConfig,
    /// The dynamic diffuser (one per modality, same architecture).
    pub diffuser: UNetConfig,
    /// The uni-modal checkpoints the config names, where they exist.
    pub mask_ckpt: Option<PathBuf>,
    pub text_ckpt: Option<PathBuf>,
}

impl ComposedConfig {
    /// The autoencoder the composed model uses: the text model's, as the original does.
    pub fn first_stage(&self) -> &AutoencoderConfig {
        &self.text.first_stage
    }
}

/// Any of the original model configs.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    Ldm(Box<LdmConfig>),
    Composed(Box<ComposedConfig>),
    /// A first-stage autoencoder on its own (`256_vae.yaml`, `512_vae.yaml`).
    Autoencoder(AutoencoderConfig),
}

impl ModelConfig {
    /// What kind of config this is, in words.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ldm(_) => Kind::Ldm,
            Self::Composed(_) => Kind::Composed,
            Self::Autoencoder(_) => Kind::Autoencoder,
        }
        .name()
    }

    /// Reads a config file and, for a composed one, the configs it names.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let root = read_yaml(path)?;
        let doc = Doc { path, root: &root };
        match doc.kind()? {
            Kind::Composed => ComposedConfig::from_doc(&doc).map(|c| Self::Composed(Box::new(c))),
            Kind::Ldm => LdmConfig::from_doc(&doc).map(|c| Self::Ldm(Box::new(c))),
            Kind::Autoencoder => doc.typed("model.params").map(Self::Autoencoder),
        }
    }
}

/// What `model.target` says a config is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ldm,
    Composed,
    Autoencoder,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Ldm => "uni-modal",
            Self::Composed => "composed",
            Self::Autoencoder => "autoencoder",
        }
    }
}

impl LdmConfig {
    /// Reads a uni-modal config; any other kind is refused before it is read
    /// further (so a composed config that names itself as its own part is an
    /// error, not an endless loop).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let root = read_yaml(path)?;
        let doc = Doc { path, root: &root };
        match doc.kind()? {
            Kind::Ldm => Self::from_doc(&doc),
            other => Err(ConfigError::WrongKind {
                path: path.to_path_buf(),
                found: other.name(),
                wanted: "a uni-modal model needs its LatentDiffusion config (e.g. 256_text.yaml)",
            }),
        }
    }

    fn from_doc(doc: &Doc) -> Result<Self, ConfigError> {
        let cond_target = doc.str_at("model.params.cond_stage_config.target")?;
        let cond_params = "model.params.cond_stage_config.params";
        let cond_stage = if cond_target.ends_with("BERTEmbedder") {
            CondStageConfig::Text(doc.typed(cond_params)?)
        } else if cond_target.ends_with("SegMaskEncoder") {
            CondStageConfig::Mask(doc.typed(cond_params)?)
        } else {
            return Err(doc.invalid(format!(
                "cond_stage_config.target is {cond_target}; expected BERTEmbedder or SegMaskEncoder"
            )));
        };
        Ok(Self {
            path: doc.path.to_path_buf(),
            diffusion: doc.diffusion()?,
            unet: doc.typed("model.params.unet_config.params")?,
            first_stage: doc.typed("model.params.first_stage_config.params")?,
            cond_stage,
            guidance_scale: doc.guidance_scale()?,
            parameterization: doc.parameterization()?,
            snr_weight_cap: doc.snr_weight_cap()?,
        })
    }
}

impl ComposedConfig {
    /// Reads a composed config and the uni-modal configs it names; any other kind is refused.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        match ModelConfig::load(path.as_ref())? {
            ModelConfig::Composed(c) => Ok(*c),
            other => Err(ConfigError::WrongKind {
                path: path.as_ref().to_path_buf(),
                found: other.kind(),
                wanted: "generation needs the composed config (e.g. 256_codiff_mask_text.yaml)",
            }),
        }
    }

    fn from_doc(doc: &Doc) -> Result<Self, ConfigError> {
        let mask_path = doc.find_file(&doc.str_at("model.params.seg_mask_ldm_config_path")?)?;
        let text_path = doc.find_file(&doc.str_at("model.params.text_ldm_config_path")?)?;
        let mask = LdmConfig::load(&mask_path)?;
        let text = LdmConfig::load(&text_path)?;
        let ckpt = |key: &str| doc.str_at(key).ok().and_then(|name| doc.find_file(&name).ok());
        Ok(Self {
            path: doc.path.to_path_buf(),
            diffusion: doc.diffusion()?,
            diffuser: doc.typed("model.params.compose_unet_config.params.confidence_map_predictor_config.params")?,
            mask_ckpt: ckpt("model.params.seg_mask_ldm_ckpt_path"),
            text_ckpt: ckpt("model.params.text_ldm_ckpt_path"),
            mask,
            text,
        })
    }
}

/// A config is a few kilobytes; more is not read (a device like /dev/zero never ends).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Deepest bracket nesting read; the parser's time grows with the square of it.
const MAX_FLOW_DEPTH: usize = 64;
/// Largest integer a model's parameters may hold: sizes, counts and step
/// numbers of any real model are far below it, and larger ones would only
/// end in an allocation failure.
const MAX_PARAM_INT: i64 = 100_000;
/// Largest latent side: the released models use 64 (256-pixel images).
const MAX_LATENT_SIZE: usize = 512;

fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    use std::io::Read;
    let read_err = |reason: String| ConfigError::Read { path: path.to_path_buf(), reason };
    let invalid = |reason: String| ConfigError::Invalid { path: path.to_path_buf(), reason };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| read_err(e.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(read_err(format!("it is larger than {MAX_CONFIG_BYTES} bytes; a model config is a few kilobytes")));
    }
    if flow_depth(&text) > MAX_FLOW_DEPTH {
        return Err(invalid(format!("it nests brackets more than {MAX_FLOW_DEPTH} deep")));
    }
    let root: Value = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if let Some(params) = root.get("model").and_then(|m| m.get("params")) {
        check_numbers(params, "model.params").map_err(invalid)?;
    }
    Ok(root)
}

/// The deepest nesting of YAML flow brackets (`[` and `{`), quotes and comments aside.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut quote, mut comment) = (0usize, 0, None, false);
    for c in text.chars() {
        match (quote, c) {
            (_, '\n') => comment = false,
            _ if comment => {}
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Refuses integers beyond [`MAX_PARAM_INT`] and non-finite numbers anywhere
/// under `root`, walking the tree without recursion.
fn check_numbers(root: &Value, name: &str) -> Result<(), String> {
    let mut todo = vec![(root, name.to_string())];
    while let Some((node, at)) = todo.pop() {
        match node {
            Value::Number(n) if n.as_i64().is_some_and(|i| i.unsigned_abs() > MAX_PARAM_INT as u64) || n.as_u64().is_some_and(|u| u > MAX_PARAM_INT as u64) => {
                return Err(format!("`{at}` is {n}; no model has a size or count above {MAX_PARAM_INT}"));
            }
            Value::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => return Err(format!("`{at}` is {n}, not a finite number")),
            Value::Mapping(m) => todo.extend(m.iter().map(|(k, v)| (v, format!("{at}.{}", k.as_str().unwrap_or("?"))))),
            Value::Sequence(items) => todo.extend(items.iter().enumerate().map(|(i, v)| (v, format!("{at}[{i}]")))),
            _ => {}
        }
    }
    Ok(())
}

/// A parsed YAML file and where it came from, for lookups with good errors.
struct Doc<'a> {
    path: &'a Path,
    root: &'a Value,
}

/// Where a config keeps its [`ChannelMeanPrior`], when it has one.
pub const CHANNEL_MEAN_PRIOR: &str = "model.params.channel_mean_prior";
/// Where a config keeps its [`DetailFactors`], when it has them.
pub const X0_DETAIL_FACTORS: &str = "model.params.x0_detail_factors";
/// A uni-modal model's classifier-free guidance scale (named after the
/// original LDM sampler's argument).
pub const GUIDANCE_SCALE: &str = "model.params.unconditional_guidance_scale";
/// What a uni-modal model's UNet predicts (the original LDM's key).
pub const PARAMETERIZATION: &str = "model.params.parameterization";
/// The training loss's cap on the weight of nearly clean timesteps.
pub const SNR_WEIGHT_CAP: &str = "model.params.snr_weight_cap";
/// Far past any useful guidance; larger scales amplify noise into the image.
const MAX_GUIDANCE_SCALE: f64 = 30.0;

impl Doc<'_> {
    fn invalid(&self, reason: String) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_path_buf(), reason }
    }

    fn at(&self, dotted: &str) -> Result<&Value, ConfigError> {
        dotted
            .split('.')
            .try_fold(self.root, |node, key| node.get(key))
            .ok_or_else(|| self.invalid(format!("has no `{dotted}`")))
    }

    fn kind(&self) -> Result<Kind, ConfigError> {
        let target = self.str_at("model.target")?;
        if target.ends_with("LatentDiffusionCompose") {
            Ok(Kind::Composed)
        } else if target.ends_with("LatentDiffusion") {
            Ok(Kind::Ldm)
        } else if target.ends_with("AutoencoderKL") {
            Ok(Kind::Autoencoder)
        } else {
            Err(self.invalid(format!("model.target is {target}; expected LatentDiffusion, LatentDiffusionCompose or AutoencoderKL")))
        }
    }

    fn str_at(&self, dotted: &str) -> Result<String, ConfigError> {
        self.at(dotted)?.as_str().map(str::to_string).ok_or_else(|| self.invalid(format!("`{dotted}` is not text")))
    }

    /// [`Self::typed`] for a key that may be absent.
    fn optional<T: DeserializeOwned>(&self, dotted: &str) -> Result<Option<T>, ConfigError> {
        match self.at(dotted) {
            Ok(_) => Ok(Some(self.typed(dotted)?)),
            Err(_) => Ok(None),
        }
    }

    fn typed<T: DeserializeOwned>(&self, dotted: &str) -> Result<T, ConfigError> {
        serde_yaml::from_value(self.at(dotted)?.clone()).map_err(|e| self.invalid(format!("`{dotted}`: {e}")))
    }

    fn diffusion(&self) -> Result<DiffusionSettings, ConfigError> {
        let latent_channels = self.typed("model.params.channels")?;
        let channel_mean_prior: Option<ChannelMeanPrior> = self.optional(CHANNEL_MEAN_PRIOR)?;
        if let Some(prior) = &channel_mean_prior {
            prior.validate(latent_channels).map_err(|reason| self.invalid(reason))?;
        }
        let x0_detail_factors: Option<DetailFactors> = self.optional(X0_DETAIL_FACTORS)?;
        if let Some(factors) = &x0_detail_factors {
            factors.validate().map_err(|reason| self.invalid(reason))?;
        }
        let latent_size: usize = self.typed("model.params.image_size")?;
        if latent_size == 0 || latent_size > MAX_LATENT_SIZE {
            return Err(self.invalid(format!("`model.params.image_size` is {latent_size}; latents run from 1 to {MAX_LATENT_SIZE} pixels a side")));
        }
        let scale_factor: f64 = self.typed("model.params.scale_factor")?;
        if !(scale_factor.is_finite() && scale_factor > 0.0) {
            return Err(self.invalid(format!("`model.params.scale_factor` is {scale_factor}; it must be a positive number (the original's is 0.18215)")));
        }
        Ok(DiffusionSettings {
            schedule: self.typed("model.params")?,
            latent_size,
            latent_channels,
            scale_factor,
            corrections: NoiseCorrections { channel_mean_prior, x0_detail_factors },
        })
    }

    fn guidance_scale(&self) -> Result<f64, ConfigError> {
        let scale = self.optional::<f64>(GUIDANCE_SCALE)?.unwrap_or(1.0);
        if !(scale.is_finite() && (0.0..=MAX_GUIDANCE_SCALE).contains(&scale)) {
            return Err(self.invalid(format!("`{GUIDANCE_SCALE}` is {scale}; it runs from 0 (unconditional) through 1 (no guidance) to {MAX_GUIDANCE_SCALE}")));
        }
        Ok(scale)
    }

    fn parameterization(&self) -> Result<Parameterization, ConfigError> {
        match self.optional::<String>(PARAMETERIZATION)? {
            None => Ok(Parameterization::Eps),
            Some(name) => Parameterization::parse(&name)
                .ok_or_else(|| self.invalid(format!("`{PARAMETERIZATION}` is {name}; this implementation predicts `eps` (the original's) or `v`"))),
        }
    }

    fn snr_weight_cap(&self) -> Result<Option<f64>, ConfigError> {
        let cap = self.optional::<f64>(SNR_WEIGHT_CAP)?;
        match cap {
            Some(c) if !(c.is_finite() && c >= 1.0) => Err(self.invalid(format!("`{SNR_WEIGHT_CAP}` is {c}; it must be at least 1 (1 weights x0's error alike at every level)"))),
            _ => Ok(cap),
        }
    }

    /// Finds a file the config names: next to the config, then in its parent
    /// folder (the original `configs/` + `pretrained/` layout), then in the
    /// working directory; each as written and by file name alone.
    fn find_file(&self, name: &str) -> Result<PathBuf, ConfigError> {
        let named = Path::new(name);
        let file_name = named.file_name().map(Path::new).unwrap_or(named);
        let here = self.path.parent().unwrap_or(Path::new("."));
        let mut tried = vec![here.join(file_name), here.join(named)];
        if let Some(parent) = here.parent() {
            tried.push(parent.join(named));
            tried.push(parent.join(file_name));
        }
        tried.push(named.to_path_buf());
        tried.dedup();
        tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| ConfigError::NotFound {
            path: self.path.to_path_buf(),
            name: name.to_string(),
            tried: tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default models' configs in a temporary directory, each line of
    /// the composed one passed through `edit`.
    fn default_configs(edit: impl Fn(&str) -> String) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("codiff-config-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).unwrap();
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for name in ["mask.yaml", "text.yaml"] {
            std::fs::copy(models.join(name), dir.join(name)).unwrap();
        }
        let composed = std::fs::read_to_string(models.join("codiff.yaml")).unwrap();
        let edited: Vec<String> = composed.lines().map(edit).collect();
        std::fs::write(dir.join("codiff.yaml"), edited.join("\n")).unwrap();
        dir.join("codiff.yaml")
    }

    #[test]
    fn a_guidance_scale_is_read_from_the_uni_modal_config_and_checked() {
        let composed = default_configs(str::to_string);
        let text_yaml = composed.with_file_name("text.yaml");
        let original: String = std::fs::read_to_string(&text_yaml).unwrap().lines().filter(|l| !l.contains("unconditional_guidance_scale")).map(|l| format!("{l}\n")).collect();
        std::fs::write(&text_yaml, &original).unwrap();
        assert_eq!(ComposedConfig::load(&composed).unwrap().text.guidance_scale, 1.0, "no key: the original's unguided sampling");
        let with_scale = |scale: &str| original.replacen("\n  params:\n", &format!("\n  params:\n    unconditional_guidance_scale: {scale}\n"), 1);
        std::fs::write(&text_yaml, with_scale("3.5")).unwrap();
        let config = ComposedConfig::load(&composed).unwrap();
        assert_eq!((config.text.guidance_scale, config.mask.guidance_scale), (3.5, 2.0), "each model keeps its own");
        for bad in ["-1", ".nan", "1000"] {
            std::fs::write(&text_yaml, with_scale(bad)).unwrap();
            let err = ComposedConfig::load(&composed).unwrap_err().to_string();
            assert!(err.contains("unconditional_guidance_scale"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_parameterization_and_loss_cap_are_read_and_checked() {
        let composed = default_configs(str::to_string);
        let mask_yaml = composed.with_file_name("mask.yaml");
        let original = std::fs::read_to_string(&mask_yaml).unwrap();
        let config = ComposedConfig::load(&composed).unwrap();
        assert_eq!((config.mask.parameterization, config.mask.snr_weight_cap), (Parameterization::Eps, None), "no keys: the original's");
        let with = |lines: &str| original.replacen("\n  params:\n", &format!("\n  params:\n{lines}"), 1);
        std::fs::write(&mask_yaml, with("    parameterization: v\n    snr_weight_cap: 5.0\n")).unwrap();
        let config = ComposedConfig::load(&composed).unwrap();
        assert_eq!((config.mask.parameterization, config.mask.snr_weight_cap), (Parameterization::V, Some(5.0)));
        assert_eq!(config.text.parameterization, Parameterization::Eps, "each model keeps its own");
        for (bad, key) in [("    parameterization: x0\n", "parameterization"), ("    snr_weight_cap: 0.5\n", "snr_weight_cap")] {
            std::fs::write(&mask_yaml, with(bad)).unwrap();
            let err = ComposedConfig::load(&composed).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn the_noise_corrections_are_read_and_checked() {
        let config = ComposedConfig::load(default_configs(str::to_string)).unwrap();
        let prior = config.diffusion.corrections.channel_mean_prior.expect("the default models carry a prior");
        assert_eq!(prior.mean.len(), config.diffusion.latent_channels);
        let factors = config.diffusion.corrections.x0_detail_factors.expect("the default models carry x0 detail factors");
        assert!(factors.at(0) > 0.99 && factors.at(999) < 0.5, "{factors:?}");

        // `key`'s line replaced by `line`.
        let replacing = |key: &'static str, line: String| move |l: &str| if l.contains(key) { line.clone() } else { l.to_string() };
        let err = ComposedConfig::load(default_configs(replacing("x0_detail_factors:", "    x0_detail_factors: [[0, 1.0], [999, 2.0]]".into()))).unwrap_err().to_string();
        assert!(err.contains("must lie in [0, 1]"), "{err}");

        // A prior of `n` channels: zero means, the identity covariance with `diagonal` at channel 1.
        let prior_line = |n: usize, diagonal: i32| {
            let rows: Vec<String> = (0..n).map(|i| format!("[{}]", (0..n).map(|j| if i != j { 0 } else if i == 1 { diagonal } else { 1 }.to_string()).collect::<Vec<_>>().join(", "))).collect();
            format!("    channel_mean_prior: {{mean: [{}], covariance: [{}]}}", vec!["0"; n].join(", "), rows.join(", "))
        };
        let channels = config.diffusion.latent_channels;
        let err = ComposedConfig::load(default_configs(replacing("channel_mean_prior:", prior_line(channels - 1, 1)))).unwrap_err().to_string();
        assert!(err.contains(&format!("channel_mean_prior must give {channels} means")), "{err}");

        let err = ComposedConfig::load(default_configs(replacing("channel_mean_prior:", prior_line(channels, -1)))).unwrap_err().to_string();
        assert!(err.contains("positive semi-definite"), "{err}");

        let neither = |l: &str| if l.contains("channel_mean_prior:") || l.contains("x0_detail_factors:") { String::new() } else { l.to_string() };
        let without = ComposedConfig::load(default_configs(neither)).unwrap();
        assert_eq!(without.diffusion.corrections, NoiseCorrections::default());
    }
}
