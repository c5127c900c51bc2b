//! Attention: the one scaled dot-product function every attention layer
//! calls (the single place a faster kernel gets swapped in), and the UNet's
//! SpatialTransformer (`ldm.modules.attention`) built on it.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::layers::{group_norm, linear, linear_no_bias, Conv2d, GroupNorm, LayerNorm, Linear};

/// softmax(q k^T / sqrt(d)) v for q: B x H x Lq x d, k and v: B x H x Lk x d;
/// returns B x H x Lq x d. Differentiable on every device: the CPU kernel has
/// its own backward, and candle's path (other devices, `CODIFF_KERNELS=generic`)
/// takes the differentiable softmax whenever an input tracks gradients.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, h, lq, d) = q.dims4()?;
    let lk = k.dim(2)?;
    // Tiled online-softmax kernel: the Lq x Lk scores never exist whole at inference.
    let out = crate::kernels::attention(
        &q.reshape((b * h, lq, d))?,
        &k.reshape((b * h, lk, d))?,
        &v.reshape((b * h, lk, d))?,
        (d as f64).powf(-0.5),
    )?;
    out.reshape((b, h, lq, d))
}

/// B x L x (H d) -> B x H x L x d.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, l, inner) = x.dims3()?;
    x.reshape((b, l, heads, inner / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// B x H x L x d -> B x L x (H d).
fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, l, h * d))
}

/// Multi-head attention of queries from `x` over keys and values from the
/// context (cross-attention) or from `x` itself (self-attention); `CrossAttention`
/// in the original: q/k/v without bias, `to_out.0` with bias.
#[derive(Debug, Clone)]
pub struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl CrossAttention {
    pub fn new(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        dim_head: usize,
    ) -> Result<Self> {
        let inner = heads * dim_head;
        Ok(Self {
            to_q: linear_no_bias(query_dim, inner, vb.pp("to_q"))?,
            to_k: linear_no_bias(context_dim, inner, vb.pp("to_k"))?,
            to_v: linear_no_bias(context_dim, inner, vb.pp("to_v"))?,
            to_out: linear(inner, query_dim, vb.pp("to_out").pp("0"))?,
            heads,
        })
    }

    /// x: B x L x query_dim; context: B x Lc x context_dim (None: attend to x).
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let q = split_heads(&self.to_q.forward(x)?, self.heads)?;
        let k = split_heads(&self.to_k.forward(context)?, self.heads)?;
        let v = split_heads(&self.to_v.forward(context)?, self.heads)?;
        self.to_out.forward(&merge_heads(&attention(&q, &k, &v)?)?)
    }
}

/// GEGLU feed-forward: Linear(d, 8d) split into value and gate,
/// value * GELU(gate) with the exact erf GELU, then Linear(4d, d).
#[derive(Debug, Clone)]
pub struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj: linear(dim, 2 * inner, vb.pp("net.0.proj"))?,
            out: linear(inner, dim, vb.pp("net.2"))?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let projected = self.proj.forward(x)?;
        let value = projected.narrow(D::Minus1, 0, projected.dim(D::Minus1)? / 2)?;
        let gate = projected.narrow(D::Minus1, value.dim(D::Minus1)?, value.dim(D::Minus1)?)?;
        self.out.forward(&(value * crate::kernels::gelu_erf(&gate)?)?)
    }
}

/// Self-attention, cross-attention over the condition, feed-forward, each
/// pre-normed and residual.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    attn1: CrossAttention,
    attn2: CrossAttention,
    ff: FeedForward,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
}

impl BasicTransformerBlock {
    pub fn new(
        vb: VarBuilder,
        dim: usize,
        heads: usize,
        dim_head: usize,
        context_dim: usize,
    ) -> Result<Self> {
        Ok(Self {
            attn1: CrossAttention::new(vb.pp("attn1"), dim, dim, heads, dim_head)?,
            attn2: CrossAttention::new(vb.pp("attn2"), dim, context_dim, heads, dim_head)?,
            ff: FeedForward::new(vb.pp("ff"), dim)?,
            norm1: LayerNorm::new(vb.pp("norm1"), dim, 1e-5)?,
            norm2: LayerNorm::new(vb.pp("norm2"), dim, 1e-5)?,
            norm3: LayerNorm::new(vb.pp("norm3"), dim, 1e-5)?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = (self.attn1.forward(&self.norm1.forward(x)?, None)? + x)?;
        let x = (self
            .attn2
            .forward(&self.norm2.forward(&x)?, Some(context))?
            + x)?;
        self.ff.forward(&self.norm3.forward(&x)?)? + x
    }
}

/// The UNet's conditioning block: GroupNorm, 1x1 projection to tokens,
/// transformer blocks over the H*W tokens with cross-attention to the
/// condition, 1x1 projection back, plus the input.
#[derive(Debug, Clone)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Conv2d,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Conv2d,
}

impl SpatialTransformer {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        heads: usize,
        dim_head: usize,
        depth: usize,
        context_dim: usize,
        groups: usize,
    ) -> Result<Self> {
        let inner = heads * dim_head;
        let transformer_blocks = (0..depth)
            .map(|i| {
                let vb = vb.pp("transformer_blocks").pp(i);
                BasicTransformerBlock::new(vb, inner, heads, dim_head, context_dim)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            norm: group_norm(vb.pp("norm"), channels, groups, 1e-6)?,
            proj_in: Conv2d::pointwise(vb.pp("proj_in"), channels, inner)?,
            transformer_blocks,
            proj_out: Conv2d::zero_init(vb.pp("proj_out"), inner, channels, 1)?,
        })
    }

    /// x: B x C x H x W; context: B x L x context_dim.
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let hidden = self.proj_in.forward(&self.norm.forward(x)?)?;
        let inner = hidden.dim(1)?;
        let mut tokens = hidden.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        for block in &self.transformer_blocks {
            tokens = block.forward(&tokens, context)?;
        }
        let hidden = tokens.transpose(1, 2)?.reshape((b, inner, h, w))?;
        self.proj_out.forward(&hidden)? + x
    }
}
