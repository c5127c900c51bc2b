//! The synthetic face world held in memory for training and evaluation:
//! photos, masks, captions and attributes, made in parallel from one seed,
//! and batches of them as tensors.

use candle_core::{Device, Result, Tensor};
use rand::seq::index::sample;
use rand::Rng;
use rayon::prelude::*;

use crate::data::augment::Augmentation;
use crate::data::mask::Mask;
use crate::data::synth::{self, Attributes};

/// The world seed of training data; evaluation draws from [`HELD_OUT_SEED`], which shares no sample.
pub const TRAIN_SEED: u64 = 1;
pub const HELD_OUT_SEED: u64 = 2;
/// Mixed into the world seed for the augmentation streams.
const AUGMENTATION_SALT: u64 = 0x6175_676d;

/// `count` synthetic faces at `size` x `size` pixels.
pub struct FaceSet {
    pub size: usize,
    /// RGB bytes, sample after sample (HWC).
    photos: Vec<u8>,
    pub masks: Vec<Mask>,
    pub captions: Vec<String>,
    pub attributes: Vec<Attributes>,
}

impl FaceSet {
    /// Samples 0..count of the world of `seed`.
    pub fn generate(seed: u64, count: usize, size: usize) -> Self {
        Self::collect(size, (0..count as u64).into_par_iter().map(|i| synth::generate(seed, i, size)).collect())
    }

    /// Samples 0..count of the world of `seed`, each moved by an [`Augmentation`]
    /// of its own (drawn from a stream apart from the sample's, so the faces are
    /// those of [`generate`](Self::generate)): the training set.
    pub fn augmented(seed: u64, count: usize, size: usize) -> Self {
        Self::augmented_samples(seed, 0..count as u64, size)
    }

    /// Samples `samples` of the world of `seed`, augmented as [`augmented`](Self::augmented)
    /// augments them (a range past the training set's draws faces no stage has seen).
    pub fn augmented_samples(seed: u64, samples: std::ops::Range<u64>, size: usize) -> Self {
        Self::collect(
            size,
            samples
                .into_par_iter()
                .map(|i| {
                    let mut s = synth::generate(seed, i, size);
                    let augmentation = Augmentation::sample(&mut synth::sample_rng(seed ^ AUGMENTATION_SALT, i));
                    (s.mask, s.image) = augmentation.apply(&s.mask, &s.image);
                    s
                })
                .collect(),
        )
    }

    fn collect(size: usize, samples: Vec<synth::Sample>) -> Self {
        let mut set = Self { size, photos: Vec::with_capacity(samples.len() * size * size * 3), masks: Vec::new(), captions: Vec::new(), attributes: Vec::new() };
        for s in samples {
            set.photos.extend_from_slice(s.image.as_raw());
            set.masks.push(s.mask);
            set.captions.push(s.caption);
            set.attributes.push(s.attributes);
        }
        set
    }

    pub fn len(&self) -> usize {
        self.masks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// `batch` distinct sample indices drawn from `rng`.
    pub fn draw(&self, rng: &mut impl Rng, batch: usize) -> Vec<usize> {
        sample(rng, self.len(), batch.min(self.len())).into_vec()
    }

    /// Samples 0..count of this set (all of it if it has fewer).
    pub fn first(&self, count: usize) -> FaceSet {
        let count = count.min(self.len());
        FaceSet {
            size: self.size,
            photos: self.photos[..count * self.size * self.size * 3].to_vec(),
            masks: self.masks[..count].to_vec(),
            captions: self.captions[..count].to_vec(),
            attributes: self.attributes[..count].to_vec(),
        }
    }

    /// The photos of `indices` as B x 3 x H x W in [-1, 1].
    pub fn photos(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let plane = self.size * self.size * 3;
        let mut data = Vec::with_capacity(indices.len() * plane);
        for &i in indices {
            data.extend(self.photos[i * plane..(i + 1) * plane].iter().map(|&v| v as f32 / 127.5 - 1.0));
        }
        Tensor::from_vec(data, (indices.len(), self.size, self.size, 3), device)?.permute((0, 3, 1, 2))?.contiguous()
    }

    /// The same faces with the photos of each chunk of indices replaced by
    /// what `render` makes for it (B x 3 x H x W in [-1, 1]), stored as 8-bit RGB.
    pub fn rendered(&self, mut render: impl FnMut(&[usize]) -> Result<Tensor>) -> Result<FaceSet> {
        let mut photos = Vec::with_capacity(self.photos.len());
        let indices: Vec<usize> = (0..self.len()).collect();
        // 64 photos of 64 x 64 a chunk, fewer of larger ones: an autoencoder's
        // activations grow with the pixels (a chunk of 64 at 128 px took 8 GB).
        let chunk_len = (64 * 64 * 64 / (self.size * self.size)).max(1);
        for chunk in indices.chunks(chunk_len) {
            let rendered = render(chunk)?;
            let bytes = ((rendered.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?.round()?.permute((0, 2, 3, 1))?.to_dtype(candle_core::DType::U8)?;
            photos.extend(bytes.flatten_all()?.to_vec1::<u8>()?);
        }
        Ok(FaceSet { size: self.size, photos, masks: self.masks.clone(), captions: self.captions.clone(), attributes: self.attributes.clone() })
    }

    /// The same faces at `side` x `side` (a divisor of the size): photos
    /// box-averaged, as the judges shrink what they read, masks by nearest
    /// neighbour.
    pub fn downscaled(&self, side: usize) -> FaceSet {
        assert!(side > 0 && self.size.is_multiple_of(side), "{side} does not divide {}", self.size);
        let factor = self.size / side;
        let plane = self.size * self.size * 3;
        let photos = self
            .photos
            .par_chunks(plane)
            .flat_map_iter(|photo| {
                (0..side * side * 3).map(move |k| {
                    let (y, x, c) = (k / (side * 3), k / 3 % side, k % 3);
                    let sum: u32 = (0..factor * factor).map(|d| photo[((y * factor + d / factor) * self.size + x * factor + d % factor) * 3 + c] as u32).sum();
                    ((sum as f32 / (factor * factor) as f32).round()) as u8
                })
            })
            .collect();
        let masks = self.masks.iter().map(|m| m.resize_nearest(side, side)).collect();
        FaceSet { size: side, photos, masks, captions: self.captions.clone(), attributes: self.attributes.clone() }
    }

    /// The class maps of `indices` as B x H x W u32 (for cross-entropy).
    pub fn class_maps(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let data: Vec<u32> = indices.iter().flat_map(|&i| self.masks[i].classes().iter().map(|&c| c as u32)).collect();
        Tensor::from_vec(data, (indices.len(), self.size, self.size), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscaled_averages_photo_blocks_and_shrinks_masks_alike() {
        let faces = FaceSet::generate(TRAIN_SEED, 2, 64);
        let small = faces.downscaled(32);
        assert_eq!((small.size, small.len()), (32, 2));
        for (i, k) in [(0, 0), (1, 32 * 32 * 3 - 1), (0, 1000), (1, 1501)] {
            let (y, x, c) = (k / 96, k / 3 % 32, k % 3);
            let photo = &faces.photos[i * 64 * 64 * 3..];
            let sum: u32 = [(0, 0), (0, 1), (1, 0), (1, 1)].iter().map(|(dy, dx)| photo[((2 * y + dy) * 64 + 2 * x + dx) * 3 + c] as u32).sum();
            assert_eq!(small.photos[i * 32 * 32 * 3 + k], (sum as f32 / 4.0).round() as u8, "photo {i}, value {k}");
        }
        assert_eq!(small.masks[1].classes(), faces.masks[1].resize_nearest(32, 32).classes());
        assert_eq!(small.attributes[1].gender, faces.attributes[1].gender);
    }

    #[test]
    fn a_sample_is_the_same_face_in_any_range_that_holds_it() {
        // The judges' fresh batches start past the training set: that they are
        // unseen faces rests on a sample depending on its index alone.
        let (whole, tail) = (FaceSet::augmented(TRAIN_SEED, 5, 32), FaceSet::augmented_samples(TRAIN_SEED, 3..6, 32));
        let plane = 32 * 32 * 3;
        assert_eq!(tail.photos[..2 * plane], whole.photos[3 * plane..]);
        assert_eq!(tail.masks[1].classes(), whole.masks[4].classes());
        assert_ne!(tail.photos[2 * plane..], whole.photos[4 * plane..], "sample 5 is another face than sample 4");
    }
}
