//! A bias added along the last dimension, `x + b`, whose backward sums the
//! gradient's rows in one pass. candle's `broadcast_add` reduces its bias
//! gradient over the leading dimensions through a generic path that divides
//! per element: with the convolutions' bias sums, a fifth of a training step.

use super::f32_slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Rows per parallel work item of the forward.
const ROWS_PER_ITEM: usize = 64;

pub(super) struct AddBiasOp;

impl CustomOp2 for AddBiasOp {
    fn name(&self) -> &'static str {
        "fast-add-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, b) = (f32_slice(s1, l1, "input")?, f32_slice(s2, l2, "bias")?);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(ROWS_PER_ITEM * b.len()).zip(x.par_chunks(ROWS_PER_ITEM * b.len())).for_each(|(y, x)| {
            for (y, x) in y.chunks_exact_mut(b.len()).zip(x.chunks_exact(b.len())) {
                for ((y, &x), &b) in y.iter_mut().zip(x).zip(b) {
                    *y = x + b;
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, b: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let db = dy.contiguous()?.apply_op1(RowSumOp)?.reshape(b.shape())?;
        Ok((Some(dy.clone()), Some(db)))
    }
}

/// The sum of a tensor's rows (over every dimension but the last).
struct RowSumOp;

impl CustomOp1 for RowSumOp {
    fn name(&self) -> &'static str {
        "fast-row-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dy = f32_slice(s, l, "gradient")?;
        let width = l.dims().last().copied().unwrap_or(1).max(1);
        let mut sum = vec![0f32; width];
        for row in dy.chunks_exact(width) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v;
            }
        }
        Ok((CpuStorage::F32(sum), Shape::from(width)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, random};
    use candle_core::Var;

    #[test]
    fn matches_broadcast_add_and_its_gradients() -> candle_core::Result<()> {
        // More rows than one work item, over two leading dimensions.
        let (x, b) = (Var::from_tensor(&random(&[3, 50, 7], 1)?)?, Var::from_tensor(&random(&[7], 2)?)?);
        let probe = random(&[3, 50, 7], 3)?;
        let ours = super::super::add_bias(&x, &b)?;
        let theirs = x.broadcast_add(&b)?;
        assert_close(&ours, &theirs, 1e-6, "x + b")?;
        let (ours, theirs) = ((ours * &probe)?.sum_all()?.backward()?, (theirs * &probe)?.sum_all()?.backward()?);
        for (var, what) in [(&x, "dx"), (&b, "db")] {
            let grad = |store: &candle_core::backprop::GradStore| store.get(var).cloned().expect("a gradient");
            assert_close(&grad(&ours), &grad(&theirs), 1e-5, what)?;
        }
        Ok(())
    }
}
