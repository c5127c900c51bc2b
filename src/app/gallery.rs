//! Gallery and history: every result with the settings that made it; a click
//! restores them. Results save as PNGs carrying those settings and their mask
//! ([`crate::data::image_params`]).

use egui::{TextureHandle, TextureOptions, Vec2};

use super::generation::{mode_label, Settings};
use super::prompt::CaptionChoice;
use super::timeline::rgb_image;
use crate::data::image_params::ImageParams;
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
}

impl RunParams {
    /// The request these parameters make with `mask`.
    pub fn request(&self, mask: &Mask) -> GenerateRequest {
        let s = &self.settings;
        let text = self.prompt.trim().to_string();
        GenerateRequest { mask: mask.clone(), text, steps: s.steps, eta: s.eta, seed: s.seed, mode: s.mode, batch: s.batch, ..GenerateRequest::default() }
    }
}

/// One finished run.
pub struct HistoryEntry {
    pub id: u64,
    pub params: RunParams,
    pub mask: Mask,
    pub images: Vec<RgbFrame>,
    thumbnails: Vec<TextureHandle>,
}

impl HistoryEntry {
    pub fn new(id: u64, params: RunParams, mask: Mask, images: Vec<RgbFrame>) -> Self {
        Self { id, params, mask, images, thumbnails: Vec::new() }
    }

    /// What the PNG of image `item` carries.
    pub fn image_params(&self, item: usize) -> ImageParams {
        self.params.request(&self.mask).image_params(item, self.params.model.clone())
    }

    fn summary(&self) -> String {
        let s = &self.params.settings;
        format!(
            "\"{}\"\nseed {} · {} steps · eta {} · {}",
            self.params.prompt,
            s.seed,
            s.steps,
            s.eta,
            mode_label(s.mode)
        )
    }
}

/// What the person asked the gallery to do.
pub enum GalleryAction {
    /// Restore the mask, prompt and settings of this history index.
    Restore(usize),
    /// Save image `item` of this history index.
    Save(usize, usize),
}

/// Thumbnails, newest first.
pub fn gallery_ui(ui: &mut egui::Ui, history: &mut [HistoryEntry]) -> Option<GalleryAction> {
    if history.is_empty() {
        ui.weak("Results appear here with their settings; click one to bring its mask, prompt and settings back.");
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
                        .on_hover_text(format!("{summary}\nclick: restore these settings · right-click: save PNG"));
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
