//! RGB images in memory and on disk: 8-bit frames and influence maps made
//! from the models' tensors, and PNGs with text chunks (the parameters that
//! made a result are one of them: [`super::image_params`]).

use std::path::Path;

use candle_core::{DType, Tensor};
use thiserror::Error;

/// An RGB image, row-major, 8 bits per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbFrame {
    pub fn from_image(image: &image::RgbImage) -> Self {
        Self { width: image.width() as usize, height: image.height() as usize, pixels: image.as_raw().clone() }
    }

    /// A mask in its palette colours.
    pub fn from_mask(mask: &crate::data::mask::Mask) -> Self {
        Self { width: mask.width(), height: mask.height(), pixels: mask.to_rgb() }
    }

    /// As an `image` buffer; `None` when the pixels do not fill width x height.
    pub fn to_image(&self) -> Option<image::RgbImage> {
        image::RgbImage::from_raw(self.width as u32, self.height as u32, self.pixels.clone())
    }
}

/// A single-channel map in [0, 1] (an influence function), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// B x 3 x H x W images in [-1, 1] to 8-bit frames.
pub fn images_to_frames(images: &Tensor) -> candle_core::Result<Vec<RgbFrame>> {
    let (batch, _, height, width) = images.dims4()?;
    let bytes = ((images.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?.round()?.permute((0, 2, 3, 1))?.contiguous()?;
    let bytes = bytes.to_dtype(DType::U8)?;
    (0..batch)
        .map(|b| Ok(RgbFrame { width, height, pixels: bytes.get(b)?.flatten_all()?.to_vec1::<u8>()? }))
        .collect()
}

/// B x 1 x H x W maps to per-item value grids.
pub fn scalar_maps(maps: &Tensor) -> candle_core::Result<Vec<ScalarMap>> {
    let (batch, _, height, width) = maps.dims4()?;
    let flat = maps.flatten_from(1)?.to_dtype(DType::F32)?;
    (0..batch)
        .map(|b| Ok(ScalarMap { width, height, values: flat.get(b)?.to_vec1::<f32>()? }))
        .collect()
}

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

/// Writes `frame` as an RGB PNG with one text chunk per `(keyword, value)`,
/// replacing `path` atomically.
pub fn save_png_with_text(path: impl AsRef<Path>, frame: &RgbFrame, text: &[(&str, String)]) -> Result<(), ImageError> {
    let path = path.as_ref();
    let err = |reason: String| ImageError::Write { path: path.display().to_string(), reason };
    super::output::write_atomically(path, |file| {
        let mut encoder = png::Encoder::new(file, frame.width as u32, frame.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (keyword, value) in text {
            // iTXt holds UTF-8 of any length (tEXt is Latin-1 only).
            encoder.add_itxt_chunk(keyword.to_string(), value.clone())?;
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&frame.pixels)?;
        Ok(writer.finish()?)
    })
    .map_err(|e| err(e.to_string()))
}

/// Anchors of the viridis colour map (perceptually uniform, readable in grey and by colour-blind eyes).
const VIRIDIS: [[u8; 3]; 6] = [[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]];

/// The colour map of influence functions, shared by the studio and the command
/// line: the mask model's share in [0, 1] (clamped) to RGB, dark purple (the
/// text model counts) to yellow (the mask model counts).
pub fn influence_colour(value: f32) -> [u8; 3] {
    let v = if value.is_finite() { value.clamp(0.0, 1.0) } else { 0.0 };
    let x = v * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let mix = |k: usize| (VIRIDIS[i][k] as f32 * (1.0 - f) + VIRIDIS[i + 1][k] as f32 * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// An influence map in the influence colour map: the one picture of an
/// influence function the command line, the evaluation and the studio show.
pub fn influence_heatmap(map: &ScalarMap) -> RgbFrame {
    RgbFrame { width: map.width, height: map.height, pixels: map.values.iter().flat_map(|&v| influence_colour(v)).collect() }
}

/// Nearest-neighbour upscale of a frame by an integer factor (previews and maps live at latent size).
pub fn upscale(frame: &RgbFrame, factor: usize) -> RgbFrame {
    let (width, height) = (frame.width * factor, frame.height * factor);
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let i = ((y / factor) * frame.width + x / factor) * 3;
            pixels.extend_from_slice(&frame.pixels[i..i + 3]);
        }
    }
    RgbFrame { width, height, pixels }
}

/// Frames of equal height side by side.
pub fn hstack(frames: &[RgbFrame]) -> RgbFrame {
    let height = frames.iter().map(|f| f.height).max().unwrap_or(0);
    let width = frames.iter().map(|f| f.width).sum();
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for f in frames {
            if y < f.height {
                pixels.extend_from_slice(&f.pixels[y * f.width * 3..(y + 1) * f.width * 3]);
            } else {
                pixels.extend(std::iter::repeat_n(0, f.width * 3));
            }
        }
    }
    RgbFrame { width, height, pixels }
}

/// Frames of equal width one above the other.
pub fn vstack(frames: &[RgbFrame]) -> RgbFrame {
    let width = frames.iter().map(|f| f.width).max().unwrap_or(0);
    let mut pixels = Vec::new();
    for f in frames {
        for y in 0..f.height {
            pixels.extend_from_slice(&f.pixels[y * f.width * 3..(y + 1) * f.width * 3]);
            pixels.extend(std::iter::repeat_n(0, (width - f.width) * 3));
        }
    }
    RgbFrame { width, height: frames.iter().map(|f| f.height).sum(), pixels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn influence_colours_are_viridis() {
        assert_eq!(influence_colour(0.0), [68, 1, 84]);
        assert_eq!(influence_colour(1.0), [253, 231, 37]);
        assert_eq!(influence_colour(2.0), influence_colour(1.0));
        // Halfway between anchors 2 and 3.
        assert_eq!(influence_colour(0.5), [38, 144, 137]);
    }
}
