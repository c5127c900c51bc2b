//! Where the models come from when the person names none: the default models
//! this project trains (see models/README.md), shipped in `models/`.

use std::path::PathBuf;

use thiserror::Error;

/// A composed model's config and weights on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
}

#[derive(Debug, Error)]
#[error(
    "no default models yet: {dir} has no codiff.yaml with codiff.safetensors (this project has not \
     trained them yet); name a model with --config and --ckpt, e.g. the released 256_codiff_mask_text"
)]
pub struct NoDefaultModels {
    dir: String,
}

/// The judges' file name: a model's folder holds its judges beside its weights.
pub const JUDGES_FILE: &str = "judges.safetensors";

impl ModelFiles {
    /// Where this model's judges (face parser and attribute judge) are: beside its weights.
    pub fn judges(&self) -> PathBuf {
        self.weights.with_file_name(JUDGES_FILE)
    }

    /// The model's name: its weights' file stem, as results record it.
    pub fn name(&self) -> String {
        self.weights.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
    }

    /// The folder the default models live in: `models/` of this source tree.
    pub fn default_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    /// The default composed model, if it has been trained.
    pub fn default_models() -> Result<Self, NoDefaultModels> {
        let dir = Self::default_dir();
        let files = Self { config: dir.join("codiff.yaml"), weights: dir.join("codiff.safetensors") };
        if files.config.is_file() && files.weights.is_file() {
            Ok(files)
        } else {
            Err(NoDefaultModels { dir: dir.display().to_string() })
        }
    }
}
