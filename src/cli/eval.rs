//! `codiff eval`: the paper's Tables 1 and 2 and its influence figure on the
//! synthetic world, with the default models (or any composed model) and the judges.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use image::{Rgb, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::image::{hstack, images_to_frames, influence_colour, scalar_maps, upscale, vstack, RgbFrame};
use crate::data::synth::sheet::{contact_sheet, draw_text, SheetEntry};
use crate::diffusion::collaborate::CombineMode;
use crate::pipeline::evaluate::{self, mode_name, EvalEvent, EvalReport, EvalRequest, ModeResult, MODES};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Generations per mode: held-out (mask, caption) pairs, or the --conditions folder's pairs cycled.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// A folder of masks/*.png and captions.json (file name -> caption or list of captions) to
    /// evaluate on instead of held-out synthetic conditions.
    #[arg(long)]
    conditions: Option<PathBuf>,
    /// Seed of the sampling noise (the same for every mode).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where results.json, results.md and the figures go.
    #[arg(long)]
    out: PathBuf,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM eta (1.0 as the original generation script; the same noise in every mode).
    #[arg(long, default_value_t = 1.0)]
    eta: f64,
    /// Conditions sampled together.
    #[arg(long, default_value_t = 25)]
    batch: usize,
    #[command(flatten)]
    model: super::JudgedModelArgs,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    use super::output::{check_count, check_range};
    check_count("--count", args.count, 1_000_000, "the figures are means over the conditions")?;
    check_count("--steps", args.steps, 1000, "the model was trained on 1000 noise levels")?;
    check_range("--eta", args.eta, 0.0..=1.0, "0 samples deterministically, 1 adds as much noise as DDPM")?;
    check_count("--batch", args.batch, 64, "more only runs out of memory")?;
    let (model, judges) = args.model.load()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("could not create {}", args.out.display()))?;
    let conditions = args.conditions.as_deref().map(crate::data::conditions::read).transpose()?;
    let source = match (&args.conditions, &conditions) {
        (Some(dir), Some(pairs)) => format!("{} (mask, caption) pairs of {}, cycled", pairs.len(), dir.display()),
        _ => "held-out synthetic conditions".to_string(),
    };
    let request = EvalRequest { count: args.count, seed: args.seed, steps: args.steps, eta: args.eta, batch: args.batch, conditions };
    let bar = ProgressBar::new((args.count * MODES.len()) as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} images ({msg}) {elapsed} < {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let cancel = super::interrupted();
    let report = evaluate::run(&model, &judges, &request, cancel, &mut |EvalEvent::Progress { done, mode, .. }| {
        bar.set_position(done as u64);
        bar.set_message(mode_name(mode));
    })?;
    bar.finish();
    write_report(&report, &source, &args.out)?;
    println!("{}", table(&report, &source));
    println!("wrote {}", args.out.display());
    Ok(())
}

fn write_report(report: &EvalReport, source: &str, out: &Path) -> anyhow::Result<()> {
    let modes: serde_json::Map<String, serde_json::Value> =
        report.modes.iter().map(|(mode, result)| Ok((mode_name(*mode).to_string(), serde_json::to_value(result)?))).collect::<anyhow::Result<_>>()?;
    let json = serde_json::json!({
        "modes": modes,
        "conditions": source,
        "count": report.count,
        "seed": report.seed,
        "steps": report.steps,
        "eta": report.eta,
        "real_photos": report.real_photos,
        "autoencoded_photos": report.autoencoded_photos,
        "condition_use": report.condition_use,
        "influence_over_time": report.influence_over_time,
    });
    write(out.join("results.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    write(out.join("results.md"), table(report, source).as_bytes())?;
    save(influence_plot(report), &out.join("influence_over_time.png"))?;
    save(frame_image(influence_grid(report)?), &out.join("influence_grid.png"))?;
    save(frame_image(mode_grid(report)?), &out.join("modes.png"))?;
    save(captioned_faces(report)?, &out.join("faces.png"))
}

/// The collaborative results beside their masks with their captions, shown at
/// 128 pixels or more so that a caption fits under its tile.
fn captioned_faces(report: &EvalReport) -> anyhow::Result<RgbImage> {
    let ex = &report.examples;
    let collaborative = ex.images.iter().find(|(mode, _)| *mode == CombineMode::Collaborative).context("no collaborative examples")?;
    let frames = images_to_frames(&collaborative.1)?;
    let factor = frames.first().map_or(1, |f| 128usize.div_ceil(f.width).max(1));
    let images: Vec<RgbImage> = frames.iter().map(|f| frame_image(upscale(f, factor))).collect();
    let masks: Vec<_> = ex.masks.iter().zip(&images).map(|(m, img)| m.resize_nearest(img.width() as usize, img.height() as usize)).collect();
    let names: Vec<String> = (0..images.len()).map(|i| format!("condition {i}")).collect();
    let entries: Vec<SheetEntry> = (0..images.len())
        .map(|i| SheetEntry { name: &names[i], image: &images[i], mask: &masks[i], caption: &ex.captions[i] })
        .collect();
    Ok(contact_sheet(&entries))
}

fn write(path: PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(&path, bytes).with_context(|| format!("could not write {}", path.display()))
}

fn save(img: RgbImage, path: &Path) -> anyhow::Result<()> {
    img.save(path).with_context(|| format!("could not write {}", path.display()))
}

fn frame_image(frame: RgbFrame) -> RgbImage {
    frame.to_image().unwrap_or_default()
}

/// The results as Markdown tables laid out like the paper's Tables 1 and 2.
fn table(report: &EvalReport, source: &str) -> String {
    let mut s = String::new();
    let row = |s: &mut String, name: &str, r: &ModeResult| {
        let _ = writeln!(
            s,
            "| {name} | {:.1} [{:.1}, {:.1}] | {:.1} [{:.1}, {:.1}] | {:.1} [{:.1}, {:.1}] | {:.1} | {:.1} | {:.1} |",
            r.fd,
            r.fd_ci.low,
            r.fd_ci.high,
            100.0 * r.text_accuracy,
            100.0 * r.text_accuracy_ci.low,
            100.0 * r.text_accuracy_ci.high,
            100.0 * r.mask_accuracy,
            100.0 * r.mask_accuracy_ci.low,
            100.0 * r.mask_accuracy_ci.high,
            100.0 * r.gender_accuracy,
            100.0 * r.decade_within_one_accuracy,
            100.0 * r.beard_accuracy,
        );
    };
    let header = "| mode | FD ↓ | text accuracy % ↑ | mask accuracy % ↑ | gender % | age ±1 decade % | beard % |\n|---|---|---|---|---|---|---|\n";
    let _ = writeln!(
        s,
        "{} generations per mode from {source}, {} DDIM steps (eta {}), noise seed {}; FD against {} held-out synthetic photos; [95% bias-corrected bootstrap interval]\n",
        report.count, report.steps, report.eta, report.seed, report.count
    );
    let _ = writeln!(s, "**Table 1: uni-modal models, the composable average and collaboration**\n");
    s.push_str(header);
    let find = |m: CombineMode| report.modes.iter().find(|(mode, _)| *mode == m).map(|(_, r)| r);
    for mode in [CombineMode::Text, CombineMode::Mask, CombineMode::Composable, CombineMode::Collaborative] {
        if let Some(r) = find(mode) {
            row(&mut s, mode_name(mode), r);
        }
    }
    let _ = writeln!(s, "\n**Table 2: ablations of the influence functions**\n");
    s.push_str(header);
    for mode in [CombineMode::NoSpatial, CombineMode::NoTemporal, CombineMode::Softmax, CombineMode::Collaborative] {
        if let Some(r) = find(mode) {
            row(&mut s, mode_name(mode), r);
        }
    }
    let _ = writeln!(s, "\nThe judges on the real held-out photos, and on the same photos through the autoencoder (the ceilings):\n");
    s.push_str(header);
    row(&mut s, "real photos", &report.real_photos);
    row(&mut s, "autoencoded photos", &report.autoencoded_photos);
    let _ = writeln!(
        s,
        "\nHow much each model uses its condition: the error of its predicted noise on the held-out photos noised to t, \
         given the sample's own condition and given another sample's; the gain is how much lower the own condition makes it:\n"
    );
    s.push_str("| t | mask model: own | swapped | gain % | text model: own | swapped | gain % |\n|---|---|---|---|---|---|---|\n");
    for c in &report.condition_use {
        let (mask_gain, text_gain) = c.gains();
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:.1} | {:.4} | {:.4} | {:.1} |",
            c.t,
            c.mask_own,
            c.mask_swapped,
            100.0 * mask_gain,
            c.text_own,
            c.text_swapped,
            100.0 * text_gain
        );
    }
    s
}

const PLOT_W: u32 = 640;
const PLOT_H: u32 = 360;
const MARGIN: u32 = 48;

/// The mask model's mean share of influence over t, at contours, inside the skin and everywhere.
fn influence_plot(report: &EvalReport) -> RgbImage {
    let mut img = RgbImage::from_pixel(PLOT_W, PLOT_H, Rgb([255, 255, 255]));
    let (x0, y0, x1, y1) = (MARGIN, PLOT_H - MARGIN, PLOT_W - 16, 24);
    let ink = Rgb([40, 40, 40]);
    let grey = Rgb([215, 215, 215]);
    for k in 0..=4 {
        let y = y0 - (y0 - y1) * k / 4;
        line(&mut img, (x0, y), (x1, y), grey);
        draw_text(&mut img, 4, y as usize - 4, &format!("{:.2}", k as f64 / 4.0), 8, ink);
    }
    line(&mut img, (x0, y0), (x1, y0), ink);
    line(&mut img, (x0, y0), (x0, y1), ink);
    // t runs from 1000 at the left (the first step) to 0 at the right, as sampling goes.
    let px = |t: usize| x0 + ((1000 - t.min(1000)) as u32 * (x1 - x0)) / 1000;
    let py = |v: f64| y0 - ((v.clamp(0.0, 1.0) * (y0 - y1) as f64) as u32);
    for t in [1000, 750, 500, 250, 0] {
        draw_text(&mut img, px(t) as usize - 12, (y0 + 8) as usize, &format!("t={t}"), 8, ink);
    }
    let series: [(&str, Rgb<u8>, fn(&evaluate::InfluenceAtStep) -> f64); 3] = [
        ("contours", Rgb([214, 39, 40]), |s| s.contour),
        ("skin interior", Rgb([31, 119, 180]), |s| s.skin_interior),
        ("everywhere", Rgb([120, 120, 120]), |s| s.everywhere),
    ];
    for (k, (name, colour, value)) in series.iter().enumerate() {
        let points: Vec<(u32, u32)> = report.influence_over_time.iter().map(|s| (px(s.t), py(value(s)))).collect();
        for pair in points.windows(2) {
            line(&mut img, pair[0], pair[1], *colour);
        }
        let ly = 30 + 14 * k as u32;
        line(&mut img, (x1 - 150, ly + 4), (x1 - 130, ly + 4), *colour);
        draw_text(&mut img, (x1 - 124) as usize, ly as usize, name, 8, ink);
    }
    draw_text(&mut img, x0 as usize, 6, "mask model's share of influence over sampling", 8, ink);
    img
}

/// A straight line (Bresenham), two pixels thick.
fn line(img: &mut RgbImage, (x0, y0): (u32, u32), (x1, y1): (u32, u32), colour: Rgb<u8>) {
    let (dx, dy) = ((x1 as i64 - x0 as i64).abs(), -(y1 as i64 - y0 as i64).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0 as i64, y0 as i64, dx + dy);
    loop {
        for (ox, oy) in [(0, 0), (0, 1)] {
            let (px, py) = (x + ox, y + oy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, colour);
            }
        }
        if x == x1 as i64 && y == y1 as i64 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Per example: its mask, the collaborative result, then the mask influence at eight steps from t = T to 0.
fn influence_grid(report: &EvalReport) -> anyhow::Result<RgbFrame> {
    let ex = &report.examples;
    let Some((_, images)) = ex.images.iter().find(|(m, _)| *m == CombineMode::Collaborative) else {
        anyhow::bail!("the evaluation kept no collaborative examples")
    };
    let images = images_to_frames(images)?;
    let size = images.first().map_or(64, |f| f.width);
    let picks: Vec<usize> = (0..8).map(|k| k * (ex.w_mask.len().max(1) - 1) / 7).collect();
    let mut rows = Vec::new();
    for (e, image) in images.iter().enumerate() {
        let mut row = vec![RgbFrame::from_mask(&ex.masks[e].resize_nearest(size, size)), image.clone()];
        for &step in &picks {
            let map = &scalar_maps(&ex.w_mask[step].narrow(0, e, 1)?)?[0];
            let pixels = map.values.iter().flat_map(|&v| influence_colour(v)).collect();
            let frame = RgbFrame { width: map.width, height: map.height, pixels };
            row.push(upscale(&frame, size / map.width.max(1)));
        }
        rows.push(hstack(&row));
    }
    Ok(vstack(&rows))
}

/// Per example: its mask, then the image of every mode in [`MODES`] order.
fn mode_grid(report: &EvalReport) -> anyhow::Result<RgbFrame> {
    let ex = &report.examples;
    let per_mode: Vec<Vec<RgbFrame>> = ex.images.iter().map(|(_, t)| images_to_frames(t)).collect::<Result<_, _>>()?;
    let size = per_mode.first().and_then(|f| f.first()).map_or(64, |f| f.width);
    let rows = (0..ex.masks.len())
        .map(|e| {
            let mut row = vec![RgbFrame::from_mask(&ex.masks[e].resize_nearest(size, size))];
            row.extend(per_mode.iter().filter_map(|frames| frames.get(e).cloned()));
            hstack(&row)
        })
        .collect::<Vec<_>>();
    Ok(vstack(&rows))
}
