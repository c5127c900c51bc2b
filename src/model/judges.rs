//! The judges the evaluation uses in place of the paper's face-parsing network
//! and CLIP score, trained on the synthetic world's ground truth: a face
//! parser (photo -> 19-class mask) and an attribute classifier (photo ->
//! gender, age decade, beard level), whose pooled features also serve the
//! Fréchet distance. Small residual CNNs over 64 x 64 photos in [-1, 1].

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use super::layers::{group_norm, Conv2d, GroupNorm, ORIGINAL_GROUPS};
use crate::data::mask::NUM_CLASSES;

/// The photo side the judges read; other sizes are resized first.
pub const JUDGE_SIZE: usize = 64;
pub const GENDERS: usize = 2;
pub const DECADES: usize = 7;
pub const BEARD_LEVELS: usize = 7;

/// GroupNorm + SiLU + conv, twice, with a skip connection (1x1 where the width changes).
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(vb.pp("norm1"), cin, ORIGINAL_GROUPS, 1e-5)?,
            conv1: Conv2d::same3(vb.pp("conv1"), cin, cout)?,
            norm2: group_norm(vb.pp("norm2"), cout, ORIGINAL_GROUPS, 1e-5)?,
            conv2: Conv2d::same3(vb.pp("conv2"), cout, cout)?,
            skip: (cin != cout).then(|| Conv2d::pointwise(vb.pp("skip"), cin, cout)).transpose()?,
        })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        match &self.skip {
            Some(skip) => skip.forward(x)? + h,
            None => x + h,
        }
    }
}

/// Photo -> per-pixel class logits (B x 19 x H x W): a two-level encoder-decoder with skips.
pub struct FaceParser {
    stem: Conv2d,
    down1: Conv2d,
    enc2: ResBlock,
    down2: Conv2d,
    mid: [ResBlock; 2],
    up2: Conv2d,
    dec2: ResBlock,
    up1: Conv2d,
    dec1: ResBlock,
    out_norm: GroupNorm,
    out: Conv2d,
}

impl FaceParser {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            stem: Conv2d::same3(vb.pp("stem"), 3, 32)?,
            down1: Conv2d::new(vb.pp("down1"), 32, 64, 3, 2, 1)?,
            enc2: ResBlock::new(vb.pp("enc2"), 64, 64)?,
            down2: Conv2d::new(vb.pp("down2"), 64, 128, 3, 2, 1)?,
            mid: [ResBlock::new(vb.pp("mid.0"), 128, 128)?, ResBlock::new(vb.pp("mid.1"), 128, 128)?],
            up2: Conv2d::same3(vb.pp("up2"), 128, 64)?,
            dec2: ResBlock::new(vb.pp("dec2"), 128, 64)?,
            up1: Conv2d::same3(vb.pp("up1"), 64, 32)?,
            dec1: ResBlock::new(vb.pp("dec1"), 64, 32)?,
            out_norm: group_norm(vb.pp("out_norm"), 32, ORIGINAL_GROUPS, 1e-5)?,
            out: Conv2d::same3(vb.pp("out"), 32, NUM_CLASSES)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let s1 = self.stem.forward(x)?;
        let s2 = self.enc2.forward(&self.down1.forward(&s1)?)?;
        let mut m = self.down2.forward(&s2)?;
        for block in &self.mid {
            m = block.forward(&m)?;
        }
        let u2 = self.up2.forward(&m.upsample_nearest2d(h / 2, w / 2)?)?;
        let d2 = self.dec2.forward(&Tensor::cat(&[&u2, &s2], 1)?)?;
        let u1 = self.up1.forward(&d2.upsample_nearest2d(h, w)?)?;
        let d1 = self.dec1.forward(&Tensor::cat(&[&u1, &s1], 1)?)?;
        self.out.forward(&self.out_norm.forward_silu(&d1)?)
    }

    /// The most likely class per pixel: B x H x W (u32).
    pub fn parse(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)?.argmax(1)
    }
}

/// Logits of each attribute the captions speak of.
pub struct AttributeLogits {
    pub gender: Tensor,
    pub decade: Tensor,
    pub beard: Tensor,
}

impl AttributeLogits {
    /// The decade to read when a reading within one decade counts as right:
    /// the one whose neighbourhood (itself and the decades either side) is
    /// most probable. The synthetic world paints no age before 30 (wrinkles
    /// start at 30, grey hair at 32 to 48), so the likeliest single decade of
    /// a young face is a guess among teens, twenties and thirties, while
    /// "twenties" is within one of all three.
    pub fn decade_within_one(&self) -> Result<Tensor> {
        let p = candle_nn::ops::softmax_last_dim(&self.decade)?;
        let (batch, decades) = p.dims2()?;
        let zero = Tensor::zeros((batch, 1), p.dtype(), p.device())?;
        let padded = Tensor::cat(&[&zero, &p, &zero], 1)?;
        let neighbourhood = ((padded.narrow(1, 0, decades)? + padded.narrow(1, 1, decades)?)? + padded.narrow(1, 2, decades)?)?;
        neighbourhood.argmax(D::Minus1)
    }
}

/// Photo -> pooled features -> gender, age decade and beard level logits.
pub struct AttributeJudge {
    stem: Conv2d,
    stages: Vec<(Conv2d, ResBlock)>,
    out_norm: GroupNorm,
    gender: Linear,
    decade: Linear,
    beard: Linear,
}

/// Width of the pooled features (the Fréchet distance's space).
pub const FEATURES: usize = 128;

impl AttributeJudge {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let widths = [(32, 64), (64, 128), (128, FEATURES)];
        let stages = widths
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| {
                let vb = vb.pp(format!("stages.{i}"));
                Ok((Conv2d::new(vb.pp("down"), cin, cout, 3, 2, 1)?, ResBlock::new(vb.pp("block"), cout, cout)?))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            stem: Conv2d::same3(vb.pp("stem"), 3, 32)?,
            stages,
            out_norm: group_norm(vb.pp("out_norm"), FEATURES, ORIGINAL_GROUPS, 1e-5)?,
            gender: linear(FEATURES, GENDERS, vb.pp("gender"))?,
            decade: linear(FEATURES, DECADES, vb.pp("decade"))?,
            beard: linear(FEATURES, BEARD_LEVELS, vb.pp("beard"))?,
        })
    }

    /// Pooled features, B x [`FEATURES`].
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.stem.forward(x)?;
        for (down, block) in &self.stages {
            h = block.forward(&down.forward(&h)?)?;
        }
        self.out_norm.forward_silu(&h)?.mean(D::Minus1)?.mean(D::Minus1)
    }

    pub fn forward(&self, x: &Tensor) -> Result<AttributeLogits> {
        let f = self.features(x)?;
        Ok(AttributeLogits { gender: self.gender.forward(&f)?, decade: self.decade.forward(&f)?, beard: self.beard.forward(&f)? })
    }
}

/// Both judges, as `judges.safetensors` holds them (`parser.*`, `attributes.*`).
pub struct Judges {
    pub parser: FaceParser,
    pub attributes: AttributeJudge,
}

impl Judges {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self { parser: FaceParser::new(vb.pp("parser"))?, attributes: AttributeJudge::new(vb.pp("attributes"))? })
    }

    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let weights = candle_core::safetensors::load(path, device)?;
        Self::new(VarBuilder::from_tensors(weights, DType::F32, device))
    }

    /// Brings B x 3 x H x W images in [-1, 1] to the judges' size.
    pub fn prepare(images: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = images.dims4()?;
        if (h, w) == (JUDGE_SIZE, JUDGE_SIZE) {
            return Ok(images.clone());
        }
        if h % JUDGE_SIZE == 0 && w % JUDGE_SIZE == 0 {
            return images.avg_pool2d((h / JUDGE_SIZE, w / JUDGE_SIZE));
        }
        images.upsample_nearest2d(JUDGE_SIZE, JUDGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_within_one_reading_picks_the_likeliest_neighbourhood() {
        let device = Device::Cpu;
        let logits = |p: [f32; 7]| {
            let decade = Tensor::new(&[p.map(f32::ln)], &device).unwrap();
            let none = Tensor::zeros((1, 2), DType::F32, &device).unwrap();
            AttributeLogits { gender: none.clone(), decade, beard: none }
        };
        let read = |p: [f32; 7]| logits(p).decade_within_one().unwrap().to_vec1::<u32>().unwrap()[0];
        // A young face: teens likeliest alone, but twenties covers teens, twenties and thirties.
        assert_eq!(read([0.35, 0.30, 0.30, 0.02, 0.01, 0.01, 0.01]), 1);
        // An old face: sixties covers fifties to seventies.
        assert_eq!(read([0.01, 0.01, 0.01, 0.01, 0.30, 0.20, 0.46]), 5);
        // A sure reading stays where it is.
        assert_eq!(read([0.01, 0.01, 0.01, 0.9, 0.05, 0.01, 0.01]), 3);
    }
}
