//! The real engine behind the studio: a loaded [`CollaborativeModel`] running
//! `pipeline::generate::run`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use image::RgbImage;

use super::worker::{Engine, EngineLoader, ModelInfo};
use crate::data::mask::Mask;
use crate::model::checkpoint::{LoadProgress, Weights};
use crate::model::collaborative::{unused_ok, CollaborativeModel, LoadOptions};
use crate::model::defaults::{ModelFiles, JUDGES_FILE};
use crate::model::precision::WeightsDtype;
use crate::model::judges::Judges;
use crate::pipeline::edit::{self, EditEvent, EditRequest};
use crate::pipeline::generate::{self, Event, GenerateError, GenerateRequest, RgbFrame};

pub struct CollaborativeEngine {
    model: CollaborativeModel,
    info: ModelInfo,
    /// Read a photo's mask and description for editing; absent beside most checkpoints.
    judges: Option<Judges>,
}

impl CollaborativeEngine {
    /// Loads a composed config and checkpoint (seconds: run it on the worker),
    /// keeping the weights in the precision `CODIFF_WEIGHTS_DTYPE` names (f32 unless set).
    pub fn load(files: &ModelFiles, progress: Arc<LoadProgress>) -> Result<Self, String> {
        let choice = crate::model::device::DeviceChoice::from_env().map_err(|e| e.to_string())?;
        let device = choice.device;
        let precision = WeightsDtype::from_env()?;
        let model = CollaborativeModel::load(&files.config, &files.weights, &device, LoadOptions { progress, precision }).map_err(|e| e.to_string())?;
        // The checkpoint's own tensor shapes give the parameter count, minus the buffers no network reads.
        let parameters = Weights::open(&files.weights)
            .map(|w| w.shapes().iter().filter(|(k, _)| !unused_ok(k)).map(|(_, s)| s.iter().product::<usize>()).sum())
            .unwrap_or(0);
        let info = ModelInfo { name: files.name(), resolution: model.image_size(), parameters, device: choice.description, device_fallback: choice.fallback };
        let judges_path = files.judges();
        let judges = judges_path.is_file().then(|| Judges::load(&judges_path, &device)).transpose().map_err(|e| format!("{}: {e}", judges_path.display()))?;
        Ok(Self { model, info, judges })
    }
}

impl Engine for CollaborativeEngine {
    fn generate(&self, request: &GenerateRequest, cancel: &AtomicBool, sink: &mut dyn FnMut(Event)) -> Result<(), String> {
        match generate::run(&self.model, request, cancel, sink) {
            Ok(_) | Err(GenerateError::Cancelled) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn describe(&self) -> ModelInfo {
        self.info.clone()
    }

    fn read_photo(&self, photo: &RgbImage) -> Result<(Mask, String), String> {
        let Some(judges) = &self.judges else {
            return Err(format!("no face parser ({JUDGES_FILE}) beside this checkpoint; paint the photo's mask and describe it yourself"));
        };
        let tensor = edit::photo_tensor(photo, &self.model.device).map_err(|e| e.to_string())?;
        edit::describe(judges, &tensor, self.model.image_size(), 0).map_err(|e| e.to_string())
    }

    fn edit(&self, request: &EditRequest, cancel: &AtomicBool, sink: &mut dyn FnMut(EditEvent)) -> Result<Vec<(f64, RgbFrame)>, String> {
        match edit::run(&self.model, self.judges.as_ref(), request, cancel, sink) {
            Ok(output) => Ok(output.images),
            Err(GenerateError::Cancelled) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A worker job that loads `files`, labelled with the weights' file name.
pub fn loader(files: ModelFiles) -> (String, EngineLoader) {
    let label = files.weights.file_name().map_or_else(|| files.weights.display().to_string(), |n| n.to_string_lossy().into_owned());
    let load: EngineLoader = Box::new(move |progress| CollaborativeEngine::load(&files, progress).map(|e| Arc::new(e) as Arc<dyn super::worker::Engine>));
    (label, load)
}

/// The loader for the models the studio opens with: `CODIFF_CONFIG` + `CODIFF_CKPT`
/// when both are set, else the default models; the error says how to get some.
pub fn startup_loader() -> Result<(String, EngineLoader), String> {
    let from_env = |k: &str| std::env::var_os(k).map(std::path::PathBuf::from);
    let files = match (from_env("CODIFF_CONFIG"), from_env("CODIFF_CKPT")) {
        (Some(config), Some(weights)) => ModelFiles { config, weights },
        _ => ModelFiles::default_models().map_err(|e| e.to_string())?,
    };
    for path in [&files.config, &files.weights] {
        if !Path::new(path).is_file() {
            return Err(format!("{} does not exist; check CODIFF_CONFIG and CODIFF_CKPT", path.display()));
        }
    }
    Ok(loader(files))
}
