//! Does collaboration work? The paper's Tables 1 and 2 on the synthetic world:
//! held-out (mask, caption) pairs generated with every combination mode and
//! ablation, judged by the trained face parser (mask accuracy) and attribute
//! classifier (text accuracy, and its features for the Fréchet distance), with
//! bootstrap intervals over conditions. The collaborative runs also record
//! where and when each model had influence (the paper's Figure 10).

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::faces::{FaceSet, HELD_OUT_SEED};
use crate::data::conditions::Condition;
use crate::data::mask::{class, Mask};
use crate::data::synth::{parse_caption, BeardLevel, Decade, Gender};
use crate::diffusion::collaborate::{CombineMode, PostProcess};
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::model::collaborative::{CollaborativeModel, Collaboration, Contexts, ModelError};
use crate::model::judges::Judges;

pub mod condition_use;
pub mod edits;
pub mod figures;
pub mod report;

/// The ways of generating the evaluation compares (the paper's Table 1 rows,
/// then Table 2's), in the order they run: the no-temporal ablation pins the
/// collaborative run's influence.
pub const MODES: [CombineMode; 7] = [
    CombineMode::Text,
    CombineMode::Mask,
    CombineMode::Composable,
    CombineMode::Collaborative,
    CombineMode::NoSpatial,
    CombineMode::NoTemporal,
    CombineMode::Softmax,
];

/// A mode's name in the results (the paper's row names).
pub fn mode_name(mode: CombineMode) -> &'static str {
    match mode {
        CombineMode::Text => "text",
        CombineMode::Mask => "mask",
        CombineMode::Composable => "composable",
        CombineMode::Collaborative => "collaborative",
        CombineMode::NoSpatial => "no-spatial",
        CombineMode::NoTemporal => "no-temporal",
        CombineMode::Softmax => "plain-softmax",
    }
}

#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub count: usize,
    pub seed: u64,
    pub steps: usize,
    /// DDIM eta: 1 as the original generation script, whose samples the paper scores.
    pub eta: f64,
    /// Conditions sampled together.
    pub batch: usize,
    /// The (mask, caption) pairs to generate from, cycled to `count` (each
    /// repeat with its own noise seed); `None`: held-out synthetic conditions.
    pub conditions: Option<Vec<Condition>>,
    /// The modes to run, a subset of [`MODES`] in its order (see [`modes_named`]).
    pub modes: Vec<CombineMode>,
}

/// The modes of [`MODES`] named in `names` (as [`mode_name`] spells them), in
/// [`MODES`] order; the no-temporal ablation brings the collaborative run it pins.
pub fn modes_named(names: &[String]) -> Result<Vec<CombineMode>, String> {
    for name in names {
        if !MODES.iter().any(|&m| mode_name(m) == name) {
            let known: Vec<&str> = MODES.iter().map(|&m| mode_name(m)).collect();
            return Err(format!("there is no mode `{name}`; the modes are {}", known.join(", ")));
        }
    }
    let wanted = |m: CombineMode| names.iter().any(|n| n == mode_name(m));
    let with_pinned = wanted(CombineMode::NoTemporal);
    Ok(MODES.into_iter().filter(|&m| wanted(m) || (with_pinned && m == CombineMode::Collaborative)).collect())
}

pub enum EvalEvent {
    /// `done` of `total` (mode, condition) generations finished.
    Progress { done: usize, total: usize, mode: CombineMode },
}

/// One generated image's scores.
#[derive(Debug, Clone, Default)]
struct ItemScores {
    mask_accuracy: f64,
    gender: Option<bool>,
    decade_within_one: Option<bool>,
    decade_exact: Option<bool>,
    beard: bool,
}

impl ItemScores {
    /// The mean over the attributes the caption states.
    fn text_accuracy(&self) -> f64 {
        let known: Vec<bool> = [self.gender, self.decade_within_one, Some(self.beard)].into_iter().flatten().collect();
        known.iter().filter(|&&b| b).count() as f64 / known.len() as f64
    }
}

/// A mean with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mask_accuracy: f64,
    pub text_accuracy: f64,
    pub fd: f64,
    pub mask_accuracy_ci: Estimate,
    pub text_accuracy_ci: Estimate,
    pub fd_ci: Estimate,
    pub gender_accuracy: f64,
    pub decade_within_one_accuracy: f64,
    pub decade_accuracy: f64,
    pub beard_accuracy: f64,
}

/// The mask model's mean influence at one step, at class boundaries and inside the skin.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InfluenceAtStep {
    pub t: usize,
    pub contour: f64,
    pub skin_interior: f64,
    pub everywhere: f64,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub modes: Vec<(CombineMode, ModeResult)>,
    pub count: usize,
    pub seed: u64,
    pub steps: usize,
    pub eta: f64,
    pub influence_over_time: Vec<InfluenceAtStep>,
    /// Judges' scores on the real held-out photos: the ceiling of each metric.
    pub real_photos: ModeResult,
    /// How much each model's noise prediction depends on its condition, per timestep.
    pub condition_use: Vec<condition_use::ConditionUse>,
    /// The same photos encoded and decoded by the autoencoder: what the latent
    /// space can carry at all, the ceiling of any latent diffusion model.
    pub autoencoded_photos: ModeResult,
    #[serde(skip)]
    pub examples: Examples,
}

/// Images kept for the figures: the first conditions' masks, captions, results per mode and influence maps per step.
#[derive(Debug, Default)]
pub struct Examples {
    pub masks: Vec<Mask>,
    pub captions: Vec<String>,
    /// Per mode, per example: B x 3 x H x W in [-1, 1].
    pub images: Vec<(CombineMode, Tensor)>,
    /// Per step of the collaborative run: the examples' mask influence, E x 1 x h x w.
    pub w_mask: Vec<Tensor>,
}

pub const EXAMPLES: usize = 8;

/// Runs the whole evaluation.
pub fn run(
    model: &CollaborativeModel,
    judges: &Judges,
    request: &EvalRequest,
    cancel: &AtomicBool,
    sink: &mut dyn FnMut(EvalEvent),
) -> Result<EvalReport, ModelError> {
    // Held-out photos: the Fréchet distance's reference and the judges' ceiling, whatever the conditions.
    let faces = FaceSet::generate(HELD_OUT_SEED, request.count, model.image_size());
    let targets: Vec<(&Mask, &str)> = match &request.conditions {
        None => face_targets(&faces, &(0..faces.len()).collect::<Vec<_>>()),
        Some(conditions) if !conditions.is_empty() => {
            (0..request.count).map(|i| &conditions[i % conditions.len()]).map(|c| (&c.mask, c.caption.as_str())).collect()
        }
        Some(_) => return Err(candle_core::Error::Msg("the conditions folder holds no (mask, caption) pair".into()).into()),
    };
    let ddim = DdimSchedule::new(&model.schedule, request.steps, request.eta).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mid_step = (0..ddim.len()).min_by_key(|&i| ddim.timestep(i).abs_diff(500)).unwrap_or(0);
    let post = PostProcess::default();
    let modes = &request.modes;
    let mut scores: Vec<Vec<ItemScores>> = vec![Vec::new(); modes.len()];
    let mut features: Vec<Vec<Tensor>> = vec![Vec::new(); modes.len()];
    let mut influence: Vec<[f64; 3]> = vec![[0.0; 3]; ddim.len()];
    let mut examples = Examples::default();
    let total = request.count * modes.len();
    let mut done = 0;
    let indices: Vec<usize> = (0..request.count).collect();
    for chunk in indices.chunks(request.batch.max(1)) {
        let chunk_targets: Vec<(&Mask, &str)> = chunk.iter().map(|&i| targets[i]).collect();
        let contexts = chunk_contexts(model, &chunk_targets)?;
        let seeds: Vec<u64> = chunk.iter().map(|&i| request.seed.wrapping_add(i as u64)).collect();
        let mut mid_influence: Option<Tensor> = None;
        for (m, &mode) in modes.iter().enumerate() {
            let pinned = if mode == CombineMode::NoTemporal { mid_influence.clone() } else { None };
            let collaboration = Collaboration { pinned: pinned.as_ref(), ..Collaboration::new(model, &contexts, mode, &post) };
            // Every mode draws the same noise for the same seeds.
            let mut noise = NoiseSource::seeded(seeds.iter().copied());
            let z0 = collaboration.sample(&ddim, &mut noise, cancel, |step| -> Result<(), ModelError> {
                if mode != CombineMode::Collaborative {
                    return Ok(());
                }
                let w_mask = &step.prediction.w_mask;
                if step.index == mid_step {
                    mid_influence = Some(w_mask.clone());
                }
                let stats = influence_stats(w_mask, &chunk_targets)?;
                for (acc, v) in influence[step.index].iter_mut().zip(stats) {
                    *acc += v;
                }
                if chunk[0] == 0 {
                    examples.w_mask.push(w_mask.narrow(0, 0, EXAMPLES.min(chunk.len()))?);
                }
                Ok(())
            })?;
            let images = model.decode(&z0)?.clamp(-1f32, 1f32)?;
            let judged = Judges::prepare(&images)?;
            scores[m].extend(score_against(judges, &judged, &chunk_targets)?);
            features[m].push(judges.attributes.features(&judged)?);
            if chunk[0] == 0 {
                examples.images.push((mode, images.narrow(0, 0, EXAMPLES.min(chunk.len()))?));
            }
            done += chunk.len();
            sink(EvalEvent::Progress { done, total, mode });
        }
    }
    let real = faces.photos(&indices, &model.device)?;
    let real_judged = Judges::prepare(&real)?;
    let real_features = judges.attributes.features(&real_judged)?;
    let real_scores = score(judges, &real_judged, &faces, &indices)?;
    let real_stats = FeatureStats::of(&real_features)?;
    let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
    let modes = modes
        .iter()
        .enumerate()
        .map(|(m, &mode)| Ok((mode, summarise(&scores[m], &Tensor::cat(&features[m], 0)?, &real_stats, &mut rng)?)))
        .collect::<Result<Vec<_>, ModelError>>()?;
    let real_photos = summarise(&real_scores, &real_features, &real_stats, &mut rng)?;
    let (mut coded_scores, mut coded_features) = (Vec::new(), Vec::new());
    for chunk in indices.chunks(request.batch.max(1)) {
        let z = (model.vae.encode(&faces.photos(chunk, &model.device)?)?.mean * model.config.diffusion.scale_factor)?;
        let judged = Judges::prepare(&model.decode(&z)?)?;
        coded_scores.extend(score(judges, &judged, &faces, chunk)?);
        coded_features.push(judges.attributes.features(&judged)?);
    }
    let autoencoded_photos = summarise(&coded_scores, &Tensor::cat(&coded_features, 0)?, &real_stats, &mut rng)?;
    let condition_use = condition_use::measure(model, &faces, request.batch, request.seed)?;
    let n = request.count as f64;
    let influence_over_time = influence
        .iter()
        .enumerate()
        .map(|(i, s)| InfluenceAtStep { t: ddim.timestep(i), contour: s[0] / n, skin_interior: s[1] / n, everywhere: s[2] / n })
        .collect();
    examples.masks = targets.iter().take(EXAMPLES).map(|(m, _)| (*m).clone()).collect();
    examples.captions = targets.iter().take(EXAMPLES).map(|(_, c)| c.to_string()).collect();
    Ok(EvalReport { modes, count: request.count, seed: request.seed, steps: ddim.len(), eta: request.eta, influence_over_time, real_photos, condition_use, autoencoded_photos, examples })
}

/// The contexts of a chunk of conditions, one (mask, caption) per item.
fn chunk_contexts(model: &CollaborativeModel, targets: &[(&Mask, &str)]) -> Result<Contexts, ModelError> {
    let (mut masks, mut texts) = (Vec::new(), Vec::new());
    for &(mask, caption) in targets {
        let (c, _) = model.encode_conditions(mask, &[caption.to_string()])?;
        masks.push(c.mask);
        texts.push(c.text);
    }
    Ok(Contexts { mask: Tensor::cat(&masks, 0)?, text: Tensor::cat(&texts, 0)? })
}

/// The mask model's mean influence over contour pixels, skin-interior pixels and all pixels of each item, summed over the chunk.
fn influence_stats(w_mask: &Tensor, targets: &[(&Mask, &str)]) -> candle_core::Result<[f64; 3]> {
    let (_, _, h, w) = w_mask.dims4()?;
    let values = w_mask.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut sums = [0f64; 3];
    for (item, (mask, _)) in values.iter().zip(targets) {
        let small = mask.resize_nearest(w, h);
        let (mut contour, mut interior) = (Vec::new(), Vec::new());
        for y in 0..h {
            for x in 0..w {
                let c = small.get(x, y);
                let neighbours = [(x.wrapping_sub(1), y), (x + 1, y), (x, y.wrapping_sub(1)), (x, y + 1)];
                let differs = neighbours.iter().any(|&(nx, ny)| nx < w && ny < h && small.get(nx, ny) != c);
                if differs {
                    contour.push(item[y * w + x] as f64);
                } else if c == class::SKIN {
                    interior.push(item[y * w + x] as f64);
                }
            }
        }
        let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        sums[0] += mean(&contour);
        sums[1] += mean(&interior);
        sums[2] += mean(&item.iter().map(|&v| v as f64).collect::<Vec<_>>());
    }
    Ok(sums)
}

/// The (mask, caption) of each held-out face of `chunk`.
fn face_targets<'a>(faces: &'a FaceSet, chunk: &[usize]) -> Vec<(&'a Mask, &'a str)> {
    chunk.iter().map(|&i| (&faces.masks[i], faces.captions[i].as_str())).collect()
}

/// Judges a batch of held-out photos (or their renderings) against their own conditions.
fn score(judges: &Judges, images: &Tensor, faces: &FaceSet, chunk: &[usize]) -> Result<Vec<ItemScores>, ModelError> {
    score_against(judges, images, &face_targets(faces, chunk))
}

/// Judges each image of a batch against its (mask, caption).
fn score_against(judges: &Judges, images: &Tensor, targets: &[(&Mask, &str)]) -> Result<Vec<ItemScores>, ModelError> {
    score_parsed(judges, images, &judges.parser.parse(images)?, targets)
}

/// [`score_against`] with the parser's reading of `images` already made.
fn score_parsed(judges: &Judges, images: &Tensor, parsed: &Tensor, targets: &[(&Mask, &str)]) -> Result<Vec<ItemScores>, ModelError> {
    let parsed = parsed.to_dtype(DType::U32)?;
    let logits = judges.attributes.forward(images)?;
    let argmax = |t: &Tensor| -> candle_core::Result<Vec<u32>> { t.argmax(D::Minus1)?.to_vec1::<u32>() };
    let (gender, decade, beard) = (argmax(&logits.gender)?, argmax(&logits.decade)?, argmax(&logits.beard)?);
    let decade_near = logits.decade_within_one()?.to_vec1::<u32>()?;
    let size = images.dim(3)?;
    targets
        .iter()
        .enumerate()
        .map(|(k, &(mask, caption))| {
            let target = mask.resize_nearest(size, size);
            let predicted = parsed.get(k)?.flatten_all()?.to_vec1::<u32>()?;
            let right = predicted.iter().zip(target.classes()).filter(|(p, t)| **p == **t as u32).count();
            let said = parse_caption(caption);
            Ok(ItemScores {
                mask_accuracy: right as f64 / predicted.len() as f64,
                gender: said.gender.map(|g| g == Gender::ALL[gender[k] as usize]),
                decade_within_one: said.decade.map(|d| (d as i32 - decade_near[k] as i32).abs() <= 1),
                decade_exact: said.decade.map(|d: Decade| d as u32 == decade[k]),
                beard: said.beard == BeardLevel::ALL[beard[k] as usize],
            })
        })
        .collect()
}

/// Mean and covariance of a feature set (for the Fréchet distance).
struct FeatureStats {
    mean: nalgebra::DVector<f64>,
    cov: nalgebra::DMatrix<f64>,
}

impl FeatureStats {
    fn of(features: &Tensor) -> candle_core::Result<Self> {
        let rows = features.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        Ok(Self::of_rows(&rows.iter().collect::<Vec<_>>()))
    }

    fn of_rows(rows: &[&Vec<f64>]) -> Self {
        let (n, d) = (rows.len(), rows.first().map_or(0, |r| r.len()));
        let m = nalgebra::DMatrix::from_fn(n, d, |i, j| rows[i][j]);
        let mean = m.row_mean().transpose();
        let centred = nalgebra::DMatrix::from_fn(n, d, |i, j| m[(i, j)] - mean[j]);
        let cov = centred.transpose() * &centred / (n.max(2) - 1) as f64;
        Self { mean, cov }
    }

    /// |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the trace of the root taken
    /// as the sum of root eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric, so stable).
    fn frechet_distance(&self, other: &Self) -> f64 {
        let root1 = symmetric_sqrt(&self.cov);
        let middle = &root1 * &other.cov * &root1;
        let middle = (&middle + middle.transpose()) * 0.5;
        let trace_root: f64 = middle.symmetric_eigenvalues().iter().map(|&l| l.max(0.0).sqrt()).sum();
        // Rounding can take a zero distance a hair below zero.
        ((&self.mean - &other.mean).norm_squared() + self.cov.trace() + other.cov.trace() - 2.0 * trace_root).max(0.0)
    }
}

fn symmetric_sqrt(m: &nalgebra::DMatrix<f64>) -> nalgebra::DMatrix<f64> {
    let eigen = m.clone().symmetric_eigen();
    let roots = eigen.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eigen.eigenvectors * nalgebra::DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

const BOOTSTRAP: usize = 1000;
const FD_BOOTSTRAP: usize = 200;
/// What an accuracy (a share) and a distance can take.
const SHARE: (f64, f64) = (0.0, 1.0);
const DISTANCE: (f64, f64) = (0.0, f64::INFINITY);

fn summarise(scores: &[ItemScores], features: &Tensor, real: &FeatureStats, rng: &mut ChaCha8Rng) -> Result<ModeResult, ModelError> {
    let rows = features.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let fd_of = |picks: &[usize]| FeatureStats::of_rows(&picks.iter().map(|&i| &rows[i]).collect::<Vec<_>>()).frechet_distance(real);
    let all: Vec<usize> = (0..scores.len()).collect();
    let mask: Vec<f64> = scores.iter().map(|s| s.mask_accuracy).collect();
    let text: Vec<f64> = scores.iter().map(|s| s.text_accuracy()).collect();
    let share = |f: &dyn Fn(&ItemScores) -> Option<bool>| {
        let known: Vec<bool> = scores.iter().filter_map(f).collect();
        known.iter().filter(|&&b| b).count() as f64 / known.len().max(1) as f64
    };
    let fd = fd_of(&all);
    let fd_ci = bootstrap(scores.len(), FD_BOOTSTRAP, rng, fd, DISTANCE, |picks| fd_of(picks));
    Ok(ModeResult {
        mask_accuracy: mean(&mask),
        text_accuracy: mean(&text),
        fd,
        mask_accuracy_ci: bootstrap(scores.len(), BOOTSTRAP, rng, mean(&mask), SHARE, |p| mean(&p.iter().map(|&i| mask[i]).collect::<Vec<_>>())),
        text_accuracy_ci: bootstrap(scores.len(), BOOTSTRAP, rng, mean(&text), SHARE, |p| mean(&p.iter().map(|&i| text[i]).collect::<Vec<_>>())),
        fd_ci,
        gender_accuracy: share(&|s| s.gender),
        decade_within_one_accuracy: share(&|s| s.decade_within_one),
        decade_accuracy: share(&|s| s.decade_exact),
        beard_accuracy: share(&|s| Some(s.beard)),
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// A bias-corrected percentile interval: the 2.5th and 97.5th percentiles of
/// `statistic` over `rounds` resamples (with replacement) of `n` items, shifted
/// by the resamples' bias (their mean minus `point`). Means have no bias; the
/// Fréchet distance of a resample does: its repeated items shrink the
/// covariance, so uncorrected resamples sat above the distance itself
/// (mask-only 0.91 in [0.97, 1.41]). The shift can carry a bound past what
/// the statistic can take (an accuracy of 100.1%), so both are clamped to `range`.
fn bootstrap(n: usize, rounds: usize, rng: &mut ChaCha8Rng, point: f64, range: (f64, f64), statistic: impl Fn(&[usize]) -> f64) -> Estimate {
    let mut values: Vec<f64> = (0..rounds)
        .map(|_| {
            let picks: Vec<usize> = (0..n).map(|_| rng.random_range(0..n.max(1))).collect();
            statistic(&picks)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let bias = mean(&values) - point;
    let at = |q: f64| (values[((rounds - 1) as f64 * q).round() as usize] - bias).clamp(range.0, range.1);
    Estimate { mean: point, low: at(0.025), high: at(0.975) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_chosen_by_name_in_table_order_with_what_they_need() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(modes_named(&names(&["mask"])), Ok(vec![CombineMode::Mask]));
        assert_eq!(modes_named(&names(&["collaborative", "text"])), Ok(vec![CombineMode::Text, CombineMode::Collaborative]));
        assert_eq!(modes_named(&names(&["no-temporal"])), Ok(vec![CombineMode::Collaborative, CombineMode::NoTemporal]), "it pins the collaborative run's influence");
        let err = modes_named(&names(&["mask", "softmax"])).unwrap_err();
        assert!(err.contains("`softmax`") && err.contains("plain-softmax"), "{err}");
    }

    #[test]
    fn frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let rows: Vec<Vec<f64>> = (0..400).map(|_| (0..4).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
        let shifted: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|v| v + 0.5).collect()).collect();
        let a = FeatureStats::of_rows(&rows.iter().collect::<Vec<_>>());
        let b = FeatureStats::of_rows(&shifted.iter().collect::<Vec<_>>());
        assert!(a.frechet_distance(&a).abs() < 1e-9);
        // A pure shift by 0.5 in 4 dimensions: |dm|^2 = 4 * 0.25.
        assert!((a.frechet_distance(&b) - 1.0).abs() < 1e-6, "{}", a.frechet_distance(&b));
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let values: Vec<f64> = (0..200).map(|i| (i % 10) as f64).collect();
        let e = bootstrap(values.len(), 500, &mut rng, mean(&values), (0.0, 9.0), |p| mean(&p.iter().map(|&i| values[i]).collect::<Vec<_>>()));
        assert!(e.low < e.mean && e.mean < e.high && e.high - e.low < 1.5, "{e:?}");
    }

    #[test]
    fn an_accuracy_interval_stays_within_what_a_share_can_be() {
        // Five of six right: resamples' means scatter around 5/6, and the bias shift must not carry a bound past 1.
        let values = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let e = bootstrap(values.len(), 1000, &mut rng, mean(&values), SHARE, |p| mean(&p.iter().map(|&i| values[i]).collect::<Vec<_>>()));
            assert!((0.0..=1.0).contains(&e.low) && e.high <= 1.0 && e.low <= e.mean && e.mean <= e.high, "{e:?}");
        }
    }

    #[test]
    fn frechet_interval_holds_its_own_distance() {
        // Resampling with replacement biases the distance upwards; the interval must still hold it.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let draw = |rng: &mut ChaCha8Rng| -> Vec<Vec<f64>> { (0..100).map(|_| (0..16).map(|_| rng.random_range(-1.0..1.0)).collect()).collect() };
        let (rows, reference) = (draw(&mut rng), draw(&mut rng));
        let real = FeatureStats::of_rows(&reference.iter().collect::<Vec<_>>());
        let fd_of = |picks: &[usize]| FeatureStats::of_rows(&picks.iter().map(|&i| &rows[i]).collect::<Vec<_>>()).frechet_distance(&real);
        let point = fd_of(&(0..rows.len()).collect::<Vec<_>>());
        let e = bootstrap(rows.len(), 200, &mut rng, point, DISTANCE, fd_of);
        assert!(e.low <= point && point <= e.high, "{e:?}");
    }
}
