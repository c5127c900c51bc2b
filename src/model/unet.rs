//! The denoising UNet of latent diffusion (`openaimodel.UNetModel` with
//! SpatialTransformers): each uni-modal collaborator's noise predictor, and,
//! with one output channel, each dynamic diffuser that predicts an influence
//! function. Module paths spell the checkpoint keys under `diffusion_model`.

use candle_core::{bail, DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use serde::Deserialize;

use super::attention::SpatialTransformer;
use super::layers::{group_norm, linear, silu, Conv2d, GroupNorm, Linear, ORIGINAL_GROUPS};

/// The YAML `params` of `ldm.modules.diffusionmodules.openaimodel.UNetModel`,
/// with the original's defaults for the optional ones. Options the released
/// models do not use are read so that [`UNetModel::new`] can refuse them.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    pub image_size: usize,
    pub in_channels: usize,
    pub model_channels: usize,
    pub out_channels: usize,
    pub num_res_blocks: usize,
    /// Downsampling rates (1, 2, 4, ...) at which a SpatialTransformer follows each ResBlock.
    pub attention_resolutions: Vec<usize>,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "default_channel_mult")]
    pub channel_mult: Vec<usize>,
    #[serde(default = "yes")]
    pub conv_resample: bool,
    #[serde(default = "default_dims")]
    pub dims: usize,
    #[serde(default)]
    pub num_classes: Option<usize>,
    #[serde(default = "minus_one")]
    pub num_heads: i64,
    #[serde(default = "minus_one")]
    pub num_head_channels: i64,
    #[serde(default = "minus_one")]
    pub num_heads_upsample: i64,
    #[serde(default)]
    pub use_scale_shift_norm: bool,
    #[serde(default)]
    pub resblock_updown: bool,
    #[serde(default)]
    pub use_new_attention_order: bool,
    #[serde(default)]
    pub use_spatial_transformer: bool,
    #[serde(default = "default_depth")]
    pub transformer_depth: usize,
    #[serde(default)]
    pub context_dim: Option<usize>,
    #[serde(default)]
    pub n_embed: Option<usize>,
    #[serde(default = "yes")]
    pub legacy: bool,
    #[serde(default)]
    pub enable_freeu: bool,
    /// Groups of every group norm (diffusers' name; the original always uses 32).
    #[serde(default = "original_groups")]
    pub norm_num_groups: usize,
}

fn original_groups() -> usize {
    ORIGINAL_GROUPS
}

fn default_channel_mult() -> Vec<usize> {
    vec![1, 2, 4, 8]
}
fn yes() -> bool {
    true
}
fn default_dims() -> usize {
    2
}
fn minus_one() -> i64 {
    -1
}
fn default_depth() -> usize {
    1
}

impl UNetConfig {
    /// Heads and per-head width of the attention at a level with `channels`
    /// channels: a fixed head count (`num_head_channels` = -1) or a fixed head
    /// width. `legacy` changes nothing for SpatialTransformers.
    pub(crate) fn heads(&self, channels: usize) -> Result<(usize, usize)> {
        let (heads, dim_head) = match (self.num_heads, self.num_head_channels) {
            (h, -1) if h > 0 => (h as usize, channels / h as usize),
            (_, c) if c > 0 => (channels / c as usize, c as usize),
            _ => bail!("UNet config: set num_heads or num_head_channels to a positive number"),
        };
        if dim_head == 0 {
            bail!("UNet config: {channels} channels cannot be split into {heads} attention heads")
        }
        Ok((heads, dim_head))
    }

    /// Refuses the original's options that the released models never use and
    /// this implementation does not compute.
    fn check_supported(&self) -> Result<()> {
        let unsupported = [
            (
                !self.use_spatial_transformer,
                "use_spatial_transformer: false",
            ),
            (self.context_dim.is_none(), "a missing context_dim"),
            (self.dims != 2, "dims other than 2"),
            (!self.conv_resample, "conv_resample: false"),
            (self.num_classes.is_some(), "num_classes"),
            (self.use_scale_shift_norm, "use_scale_shift_norm: true"),
            (self.resblock_updown, "resblock_updown: true"),
            (self.n_embed.is_some(), "n_embed"),
            (self.enable_freeu, "enable_freeu: true"),
        ];
        match unsupported.iter().find(|(bad, _)| *bad) {
            Some((_, what)) => bail!(
                "UNet config uses {what}, which the Collaborative Diffusion models do not; \
                 use a config of the released models"
            ),
            None => Ok(()),
        }
    }
}

/// Sinusoidal embedding of the raw step values: [cos(t f_i), sin(t f_i)] with
/// f_i = exp(-ln(10000) i / half), computed in f32 as the original does.
pub fn timestep_embedding(timesteps: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let log_period = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (log_period * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), timesteps.device())?;
    let args = timesteps
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    let embedding = Tensor::cat(&[args.cos()?, args.sin()?], 1)?;
    if dim % 2 == 1 {
        embedding.pad_with_zeros(1, 0, 1)
    } else {
        Ok(embedding)
    }
}

/// Residual block conditioned on the time embedding (added as a per-channel bias).
#[derive(Debug, Clone)]
struct ResBlock {
    in_norm: GroupNorm,
    in_conv: Conv2d,
    emb_proj: Linear,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    skip_connection: Option<Conv2d>,
}

impl ResBlock {
    fn new(
        vb: VarBuilder,
        channels: usize,
        emb_channels: usize,
        out_channels: usize,
        groups: usize,
    ) -> Result<Self> {
        let skip_connection = if channels == out_channels {
            None
        } else {
            Some(Conv2d::pointwise(
                vb.pp("skip_connection"),
                channels,
                out_channels,
            )?)
        };
        Ok(Self {
            in_norm: group_norm(vb.pp("in_layers.0"), channels, groups, 1e-5)?,
            in_conv: Conv2d::same3(vb.pp("in_layers.2"), channels, out_channels)?,
            emb_proj: linear(emb_channels, out_channels, vb.pp("emb_layers.1"))?,
            out_norm: group_norm(vb.pp("out_layers.0"), out_channels, groups, 1e-5)?,
            out_conv: Conv2d::zero_init(vb.pp("out_layers.3"), out_channels, out_channels, 3)?,
            skip_connection,
        })
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let h = self.in_conv.forward(&self.in_norm.forward_silu(x)?)?;
        let emb_bias = self
            .emb_proj
            .forward(&silu(emb)?)?
            .unsqueeze(2)?
            .unsqueeze(3)?;
        let h = h.broadcast_add(&emb_bias)?;
        // Dropout is the identity at inference.
        let h = self.out_conv.forward(&self.out_norm.forward_silu(&h)?)?;
        match &self.skip_connection {
            Some(skip) => skip.forward(x)? + h,
            None => x + h,
        }
    }
}

/// One entry of a `TimestepEmbedSequential`: each layer takes what it needs
/// of (x, time embedding, context).
#[derive(Debug, Clone)]
enum Layer {
    Conv(Conv2d),
    Res(ResBlock),
    Transformer(SpatialTransformer),
    /// Nearest-neighbour x2, then a 3x3 convolution.
    Upsample(Conv2d),
}

impl Layer {
    fn forward(&self, x: &Tensor, emb: &Tensor, context: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Conv(conv) => conv.forward(x),
            Layer::Res(block) => block.forward(x, emb),
            Layer::Transformer(transformer) => transformer.forward(x, context),
            Layer::Upsample(conv) => {
                let (_, _, h, w) = x.dims4()?;
                conv.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)
            }
        }
    }
}

/// The layers of one `input_blocks.{i}` / `middle_block` / `output_blocks.{i}`, in order.
#[derive(Debug, Clone)]
struct Stage(Vec<Layer>);

impl Stage {
    fn forward(&self, x: &Tensor, emb: &Tensor, context: &Tensor) -> Result<Tensor> {
        self.0
            .iter()
            .try_fold(x.clone(), |h, layer| layer.forward(&h, emb, context))
    }
}

/// The UNet noise predictor (or, with one output channel, a dynamic diffuser).
#[derive(Debug, Clone)]
pub struct UNetModel {
    model_channels: usize,
    time_embed_in: Linear,
    time_embed_out: Linear,
    input_blocks: Vec<Stage>,
    middle_block: Stage,
    output_blocks: Vec<Stage>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
}

impl UNetModel {
    /// `vb` is at the `diffusion_model` prefix, e.g. `vb.pp("model.text_unet.diffusion_model")`.
    pub fn new(vb: VarBuilder, cfg: &UNetConfig) -> Result<Self> {
        cfg.check_supported()?;
        let context_dim = cfg.context_dim.unwrap_or_default();
        let mc = cfg.model_channels;
        let emb_dim = 4 * mc;
        let groups = cfg.norm_num_groups;
        let transformer = |vb: VarBuilder, ch: usize| -> Result<Layer> {
            let (heads, dim_head) = cfg.heads(ch)?;
            let block = SpatialTransformer::new(
                vb,
                ch,
                heads,
                dim_head,
                cfg.transformer_depth,
                context_dim,
                groups,
            )?;
            Ok(Layer::Transformer(block))
        };

        let vb_in = vb.pp("input_blocks");
        let mut input_blocks = vec![Stage(vec![Layer::Conv(Conv2d::same3(
            vb_in.pp(0).pp(0),
            cfg.in_channels,
            mc,
        )?)])];
        let mut skip_channels = vec![mc];
        let mut ch = mc;
        let mut ds = 1;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let vb = vb_in.pp(input_blocks.len());
                let mut layers = vec![Layer::Res(ResBlock::new(vb.pp(0), ch, emb_dim, mult * mc, groups)?)];
                ch = mult * mc;
                if cfg.attention_resolutions.contains(&ds) {
                    layers.push(transformer(vb.pp(1), ch)?);
                }
                input_blocks.push(Stage(layers));
                skip_channels.push(ch);
            }
            if level + 1 != cfg.channel_mult.len() {
                let vb = vb_in.pp(input_blocks.len()).pp(0).pp("op");
                input_blocks.push(Stage(vec![Layer::Conv(Conv2d::new(vb, ch, ch, 3, 2, 1)?)]));
                skip_channels.push(ch);
                ds *= 2;
            }
        }

        let vb_mid = vb.pp("middle_block");
        let middle_block = Stage(vec![
            Layer::Res(ResBlock::new(vb_mid.pp(0), ch, emb_dim, ch, groups)?),
            transformer(vb_mid.pp(1), ch)?,
            Layer::Res(ResBlock::new(vb_mid.pp(2), ch, emb_dim, ch, groups)?),
        ]);

        let vb_out = vb.pp("output_blocks");
        let mut output_blocks = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let vb = vb_out.pp(output_blocks.len());
                let skip = skip_channels.pop().ok_or_else(|| {
                    candle_core::Error::Msg("UNet skip connections ran out".into())
                })?;
                let mut layers = vec![Layer::Res(ResBlock::new(
                    vb.pp(0),
                    ch + skip,
                    emb_dim,
                    mc * mult,
                    groups,
                )?)];
                ch = mc * mult;
                if cfg.attention_resolutions.contains(&ds) {
                    layers.push(transformer(vb.pp(1), ch)?);
                }
                if level > 0 && i == cfg.num_res_blocks {
                    let conv = Conv2d::same3(vb.pp(layers.len()).pp("conv"), ch, ch)?;
                    layers.push(Layer::Upsample(conv));
                    ds /= 2;
                }
                output_blocks.push(Stage(layers));
            }
        }

        Ok(Self {
            model_channels: mc,
            time_embed_in: linear(mc, emb_dim, vb.pp("time_embed.0"))?,
            time_embed_out: linear(emb_dim, emb_dim, vb.pp("time_embed.2"))?,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: group_norm(vb.pp("out.0"), ch, groups, 1e-5)?,
            out_conv: Conv2d::zero_init(vb.pp("out.2"), mc, cfg.out_channels, 3)?,
        })
    }

    /// x: B x C x H x W; timesteps: [B] raw step values (e.g. 981.0);
    /// context: B x L x context_dim. Returns B x out_channels x H x W.
    pub fn forward(&self, x: &Tensor, timesteps: &Tensor, context: &Tensor) -> Result<Tensor> {
        let t_emb = timestep_embedding(timesteps, self.model_channels)?;
        let emb = self
            .time_embed_out
            .forward(&silu(&self.time_embed_in.forward(&t_emb)?)?)?;

        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.clone();
        for stage in &self.input_blocks {
            h = stage.forward(&h, &emb, context)?;
            skips.push(h.clone());
        }
        h = self.middle_block.forward(&h, &emb, context)?;
        // Output stages pair with the input stages' activations, last first.
        for (stage, skip) in self.output_blocks.iter().zip(skips.iter().rev()) {
            h = stage.forward(&Tensor::cat(&[&h, skip], 1)?, &emb, context)?;
        }
        self.out_conv.forward(&self.out_norm.forward_silu(&h)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    /// A small diffuser-shaped UNet in the original's YAML form; `use_checkpoint`
    /// is one of the fields the original reads and this implementation ignores.
    fn small_config(extra: &str) -> UNetConfig {
        let yaml = format!(
            "image_size: 8\nin_channels: 3\nout_channels: 1\nmodel_channels: 32\n\
             attention_resolutions: [2]\nnum_res_blocks: 1\nchannel_mult: [1, 2]\n\
             num_head_channels: 16\nuse_spatial_transformer: true\ncontext_dim: 8\n\
             use_checkpoint: true\n{extra}"
        );
        serde_yaml::from_str(&yaml).expect("config parses")
    }

    #[test]
    fn timestep_embedding_puts_cosines_first() -> Result<()> {
        let t = Tensor::new(&[0f32, 3.0], &Device::Cpu)?;
        let emb = timestep_embedding(&t, 4)?.to_vec2::<f32>()?;
        let slow = (-(10000f64.ln()) / 2.0).exp();
        let expected = [
            [1.0, 1.0, 0.0, 0.0],
            [
                3f64.cos(),
                (3.0 * slow).cos(),
                3f64.sin(),
                (3.0 * slow).sin(),
            ],
        ];
        for (row, want) in emb.iter().zip(expected) {
            for (got, want) in row.iter().zip(want) {
                assert!((*got as f64 - want).abs() < 1e-6, "{emb:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn unsupported_options_are_refused_with_a_reason() {
        let cfg = small_config("use_scale_shift_norm: true\n");
        let err = UNetModel::new(VarBuilder::zeros(DType::F32, &Device::Cpu), &cfg).unwrap_err();
        assert!(err.to_string().contains("use_scale_shift_norm"), "{err}");
    }

    /// `norm_num_groups` defaults to the original's 32; fewer groups change
    /// what the same weights compute, and a count that does not divide a
    /// layer's width is refused by name.
    #[test]
    fn norm_num_groups_defaults_to_32_and_changes_the_normalisation() -> Result<()> {
        assert_eq!(small_config("").norm_num_groups, 32);
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let per_channel = UNetModel::new(vb.clone(), &small_config(""))?;
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.2, var.shape(), &dev)?)?;
        }
        let grouped = UNetModel::new(vb, &small_config("norm_num_groups: 8\n"))?;
        let x = (Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &dev)? + 0.5)?;
        let (t, context) = (Tensor::new(&[300f32], &dev)?, Tensor::randn(0f32, 1.0, (1, 5, 8), &dev)?);
        let gap = (per_channel.forward(&x, &t, &context)? - grouped.forward(&x, &t, &context)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(gap > 1e-3, "8 groups computed what 32 do: {gap}");
        let err = UNetModel::new(VarBuilder::zeros(DType::F32, &Device::Cpu), &small_config("norm_num_groups: 12\n")).unwrap_err();
        assert!(err.to_string().contains("12 groups"), "{err}");
        Ok(())
    }

    /// A fresh UNet predicts zero (the original's zero-initialised output
    /// convolutions); once its weights are random, every weight and the
    /// condition receive a gradient, so nothing in the forward pass blocks
    /// training or embedding optimisation.
    #[test]
    fn every_weight_and_the_condition_get_a_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let unet = UNetModel::new(
            VarBuilder::from_varmap(&varmap, DType::F32, &dev),
            &small_config(""),
        )?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
        let t = Tensor::new(&[10f32, 500.0], &dev)?;
        let context = Var::randn(0f32, 1.0, (2, 5, 8), &dev)?;
        let fresh = unet.forward(&x, &t, &context)?;
        assert_eq!(fresh.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);

        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.2, var.shape(), &dev)?)?;
        }
        let grads = unet
            .forward(&x, &t, &context)?
            .sqr()?
            .sum_all()?
            .backward()?;
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .expect("varmap")
            .clone()
            .into_iter()
            .collect();
        vars.push(("context".into(), context));
        for (name, var) in vars {
            let grad = grads
                .get(&var)
                .unwrap_or_else(|| panic!("{name} has no gradient"));
            assert!(
                grad.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0,
                "{name} has a zero gradient"
            );
        }
        Ok(())
    }
}
