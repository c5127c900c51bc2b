//! A cheap latent-to-RGB preview: a per-pixel affine map from the latent's
//! channels to colour, fitted against the autoencoder's own decoder.
//!
//! Decoding every step with the full decoder would cost more than the step
//! (about 670 GFLOP for the 256 model); this costs a few operations per latent
//! pixel, at the latent's resolution.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::autoencoder::AutoencoderKL;
use crate::data::image::RgbFrame;

/// Side of the random latent the map is fitted on: big enough for a stable
/// least-squares fit, small enough to decode in well under a second at full size.
const FIT_LATENT_SIZE: usize = 16;

/// The affine map latent -> RGB in [-1, 1].
#[derive(Debug, Clone)]
pub struct LatentPreview {
    /// 3 x (channels + 1): one row per colour, the last column the offset.
    coeffs: Vec<[f64; 3]>,
}

impl LatentPreview {
    /// Fits the map by least squares: decodes a fixed random latent (in the
    /// diffusion's scale) and regresses each decoded patch's mean colour on
    /// the latent pixel under it.
    pub fn fit(vae: &AutoencoderKL, scale_factor: f64, channels: usize, device: &Device) -> candle_core::Result<Self> {
        let n = FIT_LATENT_SIZE * FIT_LATENT_SIZE;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let values: Vec<f32> = (0..channels * n).map(|_| StandardNormal.sample(&mut rng)).collect();
        let z = Tensor::from_vec(values.clone(), (1, channels, FIT_LATENT_SIZE, FIT_LATENT_SIZE), device)?;
        let image = vae.decode(&(z / scale_factor)?)?;
        let factor = vae.downsampling_factor();
        let pooled = image.avg_pool2d(factor)?.flatten_from(2)?.get(0)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        // Normal equations (X^T X) W = X^T Y with X = [latent channels, 1].
        let k = channels + 1;
        let mut xtx = vec![vec![0.0; k]; k];
        let mut xty = vec![[0.0; 3]; k];
        for p in 0..n {
            let row: Vec<f64> = (0..channels).map(|c| values[c * n + p] as f64).chain([1.0]).collect();
            for i in 0..k {
                for j in 0..k {
                    xtx[i][j] += row[i] * row[j];
                }
                for (colour, target) in pooled.iter().enumerate() {
                    xty[i][colour] += row[i] * target[p];
                }
            }
        }
        Ok(Self { coeffs: solve(xtx, xty) })
    }

    /// The preview of B x C x h x w latents (diffusion scale): one frame per item, h x w pixels.
    pub fn render(&self, z: &Tensor) -> candle_core::Result<Vec<RgbFrame>> {
        let (batch, channels, height, width) = z.dims4()?;
        let z = z.to_dtype(DType::F32)?.flatten_from(2)?;
        (0..batch)
            .map(|b| {
                let planes = z.get(b)?.to_vec2::<f32>()?;
                let pixels = (0..height * width)
                    .flat_map(|p| {
                        (0..3).map(move |colour| (p, colour))
                    })
                    .map(|(p, colour)| {
                        let v = (0..channels).map(|c| self.coeffs[c][colour] * planes[c][p] as f64).sum::<f64>()
                            + self.coeffs[channels][colour];
                        ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                    })
                    .collect();
                Ok(RgbFrame { width, height, pixels })
            })
            .collect()
    }
}

/// Solves A W = B (A symmetric positive semi-definite, k x k; B k x 3) by
/// Gaussian elimination with partial pivoting and a tiny ridge for stability.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<[f64; 3]>) -> Vec<[f64; 3]> {
    let k = a.len();
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += 1e-6;
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..k {
            let f = a[row][col] / a[col][col];
            let (pivot_a, pivot_b) = (a[col].clone(), b[col]);
            a[row].iter_mut().zip(&pivot_a).skip(col).for_each(|(x, p)| *x -= f * p);
            b[row].iter_mut().zip(pivot_b).for_each(|(x, p)| *x -= f * p);
        }
    }
    let mut w = vec![[0.0; 3]; k];
    for row in (0..k).rev() {
        for c in 0..3 {
            let rest: f64 = (row + 1..k).map(|j| a[row][j] * w[j][c]).sum();
            w[row][c] = (b[row][c] - rest) / a[row][row];
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_recovers_a_known_affine_map() {
        // y = 2 x0 - x1 + 0.5 for every colour, sampled at a few points.
        let points = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 2.0], [-1.0, 0.5]];
        let mut a = vec![vec![0.0; 3]; 3];
        let mut b = vec![[0.0; 3]; 3];
        for p in points {
            let row = [p[0], p[1], 1.0];
            let y = 2.0 * p[0] - p[1] + 0.5;
            for i in 0..3 {
                for j in 0..3 {
                    a[i][j] += row[i] * row[j];
                }
                b[i] = [b[i][0] + row[i] * y; 3];
            }
        }
        let w = solve(a, b);
        for (got, want) in w.iter().zip([2.0, -1.0, 0.5]) {
            assert!((got[0] - want).abs() < 1e-4, "{got:?} vs {want}");
        }
    }
}
