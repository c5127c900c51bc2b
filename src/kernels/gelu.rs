//! The exact (erf) GELU, `x * Phi(x)`, and its gradient `Phi(x) + x phi(x)`,
//! with a branch-free normal CDF so the loops vectorise: candle calls libm's
//! scalar `erf` per element, which was 6% of the default models' sampling time.

use super::vector::{exp_approx, madd};
use super::{f32_slice, SendPtr};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

/// `(Phi(x), phi(x))`: the standard normal CDF to 1.5e-7 (Abramowitz and
/// Stegun 7.1.26 for erfc(|x| / sqrt 2)) and the density.
#[inline(always)]
fn normal_cdf_pdf<const FMA: bool>(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152, 1.061_405_4];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / madd::<FMA>(P, z, 1.0);
    let mut poly = A[4];
    for &a in A[..4].iter().rev() {
        poly = madd::<FMA>(poly, t, a);
    }
    let gauss = exp_approx::<FMA>(-z * z);
    // Half of erfc(|x| / sqrt 2): the tail beyond |x|.
    let tail = 0.5 * poly * t * gauss;
    let cdf = if x >= 0.0 { 1.0 - tail } else { tail };
    (cdf, gauss * 0.398_942_3)
}

#[inline(always)]
fn gelu_chunk<const FMA: bool>(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * normal_cdf_pdf::<FMA>(x).0;
    }
}

#[inline(always)]
fn gelu_grad_chunk<const FMA: bool>(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        let (cdf, pdf) = normal_cdf_pdf::<FMA>(x);
        *dx = dy * madd::<FMA>(x, pdf, cdf);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_chunk_avx2(x: &[f32], y: &mut [f32]) {
    gelu_chunk::<true>(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_grad_chunk_avx2(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    gelu_grad_chunk::<true>(x, dy, dx)
}

fn gelu_dispatch(x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { gelu_chunk_avx2(x, y) };
    }
    gelu_chunk::<false>(x, y)
}

fn gelu_grad_dispatch(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { gelu_grad_chunk_avx2(x, dy, dx) };
    }
    gelu_grad_chunk::<false>(x, dy, dx)
}

/// Fills `out` chunk by chunk, in parallel, with `f(range start, chunk of out)`.
fn par_fill(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let (n, op) = (out.len(), SendPtr(out.as_mut_ptr()));
    (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|i| {
        let (a, b) = (i * CHUNK, ((i + 1) * CHUNK).min(n));
        // SAFETY: each item owns elements a..b.
        f(a, unsafe { std::slice::from_raw_parts_mut(op.get().add(a), b - a) });
    });
}

pub(crate) struct GeluErfOp;

impl CustomOp1 for GeluErfOp {
    fn name(&self) -> &'static str {
        "fast-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "GELU input")?;
        let mut y = vec![0f32; x.len()];
        par_fill(&mut y, |a, y| gelu_dispatch(&x[a..a + y.len()], y));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluErfGradOp)?))
    }
}

/// dL/dx of [`GeluErfOp`] from (x, dL/dy).
struct GeluErfGradOp;

impl CustomOp2 for GeluErfGradOp {
    fn name(&self) -> &'static str {
        "fast-gelu-erf-grad"
    }

    fn cpu_fwd(&self, sx: &CpuStorage, lx: &Layout, sg: &CpuStorage, lg: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, dy) = (f32_slice(sx, lx, "GELU input")?, f32_slice(sg, lg, "GELU output gradient")?);
        if x.len() != dy.len() {
            candle_core::bail!("the GELU gradient has {} elements, its input {}", dy.len(), x.len())
        }
        let mut dx = vec![0f32; x.len()];
        par_fill(&mut dx, |a, dx| gelu_grad_dispatch(&x[a..a + dx.len()], &dy[a..a + dx.len()], dx));
        Ok((CpuStorage::F32(dx), lx.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{gelu_erf, tests::assert_close};
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn matches_candle_gelu_erf_and_its_gradient() -> candle_core::Result<()> {
        // Both tails, zero, and more elements than one work item.
        let n = 3 * super::CHUNK + 5;
        let values: Vec<f32> = (0..n).map(|i| -9.0 + 18.0 * i as f32 / (n - 1) as f32).collect();
        let x = Var::from_tensor(&Tensor::from_vec(values, n, &Device::Cpu)?)?;
        let reference = x.gelu_erf()?;
        let ours = gelu_erf(&x)?;
        assert_close(&ours, &reference, 1e-7, "forward")?;
        let probe = Tensor::arange(0f32, n as f32, &Device::Cpu)?.affine(1e-4, -1.0)?;
        let g_ref = (reference * &probe)?.sum_all()?.backward()?;
        let g_ours = (ours * &probe)?.sum_all()?.backward()?;
        let (r, o) = (g_ref.get(&x).expect("reference gradient"), g_ours.get(&x).expect("our gradient"));
        assert_close(o, r, 1e-6, "gradient")
    }
}
