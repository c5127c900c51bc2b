//! Checkpoint files: PyTorch Lightning `.ckpt` (zip + pickle, weights under
//! `state_dict`) and `.safetensors` (memory-mapped), with strict loading.
//!
//! A `.safetensors` file is mapped, and each tensor's pages are handed back to
//! the kernel as soon as the tensor is copied out: otherwise the mapped pages
//! stay resident beside the copies until the map closes, and loading the
//! full-size 256 model (4.3 GB of f32) peaks at twice its weights.
//!
//! A `.ckpt` is read by our own restricted pickle reader ([`super::torch_zip`]),
//! which decodes the pickle as inert data, never imports or runs anything from
//! the file, and bounds what a hostile file can make it allocate; entries
//! other than `state_dict` (optimizer states, callbacks, hyper-parameters) are
//! skipped.
//!
//! Every tensor is checked as it is copied out: a weight holding NaN or an
//! infinity is refused by name (it would only ever draw a black image), and a
//! safetensors dtype the networks cannot use is converted where that loses
//! nothing and refused by name otherwise.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use thiserror::Error;

use super::precision::{to_storage, WeightsDtype};

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot open checkpoint {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "{path} is neither a PyTorch checkpoint (.ckpt, a zip archive) nor a .safetensors file"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path} holds no tensors under `state_dict`; is it a Lightning checkpoint of this model?")]
    Empty { path: PathBuf },
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: tensor {name} {reason}")]
    Tensor { path: PathBuf, name: String, reason: String },
}

/// Where a checkpoint and the architecture it is loaded into disagree.
#[derive(Debug, Default)]
pub struct Mismatch {
    pub file: String,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// (key, shape in the file, shape the architecture asks for)
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 5;
        writeln!(f, "{} does not fit the model its config describes:", self.file)?;
        let list = |f: &mut std::fmt::Formatter<'_>, what: &str, items: Vec<String>| -> std::fmt::Result {
            if items.is_empty() {
                return Ok(());
            }
            write!(f, "  {} {what}: {}", items.len(), items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "))?;
            if items.len() > SHOWN {
                write!(f, ", ...")?;
            }
            writeln!(f)
        };
        list(f, "missing keys", self.missing.clone())?;
        list(f, "unexpected keys", self.unexpected.clone())?;
        let shapes = self
            .wrong_shape
            .iter()
            .map(|(k, file, want)| format!("{k} is {file:?} in the file, the config needs {want:?}"))
            .collect();
        list(f, "shape mismatches", shapes)?;
        write!(f, "Check that the config and the checkpoint belong together.")
    }
}

enum Store {
    Tensors(HashMap<String, Tensor>),
    Mmap(MappedSafetensors),
}

/// Linux maps up to this much around a faulting page of a file mapping (its default `fault_around_bytes`).
const FAULT_AROUND_BYTES: usize = 64 * 1024;

/// A memory-mapped safetensors file that releases each tensor's pages once it is copied out.
struct MappedSafetensors {
    mmap: memmap2::Mmap,
    /// Where the tensor data starts: after the 8-byte length and the JSON header.
    data_start: usize,
    metadata: safetensors::tensor::Metadata,
}

impl MappedSafetensors {
    /// # Safety
    /// The file must not be modified while it is mapped.
    unsafe fn open(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // SAFETY: the caller guarantees the file is not written while mapped.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| e.to_string())?;
        Ok(Self { mmap, data_start: 8 + header_len, metadata })
    }

    fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.metadata.tensors().into_iter().map(|(k, info)| (k, info.shape.clone())).collect()
    }

    /// A copy of one tensor (None when there is no such key); its pages in the map are released afterwards.
    fn load(&self, name: &str) -> Result<Option<Tensor>, String> {
        let Some(info) = self.metadata.info(name) else { return Ok(None) };
        let (begin, end) = (self.data_start + info.data_offsets.0, self.data_start + info.data_offsets.1);
        let bytes = self.mmap.get(begin..end).ok_or("lies past the end of the file")?;
        let view = safetensors::tensor::TensorView::new(info.dtype, info.shape.clone(), bytes).map_err(|e| e.to_string())?;
        let tensor = safetensors_tensor(&view)?;
        // A page fault maps the pages around it too (the kernel's fault-around,
        // 64 kB by default), so the range released is widened to that grain.
        let begin = begin - begin % FAULT_AROUND_BYTES;
        let end = end.next_multiple_of(FAULT_AROUND_BYTES).min(self.mmap.len());
        // SAFETY: the map is read-only and file-backed, so dropped pages (the
        // widened range may reach into neighbours) are read again from the
        // file if touched later; no data is lost.
        let _ = unsafe { self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, begin, end - begin) };
        Ok(Some(tensor))
    }
}

/// A safetensors tensor in a dtype candle holds: BOOL as u8, I8 widened to
/// i16, F8_E5M2 as the f16 it is the top byte of, U64 as i64 when every value
/// fits; what cannot convert without loss is refused with its dtype named.
fn safetensors_tensor(view: &safetensors::tensor::TensorView) -> Result<Tensor, String> {
    use safetensors::Dtype;
    let (bytes, shape) = (view.data(), view.shape());
    let converted = match view.dtype() {
        Dtype::BOOL => Tensor::from_raw_buffer(bytes, DType::U8, shape, &Device::Cpu),
        Dtype::I8 => super::torch_zip::widened_i8(bytes, shape),
        Dtype::F8_E5M2 => {
            let values: Vec<half::f16> = bytes.iter().map(|&b| half::f16::from_bits(u16::from(b) << 8)).collect();
            Tensor::from_vec(values, shape, &Device::Cpu)
        }
        Dtype::U64 => {
            let values: Option<Vec<i64>> =
                bytes.chunks_exact(8).map(|c| i64::try_from(u64::from_le_bytes(c.try_into().unwrap_or_default())).ok()).collect();
            let values = values.ok_or("is stored as U64 with values above the i64 range, which cannot be read without loss")?;
            Tensor::from_vec(values, shape, &Device::Cpu)
        }
        dtype => match DType::try_from(dtype) {
            Ok(_) => view.load(&Device::Cpu),
            Err(_) => return Err(format!("is stored as {dtype:?}, which cannot be converted to a real number without loss")),
        },
    };
    converted.map_err(|e| e.to_string())
}

/// The index and value of the first NaN or infinity in a floating-point tensor.
fn first_non_finite(t: &Tensor) -> candle_core::Result<Option<(usize, f64)>> {
    use candle_core::{CpuStorage, Storage};
    fn find<T: Copy + Into<f64>>(values: &[T], finite: impl Fn(T) -> bool) -> Option<(usize, f64)> {
        values.iter().position(|&v| !finite(v)).map(|i| (i, values[i].into()))
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        return Ok(None);
    };
    Ok(match cpu {
        CpuStorage::F32(v) => find(&v[start..end], f32::is_finite),
        CpuStorage::F64(v) => find(&v[start..end], f64::is_finite),
        CpuStorage::F16(v) => find(&v[start..end], half::f16::is_finite),
        CpuStorage::BF16(v) => find(&v[start..end], half::bf16::is_finite),
        _ => None,
    })
}

/// The weights of one checkpoint file.
pub struct Weights {
    path: PathBuf,
    store: Store,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl Weights {
    /// Opens a `.ckpt` (read whole) or a `.safetensors` file (memory-mapped), telling them apart by content.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |reason: String| CheckpointError::Open { path: path.clone(), reason };
        let mut magic = [0u8; 8];
        {
            use std::io::Read;
            let mut file = std::fs::File::open(&path).map_err(|e| open_err(e.to_string()))?;
            file.read_exact(&mut magic).map_err(|e| open_err(format!("too short to be a checkpoint ({e})")))?;
        }
        if magic.starts_with(b"PK") {
            let tensors = super::torch_zip::read_state_dict(&path)
                .map_err(|e| open_err(format!("not a readable PyTorch checkpoint: {e}")))?;
            if tensors.is_empty() {
                return Err(CheckpointError::Empty { path });
            }
            let shapes = tensors.iter().map(|(k, t)| (k.clone(), t.dims().to_vec())).collect();
            return Ok(Self { path, store: Store::Tensors(tensors.into_iter().collect()), shapes });
        }
        // A safetensors file starts with the little-endian length of its JSON header.
        let header_len = u64::from_le_bytes(magic);
        if header_len > 0 && header_len < 100_000_000 {
            // SAFETY: the file is mapped read-only; the project never writes a checkpoint it is reading.
            let mmap = unsafe { MappedSafetensors::open(&path) }
                .map_err(|e| open_err(format!("not a readable safetensors file: {e}")))?;
            let shapes = mmap.shapes();
            return Ok(Self { path, store: Store::Mmap(mmap), shapes });
        }
        Err(CheckpointError::UnknownFormat { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every key with its shape, sorted.
    pub fn shapes(&self) -> &BTreeMap<String, Vec<usize>> {
        &self.shapes
    }

    /// One tensor, as stored (None when the file has no such key); refused if it holds NaN or an infinity.
    pub fn get(&self, name: &str) -> Result<Option<Tensor>, CheckpointError> {
        let tensor_err = |reason: String| CheckpointError::Tensor { path: self.path.clone(), name: name.to_string(), reason };
        let tensor = match &self.store {
            Store::Tensors(map) => map.get(name).cloned(),
            Store::Mmap(mmap) => mmap.load(name).map_err(tensor_err)?,
        };
        let Some(tensor) = tensor else { return Ok(None) };
        if let Some((index, value)) = first_non_finite(&tensor).map_err(|e| tensor_err(e.to_string()))? {
            return Err(tensor_err(format!(
                "holds {value} at flat index {index}; a weight must be a finite number (the file is damaged or the training diverged)"
            )));
        }
        Ok(Some(tensor))
    }

    /// Writes every tensor to a safetensors file (for `codiff convert`), so
    /// later loads are a memory map, each stored as `precision` keeps it (as
    /// the loader's `--weights-dtype`; f16 storage is how `models/` fits its
    /// size limit). The file is written beside `out` as `OUT.partial` and
    /// renamed into place once complete.
    pub fn save_safetensors(&self, out: impl AsRef<Path>, precision: WeightsDtype) -> Result<(), CheckpointError> {
        use safetensors::View;
        let out = out.as_ref();
        let write_err = |reason: String| CheckpointError::Write { path: out.to_path_buf(), reason };
        let mut tensors = Vec::with_capacity(self.shapes.len());
        let mut header = serde_json::Map::new();
        let mut offset = 0;
        for name in self.shapes.keys() {
            let t = self.get(name)?.ok_or_else(|| write_err(format!("cannot read tensor {name}")))?;
            // Pickled tensors may be views into shared storage; safetensors needs each on its own.
            let t = to_storage(&t, precision).and_then(|t| t.contiguous()).map_err(|e| write_err(e.to_string()))?;
            let end = offset + t.data_len();
            let entry = serde_json::json!({ "dtype": View::dtype(&t), "shape": t.dims(), "data_offsets": [offset, end] });
            header.insert(name.clone(), entry);
            offset = end;
            tensors.push(t);
        }
        let mut header = serde_json::to_vec(&header).map_err(|e| write_err(e.to_string()))?;
        // The format pads its header with spaces so that the data starts 8-byte aligned.
        header.resize(header.len().next_multiple_of(8), b' ');
        crate::data::output::write_atomically(out, |w| {
            w.write_all(&(header.len() as u64).to_le_bytes())?;
            w.write_all(&header)?;
            tensors.iter().try_for_each(|t| w.write_all(&View::data(&t)))
        })
        .map_err(|e| write_err(e.to_string()))
    }
}

/// Builds networks from [`Weights`] while recording what they ask for, so that
/// loading can be strict: every key the architecture needs must be in the file
/// with the right shape, and every key in the file must be used.
///
/// How far loading a model has come, shared with whoever shows it: weights
/// copied out of the opened checkpoint, counted in elements.
#[derive(Debug, Default)]
pub struct LoadProgress {
    loaded: AtomicU64,
    /// Zero until the checkpoint is open (a `.ckpt` is read whole first).
    total: AtomicU64,
}

impl LoadProgress {
    /// The share loaded, once the checkpoint is open.
    pub fn fraction(&self) -> Option<f32> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| (self.loaded.load(Ordering::Relaxed) as f64 / total as f64).min(1.0) as f32)
    }
}

/// Missing or mis-shaped tensors are replaced by zeros while building, so one
/// pass collects every problem; [`StrictLoader::finish`] then reports them all.
#[derive(Clone)]
pub struct StrictLoader {
    inner: Arc<LoaderState>,
}

struct LoaderState {
    weights: Option<Arc<Weights>>,
    requested: Mutex<BTreeMap<String, Vec<usize>>>,
    progress: Arc<LoadProgress>,
    /// The precision f32 weights are kept in once copied out.
    precision: WeightsDtype,
    /// The first tensor that could not be copied out; building goes on with
    /// zeros in its place and [`StrictLoader::finish`] reports it.
    failure: Mutex<Option<CheckpointError>>,
}

impl StrictLoader {
    pub fn new(weights: Arc<Weights>) -> Self {
        Self::reporting(weights, Arc::default())
    }

    /// A loader that counts the elements it copies out in `progress`.
    pub fn reporting(weights: Arc<Weights>, progress: Arc<LoadProgress>) -> Self {
        Self::keeping(weights, progress, WeightsDtype::F32)
    }

    /// [`Self::reporting`], keeping the weights it hands out in `precision`
    /// (the networks' layers widen them to f32 as they run).
    pub fn keeping(weights: Arc<Weights>, progress: Arc<LoadProgress>, precision: WeightsDtype) -> Self {
        let total: u64 = weights.shapes.values().map(|s| s.iter().product::<usize>() as u64).sum();
        progress.total.store(total.max(1), Ordering::Relaxed);
        Self {
            inner: Arc::new(LoaderState { weights: Some(weights), requested: Mutex::default(), progress, precision, failure: Mutex::default() }),
        }
    }

    /// A loader without weights: builds an architecture on cheap zero tensors and
    /// records the keys and shapes it asks for.
    pub fn recording() -> Self {
        Self {
            inner: Arc::new(LoaderState {
                weights: None,
                requested: Mutex::default(),
                progress: Arc::default(),
                precision: WeightsDtype::F32,
                failure: Mutex::default(),
            }),
        }
    }

    /// A `VarBuilder` whose tensors come from this loader, converted to `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Every key requested so far, with the shape the architecture wanted.
    pub fn requested(&self) -> BTreeMap<String, Vec<usize>> {
        self.inner.requested.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Compares what was requested with what the file holds. Keys for which
    /// `unused_ok` returns true may sit in the file unrequested (schedule
    /// buffers, layers the original keeps but never calls).
    pub fn finish(&self, unused_ok: impl Fn(&str) -> bool) -> Result<(), CheckpointError> {
        let Some(weights) = &self.inner.weights else { return Ok(()) };
        if let Some(failure) = self.inner.failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(failure);
        }
        let requested = self.requested();
        let mut report = Mismatch { file: weights.path.display().to_string(), ..Default::default() };
        for (key, want) in &requested {
            match weights.shapes.get(key) {
                None => report.missing.push(key.clone()),
                Some(have) if have != want => report.wrong_shape.push((key.clone(), have.clone(), want.clone())),
                Some(_) => {}
            }
        }
        report.unexpected =
            weights.shapes.keys().filter(|k| !requested.contains_key(*k) && !unused_ok(k)).cloned().collect();
        if report.missing.is_empty() && report.unexpected.is_empty() && report.wrong_shape.is_empty() {
            Ok(())
        } else {
            Err(CheckpointError::Mismatch(Box::new(report)))
        }
    }

    fn fetch(&self, shape: &Shape, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Ok(mut requested) = self.inner.requested.lock() {
            requested.insert(name.to_string(), shape.dims().to_vec());
        }
        let stored = match self.inner.weights.as_ref().map(|w| w.get(name)) {
            Some(Ok(tensor)) => tensor.filter(|t| t.shape() == shape),
            Some(Err(e)) => {
                if let Ok(mut failure) = self.inner.failure.lock() {
                    failure.get_or_insert(e);
                }
                None
            }
            None => None,
        };
        match stored {
            Some(t) => {
                let t = t.to_dtype(dtype)?;
                // Narrowed on the CPU, before the copy to the device: it moves half the bytes.
                let t = if dtype == DType::F32 { to_storage(&t, self.inner.precision)? } else { t };
                let t = t.to_device(dev)?;
                self.inner.progress.loaded.fetch_add(t.elem_count() as u64, Ordering::Relaxed);
                Ok(t)
            }
            // A stride-0 view: building a full-size architecture costs no memory.
            None => Tensor::zeros((), dtype, dev)?.broadcast_as(shape),
        }
    }
}

impl SimpleBackend for StrictLoader {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.fetch(&s, name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let shape = self.inner.weights.as_ref().and_then(|w| w.shapes.get(name).cloned());
        match shape {
            Some(dims) => self.fetch(&Shape::from(dims), name, dtype, dev),
            None => candle_core::bail!("checkpoint has no tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.weights.as_ref().is_some_and(|w| w.shapes.contains_key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `tensors` to a fresh temporary safetensors file; returns (its folder, its path).
    fn saved(tag: &str, tensors: &HashMap<String, Tensor>) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("codiff-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weights.safetensors");
        candle_core::safetensors::save(tensors, &path).unwrap();
        (dir, path)
    }

    /// Resident kilobytes of this process's mappings of `path` (from /proc/self/smaps).
    #[cfg(target_os = "linux")]
    fn mapped_rss_kb(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = path.to_string_lossy();
        let mut inside = false;
        let mut total = 0;
        for line in smaps.lines() {
            // A mapping's header line starts with its address range ("7f..-7f.. r--s ...").
            if line.split_whitespace().next().is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-')) {
                inside = line.ends_with(name.as_ref());
            } else if inside {
                if let Some(kb) = line.strip_prefix("Rss:") {
                    total += kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
                }
            }
        }
        total
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn copied_tensors_leave_no_mapped_pages_resident() {
        // 16 tensors of 1 MB, with odd sizes so that tensors share pages.
        let tensors: HashMap<String, Tensor> = (0..16)
            .map(|i| (format!("layer{i}.weight"), Tensor::arange(0f32, (262_144 + 7 * i) as f32, &Device::Cpu).unwrap()))
            .collect();
        let (dir, path) = saved("mapped-release", &tensors);
        let weights = Weights::open(&path).unwrap();
        for (name, want) in &tensors {
            let got = weights.get(name).unwrap().unwrap();
            assert_eq!(got.to_vec1::<f32>().unwrap(), want.to_vec1::<f32>().unwrap(), "{name}");
        }
        let resident_kb = mapped_rss_kb(&path);
        drop(weights);
        std::fs::remove_dir_all(&dir).unwrap();
        // Only the header's page may stay; the tensors' 16 MB must not.
        assert!(resident_kb <= 64, "{resident_kb} kB of the 16 MB file stay resident after copying every tensor out");
    }

    #[test]
    fn a_half_precision_loader_keeps_matrices_in_f16_and_vectors_in_f32() {
        let weight = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
        let bias = Tensor::new(&[0.1f32, 0.2, 0.3], &Device::Cpu).unwrap();
        let tensors = HashMap::from([("layer.weight".to_string(), weight.clone()), ("layer.bias".to_string(), bias.clone())]);
        let (dir, path) = saved("loader-f16", &tensors);
        let weights = Arc::new(Weights::open(&path).unwrap());
        for (precision, matrix_dtype) in [(WeightsDtype::F32, DType::F32), (WeightsDtype::F16, DType::F16)] {
            let loader = StrictLoader::keeping(weights.clone(), Arc::default(), precision);
            let vb = loader.var_builder(DType::F32, &Device::Cpu).pp("layer");
            let got_weight = vb.get((3, 4), "weight").unwrap();
            let got_bias = vb.get(3, "bias").unwrap();
            assert_eq!((got_weight.dtype(), got_bias.dtype()), (matrix_dtype, DType::F32), "{precision:?}");
            // Small integers are exact in f16.
            let widened = crate::model::precision::widen(&got_weight).unwrap();
            assert_eq!(widened.to_vec2::<f32>().unwrap(), weight.to_vec2::<f32>().unwrap());
            loader.finish(|_| false).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_half_precision_copy_stores_matrices_as_f16_and_vectors_as_f32() {
        let weight = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
        let huge = Tensor::new(&[[1e5f32, 1.0]], &Device::Cpu).unwrap();
        let bias = Tensor::new(&[0.1f32, 0.2, 0.3], &Device::Cpu).unwrap();
        let tensors = HashMap::from([("w".to_string(), weight.clone()), ("huge".to_string(), huge), ("b".to_string(), bias.clone())]);
        let (dir, path) = saved("save-f16", &tensors);
        let out = dir.join("half.safetensors");
        Weights::open(&path).unwrap().save_safetensors(&out, WeightsDtype::F16).unwrap();
        let half = Weights::open(&out).unwrap();
        let dtype = |name: &str| half.get(name).unwrap().unwrap().dtype();
        // A matrix beyond f16's range stays f32, as the loader keeps it.
        assert_eq!((dtype("w"), dtype("huge"), dtype("b")), (DType::F16, DType::F32, DType::F32));
        let widened = crate::model::precision::widen(&half.get("w").unwrap().unwrap()).unwrap();
        assert_eq!(widened.to_vec2::<f32>().unwrap(), weight.to_vec2::<f32>().unwrap());
        assert_eq!(half.get("b").unwrap().unwrap().to_vec1::<f32>().unwrap(), bias.to_vec1::<f32>().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tensor_read_twice_is_read_again_from_the_file() {
        let tensor = Tensor::arange(0f32, 5000.0, &Device::Cpu).unwrap().reshape((50, 100)).unwrap();
        let (dir, path) = saved("mapped-twice", &HashMap::from([("w".to_string(), tensor.clone())]));
        let weights = Weights::open(&path).unwrap();
        for _ in 0..2 {
            let got = weights.get("w").unwrap().unwrap();
            assert_eq!(got.to_vec2::<f32>().unwrap(), tensor.to_vec2::<f32>().unwrap());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
