//! The window's panels: toolbar, messages (floating over the canvas), paint tools, the generate panel,
//! timeline and gallery; and the keyboard shortcuts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use egui::{Key, Vec2};

use super::{MessageKind, ModelStatus, Studio, DEFAULT_MASK_SIZE, GENERATE_KEY, QUIT_KEY, REDO_KEY, UNDO_KEY};
use super::canvas::{Tool, BRUSH_RADIUS_RANGE, MODEL_MASK_SIZE};
use super::gallery::GalleryAction;
use super::timeline::Export;
use super::{gallery, generation, palette, prompt};
use crate::data::mask::{Mask, CLASSES};

impl Studio {
    /// The studio's shortcuts; returns whether this frame's plain keys go on
    /// to the canvas (classes, tools, brush size, fit), which takes them in
    /// order with the strokes.
    pub(super) fn handle_shortcuts(&mut self, ctx: &egui::Context) -> bool {
        if self.dialogs.browser_open() || self.quit_asked {
            return false; // the open dialog takes the keyboard: Esc closes it, and cancels no run
        }
        if ctx.input_mut(|i| i.consume_shortcut(&QUIT_KEY)) {
            self.quit(ctx);
        }
        let (generate, escape) = ctx.input_mut(|i| (i.consume_shortcut(&GENERATE_KEY), i.key_pressed(Key::Escape)));
        if generate {
            self.generate();
        }
        if escape {
            self.cancel();
        }
        if ctx.text_edit_focused() {
            return false; // typing in the prompt: letters are text, Ctrl+Z is the text box's undo
        }
        let (redo, undo) = ctx.input_mut(|i| (i.consume_shortcut(&REDO_KEY), i.consume_shortcut(&UNDO_KEY)));
        if redo {
            self.redo();
        } else if undo {
            self.undo();
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        for path in dropped {
            self.open_dropped(&path);
        }
        true
    }

    // ----- panels -----

    pub(super) fn toolbar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.strong("CoDiff Studio");
            ui.separator();
            if ui.button("New").on_hover_text("A new blank mask").clicked() {
                self.canvas.replace_mask(Mask::filled(DEFAULT_MASK_SIZE, DEFAULT_MASK_SIZE, 0));
                self.mask_path = None;
            }
            if ui.button("Clear").on_hover_text("Paint the whole mask background (undoable)").clicked() {
                let (w, h) = (self.canvas.mask().width(), self.canvas.mask().height());
                self.canvas.replace_mask(Mask::filled(w, h, 0));
            }
            ui.menu_button("Open sample", |ui| {
                let (masks, photos) = self.samples(); // read only while the menu is open
                if masks.is_empty() {
                    ui.weak(format!("No sample masks in {}", self.samples_dir.display()));
                }
                let name = |path: &Path| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                for path in masks {
                    if ui.button(name(&path)).clicked() {
                        self.load_mask(&path);
                        ui.close();
                    }
                }
                if !photos.is_empty() {
                    ui.separator();
                    ui.weak("photos to edit");
                    for path in photos {
                        if ui.add_enabled(!self.is_busy(), egui::Button::new(name(&path))).clicked() {
                            self.open_photo(&path);
                            ui.close();
                        }
                    }
                }
            });
            if ui.button("Load mask…").clicked() {
                self.open_mask_dialog();
            }
            if ui.button("Save mask…").clicked() {
                self.save_mask_as_dialog();
            }
            if ui.add_enabled(!self.is_busy(), egui::Button::new("Open photo…")).on_hover_text("Edit a photo: its mask and description are read, you change them").clicked() {
                self.open_photo_dialog();
            }
            ui.separator();
            if ui.add_enabled(self.canvas.can_undo(), egui::Button::new("Undo")).on_hover_text("Ctrl+Z").clicked() {
                self.undo();
            }
            if ui.add_enabled(self.canvas.can_redo(), egui::Button::new("Redo")).on_hover_text("Ctrl+Shift+Z").clicked() {
                self.redo();
            }
            ui.menu_button("Keys", |ui| {
                egui::Grid::new("key-help").show(ui, |ui| {
                    for (keys, what) in KEY_HELP {
                        ui.strong(*keys);
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            });
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let loading = matches!(self.model, ModelStatus::Loading(..));
                if ui.add_enabled(!loading && !self.is_busy(), egui::Button::new("Open model…")).on_hover_text("Pick an original config (YAML), then its checkpoint").clicked() {
                    self.open_model_dialog();
                }
                match &self.model {
                    ModelStatus::None => ui.weak("no model loaded"),
                    ModelStatus::Loading(label, progress) => {
                        // The worker only reports the end; poll the shared counter meanwhile.
                        ui.ctx().request_repaint_after(Duration::from_millis(100));
                        match progress.fraction() {
                            Some(done) => ui.add(egui::ProgressBar::new(done).desired_width(220.0).text(format!("loading {label}: {:.0}%", done * 100.0))),
                            None => {
                                ui.spinner();
                                ui.label(format!("reading {label}…"))
                            }
                        }
                    }
                    // Cut short in a narrow window rather than drawn over the buttons; the whole line shows on hover.
                    ModelStatus::Ready(info) => ui.add(
                        egui::Label::new(format!(
                            "model: {} · {} px · {:.1} M parameters · {}",
                            info.name,
                            info.resolution,
                            info.parameters as f64 / 1e6,
                            info.device
                        ))
                        .truncate(),
                    ),
                    ModelStatus::Failed(_) => ui.colored_label(ui.visuals().error_fg_color, "model failed to load"),
                };
            });
        });
    }

    /// The messages float over the top of the canvas area, so that none
    /// arriving or expiring moves a panel (the class list, the canvas) under the pointer.
    pub(super) fn messages_overlay(&mut self, ctx: &egui::Context, canvas_area: egui::Rect) {
        if self.messages.list().is_empty() {
            return;
        }
        let width = (canvas_area.width() - 16.0).max(120.0);
        egui::Area::new(egui::Id::unique("messages"))
            .order(egui::Order::Foreground)
            .fixed_pos(canvas_area.left_top() + Vec2::new(8.0, 8.0))
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.set_max_width(width);
                    self.messages_ui(ui);
                });
            });
    }

    fn messages_ui(&mut self, ui: &mut egui::Ui) {
        let mut dismissed = None;
        for (index, message) in self.messages.list().iter().enumerate() {
            ui.horizontal(|ui| {
                let color = match message.kind {
                    MessageKind::Info => ui.visuals().text_color(),
                    MessageKind::Error => ui.visuals().error_fg_color,
                };
                if ui.small_button("×").on_hover_text("dismiss").clicked() {
                    dismissed = Some(index);
                }
                let text = match message.count {
                    1 => message.text.clone(),
                    n => format!("{} (×{n})", message.text),
                };
                ui.add(egui::Label::new(egui::RichText::new(text).color(color)).wrap());
            });
        }
        if let Some(index) = dismissed {
            self.messages.dismiss(index);
        }
    }

    pub(super) fn tools_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Paint");
        ui.horizontal(|ui| {
            for tool in Tool::ALL {
                ui.selectable_value(&mut self.canvas.tool, tool, tool.label()).on_hover_text(tool.key().name());
            }
        });
        ui.add(egui::Slider::new(&mut self.canvas.brush_radius, BRUSH_RADIUS_RANGE).logarithmic(true).text("size  [ ]"));
        ui.checkbox(&mut self.canvas.mirror, "mirror (swaps left/right classes)");
        if self.underlay.is_some() || self.photo.is_some() {
            ui.add(egui::Slider::new(&mut self.canvas.opacity, 0.0..=1.0).text("mask opacity"));
        }
        let mut model_view = self.canvas.model_view;
        ui.checkbox(&mut model_view, format!("what the model sees ({MODEL_MASK_SIZE}×{MODEL_MASK_SIZE})"));
        self.canvas.set_model_view(model_view);
        // One line, always there, so that the class list below never moves when a class starts to vanish.
        let lost = self.canvas.classes_lost_at_model_size();
        let warning = match lost.len() {
            0 => egui::RichText::new(format!("every class reaches the model at {MODEL_MASK_SIZE}×{MODEL_MASK_SIZE}")).weak(),
            _ => {
                let names: Vec<&str> = lost.iter().map(|&c| CLASSES[c as usize].name).collect();
                egui::RichText::new(format!("Vanishes at {MODEL_MASK_SIZE}×{MODEL_MASK_SIZE}: {}", names.join(", "))).color(ui.visuals().warn_fg_color)
            }
        };
        let warning = ui.add(egui::Label::new(warning).truncate());
        if !lost.is_empty() {
            warning.on_hover_text("Too small to survive the mask encoder's resize: the model never sees these classes (marked \"lost\" below)");
        }
        ui.separator();
        let counts = self.canvas.mask().class_histogram();
        egui::ScrollArea::vertical().show(ui, |ui| palette::palette_ui(ui, &mut self.canvas.class, &counts, &lost));
    }

    pub(super) fn generate_panel_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Describe");
        prompt::prompt_ui(ui, &mut self.prompt);
        ui.separator();
        let busy = self.is_busy() || self.photo_jobs.busy();
        let progress = self.edit.as_ref().map(|e| &e.progress);
        let action = self.photo.as_mut().and_then(|photo| photo.ui(ui, busy, progress, &self.edit_clock, self.settings.steps));
        if let Some(action) = action {
            self.photo_action(ui.ctx(), action);
        }
        if self.photo.is_some() {
            ui.separator();
        }
        ui.heading("Generation");
        generation::settings_ui(ui, &mut self.settings, self.run.is_some());
        ui.horizontal(|ui| {
            let ready = matches!(self.model, ModelStatus::Ready(_));
            let generate = egui::Button::new(egui::RichText::new("Generate").strong()).min_size(Vec2::new(120.0, 28.0));
            if ui.add_enabled(!self.is_busy() && ready, generate).on_hover_text("Ctrl+Enter").on_disabled_hover_text(if self.run.is_some() { "a run is in progress; Esc cancels it" } else { "load a model first" }).clicked() {
                self.generate();
            }
            ui.checkbox(&mut self.live, "live").on_hover_text("Regenerate when a stroke ends or typing pauses");
            if self.run.is_some() && ui.add(egui::Button::new("Cancel").min_size(Vec2::new(90.0, 28.0))).on_hover_text("Esc").clicked() {
                self.cancel();
            }
        });
        if let Some(run) = &self.run {
            generation::progress_ui(ui, &run.progress);
        }
        if !self.previews.is_empty() {
            ui.label(if self.previews_final { "result" } else { "preview (approximate until the last step)" });
            let columns = if self.previews.len() == 1 { 1 } else { 2 };
            let side = (ui.available_width() / columns as f32 - 6.0).min(ui.available_height() / self.previews.len().div_ceil(columns) as f32 - 6.0).max(48.0);
            egui::Grid::new("previews").spacing([4.0, 4.0]).show(ui, |ui| {
                for (k, texture) in self.previews.iter().enumerate() {
                    ui.image((texture.id(), Vec2::splat(side)));
                    if k % columns == columns - 1 {
                        ui.end_row();
                    }
                }
            });
        }
    }

    pub(super) fn bottom_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Influence timeline");
        match self.timeline.ui(ui) {
            Some(Export::Frames) => self.export_frames_dialog(),
            Some(Export::Gif) => self.export_gif_dialog(),
            None => {}
        }
        ui.separator();
        ui.horizontal(|ui| {
            ui.heading("Gallery");
            self.outputs_ui(ui);
        });
        match gallery::gallery_ui(ui, &mut self.history) {
            Some(GalleryAction::Restore(index)) => self.restore_entry(ui.ctx(), index),
            Some(GalleryAction::Save(index, item)) => self.save_result_dialog(index, item),
            None => {}
        }
    }

    /// The outputs folder's switch, and where it is.
    fn outputs_ui(&mut self, ui: &mut egui::Ui) {
        let Some(outputs) = self.outputs.as_mut() else { return };
        ui.checkbox(&mut outputs.enabled, "also save every result to the outputs folder")
            .on_hover_text("Generations and photo edits, as PNGs carrying their settings, in a folder per day; files are numbered on, never replaced");
        ui.add(egui::Label::new(egui::RichText::new(outputs.dir.display().to_string()).weak()).truncate()).on_hover_text(outputs.dir.display().to_string());
    }

    /// Ctrl+Q: quits at once, or asks first while a run or edit would be lost.
    pub(super) fn quit(&mut self, ctx: &egui::Context) {
        if self.is_busy() {
            self.quit_asked = true;
        } else {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    pub(super) fn quit_ui(&mut self, ctx: &egui::Context) {
        if !self.quit_asked {
            return;
        }
        let mut quit = None;
        let modal = egui::Modal::new(egui::Id::unique("confirm-quit")).show(ctx, |ui| {
            ui.label(if self.run.is_some() { "A generation is in progress. Quit and lose it?" } else { "A photo edit is in progress. Quit and lose it?" });
            ui.horizontal(|ui| {
                if ui.button("Quit").clicked() {
                    quit = Some(true);
                }
                if ui.button("Keep working").clicked() {
                    quit = Some(false);
                }
            });
        });
        if modal.should_close() {
            quit = Some(false);
        }
        match quit {
            Some(true) => {
                self.quit_asked = false;
                self.cancel();
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            Some(false) => self.quit_asked = false,
            None => {}
        }
    }

    pub(super) fn overwrite_ui(&mut self, ctx: &egui::Context) {
        let Some(path) = self.pending_overwrite.clone() else { return };
        let mut choice = None;
        egui::Modal::new(egui::Id::unique("confirm-overwrite")).show(ctx, |ui| {
            ui.label(format!("{} already exists. Replace it?", path.display()));
            ui.horizontal(|ui| {
                if ui.button("Replace").clicked() {
                    choice = Some(true);
                }
                if ui.button("Keep the file").clicked() {
                    choice = Some(false);
                }
            });
        });
        match choice {
            Some(true) => {
                self.pending_overwrite = None;
                self.write_mask(&path);
            }
            Some(false) => self.pending_overwrite = None,
            None => {}
        }
    }
}

/// The studio's keys, as the "Keys" menu lists them.
const KEY_HELP: &[(&str, &str)] = &[
    ("Ctrl+Enter", "generate"),
    ("Esc", "cancel the run or edit"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo a stroke or gallery restore"),
    ("B E F I", "brush, eraser, fill, eyedropper"),
    ("[ ]", "brush size"),
    ("Z", "fit zoom: show the whole mask"),
    ("0-9, letters", "classes (see the class list)"),
    ("Ctrl+Q", "quit (asks while a run or edit is in progress)"),
];
