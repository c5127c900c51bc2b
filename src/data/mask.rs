//! Face masks: the 19 CelebAMask-HQ classes, their palette, and mask PNG I/O.
//!
//! On disk a mask is an 8-bit palette PNG whose pixel value is the class index,
//! exactly like the original data. Reading also accepts grayscale-index PNGs and
//! RGB(A) images whose colours are the palette colours (JPEG-ish noise is
//! snapped to the nearest palette colour within a small distance).

use std::path::Path;

use thiserror::Error;

/// Number of segmentation classes.
pub const NUM_CLASSES: usize = 19;

/// One segmentation class: its name in the original data and its palette colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskClass {
    pub name: &'static str,
    pub rgb: [u8; 3],
}

/// The classes in index order. "l_" is the subject's left, i.e. the right half of the image.
pub const CLASSES: [MaskClass; NUM_CLASSES] = [
    MaskClass { name: "background", rgb: [0, 0, 0] },
    MaskClass { name: "skin", rgb: [204, 0, 0] },
    MaskClass { name: "nose", rgb: [76, 153, 0] },
    MaskClass { name: "eyeglass", rgb: [204, 204, 0] },
    MaskClass { name: "l_eye", rgb: [51, 51, 255] },
    MaskClass { name: "r_eye", rgb: [204, 0, 204] },
    MaskClass { name: "l_brow", rgb: [0, 255, 255] },
    MaskClass { name: "r_brow", rgb: [255, 204, 204] },
    MaskClass { name: "l_ear", rgb: [102, 51, 0] },
    MaskClass { name: "r_ear", rgb: [255, 0, 0] },
    MaskClass { name: "mouth", rgb: [102, 204, 0] },
    MaskClass { name: "u_lip", rgb: [255, 255, 0] },
    MaskClass { name: "l_lip", rgb: [0, 0, 153] },
    MaskClass { name: "hair", rgb: [0, 0, 204] },
    MaskClass { name: "hat", rgb: [255, 51, 153] },
    MaskClass { name: "earring", rgb: [0, 204, 204] },
    MaskClass { name: "necklace", rgb: [0, 51, 0] },
    MaskClass { name: "neck", rgb: [255, 153, 51] },
    MaskClass { name: "cloth", rgb: [0, 204, 0] },
];

/// Mask class indices, in the order of [`CLASSES`].
pub mod class {
    pub const BACKGROUND: u8 = 0;
    pub const SKIN: u8 = 1;
    pub const NOSE: u8 = 2;
    pub const EYEGLASS: u8 = 3;
    pub const L_EYE: u8 = 4;
    pub const R_EYE: u8 = 5;
    pub const L_BROW: u8 = 6;
    pub const R_BROW: u8 = 7;
    pub const L_EAR: u8 = 8;
    pub const R_EAR: u8 = 9;
    pub const MOUTH: u8 = 10;
    pub const U_LIP: u8 = 11;
    pub const L_LIP: u8 = 12;
    pub const HAIR: u8 = 13;
    pub const HAT: u8 = 14;
    pub const EARRING: u8 = 15;
    pub const NECKLACE: u8 = 16;
    pub const NECK: u8 = 17;
    pub const CLOTH: u8 = 18;
}

/// The class that mirrors `class` left/right (l_eye <-> r_eye, ...); others map to themselves.
pub fn mirrored_class(c: u8) -> u8 {
    use class::*;
    match c {
        L_EYE => R_EYE,
        R_EYE => L_EYE,
        L_BROW => R_BROW,
        R_BROW => L_BROW,
        L_EAR => R_EAR,
        R_EAR => L_EAR,
        c => c,
    }
}

/// Largest squared RGB distance at which an off-palette colour is still snapped
/// to its nearest palette colour (covers JPEG and resampling noise, not other palettes).
const SNAP_DISTANCE_SQ: u32 = 24 * 24;

#[derive(Debug, Error)]
pub enum MaskError {
    #[error("cannot read mask {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a readable image: {reason}")]
    Decode { path: String, reason: String },
    #[error("{path} is {width}x{height}; masks must be square")]
    NotSquare { path: String, width: usize, height: usize },
    #[error("{path} holds class index {value} at ({x}, {y}); mask values must be 0..=18")]
    BadIndex { path: String, value: u8, x: usize, y: usize },
    #[error(
        "{path} has colour ({r}, {g}, {b}) at ({x}, {y}), which is not one of the 19 mask colours; \
         save the mask as a palette or index PNG, or repaint it with the palette colours"
    )]
    UnknownColour { path: String, r: u8, g: u8, b: u8, x: usize, y: usize },
    #[error("cannot write mask {path}: {reason}")]
    Encode { path: String, reason: String },
    #[error("{path} is {what}; a mask is at most {MAX_MASK_SIDE}x{MAX_MASK_SIDE} pixels")]
    TooLarge { path: String, what: String },
}

/// Widest mask read: the models work at 256 pixels or less, and a larger
/// declared size is refused before anything is allocated for it.
pub const MAX_MASK_SIDE: u32 = 4096;
/// Most bytes read from a mask file (a 4096-pixel mask compresses far below it).
const MAX_MASK_FILE_BYTES: u64 = 64 << 20;

/// A face mask: one class index (0..=18) per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    width: usize,
    height: usize,
    classes: Vec<u8>,
}

impl Mask {
    /// A mask of one class everywhere.
    pub fn filled(width: usize, height: usize, class: u8) -> Self {
        Self { width, height, classes: vec![class; width * height] }
    }

    /// Wraps class indices; every value must be below [`NUM_CLASSES`].
    pub fn from_classes(width: usize, height: usize, classes: Vec<u8>) -> Result<Self, MaskError> {
        assert_eq!(classes.len(), width * height, "mask buffer does not match its size");
        check_indices("mask", width, &classes)?;
        Ok(Self { width, height, classes })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn classes(&self) -> &[u8] {
        &self.classes
    }

    pub fn get(&self, x: usize, y: usize) -> u8 {
        self.classes[y * self.width + x]
    }

    pub fn set(&mut self, x: usize, y: usize, class: u8) {
        debug_assert!((class as usize) < NUM_CLASSES);
        self.classes[y * self.width + x] = class;
    }

    /// The side length, or an error naming `what` when the mask is not square.
    pub fn square_size(&self, what: &str) -> Result<usize, MaskError> {
        if self.width != self.height {
            return Err(MaskError::NotSquare { path: what.to_string(), width: self.width, height: self.height });
        }
        Ok(self.width)
    }

    /// [`Self::load`], refusing a mask that is not square: resized to the
    /// model's square it would squash the face.
    pub fn load_square(path: impl AsRef<Path>) -> Result<Self, MaskError> {
        let mask = Self::load(&path)?;
        mask.square_size(&path.as_ref().display().to_string())?;
        Ok(mask)
    }

    /// Reads a mask PNG (palette, grayscale index or RGB in palette colours).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, MaskError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_MASK_FILE_BYTES + 1), &mut bytes))
            .map_err(|source| MaskError::Io { path: name.clone(), source })?;
        if bytes.len() as u64 > MAX_MASK_FILE_BYTES {
            return Err(MaskError::TooLarge { path: name, what: format!("larger than {MAX_MASK_FILE_BYTES} bytes") });
        }
        Self::decode(&bytes, &name)
    }

    /// Decodes mask bytes; `name` is used in error messages.
    pub fn decode(bytes: &[u8], name: &str) -> Result<Self, MaskError> {
        if bytes.starts_with(b"\x89PNG") {
            // IHDR's width and height, read before any decoder sees the file.
            if let (Some(w), Some(h)) = (bytes.get(16..20), bytes.get(20..24)) {
                let side = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                check_side(name, side(w), side(h))?;
            }
            if let Some(mask) = decode_indexed_png(bytes, name)? {
                return Ok(mask);
            }
        }
        let decode_err = |e: image::ImageError| MaskError::Decode { path: name.to_string(), reason: e.to_string() };
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| decode_err(e.into()))?;
        let (w, h) = reader.into_dimensions().map_err(decode_err)?;
        check_side(name, w, h)?;
        let img = image::load_from_memory(bytes).map_err(decode_err)?;
        let (width, height) = (img.width() as usize, img.height() as usize);
        if img.color().has_color() {
            let rgb = img.to_rgb8();
            let mut classes = Vec::with_capacity(width * height);
            for (i, px) in rgb.pixels().enumerate() {
                let class = snap_to_palette(px.0).ok_or(MaskError::UnknownColour {
                    path: name.to_string(),
                    r: px.0[0],
                    g: px.0[1],
                    b: px.0[2],
                    x: i % width,
                    y: i / width,
                })?;
                classes.push(class);
            }
            Ok(Self { width, height, classes })
        } else if let Some(wide) = img.as_luma16() {
            // 16-bit indices as they are: scaling them to 8 bits would turn 0..=18 into 0.
            let classes = wide.pixels().map(|p| u8::try_from(p.0[0]).unwrap_or(u8::MAX)).collect::<Vec<_>>();
            check_indices(name, width, &classes)?;
            Ok(Self { width, height, classes })
        } else {
            let classes = img.to_luma8().into_raw();
            check_indices(name, width, &classes)?;
            Ok(Self { width, height, classes })
        }
    }

    /// Writes an 8-bit palette PNG (pixel value = class), the format of the original masks.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), MaskError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = self.encode_png().map_err(|reason| MaskError::Encode { path: name.clone(), reason })?;
        std::fs::write(path, bytes).map_err(|source| MaskError::Io { path: name, source })
    }

    /// The palette PNG bytes of this mask.
    pub fn encode_png(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            encoder.set_color(png::ColorType::Indexed);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_palette(CLASSES.iter().flat_map(|c| c.rgb).collect::<Vec<u8>>());
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer.write_image_data(&self.classes).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// The mask in its palette colours, RGB row-major.
    pub fn to_rgb(&self) -> Vec<u8> {
        self.classes.iter().flat_map(|&c| CLASSES[c as usize].rgb).collect()
    }

    /// Nearest-neighbour resize computed exactly as PIL's `Image.resize(size, NEAREST)`
    /// (an affine scale: source = floor(scale * (x + 0.5)), accumulated in f64 as PIL does).
    pub fn resize_nearest(&self, width: usize, height: usize) -> Self {
        let xs = pil_nearest_indices(self.width, width);
        let ys = pil_nearest_indices(self.height, height);
        let mut classes = Vec::with_capacity(width * height);
        for &y in &ys {
            let row = &self.classes[y * self.width..(y + 1) * self.width];
            classes.extend(xs.iter().map(|&x| row[x]));
        }
        Self { width, height, classes }
    }

    /// Pixel count of each class.
    pub fn class_histogram(&self) -> [usize; NUM_CLASSES] {
        let mut hist = [0; NUM_CLASSES];
        for &c in &self.classes {
            hist[c as usize] += 1;
        }
        hist
    }
}

/// Source index for every destination index, as PIL's ImagingScaleAffine computes it.
fn pil_nearest_indices(src: usize, dst: usize) -> Vec<usize> {
    let scale = src as f64 / dst as f64;
    let mut pos = scale * 0.5;
    (0..dst)
        .map(|_| {
            let i = (pos.max(0.0) as usize).min(src - 1);
            pos += scale;
            i
        })
        .collect()
}

fn check_indices(name: &str, width: usize, classes: &[u8]) -> Result<(), MaskError> {
    match classes.iter().position(|&c| c as usize >= NUM_CLASSES) {
        Some(i) => Err(MaskError::BadIndex { path: name.to_string(), value: classes[i], x: i % width, y: i / width }),
        None => Ok(()),
    }
}

/// The class whose palette colour is nearest `rgb`, if within [`SNAP_DISTANCE_SQ`].
pub fn snap_to_palette(rgb: [u8; 3]) -> Option<u8> {
    let (class, dist) = CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let d: u32 = (0..3).map(|k| (rgb[k] as i32 - c.rgb[k] as i32).pow(2) as u32).sum();
            (i as u8, d)
        })
        .min_by_key(|&(_, d)| d)?;
    (dist <= SNAP_DISTANCE_SQ).then_some(class)
}

/// Reads a palette or 8-bit grayscale PNG as raw indices. Returns `None` for
/// other PNG colour types, which are then read as colour images.
/// Refuses a declared size above [`MAX_MASK_SIDE`] before any pixel buffer is allocated.
fn check_side(name: &str, width: u32, height: u32) -> Result<(), MaskError> {
    if width > MAX_MASK_SIDE || height > MAX_MASK_SIDE {
        return Err(MaskError::TooLarge { path: name.to_string(), what: format!("{width}x{height}") });
    }
    Ok(())
}

fn decode_indexed_png(bytes: &[u8], name: &str) -> Result<Option<Mask>, MaskError> {
    let decode_err = |e: png::DecodingError| MaskError::Decode { path: name.to_string(), reason: e.to_string() };
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(decode_err)?;
    let info = reader.info();
    let indexed = matches!((info.color_type, info.bit_depth), (png::ColorType::Indexed | png::ColorType::Grayscale, png::BitDepth::Eight));
    if !indexed {
        return Ok(None);
    }
    let (width, height) = (info.width as usize, info.height as usize);
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(width * height)];
    let frame = reader.next_frame(&mut buf).map_err(decode_err)?;
    buf.truncate(frame.buffer_size());
    check_indices(name, width, &buf)?;
    Ok(Some(Mask { width, height, classes: buf }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_png_round_trips() {
        let classes: Vec<u8> = (0..64).map(|i| (i % NUM_CLASSES) as u8).collect();
        let mask = Mask::from_classes(8, 8, classes).unwrap();
        let bytes = mask.encode_png().unwrap();
        assert_eq!(Mask::decode(&bytes, "m.png").unwrap(), mask);
    }

    #[test]
    fn rgb_masks_snap_to_palette_and_refuse_other_colours() {
        let mut img = image::RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([200, 3, 2])); // near skin
        img.put_pixel(1, 0, image::Rgb([0, 0, 204])); // hair
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        assert_eq!(Mask::decode(&bytes, "m.png").unwrap().classes(), &[1, 13]);

        img.put_pixel(1, 0, image::Rgb([128, 128, 128]));
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        let err = Mask::decode(&bytes, "m.png").unwrap_err().to_string();
        assert!(err.contains("(128, 128, 128) at (1, 0)"), "{err}");
    }

    #[test]
    fn out_of_range_index_is_refused() {
        let mut img = image::GrayImage::new(2, 2);
        img.put_pixel(1, 1, image::Luma([19]));
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        let err = Mask::decode(&bytes, "m.png").unwrap_err().to_string();
        assert!(err.contains("class index 19 at (1, 1)"), "{err}");
    }

    #[test]
    fn nearest_resize_matches_pil_indices() {
        // PIL: 512 -> 32 samples 8, 24, ...; 256 -> 32 samples 4, 12, ...; 3 -> 2 samples 0, 2 (0.75, 2.25).
        assert_eq!(&pil_nearest_indices(512, 32)[..3], &[8, 24, 40]);
        assert_eq!(&pil_nearest_indices(256, 32)[..3], &[4, 12, 20]);
        assert_eq!(pil_nearest_indices(3, 2), vec![0, 2]);
        assert_eq!(pil_nearest_indices(2, 4), vec![0, 0, 1, 1]);
    }

    #[test]
    fn mirrored_classes_swap_sides() {
        // "l_lip" is the lower lip, not a side: only eyes, brows and ears swap.
        let name = |c: u8| CLASSES[c as usize].name;
        for c in 0..NUM_CLASSES as u8 {
            let m = mirrored_class(c);
            assert_eq!(mirrored_class(m), c);
            if m != c {
                let side_swapped = match name(c).split_at(2) {
                    ("l_", part) => format!("r_{part}"),
                    (_, part) => format!("l_{part}"),
                };
                assert_eq!(name(m), side_swapped);
            }
        }
        assert_eq!([mirrored_class(4), mirrored_class(6), mirrored_class(8), mirrored_class(12)], [5, 7, 9, 12]);
    }
}
