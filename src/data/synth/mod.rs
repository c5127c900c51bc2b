//! The synthetic face world: attributes, a 19-class mask, a photo drawn from it
//! and a CelebA-Dialog-style caption, all deterministic from a seed.
//!
//! As in CelebAMask-HQ / CelebA-Dialog, the mask fixes the layout (face shape,
//! hair, glasses, mouth open or closed, hat, jewellery, clothes) and the caption
//! carries what no mask class shows: gender, age and beard.

pub mod attributes;
pub mod caption;
pub mod caption_edit;
pub mod dataset;
mod layout;
pub(crate) mod math;
mod paint;
mod render;
pub mod sheet;

use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use attributes::{
    sample_attributes, Attributes, Beard, BeardKind, BeardLevel, Decade, Earrings, Expression, EyeColor, Eyeglasses,
    FaceShape, Fringe, Gender, HairColor, HairStyle, Hat,
};
pub use caption::{caption, parse_caption, CaptionAttributes, CaptionChoice};
pub use caption_edit::{with_part, CaptionPart};
pub use render::render;

use crate::data::mask::Mask;

/// One generated face.
#[derive(Debug, Clone)]
pub struct Sample {
    pub attributes: Attributes,
    pub mask: Mask,
    pub image: RgbImage,
    pub caption: String,
}

/// The random stream of sample `index` in the data set of `seed`: each sample
/// has its own ChaCha stream, so samples can be made in any order or in parallel.
pub fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Sample `index` of the data set of `seed`, at `size` x `size` pixels.
pub fn generate(seed: u64, index: u64, size: usize) -> Sample {
    let mut rng = sample_rng(seed, index);
    let attributes = sample_attributes(&mut rng);
    let (mask, image) = render(&attributes, size, &mut rng);
    let caption = caption(&attributes, &mut rng);
    Sample { attributes, mask, image, caption }
}

/// One entry of `attributes.json`: the attributes plus the levels a caption names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeRecord {
    #[serde(flatten)]
    pub attributes: Attributes,
    pub age_decade: Decade,
    pub beard_level: BeardLevel,
}

impl From<&Attributes> for AttributeRecord {
    fn from(a: &Attributes) -> Self {
        Self { attributes: a.clone(), age_decade: a.age_decade(), beard_level: a.beard.level() }
    }
}
