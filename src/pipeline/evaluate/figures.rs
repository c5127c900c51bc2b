//! The evaluations' figures: influence over time as a line plot, influence
//! maps and every mode's image per condition, captioned faces, and edits.

use image::{Rgb, RgbImage};

use super::edits::EditEvalReport;
use super::report::ReportError;
use super::{EvalReport, InfluenceAtStep};
use crate::data::image::{hstack, images_to_frames, influence_heatmap, scalar_maps, upscale, vstack, RgbFrame};
use crate::data::synth::sheet::{contact_sheet, draw_text, SheetEntry};
use crate::diffusion::collaborate::CombineMode;

const PLOT_W: u32 = 640;
const PLOT_H: u32 = 360;
const MARGIN: u32 = 48;

/// The mask model's mean share of influence over t, at contours, inside the skin and everywhere.
pub fn influence_plot(report: &EvalReport) -> RgbImage {
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
    let series: [Series; 3] = [
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

/// A plotted line: its name, colour and value at each step.
type Series = (&'static str, Rgb<u8>, fn(&InfluenceAtStep) -> f64);

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

/// The collaborative run's example images.
fn collaborative_frames(report: &EvalReport) -> Result<Vec<RgbFrame>, ReportError> {
    let (_, images) = report.examples.images.iter().find(|(mode, _)| *mode == CombineMode::Collaborative).ok_or(ReportError::NoExamples)?;
    Ok(images_to_frames(images)?)
}

/// Per example: its mask, the collaborative result, then the mask influence at eight steps from t = T to 0.
pub fn influence_grid(report: &EvalReport) -> Result<RgbImage, ReportError> {
    let ex = &report.examples;
    let images = collaborative_frames(report)?;
    let size = images.first().map_or(64, |f| f.width);
    let picks: Vec<usize> = (0..8).map(|k| k * (ex.w_mask.len().max(1) - 1) / 7).collect();
    let mut rows = Vec::new();
    for (e, image) in images.iter().enumerate() {
        let mut row = vec![RgbFrame::from_mask(&ex.masks[e].resize_nearest(size, size)), image.clone()];
        for &step in &picks {
            let map = &scalar_maps(&ex.w_mask[step].narrow(0, e, 1)?)?[0];
            row.push(upscale(&influence_heatmap(map), size / map.width.max(1)));
        }
        rows.push(hstack(&row));
    }
    Ok(image_of(vstack(&rows)))
}

/// Per example: its mask, then the image of every mode in [`super::MODES`] order.
pub fn mode_grid(report: &EvalReport) -> Result<RgbImage, ReportError> {
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
    Ok(image_of(vstack(&rows)))
}

/// The collaborative results beside their masks with their captions, shown at
/// 128 pixels or more so that a caption fits under its tile.
pub fn captioned_faces(report: &EvalReport) -> Result<RgbImage, ReportError> {
    let ex = &report.examples;
    let frames = collaborative_frames(report)?;
    let factor = frames.first().map_or(1, |f| 128usize.div_ceil(f.width).max(1));
    let images: Vec<RgbImage> = frames.iter().map(|f| image_of(upscale(f, factor))).collect();
    let masks: Vec<_> = ex.masks.iter().zip(&images).map(|(m, img)| m.resize_nearest(img.width() as usize, img.height() as usize)).collect();
    let names: Vec<String> = (0..images.len()).map(|i| format!("condition {i}")).collect();
    let entries: Vec<SheetEntry> = (0..images.len())
        .map(|i| SheetEntry { name: &names[i], image: &images[i], mask: &masks[i], caption: &ex.captions[i] })
        .collect();
    Ok(contact_sheet(&entries))
}

/// One row per example: source photo, source mask, target mask, then each
/// variant's result, with the change written underneath; a legend on top.
pub fn edit_examples(report: &EditEvalReport) -> RgbImage {
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
    let mut img = image_of(vstack(&parts));
    for (k, line) in legend.iter().enumerate() {
        draw_text(&mut img, 3, 3 + BAND * k, line, 8, Rgb([255, 255, 255]));
    }
    for (y, text) in captions {
        draw_text(&mut img, 3, y, &text, 8, Rgb([220, 220, 220]));
    }
    img
}

/// A frame as an `image` buffer (an empty one if its pixels do not fill it, which stacking never makes).
fn image_of(frame: RgbFrame) -> RgbImage {
    frame.to_image().unwrap_or_default()
}
