//! Checkpoints of random weights, for measuring speed and memory of an
//! architecture whose trained weights are not on this machine (the speed does
//! not depend on the values).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::checkpoint::StrictLoader;
use super::collaborative::{CollaborativeModel, ModelError};
use super::config::ComposedConfig;

/// A checkpoint of random weights for `config`, with every key the composed
/// model reads, as float32 safetensors; written once into the temporary
/// directory (about 4.3 GB for the full-size 256 model) and reused. The file
/// name carries a hash of the keys and shapes, so a changed architecture gets a new file.
pub fn random_checkpoint(config: &Path) -> Result<PathBuf, ModelError> {
    use std::hash::{Hash, Hasher};
    let recorder = StrictLoader::recording();
    // Zero-cost stand-in tensors: this only records what the model asks for.
    CollaborativeModel::build(recorder.var_builder(DType::F32, &Device::Cpu), ComposedConfig::load(config)?, &Device::Cpu)?;
    let shapes = recorder.requested();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    shapes.hash(&mut hasher);
    let stem = config.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let dir = std::env::temp_dir().join("codiff-bench");
    let path = dir.join(format!("{stem}-random-{:016x}.safetensors", hasher.finish()));
    if path.is_file() {
        return Ok(path);
    }
    let cannot = |what: &str, path: &Path, e: String| candle_core::Error::Msg(format!("cannot {what} {}: {e}", path.display()));
    std::fs::create_dir_all(&dir).map_err(|e| cannot("create", &dir, e.to_string()))?;
    let parameters: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
    eprintln!("writing {} ({:.1} GB of random float32 weights; once)", path.display(), parameters as f64 * 4e-9);
    let tensors = shapes.into_iter().enumerate().map(|(i, (name, shape))| {
        let fill = Fill::for_tensor(&name, &shape);
        (name, RandomTensor { shape, seed: i as u64, fill })
    });
    // The writer asks each tensor for its bytes in turn: one tensor is in memory at a time.
    // It writes beside the file, so that an interrupted run leaves no truncated file to reuse.
    let partial = crate::data::output::partial_path(&path);
    safetensors::serialize_to_file(tensors, None, &partial).map_err(|e| cannot("write", &partial, e.to_string()))?;
    std::fs::rename(&partial, &path).map_err(|e| cannot("write", &path, e.to_string()))?;
    Ok(path)
}

/// One tensor of a random checkpoint, drawn when the writer asks for its bytes.
struct RandomTensor {
    shape: Vec<usize>,
    seed: u64,
    fill: Fill,
}

#[derive(Debug, PartialEq)]
enum Fill {
    Constant(f32),
    /// Uniform in [-bound, bound].
    Uniform(f32),
}

impl Fill {
    /// Vectors named `weight` (the norms' scales) one, other vectors (biases)
    /// zero, matrices and kernels in PyTorch's default range (1 / sqrt(fan-in)),
    /// so that activations stay finite.
    fn for_tensor(name: &str, shape: &[usize]) -> Self {
        match shape {
            [_] if name.ends_with(".weight") => Self::Constant(1.0),
            [_] => Self::Constant(0.0),
            [_, rest @ ..] => Self::Uniform(1.0 / (rest.iter().product::<usize>().max(1) as f32).sqrt()),
            [] => Self::Constant(0.0),
        }
    }
}

impl safetensors::View for RandomTensor {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        use rand::{Rng, SeedableRng};
        let n = self.shape.iter().product::<usize>();
        let mut bytes = Vec::with_capacity(n * 4);
        match self.fill {
            Fill::Constant(v) => (0..n).for_each(|_| bytes.extend_from_slice(&v.to_le_bytes())),
            Fill::Uniform(bound) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                (0..n).for_each(|_| bytes.extend_from_slice(&rng.random_range(-bound..=bound).to_le_bytes()));
            }
        }
        std::borrow::Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_checkpoint_loads_strictly_and_is_written_once() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/codiff.yaml");
        let path = random_checkpoint(&config).unwrap();
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(random_checkpoint(&config).unwrap(), path, "the same architecture reuses its file");
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), written, "and does not write it again");
        CollaborativeModel::load(&config, &path, &Device::Cpu, Default::default()).expect("every key the model reads, and no other");
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let norm = &tensors["first_stage_model.encoder.norm_out.weight"];
        assert!(norm.to_vec1::<f32>().unwrap().iter().all(|&v| v == 1.0), "norm scales are one");
    }

    #[test]
    fn kernels_are_drawn_in_the_fan_in_range() {
        assert_eq!(Fill::for_tensor("a.norm.weight", &[8]), Fill::Constant(1.0));
        assert_eq!(Fill::for_tensor("a.conv.bias", &[8]), Fill::Constant(0.0));
        assert_eq!(Fill::for_tensor("a.conv.weight", &[8, 4, 3, 3]), Fill::Uniform(1.0 / 6.0));
        let tensor = RandomTensor { shape: vec![8, 4, 3, 3], seed: 1, fill: Fill::Uniform(1.0 / 6.0) };
        let bytes = safetensors::View::data(&tensor);
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(values.len(), 288);
        assert!(values.iter().all(|v| v.abs() <= 1.0 / 6.0) && values.iter().any(|&v| v != values[0]));
    }
}
