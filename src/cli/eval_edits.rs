//! `codiff eval-edits`: collaborative editing against each uni-modal edit, on
//! held-out synthetic photos with known targets, judged by the judges.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use image::Rgb;

use crate::data::image::{hstack, upscale, vstack};
use crate::data::synth::sheet::draw_text;
use crate::pipeline::evaluate::edits::{self, EditEvalReport, EditEvalRequest, VariantResult};
use crate::data::image::RgbFrame;

#[derive(Debug, Args)]
pub struct EvalEditsArgs {
    /// Held-out photos, each edited in mask and caption at once.
    #[arg(long, default_value_t = 50)]
    count: usize,
    /// How many of them Imagic also edits (minutes each at the original settings).
    #[arg(long, default_value_t = 10)]
    imagic_count: usize,
    /// DDIM steps of inversion and sampling (eta 0).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    #[arg(long, default_value_t = 500)]
    embed_steps: usize,
    #[arg(long, default_value_t = 1000)]
    finetune_steps: usize,
    /// Imagic's interpolation weights, each judged on its own (the original sweeps 0 to 2.5).
    #[arg(long, value_delimiter = ',', default_value = "1,2.5")]
    imagic_alphas: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where results.json, results.md and examples.png go.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: super::JudgedModelArgs,
}

pub fn run(args: EvalEditsArgs) -> anyhow::Result<()> {
    use super::output::{check_count, check_range};
    check_count("--count", args.count, 1_000_000, "the figures are means over the photos")?;
    check_count("--steps", args.steps, 1000, "the model was trained on 1000 noise levels")?;
    for &alpha in &args.imagic_alphas {
        check_range("--imagic-alphas", alpha, -100.0..=100.0, "Imagic interpolates at 0 to 2; the studio goes to 10")?;
    }
    let (model, judges) = args.model.load()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("could not create {}", args.out.display()))?;
    let request = EditEvalRequest {
        count: args.count,
        imagic_count: args.imagic_count,
        steps: args.steps,
        embed_steps: args.embed_steps,
        finetune_steps: args.finetune_steps,
        imagic_alphas: args.imagic_alphas.clone(),
        seed: args.seed,
    };
    let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} edits {elapsed} < {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let report = edits::run(&model, &judges, &request, super::interrupted(), &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    let json = serde_json::to_string_pretty(&report)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = args.out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("could not write {}", path.display()))
    };
    write("results.json", json.as_bytes())?;
    write("results.md", table(&report).as_bytes())?;
    let path = args.out.join("examples.png");
    examples_figure(&report)
        .save(&path)
        .with_context(|| format!("could not write {}", path.display()))?;
    println!("{}", table(&report));
    println!("wrote {}", args.out.display());
    Ok(())
}

fn table(report: &EditEvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} held-out photos, {} DDIM steps; Imagic with {} embedding and {} fine-tuning steps per modality\n",
        report.count, report.steps, report.embed_steps, report.finetune_steps
    );
    s.push_str("| edit | photos | mask accuracy % ↑ | edited region % ↑ | text accuracy % ↑ | gender % | age ±1 % | beard % | identity PSNR dB ↑ | s / edit |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let row = |s: &mut String, r: &VariantResult| {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.variant,
            r.cases,
            100.0 * r.mask_accuracy,
            100.0 * r.edited_region_accuracy,
            100.0 * r.text_accuracy,
            100.0 * r.gender_accuracy,
            100.0 * r.decade_within_one_accuracy,
            100.0 * r.beard_accuracy,
            r.identity_psnr_db,
            r.seconds_per_edit
        );
    };
    row(&mut s, &report.unedited);
    for r in &report.variants {
        row(&mut s, r);
    }
    s
}

/// One row per example: source photo, source mask, target mask, then each
/// variant's result, with the change written underneath; a legend on top.
fn examples_figure(report: &EditEvalReport) -> image::RgbImage {
    const SCALE: usize = 2;
    const BAND: usize = 14;
    let names: Vec<String> =
        ["photo", "its mask", "target mask"].iter().map(|s| s.to_string()).chain(report.examples.first().into_iter().flat_map(|e| e.results.iter().map(|(n, _)| n.clone()))).collect();
    let legend: Vec<String> = names.chunks(3).map(|line| line.join(" | ")).collect();
    let blank = |width: usize, height: usize| RgbFrame { width, height, pixels: vec![24; width * height * 3] };
    let mut parts = Vec::new();
    let mut captions = Vec::new();
    let mut y = BAND * legend.len();
    for example in &report.examples {
        let c = &example.case;
        let frames = [RgbFrame::from_image(&c.photo), RgbFrame::from_mask(&c.source_mask), RgbFrame::from_mask(&c.target_mask)];
        let mut tiles: Vec<RgbFrame> = frames.iter().map(|f| upscale(f, SCALE)).collect();
        tiles.extend(example.results.iter().map(|(_, image)| upscale(image, SCALE)));
        let strip = hstack(&tiles);
        y += strip.height;
        captions.push((y + 3, format!("{}; {} -> {}", c.mask_change, c.source_caption, c.target_caption)));
        y += BAND;
        let width = strip.width;
        parts.push(strip);
        parts.push(blank(width, BAND));
    }
    let width = parts.first().map_or(600, |p| p.width);
    parts.insert(0, blank(width, BAND * legend.len()));
    let figure = vstack(&parts);
    let mut img = figure.to_image().unwrap_or_default();
    for (k, line) in legend.iter().enumerate() {
        draw_text(&mut img, 3, 3 + BAND * k, line, 8, Rgb([255, 255, 255]));
    }
    for (y, text) in captions {
        draw_text(&mut img, 3, y, &text, 8, Rgb([220, 220, 220]));
    }
    img
}
