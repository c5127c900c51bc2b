//! Gallery and history: every result with the settings that made it; a click
//! restores them. Results save as PNGs carrying those settings and their mask
//! ([`crate::data::image_params`]).

use egui::{TextureHandle, TextureOptions, Vec2};

use super::generation::{mode_label, Settings};
use super::prompt::CaptionChoice;
use super::timeline::{rgb_image, StepRecord};
use crate::data::image_params::{EditParams, ImageParams};
use crate::data::mask::Mask;
use crate::pipeline::generate::{GenerateRequest, RgbFrame};

/// Everything besides the mask that determines a result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunParams {
    pub prompt: String,
    #[serde(default, deserialize_with = "super::prompt::chips_or_none")]
    pub attributes: CaptionChoice,
    pub settings: Settings,
    /// The model that made it (absent from work saved before results recorded it).
    #[serde(default)]
    pub model: Option<String>,
    /// How a photo was edited into it; absent for generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<EditParams>,
}

impl RunParams {
    /// The request these parameters make with `mask`.
    pub fn request(&self, mask: &Mask) -> GenerateRequest {
        let s = &self.settings;
        let text = self.prompt.trim().to_string();
        GenerateRequest { mask: mask.clone(), text, steps: s.steps, eta: s.eta, seed: s.seed, mode: s.mode, batch: s.batch, ..GenerateRequest::default() }
    }

    /// What the PNG of image `item` made from `mask` carries.
    pub fn image_params(&self, mask: &Mask, item: usize) -> ImageParams {
        let params = self.request(mask).image_params(item, self.model.clone());
        ImageParams { edit: self.edit.clone(), ..params }
    }
}

/// One finished run or photo edit.
pub struct HistoryEntry {
    pub id: u64,
    pub params: RunParams,
    pub mask: Mask,
    pub images: Vec<RgbFrame>,
    /// The run's timeline, kept while the studio is open (not autosaved).
    pub steps: Vec<StepRecord>,
    thumbnails: Vec<TextureHandle>,
}

impl HistoryEntry {
    pub fn new(id: u64, params: RunParams, mask: Mask, images: Vec<RgbFrame>) -> Self {
        Self { id, params, mask, images, steps: Vec::new(), thumbnails: Vec::new() }
    }

    /// What the PNG of image `item` carries.
    pub fn image_params(&self, item: usize) -> ImageParams {
        self.params.image_params(&self.mask, item)
    }

    /// Whether `other` was made from the same mask and settings (so holds the same images).
    pub fn same_result(&self, other: &HistoryEntry) -> bool {
        self.images.len() == other.images.len() && self.image_params(0) == other.image_params(0)
    }

    fn summary(&self) -> String {
        let s = &self.params.settings;
        let made = match &self.params.edit {
            Some(edit) => format!("{} edit of {} (α {})", edit.method, photo_name(&edit.photo), edit.alpha),
            None => mode_label(s.mode).to_string(),
        };
        format!("\"{}\"\nseed {} · {} steps · eta {} · {made}", self.params.prompt, s.seed, s.steps, s.eta)
    }
}

/// The file name of the photo at `path`, or the whole path when it has none.
fn photo_name(path: &str) -> &str {
    std::path::Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path)
}

/// What the person asked the gallery to do.
pub enum GalleryAction {
    /// Restore the mask, prompt, settings, result and timeline of this history index.
    Restore(usize),
    /// Save image `item` of this history index.
    Save(usize, usize),
}

/// Thumbnails, newest first.
pub fn gallery_ui(ui: &mut egui::Ui, history: &mut [HistoryEntry]) -> Option<GalleryAction> {
    if history.is_empty() {
        ui.weak("Results and photo edits appear here with their settings; click one to bring its mask, prompt, settings and timeline back.");
        return None;
    }
    let mut action = None;
    egui::ScrollArea::horizontal().show(ui, |ui| {
        ui.horizontal(|ui| {
            for (index, entry) in history.iter_mut().enumerate().rev() {
                if entry.thumbnails.len() != entry.images.len() {
                    entry.thumbnails = entry
                        .images
                        .iter()
                        .enumerate()
                        .map(|(k, image)| ui.ctx().load_texture(format!("result-{}-{k}", entry.id), rgb_image(image), TextureOptions::LINEAR))
                        .collect();
                }
                let summary = entry.summary();
                for (item, texture) in entry.thumbnails.iter().enumerate() {
                    let response = ui
                        .add(egui::Button::image((texture.id(), Vec2::splat(72.0))))
                        .on_hover_text(format!("{summary}\nclick: restore it (Ctrl+Z undoes) · right-click: save PNG"));
                    if response.clicked() {
                        action = Some(GalleryAction::Restore(index));
                    }
                    response.context_menu(|ui| {
                        if ui.button("Save PNG…").clicked() {
                            action = Some(GalleryAction::Save(index, item));
                        }
                        if ui.button("Restore settings").clicked() {
                            action = Some(GalleryAction::Restore(index));
                        }
                    });
                }
            }
        });
    });
    action
}

/// Decodes a result PNG's pixels (as RGB).
pub fn decode_result_png(bytes: &[u8]) -> Result<RgbFrame, String> {
    let image = image::load_from_memory(bytes).map_err(|e| e.to_string())?.to_rgb8();
    Ok(RgbFrame::from_image(&image))
}
