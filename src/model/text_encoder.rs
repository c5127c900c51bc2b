//! The text condition encoder (`BERTEmbedder`): token ids to a sequence of
//! context vectors the text-driven UNet cross-attends to.
//!
//! An x-transformers `TransformerWrapper` around a pre-norm `Encoder`, trained
//! from scratch on top of the BERT tokenizer (no BERT weights). It runs with
//! **no attention mask**: padding tokens are attended to, as in the original.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{embedding, linear, linear_no_bias, Embedding, LayerNorm, Linear};
use serde::Deserialize;

/// x-transformers' defaults, which `BERTEmbedder` never overrides.
const HEADS: usize = 8;
const DIM_HEAD: usize = 64;
const FF_MULT: usize = 4;
const LN_EPS: f64 = 1e-5;

/// The `params` of `BERTEmbedder` in the original YAML (`cond_stage_config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TextEncoderConfig {
    pub n_embed: usize,
    pub n_layer: usize,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
}

impl TextEncoderConfig {
    /// Width of the context vectors this encoder produces.
    pub fn context_dim(&self) -> usize {
        self.n_embed
    }
}

fn default_vocab_size() -> usize {
    30522
}

fn default_max_seq_len() -> usize {
    super::tokenizer::MAX_TOKENS
}

/// Multi-head self-attention: q/k/v without bias, output projection with bias.
struct SelfAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SelfAttention {
    fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner = HEADS * DIM_HEAD;
        Ok(Self {
            to_q: linear_no_bias(dim, inner, vb.pp("to_q"))?,
            to_k: linear_no_bias(dim, inner, vb.pp("to_k"))?,
            to_v: linear_no_bias(dim, inner, vb.pp("to_v"))?,
            to_out: linear(inner, dim, vb.pp("to_out"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let heads = |proj: &Linear| -> Result<Tensor> {
            proj.forward(x)?.reshape((b, n, HEADS, DIM_HEAD))?.transpose(1, 2)?.reshape((b * HEADS, n, DIM_HEAD))
        };
        let (q, k, v) = (heads(&self.to_q)?, heads(&self.to_k)?, heads(&self.to_v)?);
        // The shared kernel is differentiable on every path, so the encoder trains jointly with the UNet.
        let out = crate::kernels::attention(&q, &k, &v, (DIM_HEAD as f64).powf(-0.5))?;
        let out = out.reshape((b, HEADS, n, DIM_HEAD))?.transpose(1, 2)?.reshape((b, n, HEADS * DIM_HEAD))?;
        self.to_out.forward(&out)
    }
}

/// Feed-forward: Linear, exact (erf) GELU, Linear.
struct FeedForward {
    project_in: Linear,
    project_out: Linear,
}

impl FeedForward {
    fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            project_in: linear(dim, dim * FF_MULT, vb.pp("net.0.0"))?,
            project_out: linear(dim * FF_MULT, dim, vb.pp("net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.project_out.forward(&crate::kernels::gelu_erf(&self.project_in.forward(x)?)?)
    }
}

/// One encoder layer: pre-norm attention then pre-norm feed-forward, each residual.
/// In the checkpoint they are two consecutive entries of `attn_layers.layers`,
/// each `(norm, block)`.
struct EncoderLayer {
    attn_norm: LayerNorm,
    attn: SelfAttention,
    ff_norm: LayerNorm,
    ff: FeedForward,
}

impl EncoderLayer {
    fn new(layers: &VarBuilder, index: usize, dim: usize) -> Result<Self> {
        let (attn_vb, ff_vb) = (layers.pp(2 * index), layers.pp(2 * index + 1));
        Ok(Self {
            attn_norm: LayerNorm::new(attn_vb.pp("0"), dim, LN_EPS)?,
            attn: SelfAttention::new(attn_vb.pp("1"), dim)?,
            ff_norm: LayerNorm::new(ff_vb.pp("0"), dim, LN_EPS)?,
            ff: FeedForward::new(ff_vb.pp("1"), dim)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.attn_norm.forward(x)?)?)?;
        &x + self.ff.forward(&self.ff_norm.forward(&x)?)?
    }
}

/// `BERTEmbedder`'s transformer. The checkpoint's `to_logits` layer is unused
/// (the original asks for embeddings) and is not loaded.
pub struct TextEncoder {
    token_emb: Embedding,
    pos_emb: Tensor,
    layers: Vec<EncoderLayer>,
    norm: LayerNorm,
    config: TextEncoderConfig,
}

impl TextEncoder {
    /// `vb` at the encoder's prefix: `cond_stage_model` in a text-only
    /// checkpoint, `cond_stage_model.text_cond_stage_model` in a composed one.
    pub fn new(vb: VarBuilder, config: &TextEncoderConfig) -> Result<Self> {
        let vb = vb.pp("transformer");
        let dim = config.n_embed;
        let layers_vb = vb.pp("attn_layers.layers");
        let layers = (0..config.n_layer).map(|i| EncoderLayer::new(&layers_vb, i, dim)).collect::<Result<_>>()?;
        Ok(Self {
            token_emb: embedding(config.vocab_size, dim, vb.pp("token_emb"))?,
            pos_emb: vb.get_with_hints((config.max_seq_len, dim), "pos_emb.emb.weight", candle_nn::Init::Randn { mean: 0., stdev: 0.02 })?,
            layers,
            norm: LayerNorm::new(vb.pp("norm"), dim, LN_EPS)?,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &TextEncoderConfig {
        &self.config
    }

    /// Token ids (B x n, u32, n <= `max_seq_len`) to context vectors (B x n x n_embed).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, n) = ids.dims2()?;
        if n > self.config.max_seq_len {
            candle_core::bail!(
                "the text encoder takes at most {} tokens, got {n}; tokenise with BertTokenizer",
                self.config.max_seq_len
            );
        }
        // Learned absolute positions, added without scaling.
        let mut x = self.token_emb.forward(ids)?.broadcast_add(&super::precision::widen(&self.pos_emb.narrow(0, 0, n)?)?)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        self.norm.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_the_original_yaml_params_with_defaults() {
        let cfg: TextEncoderConfig = serde_yaml::from_str("n_embed: 640\nn_layer: 32\ndevice: cpu\n").unwrap();
        assert_eq!(cfg, TextEncoderConfig { n_embed: 640, n_layer: 32, vocab_size: 30522, max_seq_len: 77 });
    }

    #[test]
    fn attention_runs_over_the_padding_too() {
        // With no attention mask, changing a padding id changes the output of the
        // caption tokens: the original attends to [PAD] and so must we.
        let dev = candle_core::Device::Cpu;
        let cfg = TextEncoderConfig { n_embed: 8, n_layer: 1, vocab_size: 4, max_seq_len: 3 };
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, candle_core::DType::F32, &dev);
        let enc = TextEncoder::new(vb, &cfg).unwrap();
        let a = enc.forward(&Tensor::new(&[[1u32, 2, 0]], &dev).unwrap()).unwrap();
        let b = enc.forward(&Tensor::new(&[[1u32, 2, 3]], &dev).unwrap()).unwrap();
        let diff = (a.narrow(1, 0, 1).unwrap() - b.narrow(1, 0, 1).unwrap()).unwrap().abs().unwrap();
        assert!(diff.sum_all().unwrap().to_scalar::<f32>().unwrap() > 1e-6);
    }
}
