//! The small layers every network here is built from: the one 2-D convolution
//! (the single place a faster kernel gets swapped in), group and layer norms
//! written from differentiable primitives, and the activations the original
//! uses.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

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
    // candle 0.11 computes wrong results for non-contiguous kernels (e.g. slices);
    // a checkpoint's kernels are contiguous already, so this costs nothing there.
    let out = x.conv2d(&weight.contiguous()?, padding, stride, 1, 1)?;
    match bias {
        Some(bias) => out.broadcast_add(&bias.reshape((1, (), 1, 1))?),
        None => Ok(out),
    }
}

/// A convolution layer with its checkpoint weights (`weight`, `bias`).
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
        Ok(Self {
            weight: vb.get((out_channels, in_channels, kernel, kernel), "weight")?,
            bias: vb.get(out_channels, "bias")?,
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
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, Some(&self.bias), self.stride, self.padding)
    }
}

/// Group normalisation with 32 groups, as the original's `normalization` /
/// `Normalize`; `eps` differs by network (1e-5 in UNet ResBlocks, 1e-6 in
/// SpatialTransformer and the VAE). candle's version is built from
/// differentiable primitives.
pub fn group_norm32(vb: VarBuilder, channels: usize, eps: f64) -> Result<candle_nn::GroupNorm> {
    candle_nn::group_norm(32, channels, eps, vb)
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
    /// torch.nn.LayerNorm(dim) with its default eps 1e-5.
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps: 1e-5,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(variance + self.eps)?.sqrt()?)?
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// x * sigmoid(x): the original's SiLU / `nonlinearity`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.silu()
}
