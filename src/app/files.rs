//! Files: masks, models, photos and results in and out, through dialogs,
//! drops and the samples folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{MessageKind, ModelStatus, Studio};
use super::canvas::Canvas;
use super::dialogs::{DialogEvent, FileRequest, Filter, FolderKind, Mode};
use super::engine;
use super::generation::Settings;
use super::worker::Job;
use crate::data::image_params::{save_png_with_params, ImageParams};
use crate::data::mask::Mask;
use crate::data::png_kind::{self, PngKind};

/// What a file picked in a dialog is for.
#[derive(Debug, Clone)]
pub(super) enum FilePurpose {
    LoadMask,
    SaveMask,
    OpenPhoto,
    ModelConfig,
    /// The checkpoint, once its config was picked.
    ModelWeights(PathBuf),
    ExportFrames,
    ExportGif,
    SaveResult { index: usize, item: usize },
    SaveEditedPhoto(usize),
}

const MASK_PNG: Filter = Filter { name: "mask PNG", extensions: &["png"] };
const MASK_IMAGE: Filter = Filter { name: "mask image", extensions: &["png", "jpg", "jpeg", "webp"] };
const PHOTO: Filter = Filter { name: "photo", extensions: &["png", "jpg", "jpeg", "webp"] };
const CONFIG: Filter = Filter { name: "config", extensions: &["yaml", "yml"] };
const CHECKPOINT: Filter = Filter { name: "checkpoint", extensions: &["ckpt", "safetensors"] };
const PNG: Filter = Filter { name: "PNG", extensions: &["png"] };
const GIF: Filter = Filter { name: "GIF", extensions: &["gif"] };
const FOLDERS: Filter = Filter { name: "folders", extensions: &[] };

fn file_request(title: &'static str, mode: Mode, filter: Filter, folder: FolderKind, file_name: Option<String>) -> FileRequest {
    FileRequest { title, mode, filter, folder, file_name, start: None }
}

impl Studio {
    /// Loads a mask file; a bad file leaves the current mask as it was and says why.
    pub fn load_mask(&mut self, path: &Path) {
        match Mask::load(path) {
            Ok(mask) => self.open_mask(mask, path),
            Err(e) => self.inform(MessageKind::Error, format!("{e}. The current mask is unchanged.")),
        }
    }

    /// Puts `mask`, read from `path`, on the canvas if it is square.
    fn open_mask(&mut self, mask: Mask, path: &Path) {
        match mask.square_size(&path.display().to_string()) {
            Ok(_) => {
                self.canvas.replace_mask(mask);
                self.mask_path = Some(path.to_path_buf());
                self.inform(MessageKind::Info, format!("Opened {}", path.display()));
            }
            Err(e) => self.inform(MessageKind::Error, format!("{e}; the current mask is unchanged")),
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

    pub(super) fn write_mask(&mut self, path: &Path) {
        match self.canvas.mask().save(path) {
            Ok(()) => {
                self.mask_path = Some(path.to_path_buf());
                self.inform(MessageKind::Info, format!("Saved {}", path.display()));
            }
            Err(e) => self.inform(MessageKind::Error, format!("{e}; the mask is still open, try another folder")),
        }
    }

    pub(super) fn save_mask_as_dialog(&mut self) {
        let start = self.mask_path.as_deref().and_then(Path::parent).map(Path::to_path_buf);
        let request = FileRequest { start, ..file_request("Save mask", Mode::Save, MASK_PNG, FolderKind::Masks, Some("mask.png".into())) };
        self.ask_for_file(FilePurpose::SaveMask, request);
    }

    pub(super) fn open_model_dialog(&mut self) {
        self.ask_for_file(FilePurpose::ModelConfig, file_request("Model config", Mode::Open, CONFIG, FolderKind::Models, None));
    }

    /// Loads a model on the worker, as "Open model…" does once both files are
    /// picked; a file that cannot be loaded ends up in the message area.
    pub fn open_model(&mut self, files: crate::model::defaults::ModelFiles) {
        let (label, load) = engine::loader(files);
        self.worker.send(Job::LoadModel { label, load });
    }

    pub(super) fn open_mask_dialog(&mut self) {
        self.ask_for_file(FilePurpose::LoadMask, file_request("Load mask", Mode::Open, MASK_IMAGE, FolderKind::Masks, None));
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

    /// First launch: the first sample mask and its description from the
    /// samples' `captions.json`, not a black canvas. The mask opens without a
    /// file name, so "Save" never writes over the shipped sample; with no
    /// samples folder the canvas stays blank.
    pub(super) fn open_first_sample(&mut self) {
        let (masks, _) = self.samples();
        let Some(path) = masks.first() else { return };
        let mask = match Mask::load_square(path) {
            Ok(mask) => mask,
            Err(e) => {
                self.inform(MessageKind::Error, format!("could not open the sample mask: {e}"));
                return;
            }
        };
        self.canvas = Canvas::new(mask);
        let json = std::fs::read_to_string(self.samples_dir.join("captions.json")).ok();
        let mut captions: HashMap<String, String> = json.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.prompt = captions.remove(&name).unwrap_or_default();
    }

    /// A dropped JPEG or WebP opens as a photo to edit. Any other image is
    /// read for what it holds: a result's parameters restore it, palette
    /// colours (or class indices) make a mask, and anything else is a photo.
    pub(super) fn open_dropped(&mut self, path: &Path) {
        let photo_like = path.extension().is_some_and(|e| ["jpg", "jpeg", "webp"].iter().any(|p| e.eq_ignore_ascii_case(p)));
        if photo_like {
            self.open_photo(path);
            return;
        }
        match png_kind::classify(path) {
            Ok(PngKind::Result(params)) => self.restore_image_params(*params, path),
            Ok(PngKind::Mask(mask)) => self.open_mask(mask, path),
            Ok(PngKind::Photo { why }) => {
                self.inform(MessageKind::Info, format!("{} is a photo, not a mask ({why}): opening it to edit.", path.display()));
                self.open_photo(path);
            }
            Err(e) => self.inform(MessageKind::Error, format!("{e}; nothing was changed")),
        }
    }

    /// Restores what a result PNG carries: its prompt, its sampler settings
    /// (the seed locked, so Generate makes the image again) and its mask.
    fn restore_image_params(&mut self, params: ImageParams, path: &Path) {
        self.prompt = params.prompt;
        self.settings = Settings { seed: params.seed, seed_locked: true, steps: params.steps, eta: params.eta, mode: params.mode, batch: 1 };
        let mut restored = format!("Restored the settings saved in {}", path.display());
        match params.mask.map(|mask| mask.square_size("its mask").map(|_| mask)) {
            Some(Ok(mask)) => {
                self.canvas.replace_mask(mask);
                restored += " and its mask";
            }
            Some(Err(e)) => restored += &format!(" ({e}: the current mask is unchanged)"),
            None => {}
        }
        if let Some(edit) = &params.edit {
            restored += &format!("; it is an edit ({}) of {}, which \"Open photo…\" opens to edit again", edit.method, edit.photo);
        }
        if let (Some(made_by), ModelStatus::Ready(open)) = (&params.model, &self.model) {
            if *made_by != open.name {
                restored += &format!("; it was made with {made_by}, the open model is {}", open.name);
            }
        }
        self.inform(MessageKind::Info, restored);
    }

    pub(super) fn open_photo_dialog(&mut self) {
        self.ask_for_file(FilePurpose::OpenPhoto, file_request("Photo to edit", Mode::Open, PHOTO, FolderKind::Photos, None));
    }

    pub(super) fn save_edited_photo_dialog(&mut self, index: usize) {
        let Some(photo) = &self.photo else { return };
        let stem = photo.path.file_stem().map_or_else(|| "photo".into(), |s| s.to_string_lossy().into_owned());
        let request = file_request("Save the edited photo", Mode::Save, PNG, FolderKind::Exports, Some(format!("{stem}-edited.png")));
        self.ask_for_file(FilePurpose::SaveEditedPhoto(index), request);
    }

    /// Writes the full photo with edit `index` blended in to `path` (a PNG
    /// carrying the edit's settings), off the UI thread.
    pub fn save_edited_photo(&mut self, index: usize, path: PathBuf) {
        let Some(photo) = &self.photo else { return };
        let Some(result) = photo.results.get(index) else { return };
        self.photo_jobs.save(photo.photo.clone(), result.image.clone(), path, result.params.clone());
    }

    pub(super) fn save_result_dialog(&mut self, index: usize, item: usize) {
        let Some(entry) = self.history.get(index) else { return };
        let seed = entry.params.settings.seed + item as u64;
        let request = file_request("Save the result", Mode::Save, PNG, FolderKind::Exports, Some(format!("codiff-{seed}.png")));
        self.ask_for_file(FilePurpose::SaveResult { index, item }, request);
    }

    pub(super) fn export_frames_dialog(&mut self) {
        self.ask_for_file(FilePurpose::ExportFrames, file_request("Folder for the PNG frames", Mode::Folder, FOLDERS, FolderKind::Exports, None));
    }

    pub(super) fn export_gif_dialog(&mut self) {
        let request = file_request("Save the steps as a GIF", Mode::Save, GIF, FolderKind::Exports, Some("codiff-steps.gif".into()));
        self.ask_for_file(FilePurpose::ExportGif, request);
    }

    fn ask_for_file(&mut self, purpose: FilePurpose, request: FileRequest) {
        if !self.dialogs.open(purpose, request) {
            self.inform(MessageKind::Info, "A file dialog is already open; finish it first.");
        }
    }

    /// What the dialogs reported this frame: picks are carried out here.
    pub(super) fn dialogs_ui(&mut self, ctx: &egui::Context) {
        for event in self.dialogs.show(ctx) {
            match event {
                DialogEvent::Picked(purpose, path) => self.file_picked(purpose, path),
                DialogEvent::NoNativeDialog(why) => {
                    self.inform(MessageKind::Info, format!("The system's file dialog could not open ({why}); the studio's own file browser opens instead."))
                }
                DialogEvent::Error(e) => self.inform(MessageKind::Error, e),
            }
        }
    }

    fn file_picked(&mut self, purpose: FilePurpose, path: PathBuf) {
        match purpose {
            FilePurpose::LoadMask => self.load_mask(&path),
            // The dialog has asked before replacing a file.
            FilePurpose::SaveMask => self.write_mask(&path),
            FilePurpose::OpenPhoto => self.open_photo(&path),
            FilePurpose::ModelConfig => {
                let request = FileRequest { start: path.parent().map(Path::to_path_buf), ..file_request("Checkpoint", Mode::Open, CHECKPOINT, FolderKind::Models, None) };
                self.ask_for_file(FilePurpose::ModelWeights(path), request);
            }
            FilePurpose::ModelWeights(config) => self.open_model(crate::model::defaults::ModelFiles { config, weights: path }),
            FilePurpose::ExportFrames => match self.timeline.export_frames(&path) {
                Ok(n) => self.inform(MessageKind::Info, format!("Wrote {n} PNG frames to {}", path.display())),
                Err(e) => self.inform(MessageKind::Error, e),
            },
            FilePurpose::ExportGif => match self.timeline.export_gif(&path) {
                Ok(n) => self.inform(MessageKind::Info, format!("Wrote {} ({n} steps)", path.display())),
                Err(e) => self.inform(MessageKind::Error, e),
            },
            FilePurpose::SaveResult { index, item } => self.save_result(index, item, &path),
            FilePurpose::SaveEditedPhoto(index) => self.save_edited_photo(index, path),
        }
    }

    /// Writes image `item` of history entry `index` to `path` as a PNG carrying its settings and mask.
    pub fn save_result(&mut self, index: usize, item: usize, path: &Path) {
        let Some((entry, image)) = self.history.get(index).and_then(|e| Some((e, e.images.get(item)?))) else { return };
        match save_png_with_params(path, image, &entry.image_params(item)) {
            Ok(()) => self.inform(MessageKind::Info, format!("Saved {} with its settings and mask embedded", path.display())),
            Err(e) => self.inform(MessageKind::Error, e.to_string()),
        }
    }
}
