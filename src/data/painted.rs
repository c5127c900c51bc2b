//! Masks as a person paints them in the studio, for evaluation only: a blobby
//! face ellipse with jagged brush edges, hair as a rough cap (sometimes falling
//! past the shoulders), two eye blobs, a mouth, and only sometimes brows, a
//! nose, ears, a neck or clothes. Nothing here is drawn from the synthetic
//! world's layouts, so the models never see these shapes in training.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::mask::{class, Mask};
use super::synth::math::{ellipse, value_noise};
use super::synth;

/// Mixed into the seed so painted masks share no stream with the world's samples.
const PAINTED_SALT: u64 = 0x7061_696e_7465_6400;

/// One painted shape: an ellipse in face units, wobbled by noise at its edge.
struct Blob {
    class: u8,
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    /// How far the edge wanders, as a share of the radius.
    wobble: f32,
}

/// A rough mask of `size` x `size` and a caption to go with it, from `seed`'s stream `index`.
pub fn painted(seed: u64, index: u64, size: usize) -> (Mask, String) {
    let mut rng = synth::sample_rng(seed ^ PAINTED_SALT, index);
    let blobs = sketch(&mut rng);
    let roll: f32 = rng.random_range(-0.3..0.3);
    let (sin, cos) = roll.sin_cos();
    let unit = rng.random_range(0.12..0.3f32);
    let (cx, cy) = (rng.random_range(0.4..0.6f32), rng.random_range(0.42..0.6f32));
    let noise_seed: u32 = rng.random();
    let jag = rng.random_range(0.0..0.04f32);
    let mut mask = Mask::filled(size, size, class::BACKGROUND);
    for py in 0..size {
        for px in 0..size {
            let (u, v) = ((px as f32 + 0.5) / size as f32 - cx, (py as f32 + 0.5) / size as f32 - cy);
            let (x, y) = ((cos * u + sin * v) / unit, (-sin * u + cos * v) / unit);
            // Painted last wins, as with a brush; the pixel-scale jag is the brush's own roughness.
            let grain = jag * (value_noise(noise_seed ^ 0x9e37, px as f32 * 0.7, py as f32 * 0.7) - 0.5);
            if let Some(b) = blobs.iter().rev().find(|b| inside(b, x, y, noise_seed, grain)) {
                mask.set(px, py, b.class);
            }
        }
    }
    let attributes = synth::sample_attributes(&mut rng);
    (mask, synth::caption(&attributes, &mut rng))
}

fn inside(b: &Blob, x: f32, y: f32, seed: u32, grain: f32) -> bool {
    let angle = (y - b.cy).atan2(x - b.cx);
    let edge = 1.0 + b.wobble * (2.0 * value_noise(seed ^ b.class as u32, 2.0 * angle.cos() + b.cx, 2.0 * angle.sin() + b.cy) - 1.0);
    ellipse(x - b.cx, y - b.cy, b.rx, b.ry).sqrt() < edge + grain
}

/// The shapes in painting order (later ones cover earlier ones), in face
/// units: the face is about one unit wide each side of its centre line.
fn sketch(rng: &mut ChaCha8Rng) -> Vec<Blob> {
    let mut r = |lo: f32, hi: f32| rng.random_range(lo..hi);
    let (face_rx, face_ry) = (r(0.85, 1.1), r(1.2, 1.55));
    let wobble = r(0.02, 0.1);
    let mut blobs = Vec::new();
    let mut add = |class, cx, cy, rx, ry, wobble| blobs.push(Blob { class, cx, cy, rx, ry, wobble });
    if r(0.0, 1.0) < 0.5 {
        add(class::CLOTH, 0.0, face_ry + 1.6, r(1.6, 2.6), r(0.9, 1.4), wobble);
    }
    if r(0.0, 1.0) < 0.6 {
        add(class::NECK, 0.0, face_ry + 0.3, r(0.4, 0.6), r(0.6, 0.9), wobble);
    }
    let hair = r(0.0, 1.0);
    if hair < 0.35 {
        // Long hair: a tall blob behind the face reaching the shoulders or past the frame.
        add(class::HAIR, 0.0, r(0.2, 0.9), face_rx * r(1.25, 1.6), face_ry * r(1.4, 2.3), wobble * 1.5);
    } else if hair < 0.9 {
        add(class::HAIR, 0.0, -r(0.3, 0.6), face_rx * r(1.1, 1.35), face_ry * r(0.85, 1.1), wobble * 1.5);
    }
    if r(0.0, 1.0) < 0.3 {
        for side in [-1.0f32, 1.0] {
            add(if side > 0.0 { class::L_EAR } else { class::R_EAR }, side * face_rx, r(-0.05, 0.15), r(0.13, 0.22), r(0.22, 0.32), wobble);
        }
    }
    add(class::SKIN, 0.0, 0.0, face_rx, face_ry, wobble);
    if (0.35..0.9).contains(&hair) && r(0.0, 1.0) < 0.4 {
        // Bangs painted over the forehead.
        add(class::HAIR, 0.0, -face_ry * 0.85, face_rx * r(0.8, 1.0), face_ry * r(0.25, 0.4), wobble * 1.5);
    }
    let (eye_x, eye_y) = (r(0.32, 0.48), r(-0.35, -0.1));
    let (eye_rx, eye_ry) = (r(0.1, 0.2), r(0.05, 0.11));
    if r(0.0, 1.0) < 0.5 {
        for side in [-1.0f32, 1.0] {
            let c = if side > 0.0 { class::L_BROW } else { class::R_BROW };
            add(c, side * eye_x, eye_y - r(0.17, 0.28), eye_rx * r(1.1, 1.5), r(0.03, 0.07), wobble);
        }
    }
    for side in [-1.0f32, 1.0] {
        add(if side > 0.0 { class::L_EYE } else { class::R_EYE }, side * eye_x, eye_y, eye_rx, eye_ry, wobble);
    }
    if r(0.0, 1.0) < 0.5 {
        add(class::NOSE, 0.0, r(0.1, 0.3), r(0.1, 0.22), r(0.2, 0.35), wobble);
    }
    let (mouth_y, mouth_rx, lip) = (r(0.55, 0.85), r(0.22, 0.4), r(0.05, 0.1));
    match (r(0.0, 3.0)) as u8 {
        0 => add(class::U_LIP, 0.0, mouth_y, mouth_rx, lip * 1.6, wobble),
        1 => {
            add(class::L_LIP, 0.0, mouth_y + lip * 0.6, mouth_rx, lip, wobble);
            add(class::U_LIP, 0.0, mouth_y - lip * 0.6, mouth_rx, lip, wobble);
        }
        _ => {
            add(class::L_LIP, 0.0, mouth_y + lip * 1.2, mouth_rx, lip, wobble);
            add(class::U_LIP, 0.0, mouth_y - lip * 1.2, mouth_rx, lip, wobble);
            add(class::MOUTH, 0.0, mouth_y, mouth_rx * 0.85, lip * 1.1, wobble);
        }
    }
    blobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mask::NUM_CLASSES;

    #[test]
    fn painted_masks_are_deterministic_rough_faces_with_eyes_on_the_right_sides() {
        let (a, text) = painted(3, 0, 64);
        assert_eq!(painted(3, 0, 64), (a.clone(), text.clone()));
        assert!(!text.is_empty());
        let mut with_eyes = 0;
        for i in 0..40 {
            let (m, _) = painted(3, i, 64);
            let h = m.class_histogram();
            assert!(h[class::SKIN as usize] > 64 * 64 / 40, "mask {i}: too little skin ({})", h[1]);
            assert!(h.iter().take(NUM_CLASSES).filter(|&&n| n > 0).count() >= 4, "mask {i}: {h:?}");
            if h[class::L_EYE as usize] > 0 && h[class::R_EYE as usize] > 0 {
                with_eyes += 1;
            }
        }
        assert!(with_eyes >= 38, "both eyes painted in only {with_eyes} of 40 masks");
    }
}
