//! Group normalisation with its per-channel affine map and, optionally, SiLU,
//! in one pass over the output (two over the input, for the mean and the
//! centred variance), instead of candle's eight or so tensor-wide passes.
//! The backward is one fused pass too (see [`GroupNormGradOp`]).

use super::vector::{exp_approx, madd};
use super::{f32_slice, SendPtr};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

const LANES: usize = 8;

pub(crate) struct GroupNormOp {
    pub(crate) groups: usize,
    pub(crate) eps: f64,
    pub(crate) silu: bool,
}

/// Values summed in f32 lanes before their sum joins the f64 total.
const BLOCK: usize = 256;

/// Sum of `f(x)` over a slice: eight f32 lanes over each block of
/// [`BLOCK`] values, so that it vectorises, and the blocks' sums in f64. Each
/// lane adds only 32 values, so the sum is as exact as an f64 one however
/// large the group (a 512 x 512 group of 128 channels holds 2^20 values,
/// which eight lanes summed whole lose about 1e-4 of the variance to).
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    xs.chunks(BLOCK)
        .map(|block| {
            let mut lanes = [0f32; LANES];
            let chunks = block.chunks_exact(LANES);
            let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
            for c in chunks {
                for l in 0..LANES {
                    lanes[l] += f(c[l]);
                }
            }
            lanes.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
        })
        .sum()
}

/// Normalises one group: `channels` rows of `plane` values each.
#[inline(always)]
fn normalise_group<const FMA: bool>(op: &GroupNormOp, x: &[f32], gamma: &[f32], beta: &[f32], plane: usize, y: &mut [f32]) {
    let count = x.len() as f64;
    let mean = (lane_sum(x, |v| v) / count) as f32;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / count;
    let inv = (1.0 / (var + op.eps).sqrt()) as f32;
    for (c, (xs, ys)) in x.chunks_exact(plane).zip(y.chunks_exact_mut(plane)).enumerate() {
        let a = inv * gamma[c];
        let b = beta[c] - mean * a;
        for (yv, &xv) in ys.iter_mut().zip(xs) {
            let z = madd::<FMA>(xv, a, b);
            *yv = if op.silu { z / (1.0 + exp_approx::<FMA>(-z)) } else { z };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn normalise_group_avx2(op: &GroupNormOp, x: &[f32], gamma: &[f32], beta: &[f32], plane: usize, y: &mut [f32]) {
    normalise_group::<true>(op, x, gamma, beta, plane, y)
}

fn normalise_group_dispatch(op: &GroupNormOp, x: &[f32], gamma: &[f32], beta: &[f32], plane: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { normalise_group_avx2(op, x, gamma, beta, plane, y) };
    }
    normalise_group::<false>(op, x, gamma, beta, plane, y)
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "fast-group-norm"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = lx.dims();
        let (batch, channels) = match dims {
            [b, c, ..] => (*b, *c),
            _ => candle_core::bail!("group norm expects an (N, C, ...) input, got {dims:?}"),
        };
        if self.groups == 0 || channels % self.groups != 0 {
            candle_core::bail!("group norm cannot split {channels} channels into {} groups", self.groups)
        }
        if lg.dims() != [channels] || lb.dims() != [channels] {
            candle_core::bail!("group norm weight {:?} and bias {:?} must both be [{channels}]", lg.dims(), lb.dims())
        }
        let x = f32_slice(sx, lx, "group norm input")?;
        let (gamma, beta) = (f32_slice(sg, lg, "group norm weight")?, f32_slice(sb, lb, "group norm bias")?);
        let plane: usize = dims[2..].iter().product();
        let per_group = channels / self.groups;
        let group_len = per_group * plane;
        let mut y = vec![0f32; x.len()];
        let yp = SendPtr(y.as_mut_ptr());
        (0..batch * self.groups).into_par_iter().for_each(|item| {
            let c0 = (item % self.groups) * per_group;
            // SAFETY: each item owns one group of one image, a contiguous run of the output.
            let ys = unsafe { std::slice::from_raw_parts_mut(yp.get().add(item * group_len), group_len) };
            let (g, b) = (&gamma[c0..c0 + per_group], &beta[c0..c0 + per_group]);
            normalise_group_dispatch(self, &x[item * group_len..(item + 1) * group_len], g, b, plane, ys);
        });
        Ok((CpuStorage::F32(y), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let channels = gamma.elem_count();
        let affine = Tensor::cat(&[gamma, beta], 0)?;
        let grad_op = GroupNormGradOp { groups: self.groups, eps: self.eps, silu: self.silu };
        let flat = x.apply_op3_no_bwd(&affine, &grad.contiguous()?, &grad_op)?;
        let n = x.elem_count();
        let dx = flat.narrow(0, 0, n)?.reshape(x.shape())?;
        Ok((Some(dx), Some(flat.narrow(0, n, channels)?), Some(flat.narrow(0, n + channels, channels)?)))
    }
}

/// The gradients of [`GroupNormOp`] from (x, gamma ++ beta, dL/dy), as one flat
/// buffer: dL/dx (shaped like x, flattened), then dL/dgamma, then dL/dbeta.
/// With x^ = (x - mean) / std per group and dx^ = dL/dy' * gamma (y' before
/// the SiLU): dL/dx = (dx^ - mean(dx^) - x^ mean(dx^ x^)) / std.
struct GroupNormGradOp {
    groups: usize,
    eps: f64,
    silu: bool,
}

impl CustomOp3 for GroupNormGradOp {
    fn name(&self) -> &'static str {
        "fast-group-norm-grad"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sa: &CpuStorage,
        la: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = lx.dims();
        let (batch, channels) = (dims[0], dims[1]);
        let x = f32_slice(sx, lx, "group norm input")?;
        let affine = f32_slice(sa, la, "group norm weight and bias")?;
        let grad = f32_slice(sg, lg, "group norm output gradient")?;
        let (gamma, beta) = affine.split_at(channels);
        let plane: usize = dims[2..].iter().product();
        let per_group = channels / self.groups;
        let group_len = per_group * plane;
        let mut out = vec![0f32; x.len() + 2 * channels];
        // Per-image partial sums for dgamma and dbeta, reduced after the parallel pass.
        let mut partial = vec![0f64; batch * 2 * channels];
        let (op, pp) = (SendPtr(out.as_mut_ptr()), SendPtrF64(partial.as_mut_ptr()));
        (0..batch * self.groups).into_par_iter().for_each(|item| {
            let (image, c0) = (item / self.groups, (item % self.groups) * per_group);
            let range = item * group_len..(item + 1) * group_len;
            // SAFETY: each item owns one group of one image in the output, and
            // channels c0..c0 + per_group of its image in the partial sums.
            let dx = unsafe { std::slice::from_raw_parts_mut(op.get().add(range.start), group_len) };
            let sums = unsafe { std::slice::from_raw_parts_mut(pp.get().add(image * 2 * channels), 2 * channels) };
            let (xs, gs) = (&x[range.clone()], &grad[range]);
            let count = group_len as f64;
            let mean = (lane_sum(xs, |v| v) / count) as f32;
            let inv = (1.0 / (lane_sum(xs, |v| (v - mean) * (v - mean)) / count + self.eps).sqrt()) as f32;
            let (mut sum_dxh, mut sum_dxh_xh) = (0f64, 0f64);
            for c in 0..per_group {
                let ch = c0 + c;
                let rows = c * plane..(c + 1) * plane;
                let [dgamma, dbeta, s1, s2] =
                    channel_grad_dispatch(self.silu, (gamma[ch], beta[ch]), (mean, inv), &xs[rows.clone()], &gs[rows.clone()], &mut dx[rows]);
                sums[ch] += dgamma as f64;
                sums[channels + ch] += dbeta as f64;
                sum_dxh += s1 as f64;
                sum_dxh_xh += s2 as f64;
            }
            let (m1, m2) = ((sum_dxh / count) as f32, (sum_dxh_xh / count) as f32);
            for (d, &xv) in dx.iter_mut().zip(xs) {
                let xh = (xv - mean) * inv;
                *d = inv * (*d - m1 - xh * m2);
            }
        });
        let n = x.len();
        for image in partial.chunks_exact(2 * channels) {
            for (o, &p) in out[n..].iter_mut().zip(image) {
                *o += p as f32;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * channels)))
    }
}

/// One channel of the backward: writes `dx^ = dL/dy' * gamma` into `dx` and
/// returns (dL/dgamma, dL/dbeta, sum dx^, sum dx^ x^), each summed in eight
/// lanes so that the loop vectorises (summed one value at a time, with libm's
/// exp, it was 7% of a default-size training step).
#[inline(always)]
fn channel_grad<const FMA: bool>(
    silu: bool,
    (gamma, beta): (f32, f32),
    (mean, inv): (f32, f32),
    xs: &[f32],
    gs: &[f32],
    dx: &mut [f32],
) -> [f32; 4] {
    let terms = |xv: f32, g: f32| {
        let xh = (xv - mean) * inv;
        let dy = if silu {
            let y = madd::<FMA>(gamma, xh, beta);
            let s = 1.0 / (1.0 + exp_approx::<FMA>(-y));
            g * s * (1.0 + y * (1.0 - s))
        } else {
            g
        };
        let dxh = dy * gamma;
        [dy * xh, dy, dxh, dxh * xh]
    };
    let whole = xs.len() / LANES * LANES;
    let mut lanes = [[0f32; LANES]; 4];
    let chunks = dx[..whole].chunks_exact_mut(LANES).zip(xs[..whole].chunks_exact(LANES)).zip(gs[..whole].chunks_exact(LANES));
    for ((d, x), g) in chunks {
        for l in 0..LANES {
            let t = terms(x[l], g[l]);
            for (lane, v) in lanes.iter_mut().zip(t) {
                lane[l] += v;
            }
            d[l] = t[2];
        }
    }
    let mut sums = lanes.map(|lane| lane.iter().sum::<f32>());
    for ((d, &x), &g) in dx[whole..].iter_mut().zip(&xs[whole..]).zip(&gs[whole..]) {
        let t = terms(x, g);
        for (sum, v) in sums.iter_mut().zip(t) {
            *sum += v;
        }
        *d = t[2];
    }
    sums
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn channel_grad_avx2(silu: bool, affine: (f32, f32), stats: (f32, f32), xs: &[f32], gs: &[f32], dx: &mut [f32]) -> [f32; 4] {
    channel_grad::<true>(silu, affine, stats, xs, gs, dx)
}

fn channel_grad_dispatch(silu: bool, affine: (f32, f32), stats: (f32, f32), xs: &[f32], gs: &[f32], dx: &mut [f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { channel_grad_avx2(silu, affine, stats, xs, gs, dx) };
    }
    channel_grad::<false>(silu, affine, stats, xs, gs, dx)
}

#[derive(Clone, Copy)]
struct SendPtrF64(*mut f64);
// SAFETY: work items write disjoint parts (see the use above).
unsafe impl Send for SendPtrF64 {}
unsafe impl Sync for SendPtrF64 {}

impl SendPtrF64 {
    fn get(self) -> *mut f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::super::{group_norm, tests::{assert_close, random}};
    use candle_core::{Module, Tensor};

    #[test]
    fn matches_candle_group_norm_and_silu() -> candle_core::Result<()> {
        // (batch, channels, h, w, groups)
        for (i, &(n, c, h, w, groups)) in [(1, 64, 8, 8, 32), (2, 96, 5, 7, 32), (3, 6, 3, 1, 3)].iter().enumerate() {
            let seed = i as u64 * 3;
            let x = ((random(&[n, c, h, w], seed)? * 3.0)? + 0.5)?;
            let (gamma, beta) = (random(&[c], seed + 1)?, random(&[c], seed + 2)?);
            let reference = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), c, groups, 1e-5)?.forward(&x)?;
            let ours = group_norm(&x, groups, &gamma, &beta, 1e-5, false)?;
            assert_close(&ours, &reference, 1e-5, &format!("case {i} group norm"))?;
            let ours = group_norm(&x, groups, &gamma, &beta, 1e-5, true)?;
            assert_close(&ours, &reference.silu()?, 1e-5, &format!("case {i} group norm + SiLU"))?;
        }
        Ok(())
    }

    /// A group as large as the 512 autoencoder's (2^20 values), with its mean
    /// far from zero against its spread: the statistics must be as exact as
    /// f64 ones, whatever order the lanes add in.
    #[test]
    fn a_group_of_a_million_values_is_normalised_as_in_f64() -> candle_core::Result<()> {
        use candle_core::DType;
        let x = ((random(&[1, 4, 512, 512], 5)? * 0.5)? + 2.0)?;
        let (gamma, beta) = (Tensor::ones(4, DType::F32, x.device())?, Tensor::zeros(4, DType::F32, x.device())?);
        let wide = |t: &Tensor| t.to_dtype(DType::F64);
        let reference = candle_nn::GroupNorm::new(wide(&gamma)?, wide(&beta)?, 4, 1, 1e-6)?.forward(&wide(&x)?)?;
        let ours = group_norm(&x, 1, &gamma, &beta, 1e-6, false)?;
        assert_close(&wide(&ours)?, &reference, 1e-6, "2^20 values in one group")
    }

    #[test]
    fn gradients_match_candle_group_norm() -> candle_core::Result<()> {
        use candle_core::Var;
        for (i, &(n, c, h, w, groups, silu)) in [(2, 64, 6, 5, 32, true), (3, 6, 4, 4, 3, false)].iter().enumerate() {
            let seed = 40 + i as u64 * 5;
            let x = Var::from_tensor(&((random(&[n, c, h, w], seed)? * 2.0)? + 0.3)?)?;
            let gamma = Var::from_tensor(&random(&[c], seed + 1)?)?;
            let beta = Var::from_tensor(&random(&[c], seed + 2)?)?;
            let weight = random(&[n, c, h, w], seed + 3)?;
            let reference = candle_nn::GroupNorm::new(gamma.as_tensor().clone(), beta.as_tensor().clone(), c, groups, 1e-5)?.forward(&x)?;
            let reference = if silu { reference.silu()? } else { reference };
            let want = (reference * &weight)?.sum_all()?.backward()?;
            let ours = group_norm(&x, groups, &gamma, &beta, 1e-5, silu)?;
            let got = (ours * &weight)?.sum_all()?.backward()?;
            for (var, name) in [(&x, "x"), (&gamma, "gamma"), (&beta, "beta")] {
                let (g, r) = (got.get(var).expect("our gradient"), want.get(var).expect("candle's gradient"));
                assert_close(g, r, 1e-4, &format!("case {i}: d/d{name}"))?;
            }
        }
        Ok(())
    }
}
