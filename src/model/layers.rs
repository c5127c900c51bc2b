//! The small layers every network here is built from: the one 2-D convolution
//! (the single place a faster kernel gets swapped in), group and layer norms
//! written from differentiable primitives, linear and embedding layers, and
//! the activations the original uses.
//!
//! Every layer widens its weights to f32 as it runs ([`widen`]), so a model
//! loaded with half-precision weights (see `precision`) computes in f32; for
//! f32 weights that is the same tensor, and training is unaffected.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::precision::widen;

/// 2-D convolution of `x` (B x Cin x H x W) with `weight` (Cout x Cin x k x k),
/// zero padding on every side. Every convolution of the UNets and the VAE goes
/// through here.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    // im2col + GEMM with GEMM gradients on the CPU (candle's own elsewhere);
    // it makes the kernel contiguous, which candle 0.11 needs for correct results.
    crate::kernels::conv2d(x, weight, bias, stride, padding)
}

/// A convolution layer with its checkpoint weights (`weight`, `bias`). Built
/// from a `VarMap` (training from scratch) it starts like PyTorch's default
/// initialisation, or at zero where the original wraps it in `zero_module`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let bound = 1. / ((in_channels * kernel * kernel) as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Self::with_init(
            vb,
            (in_channels, out_channels, kernel),
            (stride, padding),
            init,
        )
    }

    fn with_init(
        vb: VarBuilder,
        (in_channels, out_channels, kernel): (usize, usize, usize),
        (stride, padding): (usize, usize),
        init: Init,
    ) -> Result<Self> {
        let shape = (out_channels, in_channels, kernel, kernel);
        Ok(Self {
            weight: vb.get_with_hints(shape, "weight", init)?,
            bias: vb.get_with_hints(out_channels, "bias", init)?,
            stride,
            padding,
        })
    }

    /// 3x3, stride 1, padding 1: the shape-keeping convolution.
    pub fn same3(vb: VarBuilder, in_channels: usize, out_channels: usize) -> Result<Self> {
        Self::new(vb, in_channels, out_channels, 3, 1, 1)
    }

    /// 1x1 projection.
    pub fn pointwise(vb: VarBuilder, in_channels: usize, out_channels: usize) -> Result<Self> {
        Self::new(vb, in_channels, out_channels, 1, 1, 0)
    }

    /// A convolution that starts at zero when initialised (the original's
    /// `zero_module`), so a fresh residual branch starts as the identity.
    pub fn zero_init(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
    ) -> Result<Self> {
        let io = (in_channels, out_channels, kernel);
        Self::with_init(vb, io, (1, kernel / 2), candle_nn::init::ZERO)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &widen(&self.weight)?, Some(&widen(&self.bias)?), self.stride, self.padding)
    }
}

/// The original's group count (`normalization` / `Normalize`), the default
/// of every config's `norm_num_groups`.
pub const ORIGINAL_GROUPS: usize = 32;

/// Group normalisation, as the original's `normalization` / `Normalize` with
/// its 32 groups by default; `eps` differs by network (1e-5 in UNet
/// ResBlocks, 1e-6 in SpatialTransformer and the VAE), through the fused
/// kernel (with the SiLU that usually follows folded in), which has a
/// backward for training.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    groups: usize,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl GroupNorm {
    /// GroupNorm followed by SiLU, in one pass.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        crate::kernels::group_norm(x, self.groups, &widen(&self.weight)?, &widen(&self.bias)?, self.eps, true)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::kernels::group_norm(x, self.groups, &widen(&self.weight)?, &widen(&self.bias)?, self.eps, false)
    }
}

/// A group norm of `channels` in `groups` groups. Fewer groups than channels
/// let a layer see how far each channel's mean sits from the others'; one
/// group per channel (32 on 32-channel layers) normalises that away.
pub fn group_norm(vb: VarBuilder, channels: usize, groups: usize, eps: f64) -> Result<GroupNorm> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        candle_core::bail!("group norm over {channels} channels in {groups} groups: norm_num_groups must divide every layer's width");
    }
    Ok(GroupNorm {
        groups,
        weight: vb.get_with_hints(channels, "weight", candle_nn::init::ONE)?,
        bias: vb.get_with_hints(channels, "bias", candle_nn::init::ZERO)?,
        eps,
    })
}

/// Layer normalisation over the last dimension, written from primitives so that
/// gradients flow (candle's fused `LayerNorm` has no backward).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// torch.nn.LayerNorm(dim, eps).
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", candle_nn::init::ONE)?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::init::ZERO)?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let scaled = centred
            .broadcast_div(&(variance + self.eps)?.sqrt()?)?
            .to_dtype(dtype)?
            .broadcast_mul(&widen(&self.weight)?)?;
        crate::kernels::add_bias(&scaled, &widen(&self.bias)?)
    }
}

/// torch.nn.Linear: `x W^T + b`, as `candle_nn::Linear`, with its weights widened as it runs.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Module for Linear {
    /// As one 2-D product over every row: candle_nn's broadcasts the weight
    /// over the batch, whose gradient then sums over it through a slow path.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let weight = widen(&self.weight)?;
        let mut dims = x.dims().to_vec();
        let inputs = dims.pop().unwrap_or(1);
        let rows = dims.iter().product::<usize>();
        let y = x.reshape((rows, inputs))?.matmul(&weight.t()?)?;
        let y = match &self.bias {
            Some(bias) => crate::kernels::add_bias(&y, &widen(bias)?)?,
            None => y,
        };
        dims.push(weight.dim(0)?);
        y.reshape(dims)
    }
}

/// A Linear layer with bias, initialised as `candle_nn::linear`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let candle = candle_nn::linear(in_dim, out_dim, vb)?;
    Ok(Linear { weight: candle.weight().clone(), bias: candle.bias().cloned() })
}

/// A Linear layer without bias, initialised as `candle_nn::linear_no_bias`.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let candle = candle_nn::linear_no_bias(in_dim, out_dim, vb)?;
    Ok(Linear { weight: candle.weight().clone(), bias: None })
}

/// torch.nn.Embedding: rows of a table by index; only the rows looked up are widened.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Tensor,
}

impl Module for Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut dims = ids.dims().to_vec();
        dims.push(self.table.dim(1)?);
        widen(&self.table.index_select(&ids.flatten_all()?, 0)?)?.reshape(dims)
    }
}

/// An embedding table of `count` rows of `dim`, initialised as `candle_nn::embedding`.
pub fn embedding(count: usize, dim: usize, vb: VarBuilder) -> Result<Embedding> {
    Ok(Embedding { table: candle_nn::embedding(count, dim, vb)?.embeddings().clone() })
}

/// x * sigmoid(x): the original's SiLU / `nonlinearity`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.silu()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn layer_norm_matches_candles_fused_one() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 3.0, (2, 5, 16), &dev)? + 1.5)?;
        let weight = Tensor::randn(0f32, 1.0, 16, &dev)?;
        let bias = Tensor::randn(0f32, 1.0, 16, &dev)?;
        let ours = LayerNorm {
            weight: weight.clone(),
            bias: bias.clone(),
            eps: 1e-5,
        }
        .forward(&x)?;
        let fused = candle_nn::ops::layer_norm(&x, &weight, &bias, 1e-5)?;
        let max_diff = (ours - fused)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(max_diff < 1e-5, "max difference {max_diff}");
        Ok(())
    }
}
