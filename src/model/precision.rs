//! Weights kept in half precision, computation in f32.
//!
//! With `--weights-dtype f16` the loader stores every matrix and kernel (any
//! weight of two or more dimensions: 99.9% of the parameters) as f16, which
//! halves the weights' memory; vectors (biases, norm scales) stay f32. Each
//! layer widens its weights to f32 as it runs ([`widen`]), so every
//! operation, the fast f32 CPU kernels included, still computes in f32; the
//! widened copy lives only for that layer's call.
//!
//! f16 rather than bf16: its 10-bit mantissa rounds each weight with a
//! relative error of at most 2^-11 (bf16: 2^-8, eight times more), and the
//! weights of these networks sit well inside its range; a tensor that does not
//! (any |w| above 65504) stays f32. On the golden model the largest relative
//! error of any output against the original's f32 tensors is 7.7e-4 with f16
//! weights, 6.2e-3 with bf16 (`cargo test --release --test golden half_precision`).

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};
use half::slice::HalfFloatSliceExt;
use half::f16;
use rayon::prelude::*;

/// The precision the weights of a loaded model are kept in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsDtype {
    /// As in the checkpoint (float32).
    #[default]
    F32,
    /// Matrices and kernels as IEEE half precision: half the memory.
    F16,
}

impl WeightsDtype {
    /// The environment variable the studio reads it from.
    pub const ENV: &'static str = "CODIFF_WEIGHTS_DTYPE";

    /// The studio's setting: `CODIFF_WEIGHTS_DTYPE` (`f32` or `f16`), f32 when unset.
    pub fn from_env() -> std::result::Result<Self, String> {
        match std::env::var(Self::ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Self::F32),
            Ok(value) => <Self as clap::ValueEnum>::from_str(value.trim(), true)
                .map_err(|_| format!("{}={value} is not a weights precision; use f32 or f16", Self::ENV)),
            Err(e) => Err(format!("{}: {e}", Self::ENV)),
        }
    }

    /// The dtype a weight of `rank` dimensions is kept in.
    fn storage(self, rank: usize) -> DType {
        match self {
            Self::F16 if rank >= 2 => DType::F16,
            _ => DType::F32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

/// Largest finite f16.
const F16_MAX: f32 = 65504.0;

/// Elements converted per parallel work item.
const CHUNK: usize = 1 << 16;

/// `weight` (f32, as loaded) in the dtype `precision` keeps it in: unchanged,
/// or converted to f16 where every value fits f16's range.
pub fn to_storage(weight: &Tensor, precision: WeightsDtype) -> Result<Tensor> {
    if weight.dtype() != DType::F32 || precision.storage(weight.rank()) == DType::F32 {
        return Ok(weight.clone());
    }
    let weight = weight.contiguous()?;
    let (storage, layout) = weight.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(data)), Some((a, b))) = (&*storage, layout.contiguous_offsets()) else {
        drop(storage);
        return if fits_f16(&weight)? { weight.to_dtype(DType::F16) } else { Ok(weight) };
    };
    let src = &data[a..b];
    if src.par_iter().any(|v| v.abs() > F16_MAX) {
        drop(storage);
        return Ok(weight);
    }
    let mut out = vec![f16::ZERO; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(dst, src)| dst.convert_from_f32_slice(src));
    Tensor::from_vec(out, weight.shape(), weight.device())
}

fn fits_f16(weight: &Tensor) -> Result<bool> {
    Ok(weight.abs()?.max_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()? <= F16_MAX)
}

/// `weight` as f32 for computing with: the same tensor when it is f32 (so
/// gradients flow in training), else a widened copy.
pub fn widen(weight: &Tensor) -> Result<Tensor> {
    if weight.dtype() == DType::F32 {
        return Ok(weight.clone());
    }
    let (storage, layout) = weight.storage_and_layout();
    let Some((a, b)) = layout.contiguous_offsets() else {
        drop(storage);
        return weight.to_dtype(DType::F32);
    };
    let mut out = vec![0f32; b - a];
    match &*storage {
        Storage::Cpu(CpuStorage::F16(data)) => widen_into(&data[a..b], &mut out),
        Storage::Cpu(CpuStorage::BF16(data)) => widen_into(&data[a..b], &mut out),
        _ => {
            drop(storage);
            return weight.to_dtype(DType::F32);
        }
    }
    Tensor::from_vec(out, weight.shape(), weight.device())
}

/// ||got - want|| / ||want||, in f64 on the CPU, wherever the two were computed.
pub fn relative_error(got: &Tensor, want: &Tensor) -> Result<f64> {
    if got.dims() != want.dims() {
        return Err(candle_core::Error::ShapeMismatchBinaryOp { lhs: got.shape().clone(), rhs: want.shape().clone(), op: "relative_error" });
    }
    let got = got.to_device(&candle_core::Device::Cpu)?.to_dtype(DType::F64)?;
    let want = want.to_device(&candle_core::Device::Cpu)?.to_dtype(DType::F64)?;
    let diff = (got - &want)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    let norm = want.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok((diff / norm.max(f64::MIN_POSITIVE)).sqrt())
}

/// Widens `src` into `dst` in parallel chunks (SIMD where the CPU converts halves natively).
fn widen_into<H: Sync>(src: &[H], dst: &mut [f32])
where
    [H]: HalfFloatSliceExt,
{
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(dst, src)| src.convert_to_f32_slice(dst));
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn relative_error_is_the_norm_of_the_difference_over_the_reference() {
        let want = Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap();
        let got = Tensor::new(&[3f32, 4.5], &Device::Cpu).unwrap();
        assert!((relative_error(&got, &want).unwrap() - 0.1).abs() < 1e-9);
        let other_shape = Tensor::new(&[3f32], &Device::Cpu).unwrap();
        assert!(relative_error(&other_shape, &want).is_err());
    }

    #[test]
    fn matrices_go_to_f16_and_vectors_stay_f32() -> Result<()> {
        // Magnitudes from 1e-4 to 1e2, inside f16's normal range (from 6.1e-5), both signs.
        let values: Vec<f32> = (0..70_000)
            .map(|i| {
                let spread = (i as f32 * 0.618_034).fract();
                (if i % 2 == 0 { 1.0 } else { -1.0 }) * 10f32.powf(-4.0 + 6.0 * spread)
            })
            .collect();
        let matrix = Tensor::from_vec(values, (70, 1000), &Device::Cpu)?;
        let vector = Tensor::randn(0f32, 1.0, 300, &Device::Cpu)?;
        let stored = to_storage(&matrix, WeightsDtype::F16)?;
        assert_eq!(stored.dtype(), DType::F16);
        assert_eq!(to_storage(&vector, WeightsDtype::F16)?.dtype(), DType::F32);
        assert_eq!(to_storage(&matrix, WeightsDtype::F32)?.dtype(), DType::F32);
        // Round to nearest: at most half an f16 ulp, 2^-11 relative.
        let back = widen(&stored)?;
        let err = ((&back - &matrix)?.abs()? / matrix.abs()?)?.max_all()?.to_scalar::<f32>()?;
        assert!(err <= 1.0 / 2048.0 + 1e-7, "relative rounding error {err}");
        // Ours agrees with candle's own (per-element) conversion.
        let candles = matrix.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
        assert_eq!(back.to_vec2::<f32>()?, candles.to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn a_weight_beyond_f16s_range_stays_f32() -> Result<()> {
        let weight = Tensor::new(&[[1f32, -70000.0], [0.5, 2.0]], &Device::Cpu)?;
        let stored = to_storage(&weight, WeightsDtype::F16)?;
        assert_eq!(stored.dtype(), DType::F32);
        assert_eq!(stored.to_vec2::<f32>()?, weight.to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn widening_keeps_views_and_bf16_right() -> Result<()> {
        let weight = Tensor::randn(0f32, 1.0, (8, 6), &Device::Cpu)?;
        let half = weight.to_dtype(DType::F16)?;
        // A non-contiguous view goes through candle's conversion.
        let view = half.t()?;
        assert_eq!(widen(&view)?.to_vec2::<f32>()?, view.to_dtype(DType::F32)?.to_vec2::<f32>()?);
        let brain = weight.to_dtype(DType::BF16)?;
        assert_eq!(widen(&brain)?.to_vec2::<f32>()?, brain.to_dtype(DType::F32)?.to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn the_studio_reads_its_setting_by_name() {
        assert_eq!(<WeightsDtype as clap::ValueEnum>::from_str("F16", true), Ok(WeightsDtype::F16));
        assert!(<WeightsDtype as clap::ValueEnum>::from_str("bf16", true).is_err());
    }
}
