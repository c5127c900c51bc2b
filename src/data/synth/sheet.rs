//! Contact sheets: photos beside their masks with their captions underneath,
//! for a person to check that the three agree.

use image::{Rgb, RgbImage};

use crate::data::mask::Mask;

/// One tile of a contact sheet.
pub struct SheetEntry<'a> {
    pub name: &'a str,
    pub image: &'a RgbImage,
    pub mask: &'a Mask,
    pub caption: &'a str,
}

const COLUMNS: usize = 4;
const GAP: usize = 6;
const TEXT_LINES: usize = 4;
const BACKGROUND: Rgb<u8> = Rgb([32, 32, 36]);
const TEXT: Rgb<u8> = Rgb([235, 235, 235]);
const LABEL: Rgb<u8> = Rgb([150, 190, 255]);

/// Lays the entries out four to a row; each tile is the photo, the mask in its
/// palette colours, and the name and caption in an 8x8 bitmap font (twice as
/// large for tiles of 256 pixels and more).
pub fn contact_sheet(entries: &[SheetEntry]) -> RgbImage {
    let size = entries.iter().map(|e| e.image.width() as usize).max().unwrap_or(0);
    let glyph = if size >= 256 { 16 } else { 8 };
    let tile_w = 2 * size;
    let tile_h = size + glyph * (TEXT_LINES + 1) + 4;
    let cols = entries.len().clamp(1, COLUMNS);
    let rows = entries.len().div_ceil(COLUMNS);
    let width = cols * (tile_w + GAP) + GAP;
    let height = rows * (tile_h + GAP) + GAP;
    let mut sheet = RgbImage::from_pixel(width as u32, height as u32, BACKGROUND);
    for (k, e) in entries.iter().enumerate() {
        let (x0, y0) = (GAP + (k % COLUMNS) * (tile_w + GAP), GAP + (k / COLUMNS) * (tile_h + GAP));
        image::imageops::replace(&mut sheet, e.image, x0 as i64, y0 as i64);
        let mask_rgb = e.mask.to_rgb();
        let mask_img = RgbImage::from_raw(e.mask.width() as u32, e.mask.height() as u32, mask_rgb);
        if let Some(m) = mask_img {
            image::imageops::replace(&mut sheet, &m, (x0 + size) as i64, y0 as i64);
        }
        let chars_per_line = tile_w / glyph;
        let mut y = y0 + size + 2;
        draw_text(&mut sheet, x0, y, e.name, glyph, LABEL);
        for line in wrap(e.caption, chars_per_line).iter().take(TEXT_LINES) {
            y += glyph;
            draw_text(&mut sheet, x0, y, line, glyph, TEXT);
        }
    }
    sheet
}

/// Greedy word wrap to at most `width` characters a line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws ASCII text with font8x8's glyphs scaled to `glyph` pixels; other characters show as '?'.
pub(crate) fn draw_text(img: &mut RgbImage, x0: usize, y0: usize, text: &str, glyph: usize, colour: Rgb<u8>) {
    let scale = glyph / 8;
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() { ch as usize } else { '?' as usize };
        let rows = font8x8::legacy::BASIC_LEGACY[code];
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let (x, y) = (x0 + i * glyph + gx * scale + sx, y0 + gy * scale + sy);
                        if x < img.width() as usize && y < img.height() as usize {
                            img.put_pixel(x as u32, y as u32, colour);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_on_word_boundaries() {
        assert_eq!(wrap("This man has a long beard.", 12), vec!["This man has", "a long", "beard."]);
    }

    #[test]
    fn sheet_holds_photo_mask_and_text() {
        let image = RgbImage::from_pixel(16, 16, Rgb([200, 100, 50]));
        let mask = Mask::filled(16, 16, crate::data::mask::class::HAIR);
        let entry = SheetEntry { name: "00000.png", image: &image, mask: &mask, caption: "He is in his thirties." };
        let sheet = contact_sheet(&[entry]);
        assert_eq!(sheet.width() as usize, 2 * 16 + 2 * GAP);
        assert_eq!(*sheet.get_pixel(GAP as u32, GAP as u32), Rgb([200, 100, 50]));
        assert_eq!(*sheet.get_pixel((GAP + 16) as u32, GAP as u32), Rgb([0, 0, 204]));
        let text_pixels = sheet.pixels().filter(|p| **p == TEXT).count();
        assert!(text_pixels > 50, "caption drew {text_pixels} pixels");
    }
}
