//! Editing a photo in the studio: open it, choose the square to edit, let the
//! judges read its mask (onto the canvas) and description (into the prompt),
//! change both, run Imagic or inversion on the worker, compare the results in a
//! filmstrip and save the chosen one blended back into the full photo.

use std::path::PathBuf;

use egui::{TextureHandle, TextureOptions, Vec2};
use image::RgbImage;

use super::autosave::SavedPhoto;
use super::photo_jobs::{OpenedPhoto, Recropped};
use super::timeline::rgb_image;
use crate::data::image_params::ImageParams;
use crate::data::mask::Mask;
use super::edit_clock::{duration_text, EditClock, EditProgress};
use crate::pipeline::edit::{self, Crop, EditMethod, EditRequest, Photo};
use crate::pipeline::generate::RgbFrame;

/// One finished edit.
pub struct EditResult {
    pub method: EditMethod,
    pub alpha: f64,
    pub image: RgbFrame,
    /// What its PNG carries.
    pub params: ImageParams,
    texture: TextureHandle,
}

/// What a click in the photo panel asks the studio to do.
#[derive(Debug, Clone, PartialEq)]
pub enum PhotoAction {
    /// Cut the crop again and have the judges read it.
    Recrop,
    Edit,
    Cancel,
    Save(usize),
    Close,
}

/// The open photo and its edits.
pub struct PhotoEdit {
    pub path: PathBuf,
    pub photo: Photo,
    /// The crop as drawn under the mask.
    pub underlay: TextureHandle,
    /// The crop at the model's size (what the judges read and the edit starts from).
    pub model_input: RgbImage,
    /// The photo's own mask at the model's size, as read (the edit's source condition).
    pub source_mask: Option<Mask>,
    /// The photo's own description, as read and corrected by the person.
    pub source_text: String,
    /// Waiting for the judges.
    pub reading: bool,
    pub method: EditMethod,
    pub alpha: f64,
    pub embed_steps: usize,
    pub finetune_steps: usize,
    pub results: Vec<EditResult>,
    pub selected: Option<usize>,
    /// The crop being edited in the panel, applied by "Apply crop" or at the end of a drag.
    crop_draft: Crop,
    /// The whole photo, scaled down, for choosing the crop.
    overview: TextureHandle,
    /// The drag in progress on the overview: what it moves and the crop it started from.
    crop_drag: Option<(CropHandle, Crop)>,
    /// Where the overview was last drawn, and its points per photo pixel.
    overview_placed: Option<(egui::Pos2, f32)>,
}

/// What a drag on the crop overview changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CropHandle {
    Move,
    Corner,
}

impl PhotoEdit {
    /// The studio's panel for a photo read off the UI thread.
    pub fn new(ctx: &egui::Context, opened: OpenedPhoto) -> Self {
        let OpenedPhoto { path, photo, underlay, overview, model_input } = opened;
        Self {
            path,
            crop_draft: photo.crop,
            photo,
            underlay: ctx.load_texture("photo", underlay, TextureOptions::LINEAR),
            model_input,
            source_mask: None,
            source_text: String::new(),
            reading: false,
            method: EditMethod::Inversion,
            alpha: edit::DEFAULT_IMAGIC_ALPHA,
            embed_steps: 500,
            finetune_steps: 1000,
            results: Vec::new(),
            selected: None,
            overview: ctx.load_texture("photo-overview", overview, TextureOptions::LINEAR),
            crop_drag: None,
            overview_placed: None,
        }
    }

    /// The panel's crop, checked against the photo (to be cut off the UI thread).
    pub fn drafted_crop(&self) -> Result<Crop, String> {
        let (w, h) = self.photo.full.dimensions();
        self.crop_draft.within(w, h)
    }

    /// Takes a new crop of this photo; its reading is to come.
    pub fn set_crop(&mut self, recropped: Recropped) {
        self.photo.crop = recropped.crop;
        self.crop_draft = recropped.crop;
        self.underlay.set(recropped.underlay, TextureOptions::LINEAR);
        self.model_input = recropped.model_input;
        self.source_mask = None;
    }

    /// The request for an edit to `target_mask` and `target_text` at the model's `size`.
    pub fn request(&self, size: usize, target_mask: &Mask, target_text: &str, seed: u64, steps: usize) -> EditRequest {
        let mut request = EditRequest::new(self.model_input.clone(), target_mask.resize_nearest(size, size), target_text.to_string(), self.method);
        request.source_mask = self.source_mask.clone();
        request.source_text = Some(self.source_text.trim().to_string()).filter(|t| !t.is_empty());
        request.alphas = vec![self.alpha];
        request.embed_steps = self.embed_steps;
        request.finetune_steps = self.finetune_steps;
        request.seed = seed;
        request.steps = steps;
        request
    }

    /// Adds a finished edit to the filmstrip and selects it.
    pub fn add_result(&mut self, ctx: &egui::Context, method: EditMethod, alpha: f64, image: RgbFrame, params: ImageParams) {
        let texture = ctx.load_texture(format!("edit-{}", self.results.len()), rgb_image(&image), TextureOptions::LINEAR);
        self.results.push(EditResult { method, alpha, image, params, texture });
        self.selected = Some(self.results.len() - 1);
    }

    /// What autosave keeps of this photo to reopen it as it is.
    pub fn saved(&self) -> SavedPhoto {
        SavedPhoto {
            path: self.path.clone(),
            crop: self.photo.crop,
            source_text: self.source_text.clone(),
            method: self.method,
            alpha: self.alpha,
            embed_steps: self.embed_steps,
            finetune_steps: self.finetune_steps,
            source_mask: self.source_mask.clone(),
        }
    }

    /// Takes back what the last session had: the reading and the edit settings.
    pub fn resume(&mut self, saved: SavedPhoto) {
        self.source_text = saved.source_text;
        self.source_mask = saved.source_mask;
        self.method = saved.method;
        self.alpha = saved.alpha;
        self.embed_steps = saved.embed_steps;
        self.finetune_steps = saved.finetune_steps;
    }

    /// The stages an edit with these settings and `steps` DDIM steps runs.
    fn plan(&self, steps: usize) -> Vec<(edit::EditPhase, usize)> {
        edit::plan(self.method, self.embed_steps, self.finetune_steps, steps, 1)
    }

    /// The photo panel; `busy` while the worker runs something, `progress`
    /// while it runs an edit, `clock` for how long one takes at `steps` DDIM steps.
    pub fn ui(&mut self, ui: &mut egui::Ui, busy: bool, progress: Option<&EditProgress>, clock: &EditClock, steps: usize) -> Option<PhotoAction> {
        let mut action = None;
        let name = self.path.file_name().map_or_else(|| self.path.display().to_string(), |n| n.to_string_lossy().into_owned());
        ui.horizontal(|ui| {
            ui.heading("Edit photo");
            ui.weak(format!("{name} · {}×{}", self.photo.full.width(), self.photo.full.height()));
            if ui.small_button("Close photo").clicked() {
                action = Some(PhotoAction::Close);
            }
        });
        let (w, h) = self.photo.full.dimensions();
        if self.crop_picker(ui, !busy) {
            action = Some(PhotoAction::Recrop);
        }
        ui.horizontal(|ui| {
            ui.label("crop");
            let c = &mut self.crop_draft;
            ui.add(egui::DragValue::new(&mut c.x).range(0..=w.saturating_sub(16)).prefix("x "));
            ui.add(egui::DragValue::new(&mut c.y).range(0..=h.saturating_sub(16)).prefix("y "));
            ui.add(egui::DragValue::new(&mut c.side).range(16..=w.min(h)).prefix("side "));
            let changed = self.crop_draft != self.photo.crop;
            if ui.add_enabled(changed && !busy, egui::Button::new("Apply crop")).on_hover_text("Cut the square again and read its mask and description").clicked() {
                action = Some(PhotoAction::Recrop);
            }
        });
        ui.horizontal(|ui| {
            ui.label("the photo shows");
            if self.reading {
                ui.spinner();
            }
        });
        ui.add(egui::TextEdit::multiline(&mut self.source_text).desired_rows(2).hint_text("its description (read by the judges; correct it if they are wrong)"));
        ui.weak("The mask on the canvas and the description above are the target: change them, then edit.");
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.method, EditMethod::Inversion, "inversion").on_hover_text("DDIM inversion: seconds");
            ui.radio_value(&mut self.method, EditMethod::Imagic, "Imagic").on_hover_text("The paper's method: fine-tunes both models on the photo (minutes; cached per photo and target)");
        });
        if self.method == EditMethod::Imagic {
            ui.add(egui::Slider::new(&mut self.alpha, 0.0..=10.0).step_by(0.5).text("alpha")).on_hover_text("0 reconstructs the photo, 1 is the original's target; above 1 the edit grows. With the default models, 1 suits 500 + 1000 steps; after 100 + 200 steps they need about 10. A new alpha only samples again");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut self.embed_steps).range(0..=5000).prefix("embedding steps "));
                ui.add(egui::DragValue::new(&mut self.finetune_steps).range(0..=5000).prefix("fine-tuning steps "));
            });
        }
        ui.horizontal(|ui| {
            let edit = egui::Button::new(egui::RichText::new("Edit photo").strong()).min_size(Vec2::new(120.0, 28.0));
            if ui.add_enabled(!busy && !self.reading, edit).clicked() {
                action = Some(PhotoAction::Edit);
            }
            if progress.is_some() && ui.button("Cancel").on_hover_text("Esc").clicked() {
                action = Some(PhotoAction::Cancel);
            }
            if progress.is_none() {
                let cached = if self.method == EditMethod::Imagic { "; less where this photo and target were fine-tuned before" } else { "" };
                match clock.estimate_secs(&self.plan(steps)) {
                    Some(secs) => ui.weak(format!("about {}", duration_text(secs))).on_hover_text(format!("From the step times measured in this session{cached}")),
                    None => ui.weak("time: known after a generation").on_hover_text("The estimate comes from the step times of a generation or an edit"),
                };
            }
        });
        if let Some(p) = progress {
            let left = p.secs_left(clock).map_or(String::new(), |s| format!(" · {} left", duration_text(s)));
            ui.add(egui::ProgressBar::new(p.fraction(clock)).text(format!("{}: {} of {}{left}", p.stage, p.step, p.total)));
        }
        if !self.results.is_empty() {
            ui.label("results (click to compare)");
            egui::ScrollArea::horizontal().id_salt("filmstrip").show(ui, |ui| {
                ui.horizontal(|ui| {
                    for (k, result) in self.results.iter().enumerate() {
                        ui.vertical(|ui| {
                            let selected = self.selected == Some(k);
                            let caption = match result.method {
                                EditMethod::Imagic => format!("Imagic α {:.1}", result.alpha),
                                EditMethod::Inversion => "inversion".into(),
                            };
                            let button = ui.add(egui::Button::image((result.texture.id(), Vec2::splat(72.0))).selected(selected));
                            // An image alone has no name for screen readers (and kittest's accessibility check).
                            button.widget_info(|| egui::WidgetInfo::selected(egui::Role::Button, true, selected, format!("edit {}: {caption}", k + 1)));
                            if button.clicked() {
                                self.selected = Some(k);
                            }
                            ui.small(caption);
                        });
                    }
                });
            });
            if let Some(k) = self.selected.filter(|&k| k < self.results.len()) {
                let side = ui.available_width().min(256.0);
                ui.image((self.results[k].texture.id(), Vec2::splat(side)));
                if ui.button("Save edited photo…").on_hover_text("The full photo with this edit blended into the crop").clicked() {
                    action = Some(PhotoAction::Save(k));
                }
            }
        }
        action
    }

    /// Where photo pixel (`x`, `y`) was drawn on the crop overview.
    pub fn overview_to_screen(&self, x: f32, y: f32) -> Option<egui::Pos2> {
        self.overview_placed.map(|(origin, scale)| origin + Vec2::new(x, y) * scale)
    }

    /// The whole photo with the crop square on it: drag inside the square to
    /// move it, drag its corner to resize it, click elsewhere to centre it
    /// there. True when a drag has just ended on a new crop (to be applied).
    fn crop_picker(&mut self, ui: &mut egui::Ui, enabled: bool) -> bool {
        let (w, h) = self.photo.full.dimensions();
        let width = ui.available_width().min(256.0);
        let scale = width / w as f32;
        let (rect, response) = ui.allocate_exact_size(Vec2::new(width, h as f32 * scale), egui::Sense::click_and_drag());
        self.overview_placed = Some((rect.min, scale));
        let painter = ui.painter_at(rect);
        painter.image(self.overview.id(), rect, egui::Rect::from_min_max(egui::Pos2::ZERO, egui::pos2(1.0, 1.0)), egui::Color32::WHITE);
        let square = |c: Crop| egui::Rect::from_min_size(rect.min + Vec2::new(c.x as f32, c.y as f32) * scale, Vec2::splat(c.side as f32 * scale));
        let corner = |c: Crop| square(c).max;
        const GRAB: f32 = 8.0;
        if enabled {
            if response.drag_started() || response.clicked() {
                // Where the press began: a drag only starts once the pointer has moved on.
                if let Some(at) = ui.input(|i| i.pointer.press_origin()).or(response.interact_pointer_pos()) {
                    let start = self.crop_draft;
                    let handle = if at.distance(corner(start)) <= GRAB { CropHandle::Corner } else { CropHandle::Move };
                    // Outside the square, the square first jumps to centre on the pointer.
                    let start = if handle == CropHandle::Move && !square(start).contains(at) {
                        let centre = square(start).center();
                        start.moved((at.x - centre.x) / scale, (at.y - centre.y) / scale, w, h)
                    } else {
                        start
                    };
                    self.crop_draft = start;
                    self.crop_drag = Some((handle, start));
                }
            }
            if let (Some((handle, start)), Some(origin), Some(now)) = (self.crop_drag, ui.input(|i| i.pointer.press_origin()), response.interact_pointer_pos()) {
                let offset = (now - origin) / scale;
                self.crop_draft = match handle {
                    CropHandle::Move => start.moved(offset.x, offset.y, w, h),
                    CropHandle::Corner => start.resized(offset.x, offset.y, w, h),
                };
            }
        }
        let ended = (response.drag_stopped() || response.clicked()) && self.crop_drag.take().is_some();
        let shown = square(self.crop_draft);
        let dim = egui::Color32::from_black_alpha(140);
        for outside in [
            egui::Rect::from_min_max(rect.min, egui::pos2(rect.max.x, shown.min.y)),
            egui::Rect::from_min_max(egui::pos2(rect.min.x, shown.max.y), rect.max),
            egui::Rect::from_min_max(egui::pos2(rect.min.x, shown.min.y), egui::pos2(shown.min.x, shown.max.y)),
            egui::Rect::from_min_max(egui::pos2(shown.max.x, shown.min.y), egui::pos2(rect.max.x, shown.max.y)),
        ] {
            painter.rect_filled(outside, 0.0, dim);
        }
        painter.rect_stroke(shown, 0.0, egui::Stroke::new(1.5, egui::Color32::WHITE), egui::StrokeKind::Middle);
        painter.circle(shown.max, GRAB * 0.6, egui::Color32::WHITE, egui::Stroke::new(1.0, egui::Color32::BLACK));
        let hovered_corner = response.hover_pos().is_some_and(|p| p.distance(shown.max) <= GRAB);
        if enabled && response.hovered() {
            ui.ctx().set_cursor_icon(if hovered_corner || self.crop_drag.is_some_and(|(h, _)| h == CropHandle::Corner) {
                egui::CursorIcon::ResizeNwSe
            } else {
                egui::CursorIcon::Move
            });
        }
        response.on_hover_text("Drag the square to move the crop, its corner to resize it");
        ended && self.crop_draft != self.photo.crop
    }
}
