//! The KL autoencoder (`first_stage_model`, `ldm.models.autoencoder.AutoencoderKL`)
//! that maps images to the diffusion latent and back. Module paths spell the
//! checkpoint keys under `first_stage_model`.

use candle_core::{bail, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::attention::attention;
use super::layers::{group_norm, Conv2d, GroupNorm, ORIGINAL_GROUPS};

/// The YAML `params` of `AutoencoderKL` (monitor, lossconfig, ckpt_path are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct AutoencoderConfig {
    pub embed_dim: usize,
    pub ddconfig: DdConfig,
}

/// The encoder/decoder shape (`ddconfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct DdConfig {
    pub double_z: bool,
    pub z_channels: usize,
    pub resolution: usize,
    pub in_channels: usize,
    pub out_ch: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Resolutions (in pixels of the feature map) that get an attention block after each ResnetBlock.
    pub attn_resolutions: Vec<usize>,
    #[serde(default)]
    pub dropout: f64,
    /// Groups of every group norm (diffusers' name; the original always uses 32).
    #[serde(default = "original_groups")]
    pub norm_num_groups: usize,
}

fn original_groups() -> usize {
    ORIGINAL_GROUPS
}

/// Group norm of the VAE: eps 1e-6.
fn normalize(vb: VarBuilder, channels: usize, groups: usize) -> Result<GroupNorm> {
    group_norm(vb, channels, groups, 1e-6)
}

/// The VAE's residual block (no time embedding).
#[derive(Debug, Clone)]
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(vb: VarBuilder, in_channels: usize, out_channels: usize, groups: usize) -> Result<Self> {
        let nin_shortcut = if in_channels == out_channels {
            None
        } else {
            Some(Conv2d::pointwise(
                vb.pp("nin_shortcut"),
                in_channels,
                out_channels,
            )?)
        };
        Ok(Self {
            norm1: normalize(vb.pp("norm1"), in_channels, groups)?,
            conv1: Conv2d::same3(vb.pp("conv1"), in_channels, out_channels)?,
            norm2: normalize(vb.pp("norm2"), out_channels, groups)?,
            conv2: Conv2d::same3(vb.pp("conv2"), out_channels, out_channels)?,
            nin_shortcut,
        })
    }
}

impl Module for ResnetBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        match &self.nin_shortcut {
            Some(shortcut) => shortcut.forward(x)? + h,
            None => x + h,
        }
    }
}

/// Single-head self-attention over the pixels, with 1x1-conv projections.
#[derive(Debug, Clone)]
struct AttnBlock {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    fn new(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        let conv = |name: &str| Conv2d::pointwise(vb.pp(name), channels, channels);
        Ok(Self {
            norm: normalize(vb.pp("norm"), channels, groups)?,
            q: conv("q")?,
            k: conv("k")?,
            v: conv("v")?,
            proj_out: conv("proj_out")?,
        })
    }
}

impl Module for AttnBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let normed = self.norm.forward(x)?;
        // B x C x H x W -> B x 1 x HW x C: one head over every pixel.
        let tokens = |conv: &Conv2d| -> Result<Tensor> {
            conv.forward(&normed)?
                .reshape((b, 1, c, h * w))?
                .transpose(2, 3)?
                .contiguous()
        };
        let attended = attention(&tokens(&self.q)?, &tokens(&self.k)?, &tokens(&self.v)?)?;
        let attended = attended
            .squeeze(1)?
            .transpose(1, 2)?
            .reshape((b, c, h, w))?;
        self.proj_out.forward(&attended)? + x
    }
}

/// ResnetBlock, attention, ResnetBlock: the middle of encoder and decoder.
#[derive(Debug, Clone)]
struct MidBlock {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl MidBlock {
    fn new(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            block_1: ResnetBlock::new(vb.pp("block_1"), channels, channels, groups)?,
            attn_1: AttnBlock::new(vb.pp("attn_1"), channels, groups)?,
            block_2: ResnetBlock::new(vb.pp("block_2"), channels, channels, groups)?,
        })
    }
}

impl Module for MidBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.block_1.forward(x)?;
        let h = self.attn_1.forward(&h)?;
        self.block_2.forward(&h)
    }
}

/// ResnetBlocks of one resolution, each followed by attention where configured.
#[derive(Debug, Clone)]
struct Level {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
}

impl Level {
    fn new(
        vb: VarBuilder,
        count: usize,
        in_ch: usize,
        out_ch: usize,
        with_attn: bool,
        groups: usize,
    ) -> Result<Self> {
        let mut blocks = Vec::with_capacity(count);
        let mut attns = Vec::new();
        for i in 0..count {
            let block_in = if i == 0 { in_ch } else { out_ch };
            blocks.push(ResnetBlock::new(vb.pp("block").pp(i), block_in, out_ch, groups)?);
            if with_attn {
                attns.push(AttnBlock::new(vb.pp("attn").pp(i), out_ch, groups)?);
            }
        }
        Ok(Self { blocks, attns })
    }
}

impl Module for Level {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h)?;
            if let Some(attn) = self.attns.get(i) {
                h = attn.forward(&h)?;
            }
        }
        Ok(h)
    }
}

/// Image to posterior moments: B x 3 x H x W -> B x 2z x H/f x W/f.
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    /// Each level and, except at the last, its stride-2 downsampling conv.
    down: Vec<(Level, Option<Conv2d>)>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(vb: VarBuilder, cfg: &DdConfig) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let mut resolution = cfg.resolution;
        let mut block_in = cfg.ch;
        let mut down = Vec::with_capacity(levels);
        for (i, mult) in cfg.ch_mult.iter().enumerate() {
            let vb = vb.pp("down").pp(i);
            let block_out = cfg.ch * mult;
            let with_attn = cfg.attn_resolutions.contains(&resolution);
            let level = Level::new(
                vb.clone(),
                cfg.num_res_blocks,
                block_in,
                block_out,
                with_attn,
                cfg.norm_num_groups,
            )?;
            block_in = block_out;
            let downsample = if i + 1 != levels {
                resolution /= 2;
                Some(Conv2d::new(
                    vb.pp("downsample.conv"),
                    block_in,
                    block_in,
                    3,
                    2,
                    0,
                )?)
            } else {
                None
            };
            down.push((level, downsample));
        }
        let z_out = if cfg.double_z {
            2 * cfg.z_channels
        } else {
            cfg.z_channels
        };
        Ok(Self {
            conv_in: Conv2d::same3(vb.pp("conv_in"), cfg.in_channels, cfg.ch)?,
            down,
            mid: MidBlock::new(vb.pp("mid"), block_in, cfg.norm_num_groups)?,
            norm_out: normalize(vb.pp("norm_out"), block_in, cfg.norm_num_groups)?,
            conv_out: Conv2d::same3(vb.pp("conv_out"), block_in, z_out)?,
        })
    }
}

impl Module for Encoder {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for (level, downsample) in &self.down {
            h = level.forward(&h)?;
            if let Some(conv) = downsample {
                // The original pads right and bottom only, then convolves without padding.
                h = conv.forward(&h.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?)?;
            }
        }
        let h = self.mid.forward(&h)?;
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

/// Latent to image: B x z x h x w -> B x out_ch x H x W.
#[derive(Debug, Clone)]
struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    /// Levels from the lowest resolution up, each but the last followed by
    /// nearest x2 + conv; `up.{i}` in the checkpoint counts the other way.
    up: Vec<(Level, Option<Conv2d>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(vb: VarBuilder, cfg: &DdConfig) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let mut block_in = cfg.ch * cfg.ch_mult[levels - 1];
        let mut resolution = cfg.resolution >> (levels - 1);
        let conv_in = Conv2d::same3(vb.pp("conv_in"), cfg.z_channels, block_in)?;
        let mid = MidBlock::new(vb.pp("mid"), block_in, cfg.norm_num_groups)?;
        let mut up = Vec::with_capacity(levels);
        for (i, mult) in cfg.ch_mult.iter().enumerate().rev() {
            let vb = vb.pp("up").pp(i);
            let block_out = cfg.ch * mult;
            let with_attn = cfg.attn_resolutions.contains(&resolution);
            let level = Level::new(
                vb.clone(),
                cfg.num_res_blocks + 1,
                block_in,
                block_out,
                with_attn,
                cfg.norm_num_groups,
            )?;
            block_in = block_out;
            let upsample = if i != 0 {
                resolution *= 2;
                Some(Conv2d::same3(vb.pp("upsample.conv"), block_in, block_in)?)
            } else {
                None
            };
            up.push((level, upsample));
        }
        Ok(Self {
            conv_in,
            mid,
            up,
            norm_out: normalize(vb.pp("norm_out"), block_in, cfg.norm_num_groups)?,
            conv_out: Conv2d::same3(vb.pp("conv_out"), block_in, cfg.out_ch)?,
        })
    }
}

impl Decoder {
    /// Everything up to `conv_out`.
    fn features(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.mid.forward(&self.conv_in.forward(z)?)?;
        for (level, upsample) in &self.up {
            h = level.forward(&h)?;
            if let Some(conv) = upsample {
                let (_, _, height, width) = h.dims4()?;
                h = conv.forward(&h.upsample_nearest2d(2 * height, 2 * width)?)?;
            }
        }
        self.norm_out.forward_silu(&h)
    }
}

/// The posterior N(mean, exp(logvar)) over latents.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    pub mean: Tensor,
    pub logvar: Tensor,
}

impl DiagonalGaussian {
    /// mean + exp(0.5 logvar) * noise, with `noise` ~ N(0, 1) shaped like the mean.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        self.mean.add(&((&self.logvar * 0.5)?.exp()? * noise)?)
    }
}

/// The first-stage model: encoder + quant_conv to the posterior,
/// post_quant_conv + decoder back to pixels.
#[derive(Debug, Clone)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    downsampling_factor: usize,
}

impl AutoencoderKL {
    /// `vb` is at the `first_stage_model` prefix.
    pub fn new(vb: VarBuilder, cfg: &AutoencoderConfig) -> Result<Self> {
        let dd = &cfg.ddconfig;
        if dd.ch_mult.is_empty() {
            bail!(
                "autoencoder config: ddconfig.ch_mult is empty; it needs one entry per resolution"
            )
        }
        if !dd.double_z {
            bail!("autoencoder config: double_z is false, but a KL autoencoder needs mean and log-variance (double_z: true)")
        }
        Ok(Self {
            encoder: Encoder::new(vb.pp("encoder"), dd)?,
            decoder: Decoder::new(vb.pp("decoder"), dd)?,
            quant_conv: Conv2d::pointwise(
                vb.pp("quant_conv"),
                2 * dd.z_channels,
                2 * cfg.embed_dim,
            )?,
            post_quant_conv: Conv2d::pointwise(
                vb.pp("post_quant_conv"),
                cfg.embed_dim,
                dd.z_channels,
            )?,
            downsampling_factor: 1 << (dd.ch_mult.len() - 1),
        })
    }

    /// image: B x 3 x H x W in [-1, 1]. Returns the posterior; logvar is clamped to [-30, 20].
    pub fn encode(&self, image: &Tensor) -> Result<DiagonalGaussian> {
        let moments = self.quant_conv.forward(&self.encoder.forward(image)?)?;
        let half = moments.dim(1)? / 2;
        Ok(DiagonalGaussian {
            mean: moments.narrow(1, 0, half)?,
            logvar: moments.narrow(1, half, half)?.clamp(-30f32, 20f32)?,
        })
    }

    /// z: the unscaled latent (the caller divides by scale_factor). No tanh at the end.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_last_layer(&self.decode_features(z)?)
    }

    /// The decoder up to its last convolution. Training weighs its adversarial
    /// term by the gradients at that layer, so it runs the layer apart.
    pub fn decode_features(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.features(&self.post_quant_conv.forward(z)?)
    }

    /// The decoder's last convolution (`decoder.conv_out`).
    pub fn decode_last_layer(&self, features: &Tensor) -> Result<Tensor> {
        self.decoder.conv_out.forward(features)
    }

    /// Image side / latent side (4 for the 256 model, 8 for the 512 one).
    pub fn downsampling_factor(&self) -> usize {
        self.downsampling_factor
    }
}
