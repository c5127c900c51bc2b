//! Rasterising one face: the mask and the photo in a single pass over the pixels.

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::attributes::Attributes;
use super::layout::Layout;
use super::math::{cell, Rgb};
use super::paint::Look;
use crate::data::mask::{class, Mask};

/// Renders `attrs` at `size` x `size`: the 19-class mask and the photo drawn from it.
///
/// The layout and the look draw from two streams seeded by `rng`, so the mask
/// depends only on layout attributes: two faces that differ only in age or
/// beard (and come from equal `rng`s) get identical masks.
pub fn render<R: Rng + ?Sized>(attrs: &Attributes, size: usize, rng: &mut R) -> (Mask, RgbImage) {
    let mut layout_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let mut look_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let layout = Layout::sample(attrs, &mut layout_rng);
    let look = Look::sample(attrs, &mut look_rng);
    let grain_seed: u32 = look_rng.random();

    let mut mask = Mask::filled(size, size, class::BACKGROUND);
    let mut image = RgbImage::new(size as u32, size as u32);
    let rgb: &mut [u8] = &mut image;
    let inv = 1.0 / size as f32;
    for py in 0..size {
        let v = (py as f32 + 0.5) * inv;
        for px in 0..size {
            let u = (px as f32 + 0.5) * inv;
            let (x, y) = layout.pose.to_face(u, v);
            let class = layout.classify(x, y);
            mask.set(px, py, class);
            let grain = 0.025 * (cell(grain_seed, px as f32, py as f32) - 0.5);
            let c = look.colour(&layout, class, x, y, u, v);
            let i = 3 * (py * size + px);
            rgb[i..i + 3].copy_from_slice(&to_u8([c[0] + grain, c[1] + grain, c[2] + grain]));
        }
    }
    soften_edges(mask.classes(), rgb, size);
    (mask, image)
}

#[inline]
fn to_u8(c: Rgb) -> [u8; 3] {
    c.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
}

/// Blurs the pixels on class boundaries (3x3 binomial) so that edges look
/// photographed rather than cut out, leaving texture inside regions sharp.
fn soften_edges(classes: &[u8], rgb: &mut [u8], size: usize) {
    if size < 3 {
        return;
    }
    let src = rgb.to_vec();
    for y in 1..size - 1 {
        for x in 1..size - 1 {
            let i = y * size + x;
            let c = classes[i];
            if classes[i - 1] == c && classes[i + 1] == c && classes[i - size] == c && classes[i + size] == c {
                continue;
            }
            for ch in 0..3 {
                let at = |j: usize| src[3 * j + ch] as u32;
                let sum = 4 * at(i)
                    + 2 * (at(i - 1) + at(i + 1) + at(i - size) + at(i + size))
                    + at(i - size - 1)
                    + at(i - size + 1)
                    + at(i + size - 1)
                    + at(i + size + 1);
                rgb[3 * i + ch] = ((sum + 8) / 16) as u8;
            }
        }
    }
}
