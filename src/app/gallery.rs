//! Gallery and history: every result with the settings that made it; a click
//! restores them. Results save as PNGs with those settings embedded, and such
//! a PNG loads the settings back.

use egui::{TextureHandle, TextureOptions, Vec2};

use super::generation::{mode_label, Settings};
use super::prompt::Attributes;
use super::timeline::rgb_image;
use crate::data::mask::Mask;
use crate::pipeline::generate::RgbFrame;

/// The PNG text key under which results carry their parameters.
const PARAMS_KEY: &str = "codiff";

/// Everything besides the mask that determines a result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunParams {
    pub prompt: String,
    pub attributes: Attributes,
    pub settings: Settings,
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

/// PNG bytes of `image` with `params` embedded as JSON text.
pub fn encode_result_png(image: &RgbFrame, params: &RunParams) -> Result<Vec<u8>, String> {
    let json = serde_json::to_string(params).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.add_itxt_chunk(PARAMS_KEY.into(), json).map_err(|e| e.to_string())?;
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(&image.pixels).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The parameters embedded in a result PNG; `None` for PNGs the studio did not write.
pub fn read_result_params(bytes: &[u8]) -> Option<RunParams> {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().ok()?;
    let chunk = reader.info().utf8_text.iter().find(|c| c.keyword == PARAMS_KEY)?;
    serde_json::from_str(&chunk.get_text().ok()?).ok()
}

/// Decodes a result PNG's pixels (as RGB).
pub fn decode_result_png(bytes: &[u8]) -> Result<RgbFrame, String> {
    let image = image::load_from_memory(bytes).map_err(|e| e.to_string())?.to_rgb8();
    Ok(RgbFrame::from_image(&image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_png_carries_its_parameters() {
        let image = RgbFrame { width: 2, height: 1, pixels: vec![1, 2, 3, 250, 251, 252] };
        let params = RunParams {
            prompt: "This woman is in her forties — ünïcode".into(),
            attributes: Attributes::default(),
            settings: Settings { seed: 7, steps: 20, ..Settings::default() },
        };
        let bytes = encode_result_png(&image, &params).unwrap();
        assert_eq!(read_result_params(&bytes), Some(params));
        assert_eq!(decode_result_png(&bytes).unwrap(), image);
        let plain = crate::data::mask::Mask::filled(2, 2, 0).encode_png().unwrap();
        assert_eq!(read_result_params(&plain), None);
    }
}
