//! The influence timeline: every step of a run kept, a scrubber over them, and
//! at the chosen step the predicted image, x_t, and the mask and text influence
//! functions as heatmaps (optionally over the image), with a hover readout,
//! playback and PNG and GIF export. The steps stream at the latent's size
//! (decoding each with the autoencoder would cost more than the step); the
//! readout and the exports are at the output image's size, the pictures
//! smoothly upsampled and the influence maps interpolated before colouring.

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
/// The colour bar's column: the bar and its "0.5".
const LEGEND_WIDTH: f32 = 44.0;
/// Wide enough for "Pause", so that Play and Pause take the same room.
const PLAY_BUTTON_WIDTH: f32 = 56.0;

/// Room for the widest step readout ("step 888 of 888 · t = 888": runs have at most 250 steps, t < 1000).
fn step_readout_width(ui: &egui::Ui) -> f32 {
    let font = egui::TextStyle::Body.resolve(ui.style());
    ui.ctx().fonts_mut(|f| f.layout_no_wrap("step 888 of 888 · t = 888".into(), font, Color32::WHITE).size().x).ceil()
}
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
    /// Width and height of the run's output images; `None` reads the steps' own size.
    pub image_size: Option<[usize; 2]>,
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

    /// Shows the steps of a finished run (a gallery entry's), from its last step.
    pub fn show_run(&mut self, steps: Vec<StepRecord>, image_size: Option<[usize; 2]>) {
        self.clear();
        self.steps = steps;
        self.index = self.steps.len().saturating_sub(1);
        self.image_size = image_size;
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

    /// The size exports and the readout use: the output image's, else the step's own.
    fn output_size(&self, frame: &StepFrame) -> [usize; 2] {
        self.image_size.unwrap_or([frame.pred_x0.width, frame.pred_x0.height])
    }

    /// The timeline; returns what the person asked to export, if anything.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> Option<Export> {
        if self.steps.is_empty() {
            ui.weak("The influence timeline fills in as a run streams its steps: where and when the mask and the text shaped the face.");
            return None;
        }
        let mut export = None;
        let last = self.steps.len() - 1;
        // The views' room, taken before the header: a row of it that does not fit widens the ui.
        let width = ui.available_width();
        self.advance_playback(ui.ctx(), last);
        // Wrapped, so that narrow windows move the export buttons down instead
        // of clipping them; every piece keeps its width whatever the step, t or
        // playback, so the header never re-wraps while the slider is dragged.
        ui.horizontal_wrapped(|ui| {
            let playing = self.playing_since.is_some();
            let play = egui::Button::new(if playing { "Pause" } else { "Play" }).min_size(Vec2::new(PLAY_BUTTON_WIDTH, 0.0));
            if ui.add(play).clicked() {
                self.playing_since = if playing { None } else { Some(ui.input(|i| i.time)) };
                if !playing && self.index == last {
                    self.index = 0;
                }
                self.follow = false;
            }
            let slider = egui::Slider::new(&mut self.index, 0..=last).show_value(false);
            if ui.add(slider).on_hover_text("the step shown").changed() {
                self.follow = self.index == last;
                self.playing_since = None;
            }
            let text = format!("step {} of {} · t = {}", self.index.min(last) + 1, self.steps.len(), self.steps[self.index.min(last)].t);
            ui.add_sized([step_readout_width(ui), ui.spacing().interact_size.y], egui::Label::new(text));
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
        // Four views and the legend share the width; titles wrap within their view.
        let spacing = ui.spacing().item_spacing.x;
        let side = ((width - LEGEND_WIDTH - 4.0 * spacing) / 4.0).floor().clamp(48.0, MAX_VIEW_SIDE);
        let title_lines = if side < 110.0 { 2.0 } else { 1.0 };
        let title_size = Vec2::new(side, title_lines * ui.text_style_height(&egui::TextStyle::Body));
        let mut readout = None;
        ui.horizontal(|ui| {
            for (view, texture) in &self.textures {
                ui.vertical(|ui| {
                    title_ui(ui, title_size, view.title());
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
                        readout = influence_at(&frame, rel.x, rel.y, self.output_size(&frame));
                    }
                });
            }
            legend_ui(ui, side, title_size.y);
        });
        match readout {
            Some((x, y, mask, text)) => {
                let [w, h] = self.output_size(&frame);
                ui.label(format!("at ({x}, {y}) of the {w}×{h} image: mask {mask:.2} · text {text:.2}"))
            }
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
    /// views side by side, each at the output image's size. Returns the frame count.
    pub fn export_gif(&self, path: &Path) -> Result<usize, String> {
        use image::codecs::gif::{GifEncoder, Repeat};
        let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut encoder = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
        let failed = |e: image::ImageError| format!("cannot write {}: {e}", path.display());
        encoder.set_repeat(Repeat::Infinite).map_err(failed)?;
        let mut written = 0;
        for step in &self.steps {
            let Some(frame) = step.frames.get(self.item) else { continue };
            let [w, h] = self.output_size(frame);
            let mut strip = image::RgbaImage::new((w * View::ALL.len()) as u32, h as u32);
            for (k, view) in View::ALL.into_iter().enumerate() {
                let view = image::DynamicImage::ImageRgb8(view_at_size(frame, view, [w, h])).to_rgba8();
                image::imageops::replace(&mut strip, &view, (k * w) as i64, 0);
            }
            let delay = image::Delay::from_numer_denom_ms((PLAY_FRAME_SECS * 1000.0) as u32, 1);
            encoder.encode_frame(image::Frame::from_parts(strip, 0, 0, delay)).map_err(failed)?;
            written += 1;
        }
        Ok(written)
    }

    /// Writes every step of the shown variation as PNGs at the output image's
    /// size: `step_KKK_{pred,xt,mask,text}.png`.
    pub fn export_frames(&self, dir: &Path) -> Result<usize, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut written = 0;
        for (k, step) in self.steps.iter().enumerate() {
            let Some(frame) = step.frames.get(self.item) else { continue };
            for view in View::ALL {
                let path = dir.join(format!("step_{k:03}_{}.png", view.file_suffix()));
                view_at_size(frame, view, self.output_size(frame)).save(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
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

/// (x, y, mask share, text share) at relative position (u, v) of the
/// pictures: x and y are pixels of the `size` output image, the shares the
/// maps' interpolated values there (as the exports show them).
fn influence_at(frame: &StepFrame, u: f32, v: f32, [w, h]: [usize; 2]) -> Option<(usize, usize, f32, f32)> {
    if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) || frame.w_mask.width == 0 || w == 0 || h == 0 {
        return None;
    }
    let (x, y) = ((u * w as f32) as usize, (v * h as f32) as usize);
    let at = |map: &ScalarMap| sample_bilinear(map, (x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
    Some((x, y, at(&frame.w_mask), at(&frame.w_text)))
}

/// `map` at relative position (u, v), interpolated between pixel centres (edges held).
fn sample_bilinear(map: &ScalarMap, u: f32, v: f32) -> f32 {
    if map.width == 0 || map.height == 0 || map.values.len() < map.width * map.height {
        return f32::NAN;
    }
    let coord = |rel: f32, n: usize| {
        let p = (rel * n as f32 - 0.5).clamp(0.0, (n - 1) as f32);
        let lo = p.floor() as usize;
        (lo, (lo + 1).min(n - 1), p - lo as f32)
    };
    let ((x0, x1, fx), (y0, y1, fy)) = (coord(u, map.width), coord(v, map.height));
    let get = |x: usize, y: usize| map.values[y * map.width + x];
    let top = get(x0, y0) * (1.0 - fx) + get(x1, y0) * fx;
    let bottom = get(x0, y1) * (1.0 - fx) + get(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// A view at `size`: the pictures upsampled with Catmull-Rom, the maps
/// interpolated and then coloured (so the colours stay on the colour map).
fn view_at_size(frame: &StepFrame, view: View, [w, h]: [usize; 2]) -> image::RgbImage {
    let picture = |rgb: &RgbFrame| match rgb.to_image() {
        Some(image) if [rgb.width, rgb.height] != [w, h] => image::imageops::resize(&image, w as u32, h as u32, image::imageops::FilterType::CatmullRom),
        Some(image) => image,
        None => image::RgbImage::new(w as u32, h as u32),
    };
    let map = |map: &ScalarMap| {
        image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            image::Rgb(crate::data::image::influence_colour(sample_bilinear(map, (x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32)))
        })
    };
    match view {
        View::Predicted => picture(&frame.pred_x0),
        View::Latent => picture(&frame.x_t),
        View::MaskInfluence => map(&frame.w_mask),
        View::TextInfluence => map(&frame.w_text),
    }
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

/// A view's title, centred and wrapped within `size`, which it always fills.
fn title_ui(ui: &mut egui::Ui, size: Vec2, title: &str) {
    ui.allocate_ui_with_layout(size, egui::Layout::top_down(egui::Align::Center), |ui| {
        ui.set_min_size(size);
        ui.add(egui::Label::new(title).wrap());
    });
}

/// The colour bar (`height` high, under a title `title_height` high) with its scale, within [`LEGEND_WIDTH`].
fn legend_ui(ui: &mut egui::Ui, height: f32, title_height: f32) {
    ui.vertical(|ui| {
        ui.set_width(LEGEND_WIDTH);
        title_ui(ui, Vec2::new(LEGEND_WIDTH, title_height), "share");
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

    /// A 2 x 2 step whose mask map is 0 on the left column and 1 on the right.
    fn split_frame() -> StepFrame {
        let w_mask = ScalarMap { width: 2, height: 2, values: vec![0.0, 1.0, 0.0, 1.0] };
        let w_text = ScalarMap { values: w_mask.values.iter().map(|v| 1.0 - v).collect(), ..w_mask.clone() };
        let rgb = |v: u8| RgbFrame { width: 2, height: 2, pixels: vec![v; 12] };
        StepFrame { pred_x0: rgb(90), x_t: rgb(30), w_mask, w_text }
    }

    #[test]
    fn exports_are_at_the_output_image_s_size() {
        let mut timeline = Timeline::new();
        timeline.push(StepRecord { t: 981, frames: vec![split_frame()] });
        timeline.push(StepRecord { t: 1, frames: vec![split_frame()] });
        timeline.image_size = Some([16, 16]);
        let dir = std::env::temp_dir().join(format!("codiff-timeline-size-{}", std::process::id()));
        assert_eq!(timeline.export_frames(&dir), Ok(8));
        let pred = image::open(dir.join("step_000_pred.png")).unwrap().to_rgb8();
        assert_eq!(pred.dimensions(), (16, 16), "not the 2 x 2 latent");
        assert_eq!(pred.get_pixel(8, 8).0, [90, 90, 90]);
        let mask = image::open(dir.join("step_001_mask.png")).unwrap().to_rgb8();
        assert_eq!(mask.dimensions(), (16, 16));
        assert_eq!(mask.get_pixel(0, 5).0, crate::data::image::influence_colour(0.0));
        assert_eq!(mask.get_pixel(15, 5).0, crate::data::image::influence_colour(1.0));
        assert_eq!(mask.get_pixel(7, 5).0, crate::data::image::influence_colour(0.4375), "interpolated between the two latent pixels");

        let gif = dir.join("steps.gif");
        assert_eq!(timeline.export_gif(&gif), Ok(2));
        let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(std::fs::File::open(&gif).unwrap())).unwrap();
        assert_eq!(image::ImageDecoder::dimensions(&decoder), (64, 16), "four views of 16 x 16 side by side");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_readout_is_in_image_pixels() {
        let frame = split_frame();
        let (x, y, mask, text) = influence_at(&frame, 0.99, 0.5, [256, 256]).unwrap();
        assert_eq!((x, y), (253, 128), "pixels of the 256 x 256 image, not of the 2 x 2 map");
        assert_eq!((mask, text), (1.0, 0.0));
        let (x, _, mask, _) = influence_at(&frame, 0.5, 0.5, [256, 256]).unwrap();
        assert_eq!(x, 128);
        assert!((mask - 0.5).abs() < 0.01, "between the columns: {mask}");
        assert_eq!(influence_at(&frame, 1.0, 0.5, [256, 256]), None, "outside the picture");
    }
}
