//! What the fuzz targets feed their input to: the readers of untrusted files,
//! called as the command line and the studio call them. Any input may be
//! refused; none may panic, abort, hang or run away with memory (issue 19).
//!
//! This file is the `codiff_fuzz` library of the nightly fuzz crate and is also
//! included (`#[path]`) by the stable test `tests/fuzz_corpus.rs`, which runs
//! every corpus file and seeded mutations of them through the same functions.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};

use codiff::data::mask::Mask;
use codiff::model::checkpoint::Weights;
use codiff::model::config::ModelConfig;
use codiff::pipeline::edit::Photo;

/// What a target does with one input.
pub type Entry = fn(&[u8]);

/// The targets by name (their corpus is `fuzz/corpus/<name>`), each with its entry point.
pub const TARGETS: [(&str, Entry); 4] = [("checkpoint", checkpoint), ("safetensors", safetensors), ("config", config), ("images", images)];

/// A `.ckpt` through [`Weights`] as a checkpoint is loaded: the input as the
/// whole file, then as the pickle of a well-formed zip. The zip's CRCs would
/// refuse almost every mutated pickle inside a file, so without the second
/// read the fuzzer would never get past them to the tensor declarations.
pub fn checkpoint(data: &[u8]) {
    read_weights(&scratch_file("fuzzed.ckpt", data));
    let wrapped = as_torch_zip(data).expect("a zip written to memory cannot fail");
    read_weights(&scratch_file("wrapped.ckpt", &wrapped));
}

/// `pickle` as `torch.save` lays it out, with storages "0" to "3" for it to name:
/// counting bytes, and one of 0xff bytes (NaN as floats).
fn as_torch_zip(pickle: &[u8]) -> zip::result::ZipResult<Vec<u8>> {
    let storages: [Vec<u8>; 4] = [(0..64).collect(), (64..128).collect(), (0..=255).collect(), vec![0xff; 64]];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored)?;
    zip.write_all(pickle)?;
    for (key, bytes) in storages.iter().enumerate() {
        zip.start_file(format!("archive/data/{key}"), stored)?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// A `.safetensors` file through [`Weights`] (it maps a file, so the input is written to one).
pub fn safetensors(data: &[u8]) {
    read_weights(&scratch_file("fuzzed.safetensors", data));
}

/// A model config beside the default models' uni-modal configs, so that a
/// composed config finds its parts (or names itself as one).
pub fn config(data: &[u8]) {
    let _ = ModelConfig::load(scratch_file("fuzzed.yaml", data));
}

/// A mask from its bytes, then the same bytes as a photo file.
pub fn images(data: &[u8]) {
    let photo = scratch_file("fuzzed.img", data);
    let _ = Mask::decode(data, "fuzzed.png");
    let _ = Photo::load(&photo, None);
}

/// Opens a checkpoint and copies every tensor out, with its non-finite check.
fn read_weights(path: &Path) {
    if let Ok(weights) = Weights::open(path) {
        for name in weights.shapes().keys() {
            let _ = weights.get(name);
        }
    }
}

/// The default models' uni-modal configs, which a fuzzed composed config may name.
const SIBLING_CONFIGS: [(&str, &str); 2] = [("mask.yaml", include_str!("../models/mask.yaml")), ("text.yaml", include_str!("../models/text.yaml"))];

thread_local! {
    /// This thread's scratch folder (tests run targets on several threads at once).
    static SCRATCH: PathBuf = std::env::temp_dir().join(format!("codiff-fuzz-{}-{:?}", std::process::id(), std::thread::current().id()));
}

/// `data` written to `name` in this thread's scratch folder.
fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let dir = SCRATCH.with(PathBuf::clone);
    let path = dir.join(name);
    if std::fs::write(&path, data).is_err() {
        // The first input on this thread, or the folder was removed: set it up.
        std::fs::create_dir_all(&dir).expect("cannot create a scratch folder in the temporary directory");
        for (name, text) in SIBLING_CONFIGS {
            std::fs::write(dir.join(name), text).expect("cannot write to the scratch folder");
        }
        std::fs::write(&path, data).expect("cannot write to the scratch folder");
    }
    path
}

/// Removes this thread's scratch folder.
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(SCRATCH.with(PathBuf::clone));
}

/// The largest single allocation a reader may make. libFuzzer's
/// `-malloc_limit_mb` needs a sanitizer's malloc hooks, and the targets are
/// built without one, so the allocator enforces it: above this the process
/// aborts, and a memory bomb is a finding (the image decoders' own limit is 512 MiB).
pub const MAX_ALLOCATION_BYTES: usize = 1 << 30;

/// The system allocator, aborting on any request above [`MAX_ALLOCATION_BYTES`].
pub struct CappedAllocator;

impl CappedAllocator {
    fn check(size: usize) {
        if size > MAX_ALLOCATION_BYTES {
            // Neither allocates: stderr is unbuffered.
            let (pid, limit) = (std::process::id(), MAX_ALLOCATION_BYTES);
            let _ = writeln!(
                std::io::stderr(),
                "memory bomb: one allocation of {size} bytes, above the {limit} allowed; the input is the \
                 fuzzed.* file last written to a codiff-fuzz-{pid}-* folder of the temporary directory"
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;
