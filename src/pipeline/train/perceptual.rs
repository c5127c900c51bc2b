//! The perceptual term of the autoencoder's loss, as in LPIPS: distances
//! between normalised feature maps of a classification network. No
//! pretrained VGG can be had here, so the network is a small VGG-style one
//! trained in this stage on what the synthetic world paints and the judges
//! never read (hair colour and style, eye colour, expression, makeup), so that
//! the features the autoencoder is pushed towards are not the ones the
//! evaluation measures with. LPIPS's learned per-channel weights need human
//! similarity judgements, so every channel counts alike (its "baseline" form).
//! LPIPS scales each position's feature vector to unit length; on this small
//! net's ReLU features that made flat regions (near-zero vectors, scaled up
//! by 1/norm) pure noise and held the autoencoder at blurred average colours,
//! so here each image's features are scaled by their root-mean-square length.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::loss::cross_entropy;
use candle_nn::{linear, Linear, VarBuilder, VarMap};

use super::{fit, Network, io_error, save_weights, Context, FaceSet, Schedule, Stage, TrainError, TrainEvent, TRAIN_SEED};
use crate::data::synth::Attributes;
use crate::model::config::ComposedConfig;
use crate::model::layers::Conv2d;

/// Widths of the four stages; features are read after each.
const WIDTHS: [usize; 4] = [32, 64, 96, 128];
/// The photo side the network trains on: random crops of this side, the size
/// the autoencoder's loss shows it.
pub const CROP: usize = 64;
const BATCH: usize = 32;
const TRAIN_COUNT: usize = 4096;

/// A label the network learns: (name, classes, label of a face).
type Head = (&'static str, usize, fn(&Attributes) -> u32);
const HEADS: [Head; 5] = [
    ("hair_color", 7, |a| a.hair_color as u32),
    ("hair_style", 7, |a| a.hair_style as u32),
    ("eye_color", 5, |a| a.eye_color as u32),
    ("expression", 4, |a| a.expression as u32),
    ("makeup", 2, |a| a.makeup as u32),
];

pub struct PerceptualNet {
    stages: Vec<[Conv2d; 2]>,
    heads: Vec<Linear>,
}

impl PerceptualNet {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let mut cin = 3;
        let mut stages = Vec::new();
        for (i, &w) in WIDTHS.iter().enumerate() {
            let vb = vb.pp(format!("stages.{i}"));
            stages.push([Conv2d::same3(vb.pp("0"), cin, w)?, Conv2d::same3(vb.pp("1"), w, w)?]);
            cin = w;
        }
        let heads = HEADS.iter().map(|(name, n, _)| linear(cin, *n, vb.pp(format!("heads.{name}")))).collect::<Result<_>>()?;
        Ok(Self { stages, heads })
    }

    /// The trained network from this stage's output.
    pub fn load(ctx: &Context) -> std::result::Result<Self, TrainError> {
        let path = ctx.require(Stage::Perceptual, "the vae")?;
        let weights = candle_core::safetensors::load(&path, &ctx.device)?;
        Ok(Self::new(VarBuilder::from_tensors(weights, DType::F32, &ctx.device))?)
    }

    /// The feature maps after each stage (ReLU'd, as LPIPS reads VGG's), for images in [-1, 1].
    fn features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut h = x.clone();
        let mut taps = Vec::with_capacity(self.stages.len());
        for (i, [a, b]) in self.stages.iter().enumerate() {
            if i > 0 {
                h = h.avg_pool2d(2)?;
            }
            h = b.forward(&a.forward(&h)?.relu()?)?.relu()?;
            taps.push(h.clone());
        }
        Ok(taps)
    }

    fn logits(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let last = self.features(x)?.pop().expect("the network has stages");
        let pooled = last.mean(D::Minus1)?.mean(D::Minus1)?;
        self.heads.iter().map(|h| h.forward(&pooled)).collect()
    }

    /// The perceptual distance of each pair of images, averaged over the
    /// batch: per stage, the squared difference of the normalised features,
    /// summed over channels and averaged over positions; averaged over
    /// stages. (LPIPS sums its stages, but its learned channel weights shrink
    /// each one; summed here the term outweighed the L1 tenfold.)
    pub fn distance(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (fa, fb) = (self.features(a)?, self.features(b)?);
        let mut total: Option<Tensor> = None;
        for (x, y) in fa.iter().zip(&fb) {
            let d = (rms_normalised(x)? - rms_normalised(y)?)?.sqr()?.sum(1)?.mean_all()?;
            total = Some(match total {
                Some(t) => (t + d)?,
                None => d,
            });
        }
        total.ok_or_else(|| candle_core::Error::Msg("no feature stages".into()))? / fa.len() as f64
    }
}

/// Each image's feature maps (B x C x H x W) scaled so that their feature
/// vectors have unit length on average over the positions.
fn rms_normalised(f: &Tensor) -> Result<Tensor> {
    let (b, _, _, _) = f.dims4()?;
    let rms = (f.sqr()?.sum(1)?.reshape((b, ()))?.mean_keepdim(1)? + 1e-10)?.sqrt()?;
    f.broadcast_div(&rms.reshape((b, 1, 1, 1))?)
}

/// Random `CROP` x `CROP` windows of `photos` (B x 3 x H x W), one per image.
fn random_crops(photos: &Tensor, rng: &mut impl rand::Rng) -> Result<Tensor> {
    let (batch, _, h, w) = photos.dims4()?;
    if h <= CROP && w <= CROP {
        return Ok(photos.clone());
    }
    let crops = (0..batch)
        .map(|i| {
            let (y, x) = (rng.random_range(0..=h - CROP), rng.random_range(0..=w - CROP));
            photos.narrow(0, i, 1)?.narrow(2, y, CROP)?.narrow(3, x, CROP)
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&crops, 0)
}

/// Trains the network on random crops of the training photos.
pub fn train(ctx: &Context, sink: &mut dyn FnMut(TrainEvent)) -> std::result::Result<(), TrainError> {
    let size = ComposedConfig::load(ctx.path("codiff.yaml"))?.first_stage().ddconfig.resolution;
    sink(TrainEvent::Note(format!("perceptual: making {TRAIN_COUNT} synthetic faces at {size} px")));
    let faces = FaceSet::augmented(TRAIN_SEED, TRAIN_COUNT, size);
    let vars = VarMap::new();
    let net = PerceptualNet::new(ctx.var_builder(&vars, "perceptual"))?;
    let device = ctx.device.clone();
    let schedule = Schedule { steps: 600, lr: 1e-3, ema_decay: None, sample_every: usize::MAX, keep_at: &[] };
    let opt = fit(
        ctx,
        Network { stage: Stage::Perceptual, name: "perceptual", vars: &vars, companions: &[] },
        &schedule,
        sink,
        |_, rng| {
            let indices = faces.draw(rng, BATCH);
            let logits = net.logits(&random_crops(&faces.photos(&indices, &device)?, rng)?)?;
            let mut loss = Tensor::zeros((), DType::F32, &device)?;
            for ((_, _, label), logits) in HEADS.iter().zip(logits) {
                let targets = labels(&indices, &faces, *label, &device)?;
                loss = (loss + cross_entropy(&logits, &targets)?)?;
            }
            Ok(loss)
        },
        |_, _| Ok(()),
    )?;
    let path = ctx.path(Stage::Perceptual.output());
    save_weights(&opt.final_weights(), &path).map_err(|e| io_error("write", &path, e))
}

fn labels(indices: &[usize], faces: &FaceSet, label: fn(&Attributes) -> u32, device: &Device) -> Result<Tensor> {
    Tensor::from_vec(indices.iter().map(|&i| label(&faces.attributes[i])).collect::<Vec<_>>(), indices.len(), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_zero_for_equal_images_and_grows_with_the_difference() {
        let device = Device::Cpu;
        let vars = VarMap::new();
        let net = PerceptualNet::new(VarBuilder::from_varmap(&vars, DType::F32, &device)).unwrap();
        let a = Tensor::randn(0f32, 0.5, (2, 3, 32, 32), &device).unwrap();
        let noise = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &device).unwrap();
        let d = |b: &Tensor| net.distance(&a, b).unwrap().to_scalar::<f32>().unwrap();
        assert!(d(&a) < 1e-6);
        let (near, far) = (d(&(&a + (&noise * 0.05).unwrap()).unwrap()), d(&(&a + &noise).unwrap()));
        assert!(near > 0.0 && far > 2.0 * near, "near {near}, far {far}");
    }
}
