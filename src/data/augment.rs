//! Training augmentation of a (mask, photo) pair: one random similarity
//! transform (scale, shift, rotation) and a mirror, applied to both together so
//! the photo still matches its mask. Mirroring swaps the left and right classes
//! (l_eye <-> r_eye, ...), because the subject's left stays the subject's left.

use image::RgbImage;
use rand::Rng;

use super::mask::{class, mirrored_class, Mask};

/// One draw of the augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    /// Zoom about the image centre; above 1 enlarges the face.
    pub scale: f32,
    /// Shift of the content in image fractions.
    pub shift: (f32, f32),
    /// Rotation of the content in radians.
    pub rotation: f32,
    pub mirror: bool,
}

impl Augmentation {
    pub const IDENTITY: Augmentation = Augmentation { scale: 1.0, shift: (0.0, 0.0), rotation: 0.0, mirror: false };

    /// Zoom 1 to 1.2 (zooming in only, so no border has to be invented beyond
    /// the corners a rotation uncovers), shift up to 6% of the frame, rotation
    /// up to 10 degrees, mirror half the time. The synthetic world itself varies
    /// the framing far more (see `synth::layout`); this breaks what remains of
    /// its regularities, such as the exact pixel grid of every face.
    pub fn sample(rng: &mut impl Rng) -> Self {
        Self {
            scale: rng.random_range(1.0..1.2),
            shift: (rng.random_range(-0.06..0.06), rng.random_range(-0.06..0.06)),
            rotation: rng.random_range(-0.175..0.175),
            mirror: rng.random_bool(0.5),
        }
    }

    /// Where output pixel (x, y) (pixel centres, in image fractions) reads from in the source.
    #[inline]
    fn source(&self, u: f32, v: f32) -> (f32, f32) {
        let u = if self.mirror { 1.0 - u } else { u };
        let (du, dv) = (u - 0.5 - self.shift.0, v - 0.5 - self.shift.1);
        let (sin, cos) = self.rotation.sin_cos();
        ((cos * du + sin * dv) / self.scale + 0.5, (-sin * du + cos * dv) / self.scale + 0.5)
    }

    /// The transformed pair: nearest class for the mask (with left/right
    /// swapped when mirrored), bilinear for the photo, edges extended outwards.
    pub fn apply(&self, mask: &Mask, photo: &RgbImage) -> (Mask, RgbImage) {
        if *self == Self::IDENTITY {
            return (mask.clone(), photo.clone());
        }
        let (w, h) = (mask.width(), mask.height());
        let mut out_mask = Mask::filled(w, h, class::BACKGROUND);
        let mut out_photo = RgbImage::new(w as u32, h as u32);
        let src = photo.as_raw();
        let (pw, ph) = (photo.width() as usize, photo.height() as usize);
        for py in 0..h {
            for px in 0..w {
                let (su, sv) = self.source((px as f32 + 0.5) / w as f32, (py as f32 + 0.5) / h as f32);
                let nearest = |f: f32, n: usize| ((f * n as f32) as isize).clamp(0, n as isize - 1) as usize;
                let class = mask.get(nearest(su, w), nearest(sv, h));
                out_mask.set(px, py, if self.mirror { mirrored_class(class) } else { class });
                let rgb = bilinear(src, pw, ph, su * pw as f32 - 0.5, sv * ph as f32 - 0.5);
                out_photo.put_pixel(px as u32, py as u32, image::Rgb(rgb));
            }
        }
        (out_mask, out_photo)
    }
}

/// Bilinear sample of an RGB buffer at pixel coordinates (x, y), clamped to the edges.
fn bilinear(src: &[u8], w: usize, h: usize, x: f32, y: f32) -> [u8; 3] {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x as usize, y as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: usize, yy: usize, c: usize| src[3 * (yy * w + xx) + c] as f32;
    std::array::from_fn(|c| {
        let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
        let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
        (top * (1.0 - fy) + bottom * fy + 0.5) as u8
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth;

    #[test]
    fn identity_keeps_the_pair() {
        let s = synth::generate(5, 0, 32);
        let (m, p) = Augmentation::IDENTITY.apply(&s.mask, &s.image);
        assert_eq!((m, p.as_raw()), (s.mask.clone(), s.image.as_raw()));
    }

    #[test]
    fn mirror_flips_pixels_and_swaps_left_and_right_classes() {
        let s = synth::generate(5, 1, 48);
        let flip = Augmentation { mirror: true, ..Augmentation::IDENTITY };
        let (m, p) = flip.apply(&s.mask, &s.image);
        for (x, y) in [(3, 7), (20, 30), (47, 0), (24, 24)] {
            assert_eq!(m.get(47 - x, y), mirrored_class(s.mask.get(x, y)));
            assert_eq!(p.get_pixel(47 - x as u32, y as u32), s.image.get_pixel(x as u32, y as u32));
        }
        let hist = |mask: &Mask| mask.class_histogram();
        let (before, after) = (hist(&s.mask), hist(&m));
        assert_eq!(before[4], after[5], "l_eye pixels become r_eye pixels");
        assert_eq!(before[8], after[9], "l_ear pixels become r_ear pixels");
    }

    #[test]
    fn zoom_enlarges_the_face_and_photo_follows_mask() {
        let s = synth::generate(5, 2, 64);
        let zoom = Augmentation { scale: 1.2, ..Augmentation::IDENTITY };
        let (m, p) = zoom.apply(&s.mask, &s.image);
        let skin = |mask: &Mask| mask.class_histogram()[class::SKIN as usize] as f32;
        let ratio = skin(&m) / skin(&s.mask);
        assert!((ratio - 1.44).abs() < 0.15, "skin area grew {ratio}x under a 1.2 zoom");
        // The photo moves with the mask: the centre pixel is the source's centre pixel.
        assert_eq!(m.get(32, 32), s.mask.get(32, 32));
        let (a, b) = (p.get_pixel(32, 32), s.image.get_pixel(32, 32));
        assert!(a.0.iter().zip(b.0).all(|(x, y)| (*x as i32 - y as i32).abs() < 40), "{a:?} vs {b:?}");
    }
}
