//! Fast CPU kernels for the networks' hot spots, as candle custom ops.
//!
//! Each public function has candle's semantics and falls back to candle's own
//! ops for tensors these kernels do not handle (other devices, other dtypes),
//! so a network calls it unconditionally:
//! - [`conv2d`]: blocked im2col + GEMM forward, GEMM + col2im input gradient,
//!   GEMM weight gradient (training gets all three gradients);
//! - [`attention`]: online-softmax attention that holds one tile of scores at
//!   a time; its backward recomputes the probabilities;
//! - [`group_norm`]: group normalisation, affine map and optional SiLU fused
//!   into one pass, and its backward into one more;
//! - [`gelu_erf`]: the exact GELU with a vectorised normal CDF, and its backward;
//! - [`add_bias`]: a bias along the last dimension, whose gradient is one pass over the rows;
//! - [`adamw_step`], [`ema_update`], [`sum_squares`]: the optimiser's passes, in place.

mod adamw;
mod attention;
mod bias;
mod conv;
mod gelu;
mod group_norm;
mod vector;

pub use adamw::AdamWStep;

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// 2-D convolution of an NCHW input with an OIHW weight (groups 1, dilation 1),
/// plus an optional per-channel bias: `x.conv2d(w, padding, stride, 1, 1) + b`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    if !handled(&[Some(x), Some(w), b]) {
        let y = x.conv2d(w, padding, stride, 1, 1)?;
        return match b {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        };
    }
    let op = conv::Conv2dOp { stride, padding };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

/// Scaled dot-product attention over `(batch * heads, tokens, channels)` tensors:
/// `softmax(q k^T * scale) v`, for `q` of `Nq` tokens and `k`, `v` of `Nk` tokens.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    if !handled(&[Some(q), Some(k), Some(v)]) {
        let scores = (q.matmul(&k.t()?)? * scale)?;
        // candle's fused softmax records no backward (0.11): training would
        // leave every query and key projection without a gradient.
        let weights = if [q, k, v].iter().any(|t| t.track_op()) {
            candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        return weights.matmul(v);
    }
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, attention::AttentionOp { scale })
}

/// `GroupNorm(groups, eps)` with per-channel `gamma`, `beta` over an `(N, C, ...)`
/// input, followed by SiLU when `silu` is set; as `candle_nn::GroupNorm` (+ `silu`).
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    silu: bool,
) -> candle_core::Result<Tensor> {
    if !handled(&[Some(x), Some(gamma), Some(beta)]) {
        let channels = x.dim(1)?;
        let y = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), channels, groups, eps)?;
        let y = candle_core::Module::forward(&y, x)?;
        return if silu { y.silu() } else { Ok(y) };
    }
    let op = group_norm::GroupNormOp { groups, eps, silu };
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

/// The exact (erf) GELU, as `x.gelu_erf()`.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if !handled(&[Some(x)]) {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1(gelu::GeluErfOp)
}

/// `x + b` for `b` of the size of `x`'s last dimension, as `x.broadcast_add(b)`.
pub fn add_bias(x: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if !handled(&[Some(x), Some(b)]) || b.dims() != [x.dim(candle_core::D::Minus1)?] {
        return x.broadcast_add(b);
    }
    x.contiguous()?.apply_op2(&b.contiguous()?, bias::AddBiasOp)
}

/// One AdamW step in place: the moments `m`, `v` and the parameter `p` from
/// the gradient `g`, as [`adamw::reference`] computes them, without a tensor
/// allocated per operation. `m` and `v` must each own their storage.
pub fn adamw_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: &AdamWStep) -> candle_core::Result<()> {
    if !handled(&[Some(p), Some(g), Some(m), Some(v)]) {
        let [p_new, m_new, v_new] = adamw::reference(p, g, m, v, s)?;
        for (dst, new) in [(p, p_new), (m, m_new), (v, v_new)] {
            dst.slice_set(&new, 0, 0)?;
        }
        return Ok(());
    }
    let g = g.contiguous()?;
    m.inplace_op2(&g, &adamw::MomentOp::new(s.beta1, s.clip, false))?;
    v.inplace_op2(&g, &adamw::MomentOp::new(s.beta2, s.clip, true))?;
    p.inplace_op3(m, v, &adamw::ParameterOp::new(s))
}

/// `ema = decay * ema + (1 - decay) * p`, in place.
pub fn ema_update(ema: &Tensor, p: &Tensor, decay: f64) -> candle_core::Result<()> {
    if !handled(&[Some(ema), Some(p)]) {
        return ema.slice_set(&((ema * decay)? + (p.detach() * (1.0 - decay))?)?, 0, 0);
    }
    ema.inplace_op2(&p.contiguous()?, &adamw::MomentOp::new(decay, 1.0, false))
}

/// `sum(x^2)`, accumulated in f64, without a squared copy of `x`.
pub fn sum_squares(x: &Tensor) -> candle_core::Result<f64> {
    if handled(&[Some(x)]) && x.is_contiguous() {
        let (storage, layout) = x.storage_and_layout();
        if let Storage::Cpu(s) = &*storage {
            return Ok(adamw::sum_squares(f32_slice(s, layout, "tensor")?));
        }
    }
    x.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()
}

/// Whether every present tensor is an f32 CPU tensor, and the kernels are not
/// switched off for the process (`CODIFF_KERNELS=generic`) or the thread
/// ([`generic_ops`]): candle's own ops are then taken, exactly the path a GPU
/// takes, so that path can be tested on a machine without one.
fn handled(tensors: &[Option<&Tensor>]) -> bool {
    !generic() && tensors.iter().flatten().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The environment variable that, set to `generic`, sends every kernel to candle's own ops.
pub const KERNELS_VAR: &str = "CODIFF_KERNELS";

thread_local! {
    static GENERIC_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn generic() -> bool {
    static GENERIC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    GENERIC_HERE.with(|g| g.get()) || *GENERIC.get_or_init(|| std::env::var(KERNELS_VAR).is_ok_and(|v| v == "generic"))
}

/// Runs `f` with candle's own ops in place of the kernels on this thread
/// (kernel calls `f` makes on other threads are not affected).
pub fn generic_ops<T>(f: impl FnOnce() -> T) -> T {
    let before = GENERIC_HERE.with(|g| g.replace(true));
    let out = f();
    GENERIC_HERE.with(|g| g.set(before));
    out
}

/// The contiguous f32 data of one custom-op argument.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("the fast CPU kernels take f32 tensors; convert the {what} first")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("the fast CPU kernels need a contiguous {what}"),
    }
}

/// The contiguous f32 data of the tensor an in-place op writes.
fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("the fast CPU kernels take f32 tensors; convert the {what} first")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => candle_core::bail!("the fast CPU kernels need a contiguous {what}"),
    }
}

/// A pointer into an output buffer whose disjoint parts parallel work items write.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the kernels hand each work item a disjoint part of the buffer.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Through a method, so closures capture the `Send` wrapper and not the raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs `f(item, gemm parallelism, scratch)` for items `0..count`: in parallel
/// with single-threaded GEMMs when there are enough items to share out, else
/// one after the other with multi-threaded GEMMs.
fn run_items(count: usize, f: impl Fn(usize, Parallelism, &mut Vec<f32>) + Sync) {
    let threads = rayon::current_num_threads();
    if threads > 1 && count >= threads {
        (0..count)
            .into_par_iter()
            .for_each_init(Vec::new, |scratch, item| f(item, Parallelism::None, scratch));
    } else {
        let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
        let mut scratch = Vec::new();
        (0..count).for_each(|item| f(item, par, &mut scratch));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use candle_core::{Device, Tensor, Var};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Uniform values in [-1, 1), reproducible from `seed`.
    pub(crate) fn random(dims: &[usize], seed: u64) -> candle_core::Result<Tensor> {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(data, dims, &Device::Cpu)
    }

    /// Asserts `max |ours - reference| <= tol * max |reference|`.
    pub(crate) fn assert_close(ours: &Tensor, reference: &Tensor, tol: f64, what: &str) -> candle_core::Result<()> {
        assert_eq!(ours.dims(), reference.dims(), "{what}: shapes differ");
        let max = |t: Tensor| t.abs()?.max_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>();
        let (err, scale) = (max((ours - reference)?)?, max(reference.clone())?);
        assert!(err <= tol * scale, "{what}: max error {err:e} against max magnitude {scale:e} (rel {:e} > {tol:e})", err / scale);
        Ok(())
    }

    /// Asserts that `f` of `inputs` gives the same values, and the same
    /// gradient for every input, through the kernels and through candle's own
    /// ops (the path a GPU takes), each within `tol` of the fallback's scale.
    fn assert_matches_fallback(inputs: &[Var], f: impl Fn(&[&Tensor]) -> candle_core::Result<Tensor>, tol: f64, what: &str) -> candle_core::Result<()> {
        let tensors: Vec<&Tensor> = inputs.iter().map(|v| v.as_tensor()).collect();
        let fast = f(&tensors)?;
        let generic = super::generic_ops(|| f(&tensors))?;
        assert_close(&fast, &generic, tol, &format!("{what}: values"))?;
        let probe = random(fast.dims(), 99)?;
        let g_fast = (fast * &probe)?.sum_all()?.backward()?;
        let g_generic = (generic * &probe)?.sum_all()?.backward()?;
        for (i, var) in inputs.iter().enumerate() {
            let (Some(fast), Some(generic)) = (g_fast.get(var), g_generic.get(var)) else {
                panic!("{what}: input {i} gets no gradient (kernel: {}, candle's ops: {})", g_fast.get(var).is_some(), g_generic.get(var).is_some())
            };
            assert_close(fast, generic, tol, &format!("{what}: gradient of input {i}"))?;
        }
        Ok(())
    }

    fn vars(shapes: &[&[usize]]) -> candle_core::Result<Vec<Var>> {
        shapes.iter().enumerate().map(|(i, dims)| Var::from_tensor(&random(dims, 10 + i as u64)?)).collect()
    }

    #[test]
    fn conv2d_matches_its_fallback() -> candle_core::Result<()> {
        let inputs = vars(&[&[2, 3, 9, 9], &[4, 3, 3, 3], &[4]])?;
        assert_matches_fallback(&inputs, |t| super::conv2d(t[0], t[1], Some(t[2]), 2, 1), 1e-5, "conv2d")
    }

    #[test]
    fn attention_matches_its_fallback() -> candle_core::Result<()> {
        let inputs = vars(&[&[2, 7, 8], &[2, 11, 8], &[2, 11, 8]])?;
        assert_matches_fallback(&inputs, |t| super::attention(t[0], t[1], t[2], 0.35), 1e-5, "attention")
    }

    #[test]
    fn group_norm_matches_its_fallback() -> candle_core::Result<()> {
        let inputs = vars(&[&[2, 8, 5, 5], &[8], &[8]])?;
        for (groups, silu) in [(8, false), (2, true), (1, true)] {
            assert_matches_fallback(&inputs, |t| super::group_norm(t[0], groups, t[1], t[2], 1e-5, silu), 1e-5, &format!("group norm, {groups} groups, silu {silu}"))?;
        }
        Ok(())
    }

    #[test]
    fn gelu_and_bias_match_their_fallbacks() -> candle_core::Result<()> {
        assert_matches_fallback(&vars(&[&[3, 17]])?, |t| super::gelu_erf(t[0]), 1e-5, "gelu_erf")?;
        assert_matches_fallback(&vars(&[&[3, 5, 17], &[17]])?, |t| super::add_bias(t[0], t[1]), 1e-6, "add_bias")
    }

    #[test]
    fn falls_back_to_candle_for_other_dtypes() -> candle_core::Result<()> {
        let x = random(&[1, 2, 5, 5], 1)?;
        let w = random(&[3, 2, 3, 3], 2)?;
        let ours = super::conv2d(&x.to_dtype(candle_core::DType::F64)?, &w.to_dtype(candle_core::DType::F64)?, None, 1, 1)?;
        assert_eq!(ours.dtype(), candle_core::DType::F64);
        assert_close(&ours.to_dtype(candle_core::DType::F32)?, &x.conv2d(&w, 1, 1, 1, 1)?, 1e-5, "f64 fallback")
    }
}
