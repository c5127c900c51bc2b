//! The original Collaborative Diffusion networks, one file each, named after
//! the checkpoint keys, plus the YAML configs and checkpoint loading.

pub mod attention;
pub mod autoencoder;
pub mod checkpoint;
pub mod collaborative;
pub mod config;
pub mod defaults;
pub mod device;
pub mod judges;
pub mod layers;
pub mod mask_encoder;
pub mod optim;
pub mod pickle;
pub mod precision;
pub mod preview;
pub mod random;
pub mod text_encoder;
pub mod tokenizer;
pub mod torch_zip;
pub mod unet;

/// Keeps freed memory in the process for the next operation to reuse. By
/// default glibc's malloc serves every block above its mmap threshold (128 kB
/// at first, then the largest block freed so far) with fresh pages and hands
/// the free top of its heap back to the kernel beyond twice that threshold.
/// A training step frees its activations and gradients at its end, so the
/// next one faulted every page in again and zeroed it; with the thresholds
/// fixed at 32 MB (blocks above go to their own mappings) and 64 MB (free
/// memory kept at the top of the heap) the pages stay mapped
/// (docs/speed.md). Call once at start, before any large allocation.
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets two of malloc's tunables; it takes no pointers.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Fixes the CPU thread count for the process (unless `RAYON_NUM_THREADS` is
/// set already) at `threads`, or at candle's own default. Without the variable
/// candle works its default out again at every matrix product by parsing
/// /proc/cpuinfo (a quarter of a small model's time; see docs/speed.md).
///
/// candle also runs every element-wise op of 64k values or more on a pool of
/// its own (`CANDLE_NUM_THREADS` threads), whose calling thread spin-waits
/// for the pool's workers. When anything else keeps the cores busy (another
/// process, the studio's window) a worker waits for its time slice while the
/// caller spins: 63% of a training step's cycles in a profile, and the step
/// 4x slower (docs/speed.md). So the element-wise ops stay on the calling
/// thread unless `CANDLE_NUM_THREADS` says otherwise; matrix products and
/// this project's kernels still use every thread. Call before any pool starts.
pub fn pin_thread_count(threads: Option<usize>) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = threads.unwrap_or_else(candle_core::utils::get_num_threads);
        std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
