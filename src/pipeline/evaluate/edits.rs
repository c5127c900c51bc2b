//! Does collaborative editing work? Held-out synthetic photos, each edited
//! towards a changed mask (bangs added or removed, or the mouth opened or
//! closed) and a changed caption (thirty years older or younger, and for men
//! a beard grown or shaved) at once. Each method is judged on
//! - mask success: the parser's accuracy against the target mask, overall and
//!   where the target differs from the source (the edited region);
//! - text success: the attribute judge's accuracy against the target caption;
//! - identity: PSNR to the source photo over background and clothes where
//!   both masks agree, the region neither edit should touch (edits put the
//!   source back there, so only the feathered seam at its edge can differ);
//! - seconds per edit.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::DType;
use image::RgbImage;
use serde::Serialize;

use super::{mean, score_parsed, ItemScores};
use crate::data::faces::HELD_OUT_SEED;
use crate::data::image::RgbFrame;
use crate::data::mask::Mask;
use crate::data::synth::{caption, render, sample_attributes, sample_rng, Attributes, Beard, BeardLevel, Decade, Expression, Fringe, Gender};
use crate::diffusion::collaborate::CombineMode;
use crate::model::collaborative::CollaborativeModel;
use crate::model::judges::Judges;
use crate::pipeline::edit::untouched::is_untouched;
use crate::pipeline::edit::{self, photo_tensor, EditMethod, EditRequest};
use crate::pipeline::generate::GenerateError;

/// Edit cases start here in the held-out world, clear of the generation evaluation's conditions.
const FIRST_CASE: u64 = 100_000;

/// A held-out photo and the target it is edited towards.
#[derive(Debug, Clone)]
pub struct EditCase {
    pub photo: RgbImage,
    pub source_mask: Mask,
    pub source_caption: String,
    pub target_mask: Mask,
    pub target_caption: String,
    /// In words, for the figure.
    pub mask_change: &'static str,
}

/// Case `index`: the same face rendered again (same layout and look seeds)
/// with one mask attribute and the caption's attributes changed.
pub fn case(index: usize, size: usize) -> EditCase {
    let mut rng = sample_rng(HELD_OUT_SEED, FIRST_CASE + index as u64);
    let source = sample_attributes(&mut rng);
    let mut target_rng = rng.clone();
    let (source_mask, photo) = render(&source, size, &mut rng);
    let source_caption = caption(&source, &mut rng);
    let (target, mask_change) = changed(&source, index);
    let (target_mask, _) = render(&target, size, &mut target_rng);
    let target_caption = caption(&target, &mut target_rng);
    EditCase { photo, source_mask, source_caption, target_mask, target_caption, mask_change }
}

/// The target attributes of case `index`: even cases toggle bangs, odd ones
/// the open mouth; every case moves thirty years, and men's beards flip.
fn changed(source: &Attributes, index: usize) -> (Attributes, &'static str) {
    let mut target = source.clone();
    let mask_change = if index.is_multiple_of(2) {
        let (fringe, what) = if source.fringe == Fringe::None { (Fringe::Bangs, "add bangs") } else { (Fringe::None, "remove the fringe") };
        target.fringe = fringe;
        what
    } else {
        let open = matches!(source.expression, Expression::Laugh | Expression::Open);
        target.expression = if open { Expression::Neutral } else { Expression::Laugh };
        if open {
            "close the mouth"
        } else {
            "open the mouth"
        }
    };
    let decade = source.age_decade() as usize;
    let new_decade = Decade::ALL[if decade < 3 { decade + 3 } else { decade - 3 }];
    target.age_years = new_decade.years().0 + 4;
    if source.gender == Gender::Male {
        target.beard = if source.beard.level() == BeardLevel::None { Beard::of_level(BeardLevel::Long) } else { Beard::NONE };
    }
    (target, mask_change)
}

/// One way of editing the evaluation compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditVariant {
    pub method: EditMethod,
    pub mode: CombineMode,
}

impl EditVariant {
    /// Imagic's rows name their alpha.
    pub fn name(self, alpha: f64) -> String {
        let method = match self.method {
            EditMethod::Inversion => "inversion".to_string(),
            EditMethod::Imagic => format!("imagic (alpha {alpha})"),
        };
        let mode = match self.mode {
            CombineMode::Mask => "mask edit only",
            CombineMode::Text => "text edit only",
            _ => "collaborative",
        };
        format!("{method}, {mode}")
    }
}

#[derive(Debug, Clone)]
pub struct EditEvalRequest {
    pub count: usize,
    /// Imagic is minutes per edit: it runs on the first this many cases only.
    pub imagic_count: usize,
    pub steps: usize,
    pub embed_steps: usize,
    pub finetune_steps: usize,
    /// Imagic is judged at each of these (one fine-tuning serves them all).
    pub imagic_alphas: Vec<f64>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub variant: String,
    pub cases: usize,
    pub mask_accuracy: f64,
    /// Parser accuracy over the pixels where the target mask differs from the source.
    pub edited_region_accuracy: f64,
    pub text_accuracy: f64,
    pub gender_accuracy: f64,
    pub decade_within_one_accuracy: f64,
    pub beard_accuracy: f64,
    /// PSNR (dB) to the source over background and clothes both masks share.
    pub identity_psnr_db: f64,
    pub seconds_per_edit: f64,
}

#[derive(Debug, Serialize)]
pub struct EditEvalReport {
    pub count: usize,
    pub steps: usize,
    pub embed_steps: usize,
    pub finetune_steps: usize,
    pub imagic_alphas: Vec<f64>,
    /// The source photos themselves, judged against the targets: what "no edit" scores.
    pub unedited: VariantResult,
    pub variants: Vec<VariantResult>,
    #[serde(skip)]
    pub examples: Vec<EditExample>,
}

/// The first cases with every variant's result, for the figure.
#[derive(Debug)]
pub struct EditExample {
    pub case: EditCase,
    pub results: Vec<(String, RgbFrame)>,
}

pub const EXAMPLES: usize = 6;

/// Runs every variant over its cases; `progress` hears (done, total) edits.
pub fn run(
    model: &CollaborativeModel,
    judges: &Judges,
    request: &EditEvalRequest,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EditEvalReport, GenerateError> {
    let size = model.image_size();
    let cases: Vec<EditCase> = (0..request.count).map(|i| case(i, size)).collect();
    let variants: Vec<(EditVariant, usize)> = [
        (EditMethod::Inversion, CombineMode::Collaborative, request.count),
        (EditMethod::Inversion, CombineMode::Mask, request.count),
        (EditMethod::Inversion, CombineMode::Text, request.count),
        (EditMethod::Imagic, CombineMode::Collaborative, request.imagic_count),
        (EditMethod::Imagic, CombineMode::Mask, request.imagic_count),
        (EditMethod::Imagic, CombineMode::Text, request.imagic_count),
    ]
    .into_iter()
    .map(|(method, mode, n)| (EditVariant { method, mode }, n.min(cases.len())))
    .filter(|&(_, n)| n > 0)
    .collect();
    let total: usize = variants.iter().map(|(_, n)| n).sum();
    let mut done = 0;
    let unedited: Vec<RgbFrame> = cases.iter().map(|c| RgbFrame::from_image(&c.photo)).collect();
    let unedited = judge(model, judges, &cases, &unedited, "no edit (the source photo)", 0.0)?;
    let mut examples: Vec<EditExample> = cases.iter().take(EXAMPLES).map(|c| EditExample { case: c.clone(), results: Vec::new() }).collect();
    let mut results = Vec::new();
    for (variant, n) in variants {
        let alphas = match variant.method {
            EditMethod::Imagic => request.imagic_alphas.clone(),
            EditMethod::Inversion => vec![1.0],
        };
        let started = Instant::now();
        // One list of images per alpha.
        let mut images: Vec<Vec<RgbFrame>> = vec![Vec::with_capacity(n); alphas.len()];
        for c in &cases[..n] {
            let mut edit = EditRequest::new(c.photo.clone(), c.target_mask.clone(), c.target_caption.clone(), variant.method);
            edit.source_mask = Some(c.source_mask.clone());
            edit.source_text = Some(c.source_caption.clone());
            edit.mode = variant.mode;
            edit.steps = request.steps;
            edit.seed = request.seed;
            edit.embed_steps = request.embed_steps;
            edit.finetune_steps = request.finetune_steps;
            edit.alphas = alphas.clone();
            // Imagic's fine-tuning is cached per case, so its three modes tune once.
            let output = edit::run(model, None, &edit, cancel, &mut |_| {})?;
            if output.images.len() != alphas.len() {
                return Err(GenerateError::Request("the edit returned an image per alpha".into()));
            }
            for (list, (_, image)) in images.iter_mut().zip(output.images) {
                list.push(image);
            }
            done += 1;
            progress(done, total);
        }
        let seconds = started.elapsed().as_secs_f64() / n as f64;
        for (&alpha, images) in alphas.iter().zip(&images) {
            let name = variant.name(alpha);
            for (example, image) in examples.iter_mut().zip(images) {
                example.results.push((name.clone(), image.clone()));
            }
            results.push(judge(model, judges, &cases[..n], images, &name, seconds)?);
        }
    }
    Ok(EditEvalReport {
        count: request.count,
        steps: request.steps,
        embed_steps: request.embed_steps,
        finetune_steps: request.finetune_steps,
        imagic_alphas: request.imagic_alphas.clone(),
        unedited,
        variants: results,
        examples,
    })
}

/// Scores edited `images` of `cases` against their targets and sources.
fn judge(model: &CollaborativeModel, judges: &Judges, cases: &[EditCase], images: &[RgbFrame], name: &str, seconds: f64) -> Result<VariantResult, GenerateError> {
    let mut scores: Vec<ItemScores> = Vec::new();
    let (mut edited_right, mut edited_total) = (0usize, 0usize);
    let mut psnr = Vec::new();
    for (c, image) in cases.iter().zip(images) {
        let rgb = image.to_image().ok_or_else(|| GenerateError::Request("bad edited image".into()))?;
        let tensor = photo_tensor(&rgb, &model.device)?;
        let judged = Judges::prepare(&tensor)?;
        let parsed = judges.parser.parse(&judged)?;
        scores.extend(score_parsed(judges, &judged, &parsed, &[(&c.target_mask, c.target_caption.as_str())])?);
        // The edited region, at the parser's size.
        let side = judged.dim(3)?;
        let parsed = parsed.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let (source, target) = (c.source_mask.resize_nearest(side, side), c.target_mask.resize_nearest(side, side));
        for ((&p, &s), &t) in parsed.iter().zip(source.classes()).zip(target.classes()) {
            if s != t {
                edited_total += 1;
                edited_right += (p == t as u32) as usize;
            }
        }
        psnr.push(untouched_psnr(&c.photo, &rgb, &c.source_mask, &c.target_mask));
    }
    let pick = |f: &dyn Fn(&ItemScores) -> Option<bool>| {
        let known: Vec<bool> = scores.iter().filter_map(f).collect();
        known.iter().filter(|&&b| b).count() as f64 / known.len().max(1) as f64
    };
    Ok(VariantResult {
        variant: name.to_string(),
        cases: cases.len(),
        mask_accuracy: mean(&scores.iter().map(|s| s.mask_accuracy).collect::<Vec<_>>()),
        edited_region_accuracy: edited_right as f64 / edited_total.max(1) as f64,
        text_accuracy: mean(&scores.iter().map(|s| s.text_accuracy()).collect::<Vec<_>>()),
        gender_accuracy: pick(&|s| s.gender),
        decade_within_one_accuracy: pick(&|s| s.decade_within_one),
        beard_accuracy: pick(&|s| Some(s.beard)),
        identity_psnr_db: mean(&psnr.iter().copied().filter(|p| p.is_finite()).collect::<Vec<_>>()),
        seconds_per_edit: seconds,
    })
}

/// PSNR between `a` and `b` over the pixels both masks call background or cloth.
fn untouched_psnr(a: &RgbImage, b: &RgbImage, source: &Mask, target: &Mask) -> f64 {
    let (w, h) = (a.width() as usize, a.height() as usize);
    let (source, target) = (source.resize_nearest(w, h), target.resize_nearest(w, h));
    let (mut sum, mut n) = (0f64, 0usize);
    for y in 0..h {
        for x in 0..w {
            if is_untouched(source.get(x, y), target.get(x, y)) {
                let (pa, pb) = (a.get_pixel(x as u32, y as u32), b.get_pixel(x as u32, y as u32));
                for c in 0..3 {
                    let d = (pa[c] as f64 - pb[c] as f64) / 255.0;
                    sum += d * d;
                }
                n += 3;
            }
        }
    }
    if n == 0 {
        return f64::NAN;
    }
    -10.0 * (sum / n as f64).max(1e-10).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mask::class;
    use crate::data::synth::parse_caption;

    #[test]
    fn cases_change_the_mask_where_they_say_and_the_caption_always() {
        for index in 0..6 {
            let c = case(index, 64);
            let changed = c.source_mask.classes().iter().zip(c.target_mask.classes()).filter(|(a, b)| a != b).count();
            assert!(changed > 0, "case {index} ({}) changes the mask", c.mask_change);
            assert!(changed < 64 * 64 / 4, "case {index} changes only a region, not the layout ({changed} pixels)");
            let (source, target) = (parse_caption(&c.source_caption), parse_caption(&c.target_caption));
            assert_ne!(source.decade, target.decade, "case {index}: {} -> {}", c.source_caption, c.target_caption);
        }
        assert_eq!(case(3, 64).target_caption, case(3, 64).target_caption, "deterministic");
    }

    #[test]
    fn untouched_psnr_ignores_the_face_and_is_infinite_for_no_change() {
        let mask = Mask::filled(4, 4, class::BACKGROUND);
        let a = RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]));
        assert!(untouched_psnr(&a, &a, &mask, &mask) > 90.0);
        let face = Mask::filled(4, 4, class::SKIN);
        let b = RgbImage::from_pixel(4, 4, image::Rgb([200, 20, 30]));
        assert!(untouched_psnr(&a, &b, &face, &face).is_nan(), "no untouched pixels, no number");
        assert!(untouched_psnr(&a, &b, &mask, &mask) < 10.0);
    }
}
