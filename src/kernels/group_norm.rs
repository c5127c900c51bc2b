//! Group normalisation with its per-channel affine map and, optionally, SiLU,
//! in one pass over the output (two over the input, for the mean and the
//! centred variance), instead of candle's eight or so tensor-wide passes.
//! Forward only: training goes through the differentiable candle ops.

use super::vector::{exp_approx, madd};
use super::{f32_slice, SendPtr};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

const LANES: usize = 8;

pub(crate) struct GroupNormOp {
    pub(crate) groups: usize,
    pub(crate) eps: f64,
    pub(crate) silu: bool,
}

/// Sum of `f(x)` over a slice, in eight lanes so that it vectorises.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] += f(c[l]);
        }
    }
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
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
}

#[cfg(test)]
mod tests {
    use super::super::{group_norm, tests::{assert_close, random}};
    use candle_core::Module;

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
}
