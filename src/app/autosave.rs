//! No lost work: the open mask, prompt, settings, history and the photo being
//! edited are written to a folder in the user's data directory and read back on start.
//!
//! Layout: `work.json` (prompt, settings, history parameters, the open photo's
//! path, crop and edit settings), `mask.png`, `photo-mask.png` (the photo's
//! mask as read), and per history entry `history/ID-mask.png` plus
//! `history/ID-K.png` (result PNGs with their parameters embedded, written once).
//! The photo's edits are the history entries that name it.

use std::path::{Path, PathBuf};

use super::gallery::{decode_result_png, HistoryEntry, RunParams};
use super::generation::Settings;
use super::prompt::CaptionChoice;
use crate::data::image_params::save_png_with_params;
use crate::data::mask::Mask;
use crate::pipeline::edit::{Crop, EditMethod};

/// At most this many results are kept; the oldest go first.
pub const HISTORY_LIMIT: usize = 48;

/// The work the studio restores on start.
pub struct Work {
    pub mask: Mask,
    pub prompt: String,
    pub attributes: CaptionChoice,
    pub settings: Settings,
    pub history: Vec<HistoryEntry>,
    /// Whether results also go to the outputs folder.
    pub save_outputs: bool,
    pub photo: Option<SavedPhoto>,
}

/// The work as the studio holds it, to be saved.
pub struct WorkRef<'a> {
    pub mask: &'a Mask,
    pub prompt: &'a str,
    pub attributes: &'a CaptionChoice,
    pub settings: &'a Settings,
    pub history: &'a [HistoryEntry],
    pub save_outputs: bool,
    pub photo: Option<SavedPhoto>,
}

/// The photo being edited: enough to open it again as it was.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedPhoto {
    pub path: PathBuf,
    pub crop: Crop,
    /// Its description as read and corrected.
    pub source_text: String,
    pub method: EditMethod,
    pub alpha: f64,
    pub embed_steps: usize,
    pub finetune_steps: usize,
    /// Its mask as read (at the model's size), absent while it was being read.
    #[serde(skip)]
    pub source_mask: Option<Mask>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WorkFile {
    prompt: String,
    #[serde(default, deserialize_with = "super::prompt::chips_or_none")]
    attributes: CaptionChoice,
    settings: Settings,
    history: Vec<HistoryFile>,
    #[serde(default = "yes")]
    save_outputs: bool,
    #[serde(default)]
    photo: Option<SavedPhoto>,
}

fn yes() -> bool {
    true
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HistoryFile {
    id: u64,
    params: RunParams,
    images: usize,
}

/// The studio's data directory: `$CODIFF_DATA_DIR`, else
/// `$XDG_DATA_HOME/codiff`, else `~/.local/share/codiff`.
pub fn data_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("CODIFF_DATA_DIR").or_else(|| env("XDG_DATA_HOME").map(|d| d.join("codiff"))).or_else(|| env("HOME").map(|h| h.join(".local/share/codiff")))
}

/// Where the studio keeps its open work: `autosave` in [`data_dir`].
pub fn default_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("autosave"))
}

pub struct Autosave {
    dir: PathBuf,
}

impl Autosave {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved work, `Ok(None)` when nothing was saved yet.
    pub fn load(&self) -> Result<Option<Work>, String> {
        let json_path = self.dir.join("work.json");
        let json = match std::fs::read_to_string(&json_path) {
            Ok(json) => json,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", json_path.display())),
        };
        let file: WorkFile = serde_json::from_str(&json).map_err(|e| format!("{} is damaged ({e}); it will be replaced at the next autosave", json_path.display()))?;
        let mask = Mask::load(self.dir.join("mask.png")).map_err(|e| e.to_string())?;
        // A history entry whose files went missing is dropped, not fatal.
        let history = file.history.into_iter().filter_map(|h| self.load_entry(h)).collect();
        let photo = file.photo.map(|photo| SavedPhoto { source_mask: Mask::load(self.dir.join("photo-mask.png")).ok(), ..photo });
        Ok(Some(Work { mask, prompt: file.prompt, attributes: file.attributes, settings: file.settings, history, save_outputs: file.save_outputs, photo }))
    }

    fn load_entry(&self, h: HistoryFile) -> Option<HistoryEntry> {
        let mask = Mask::load(self.history_path(h.id, "mask")).ok()?;
        let images = (0..h.images)
            .map(|k| {
                let bytes = std::fs::read(self.history_path(h.id, &k.to_string())).ok()?;
                decode_result_png(&bytes).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(HistoryEntry::new(h.id, h.params, mask, images))
    }

    fn history_path(&self, id: u64, what: &str) -> PathBuf {
        self.dir.join("history").join(format!("{id:06}-{what}.png"))
    }

    /// Writes the work; history files already on disk are kept, dropped entries' files removed.
    pub fn save(&self, work: WorkRef<'_>) -> Result<(), String> {
        let WorkRef { mask, prompt, attributes, settings, history, save_outputs, photo } = work;
        let history_dir = self.dir.join("history");
        std::fs::create_dir_all(&history_dir).map_err(|e| format!("cannot create {}: {e}", history_dir.display()))?;
        for entry in history {
            let mask_path = self.history_path(entry.id, "mask");
            if !mask_path.exists() {
                entry.mask.save(&mask_path).map_err(|e| e.to_string())?;
                for (k, image) in entry.images.iter().enumerate() {
                    save_png_with_params(self.history_path(entry.id, &k.to_string()), image, &entry.image_params(k)).map_err(|e| e.to_string())?;
                }
            }
        }
        self.remove_dropped(history);
        let bytes = mask.encode_png()?;
        write_atomic(&self.dir.join("mask.png"), &bytes)?;
        if let Some(source_mask) = photo.as_ref().and_then(|p| p.source_mask.as_ref()) {
            write_atomic(&self.dir.join("photo-mask.png"), &source_mask.encode_png()?)?;
        }
        let file = WorkFile {
            prompt: prompt.to_string(),
            attributes: *attributes,
            settings: settings.clone(),
            history: history.iter().map(|e| HistoryFile { id: e.id, params: e.params.clone(), images: e.images.len() }).collect(),
            save_outputs,
            photo,
        };
        let json = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
        write_atomic(&self.dir.join("work.json"), json.as_bytes())
    }

    fn remove_dropped(&self, history: &[HistoryEntry]) {
        let Ok(files) = std::fs::read_dir(self.dir.join("history")) else { return };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let id = name.split('-').next().and_then(|id| id.parse::<u64>().ok());
            if id.is_some_and(|id| !history.iter().any(|e| e.id == id)) {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
}

/// Writes through a temporary file so a crash mid-write never leaves half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::generate::RgbFrame;

    #[test]
    fn work_round_trips_through_the_folder() {
        let dir = std::env::temp_dir().join(format!("codiff-autosave-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Autosave::new(dir.clone());
        assert!(store.load().unwrap().is_none());

        let mut mask = Mask::filled(8, 8, crate::data::mask::class::BACKGROUND);
        mask.set(3, 4, crate::data::mask::class::HAIR);
        let settings = Settings { seed: 99, steps: 12, ..Settings::default() };
        let params = RunParams { prompt: "She is a teen.".into(), attributes: CaptionChoice::default(), settings: settings.clone(), model: Some("tiny".into()), edit: None };
        let image = RgbFrame { width: 2, height: 2, pixels: (0..12).collect() };
        let history = vec![HistoryEntry::new(5, params.clone(), mask.clone(), vec![image.clone()])];
        let photo = SavedPhoto {
            path: "/photos/me.jpg".into(),
            crop: Crop { x: 3, y: 0, side: 40 },
            source_text: "He is in his twenties.".into(),
            method: EditMethod::Imagic,
            alpha: 7.5,
            embed_steps: 20,
            finetune_steps: 30,
            source_mask: Some(mask.clone()),
        };
        let attributes = CaptionChoice::default();
        let work_ref = |prompt, history, save_outputs, photo| WorkRef { mask: &mask, prompt, attributes: &attributes, settings: &settings, history, save_outputs, photo };
        store.save(work_ref("She is a teen.", &history, false, Some(photo.clone()))).unwrap();

        let work = store.load().unwrap().unwrap();
        assert_eq!(work.mask, mask);
        assert_eq!(work.prompt, "She is a teen.");
        assert_eq!(work.settings, settings);
        assert_eq!(work.history.len(), 1);
        assert_eq!(work.history[0].params, params);
        assert_eq!(work.history[0].images, vec![image]);
        assert!(!work.save_outputs);
        assert_eq!(work.photo, Some(photo), "the open photo with its crop, reading and edit settings");

        store.save(work_ref("", &[], true, None)).unwrap();
        let work = store.load().unwrap().unwrap();
        assert!(work.save_outputs && work.photo.is_none());
        assert!(std::fs::read_dir(dir.join("history")).unwrap().next().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
