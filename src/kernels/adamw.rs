//! AdamW's update in place. Written with candle's ops, one step makes about a
//! dozen passes per parameter, each into a freshly allocated tensor; here each
//! moment takes one pass, the parameter one more and the EMA one more. Every
//! pass rounds as the straightforward formula ([`reference`]) does in f32,
//! where candle's `tensor * a` is `x * a + 0` and `tensor / a` is `x * (1 / a)`,
//! so both give the same numbers to the bit.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Tensor};

use super::{f32_slice, f32_slice_mut};

/// The constants of one AdamW step.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// Factor on the gradient (global-norm clipping; 1 when not clipped).
    pub clip: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub lr: f64,
    pub weight_decay: f64,
    /// Bias corrections `1 - beta1^t` and `1 - beta2^t`.
    pub c1: f64,
    pub c2: f64,
}

/// The step as candle ops: returns the new parameter, first and second moments.
pub(super) fn reference(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: &AdamWStep) -> candle_core::Result<[Tensor; 3]> {
    let g = (g.detach() * s.clip)?;
    let m = ((m * s.beta1)? + (&g * (1.0 - s.beta1))?)?;
    let v = ((v * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?;
    let update = ((&m / s.c1)? / ((&v / s.c2)?.sqrt()? + s.eps)?)?;
    let decayed = (p.detach() * (1.0 - s.lr * s.weight_decay))?;
    Ok([(decayed - (update * s.lr)?)?, m, v])
}

/// `m = beta m + (1 - beta) x` for `x` the clipped gradient or its square:
/// Adam's two moments, and with `clip` 1 the weights' moving average.
pub(super) struct MomentOp {
    clip: f32,
    beta: f32,
    one_minus_beta: f32,
    squared: bool,
}

impl InplaceOp2 for MomentOp {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let g = f32_slice(s2, l2, "source")?;
        let m = f32_slice_mut(s1, l1, "average")?;
        same_length(m.len(), g.len())?;
        let Self { clip, beta, one_minus_beta, squared } = *self;
        for (m, &g) in m.iter_mut().zip(g) {
            let g = g * clip;
            let x = if squared { g * g } else { g };
            *m = *m * beta + x * one_minus_beta;
        }
        Ok(())
    }
}

/// `p = (1 - lr wd) p - lr (m / c1) / (sqrt(v / c2) + eps)`, reading the updated moments.
pub(super) struct ParameterOp {
    pub(super) inv_c1: f32,
    pub(super) inv_c2: f32,
    pub(super) eps: f32,
    pub(super) decay: f32,
    pub(super) lr: f32,
}

impl InplaceOp3 for ParameterOp {
    fn name(&self) -> &'static str {
        "adamw-parameter"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let (m, v) = (f32_slice(s2, l2, "first moment")?, f32_slice(s3, l3, "second moment")?);
        let p = f32_slice_mut(s1, l1, "parameter")?;
        same_length(p.len(), m.len())?;
        same_length(p.len(), v.len())?;
        let Self { inv_c1, inv_c2, eps, decay, lr } = *self;
        for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
            let update = (m * inv_c1) / ((v * inv_c2).sqrt() + eps);
            *p = *p * decay - update * lr;
        }
        Ok(())
    }
}

impl MomentOp {
    pub(super) fn new(beta: f64, clip: f64, squared: bool) -> Self {
        Self { clip: clip as f32, beta: beta as f32, one_minus_beta: (1.0 - beta) as f32, squared }
    }
}

impl ParameterOp {
    pub(super) fn new(s: &AdamWStep) -> Self {
        Self {
            inv_c1: (1.0 / s.c1) as f32,
            inv_c2: (1.0 / s.c2) as f32,
            eps: s.eps as f32,
            decay: (1.0 - s.lr * s.weight_decay) as f32,
            lr: s.lr as f32,
        }
    }
}

fn same_length(a: usize, b: usize) -> candle_core::Result<()> {
    if a != b {
        candle_core::bail!("AdamW: a parameter of {a} values has state of {b}");
    }
    Ok(())
}

/// `sum(x^2)` in eight f64 lanes, so that the loop vectorises.
pub(super) fn sum_squares(x: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v) * f64::from(v);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::super::{adamw_step, ema_update, sum_squares, tests::random};
    use super::{reference, AdamWStep};
    use candle_core::{Tensor, Var};

    fn bits(t: &Tensor) -> candle_core::Result<Vec<u32>> {
        Ok(t.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f32::to_bits).collect())
    }

    #[test]
    fn fused_step_equals_the_formula_to_the_bit() -> candle_core::Result<()> {
        let dims = [3, 5, 7, 11];
        // Clipped and not, with and without weight decay, early (large bias correction) and late.
        for (i, (clip, weight_decay, t)) in [(1.0, 0.0, 1), (0.37, 0.01, 2), (1.0, 0.1, 500)].into_iter().enumerate() {
            let seed = 10 * i as u64;
            let p = Var::from_tensor(&random(&dims, seed)?)?;
            let g = random(&dims, seed + 1)?;
            let m = (random(&dims, seed + 2)? * 0.1)?;
            let v = (random(&dims, seed + 3)?.sqr()? * 0.01)?;
            let s = AdamWStep {
                clip,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                lr: 3e-4,
                weight_decay,
                c1: 1.0 - 0.9f64.powi(t),
                c2: 1.0 - 0.999f64.powi(t),
            };
            let want = reference(&p, &g, &m, &v, &s)?;
            adamw_step(&p, &g, &m, &v, &s)?;
            for (got, want, what) in [(p.as_tensor(), &want[0], "parameter"), (&m, &want[1], "first moment"), (&v, &want[2], "second moment")] {
                assert_eq!(bits(got)?, bits(want)?, "case {i}: {what}");
            }
            assert!(p.as_tensor().ne(&random(&dims, seed)?)?.to_dtype(candle_core::DType::U32)?.sum_all()?.to_scalar::<u32>()? > 0, "the parameter moved");
        }
        Ok(())
    }

    #[test]
    fn ema_and_sum_of_squares_match_the_formula() -> candle_core::Result<()> {
        let (ema, p) = (random(&[1001], 1)?, random(&[1001], 2)?);
        let want = ((&ema * 0.99)? + (&p * (1.0 - 0.99))?)?;
        ema_update(&ema, &p, 0.99)?;
        assert_eq!(bits(&ema)?, bits(&want)?);
        let want = p.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        let got = sum_squares(&p)?;
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
        Ok(())
    }
}
