//! The golden directory: where it is, what it holds, and how results are compared.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use codiff::data::mask::Mask;
use codiff::model::collaborative::{CollaborativeModel, LoadOptions};
use codiff::model::config::ModelConfig;
use codiff::model::precision::WeightsDtype;

/// Relative error allowed for one forward pass (float32, CPU).
pub const FORWARD_TOLERANCE: f64 = 1e-4;
/// Relative error allowed for a whole sampling trajectory and its decoded image.
pub const TRAJECTORY_TOLERANCE: f64 = 1e-3;
/// Relative error allowed for any output of a model with f16 weights (`--weights-dtype f16`).
pub const HALF_PRECISION_TOLERANCE: f64 = 1e-2;

pub struct Golden {
    pub dir: PathBuf,
    /// Where the models run and the golden tensors live: the device
    /// `CODIFF_DEVICE` and the build call for, as in the studio.
    pub device: Device,
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
    composed: OnceLock<CollaborativeModel>,
    composed_f16: OnceLock<CollaborativeModel>,
}

impl Golden {
    /// The golden directory, loaded once per test binary. None (the test is
    /// skipped, saying so) when it does not exist; under CI=true that fails.
    pub fn get() -> Option<&'static Golden> {
        static GOLDEN: OnceLock<Option<Golden>> = OnceLock::new();
        GOLDEN.get_or_init(Golden::load).as_ref()
    }

    fn load() -> Option<Self> {
        let dir = match std::env::var_os("CODIFF_GOLDEN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"),
        };
        if !dir.join("expected.safetensors").is_file() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "golden directory {} is missing (CI=true requires it)",
                dir.display()
            );
            eprintln!("skipped: no golden directory at {} (set CODIFF_GOLDEN_DIR)", dir.display());
            return None;
        }
        let choice = codiff::model::device::DeviceChoice::from_env().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("golden tests on {}", choice.description);
        let device = choice.device;
        let path = dir.join("expected.safetensors");
        let tensors = candle_core::safetensors::load(&path, &device).expect("expected.safetensors is readable");
        let bytes = std::fs::read(&path).expect("expected.safetensors is readable");
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
        let metadata = header.metadata().clone().unwrap_or_default();
        Some(Self { dir, device, tensors, metadata, composed: OnceLock::new(), composed_f16: OnceLock::new() })
    }

    pub fn tensor(&self, name: &str) -> &Tensor {
        self.try_tensor(name).unwrap_or_else(|| panic!("expected.safetensors lacks {name}"))
    }

    pub fn try_tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn meta(&self, key: &str) -> &str {
        self.metadata.get(key).unwrap_or_else(|| panic!("expected.safetensors metadata lacks {key}"))
    }

    /// The captions the text contexts were computed for (one per batch item).
    pub fn captions(&self) -> Vec<String> {
        serde_json::from_str(self.meta("captions_for_text_context")).expect("captions are a JSON list")
    }

    pub fn mask(&self) -> Mask {
        Mask::load(self.dir.join(self.meta("mask_png"))).expect("golden mask loads")
    }

    /// The timesteps T of every `{prefix}.t{T}.eps`, sorted.
    pub fn timesteps_under(&self, prefix: &str) -> Vec<usize> {
        let mut ts: Vec<usize> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix)?.strip_prefix(".t")?.strip_suffix(".eps")?.parse().ok())
            .collect();
        ts.sort_unstable();
        ts
    }

    /// Every config in the directory with the checkpoint of the same stem.
    fn configs(&self) -> Vec<(PathBuf, ModelConfig, PathBuf)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).expect("golden directory lists") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let config = ModelConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let ckpt = ["ckpt", "safetensors"].iter().map(|ext| path.with_extension(ext)).find(|p| p.is_file());
                if let Some(ckpt) = ckpt {
                    found.push((path, config, ckpt));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// The composed model, loaded once.
    pub fn composed(&self) -> &CollaborativeModel {
        self.composed.get_or_init(|| self.load_composed(WeightsDtype::F32))
    }

    /// The composed model with its weights kept in f16, loaded once.
    pub fn composed_f16(&self) -> &CollaborativeModel {
        self.composed_f16.get_or_init(|| self.load_composed(WeightsDtype::F16))
    }

    fn load_composed(&self, precision: WeightsDtype) -> CollaborativeModel {
        let (config, _, ckpt) = self
            .configs()
            .into_iter()
            .find(|(_, c, _)| matches!(c, ModelConfig::Composed(_)))
            .expect("the golden directory holds a composed config with its checkpoint");
        CollaborativeModel::load(&config, &ckpt, &self.device, LoadOptions { precision, ..Default::default() })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// (config, checkpoint) of every uni-modal model in the directory.
    pub fn unimodal_models(&self) -> Vec<(PathBuf, PathBuf)> {
        self.configs()
            .into_iter()
            .filter(|(_, c, _)| matches!(c, ModelConfig::Ldm(_)))
            .map(|(config, _, ckpt)| (config, ckpt))
            .collect()
    }
}

/// ||got - want|| / ||want||, in f64, wherever the two were computed.
pub fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
    codiff::model::precision::relative_error(got, want).expect("same shape")
}

/// Fails with the tensor's name and error when shapes differ or the relative error exceeds `tolerance`.
pub fn assert_close(name: &str, got: &Tensor, want: &Tensor, tolerance: f64) {
    assert_eq!(got.dims(), want.dims(), "{name}: shape");
    let err = relative_error(got, want);
    assert!(err < tolerance, "{name}: relative error {err:.3e} exceeds {tolerance:.0e}");
    eprintln!("{name}: relative error {err:.2e}");
}
