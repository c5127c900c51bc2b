//! What a PNG given to the studio is, read from its content rather than its
//! name: a result that carries its parameters (to restore), a mask (palette
//! colours or class indices only), or otherwise a photo to edit.

use std::path::Path;

use super::image_params::{read_png_params, ImageParams};
use super::mask::{Mask, MaskError};

pub enum PngKind {
    /// A result the studio or the command line wrote.
    Result(Box<ImageParams>),
    Mask(Mask),
    /// Neither; `why` says what ruled out a mask, as a phrase.
    Photo { why: String },
}

/// Reads `path` and says what it is; an error only for a file that cannot be
/// read at all or whose parameters are damaged.
pub fn classify(path: &Path) -> Result<PngKind, String> {
    if let Some(params) = read_png_params(path).map_err(|e| e.to_string())? {
        return Ok(PngKind::Result(Box::new(params)));
    }
    match Mask::load(path) {
        Ok(mask) => Ok(PngKind::Mask(mask)),
        Err(MaskError::UnknownColour { r, g, b, x, y, .. }) => {
            Ok(PngKind::Photo { why: format!("its colour ({r}, {g}, {b}) at ({x}, {y}) is none of the 19 mask colours") })
        }
        Err(MaskError::BadIndex { value, .. }) => Ok(PngKind::Photo { why: format!("its grey level {value} is no class index (0 to 18)") }),
        Err(MaskError::TooLarge { what, .. }) => Ok(PngKind::Photo { why: format!("it is {what}, larger than any mask") }),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image::RgbFrame;
    use crate::data::image_params::save_png_with_params;
    use crate::data::mask::class;
    use crate::diffusion::collaborate::CombineMode;

    #[test]
    fn results_masks_and_photos_are_told_apart_by_content() {
        let dir = std::env::temp_dir().join(format!("codiff-png-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kind = |name: &str| classify(&dir.join(name));

        let mut mask = Mask::filled(8, 8, class::BACKGROUND);
        mask.set(2, 3, class::HAIR);
        mask.save(dir.join("palette.png")).unwrap();
        assert!(matches!(kind("palette.png"), Ok(PngKind::Mask(m)) if m == mask));
        let colours = image::RgbImage::from_raw(8, 8, mask.to_rgb()).unwrap();
        colours.save(dir.join("colours.png")).unwrap();
        assert!(matches!(kind("colours.png"), Ok(PngKind::Mask(m)) if m == mask), "an RGB PNG in palette colours is a mask");

        image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([200, 150 + x as u8, 120 + y as u8])).save(dir.join("photo.png")).unwrap();
        assert!(matches!(kind("photo.png"), Ok(PngKind::Photo { why }) if why.contains("none of the 19 mask colours")));
        image::GrayImage::from_pixel(8, 8, image::Luma([128])).save(dir.join("grey.png")).unwrap();
        assert!(matches!(kind("grey.png"), Ok(PngKind::Photo { why }) if why.contains("128")), "a grey photo");

        let params = ImageParams { prompt: "She is a teen.".into(), seed: 1, steps: 2, eta: 1.0, mode: CombineMode::Collaborative, model: None, mask: Some(mask), edit: None };
        let frame = RgbFrame { width: 2, height: 2, pixels: vec![200; 12] };
        save_png_with_params(dir.join("result.png"), &frame, &params).unwrap();
        assert!(matches!(kind("result.png"), Ok(PngKind::Result(p)) if *p == params));

        std::fs::write(dir.join("broken.png"), b"\x89PNG not really").unwrap();
        assert!(kind("broken.png").is_err(), "an unreadable file is neither");
        assert!(kind("missing.png").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
