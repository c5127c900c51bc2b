//! The judges stage: the face parser and the attribute classifier, trained on
//! synthetic photos (augmented, so every layout a mask may ask for) with their
//! ground-truth masks and attributes, shrunk to the judges' side as they
//! shrink what they read. Half the batches show training photos as the
//! trained autoencoder renders them at the models' size, and all are randomly
//! softened and noised, so that the judges read generated images (which
//! always come out of that decoder) as well as photos: a judge that sees only
//! sharp photos under-reads what a decoded image does show. The other half
//! are faces of the training world drawn fresh at every step: on the 8,192
//! cached photos alone the attribute classifier learnt the photos, not the
//! attributes (its training loss fell by a third with no held-out gain).

use candle_core::{DType, Device, Tensor, D};
use candle_nn::loss::cross_entropy;
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;

use rand_chacha::ChaCha8Rng;

use crate::diffusion::schedule::gaussian_like;
use super::latents::LatentSet;
use super::{fit, Network, save_weights, write_metrics, Context, FaceSet, Schedule, Stage, TrainError, TrainEvent, HELD_OUT_SEED, TRAIN_SEED};
use crate::model::autoencoder::AutoencoderKL;
use crate::model::config::ComposedConfig;
use crate::model::judges::{AttributeJudge, FaceParser, JUDGE_SIZE};

const PARSER_BATCH: usize = 16;
const ATTRIBUTE_BATCH: usize = 32;
const HELD_OUT: usize = 512;
/// Training photos also shown as the autoencoder renders them. What the
/// judges learn from these is the decoder's rendering, which a quarter of
/// the set shows as well as all of it: decoding all 8,192 at 128 px had not
/// finished after 24 minutes of one core.
const DECODED: usize = 2048;

pub fn train(ctx: &Context, sink: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
    let device = ctx.device.clone();
    let config = ComposedConfig::load(ctx.path("codiff.yaml"))?;
    let size = config.first_stage().ddconfig.resolution;
    // The diffusion stages' training set: its cached latents need only decoding.
    let set = LatentSet::load(ctx, &config, sink)?;
    let held_out = FaceSet::generate(HELD_OUT_SEED, HELD_OUT, size);
    let (vae, _) = super::vae::load(ctx, &config)?;
    sink(TrainEvent::Note(format!("judges: decoding {DECODED} training photos' latents (once)")));
    let coded = set.decoded(&vae, DECODED)?.downscaled(JUDGE_SIZE);
    let held_out_coded = autoencoded(&held_out, &vae, &device)?.downscaled(JUDGE_SIZE);
    let held_out = held_out.downscaled(JUDGE_SIZE);
    let batches = Batches { coded, size, fresh_from: set.faces.len() };
    let vars = VarMap::new();
    let vb = ctx.var_builder(&vars, "parser");
    let parser = FaceParser::new(vb.pp("parser"))?;
    let plan = Schedule { steps: 1500, lr: 1e-3, ema_decay: None, sample_every: usize::MAX, keep_at: &[] };
    let parser_opt = fit(
        ctx,
        Network { stage: Stage::Judges, name: "parser", vars: &vars, companions: &[] },
        &plan,
        sink,
        |step, rng| batches.with(step, PARSER_BATCH, rng, |faces, indices, rng| parser_loss(&parser, faces, indices, &device, rng)),
        |_, _| Ok(()),
    )?;

    let attribute_vars = VarMap::new();
    let vb = ctx.var_builder(&attribute_vars, "attributes");
    let judge = AttributeJudge::new(vb.pp("attributes"))?;
    let plan = Schedule { steps: 3700, lr: 1e-3, ema_decay: None, sample_every: usize::MAX, keep_at: &[] };
    let attribute_opt = fit(
        ctx,
        Network { stage: Stage::Judges, name: "attributes", vars: &attribute_vars, companions: &[] },
        &plan,
        sink,
        |step, rng| batches.with(step, ATTRIBUTE_BATCH, rng, |faces, indices, rng| attribute_loss(&judge, faces, indices, &device, rng)),
        |_, _| Ok(()),
    )?;

    let mut weights = parser_opt.final_weights();
    weights.extend(attribute_opt.final_weights());
    let judges = crate::model::judges::Judges::new(VarBuilder::from_tensors(weights.clone(), DType::F32, &device))?;
    let mut metrics = measure(&judges, &held_out, &device)?;
    metrics["autoencoded"] = measure(&judges, &held_out_coded, &device)?;
    sink(TrainEvent::Note(format!("judges: held-out {metrics}")));
    write_metrics(ctx, Stage::Judges, &metrics)?;
    save_weights(&weights, &ctx.path(Stage::Judges.output()))
}

/// Where the judges' training batches come from.
struct Batches {
    /// Training photos as the autoencoder renders them, at the judges' side.
    coded: FaceSet,
    /// The side the world's photos are made at (then shrunk like the rest).
    size: usize,
    /// The first sample of the training world past the cached training set.
    fresh_from: usize,
}

impl Batches {
    /// `loss` on one batch of `batch` faces: half the time drawn from the
    /// decoded photos, else fresh faces of the training world, new at every
    /// step (so a resumed run draws the same ones).
    fn with<T>(&self, step: usize, batch: usize, rng: &mut ChaCha8Rng, loss: impl FnOnce(&FaceSet, &[usize], &mut ChaCha8Rng) -> T) -> T {
        if rng.random_bool(0.5) {
            let indices = self.coded.draw(rng, batch);
            return loss(&self.coded, &indices, rng);
        }
        let first = (self.fresh_from + step * batch) as u64;
        let fresh = FaceSet::augmented_samples(TRAIN_SEED, first..first + batch as u64, self.size).downscaled(JUDGE_SIZE);
        loss(&fresh, &(0..batch).collect::<Vec<_>>(), rng)
    }
}

/// The faces with each photo as `vae` renders it (its posterior mean,
/// decoded): what a generated image looks like at best.
pub(crate) fn autoencoded(faces: &FaceSet, vae: &AutoencoderKL, device: &Device) -> candle_core::Result<FaceSet> {
    faces.rendered(|chunk| super::vae::reconstructed(vae, &faces.photos(chunk, device)?))
}

/// Per-pixel cross-entropy of the parser on (augmented) photos `indices`.
pub(crate) fn parser_loss(parser: &FaceParser, faces: &FaceSet, indices: &[usize], device: &Device, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
    let photos = augment(&faces.photos(indices, device)?, rng)?;
    let logits = parser.forward(&photos)?.permute((0, 2, 3, 1))?.reshape(((), crate::data::mask::NUM_CLASSES))?;
    cross_entropy(&logits, &faces.class_maps(indices, device)?.flatten_all()?)
}

/// The summed cross-entropies of the three attribute heads on (augmented) photos `indices`.
pub(crate) fn attribute_loss(judge: &AttributeJudge, faces: &FaceSet, indices: &[usize], device: &Device, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
    let logits = judge.forward(&augment(&faces.photos(indices, device)?, rng)?)?;
    let [gender, decade, beard] = truth(faces, indices, device)?;
    (cross_entropy(&logits.gender, &gender)? + cross_entropy(&logits.decade, &decade)?)? + cross_entropy(&logits.beard, &beard)?
}

/// The ground-truth gender, age decade and beard level of `indices` (u32 class ids).
fn truth(faces: &FaceSet, indices: &[usize], device: &Device) -> candle_core::Result<[Tensor; 3]> {
    let column = |f: &dyn Fn(usize) -> u32| Tensor::from_vec(indices.iter().map(|&i| f(i)).collect::<Vec<u32>>(), indices.len(), device);
    Ok([
        column(&|i| faces.attributes[i].gender as u32)?,
        column(&|i| faces.attributes[i].age_decade() as u32)?,
        column(&|i| faces.attributes[i].beard.level() as u32)?,
    ])
}

/// Half the batches softened (2x down and up again), and noise of a random strength on all.
fn augment(photos: &Tensor, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = photos.dims4()?;
    let photos = if rng.random_bool(0.5) {
        let small = photos.avg_pool2d(2)?;
        let up = small.upsample_nearest2d(h, w)?;
        ((photos + up)? * 0.5)?
    } else {
        photos.clone()
    };
    let strength = rng.random_range(0.0..0.06);
    &photos + (gaussian_like(&photos, rng)? * strength)?
}

/// Held-out accuracies: parser pixel accuracy; attribute accuracy per head (decade also within one).
fn measure(judges: &crate::model::judges::Judges, held_out: &FaceSet, device: &Device) -> Result<serde_json::Value, TrainError> {
    let (mut pixels_right, mut pixels) = (0f64, 0f64);
    let (mut gender, mut decade, mut decade_near, mut beard) = (0f64, 0f64, 0f64, 0f64);
    let indices: Vec<usize> = (0..held_out.len()).collect();
    for chunk in indices.chunks(64) {
        let photos = held_out.photos(chunk, device)?;
        let parsed = judges.parser.parse(&photos)?;
        let truth_map = held_out.class_maps(chunk, device)?;
        pixels_right += parsed.eq(&truth_map)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64;
        pixels += truth_map.elem_count() as f64;
        let logits = judges.attributes.forward(&photos)?;
        let [g, d, b] = truth(held_out, chunk, device)?;
        let right = |logits: &Tensor, truth: &Tensor| -> candle_core::Result<f64> {
            Ok(logits.argmax(D::Minus1)?.eq(truth)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64)
        };
        gender += right(&logits.gender, &g)?;
        decade += right(&logits.decade, &d)?;
        beard += right(&logits.beard, &b)?;
        let predicted = logits.decade_within_one()?.to_dtype(DType::F32)?;
        let off = (predicted - d.to_dtype(DType::F32)?)?.abs()?;
        decade_near += off.le(1f32)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let n = held_out.len() as f64;
    Ok(serde_json::json!({
        "held_out_count": held_out.len(),
        "parser_pixel_accuracy": pixels_right / pixels,
        "gender_accuracy": gender / n,
        "decade_accuracy": decade / n,
        "decade_within_one_accuracy": decade_near / n,
        "beard_accuracy": beard / n,
    }))
}
