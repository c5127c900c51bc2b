//! `codiff edit`: change a photo's mask and description at once (Imagic or DDIM inversion).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::data::image::RgbFrame;
use crate::data::image_params::save_png_with_params;
use crate::data::mask::Mask;
use crate::diffusion::collaborate::CombineMode;
use crate::model::collaborative::CollaborativeModel;
use crate::model::judges::Judges;
use crate::pipeline::edit::{self, Crop, EditEvent, EditMethod, EditRequest, Photo};

#[derive(Debug, Args)]
pub struct EditArgs {
    /// The photo (PNG, JPEG or WebP); its square crop is resized to the model's size.
    #[arg(long)]
    photo: PathBuf,
    /// The square of the photo to edit, as X,Y,SIDE in pixels; default: the centred square.
    #[arg(long, value_parser = Crop::parse)]
    crop: Option<Crop>,
    /// Also write the full photo with the edited crop blended back in (several alphas: one per alpha).
    #[arg(long)]
    full_out: Option<PathBuf>,
    /// The target mask (palette, index or RGB PNG in the palette colours).
    #[arg(long)]
    mask: PathBuf,
    /// The target description, e.g. "He is in his sixties, with a long beard."
    #[arg(long)]
    text: String,
    /// Where to write the edited photo (several alphas: OUT-a<alpha>.png each).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = EditMethod::Imagic)]
    method: EditMethod,
    /// Imagic's interpolation weight between the optimised and the target conditions;
    /// several, comma-separated, share one fine-tuning.
    #[arg(long, visible_alias = "alpha", value_delimiter = ',', default_values_t = [edit::DEFAULT_IMAGIC_ALPHA])]
    alphas: Vec<f64>,
    #[arg(long, default_value_t = 500)]
    embed_steps: usize,
    #[arg(long, default_value_t = 1000)]
    finetune_steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    embed_lr: f64,
    #[arg(long, default_value_t = 1e-6)]
    finetune_lr: f64,
    /// DDIM steps (eta 0).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Seeds Imagic's training noise and the wording of the judged description (sampling is deterministic).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Collaborative, or one modality's edit alone (mask or text).
    #[arg(long, value_enum, default_value_t = CombineMode::Collaborative)]
    mode: CombineMode,
    /// The photo's own mask; default: the face parser's reading of the photo.
    #[arg(long)]
    source_mask: Option<PathBuf>,
    /// The photo's own description; default: the attribute judge's reading.
    #[arg(long)]
    source_text: Option<String>,
    #[command(flatten)]
    model: super::JudgedModelArgs,
    /// Replace the outputs if they exist.
    #[arg(long)]
    force: bool,
}

impl EditArgs {
    /// Where the result for `alpha` goes: `path` itself, or PATH-a<alpha> when there are several alphas.
    fn output_for(&self, path: &Path, alpha: f64) -> PathBuf {
        super::output::one_of(path, &format!("-a{alpha}"), self.alphas.len())
    }

    /// Every file the edit writes.
    fn outputs(&self) -> Vec<PathBuf> {
        let per_alpha = |a: f64| std::iter::once(self.output_for(&self.out, a)).chain(self.full_out.as_deref().map(|f| self.output_for(f, a)));
        self.alphas.iter().copied().flat_map(per_alpha).collect()
    }

    /// Refuses numbers that could only give a black image, and outputs that
    /// would overwrite an input or, without --force, any file.
    fn check(&self, files: &crate::model::defaults::ModelFiles, judges: &Path) -> anyhow::Result<()> {
        use super::output::{check_count, check_outputs, check_range};
        check_count("--steps", self.steps, 1000, "the model was trained on 1000 noise levels")?;
        for &alpha in &self.alphas {
            check_range("--alpha", alpha, -100.0..=100.0, "Imagic interpolates at 0 to 2; the studio goes to 10")?;
        }
        check_range("--embed-lr", self.embed_lr, 0.0..=1.0, "Imagic optimises the embedding at about 1e-3")?;
        check_range("--finetune-lr", self.finetune_lr, 0.0..=1.0, "Imagic fine-tunes at about 1e-6")?;
        let mut inputs = vec![self.photo.as_path(), self.mask.as_path(), files.config.as_path(), files.weights.as_path(), judges];
        inputs.extend(self.source_mask.as_deref());
        check_outputs(&self.outputs(), &inputs, self.force)
    }
}

pub fn run(args: EditArgs) -> anyhow::Result<()> {
    let (files, judges_path) = args.model.files()?;
    args.check(&files, &judges_path)?;
    // The inputs are read before the model, so that a bad one is refused at once.
    let photo = Photo::load(&args.photo, args.crop).map_err(anyhow::Error::msg)?;
    let target_mask = Mask::load_square(&args.mask)?;
    let model = CollaborativeModel::load(&files.config, &files.weights, &super::device()?, Default::default())?;
    let size = model.image_size();
    let target_mask = target_mask.resize_nearest(size, size);
    let judges = if judges_path.exists() { Some(Judges::load(&judges_path, &model.device)?) } else { None };
    let request = EditRequest {
        source_mask: args.source_mask.as_ref().map(Mask::load).transpose()?.map(|m| m.resize_nearest(size, size)),
        source_text: args.source_text.clone(),
        alphas: args.alphas.clone(),
        embed_steps: args.embed_steps,
        finetune_steps: args.finetune_steps,
        embed_lr: args.embed_lr,
        finetune_lr: args.finetune_lr,
        steps: args.steps,
        seed: args.seed,
        mode: args.mode,
        ..EditRequest::new(photo.model_input(size), target_mask, args.text.clone(), args.method)
    };
    let mut bars = super::progress::StageBars::new("{prefix:>40} {bar:30} {pos}/{len} {elapsed} < {eta}");
    let output = edit::run(&model, judges.as_ref(), &request, super::interrupted(), &mut |EditEvent::Stage { name, step, total, .. }| {
        bars.stage(&name, total).set_position(step as u64);
    })?;
    bars.finish();
    println!("source (as read): {}", output.source_text);
    for (alpha, frame) in &output.images {
        let path = args.output_for(&args.out, *alpha);
        let params = request.image_params(&output.source_text, *alpha, Some(files.name()), &args.photo.display().to_string(), photo.crop);
        save_png_with_params(&path, frame, &params).with_context(|| format!("could not write {}", path.display()))?;
        println!("wrote {}", path.display());
        if let Some(full_out) = &args.full_out {
            let path = args.output_for(full_out, *alpha);
            let full = photo.paste_back(&frame.to_image().context("bad frame")?);
            save_png_with_params(&path, &RgbFrame::from_image(&full), &params)?;
            println!("wrote {} (the full photo with the edit blended in)", path.display());
        }
    }
    Ok(())
}
