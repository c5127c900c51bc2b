//! The egui studio: paint a face mask, describe the face, watch the two models
//! collaborate step by step.
//!
//! [`Studio`] holds the app state; the pieces draw themselves (`canvas`,
//! `palette`, `prompt`, `generation`, `timeline`, `gallery`). Inference runs on
//! the [`worker`] thread; the UI only sends jobs and polls events.

pub mod autosave;
pub mod canvas;
pub mod engine;
pub mod frame_stats;
pub mod gallery;
pub mod generation;
pub mod palette;
pub mod photo;
mod photo_jobs;
pub mod prompt;
pub mod timeline;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{Key, KeyboardShortcut, Modifiers, TextureHandle, TextureOptions, Vec2};

use self::autosave::{Autosave, HISTORY_LIMIT};
use self::canvas::{Canvas, Tool, BRUSH_RADIUS_RANGE, MODEL_MASK_SIZE};
use self::frame_stats::FrameStats;
use self::gallery::{encode_result_png, read_result_params, GalleryAction, HistoryEntry, RunParams};
use self::generation::{Progress, Settings};
use self::photo::{EditProgress, PhotoAction, PhotoEdit};
use self::photo_jobs::{PhotoDone, PhotoJobs, Sizes};
use self::prompt::Attributes;
use self::timeline::{rgb_image, Export, StepRecord, Timeline};
use self::worker::{Engine, EngineLoader, Job, ModelInfo, Outcome, Worker, WorkerEvent};
use crate::data::mask::{Mask, CLASSES};
use crate::model::checkpoint::LoadProgress;
use crate::pipeline::edit::EditMethod;
use crate::pipeline::generate::{Event, GenerateRequest};

/// New masks have the original data's size.
pub const DEFAULT_MASK_SIZE: usize = 512;
/// Autosave waits this long after the last change, so a stroke is saved once, not per frame.
const AUTOSAVE_DELAY: Duration = Duration::from_secs(2);
/// Live mode regenerates once the inputs have been still this long (and no stroke is under way).
const LIVE_DEBOUNCE: Duration = Duration::from_millis(600);

const GENERATE_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);
const UNDO_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Z);
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
        }
    }
}

impl StudioOptions {
    /// The options `codiff` opens the studio with: the default models (or
    /// `CODIFF_CONFIG` + `CODIFF_CKPT`) load in the background.
    pub fn with_startup_model() -> Self {
        match engine::startup_loader() {
            Ok(loader) => Self { loader: Some(loader), ..Self::default() },
            Err(e) => Self { model_error: Some(e), ..Self::default() },
        }
    }
}

/// Opens the studio window and runs it until it is closed. Call before any
/// other thread starts: it caps the inference threads through the environment.
pub fn run(options: StudioOptions) -> Result<(), String> {
    cap_inference_threads();
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("CoDiff Studio").with_inner_size([1600.0, 1000.0]).with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native("CoDiff Studio", native, Box::new(|cc| Ok(Box::new(Studio::new(cc, options)))))
        .map_err(|e| format!("the studio window could not open: {e}"))
}

/// Leaves one core to the UI: candle and rayon size their pools from
/// `RAYON_NUM_THREADS`, so set it (unless the person did) before either starts.
fn cap_inference_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::model::pin_thread_count(Some(cores.saturating_sub(1)));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    Error,
}

/// A sentence shown at the top of the window until dismissed.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: MessageKind,
    pub text: String,
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
}

pub struct Studio {
    canvas: Canvas,
    prompt: String,
    attributes: Attributes,
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
    messages: Vec<Message>,
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
    /// Decoding, cutting and saving photos, off the UI thread.
    photo_jobs: PhotoJobs,
    /// The photo asked for on the command line, opened when the model is ready.
    startup_photo: Option<PathBuf>,
}

impl Studio {
    pub fn new(cc: &eframe::CreationContext<'_>, options: StudioOptions) -> Self {
        let ctx = cc.egui_ctx.clone();
        let worker = Worker::spawn(options.engine, move || ctx.request_repaint());
        let mut studio = Self {
            canvas: Canvas::new(Mask::filled(DEFAULT_MASK_SIZE, DEFAULT_MASK_SIZE, 0)),
            prompt: String::new(),
            attributes: Attributes::default(),
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
            messages: Vec::new(),
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
            photo_jobs: PhotoJobs::new(cc.egui_ctx.clone()),
            startup_photo: options.photo,
        };
        studio.restore_autosave(&cc.egui_ctx);
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
        &self.messages
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

    fn inform(&mut self, kind: MessageKind, text: impl Into<String>) {
        self.messages.push(Message { kind, text: text.into() });
        if self.messages.len() > 4 {
            self.messages.remove(0);
        }
    }

    // ----- masks and files -----

    /// Loads a mask file; a bad file leaves the current mask as it was and says why.
    pub fn load_mask(&mut self, path: &Path) {
        match Mask::load(path) {
            Ok(mask) => match mask.square_size(&path.display().to_string()) {
                Ok(_) => {
                    self.canvas.replace_mask(mask);
                    self.mask_path = Some(path.to_path_buf());
                    self.inform(MessageKind::Info, format!("Opened {}", path.display()));
                }
                Err(e) => self.inform(MessageKind::Error, format!("{e}; the current mask is unchanged")),
            },
            Err(e) => self.inform(MessageKind::Error, format!("{e}. The current mask is unchanged.")),
        }
    }

    /// Saves the mask to `path`; an existing file is only replaced after the person confirms.
    pub fn save_mask(&mut self, path: &Path) {
        let same_file = self.mask_path.as_deref() == Some(path);
        if path.exists() && !same_file {
            self.pending_overwrite = Some(path.to_path_buf());
        } else {
            self.write_mask(path);
        }
    }

    /// The file waiting for confirmation to be replaced, if any.
    pub fn pending_overwrite(&self) -> Option<&Path> {
        self.pending_overwrite.as_deref()
    }

    fn write_mask(&mut self, path: &Path) {
        match self.canvas.mask().save(path) {
            Ok(()) => {
                self.mask_path = Some(path.to_path_buf());
                self.inform(MessageKind::Info, format!("Saved {}", path.display()));
            }
            Err(e) => self.inform(MessageKind::Error, format!("{e}; the mask is still open, try another folder")),
        }
    }

    fn save_mask_as_dialog(&mut self) {
        let mut dialog = rfd::FileDialog::new().add_filter("mask PNG", &["png"]).set_file_name("mask.png");
        if let Some(dir) = self.mask_path.as_deref().and_then(Path::parent) {
            dialog = dialog.set_directory(dir);
        }
        if let Some(path) = dialog.save_file() {
            let path = if path.extension().is_none() { path.with_extension("png") } else { path };
            self.save_mask(&path);
        }
    }

    fn open_model_dialog(&mut self) {
        let Some(config) = rfd::FileDialog::new().set_title("Model config").add_filter("config", &["yaml", "yml"]).pick_file() else { return };
        let mut dialog = rfd::FileDialog::new().set_title("Checkpoint").add_filter("checkpoint", &["ckpt", "safetensors"]);
        if let Some(dir) = config.parent() {
            dialog = dialog.set_directory(dir);
        }
        let Some(weights) = dialog.pick_file() else { return };
        self.open_model(crate::model::defaults::ModelFiles { config, weights });
    }

    /// Loads a model on the worker, as "Open model…" does once both files are
    /// picked; a file that cannot be loaded ends up in the message area.
    pub fn open_model(&mut self, files: crate::model::defaults::ModelFiles) {
        let (label, load) = engine::loader(files);
        self.worker.send(Job::LoadModel { label, load });
    }

    fn open_mask_dialog(&mut self) {
        if let Some(path) = rfd::FileDialog::new().add_filter("mask image", &["png", "jpg", "jpeg", "webp"]).pick_file() {
            self.load_mask(&path);
        }
    }

    /// The PNG files in the samples folder, sorted, as (masks, photos): a
    /// `NAME_photo.png` is the photo painted from mask `NAME.png`, to open for
    /// editing. Both empty when the folder is missing.
    pub fn samples(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(&self.samples_dir) else { return Default::default() };
        let mut files: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))).collect();
        files.sort();
        files.into_iter().partition(|p| !p.file_stem().is_some_and(|s| s.to_string_lossy().ends_with("_photo")))
    }

    /// A dropped PNG that the studio wrote restores its settings; anything else is read as a mask.
    /// A JPEG or WebP opens as a photo to edit; anything else is read as a mask.
    fn open_dropped(&mut self, path: &Path) {
        let photo_like = path.extension().is_some_and(|e| ["jpg", "jpeg", "webp"].iter().any(|p| e.eq_ignore_ascii_case(p)));
        if photo_like {
            self.open_photo(path);
        } else if let Some(params) = std::fs::read(path).ok().as_deref().and_then(read_result_params) {
            self.restore_params(params);
            self.inform(MessageKind::Info, format!("Restored the settings saved in {}", path.display()));
        } else {
            self.load_mask(path);
        }
    }

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
        self.photo_jobs.open(path.to_path_buf(), sizes);
    }

    /// A finished photo job.
    fn photo_done(&mut self, ctx: &egui::Context, done: PhotoDone) {
        match done {
            PhotoDone::Opened(Ok(opened)) => {
                let path = opened.path.display().to_string();
                self.photo = Some(PhotoEdit::new(ctx, opened));
                self.canvas.restore = None;
                self.read_photo();
                self.inform(MessageKind::Info, format!("Opened {path}; reading its mask and description…"));
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
            PhotoDone::Crashed(why) => self.inform(MessageKind::Error, format!("the photo job failed ({why}); nothing was changed")),
        }
    }

    fn open_photo_dialog(&mut self) {
        if let Some(path) = rfd::FileDialog::new().set_title("Photo to edit").add_filter("photo", &["png", "jpg", "jpeg", "webp"]).pick_file() {
            self.open_photo(&path);
        }
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
                // The chips described the previous prompt, not this one.
                self.attributes = Attributes::default();
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
        let method = photo.method;
        if self.worker.send(Job::Edit { request: Box::new(request), cancel: cancel.clone() }) {
            self.edit = Some(ActiveEdit { cancel, progress: EditProgress::new(), method });
        } else {
            self.inform(MessageKind::Error, "the worker has stopped; restart the studio (your work is autosaved)");
        }
    }

    fn photo_action(&mut self, ctx: &egui::Context, action: PhotoAction) {
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

    fn save_edited_photo_dialog(&mut self, index: usize) {
        let Some(photo) = &self.photo else { return };
        let stem = photo.path.file_stem().map_or_else(|| "photo".into(), |s| s.to_string_lossy().into_owned());
        if let Some(path) = rfd::FileDialog::new().add_filter("PNG", &["png"]).set_file_name(format!("{stem}-edited.png")).save_file() {
            self.save_edited_photo(index, path);
        }
    }

    /// Writes the full photo with edit `index` blended in to `path` (a PNG
    /// carrying the edit's settings), off the UI thread.
    pub fn save_edited_photo(&mut self, index: usize, path: PathBuf) {
        let Some(photo) = &self.photo else { return };
        let Some(result) = photo.results.get(index) else { return };
        let params = vec![
            ("text", self.prompt.clone()),
            ("source_text", photo.source_text.clone()),
            ("method", format!("{:?}", result.method).to_lowercase()),
            ("alpha", result.alpha.to_string()),
            ("photo", photo.path.display().to_string()),
        ];
        self.photo_jobs.save(photo.photo.clone(), result.image.clone(), path, params);
    }

    fn restore_params(&mut self, params: RunParams) {
        self.prompt = params.prompt;
        self.attributes = params.attributes;
        self.settings = params.settings;
    }

    fn save_result_dialog(&mut self, index: usize, item: usize) {
        let Some(entry) = self.history.get(index) else { return };
        let mut params = entry.params.clone();
        params.settings.seed += item as u64;
        params.settings.batch = 1;
        let Some(path) = rfd::FileDialog::new().add_filter("PNG", &["png"]).set_file_name(format!("codiff-{}.png", params.settings.seed)).save_file()
        else {
            return;
        };
        let written = encode_result_png(&entry.images[item], &params).and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| e.to_string()));
        match written {
            Ok(()) => self.inform(MessageKind::Info, format!("Saved {} with its settings embedded", path.display())),
            Err(e) => self.inform(MessageKind::Error, format!("cannot save {}: {e}", path.display())),
        }
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
        let s = self.settings.clone();
        let request = GenerateRequest {
            mask: self.canvas.mask().clone(),
            text: self.prompt.trim().to_string(),
            steps: s.steps,
            eta: s.eta,
            seed: s.seed,
            mode: s.mode,
            batch: s.batch,
            ..GenerateRequest::default()
        };
        let cancel = Arc::new(AtomicBool::new(false));
        if !self.worker.send(Job::Generate { request, cancel: cancel.clone() }) {
            self.inform(MessageKind::Error, "the generation worker has stopped; restart the studio (your work is autosaved)");
            return;
        }
        self.timeline.clear();
        self.previews_final = false;
        self.run_inputs = self.inputs_fingerprint();
        let params = RunParams { prompt: self.prompt.clone(), attributes: self.attributes.clone(), settings: self.settings.clone() };
        self.run = Some(ActiveRun { cancel, progress: Progress::new(s.steps), params, mask: self.canvas.mask().clone(), first_preview_secs: None, first_preview_engine_secs: None });
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

    fn handle_worker_events(&mut self, ctx: &egui::Context) {
        for event in self.worker.poll() {
            match event {
                WorkerEvent::ModelLoading { label, progress } => self.model = ModelStatus::Loading(label, progress),
                WorkerEvent::ModelLoaded(info) => {
                    if let Some(fallback) = &info.device_fallback {
                        self.inform(MessageKind::Info, fallback.clone());
                    }
                    self.model = ModelStatus::Ready(info);
                    if let Some(path) = self.startup_photo.take() {
                        self.open_photo(&path);
                    }
                }
                WorkerEvent::ModelFailed { label, error } => {
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
                        let entry = HistoryEntry::new(self.next_history_id, run.params.clone(), run.mask.clone(), images);
                        self.next_history_id += 1;
                        self.history.push(entry);
                        if self.history.len() > HISTORY_LIMIT {
                            self.history.remove(0);
                        }
                    }
                }
                WorkerEvent::PhotoRead(read) => self.photo_read(read),
                WorkerEvent::Edit(event) => {
                    if let Some(edit) = &mut self.edit {
                        edit.progress.update(event);
                    }
                }
                WorkerEvent::EditEnded { images, outcome } => {
                    let method = self.edit.take().map_or(EditMethod::Inversion, |e| e.method);
                    match outcome {
                        Outcome::Finished => {
                            if let Some(photo) = &mut self.photo {
                                photo.add_results(ctx, method, images);
                            }
                        }
                        Outcome::Cancelled => self.inform(MessageKind::Info, "Edit cancelled."),
                        Outcome::Failed(e) => self.inform(MessageKind::Error, format!("the edit failed: {e}")),
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
                        match outcome {
                            Outcome::Finished => {}
                            Outcome::Cancelled => self.inform(
                                MessageKind::Info,
                                format!("Cancelled after step {} of {}; the last preview stays.", run.progress.done, run.progress.total),
                            ),
                            Outcome::Failed(e) => self.inform(MessageKind::Error, format!("generation failed: {e}")),
                        }
                    }
                }
            }
        }
    }

    fn show_previews(&mut self, ctx: &egui::Context, images: Vec<egui::ColorImage>) {
        if self.previews.len() != images.len() {
            self.previews = images.into_iter().enumerate().map(|(k, image)| ctx.load_texture(format!("preview-{k}"), image, TextureOptions::LINEAR)).collect();
        } else {
            for (texture, image) in self.previews.iter_mut().zip(images) {
                texture.set(image, TextureOptions::LINEAR);
            }
        }
    }

    // ----- autosave -----

    fn restore_autosave(&mut self, ctx: &egui::Context) {
        let Some(store) = &self.autosave else { return };
        match store.load() {
            Ok(Some(work)) => {
                self.canvas = Canvas::new(work.mask);
                self.prompt = work.prompt;
                self.attributes = work.attributes;
                self.settings = work.settings;
                self.next_history_id = work.history.iter().map(|e| e.id + 1).max().unwrap_or(1);
                self.history = work.history;
                if let Some(image) = self.history.last().and_then(|e| e.images.first()) {
                    self.underlay = Some(ctx.load_texture("underlay", rgb_image(image), TextureOptions::LINEAR));
                }
            }
            Ok(None) => {}
            Err(e) => self.inform(MessageKind::Error, format!("could not restore the last session: {e}")),
        }
        self.saved_fingerprint = self.fingerprint();
    }

    /// Changes whenever anything autosave keeps changes.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inputs_fingerprint().hash(&mut h);
        serde_json::to_string(&self.attributes).unwrap_or_default().hash(&mut h);
        self.history.iter().map(|e| e.id).collect::<Vec<_>>().hash(&mut h);
        h.finish()
    }

    /// Changes whenever what a run would be asked to do changes.
    fn inputs_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.canvas.revision.hash(&mut h);
        self.prompt.hash(&mut h);
        serde_json::to_string(&self.settings).unwrap_or_default().hash(&mut h);
        h.finish()
    }

    /// Live mode: once the inputs differ from the newest run's and have been
    /// still for [`LIVE_DEBOUNCE`] outside a stroke, cancel any run and start a new one.
    fn live_if_due(&mut self, ctx: &egui::Context) {
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

    fn autosave_if_due(&mut self, force: bool) {
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
            match store.save(self.canvas.mask(), &self.prompt, &self.attributes, &self.settings, &self.history) {
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

    // ----- input -----

    fn handle_shortcuts(&mut self, ctx: &egui::Context) {
        let (generate, escape) = ctx.input_mut(|i| (i.consume_shortcut(&GENERATE_KEY), i.key_pressed(Key::Escape)));
        if generate {
            self.generate();
        }
        if escape {
            self.cancel();
        }
        if ctx.text_edit_focused() {
            return; // typing in the prompt: letters are text, Ctrl+Z is the text box's undo
        }
        let (redo, undo) = ctx.input_mut(|i| (i.consume_shortcut(&REDO_KEY), i.consume_shortcut(&UNDO_KEY)));
        if redo {
            self.canvas.redo();
        } else if undo {
            self.canvas.undo();
        }
        ctx.input(|i| {
            if let Some(class) = palette::class_hotkey(i) {
                self.canvas.class = class;
                if matches!(self.canvas.tool, Tool::Eraser | Tool::Eyedropper) {
                    self.canvas.tool = Tool::Brush;
                }
            }
            if i.modifiers.any() {
                return;
            }
            for (key, tool) in [(Key::B, Tool::Brush), (Key::E, Tool::Eraser), (Key::F, Tool::Fill), (Key::I, Tool::Eyedropper)] {
                if i.key_pressed(key) {
                    self.canvas.tool = tool;
                }
            }
            if i.key_pressed(Key::OpenBracket) {
                self.canvas.grow_brush(1.0 / 1.25);
            }
            if i.key_pressed(Key::CloseBracket) {
                self.canvas.grow_brush(1.25);
            }
        });
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        for path in dropped {
            self.open_dropped(&path);
        }
    }

    // ----- panels -----

    fn toolbar_ui(&mut self, ui: &mut egui::Ui) {
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
                self.canvas.undo();
            }
            if ui.add_enabled(self.canvas.can_redo(), egui::Button::new("Redo")).on_hover_text("Ctrl+Shift+Z").clicked() {
                self.canvas.redo();
            }
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
                    ModelStatus::Ready(info) => ui.label(format!(
                        "model: {} · {} px · {:.1} M parameters · {}",
                        info.name,
                        info.resolution,
                        info.parameters as f64 / 1e6,
                        info.device
                    )),
                    ModelStatus::Failed(_) => ui.colored_label(ui.visuals().error_fg_color, "model failed to load"),
                };
            });
        });
    }

    fn messages_ui(&mut self, ui: &mut egui::Ui) {
        let mut dismissed = None;
        for (index, message) in self.messages.iter().enumerate() {
            ui.horizontal(|ui| {
                let color = match message.kind {
                    MessageKind::Info => ui.visuals().text_color(),
                    MessageKind::Error => ui.visuals().error_fg_color,
                };
                if ui.small_button("×").on_hover_text("dismiss").clicked() {
                    dismissed = Some(index);
                }
                ui.colored_label(color, &message.text);
            });
        }
        if let Some(index) = dismissed {
            self.messages.remove(index);
        }
    }

    fn tools_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Paint");
        ui.horizontal_wrapped(|ui| {
            for tool in Tool::ALL {
                ui.selectable_value(&mut self.canvas.tool, tool, tool.label());
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
        let lost = self.canvas.classes_lost_at_model_size();
        if !lost.is_empty() {
            let names: Vec<&str> = lost.iter().map(|&c| CLASSES[c as usize].name).collect();
            ui.colored_label(ui.visuals().warn_fg_color, format!("Vanishes at {MODEL_MASK_SIZE}×{MODEL_MASK_SIZE}: {}", names.join(", ")));
        }
        ui.separator();
        let counts = self.canvas.mask().class_histogram();
        egui::ScrollArea::vertical().show(ui, |ui| palette::palette_ui(ui, &mut self.canvas.class, &counts));
    }

    fn generate_panel_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Describe");
        prompt::prompt_ui(ui, &mut self.prompt, &mut self.attributes);
        ui.separator();
        let busy = self.is_busy() || self.photo_jobs.busy();
        let action = self.photo.as_mut().and_then(|photo| photo.ui(ui, busy, self.edit.as_ref().map(|e| &e.progress)));
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

    fn bottom_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Influence timeline");
        match self.timeline.ui(ui) {
            Some(Export::Frames) => {
                if let Some(dir) = rfd::FileDialog::new().set_title("Folder for the PNG frames").pick_folder() {
                    match self.timeline.export_frames(&dir) {
                        Ok(n) => self.inform(MessageKind::Info, format!("Wrote {n} PNG frames to {}", dir.display())),
                        Err(e) => self.inform(MessageKind::Error, e),
                    }
                }
            }
            Some(Export::Gif) => {
                if let Some(path) = rfd::FileDialog::new().add_filter("GIF", &["gif"]).set_file_name("codiff-steps.gif").save_file() {
                    match self.timeline.export_gif(&path) {
                        Ok(n) => self.inform(MessageKind::Info, format!("Wrote {} ({n} steps)", path.display())),
                        Err(e) => self.inform(MessageKind::Error, e),
                    }
                }
            }
            None => {}
        }
        ui.separator();
        ui.heading("Gallery");
        match gallery::gallery_ui(ui, &mut self.history) {
            Some(GalleryAction::Restore(index)) => {
                let entry = &self.history[index];
                let (params, mask) = (entry.params.clone(), entry.mask.clone());
                let underlay = entry.images.first().map(|image| ui.ctx().load_texture("underlay", rgb_image(image), TextureOptions::LINEAR));
                self.restore_params(params);
                self.canvas.replace_mask(mask);
                self.underlay = underlay;
            }
            Some(GalleryAction::Save(index, item)) => self.save_result_dialog(index, item),
            None => {}
        }
    }

    fn overwrite_ui(&mut self, ctx: &egui::Context) {
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

impl eframe::App for Studio {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
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
        self.handle_shortcuts(&ctx);

        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        if !self.messages.is_empty() {
            egui::Panel::top("messages").show(ui, |ui| self.messages_ui(ui));
        }
        egui::Panel::left("tools").default_size(230.0).show(ui, |ui| self.tools_ui(ui));
        egui::Panel::right("generate").default_size(400.0).show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("generate-panel").show(ui, |ui| self.generate_panel_ui(ui));
        });
        egui::Panel::bottom("timeline").resizable(true).default_size(390.0).show(ui, |ui| self.bottom_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            // An open photo lies under the mask; otherwise the newest result does.
            let underlay = self.photo.as_ref().map(|p| p.underlay.clone()).or_else(|| self.underlay.clone());
            self.canvas.ui(ui, underlay.as_ref());
        });
        self.overwrite_ui(&ctx);

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
