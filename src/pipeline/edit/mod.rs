//! Collaborative editing of a photo: change its mask and its description at once.
//!
//! - **inversion** (seconds): deterministic DDIM inversion of the photo's latent
//!   under the source conditions, then collaborative sampling from the inverted
//!   noise with the target mask and text.
//! - **imagic** (the paper's method, minutes): per modality, optimise the
//!   condition embedding so the frozen model reconstructs the photo, fine-tune
//!   the UNet with that embedding fixed, then sample collaboratively with both
//!   fine-tuned UNets from alpha * target + (1 - alpha) * optimised conditions.
//!   Sampling starts from the photo's DDIM inversion, not from fresh noise as
//!   in the original: from fresh noise the small default models do not draw
//!   the photo back (docs/editing.md has the measurements). Fine-tuned
//!   weights are cached per photo and conditions, so another alpha only
//!   samples again.
//!
//! Both give the source photo back where the masks agree on background or
//! cloth ([`untouched`]).

use crate::data::image_params::{EditParams, ImageParams, ImagicParams};
use std::cell::OnceCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::image::{images_to_frames, RgbFrame};
use crate::data::mask::Mask;
use crate::data::synth::{caption, sample_attributes, Beard, BeardLevel, Decade, Gender};
use crate::diffusion::collaborate::{CombineMode, PostProcess};
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::model::checkpoint::Weights;
use crate::diffusion::modality::PerModality;
use crate::model::collaborative::{denoising_loss, CollaborativeModel, Collaboration, Contexts, ModelError, MASK_UNET_PREFIX, TEXT_UNET_PREFIX};
use crate::model::config::LdmConfig;
use crate::model::judges::Judges;
use crate::model::optim::AdamW;
use crate::model::unet::UNetModel;
use crate::pipeline::generate::GenerateError;

pub mod memory;
pub mod photo;
pub mod untouched;

pub use photo::{photo_tensor, Crop, Photo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EditMethod {
    Imagic,
    Inversion,
}

impl EditMethod {
    /// As `codiff edit --method` names it.
    pub fn name(self) -> &'static str {
        match self {
            EditMethod::Imagic => "imagic",
            EditMethod::Inversion => "inversion",
        }
    }
}

/// Imagic's interpolation weight for the default models at the original's
/// 500 embedding and 1000 fine-tuning steps. Measured on 8 held-out photos
/// (docs/editing.md, "Which alpha"): alpha 1 edits as much as 2.5 and 5 (26.5%
/// of the edited region right against 10.8% unedited, 70.8% on the caption
/// against 58.3%) and alone keeps the gender (87.5%, as unedited) and the most
/// identity; alpha 10, which the same models need after only 100 and 200
/// steps, flips the gender of most faces (37.5%) and misses the caption more
/// often than no edit does (54.2%).
pub const DEFAULT_IMAGIC_ALPHA: f64 = 1.0;

/// What to edit and how.
#[derive(Debug, Clone)]
pub struct EditRequest {
    /// The photo at the model's resolution.
    pub photo: RgbImage,
    /// The photo's own mask and description; read by the judges when absent.
    pub source_mask: Option<Mask>,
    pub source_text: Option<String>,
    pub target_mask: Mask,
    pub target_text: String,
    pub method: EditMethod,
    /// Imagic's interpolation weights (inversion ignores them).
    pub alphas: Vec<f64>,
    pub embed_steps: usize,
    pub finetune_steps: usize,
    pub embed_lr: f64,
    pub finetune_lr: f64,
    pub steps: usize,
    pub seed: u64,
    /// Collaborative, or one modality's edit alone.
    pub mode: CombineMode,
    /// Where Imagic's fine-tuned weights are cached (default: the system's temporary folder).
    pub cache: Option<PathBuf>,
}

impl EditRequest {
    /// What the PNG of the edit at `alpha` carries: the target, the source as
    /// read, and the photo's name and crop, made by `model` (edits sample at eta 0).
    pub fn image_params(&self, source_text: &str, alpha: f64, model: Option<String>, photo: &str, crop: Crop) -> ImageParams {
        ImageParams {
            prompt: self.target_text.clone(),
            seed: self.seed,
            steps: self.steps,
            eta: 0.0,
            mode: self.mode,
            model,
            mask: Some(self.target_mask.clone()),
            edit: Some(EditParams {
                source_text: source_text.into(),
                method: self.method.name().into(),
                alpha,
                photo: photo.into(),
                crop: Some(crop.arg()),
                imagic: (self.method == EditMethod::Imagic).then_some(ImagicParams {
                    embed_steps: self.embed_steps,
                    finetune_steps: self.finetune_steps,
                    embed_lr: self.embed_lr,
                    finetune_lr: self.finetune_lr,
                }),
            }),
        }
    }

    /// The original's Imagic settings (500 embedding steps at 1e-3, 1000
    /// fine-tuning steps at 1e-6) at the alpha the default models need.
    pub fn new(photo: RgbImage, target_mask: Mask, target_text: String, method: EditMethod) -> Self {
        Self {
            photo,
            source_mask: None,
            source_text: None,
            target_mask,
            target_text,
            method,
            alphas: vec![DEFAULT_IMAGIC_ALPHA],
            embed_steps: 500,
            finetune_steps: 1000,
            embed_lr: 1e-3,
            finetune_lr: 1e-6,
            steps: 50,
            seed: 0,
            mode: CombineMode::Collaborative,
            cache: Some(std::env::temp_dir().join("codiff-imagic-cache")),
        }
    }
}

/// The kinds of work an edit does, each with its own time per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EditPhase {
    /// Imagic: optimising one modality's condition embedding (a UNet forward and backward per step).
    Embedding,
    /// Imagic: fine-tuning one modality's UNet (a forward and backward, and an AdamW update, per step).
    FineTuning,
    /// DDIM inversion of the photo (both UNets per step).
    Inverting,
    /// Sampling the edit from the inversion (both UNets per step).
    Sampling,
}

/// Progress of the long parts.
#[derive(Debug, Clone)]
pub enum EditEvent {
    Stage { phase: EditPhase, name: String, step: usize, total: usize },
}

impl EditRequest {
    /// The stages the edit runs, in order, with their step counts.
    pub fn plan(&self) -> Vec<(EditPhase, usize)> {
        plan(self.method, self.embed_steps, self.finetune_steps, self.steps, self.alphas.len())
    }
}

/// The stages of an edit, in order, with their step counts: Imagic's
/// embedding and fine-tuning per modality (skipped where cached), one
/// inversion, and one sampling per alpha (inversion samples once).
pub fn plan(method: EditMethod, embed_steps: usize, finetune_steps: usize, steps: usize, alphas: usize) -> Vec<(EditPhase, usize)> {
    let (tuning, samplings) = match method {
        EditMethod::Imagic => ([(EditPhase::Embedding, embed_steps), (EditPhase::FineTuning, finetune_steps)].repeat(2), alphas),
        EditMethod::Inversion => (Vec::new(), 1),
    };
    let sampling = std::iter::repeat_n((EditPhase::Sampling, steps), samplings);
    tuning.into_iter().chain([(EditPhase::Inverting, steps)]).chain(sampling).filter(|&(_, n)| n > 0).collect()
}

pub struct EditOutput {
    pub source_mask: Mask,
    pub source_text: String,
    /// One image per alpha (one for inversion).
    pub images: Vec<(f64, RgbFrame)>,
}

/// What the judges read off a photo: its mask and a caption of its gender, age and beard.
pub fn describe(judges: &Judges, photo: &Tensor, size: usize, seed: u64) -> Result<(Mask, String), ModelError> {
    let judged = Judges::prepare(photo)?;
    let classes = judges.parser.parse(&judged)?.flatten_all()?.to_vec1::<u32>()?;
    let side = judged.dim(3)?;
    let mask = Mask::from_classes(side, side, classes.iter().map(|&c| c as u8).collect())?.resize_nearest(size, size);
    let logits = judges.attributes.forward(&judged)?;
    let pick = |t: &Tensor| -> candle_core::Result<usize> { Ok(t.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?[0] as usize) };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut attributes = sample_attributes(&mut rng);
    attributes.gender = Gender::ALL[pick(&logits.gender)?];
    attributes.age_years = (Decade::ALL[pick(&logits.decade)?].years().0 + 4) as _;
    attributes.beard = Beard::of_level(BeardLevel::ALL[pick(&logits.beard)?]);
    Ok((mask, caption(&attributes, &mut rng)))
}

/// Runs one edit.
pub fn run(
    model: &CollaborativeModel,
    judges: Option<&Judges>,
    request: &EditRequest,
    cancel: &AtomicBool,
    sink: &mut dyn FnMut(EditEvent),
) -> Result<EditOutput, GenerateError> {
    let size = model.image_size();
    if request.photo.width() as usize != size || request.photo.height() as usize != size {
        return Err(GenerateError::Request(format!("the photo must be {size}x{size} (crop and resize it first)")));
    }
    request.target_mask.square_size("the target mask").map_err(|e| GenerateError::Request(e.to_string()))?;
    let photo = photo_tensor(&request.photo, &model.device)?;
    let (source_mask, source_text) = match (&request.source_mask, &request.source_text, judges) {
        (Some(m), Some(t), _) => (m.clone(), t.clone()),
        (m, t, Some(judges)) => {
            let (mask, text) = describe(judges, &photo, size, request.seed)?;
            (m.clone().unwrap_or(mask), t.clone().unwrap_or(text))
        }
        _ => return Err(GenerateError::Request("without the judges, give the photo's own mask and description".into())),
    };
    let z0 = (model.vae.encode(&photo)?.mean * model.config.diffusion.scale_factor)?;
    let ddim = DdimSchedule::new(&model.schedule, request.steps, 0.0).map_err(|e| GenerateError::Request(e.to_string()))?;
    let (target, _) = model.encode_conditions(&request.target_mask, std::slice::from_ref(&request.target_text))?;
    let post = PostProcess::default();
    let tuned = match request.method {
        EditMethod::Imagic => Some(imagic_collaborators(model, &z0, &target, request, cancel, sink)?),
        EditMethod::Inversion => None,
    };
    // What the photo is inverted under, and the (alpha, conditions) sampled from there.
    let (collaborators, source, targets) = match &tuned {
        // What reconstructs the photo: alpha 0 gives it back.
        Some(tuned) => {
            let targets = request
                .alphas
                .iter()
                .map(|&alpha| {
                    let contexts = target.as_ref().zip(tuned.embeddings.as_ref()).map(|(target, optimised)| mix(target, optimised, alpha));
                    Ok((alpha, contexts.transpose()?))
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            (tuned.unets.as_ref(), tuned.embeddings.clone(), targets)
        }
        None => {
            let (source, _) = model.encode_conditions(&source_mask, std::slice::from_ref(&source_text))?;
            (model.unets.as_ref(), source, vec![(1.0, target)])
        }
    };
    let inverting = Collaboration { collaborators, ..Collaboration::new(model, &source, request.mode, &post) };
    let x_t = inverting.invert(&z0, &ddim, cancel, |s| {
        sink(EditEvent::Stage { phase: EditPhase::Inverting, name: "inverting".into(), step: s.index + 1, total: s.total });
        Ok::<_, GenerateError>(())
    })?;
    let mut images = Vec::new();
    for (alpha, contexts) in targets {
        let stage = if tuned.is_some() { format!("sampling (alpha {alpha})") } else { "sampling".into() };
        // Deterministic (eta 0): the inverted latent is all the noise there is.
        let mut noise = NoiseSource::injected(x_t.clone(), Tensor::zeros((1,), DType::F32, &model.device)?);
        let z = Collaboration { contexts: &contexts, ..inverting }.sample(&ddim, &mut noise, cancel, |s| {
            sink(EditEvent::Stage { phase: EditPhase::Sampling, name: stage.clone(), step: s.index + 1, total: s.total });
            Ok::<_, GenerateError>(())
        })?;
        // Where neither edit has anything to change, the photo itself, not its resampled colours.
        let edited = untouched::restore_untouched(&decode(model, &z)?, &request.photo, &source_mask, &request.target_mask);
        images.push((alpha, edited));
    }
    Ok(EditOutput { source_mask, source_text, images })
}

fn decode(model: &CollaborativeModel, z: &Tensor) -> Result<RgbFrame, GenerateError> {
    Ok(images_to_frames(&model.decode(z)?)?.remove(0))
}

/// alpha * target + (1 - alpha) * optimised (alpha may leave [0, 1], as the original sweeps it to 2.5).
fn mix(target: &Tensor, optimised: &Tensor, alpha: f64) -> candle_core::Result<Tensor> {
    (target * alpha)? + (optimised * (1.0 - alpha))?
}

/// The fine-tuned UNets and optimised embeddings of an Imagic edit.
struct Tuned {
    unets: PerModality<UNetModel>,
    embeddings: Contexts,
}

fn imagic_collaborators(
    model: &CollaborativeModel,
    z0: &Tensor,
    target: &Contexts,
    request: &EditRequest,
    cancel: &AtomicBool,
    sink: &mut dyn FnMut(EditEvent),
) -> Result<Tuned, GenerateError> {
    let key = cache_key(model, request);
    // Opened at most once, and only if a modality misses the cache.
    let checkpoint = OnceCell::new();
    let tune = |unet, config, prefix, target, modality, sink: &mut dyn FnMut(EditEvent)| {
        imagic_one(model, &checkpoint, (unet, config, prefix), z0, target, request, modality, &key, cancel, sink)
    };
    let (mask_unet, mask_embedding) = tune(&model.unets.mask, &model.config.mask, MASK_UNET_PREFIX, &target.mask, "mask", sink)?;
    let (text_unet, text_embedding) = tune(&model.unets.text, &model.config.text, TEXT_UNET_PREFIX, &target.text, "text", sink)?;
    Ok(Tuned { unets: PerModality { mask: mask_unet, text: text_unet }, embeddings: PerModality { mask: mask_embedding, text: text_embedding } })
}

/// A hash of everything a fine-tuning result depends on: the request and the
/// model it starts from (its checkpoint's path, size and modification time,
/// so retrained weights never meet UNets fine-tuned from the old ones).
fn cache_key(model: &CollaborativeModel, request: &EditRequest) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    };
    if let Some(path) = &model.weights_path {
        feed(path.to_string_lossy().as_bytes());
        if let Ok(meta) = std::fs::metadata(path) {
            feed(&meta.len().to_le_bytes());
            let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            feed(&modified.map_or(0, |d| d.as_nanos()).to_le_bytes());
        }
    }
    feed(request.photo.as_raw());
    feed(request.target_mask.classes());
    feed(request.target_text.as_bytes());
    feed(format!("{} {} {} {} {}", request.embed_steps, request.finetune_steps, request.embed_lr, request.finetune_lr, request.seed).as_bytes());
    format!("{h:016x}")
}

/// One modality's Imagic: (1) the embedding that reconstructs the photo with the
/// frozen UNet, (2) the UNet fine-tuned with that embedding fixed.
#[allow(clippy::too_many_arguments)]
fn imagic_one(
    model: &CollaborativeModel,
    checkpoint: &OnceCell<Weights>,
    (unet, config, prefix): (&UNetModel, &LdmConfig, &str),
    z0: &Tensor,
    target: &Tensor,
    request: &EditRequest,
    modality: &str,
    key: &str,
    cancel: &AtomicBool,
    sink: &mut dyn FnMut(EditEvent),
) -> Result<(UNetModel, Tensor), GenerateError> {
    let cached = request.cache.as_ref().map(|dir| dir.join(format!("{key}-{modality}.safetensors")));
    if let Some(path) = cached.as_ref().filter(|p| p.exists()) {
        let weights = candle_core::safetensors::load(path, &model.device)?;
        if let Some(embedding) = weights.get("embedding").cloned() {
            let vb = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &model.device);
            return Ok((UNetModel::new(vb.pp("unet"), &config.unet)?, embedding));
        }
    }
    // Refuse before any work when the fine-tuning cannot fit in memory.
    let weights = opened(model, checkpoint)?;
    let parameters = weights.shapes().iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, s)| s.iter().product::<usize>()).sum();
    let needed = memory::finetune_bytes(&config.unet, parameters, z0.dim(3)?, target.dim(1)?);
    memory::check_fits(needed, memory::available_bytes()).map_err(GenerateError::Request)?;
    let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
    let loss = |unet: &UNetModel, embedding: &Tensor, rng: &mut ChaCha8Rng| -> candle_core::Result<Tensor> {
        denoising_loss(unet, config, &model.schedule, z0, embedding, rng)
    };
    // (1) The embedding, with the model frozen.
    let embedding = Var::from_tensor(target)?;
    let vars = VarMap::new();
    vars.data().lock().map_err(|_| GenerateError::Request("poisoned".into()))?.insert("embedding".into(), embedding.clone());
    let mut opt = AdamW::new(&vars, request.embed_lr, None)?;
    opt.warmup_steps = 1;
    for step in 0..request.embed_steps {
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }
        opt.backward_step(&loss(unet, embedding.as_tensor(), &mut rng)?)?;
        sink(EditEvent::Stage { phase: EditPhase::Embedding, name: format!("{modality}: optimising the embedding"), step: step + 1, total: request.embed_steps });
    }
    let embedding = embedding.as_tensor().detach();
    // (2) The UNet, starting from the model's weights, with the embedding fixed.
    let vars = VarMap::new();
    let trainable = UNetModel::new(candle_nn::VarBuilder::from_varmap(&vars, DType::F32, &model.device), &config.unet)?;
    copy_weights(model, checkpoint, prefix, &vars)?;
    let mut opt = AdamW::new(&vars, request.finetune_lr, None)?;
    opt.warmup_steps = 1;
    for step in 0..request.finetune_steps {
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }
        opt.backward_step(&loss(&trainable, &embedding, &mut rng)?)?;
        sink(EditEvent::Stage { phase: EditPhase::FineTuning, name: format!("{modality}: fine-tuning the UNet"), step: step + 1, total: request.finetune_steps });
    }
    let mut weights: std::collections::HashMap<String, Tensor> =
        opt.final_weights().into_iter().map(|(k, v)| (format!("unet.{k}"), v)).collect();
    weights.insert("embedding".into(), embedding.clone());
    if let Some(path) = &cached {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| GenerateError::Request(format!("could not create {}: {e}", dir.display())))?;
        }
        candle_core::safetensors::save(&weights, path)?;
    }
    let vb = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &model.device);
    Ok((UNetModel::new(vb.pp("unet"), &config.unet)?, embedding))
}

/// The model's checkpoint, opened on first use.
fn opened<'a>(model: &CollaborativeModel, checkpoint: &'a OnceCell<Weights>) -> Result<&'a Weights, GenerateError> {
    let Some(path) = &model.weights_path else {
        return Err(GenerateError::Request("Imagic fine-tunes the model's own weights; load the model from a checkpoint".into()));
    };
    if let Some(weights) = checkpoint.get() {
        return Ok(weights);
    }
    let weights = Weights::open(path).map_err(ModelError::from)?;
    Ok(checkpoint.get_or_init(|| weights))
}

/// Sets every variable of `vars` (a fresh UNet) to the checkpoint tensor at `prefix`.`name`.
fn copy_weights(model: &CollaborativeModel, checkpoint: &OnceCell<Weights>, prefix: &str, vars: &VarMap) -> Result<(), GenerateError> {
    let weights = opened(model, checkpoint)?;
    for (name, var) in vars.data().lock().map_err(|_| GenerateError::Request("the variable map lock was poisoned".into()))?.iter() {
        let key = format!("{prefix}.{name}");
        let Some(tensor) = weights.get(&key).map_err(ModelError::from)? else {
            return Err(GenerateError::Request(format!("the checkpoint has no {key}")));
        };
        var.set(&tensor.to_dtype(DType::F32)?.to_device(&model.device)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::defaults::ModelFiles;
    use crate::pipeline::evaluate::edits::case;

    #[test]
    fn an_edit_s_png_names_its_photo_and_the_crop_edited() {
        let request = EditRequest::new(RgbImage::new(4, 4), Mask::filled(4, 4, 0), "He is in his sixties.".into(), EditMethod::Inversion);
        let crop = Crop { x: 12, y: 3, side: 40 };
        let params = request.image_params("He is a teen.", 1.0, Some("codiff_256".into()), "me.png", crop);
        assert_eq!((params.prompt.as_str(), params.eta, params.model.as_deref()), ("He is in his sixties.", 0.0, Some("codiff_256")));
        let edit = params.edit.unwrap();
        assert_eq!((edit.photo.as_str(), edit.source_text.as_str(), edit.method.as_str()), ("me.png", "He is a teen.", "inversion"));
        assert_eq!(Crop::parse(edit.crop.as_deref().unwrap()), Ok(crop), "as `codiff edit --crop` reads it");
        assert_eq!(edit.imagic, None, "inversion optimises nothing");
        let imagic = EditRequest { method: EditMethod::Imagic, embed_steps: 7, ..request };
        let optimised = imagic.image_params("", 2.0, None, "me.png", crop).edit.unwrap().imagic.unwrap();
        assert_eq!((optimised.embed_steps, optimised.finetune_steps), (7, 1000));
    }

    fn psnr(a: &RgbFrame, b: &RgbFrame) -> f64 {
        let mse = a.pixels.iter().zip(&b.pixels).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / a.pixels.len() as f64;
        10.0 * (255.0 * 255.0 / mse.max(1e-10)).log10()
    }

    #[test]
    fn the_plan_lists_every_stage_in_order() {
        use EditPhase::*;
        let mut request = EditRequest::new(RgbImage::new(8, 8), Mask::filled(8, 8, 0), "x".into(), EditMethod::Imagic);
        (request.embed_steps, request.finetune_steps, request.steps, request.alphas) = (5, 7, 9, vec![1.0, 10.0]);
        assert_eq!(request.plan(), [(Embedding, 5), (FineTuning, 7), (Embedding, 5), (FineTuning, 7), (Inverting, 9), (Sampling, 9), (Sampling, 9)]);
        request.embed_steps = 0;
        assert_eq!(request.plan(), [(FineTuning, 7), (FineTuning, 7), (Inverting, 9), (Sampling, 9), (Sampling, 9)], "no stage without steps");
        request.method = EditMethod::Inversion;
        assert_eq!(request.plan(), [(Inverting, 9), (Sampling, 9)]);
    }

    #[test]
    fn imagic_at_alpha_zero_gives_the_photo_back_and_alpha_moves_away_from_it() {
        let files = ModelFiles::default_models().expect("the default models are committed");
        let model = CollaborativeModel::load(&files.config, &files.weights, &candle_core::Device::Cpu, Default::default()).unwrap();
        let c = case(0, model.image_size());
        let mut request = EditRequest::new(c.photo.clone(), c.target_mask.clone(), c.target_caption.clone(), EditMethod::Imagic);
        request.source_mask = Some(c.source_mask.clone());
        request.source_text = Some(c.source_caption.clone());
        (request.embed_steps, request.finetune_steps, request.steps) = (2, 2, 10);
        request.alphas = vec![0.0, 8.0];
        // Two steps at a large rate move the embedding far enough for alpha to show.
        request.embed_lr = 0.05;
        request.cache = None;
        let mut stages: Vec<(EditPhase, String, usize)> = Vec::new();
        let output = run(&model, None, &request, &AtomicBool::new(false), &mut |EditEvent::Stage { phase, name, total, .. }| {
            if stages.last().is_none_or(|(_, last, _)| *last != name) {
                stages.push((phase, name, total));
            }
        })
        .unwrap();
        let ran: Vec<(EditPhase, usize)> = stages.into_iter().map(|(phase, _, total)| (phase, total)).collect();
        assert_eq!(ran, request.plan(), "the stages run as planned");
        // What the autoencoder itself gives back of the photo: the best any edit can keep.
        let photo = photo_tensor(&c.photo, &model.device).unwrap();
        let z0 = (model.vae.encode(&photo).unwrap().mean * model.config.diffusion.scale_factor).unwrap();
        let round_trip = decode(&model, &z0).unwrap();
        let (kept, edited) = (psnr(&output.images[0].1, &round_trip), psnr(&output.images[1].1, &round_trip));
        // Ten DDIM steps of inversion and back keep about 24 dB of the 128-px models' round trip.
        assert!(kept > 22.0, "alpha 0 reconstructs the photo: {kept:.1} dB to the autoencoder's round trip");
        assert!(edited < kept - 3.0, "alpha 8 edits it: {edited:.1} dB against {kept:.1} dB");
    }
}
