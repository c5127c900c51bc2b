//! The tensors of a PyTorch zip checkpoint (`torch.save` since 1.6, as
//! Lightning writes them), read through the restricted [`pickle`] reader.
//!
//! Only these globals mean anything: `collections.OrderedDict` (in the
//! reader), `torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`,
//! `torch._tensor._rebuild_from_type_v2` and the `torch.*Storage` types.
//! Any other global may sit outside `state_dict` (Lightning keeps callbacks
//! and hyper-parameters there) as an inert name; inside it, it is refused.
//!
//! Every declared shape, stride and offset is checked against the bytes its
//! storage really has before anything is allocated, every entry read is read
//! to its end so that the zip's CRC is checked, and the tensors together may
//! not take more than a few times the file's size.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use thiserror::Error;

use super::pickle::{self, Node, Pickle, PickleError, Value};

#[derive(Debug, Error)]
pub enum TorchZipError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a readable zip archive ({0})")]
    Zip(#[from] zip::result::ZipError),
    #[error("{0}")]
    Pickle(#[from] PickleError),
    #[error("the archive holds {0} data.pkl entries; a PyTorch checkpoint holds exactly one")]
    PickleCount(usize),
    #[error("entry {entry} {reason}")]
    Entry { entry: String, reason: String },
    #[error("its pickle is not a dict; is it a PyTorch checkpoint?")]
    NotADict,
    #[error("its state_dict is not a dict of tensors")]
    StateDictNotADict,
    #[error("state_dict entry {key}: {reason}")]
    Tensor { key: String, reason: String },
    #[error("its tensors would take {need} bytes, more than {allowed} for a file of {file} bytes")]
    TooLarge { need: u128, allowed: u128, file: u64 },
}

/// A checkpoint's pickle is a few megabytes; more is refused before it is read.
pub const MAX_PICKLE_BYTES: u64 = 32 << 20;

/// The tensors may take this many times the file's size (views that share a
/// storage, such as tied weights, are copied out each on their own).
const TENSOR_BYTES_PER_FILE_BYTE: u128 = 4;

/// Deepest chain of rebuild calls around one tensor (parameter of a subclass of a tensor).
const MAX_REBUILD_WRAPPERS: usize = 4;

/// Highest rank a tensor may declare.
const MAX_RANK: usize = 16;

/// How a storage's bytes become a tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StorageKind {
    /// Read as is.
    Native(DType),
    /// `torch.CharStorage` (int8), widened losslessly to i16.
    Int8,
    /// `torch.BoolStorage`, one byte of 0 or 1 each, kept as u8.
    Bool,
}

impl StorageKind {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Native(DType::F32),
            "DoubleStorage" => Self::Native(DType::F64),
            "HalfStorage" => Self::Native(DType::F16),
            "BFloat16Storage" => Self::Native(DType::BF16),
            "ByteStorage" => Self::Native(DType::U8),
            "LongStorage" => Self::Native(DType::I64),
            "IntStorage" => Self::Native(DType::I32),
            "ShortStorage" => Self::Native(DType::I16),
            "CharStorage" => Self::Int8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    fn bytes_per_value(self) -> usize {
        match self {
            Self::Native(dtype) => dtype.size_in_bytes(),
            Self::Int8 | Self::Bool => 1,
        }
    }

    fn dtype(self) -> DType {
        match self {
            Self::Native(dtype) => dtype,
            Self::Int8 => DType::I16,
            Self::Bool => DType::U8,
        }
    }

    /// A 1-D tensor of the storage's values.
    fn tensor(self, bytes: &[u8]) -> candle_core::Result<Tensor> {
        let n = bytes.len() / self.bytes_per_value();
        match self {
            Self::Native(dtype) => Tensor::from_raw_buffer(bytes, dtype, &[n], &Device::Cpu),
            Self::Bool => Tensor::from_raw_buffer(bytes, DType::U8, &[n], &Device::Cpu),
            Self::Int8 => widened_i8(bytes, n),
        }
    }
}

/// int8 values widened losslessly to i16, the narrowest signed type candle holds.
pub(super) fn widened_i8(bytes: &[u8], shape: impl Into<candle_core::Shape>) -> candle_core::Result<Tensor> {
    Tensor::from_vec(bytes.iter().map(|&b| i16::from(b as i8)).collect::<Vec<_>>(), shape, &Device::Cpu)
}

/// What `_rebuild_tensor_v2` declares: a view into one storage.
#[derive(Debug, Clone)]
struct TensorView {
    storage: String,
    kind: StorageKind,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorView {
    fn numel(&self) -> Option<usize> {
        self.size.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Checks that every element lies inside a storage of `values` values, and
    /// that the view has no more elements than the storage (no broadcast bombs).
    fn check_within(&self, values: usize) -> Result<(), String> {
        let numel = self.numel().ok_or_else(|| format!("its shape {:?} has more values than a computer can hold", self.size))?;
        if numel == 0 {
            return Ok(());
        }
        if numel > values {
            return Err(format!("its shape {:?} declares {numel} values but its storage holds {values}", self.size));
        }
        let last = self
            .size
            .iter()
            .zip(&self.stride)
            .try_fold(self.offset, |end, (&d, &s)| (d - 1).checked_mul(s).and_then(|span| end.checked_add(span)));
        match last {
            Some(last) if last < values => Ok(()),
            _ => Err(format!(
                "shape {:?}, stride {:?} and offset {} reach past the {values} values of its storage",
                self.size, self.stride, self.offset
            )),
        }
    }

    fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.size.iter().zip(&self.stride).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// This view cut out of `storage`, a 1-D tensor already checked with [`Self::check_within`].
    fn cut(&self, storage: &Tensor) -> candle_core::Result<Tensor> {
        let numel = self.size.iter().product();
        if numel == 0 {
            return Tensor::zeros(self.size.as_slice(), storage.dtype(), &Device::Cpu);
        }
        if self.is_contiguous() {
            return storage.narrow(0, self.offset, numel)?.reshape(self.size.as_slice());
        }
        // A strided view (a transposed weight, say): gather its elements in order.
        let mut index = Vec::with_capacity(numel);
        let mut at = vec![0usize; self.size.len()];
        for _ in 0..numel {
            index.push((self.offset + at.iter().zip(&self.stride).map(|(i, s)| i * s).sum::<usize>()) as i64);
            for dim in (0..at.len()).rev() {
                at[dim] += 1;
                if at[dim] < self.size[dim] {
                    break;
                }
                at[dim] = 0;
            }
        }
        let index = Tensor::from_vec(index, numel, &Device::Cpu)?;
        storage.index_select(&index, 0)?.reshape(self.size.as_slice())
    }
}

/// Every tensor under `state_dict` (or at the top level when there is no such
/// key), by key; when a key is repeated the last value wins, as in PyTorch.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, TorchZipError> {
    let file = std::fs::File::open(path)?;
    let file_len = file.metadata()?.len();
    read_state_dict_from(std::io::BufReader::new(file), file_len)
}

/// [`read_state_dict`] for a checkpoint of `file_len` bytes in `reader`.
pub fn read_state_dict_from<R: Read + Seek>(reader: R, file_len: u64) -> Result<Vec<(String, Tensor)>, TorchZipError> {
    let mut archive = zip::ZipArchive::new(reader)?;
    let names: Vec<String> = archive.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let pickles: Vec<&String> = names.iter().filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl")).collect();
    let [pkl_name] = pickles.as_slice() else { return Err(TorchZipError::PickleCount(pickles.len())) };
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or_default().to_string();
    if names.contains(&format!("{prefix}byteorder")) {
        let order = read_entry(&mut archive, &format!("{prefix}byteorder"), 16)?;
        if order != b"little" {
            return Err(TorchZipError::Entry { entry: format!("{prefix}byteorder"), reason: "says the tensors are big-endian; only little-endian checkpoints are read".into() });
        }
    }
    let pickle = pickle::parse(&read_entry(&mut archive, pkl_name, MAX_PICKLE_BYTES)?)?;

    let views = tensor_views(&pickle)?;
    let mut by_storage: HashMap<&str, Vec<(&String, &TensorView)>> = HashMap::new();
    for (key, view) in &views {
        by_storage.entry(view.storage.as_str()).or_default().push((key, view));
    }
    // Every view is checked against its storage's real size before any storage is read.
    for (storage, users) in &by_storage {
        let entry = format!("{prefix}data/{storage}");
        let tensor_err = |reason: String| TorchZipError::Tensor { key: users[0].0.clone(), reason };
        let declared = archive.by_name(&entry).map_err(|e| tensor_err(format!("its storage {entry} cannot be opened ({e})")))?.size();
        let kind = users[0].1.kind;
        if users.iter().any(|(_, v)| v.kind != kind) {
            return Err(tensor_err(format!("its storage {storage} is declared with two different types")));
        }
        let values = usize::try_from(declared / kind.bytes_per_value() as u64).unwrap_or(usize::MAX);
        for (key, view) in users {
            view.check_within(values).map_err(|reason| TorchZipError::Tensor { key: (*key).clone(), reason })?;
        }
    }
    // Checked sizes, so the products cannot overflow.
    let need: u128 = views.values().map(|v| v.size.iter().product::<usize>() as u128 * v.kind.dtype().size_in_bytes() as u128).sum();
    let allowed = TENSOR_BYTES_PER_FILE_BYTE * file_len as u128;
    if need > allowed {
        return Err(TorchZipError::TooLarge { need, allowed, file: file_len });
    }

    let mut tensors = Vec::with_capacity(views.len());
    for (storage, users) in by_storage {
        let entry = format!("{prefix}data/{storage}");
        let kind = users[0].1.kind;
        let bytes = read_entry(&mut archive, &entry, file_len)?;
        let whole = &bytes[..bytes.len() - bytes.len() % kind.bytes_per_value()];
        let storage = kind.tensor(whole).map_err(|e| TorchZipError::Entry { entry: entry.clone(), reason: e.to_string() })?;
        for (key, view) in users {
            let tensor = view.cut(&storage).map_err(|e| TorchZipError::Tensor { key: key.clone(), reason: e.to_string() })?;
            tensors.push((key.clone(), tensor));
        }
    }
    Ok(tensors)
}

/// One stored (uncompressed, as PyTorch writes them) entry, read to its end so
/// that its CRC is checked, and refused above `limit` bytes.
fn read_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str, limit: u64) -> Result<Vec<u8>, TorchZipError> {
    let entry_err = |reason: String| TorchZipError::Entry { entry: name.to_string(), reason };
    let mut file = archive.by_name(name).map_err(|e| entry_err(format!("cannot be opened ({e})")))?;
    if file.compression() != zip::CompressionMethod::Stored {
        return Err(entry_err(format!("is compressed ({}); PyTorch stores entries uncompressed, and only those are read", file.compression())));
    }
    if file.size() > limit {
        return Err(entry_err(format!("declares {} bytes, more than the {limit} it may have", file.size())));
    }
    let mut bytes = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut bytes).map_err(|e| entry_err(format!("is damaged ({e})")))?;
    Ok(bytes)
}

/// The state dict's tensors as the pickle declares them, checked for form only.
fn tensor_views(p: &Pickle) -> Result<BTreeMap<String, TensorView>, TorchZipError> {
    if !matches!(p.node(p.root), Some(Node::Dict(_))) {
        return Err(TorchZipError::NotADict);
    }
    let state = p.dict_get(p.root, "state_dict").unwrap_or(p.root);
    let Some(Node::Dict(entries)) = p.node(state) else {
        return Err(TorchZipError::StateDictNotADict);
    };
    let mut views = BTreeMap::new();
    for &(key, value) in entries {
        let key = p.str(key).ok_or_else(|| TorchZipError::Tensor { key: "?".into(), reason: "a key is not a string".into() })?;
        let view = tensor_view(p, value).map_err(|reason| TorchZipError::Tensor { key: key.to_string(), reason })?;
        views.insert(key.to_string(), view);
    }
    Ok(views)
}

/// The arguments of the whitelisted call that builds a tensor.
fn call_of(p: &Pickle, value: Value) -> Result<(&str, &[Value]), String> {
    let Some(Node::Call { callable, args }) = p.node(value) else {
        return Err("is not a tensor".into());
    };
    let (module, name) = p.global(*callable).ok_or("is built by something that is not a named function")?;
    let args = p.items(*args).ok_or("is built from arguments that are not a tuple")?;
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_parameter" | "_rebuild_parameter_with_state")
        | ("torch._tensor", "_rebuild_from_type_v2") => Ok((name, args)),
        _ => Err(format!("is built by {module}.{name}, which is not a tensor and is never run")),
    }
}

fn tensor_view(p: &Pickle, value: Value) -> Result<TensorView, String> {
    let mut value = value;
    for _ in 0..MAX_REBUILD_WRAPPERS {
        let (name, args) = call_of(p, value)?;
        let arg = |i: usize| args.get(i).copied().ok_or_else(|| format!("{name} has {} arguments, too few", args.len()));
        match name {
            // (data, requires_grad, backward_hooks[, state])
            "_rebuild_parameter" | "_rebuild_parameter_with_state" => value = arg(0)?,
            // (func, type, args, state): func(*args) as a tensor
            "_rebuild_from_type_v2" => {
                let (func, inner) = (arg(0)?, arg(2)?);
                if p.global(func) != Some(("torch._utils", "_rebuild_tensor_v2")) {
                    return Err("_rebuild_from_type_v2 wraps something other than _rebuild_tensor_v2".into());
                }
                return rebuild_tensor_v2(p, p.items(inner).ok_or("_rebuild_from_type_v2 without an argument tuple")?);
            }
            _ => return rebuild_tensor_v2(p, args),
        }
    }
    Err(format!("is wrapped in more than {MAX_REBUILD_WRAPPERS} rebuild calls"))
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, its storage a
/// persistent id `('storage', torch.XStorage, key, location, numel)`.
fn rebuild_tensor_v2(p: &Pickle, args: &[Value]) -> Result<TensorView, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format!("_rebuild_tensor_v2 has {} arguments; it needs at least 4", args.len()));
    };
    let Some(Node::PersistentId(id)) = p.node(*storage) else { return Err("its storage is not a persistent id".into()) };
    let id = p.items(*id).ok_or("its storage id is not a tuple")?;
    let [tag, kind, key, ..] = id else { return Err(format!("its storage id has {} items; it needs 5", id.len())) };
    if p.str(*tag) != Some("storage") {
        return Err("its storage id is not a storage".into());
    }
    let kind = match p.global(*kind) {
        Some(("torch", name)) => StorageKind::from_name(name).ok_or_else(|| format!("its storage type torch.{name} is not supported"))?,
        _ => return Err("its storage type is not a torch storage".into()),
    };
    let storage = p.str(*key).ok_or("its storage key is not a string")?.to_string();
    let offset = non_negative(*offset).ok_or("its storage offset is not a non-negative integer")?;
    let ints = |v: Value, what: &str| -> Result<Vec<usize>, String> {
        let items = p.items(v).ok_or_else(|| format!("its {what} is not a tuple"))?;
        if items.len() > MAX_RANK {
            return Err(format!("its {what} has {} dimensions, more than {MAX_RANK}", items.len()));
        }
        items.iter().map(|&i| non_negative(i).ok_or_else(|| format!("its {what} holds something other than a non-negative integer"))).collect()
    };
    let (size, stride) = (ints(*size, "size")?, ints(*stride, "stride")?);
    if size.len() != stride.len() {
        return Err(format!("its size {size:?} and stride {stride:?} differ in length"));
    }
    Ok(TensorView { storage, kind, offset, size, stride })
}

fn non_negative(value: Value) -> Option<usize> {
    match value {
        Value::Int(i) => usize::try_from(i).ok(),
        _ => None,
    }
}
