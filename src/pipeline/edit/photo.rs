//! A photo on its way into an edit and back out: the square crop the model
//! sees, and the edited crop blended back into the full photo.

use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use image::{DynamicImage, ImageDecoder, RgbImage};

/// The fade at a pasted crop's inner edges, as a share of its side.
const FEATHER: f32 = 0.08;

/// The smallest crop side, in photo pixels.
const MIN_SIDE: u32 = 16;

/// A square region of a photo, in the photo's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub side: u32,
}

impl Crop {
    /// The largest centred square of a `width` x `height` photo.
    pub fn centred(width: u32, height: u32) -> Self {
        let side = width.min(height);
        Self { x: (width - side) / 2, y: (height - side) / 2, side }
    }

    /// This crop, checked against a `width` x `height` photo.
    pub fn within(self, width: u32, height: u32) -> Result<Self, String> {
        if self.side < MIN_SIDE {
            return Err(format!("the crop is {0}x{0}; it needs at least {MIN_SIDE}x{MIN_SIDE} pixels", self.side));
        }
        let fits = |start: u32, size: u32| start.checked_add(self.side).is_some_and(|end| end <= size);
        if !fits(self.x, width) || !fits(self.y, height) {
            return Err(format!(
                "the crop {}x{} at ({}, {}) leaves the {width}x{height} photo",
                self.side, self.side, self.x, self.y
            ));
        }
        Ok(self)
    }

    /// This crop shifted by (`dx`, `dy`) photo pixels, stopped at the edges of a `width` x `height` photo.
    pub fn moved(self, dx: f32, dy: f32, width: u32, height: u32) -> Self {
        let shift = |at: u32, by: f32, room: u32| (at as f32 + by).round().clamp(0.0, room.saturating_sub(self.side) as f32) as u32;
        Self { x: shift(self.x, dx, width), y: shift(self.y, dy, height), ..self }
    }

    /// This crop with its bottom-right corner dragged by (`dx`, `dy`) photo
    /// pixels: the top-left corner stays, the side follows the larger drag and
    /// stays within the photo.
    pub fn resized(self, dx: f32, dy: f32, width: u32, height: u32) -> Self {
        let room = (width - self.x.min(width)).min(height - self.y.min(height));
        let side = (self.side as f32 + dx.max(dy)).round().clamp(MIN_SIDE.min(room) as f32, room as f32) as u32;
        Self { side, ..self }
    }

    /// Parses "X,Y,SIDE" (the command line's `--crop`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let numbers: Vec<u32> = text.split(',').map(|s| s.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|_| bad_crop(text))?;
        match numbers[..] {
            [x, y, side] => Ok(Self { x, y, side }),
            _ => Err(bad_crop(text)),
        }
    }

    /// The crop as [`Crop::parse`] reads it (and `codiff edit --crop` takes it).
    pub fn arg(&self) -> String {
        format!("{},{},{}", self.x, self.y, self.side)
    }

    /// The crop's pixels resized to `size` x `size`, as the model takes them.
    pub fn cut(&self, photo: &RgbImage, size: usize) -> RgbImage {
        let crop = image::imageops::crop_imm(photo, self.x, self.y, self.side, self.side).to_image();
        image::imageops::resize(&crop, size as u32, size as u32, image::imageops::FilterType::Lanczos3)
    }
}

fn bad_crop(text: &str) -> String {
    format!("--crop wants X,Y,SIDE in pixels (e.g. 40,0,600), not {text:?}")
}

/// A full photo and the square of it that goes to the model.
#[derive(Debug, Clone)]
pub struct Photo {
    /// Shared, so that handing a photo of many megapixels to another thread copies nothing.
    pub full: Arc<RgbImage>,
    pub crop: Crop,
}

impl Photo {
    /// Reads a PNG, JPEG or WebP photo, turned upright as its EXIF orientation
    /// says (cameras store portraits sideways); `crop` defaults to the centred square.
    pub fn load(path: &Path, crop: Option<Crop>) -> Result<Self, String> {
        let unreadable = |e: &dyn std::fmt::Display| format!("{} is not a readable PNG, JPEG or WebP image: {e}", path.display());
        let reader = image::ImageReader::open(path).and_then(|r| r.with_guessed_format()).map_err(|e| unreadable(&e))?;
        let mut decoder = reader.into_decoder().map_err(|e| unreadable(&e))?;
        // `ImageReader::decode` checks the decoded size against the limits
        // before allocating; the decoder path (needed for the orientation) does not.
        let mut limits = image::Limits::default();
        if limits.reserve(decoder.total_bytes()).is_err() {
            let (w, h) = decoder.dimensions();
            return Err(format!("{} is {w}x{h} pixels, too large to decode; scale it down first", path.display()));
        }
        decoder.set_limits(limits).map_err(|e| unreadable(&e))?;
        let orientation = decoder.orientation().map_err(|e| unreadable(&e))?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(|e| unreadable(&e))?;
        image.apply_orientation(orientation);
        Self::new(image, crop).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn new(image: DynamicImage, crop: Option<Crop>) -> Result<Self, String> {
        let full = image.to_rgb8();
        let (w, h) = full.dimensions();
        if w < MIN_SIDE || h < MIN_SIDE {
            return Err(format!("the photo is {w}x{h}; a photo needs at least {MIN_SIDE}x{MIN_SIDE} pixels"));
        }
        let crop = crop.unwrap_or_else(|| Crop::centred(w, h)).within(w, h)?;
        Ok(Self { full: Arc::new(full), crop })
    }

    /// The crop at the model's resolution.
    pub fn model_input(&self, size: usize) -> RgbImage {
        self.crop.cut(&self.full, size)
    }

    /// The full photo with `edited` (the crop after editing, any size) blended
    /// in: fully inside the crop, fading to the photo over [`FEATHER`] of its
    /// side at the crop's edges, so no seam shows where the crop meets the rest.
    pub fn paste_back(&self, edited: &RgbImage) -> RgbImage {
        let Crop { x, y, side } = self.crop;
        let edited = image::imageops::resize(edited, side, side, image::imageops::FilterType::Lanczos3);
        let ramp = (FEATHER * side as f32).max(1.0);
        // Weight 1 deep inside, falling linearly to 0 at the crop's border; a
        // crop edge on the photo's own border needs no fade.
        let (w, h) = self.full.dimensions();
        let fade = |i: u32, lo_open: bool, hi_open: bool| -> f32 {
            let lo = if lo_open { (i as f32 + 0.5) / ramp } else { 1.0 };
            let hi = if hi_open { (side as f32 - i as f32 - 0.5) / ramp } else { 1.0 };
            lo.min(hi).clamp(0.0, 1.0)
        };
        let mut out = RgbImage::clone(&self.full);
        for j in 0..side {
            let wy = fade(j, y > 0, y + side < h);
            for i in 0..side {
                let weight = fade(i, x > 0, x + side < w) * wy;
                let (a, b) = (edited.get_pixel(i, j), out.get_pixel_mut(x + i, y + j));
                for c in 0..3 {
                    b[c] = (a[c] as f32 * weight + b[c] as f32 * (1.0 - weight)).round() as u8;
                }
            }
        }
        out
    }
}

/// An RGB photo as 1 x 3 x H x W in [-1, 1].
pub fn photo_tensor(photo: &RgbImage, device: &candle_core::Device) -> candle_core::Result<Tensor> {
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    let data: Vec<f32> = photo.as_raw().iter().map(|&v| v as f32 / 127.5 - 1.0).collect();
    Tensor::from_vec(data, (1, h, w, 3), device)?.permute((0, 3, 1, 2))?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, image::Rgb([v, v, v]))
    }

    #[test]
    fn photos_are_turned_upright_by_their_exif_orientation() {
        // 80 x 40, left half dark; EXIF orientation 6: the camera was turned a
        // quarter clockwise, so the upright photo is 40 x 80 with the dark half on top.
        let path = std::env::temp_dir().join(format!("codiff-exif-{}.png", std::process::id()));
        let mut pixels = Vec::new();
        for _ in 0..40 {
            for x in 0..80 {
                pixels.extend([if x < 40 { 20u8 } else { 230 }; 3]);
            }
        }
        let exif: &[u8] = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00";
        let mut encoder = png::Encoder::new(std::fs::File::create(&path).unwrap(), 80, 40);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer.write_chunk(png::chunk::ChunkType(*b"eXIf"), exif).unwrap();
        writer.write_image_data(&pixels).unwrap();
        writer.finish().unwrap();
        let photo = Photo::load(&path, None).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(photo.full.dimensions(), (40, 80));
        assert_eq!((photo.full.get_pixel(20, 10)[0], photo.full.get_pixel(20, 70)[0]), (20, 230));
    }

    #[test]
    fn crops_are_checked_against_the_photo() {
        assert_eq!(Crop::centred(300, 200), Crop { x: 50, y: 0, side: 200 });
        assert!(Crop { x: 150, y: 0, side: 200 }.within(300, 200).is_err());
        assert!(Crop { x: 0, y: 0, side: 8 }.within(300, 200).is_err());
        assert!(Crop { x: u32::MAX, y: 0, side: 16 }.within(300, 200).is_err(), "no overflow past the photo");
        assert_eq!(Crop::parse("10, 20,30"), Ok(Crop { x: 10, y: 20, side: 30 }));
        assert!(Crop::parse("10,20").is_err());
        assert!(Crop::parse("a,b,c").is_err());
    }

    #[test]
    fn dragged_crops_stay_square_and_inside_the_photo() {
        let crop = Crop { x: 50, y: 0, side: 200 };
        assert_eq!(crop.moved(20.4, 30.0, 300, 200), Crop { x: 70, y: 0, side: 200 }, "no room to move down");
        assert_eq!(crop.moved(-80.0, 0.0, 300, 200), Crop { x: 0, y: 0, side: 200 });
        assert_eq!(crop.moved(500.0, 0.0, 300, 200), Crop { x: 100, y: 0, side: 200 });
        assert_eq!(crop.resized(-50.0, -120.0, 300, 200), Crop { x: 50, y: 0, side: 150 }, "the larger drag wins");
        assert_eq!(crop.resized(-500.0, -500.0, 300, 200), Crop { x: 50, y: 0, side: MIN_SIDE });
        assert_eq!(crop.resized(40.0, 0.0, 300, 200), crop, "already as tall as the photo");
        assert_eq!(Crop { x: 290, y: 0, side: 10 }.resized(-5.0, 0.0, 300, 200).side, 10, "a corner crop never grows past its room");
    }

    #[test]
    fn paste_back_replaces_the_crop_and_fades_at_its_inner_edges() {
        let photo = Photo::new(DynamicImage::ImageRgb8(flat(300, 200, 0)), Some(Crop { x: 100, y: 0, side: 200 })).unwrap();
        let out = photo.paste_back(&flat(64, 64, 200));
        assert_eq!(out.dimensions(), (300, 200));
        assert_eq!(out.get_pixel(50, 100)[0], 0, "outside the crop the photo is untouched");
        assert_eq!(out.get_pixel(200, 100)[0], 200, "deep inside the crop the edit is exact");
        let edge = out.get_pixel(100, 100)[0];
        assert!(edge > 0 && edge < 20, "the crop's inner edge fades into the photo, got {edge}");
        let middle_of_ramp = out.get_pixel(100 + (FEATHER * 200.0 / 2.0) as u32, 100)[0];
        assert!((90..=110).contains(&middle_of_ramp), "half way up the ramp, got {middle_of_ramp}");
        assert_eq!(out.get_pixel(200, 0)[0], 200, "a crop edge on the photo's border does not fade");
        assert_eq!(out.get_pixel(299, 100)[0], 200, "nor does one on the right border");
    }
}
