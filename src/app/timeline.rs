//! The influence timeline: every step of a run kept, a scrubber over them, and
//! at the chosen step the predicted image, x_t, and the mask and text influence
//! functions as heatmaps (optionally over the image), with a hover readout,
//! playback and PNG export.

use std::path::Path;
use std::time::Duration;

use egui::{Color32, ColorImage, Pos2, Rect, Sense, TextureHandle, TextureOptions, Vec2};

use crate::pipeline::generate::{RgbFrame, ScalarMap, StepFrame};

/// One finished denoising step of the run.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The diffusion timestep t.
    pub t: usize,
    pub frames: Vec<StepFrame>,
}

/// Which picture a timeline view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Predicted,
    Latent,
    MaskInfluence,
    TextInfluence,
}

impl View {
    const ALL: [View; 4] = [View::Predicted, View::Latent, View::MaskInfluence, View::TextInfluence];

    fn title(self) -> &'static str {
        match self {
            View::Predicted => "predicted image",
            View::Latent => "x_t",
            View::MaskInfluence => "mask influence",
            View::TextInfluence => "text influence",
        }
    }

    fn file_suffix(self) -> &'static str {
        match self {
            View::Predicted => "pred",
            View::Latent => "xt",
            View::MaskInfluence => "mask",
            View::TextInfluence => "text",
        }
    }
}

/// Largest side of a timeline picture, in points.
const MAX_VIEW_SIDE: f32 = 180.0;
/// Seconds between frames when playing.
const PLAY_FRAME_SECS: f64 = 0.15;

#[derive(Default)]
pub struct Timeline {
    pub steps: Vec<StepRecord>,
    /// The step shown; follows the newest step while `follow` is set.
    pub index: usize,
    follow: bool,
    /// Which batch item is shown.
    pub item: usize,
    pub overlay: bool,
    pub overlay_opacity: f32,
    playing_since: Option<f64>,
    textures: Vec<(View, TextureHandle)>,
    shown: Option<(usize, usize, bool, u32)>,
}

impl Timeline {
    pub fn new() -> Self {
        Self { follow: true, overlay_opacity: 0.6, ..Default::default() }
    }

    /// Forgets the previous run.
    pub fn clear(&mut self) {
        self.steps.clear();
        self.index = 0;
        self.follow = true;
        self.item = 0;
        self.playing_since = None;
        self.shown = None;
    }

    pub fn push(&mut self, record: StepRecord) {
        self.steps.push(record);
        if self.follow {
            self.index = self.steps.len() - 1;
        }
    }

    fn frame(&self) -> Option<&StepFrame> {
        self.steps.get(self.index).and_then(|s| s.frames.get(self.item))
    }

    /// The timeline; returns what the person asked to export, if anything.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> Option<Export> {
        if self.steps.is_empty() {
            ui.weak("The influence timeline fills in as a run streams its steps: where and when the mask and the text shaped the face.");
            return None;
        }
        let mut export = None;
        let last = self.steps.len() - 1;
        self.advance_playback(ui.ctx(), last);
        // Wrapped, so that narrow windows move the export buttons down instead of clipping them.
        ui.horizontal_wrapped(|ui| {
            let playing = self.playing_since.is_some();
            if ui.button(if playing { "Pause" } else { "Play" }).clicked() {
                self.playing_since = if playing { None } else { Some(ui.input(|i| i.time)) };
                if !playing && self.index == last {
                    self.index = 0;
                }
                self.follow = false;
            }
            let total = self.steps.len();
            let t = self.steps[self.index.min(last)].t;
            let slider = egui::Slider::new(&mut self.index, 0..=last)
                .custom_formatter(move |v, _| format!("{} of {total}", v as usize + 1))
                .text(format!("step (t = {t})"));
            if ui.add(slider).changed() {
                self.follow = self.index == last;
                self.playing_since = None;
            }
            let items = self.steps[0].frames.len();
            if items > 1 {
                ui.add(egui::Slider::new(&mut self.item, 0..=items - 1).text("variation"));
            }
            ui.checkbox(&mut self.overlay, "heatmaps over the image");
            ui.add_enabled(self.overlay, egui::Slider::new(&mut self.overlay_opacity, 0.0..=1.0).text("opacity"));
            if ui.button("Export PNG frames…").clicked() {
                export = Some(Export::Frames);
            }
            if ui.button("Export GIF…").on_hover_text("Every step as one animation: prediction, x_t and both influence maps side by side").clicked() {
                export = Some(Export::Gif);
            }
        });
        self.index = self.index.min(last);
        self.refresh_textures(ui.ctx());
        let Some(frame) = self.frame().cloned() else { return export };
        let side = ((ui.available_width() - 80.0) / 4.0 - 8.0).clamp(48.0, MAX_VIEW_SIDE);
        let mut readout = None;
        ui.horizontal(|ui| {
            for (view, texture) in &self.textures {
                ui.vertical(|ui| {
                    ui.label(view.title());
                    let (rect, response) = ui.allocate_exact_size(Vec2::splat(side), Sense::hover());
                    let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
                    let is_map = matches!(view, View::MaskInfluence | View::TextInfluence);
                    if is_map && self.overlay {
                        let (_, image) = &self.textures[0];
                        ui.painter().image(image.id(), rect, uv, Color32::WHITE);
                        ui.painter().image(texture.id(), rect, uv, Color32::WHITE.gamma_multiply(self.overlay_opacity));
                    } else {
                        ui.painter().image(texture.id(), rect, uv, Color32::WHITE);
                    }
                    if let Some(pos) = response.hover_pos() {
                        let rel = (pos - rect.min) / rect.size();
                        readout = influence_at(&frame, rel.x, rel.y);
                    }
                });
            }
            legend_ui(ui, side);
        });
        match readout {
            Some((x, y, mask, text)) => ui.label(format!("at ({x}, {y}): mask {mask:.2} · text {text:.2}")),
            None => ui.weak("hover a picture to read the mask and text shares at that pixel"),
        };
        export
    }

    fn advance_playback(&mut self, ctx: &egui::Context, last: usize) {
        let Some(since) = self.playing_since else { return };
        let now = ctx.input(|i| i.time);
        if now - since >= PLAY_FRAME_SECS {
            if self.index >= last {
                self.playing_since = None;
                return;
            }
            self.index += 1;
            self.playing_since = Some(now);
        }
        ctx.request_repaint_after(Duration::from_secs_f64(PLAY_FRAME_SECS));
    }

    fn refresh_textures(&mut self, ctx: &egui::Context) {
        let key = (self.index, self.item, self.overlay, self.steps.len() as u32);
        if self.shown == Some(key) {
            return;
        }
        let Some(frame) = self.frame() else { return };
        let images: Vec<(View, ColorImage)> = View::ALL.iter().map(|&v| (v, view_image(frame, v))).collect();
        if self.textures.len() == images.len() {
            for ((_, texture), (_, image)) in self.textures.iter_mut().zip(images) {
                texture.set(image, TextureOptions::NEAREST);
            }
        } else {
            self.textures = images
                .into_iter()
                .map(|(view, image)| (view, ctx.load_texture(format!("timeline-{}", view.file_suffix()), image, TextureOptions::NEAREST)))
                .collect();
        }
        self.shown = Some(key);
    }

    /// Writes every step of the shown variation as one looping GIF, the four
    /// views side by side at [`GIF_VIEW_SIDE`] pixels each. Returns the frame count.
    pub fn export_gif(&self, path: &Path) -> Result<usize, String> {
        use image::codecs::gif::{GifEncoder, Repeat};
        let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut encoder = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
        let failed = |e: image::ImageError| format!("cannot write {}: {e}", path.display());
        encoder.set_repeat(Repeat::Infinite).map_err(failed)?;
        let mut written = 0;
        for step in &self.steps {
            let Some(frame) = step.frames.get(self.item) else { continue };
            let side = GIF_VIEW_SIDE as u32;
            let mut strip = image::RgbaImage::new(side * View::ALL.len() as u32, side);
            for (k, view) in View::ALL.iter().enumerate() {
                let shown = view_image(frame, *view);
                let rgba: Vec<u8> = shown.pixels.iter().flat_map(|c| c.to_array()).collect();
                let Some(image) = image::RgbaImage::from_raw(shown.size[0] as u32, shown.size[1] as u32, rgba) else { continue };
                let scaled = image::imageops::resize(&image, side, side, image::imageops::FilterType::Nearest);
                image::imageops::replace(&mut strip, &scaled, (k as u32 * side) as i64, 0);
            }
            let delay = image::Delay::from_numer_denom_ms((PLAY_FRAME_SECS * 1000.0) as u32, 1);
            encoder.encode_frame(image::Frame::from_parts(strip, 0, 0, delay)).map_err(failed)?;
            written += 1;
        }
        Ok(written)
    }

    /// Writes every step of the shown variation as PNGs: `step_KKK_{pred,xt,mask,text}.png`.
    pub fn export_frames(&self, dir: &Path) -> Result<usize, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut written = 0;
        for (k, step) in self.steps.iter().enumerate() {
            let Some(frame) = step.frames.get(self.item) else { continue };
            for view in View::ALL {
                let image = view_image(frame, view);
                let path = dir.join(format!("step_{k:03}_{}.png", view.file_suffix()));
                let rgb: Vec<u8> = image.pixels.iter().flat_map(|c| [c.r(), c.g(), c.b()]).collect();
                image::save_buffer(&path, &rgb, image.size[0] as u32, image.size[1] as u32, image::ExtendedColorType::Rgb8)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                written += 1;
            }
        }
        Ok(written)
    }
}

/// What the timeline can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// One PNG per step and view, into a folder.
    Frames,
    /// One animated GIF.
    Gif,
}

/// Side of each view in an exported GIF.
const GIF_VIEW_SIDE: usize = 128;

/// (x, y, mask share, text share) at relative position (u, v) of the influence maps.
fn influence_at(frame: &StepFrame, u: f32, v: f32) -> Option<(usize, usize, f32, f32)> {
    let map = &frame.w_mask;
    if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) || map.width == 0 {
        return None;
    }
    let x = (u * map.width as f32) as usize;
    let y = (v * map.height as f32) as usize;
    let text = &frame.w_text;
    let tx = (u * text.width as f32) as usize;
    let ty = (v * text.height as f32) as usize;
    Some((x, y, map.values[y * map.width + x], text.values.get(ty * text.width + tx).copied().unwrap_or(f32::NAN)))
}

fn view_image(frame: &StepFrame, view: View) -> ColorImage {
    match view {
        View::Predicted => rgb_image(&frame.pred_x0),
        View::Latent => rgb_image(&frame.x_t),
        View::MaskInfluence => heatmap_image(&frame.w_mask),
        View::TextInfluence => heatmap_image(&frame.w_text),
    }
}

pub fn rgb_image(frame: &RgbFrame) -> ColorImage {
    ColorImage::from_rgb([frame.width, frame.height], &frame.pixels)
}

fn heatmap_image(map: &ScalarMap) -> ColorImage {
    rgb_image(&crate::data::image::influence_heatmap(map))
}

/// Colour of a share in [0, 1] (values outside are clamped).
pub fn colormap(value: f32) -> Color32 {
    let [r, g, b] = crate::data::image::influence_colour(value);
    Color32::from_rgb(r, g, b)
}

fn legend_ui(ui: &mut egui::Ui, height: f32) {
    ui.vertical(|ui| {
        ui.label("share");
        let (rect, _) = ui.allocate_exact_size(Vec2::new(18.0, height), Sense::hover());
        let rows = 32;
        for r in 0..rows {
            let value = 1.0 - r as f32 / (rows - 1) as f32;
            let y0 = rect.top() + rect.height() * r as f32 / rows as f32;
            let band = Rect::from_min_max(Pos2::new(rect.left(), y0), Pos2::new(rect.right(), y0 + rect.height() / rows as f32 + 0.5));
            ui.painter().rect_filled(band, 0.0, colormap(value));
        }
        let font = egui::TextStyle::Small.resolve(ui.style());
        let color = ui.visuals().text_color();
        ui.painter().text(rect.right_top() + Vec2::new(4.0, 0.0), egui::Align2::LEFT_TOP, "1", font.clone(), color);
        ui.painter().text(rect.right_center() + Vec2::new(4.0, 0.0), egui::Align2::LEFT_CENTER, "0.5", font.clone(), color);
        ui.painter().text(rect.right_bottom() + Vec2::new(4.0, 0.0), egui::Align2::LEFT_BOTTOM, "0", font, color);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_writes_four_pngs_per_step_of_the_shown_variation() {
        let map = |v: f32| ScalarMap { width: 2, height: 2, values: vec![v; 4] };
        let rgb = |v: u8| RgbFrame { width: 2, height: 2, pixels: vec![v; 12] };
        let frame = |k: u8| StepFrame { pred_x0: rgb(k), x_t: rgb(k + 100), w_mask: map(1.0), w_text: map(0.0) };
        let mut timeline = Timeline::new();
        for (t, k) in [(981, 1), (1, 2)] {
            timeline.push(StepRecord { t, frames: vec![frame(k), frame(k + 10)] });
        }
        timeline.item = 1;
        let dir = std::env::temp_dir().join(format!("codiff-timeline-export-{}", std::process::id()));
        assert_eq!(timeline.export_frames(&dir), Ok(8));
        let pred = image::open(dir.join("step_001_pred.png")).unwrap().to_rgb8();
        assert_eq!(pred.get_pixel(0, 0).0, [12, 12, 12], "step 1 of variation 1");
        let mask = image::open(dir.join("step_000_mask.png")).unwrap().to_rgb8();
        assert_eq!(mask.get_pixel(1, 1).0, [253, 231, 37], "share 1 is the top of the colour map");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
