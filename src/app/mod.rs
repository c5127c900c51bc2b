//! The egui studio: paint a face mask, describe the face, watch the two models
//! collaborate step by step.
//!
//! [`Studio`] holds the app state; the pieces draw themselves (`canvas`,
//! `palette`, `prompt`, `generation`, `timeline`, `gallery`). Inference runs on
//! the [`worker`] thread; the UI only sends jobs and polls events. The studio's
//! own methods live in rooms: `state` (start, accessors, autosave), `jobs`
//! (generation, photo editing, worker events), `files` (dialogs, drops,
//! saving) and `panels` (the window's panels and shortcuts).

pub mod autosave;
pub mod canvas;
pub mod edit_clock;
pub mod dialogs;
pub mod engine;
pub mod frame_stats;
pub mod gallery;
pub mod generation;
pub mod messages;
pub mod outputs;
pub mod palette;
pub mod photo;
mod photo_jobs;
pub mod prompt;
pub mod timeline;
pub mod worker;

mod files;
mod jobs;
mod panels;
mod results;
mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{Key, KeyboardShortcut, Modifiers, TextureHandle};

use self::autosave::{Autosave, SavedPhoto};
use self::outputs::Outputs;
use self::results::RestoreMark;
use self::canvas::Canvas;
use self::dialogs::{FileDialogs, NativeDialog};
use self::files::FilePurpose;
use self::frame_stats::FrameStats;
use self::gallery::{HistoryEntry, RunParams};
use self::generation::{Progress, Settings};
use self::messages::Messages;
pub use self::messages::{Message, MessageKind};
use self::edit_clock::{EditClock, EditProgress};
use self::photo::PhotoEdit;
use self::photo_jobs::PhotoJobs;
use self::timeline::Timeline;
use self::worker::{Engine, EngineLoader, ModelInfo, Worker};
use crate::data::mask::Mask;
use crate::model::checkpoint::LoadProgress;
use crate::pipeline::edit::EditMethod;

/// The smallest window the studio's panels fit in.
pub const MIN_WINDOW_SIZE: [f32; 2] = [1024.0, 640.0];
/// New masks have the original data's size.
pub const DEFAULT_MASK_SIZE: usize = 512;
/// Autosave waits this long after the last change, so a stroke is saved once, not per frame.
const AUTOSAVE_DELAY: Duration = Duration::from_secs(2);
/// Live mode regenerates once the inputs have been still this long (and no stroke is under way).
const LIVE_DEBOUNCE: Duration = Duration::from_millis(600);

const GENERATE_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);
const UNDO_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Z);
/// egui's own Ctrl+Q quits at once; the studio's asks first while work is in progress.
const QUIT_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Q);
const REDO_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::Z);

/// How the studio starts.
pub struct StudioOptions {
    /// An engine that is ready now (tests, or a model loaded before the window opened).
    pub engine: Option<Arc<dyn Engine>>,
    /// Loads the model on the worker thread after the window opens.
    pub loader: Option<(String, EngineLoader)>,
    /// Where the open work autosaves; `None` turns autosave off.
    pub autosave_dir: Option<PathBuf>,
    /// Sample masks offered by "Open sample".
    pub samples_dir: PathBuf,
    /// Why no model is being loaded, shown on start.
    pub model_error: Option<String>,
    /// A photo to open for editing once the model is ready.
    pub photo: Option<PathBuf>,
    /// The outputs folder every finished result is also written to; `None`
    /// (the default, so tests and embedders write nothing) turns it off for good.
    pub outputs_dir: Option<PathBuf>,
    /// The system's file dialog; `None` uses the studio's own file browser.
    pub native_dialog: Option<NativeDialog>,
}

impl Default for StudioOptions {
    fn default() -> Self {
        Self {
            engine: None,
            loader: None,
            autosave_dir: autosave::default_dir(),
            samples_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples"),
            model_error: None,
            photo: None,
            outputs_dir: None,
            native_dialog: Some(dialogs::system_dialog()),
        }
    }
}

impl StudioOptions {
    /// The options `codiff` opens the studio with: the default models (or
    /// `CODIFF_CONFIG` + `CODIFF_CKPT`) load in the background.
    pub fn with_startup_model() -> Self {
        let base = Self { outputs_dir: outputs::default_dir(), ..Self::default() };
        match engine::startup_loader() {
            Ok(loader) => Self { loader: Some(loader), ..base },
            Err(e) => Self { model_error: Some(e), ..base },
        }
    }
}

/// Opens the studio window and runs it until it is closed. Call before any
/// other thread starts: it caps the inference threads through the environment.
pub fn run(options: StudioOptions) -> Result<(), String> {
    cap_inference_threads();
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("CoDiff Studio").with_inner_size([1600.0, 1000.0]).with_min_inner_size(MIN_WINDOW_SIZE).with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native("CoDiff Studio", native, Box::new(|cc| Ok(Box::new(Studio::new(cc, options)))))
        .map_err(|e| format!("the studio window could not open: {e}"))
}

/// The timeline's first height: 390 px, less in a short window so that the
/// canvas and the generate panel keep about 610 px (the timeline keeps at least 180).
fn timeline_height(window_height: f32) -> f32 {
    (window_height - 610.0).clamp(180.0, 390.0)
}

/// Sizes the engine's thread pool (`RAYON_NUM_THREADS`, unless the person set
/// it) before any pool starts, by [`engine_threads`].
fn cap_inference_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::model::pin_thread_count(Some(engine_threads(cores)));
    crate::model::keep_freed_memory();
}

/// The engine's share of `cores`: all but one, which the window keeps, so that
/// frames keep coming while a run computes (on 2 cores under Xvfb the window
/// draws in software on the CPU); on a single core, that core.
fn engine_threads(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// What the worker's model is doing.
#[derive(Debug, Clone)]
pub enum ModelStatus {
    None,
    Loading(String, Arc<LoadProgress>),
    Ready(ModelInfo),
    Failed(String),
}

/// A generation in flight.
struct ActiveRun {
    cancel: Arc<AtomicBool>,
    progress: Progress,
    params: RunParams,
    mask: Mask,
    /// When the first preview arrived, measured from pressing Generate.
    first_preview_secs: Option<f64>,
    /// How long of that the engine took, from taking the job to the preview.
    first_preview_engine_secs: Option<f64>,
}

/// A photo edit in flight.
struct ActiveEdit {
    cancel: Arc<AtomicBool>,
    progress: EditProgress,
    method: EditMethod,
    /// What its results' gallery entries record (each with its own alpha).
    params: RunParams,
    mask: Mask,
    photo: PathBuf,
}

pub struct Studio {
    canvas: Canvas,
    prompt: String,
    settings: Settings,
    worker: Worker,
    model: ModelStatus,
    run: Option<ActiveRun>,
    /// One texture per batch item: the newest preview, then the final image.
    previews: Vec<TextureHandle>,
    previews_final: bool,
    /// The image under the mask on the canvas (the newest result).
    underlay: Option<TextureHandle>,
    timeline: Timeline,
    history: Vec<HistoryEntry>,
    next_history_id: u64,
    messages: Messages,
    /// The mask file last opened or saved; "Save" writes there without asking.
    mask_path: Option<PathBuf>,
    /// A save waiting for the person to confirm replacing an existing file.
    pending_overwrite: Option<PathBuf>,
    samples_dir: PathBuf,
    autosave: Option<Autosave>,
    saved_fingerprint: u64,
    changed_at: Option<Instant>,
    /// Live mode: regenerate when a stroke ends or typing pauses.
    pub live: bool,
    /// Inputs of the newest run, and the newest inputs seen with when they were first seen.
    run_inputs: u64,
    seen_inputs: (u64, Instant),
    /// Seconds from Generate to the first preview, of the last run.
    pub last_first_preview_secs: Option<f64>,
    frame_stats: Option<FrameStats>,
    /// The photo being edited, if one is open.
    photo: Option<PhotoEdit>,
    edit: Option<ActiveEdit>,
    /// The step times seen, for the edit's expected time and time left.
    edit_clock: EditClock,
    /// Decoding, cutting and saving photos, off the UI thread.
    photo_jobs: PhotoJobs,
    /// The photo asked for on the command line, opened when the model is ready.
    startup_photo: Option<PathBuf>,
    /// The photo the last session was editing, reopened as it was when the model is ready.
    pending_photo: Option<SavedPhoto>,
    /// Where finished results are also written, and whether they are.
    outputs: Option<Outputs>,
    /// Gallery restores, for undo.
    restore_marks: Vec<RestoreMark>,
    dialogs: FileDialogs<FilePurpose>,
    /// Ctrl+Q was pressed while a run or edit was in progress: ask before quitting.
    quit_asked: bool,
}



impl eframe::App for Studio {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let window_height = ui.available_height();
        if let Some(stats) = &mut self.frame_stats {
            stats.record(frame.info().cpu_usage, self.run.is_some());
            // Idle frames are forced to measure their cost; a run's frames come
            // from its events, so forcing none leaves the engine its core.
            if self.run.is_none() {
                ctx.request_repaint();
            }
        }
        self.handle_worker_events(&ctx);
        while let Some(done) = self.photo_jobs.poll() {
            self.photo_done(&ctx, done);
        }
        let canvas_keys = self.handle_shortcuts(&ctx);
        if let Some(next_expiry) = self.messages.expire(Instant::now()) {
            ctx.request_repaint_after(next_expiry);
        }

        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        egui::Panel::left("tools").default_size(230.0).show(ui, |ui| self.tools_ui(ui));
        egui::Panel::right("generate").default_size(400.0).show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("generate-panel").show(ui, |ui| self.generate_panel_ui(ui));
        });
        egui::Panel::bottom("timeline").resizable(true).default_size(timeline_height(window_height)).show(ui, |ui| self.bottom_ui(ui));
        let canvas_area = egui::CentralPanel::default()
            .show(ui, |ui| {
                // An open photo lies under the mask; otherwise the newest result does.
                let underlay = self.photo.as_ref().map(|p| p.underlay.clone()).or_else(|| self.underlay.clone());
                self.canvas.ui(ui, underlay.as_ref(), canvas_keys);
            })
            .response
            .rect;
        self.messages_overlay(&ctx, canvas_area);
        self.overwrite_ui(&ctx);
        self.quit_ui(&ctx);
        self.dialogs_ui(&ctx);

        self.live_if_due(&ctx);
        self.autosave_if_due(false);
        if self.changed_at.is_some() {
            ctx.request_repaint_after(AUTOSAVE_DELAY);
        }
    }

    fn on_exit(&mut self) {
        if let Some(stats) = &self.frame_stats {
            eprintln!("{}", stats.summary());
        }
        self.cancel();
        self.autosave_if_due(true);
    }
}

#[cfg(test)]
mod tests {
    use super::engine_threads;

    #[test]
    fn the_engine_gets_all_cores_but_the_windows_one() {
        let split: Vec<usize> = [1, 2, 4, 8, 16].into_iter().map(engine_threads).collect();
        assert_eq!(split, [1, 1, 3, 7, 15]);
    }
}
