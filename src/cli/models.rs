//! Which model a subcommand runs, and which judges score it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model::collaborative::CollaborativeModel;
use crate::model::defaults::ModelFiles;
use crate::model::judges::Judges;

/// Which composed model a subcommand runs: an original config with its
/// checkpoint, or the default models in models/.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The composed model's YAML config (original format); default: the models in models/.
    #[arg(long, requires = "ckpt")]
    pub config: Option<PathBuf>,
    /// Its weights: a Lightning .ckpt or a .safetensors file.
    #[arg(long, requires = "config")]
    pub ckpt: Option<PathBuf>,
}

impl ModelArgs {
    pub fn files(&self) -> anyhow::Result<ModelFiles> {
        Ok(match (&self.config, &self.ckpt) {
            (Some(config), Some(ckpt)) => ModelFiles { config: config.clone(), weights: ckpt.clone() },
            _ => ModelFiles::default_models()?,
        })
    }
}

/// A composed model and the judges that score and read its images.
#[derive(Debug, Args)]
pub struct JudgedModelArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The judges; default: judges.safetensors beside the weights (models/ holds the default models' own).
    #[arg(long)]
    pub judges: Option<PathBuf>,
}

impl JudgedModelArgs {
    /// The model's files and its judges' file.
    pub fn files(&self) -> anyhow::Result<(ModelFiles, PathBuf)> {
        let files = self.model.files()?;
        let judges = self.judges.clone().unwrap_or_else(|| files.judges());
        Ok((files, judges))
    }

    /// The model and its judges, which must be there.
    pub fn load(&self) -> anyhow::Result<(CollaborativeModel, Judges)> {
        let (files, judges_path) = self.files()?;
        anyhow::ensure!(judges_path.is_file(), "no judges at {}; name them with --judges", judges_path.display());
        let device = super::device()?;
        let model = CollaborativeModel::load(&files.config, &files.weights, &device, Default::default())?;
        let judges = Judges::load(&judges_path, &device).with_context(|| format!("could not load the judges from {}", judges_path.display()))?;
        Ok((model, judges))
    }
}
