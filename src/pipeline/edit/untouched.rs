//! What an edit must not change: where the source and target masks agree on
//! background or cloth, neither the mask edit nor the text edit (hair, mouth,
//! age, beard) has a reason to touch the photo. Sampling from the photo's
//! inversion still shifts the colour there (on one photo the background's
//! mean went from (206, 213, 159) to (215, 175, 164)), so the edit takes the
//! source's pixels back there, with a seam feathered over [`FEATHER_PX`].

use image::RgbImage;

use crate::data::image::RgbFrame;
use crate::data::mask::{class, Mask};

/// Mask classes an edit of hair, mouth, age or beard has no reason to change.
pub const UNTOUCHED_CLASSES: [u8; 2] = [class::BACKGROUND, class::CLOTH];

/// How far into the untouched region the edit fades into the source, in pixels.
pub const FEATHER_PX: usize = 2;

/// Whether a pixel the source mask calls `source` and the target `target` is left alone.
pub fn is_untouched(source: u8, target: u8) -> bool {
    source == target && UNTOUCHED_CLASSES.contains(&source)
}

/// Per pixel of a `width` x `height` image, the share of the source photo in
/// the result: 1 deep inside the untouched region, 0 wherever the edit
/// works, and the untouched share of the surrounding square within
/// [`FEATHER_PX`] of the edited region, so the seam has no hard step.
pub fn source_weights(source: &Mask, target: &Mask, width: usize, height: usize) -> Vec<f32> {
    let (source, target) = (source.resize_nearest(width, height), target.resize_nearest(width, height));
    let kept: Vec<bool> = source.classes().iter().zip(target.classes()).map(|(&s, &t)| is_untouched(s, t)).collect();
    let r = FEATHER_PX as isize;
    let mut weights = vec![0f32; width * height];
    for y in 0..height {
        for x in 0..width {
            if !kept[y * width + x] {
                continue;
            }
            // Beyond the image's edge counts as untouched: the seam is only where the edit is.
            let (mut inside, mut all) = (0usize, 0usize);
            for dy in -r..=r {
                for dx in -r..=r {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    all += 1;
                    let out_of_image = nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize;
                    inside += (out_of_image || kept[ny as usize * width + nx as usize]) as usize;
                }
            }
            weights[y * width + x] = inside as f32 / all as f32;
        }
    }
    weights
}

/// `edited` with the source `photo` (the same size) put back where the edit has nothing to change.
pub fn restore_untouched(edited: &RgbFrame, photo: &RgbImage, source: &Mask, target: &Mask) -> RgbFrame {
    let weights = source_weights(source, target, edited.width, edited.height);
    let pixels = edited
        .pixels
        .chunks_exact(3)
        .zip(photo.pixels())
        .zip(&weights)
        .flat_map(|((e, p), &w)| (0..3).map(move |c| (p[c] as f32 * w + e[c] as f32 * (1.0 - w)).round() as u8))
        .collect();
    RgbFrame { pixels, ..edited.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_the_edited_classes_the_result_is_the_source_and_the_seam_is_feathered() {
        let side = 32;
        // A face (skin) in the middle of the background; the target paints hair over its top.
        let mut source = Mask::filled(side, side, class::BACKGROUND);
        for y in 8..24 {
            for x in 8..24 {
                source.set(x, y, class::SKIN);
            }
        }
        let mut target = source.clone();
        for y in 4..8 {
            for x in 8..24 {
                target.set(x, y, class::HAIR); // over background: the mask edit's own region
            }
        }
        let photo = RgbImage::from_fn(side as u32, side as u32, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 120]));
        // An edit that shifted every colour, as sampling from an inversion does.
        let edited = RgbFrame { width: side, height: side, pixels: photo.as_raw().iter().map(|&v| v.wrapping_add(40)).collect() };
        let out = restore_untouched(&edited, &photo, &source, &target);
        let at = |f: &RgbFrame, x: usize, y: usize| f.pixels[(y * side + x) * 3];
        let source_at = |x: usize, y: usize| photo.get_pixel(x as u32, y as u32)[0];
        // Every untouched pixel further than the feather from the edit is the source, exactly.
        let near_edit = |x: usize, y: usize| (4..24).any(|ey: usize| (8..24).any(|ex: usize| ex.abs_diff(x) <= FEATHER_PX && ey.abs_diff(y) <= FEATHER_PX));
        let mut checked = 0;
        for y in 0..side {
            for x in 0..side {
                let untouched = is_untouched(source.get(x, y), target.get(x, y));
                if untouched && !near_edit(x, y) {
                    assert_eq!(at(&out, x, y), source_at(x, y), "untouched pixel ({x}, {y})");
                    checked += 1;
                } else if !untouched {
                    assert_eq!(at(&out, x, y), at(&edited, x, y), "edited pixel ({x}, {y}) keeps the edit");
                }
            }
        }
        assert!(checked > 400, "{checked} untouched pixels checked");
        // Next to the edit the result lies between the two.
        let (seam, s, e) = (at(&out, 6, 16), source_at(6, 16), at(&edited, 6, 16));
        assert!(s < seam && seam < e, "the seam at (6, 16) fades: source {s}, result {seam}, edit {e}");
    }
}
