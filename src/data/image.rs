//! RGB images on disk: PNGs that carry the parameters that made them (as PNG
//! text chunks), so a result can be reproduced or loaded back into the studio.

use std::path::Path;

use thiserror::Error;

use crate::pipeline::generate::RgbFrame;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

/// Writes `frame` as an RGB PNG with one text chunk per `(keyword, value)`.
pub fn save_png_with_params(path: impl AsRef<Path>, frame: &RgbFrame, params: &[(&str, String)]) -> Result<(), ImageError> {
    let path = path.as_ref();
    let err = |reason: String| ImageError::Write { path: path.display().to_string(), reason };
    super::output::write_atomically(path, |file| {
        let mut encoder = png::Encoder::new(file, frame.width as u32, frame.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (keyword, value) in params {
            // iTXt holds UTF-8 of any length (tEXt is Latin-1 only).
            encoder.add_itxt_chunk(keyword.to_string(), value.clone())?;
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&frame.pixels)?;
        Ok(writer.finish()?)
    })
    .map_err(|e| err(e.to_string()))
}

/// The text chunks of a PNG, in file order.
pub fn read_png_params(path: impl AsRef<Path>) -> Result<Vec<(String, String)>, ImageError> {
    let path = path.as_ref();
    let err = |reason: String| ImageError::Read { path: path.display().to_string(), reason };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().map_err(|e| err(e.to_string()))?;
    let info = reader.info();
    let latin = info.uncompressed_latin1_text.iter().map(|c| (c.keyword.clone(), c.text.clone()));
    let utf8 = info.utf8_text.iter().filter_map(|c| Some((c.keyword.clone(), c.get_text().ok()?)));
    Ok(latin.chain(utf8).collect())
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

    #[test]
    fn parameters_round_trip_through_png_text_chunks() {
        let dir = std::env::temp_dir().join(format!("codiff-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.png");
        let frame = RgbFrame { width: 2, height: 1, pixels: vec![1, 2, 3, 4, 5, 6] };
        let params = [("text", "Er ist in seinen Fünfzigern.".to_string()), ("seed", "7".to_string())];
        save_png_with_params(&path, &frame, &params).unwrap();
        let read = read_png_params(&path).unwrap();
        assert_eq!(read, params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<Vec<_>>());
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.into_raw(), frame.pixels);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
