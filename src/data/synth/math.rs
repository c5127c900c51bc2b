//! Small numeric helpers for the renderer: integer-hash noise, smooth steps and colours.
//!
//! Noise comes from hashing lattice coordinates with a per-face seed, so a face
//! renders the same on every run and every thread without carrying an RNG
//! through the pixel loop.

/// An RGB colour with channels in 0..=1.
pub type Rgb = [f32; 3];

/// A 32-bit integer hash of a seed and two lattice coordinates (lowbias32 finaliser).
#[inline]
pub fn hash2(seed: u32, x: i32, y: i32) -> u32 {
    let mut h = seed ^ (x as u32).wrapping_mul(0x27d4_eb2d) ^ (y as u32).wrapping_mul(0x1656_67b1);
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

/// A hash as a number in [0, 1).
#[inline]
pub fn unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// The largest integer not above `x` (`f32::floor` is a libm call on baseline x86-64).
#[inline]
pub fn floor_i32(x: f32) -> i32 {
    let i = x as i32;
    i - ((i as f32) > x) as i32
}

/// Uniform [0, 1) noise for one lattice cell.
#[inline]
pub fn cell(seed: u32, x: f32, y: f32) -> f32 {
    unit(hash2(seed, floor_i32(x), floor_i32(y)))
}

/// Smooth value noise in [0, 1) with features about one unit apart.
#[inline]
pub fn value_noise(seed: u32, x: f32, y: f32) -> f32 {
    let (ix, iy) = (floor_i32(x), floor_i32(y));
    let (fx, fy) = (x - ix as f32, y - iy as f32);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let v00 = unit(hash2(seed, ix, iy));
    let v10 = unit(hash2(seed, ix + 1, iy));
    let v01 = unit(hash2(seed, ix, iy + 1));
    let v11 = unit(hash2(seed, ix + 1, iy + 1));
    let top = v00 + (v10 - v00) * sx;
    let bottom = v01 + (v11 - v01) * sx;
    top + (bottom - top) * sy
}

#[inline]
pub fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[inline]
pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

#[inline]
pub fn scale(c: Rgb, s: f32) -> Rgb {
    [c[0] * s, c[1] * s, c[2] * s]
}

/// A colour from 8-bit channels.
pub const fn rgb8(r: u8, g: u8, b: u8) -> Rgb {
    [r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0]
}

/// Perceived brightness (Rec. 601 weights).
#[inline]
pub fn luma(c: Rgb) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Moves a colour towards its own grey by `t` (0 keeps it, 1 makes it grey).
#[inline]
pub fn desaturate(c: Rgb, t: f32) -> Rgb {
    let l = luma(c);
    mix(c, [l, l, l], t)
}

/// A colour from hue (0..1, wrapping), saturation and value.
pub fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match h6 as u32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Ellipse test value: below 1 inside.
#[inline]
pub fn ellipse(x: f32, y: f32, rx: f32, ry: f32) -> f32 {
    let (u, v) = (x / rx, y / ry);
    u * u + v * v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_in_range_and_continuous() {
        let mut prev = value_noise(7, 0.0, 0.5);
        for i in 1..400 {
            let v = value_noise(7, i as f32 * 0.01, 0.5);
            assert!((0.0..1.0).contains(&v));
            assert!((v - prev).abs() < 0.05, "jump at step {i}");
            prev = v;
        }
        assert_eq!((floor_i32(-0.5), floor_i32(-1.0), floor_i32(0.0), floor_i32(2.7)), (-1, -1, 0, 2));
        let mean: f32 = (0..4096).map(|i| cell(3, i as f32, (i / 64) as f32)).sum::<f32>() / 4096.0;
        assert!((mean - 0.5).abs() < 0.03, "cell noise mean {mean}");
    }
}
