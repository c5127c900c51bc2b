//! Files: masks, models, photos and results in and out, through dialogs,
//! drops and the samples folder.

use std::path::{Path, PathBuf};

use super::{MessageKind, Studio};
use super::engine;
use super::gallery::{encode_result_png, read_result_params, RunParams};
use super::worker::Job;
use crate::data::mask::Mask;

impl Studio {
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
        let mut dialog = rfd::FileDialog::new().add_filter("mask PNG", &["png"]).set_file_name("mask.png");
        if let Some(dir) = self.mask_path.as_deref().and_then(Path::parent) {
            dialog = dialog.set_directory(dir);
        }
        if let Some(path) = dialog.save_file() {
            let path = if path.extension().is_none() { path.with_extension("png") } else { path };
            self.save_mask(&path);
        }
    }

    pub(super) fn open_model_dialog(&mut self) {
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

    pub(super) fn open_mask_dialog(&mut self) {
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
    pub(super) fn open_dropped(&mut self, path: &Path) {
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

    pub(super) fn open_photo_dialog(&mut self) {
        if let Some(path) = rfd::FileDialog::new().set_title("Photo to edit").add_filter("photo", &["png", "jpg", "jpeg", "webp"]).pick_file() {
            self.open_photo(&path);
        }
    }

    pub(super) fn save_edited_photo_dialog(&mut self, index: usize) {
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

    pub(super) fn restore_params(&mut self, params: RunParams) {
        self.prompt = params.prompt;
        self.attributes = params.attributes;
        self.settings = params.settings;
    }

    pub(super) fn save_result_dialog(&mut self, index: usize, item: usize) {
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
}
