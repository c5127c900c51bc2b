//! The studio's state: how it starts, what tests and panels read of it, and
//! autosave (what changed since the last save, and writing it).

use std::sync::atomic::Ordering;
use std::time::Instant;

use egui::TextureOptions;

use super::{MessageKind, ModelStatus, Studio, StudioOptions, AUTOSAVE_DELAY, DEFAULT_MASK_SIZE};
use super::autosave::{Autosave, WorkRef};
use super::outputs::Outputs;
use super::canvas::Canvas;
use super::frame_stats::FrameStats;
use super::gallery::HistoryEntry;
use super::messages::{Message, Messages, Topic};
use super::generation::Settings;
use super::photo::PhotoEdit;
use super::photo_jobs::PhotoJobs;
use super::prompt::CaptionChoice;
use super::dialogs::{FileDialogs, Folders};
use super::timeline::{rgb_image, Timeline};
use super::worker::{Job, Worker};
use crate::data::mask::Mask;

impl Studio {
    pub fn new(cc: &eframe::CreationContext<'_>, options: StudioOptions) -> Self {
        let ctx = cc.egui_ctx.clone();
        let worker = Worker::spawn(options.engine, move || ctx.request_repaint());
        // Ctrl+Q is the studio's, so that it can ask first (`Studio::quit`).
        cc.egui_ctx.options_mut(|o| o.quit_shortcuts.clear());
        let folders = options.autosave_dir.as_ref().map_or_else(Folders::default, |dir| Folders::load(dir.join("folders.json")));
        let mut studio = Self {
            canvas: Canvas::new(Mask::filled(DEFAULT_MASK_SIZE, DEFAULT_MASK_SIZE, 0)),
            prompt: String::new(),
            settings: Settings::default(),
            worker,
            model: ModelStatus::None,
            run: None,
            previews: Vec::new(),
            previews_final: false,
            underlay: None,
            timeline: Timeline::new(),
            history: Vec::new(),
            next_history_id: 1,
            messages: Messages::default(),
            mask_path: None,
            pending_overwrite: None,
            samples_dir: options.samples_dir,
            autosave: options.autosave_dir.map(Autosave::new),
            saved_fingerprint: 0,
            changed_at: None,
            live: false,
            run_inputs: 0,
            seen_inputs: (0, Instant::now()),
            last_first_preview_secs: None,
            frame_stats: FrameStats::from_env(),
            photo: None,
            edit: None,
            edit_clock: Default::default(),
            photo_jobs: PhotoJobs::new(cc.egui_ctx.clone()),
            startup_photo: options.photo,
            pending_photo: None,
            outputs: options.outputs_dir.map(|dir| Outputs { dir, enabled: true }),
            restore_marks: Vec::new(),
            dialogs: FileDialogs::new(cc.egui_ctx.clone(), options.native_dialog, folders),
            quit_asked: false,
        };
        // A restored session wins; otherwise open on a sample, so Generate makes a face at once.
        if !studio.restore_autosave(&cc.egui_ctx) {
            studio.open_first_sample();
        }
        studio.saved_fingerprint = studio.fingerprint();
        if let Some((label, load)) = options.loader {
            studio.worker.send(Job::LoadModel { label, load });
        }
        if let Some(error) = options.model_error {
            studio.inform(MessageKind::Error, format!("No model loaded: {error}. Use \"Open model…\" to pick a config and checkpoint."));
            studio.model = ModelStatus::Failed(error);
        }
        studio
    }

    pub fn mask(&self) -> &Mask {
        self.canvas.mask()
    }

    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    pub fn canvas_mut(&mut self) -> &mut Canvas {
        &mut self.canvas
    }

    pub fn messages(&self) -> &[Message] {
        self.messages.list()
    }

    pub fn model_status(&self) -> &ModelStatus {
        &self.model
    }

    pub fn is_generating(&self) -> bool {
        self.run.is_some()
    }

    /// Whether the worker is busy with a generation or a photo edit.
    pub fn is_busy(&self) -> bool {
        self.run.is_some() || self.edit.is_some()
    }

    /// Whether a photo is being opened, cut or saved.
    pub fn photo_work_pending(&self) -> bool {
        self.photo_jobs.busy()
    }

    pub fn photo(&self) -> Option<&PhotoEdit> {
        self.photo.as_ref()
    }

    pub fn photo_mut(&mut self) -> Option<&mut PhotoEdit> {
        self.photo.as_mut()
    }

    /// The open photo as autosave keeps it.
    fn saved_photo(&self) -> Option<super::autosave::SavedPhoto> {
        self.photo.as_ref().map(PhotoEdit::saved)
    }

    /// Whether Cancel was pressed for the run in flight.
    pub fn cancel_requested(&self) -> bool {
        self.run.as_ref().is_some_and(|run| run.cancel.load(Ordering::Relaxed))
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }

    /// Whether the preview shows finished images (true) or step previews.
    pub fn previews_final(&self) -> bool {
        self.previews_final
    }

    /// Texture sizes of the previews shown, one per batch item.
    pub fn preview_sizes(&self) -> Vec<[usize; 2]> {
        self.previews.iter().map(|t| t.size()).collect()
    }

    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    pub fn set_prompt(&mut self, text: &str) {
        self.prompt = text.to_string();
    }

    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    pub(super) fn inform(&mut self, kind: MessageKind, text: impl Into<String>) {
        self.inform_about(Topic::Other, kind, text);
    }

    /// Reports on `topic`, replacing the previous report on it.
    pub(super) fn inform_about(&mut self, topic: Topic, kind: MessageKind, text: impl Into<String>) {
        self.messages.post(kind, topic, text.into(), Instant::now());
    }

    // ----- autosave -----

    /// Restores the last session; false when there was none to restore.
    fn restore_autosave(&mut self, ctx: &egui::Context) -> bool {
        let Some(store) = &self.autosave else { return false };
        match store.load() {
            Ok(Some(work)) => {
                self.canvas = Canvas::new(work.mask);
                self.prompt = work.prompt;
                self.settings = work.settings;
                self.next_history_id = work.history.iter().map(|e| e.id + 1).max().unwrap_or(1);
                self.history = work.history;
                if let Some(image) = self.history.last().and_then(|e| e.images.first()) {
                    self.underlay = Some(ctx.load_texture("underlay", rgb_image(image), TextureOptions::LINEAR));
                }
                self.set_save_outputs(work.save_outputs);
                self.pending_photo = work.photo;
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.inform(MessageKind::Error, format!("could not restore the last session: {e}"));
                false
            }
        }
    }

    /// Changes whenever anything autosave keeps changes.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inputs_fingerprint().hash(&mut h);
        self.history.iter().map(|e| e.id).collect::<Vec<_>>().hash(&mut h);
        self.outputs.as_ref().is_some_and(|o| o.enabled).hash(&mut h);
        let photo = self.saved_photo();
        serde_json::to_string(&photo).unwrap_or_default().hash(&mut h);
        photo.is_some_and(|p| p.source_mask.is_some()).hash(&mut h);
        h.finish()
    }

    /// Changes whenever what a run would be asked to do changes.
    pub(super) fn inputs_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.canvas.revision.hash(&mut h);
        self.prompt.hash(&mut h);
        serde_json::to_string(&self.settings).unwrap_or_default().hash(&mut h);
        h.finish()
    }

    /// Live mode: once the inputs differ from the newest run's and have been
    /// still for [`LIVE_DEBOUNCE`] outside a stroke, cancel any run and start a new one.
    pub(super) fn autosave_if_due(&mut self, force: bool) {
        if self.autosave.is_none() {
            return;
        }
        let fingerprint = self.fingerprint();
        if fingerprint == self.saved_fingerprint {
            self.changed_at = None;
            return;
        }
        let changed_at = *self.changed_at.get_or_insert_with(Instant::now);
        if !force && (changed_at.elapsed() < AUTOSAVE_DELAY || self.canvas.stroke_active()) {
            return;
        }
        if let Some(store) = &self.autosave {
            let attributes = CaptionChoice::read(&self.prompt);
            let work = WorkRef {
                mask: self.canvas.mask(),
                prompt: &self.prompt,
                attributes: &attributes,
                settings: &self.settings,
                history: &self.history,
                // Kept on when there is no outputs folder, so a session without one does not turn it off for the next.
                save_outputs: self.outputs.as_ref().is_none_or(|o| o.enabled),
                // A photo still waiting for the model to reopen is kept as it was.
                photo: self.saved_photo().or_else(|| self.pending_photo.clone()),
            };
            match store.save(work) {
                Ok(()) => self.saved_fingerprint = fingerprint,
                Err(e) => {
                    // Retry only after the next change, so one failure gives one message.
                    self.saved_fingerprint = fingerprint;
                    self.inform(MessageKind::Error, format!("autosave failed: {e}"));
                }
            }
        }
        self.changed_at = None;
    }
}
