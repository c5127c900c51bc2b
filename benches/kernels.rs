//! Kernel table: candle 0.11's own ops against `codiff::kernels`, in ms.
//! PyTorch's times for the same shapes come from `scripts/bench-vs-pytorch.sh`,
//! which runs both side by side (figures from another run or machine do not compare).
//!
//! Run with `cargo bench --bench kernels`. Each figure is the best of several
//! runs after a warm-up: the machine is shared, so the minimum is the figure
//! least disturbed by other work.

use candle_core::{Device, Result, Tensor, Var};
use codiff::kernels;
use std::time::{Duration, Instant};

/// Best wall time of `f` in ms, over at least 3 runs and about a second.
fn best_ms(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let (mut best, mut total, mut runs) = (f64::INFINITY, Duration::ZERO, 0);
    while runs < 3 || (total < Duration::from_secs(1) && runs < 50) {
        let start = Instant::now();
        f()?;
        let took = start.elapsed();
        best = best.min(took.as_secs_f64() * 1e3);
        total += took;
        runs += 1;
    }
    Ok(best)
}

fn randn(dims: &[usize]) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, dims, &Device::Cpu)
}

/// Weights scaled like a default initialisation, so activations stay O(1).
fn conv_weight(c_out: usize, c_in: usize, k: usize) -> Result<Tensor> {
    randn(&[c_out, c_in, k, k])? / ((c_in * k * k) as f64).sqrt()
}

struct Row {
    name: String,
    candle_ms: f64,
    ours_ms: f64,
}

fn conv_rows(rows: &mut Vec<Row>) -> Result<()> {
    // (channels, side, batch)
    for (c, side, batch) in [(192, 64, 1), (384, 32, 1), (960, 8, 1), (64, 32, 16)] {
        let x = randn(&[batch, c, side, side])?;
        let w = conv_weight(c, c, 3)?;
        let b = randn(&[c])?;
        let candle_ms = best_ms(|| x.conv2d(&w, 1, 1, 1, 1)?.broadcast_add(&b.reshape((1, c, 1, 1))?).map(drop))?;
        let ours_ms = best_ms(|| kernels::conv2d(&x, &w, Some(&b), 1, 1).map(drop))?;
        let name = format!("conv 3x3 {c}ch {side}x{side} batch {batch}");
        rows.push(Row { name, candle_ms, ours_ms });
    }
    // A training step of the last shape: forward, then gradients of input, weight and bias.
    let (x, w, b) = (Var::from_tensor(&randn(&[16, 64, 32, 32])?)?, Var::from_tensor(&conv_weight(64, 64, 3)?)?, Var::from_tensor(&randn(&[64])?)?);
    let probe = randn(&[16, 64, 32, 32])?;
    let step = |y: Tensor| -> Result<()> { (y * &probe)?.sum_all()?.backward().map(drop) };
    let candle_ms = best_ms(|| step(x.conv2d(&w, 1, 1, 1, 1)?.broadcast_add(&b.reshape((1, 64, 1, 1))?)?))?;
    let ours_ms = best_ms(|| step(kernels::conv2d(&x, &w, Some(&b), 1, 1)?))?;
    rows.push(Row { name: "same: forward + backward".into(), candle_ms, ours_ms });
    Ok(())
}

fn attention_rows(rows: &mut Vec<Row>) -> Result<()> {
    // (heads, channels, queries, keys)
    let shapes = [(32, 12, 1024, 1024), (32, 4, 1024, 1024), (32, 30, 4096, 77)];
    for (heads, d, nq, nk) in shapes {
        let (q, k, v) = (randn(&[heads, nq, d])?, randn(&[heads, nk, d])?, randn(&[heads, nk, d])?);
        let scale = (d as f64).powf(-0.5);
        let candle_ms = best_ms(|| {
            let weights = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?;
            weights.matmul(&v).map(drop)
        })?;
        let ours_ms = best_ms(|| kernels::attention(&q, &k, &v, scale).map(drop))?;
        let kind = if nq == nk { "self" } else { "cross" };
        let name = format!("{kind}-attention {heads} heads x {d}ch, {nq} x {nk} tokens");
        rows.push(Row { name, candle_ms, ours_ms });
    }
    Ok(())
}

/// Group norm + SiLU at the released autoencoders' largest maps: the 512
/// encoder's first level (128 channels at 512 x 512, 2^20 values a group)
/// and the 256 one's.
fn group_norm_rows(rows: &mut Vec<Row>) -> Result<()> {
    for side in [512, 256] {
        let x = randn(&[1, 128, side, side])?;
        let (gamma, beta) = (randn(&[128])?, randn(&[128])?);
        let candle_ms = best_ms(|| {
            let norm = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), 128, 32, 1e-6)?;
            candle_core::Module::forward(&norm, &x)?.silu().map(drop)
        })?;
        let ours_ms = best_ms(|| kernels::group_norm(&x, 32, &gamma, &beta, 1e-6, true).map(drop))?;
        rows.push(Row { name: format!("group norm + SiLU, 128ch {side} x {side}, 32 groups"), candle_ms, ours_ms });
    }
    Ok(())
}

/// The matrix product every convolution rests on: candle's matmul against a
/// direct call of the `gemm` crate on the same buffers (both multi-threaded).
fn matmul_row(rows: &mut Vec<Row>) -> Result<()> {
    let n = 1024;
    let (a, b) = (randn(&[n, n])?, randn(&[n, n])?);
    let candle_ms = best_ms(|| a.matmul(&b).map(drop))?;
    let (av, bv) = (a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?);
    let mut c = vec![0f32; n * n];
    let threads = rayon::current_num_threads();
    let ours_ms = best_ms(|| {
        // SAFETY: three n x n row-major buffers.
        unsafe {
            gemm::gemm(n, n, n, c.as_mut_ptr(), 1, n as isize, false, av.as_ptr(), 1, n as isize, bv.as_ptr(), 1, n as isize, 1.0, 1.0, false, false, false, gemm::Parallelism::Rayon(threads))
        };
        Ok(())
    })?;
    rows.push(Row { name: format!("matmul {n}^3 (ours: gemm called directly)"), candle_ms, ours_ms });
    Ok(())
}

fn main() -> Result<()> {
    let mut rows = Vec::new();
    matmul_row(&mut rows)?;
    conv_rows(&mut rows)?;
    attention_rows(&mut rows)?;
    group_norm_rows(&mut rows)?;
    println!("threads: {}", rayon::current_num_threads());
    println!("| operation | candle ms | ours ms | speed-up |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {:.1} | {:.1} | {:.1}x |", r.name, r.candle_ms, r.ours_ms, r.candle_ms / r.ours_ms);
    }
    Ok(())
}
