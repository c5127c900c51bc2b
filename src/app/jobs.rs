//! Running jobs on the worker: generation (start, cancel, live mode), photo
//! editing, and the events that come back.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use egui::TextureOptions;

use super::{ActiveEdit, ActiveRun, MessageKind, ModelStatus, Studio, LIVE_DEBOUNCE};
use super::gallery::RunParams;
use super::generation::Settings;
use super::messages::Topic;
use super::generation::Progress;
use super::edit_clock::EditProgress;
use super::photo::{PhotoAction, PhotoEdit};
use super::photo_jobs::{PhotoDone, Sizes};
use super::prompt::CaptionChoice;
use super::timeline::{rgb_image, StepRecord};
use super::worker::{Job, Outcome, WorkerEvent};
use crate::data::image_params::EditParams;
use crate::data::mask::Mask;
use crate::pipeline::edit::EditMethod;
use crate::pipeline::generate::{Event, RgbFrame};

impl Studio {
    // ----- photo editing -----

    fn model_resolution(&self) -> Option<usize> {
        match &self.model {
            ModelStatus::Ready(info) => Some(info.resolution),
            _ => None,
        }
    }

    /// The sizes a photo is cut to, once a model is loaded.
    fn photo_sizes(&self) -> Option<Sizes> {
        Some(Sizes { canvas: self.canvas.mask().width(), model: self.model_resolution()? })
    }

    /// Opens a photo to edit: its centred square goes under the canvas and to
    /// the judges, whose reading becomes the mask and the prompt to change.
    pub fn open_photo(&mut self, path: &Path) {
        let Some(sizes) = self.photo_sizes() else {
            self.inform(MessageKind::Error, "load a model before opening a photo to edit");
            return;
        };
        self.photo_jobs.open(path.to_path_buf(), None, sizes);
    }

    /// Reopens the photo the last session was editing, at its crop, once a model is loaded.
    fn reopen_saved_photo(&mut self) {
        let (Some(sizes), Some(saved)) = (self.photo_sizes(), self.pending_photo.as_ref()) else { return };
        self.photo_jobs.open(saved.path.clone(), Some(saved.crop), sizes);
    }

    /// A finished photo job.
    pub(super) fn photo_done(&mut self, ctx: &egui::Context, done: PhotoDone) {
        match done {
            PhotoDone::Opened(Ok(opened)) => {
                let path = opened.path.display().to_string();
                let resumed = self.pending_photo.take_if(|saved| saved.path == opened.path);
                self.photo = Some(PhotoEdit::new(ctx, opened));
                self.canvas.restore = None;
                match resumed {
                    Some(saved) => self.resume_photo(ctx, saved),
                    None => {
                        self.read_photo();
                        self.inform(MessageKind::Info, format!("Opened {path}; reading its mask and description…"));
                    }
                }
            }
            PhotoDone::Opened(Err(e)) if self.pending_photo.is_some() => {
                self.pending_photo = None;
                self.inform(MessageKind::Error, format!("could not reopen the photo you were editing: {e}"));
            }
            PhotoDone::Opened(Err(e)) => self.inform(MessageKind::Error, format!("{e}. Nothing was changed.")),
            PhotoDone::Recropped(recropped) => {
                if let Some(photo) = self.photo.as_mut().filter(|p| p.path == recropped.path) {
                    photo.set_crop(recropped);
                    self.read_photo();
                }
            }
            PhotoDone::Saved(Ok(path)) => self.inform(MessageKind::Info, format!("Saved the edited photo to {}", path.display())),
            PhotoDone::Saved(Err(e)) => self.inform(MessageKind::Error, e),
            PhotoDone::Output(Ok(_)) => {}
            PhotoDone::Output(Err(e)) => self.inform(MessageKind::Error, format!("{e}; the edit is still in the gallery")),
            PhotoDone::Crashed(why) => self.inform(MessageKind::Error, format!("the photo job failed ({why}); nothing was changed")),
        }
    }

    /// The reopened photo takes back the last session's reading (the canvas
    /// and prompt are already the person's target, so the judges are not asked
    /// again) and its edits from the gallery.
    fn resume_photo(&mut self, ctx: &egui::Context, saved: super::autosave::SavedPhoto) {
        let Some(photo) = self.photo.as_mut() else { return };
        photo.resume(saved);
        let side = self.canvas.mask().width().max(self.canvas.mask().height());
        self.canvas.restore = photo.source_mask.as_ref().map(|m| m.resize_nearest(side, side));
        self.canvas.opacity = self.canvas.opacity.min(0.5);
        let photo_path = photo.path.display().to_string();
        for entry in self.history.iter().filter(|e| e.params.edit.as_ref().is_some_and(|edit| edit.photo == photo_path)) {
            let Some((edit, image)) = entry.params.edit.as_ref().zip(entry.images.first()) else { continue };
            let method = <EditMethod as clap::ValueEnum>::from_str(&edit.method, true).unwrap_or(EditMethod::Inversion);
            photo.add_result(ctx, method, edit.alpha, image.clone(), entry.image_params(0));
        }
        let edits = photo.results.len();
        self.inform(MessageKind::Info, format!("Reopened {photo_path} as you left it, with {edits} edit(s)."));
    }

    /// Sends the photo's crop to the judges.
    fn read_photo(&mut self) {
        let Some(photo) = self.photo.as_mut() else { return };
        photo.reading = self.worker.send(Job::ReadPhoto { photo: photo.model_input.clone() });
    }

    /// The judges' reading: the photo's mask onto the canvas (also what the
    /// eraser restores) and its description into the prompt, both to be changed.
    fn photo_read(&mut self, read: Result<(Mask, String), String>) {
        let Some(photo) = self.photo.as_mut() else { return };
        photo.reading = false;
        match read {
            Ok((mask, text)) => {
                let side = self.canvas.mask().width().max(self.canvas.mask().height());
                let shown = mask.resize_nearest(side, side);
                photo.source_mask = Some(mask);
                photo.source_text = text.clone();
                self.canvas.replace_mask(shown.clone());
                self.canvas.restore = Some(shown);
                // Half see-through, so the photo shows under its reading.
                self.canvas.opacity = self.canvas.opacity.min(0.5);
                self.prompt = text;
                self.inform(MessageKind::Info, "Read the photo's mask and description: change them to what you want, then press Edit photo.");
            }
            Err(e) => self.inform(MessageKind::Error, format!("could not read the photo: {e}")),
        }
    }

    /// Starts an edit of the open photo towards the canvas's mask and the prompt.
    pub fn edit_photo(&mut self) {
        let (Some(size), Some(photo)) = (self.model_resolution(), self.photo.as_ref()) else { return };
        if self.is_busy() {
            return;
        }
        let request = photo.request(size, self.canvas.mask(), self.prompt.trim(), self.settings.seed, self.settings.steps);
        let cancel = Arc::new(AtomicBool::new(false));
        let (method, plan) = (photo.method, request.plan());
        // Edits sample deterministically, one image per alpha.
        let settings = Settings { eta: 0.0, mode: request.mode, batch: 1, ..self.settings.clone() };
        // What every result's PNG records besides its alpha.
        let made = request.image_params(photo.source_text.trim(), 0.0, self.model_name(), &photo.path.display().to_string(), photo.photo.crop).edit;
        let params = RunParams { prompt: self.prompt.clone(), attributes: CaptionChoice::read(&self.prompt), settings, model: self.model_name(), edit: made };
        let photo_path = photo.path.clone();
        if self.worker.send(Job::Edit { request: Box::new(request), cancel: cancel.clone() }) {
            let mask = self.canvas.mask().clone();
            self.edit = Some(ActiveEdit { cancel, progress: EditProgress::new(plan, Instant::now()), method, params, mask, photo: photo_path });
        } else {
            self.inform(MessageKind::Error, "the worker has stopped; restart the studio (your work is autosaved)");
        }
    }

    pub(super) fn photo_action(&mut self, ctx: &egui::Context, action: PhotoAction) {
        match action {
            PhotoAction::Recrop => {
                let (Some(sizes), Some(photo)) = (self.photo_sizes(), self.photo.as_ref()) else { return };
                match photo.drafted_crop() {
                    Ok(crop) => self.photo_jobs.recrop(photo.path.clone(), photo.photo.clone(), crop, sizes),
                    Err(e) => self.inform(MessageKind::Error, e),
                }
            }
            PhotoAction::Edit => self.edit_photo(),
            PhotoAction::Cancel => self.cancel(),
            PhotoAction::Save(index) => self.save_edited_photo_dialog(index),
            PhotoAction::Close => {
                self.cancel();
                self.photo = None;
                self.canvas.restore = None;
            }
        }
        ctx.request_repaint();
    }

    // ----- generation -----

    /// Starts a run with the current mask, prompt and settings.
    pub fn generate(&mut self) {
        if self.is_busy() {
            return;
        }
        if !self.settings.seed_locked {
            self.settings.new_seed();
        }
        let params = RunParams { prompt: self.prompt.clone(), attributes: CaptionChoice::read(&self.prompt), settings: self.settings.clone(), model: self.model_name(), edit: None };
        let request = params.request(self.canvas.mask());
        let cancel = Arc::new(AtomicBool::new(false));
        if !self.worker.send(Job::Generate { request, cancel: cancel.clone() }) {
            self.inform(MessageKind::Error, "the generation worker has stopped; restart the studio (your work is autosaved)");
            return;
        }
        self.timeline.clear();
        self.timeline.image_size = self.model_resolution().map(|side| [side, side]);
        if let Some(stats) = &mut self.frame_stats {
            stats.reset(); // each run's summary covers that run alone
        }
        self.previews_final = false;
        self.run_inputs = self.inputs_fingerprint();
        let progress = Progress::new(params.settings.steps);
        self.run = Some(ActiveRun { cancel, progress, params, mask: self.canvas.mask().clone(), first_preview_secs: None, first_preview_engine_secs: None });
    }

    /// The loaded model's name, which results record.
    pub(super) fn model_name(&self) -> Option<String> {
        match &self.model {
            ModelStatus::Ready(info) => Some(info.name.clone()),
            _ => None,
        }
    }

    /// Asks the running generation or edit to stop; it ends within one step.
    pub fn cancel(&mut self) {
        if let Some(run) = &self.run {
            run.cancel.store(true, Ordering::Relaxed);
        }
        if let Some(edit) = &self.edit {
            edit.cancel.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn handle_worker_events(&mut self, ctx: &egui::Context) {
        for event in self.worker.poll() {
            match event {
                WorkerEvent::ModelLoading { label, progress } => self.model = ModelStatus::Loading(label, progress),
                WorkerEvent::ModelLoaded(info) => {
                    if let Some(fallback) = &info.device_fallback {
                        self.inform(MessageKind::Info, fallback.clone());
                    }
                    self.model = ModelStatus::Ready(info);
                    if let Some(path) = self.startup_photo.take() {
                        self.pending_photo = None; // the photo asked for wins over the last session's
                        self.open_photo(&path);
                    } else {
                        self.reopen_saved_photo();
                    }
                }
                WorkerEvent::ModelFailed { label, error, kept: Some(info) } => {
                    self.inform(MessageKind::Error, format!("could not load {label}: {error}. {} is still loaded.", info.name));
                    self.model = ModelStatus::Ready(info);
                }
                WorkerEvent::ModelFailed { label, error, kept: None } => {
                    self.inform(MessageKind::Error, format!("could not load {label}: {error}"));
                    self.model = ModelStatus::Failed(error);
                }
                WorkerEvent::Generation(Event::Warning(text)) => self.inform(MessageKind::Info, text),
                WorkerEvent::Generation(Event::Step { index, total, t, elapsed_secs, frames }) => {
                    let images: Vec<_> = frames.iter().map(|f| rgb_image(&f.pred_x0)).collect();
                    self.show_previews(ctx, images);
                    if let Some(run) = &mut self.run {
                        run.progress.done = index + 1;
                        run.progress.total = total;
                        run.progress.elapsed_secs = elapsed_secs;
                        run.first_preview_secs.get_or_insert(run.progress.started.elapsed().as_secs_f64());
                        run.first_preview_engine_secs.get_or_insert(elapsed_secs);
                    }
                    self.timeline.push(StepRecord { t, frames });
                }
                WorkerEvent::Generation(Event::Done { images, .. }) => {
                    self.show_previews(ctx, images.iter().map(rgb_image).collect());
                    self.previews_final = true;
                    self.underlay = self.previews.first().cloned();
                    if let Some(run) = &self.run {
                        let (params, mask) = (run.params.clone(), run.mask.clone());
                        self.timeline.image_size = images.first().map(|i| [i.width, i.height]);
                        for (k, image) in images.iter().enumerate() {
                            self.write_output(image, &params.image_params(&mask, k));
                        }
                        self.add_to_gallery(params, mask, images, self.timeline.steps.clone());
                    }
                }
                WorkerEvent::PhotoRead(read) => self.photo_read(read),
                WorkerEvent::Edit(event) => {
                    if let Some(edit) = &mut self.edit {
                        edit.progress.update(event, &mut self.edit_clock, Instant::now());
                    }
                }
                WorkerEvent::EditEnded { images, outcome } => {
                    let edit = self.edit.take();
                    match outcome {
                        Outcome::Finished => {
                            self.messages.clear(Topic::Edit);
                            if let Some(edit) = edit {
                                self.edit_finished(ctx, edit, images);
                            }
                        }
                        Outcome::Cancelled => self.inform_about(Topic::Edit, MessageKind::Info, "Edit cancelled."),
                        Outcome::Failed(e) => self.inform_about(Topic::Edit, MessageKind::Error, format!("the edit failed: {e}")),
                    }
                }
                WorkerEvent::GenerationEnded(outcome) => {
                    if let Some(run) = self.run.take() {
                        self.last_first_preview_secs = run.first_preview_secs;
                        if let Some(stats) = &self.frame_stats {
                            let ms = |s: Option<f64>| s.map_or("none".into(), |s| format!("{:.0} ms", s * 1000.0));
                            let (first, engine) = (ms(run.first_preview_secs), ms(run.first_preview_engine_secs));
                            eprintln!(
                                "run ended ({outcome:?}): first preview {first} after Generate, {engine} of it in the engine (the rest: the job's hand-over and the UI's frames)\n{}",
                                stats.summary()
                            );
                        }
                        if outcome == Outcome::Finished && run.progress.done > 0 {
                            // The engine's own time per step and image: the edit's estimate starts from it.
                            let items = (run.progress.done * run.params.settings.batch.max(1)) as f64;
                            self.edit_clock.generation_step_secs = Some(run.progress.elapsed_secs / items);
                        }
                        match outcome {
                            Outcome::Finished => self.messages.clear(Topic::Run),
                            Outcome::Cancelled => self.inform_about(
                                Topic::Run,
                                MessageKind::Info,
                                format!("Cancelled after step {} of {}; the last preview stays.", run.progress.done, run.progress.total),
                            ),
                            Outcome::Failed(e) => self.inform_about(Topic::Run, MessageKind::Error, format!("generation failed: {e}")),
                        }
                    }
                }
            }
        }
    }

    /// A finished edit's images, one per alpha: into the photo's filmstrip
    /// (while it is open), the gallery and the outputs folder (pasted back into the full photo).
    fn edit_finished(&mut self, ctx: &egui::Context, edit: ActiveEdit, images: Vec<(f64, RgbFrame)>) {
        for (alpha, image) in images {
            let made = edit.params.edit.clone().map(|made| EditParams { alpha, ..made });
            let params = RunParams { edit: made, ..edit.params.clone() };
            let image_params = params.image_params(&edit.mask, 0);
            if let Some(photo) = self.photo.as_mut().filter(|p| p.path == edit.photo) {
                photo.add_result(ctx, edit.method, alpha, image.clone(), image_params.clone());
                if let Some(outputs) = self.outputs.clone().filter(|o| o.enabled) {
                    self.photo_jobs.save_output(photo.photo.clone(), image.clone(), outputs, image_params);
                }
            }
            self.add_to_gallery(params, edit.mask.clone(), vec![image], Vec::new());
        }
    }

    pub(super) fn show_previews(&mut self, ctx: &egui::Context, images: Vec<egui::ColorImage>) {
        if self.previews.len() != images.len() {
            self.previews = images.into_iter().enumerate().map(|(k, image)| ctx.load_texture(format!("preview-{k}"), image, TextureOptions::LINEAR)).collect();
        } else {
            for (texture, image) in self.previews.iter_mut().zip(images) {
                texture.set(image, TextureOptions::LINEAR);
            }
        }
    }

    pub(super) fn live_if_due(&mut self, ctx: &egui::Context) {
        if !self.live || !matches!(self.model, ModelStatus::Ready(_)) {
            return;
        }
        let inputs = self.inputs_fingerprint();
        if inputs == self.run_inputs {
            return;
        }
        if self.seen_inputs.0 != inputs {
            self.seen_inputs = (inputs, Instant::now());
        }
        let still = self.seen_inputs.1.elapsed();
        if still < LIVE_DEBOUNCE || self.canvas.stroke_active() {
            ctx.request_repaint_after(LIVE_DEBOUNCE.saturating_sub(still));
            return;
        }
        if self.run.is_some() {
            self.cancel(); // the next run starts once this one has stopped
        } else {
            self.generate();
        }
    }
}
