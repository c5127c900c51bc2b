//! The synthetic face world: determinism, mask validity and layout, captions
//! that parse back, and photos that respond to the caption-only attributes.

use std::collections::HashSet;

use codiff::data::coverage::LayoutStats;
use codiff::data::mask::{Mask, CLASSES, NUM_CLASSES};
use codiff::data::synth::{
    caption, generate, parse_caption, render, sample_attributes, sample_rng, Attributes, Beard, BeardLevel,
    CaptionAttributes, Gender, HairColor, HairStyle, Hat,
};
use image::RgbImage;

use codiff::data::mask::class::{HAIR, L_BROW, L_EAR, L_EYE, L_LIP, R_BROW, R_EAR, R_EYE, SKIN};

#[test]
fn same_seed_gives_identical_bytes() {
    for i in 0..6 {
        let (a, b) = (generate(11, i, 64), generate(11, i, 64));
        assert_eq!(a.mask.encode_png().unwrap(), b.mask.encode_png().unwrap());
        assert_eq!(a.image.as_raw(), b.image.as_raw());
        assert_eq!(a.caption, b.caption);
        assert_eq!(a.attributes, b.attributes);
    }
    let (a, b) = (generate(11, 0, 64), generate(12, 0, 64));
    assert_ne!(a.image.as_raw(), b.image.as_raw(), "another seed must give another face");
}

#[test]
fn masks_are_palette_pngs_with_class_values() {
    let s = generate(3, 0, 64);
    let bytes = s.mask.encode_png().unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!(info.color_type, png::ColorType::Indexed);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let palette: Vec<u8> = CLASSES.iter().flat_map(|c| c.rgb).collect();
    assert_eq!(info.palette.as_deref().unwrap(), &palette[..]);
    assert_eq!(Mask::decode(&bytes, "m.png").unwrap(), s.mask);
    for i in 0..50 {
        assert!(generate(3, i, 48).mask.classes().iter().all(|&c| (c as usize) < NUM_CLASSES));
    }
}

#[test]
fn every_class_appears_over_1000_samples() {
    let mut seen = [0usize; NUM_CLASSES];
    for i in 0..1000 {
        let mut rng = sample_rng(2024, i);
        let attrs = sample_attributes(&mut rng);
        let (mask, _) = render(&attrs, 64, &mut rng);
        for (c, &n) in mask.class_histogram().iter().enumerate() {
            seen[c] += (n > 0) as usize;
        }
    }
    for (c, &n) in seen.iter().enumerate() {
        assert!(n > 0, "class {} ({}) never appears", c, CLASSES[c].name);
    }
    // Nearly always there: background, skin, nose and the lips (a thin upper
    // lip can fall between the pixels of a 64 x 64 mask).
    for c in [0, 1, 2, 11, 12] {
        assert!(seen[c] >= 950, "class {} in only {} of 1000 masks", CLASSES[c].name, seen[c]);
    }
}

fn mean_x(mask: &Mask, class: u8) -> Option<f32> {
    let (mut sum, mut n) = (0.0, 0usize);
    for y in 0..mask.height() {
        for x in 0..mask.width() {
            if mask.get(x, y) == class {
                sum += x as f32;
                n += 1;
            }
        }
    }
    (n > 0).then(|| sum / n as f32)
}

#[test]
fn left_classes_lie_on_the_image_right() {
    let mut pairs = 0;
    for i in 0..150 {
        let s = generate(77, i, 96);
        let centre = mean_x(&s.mask, 2).expect("every face has a nose");
        for (l, r) in [(L_EYE, R_EYE), (L_BROW, R_BROW), (L_EAR, R_EAR)] {
            if let (Some(lx), Some(rx)) = (mean_x(&s.mask, l), mean_x(&s.mask, r)) {
                // Rolled up to 25 degrees and turned, a far eye can pass the nose's
                // mean column, but never its partner.
                assert!(lx > rx, "sample {i}: l_ class {l} at x={lx}, r_ at {rx}, nose at {centre}");
                pairs += 1;
            }
        }
    }
    assert!(pairs > 300, "only {pairs} left/right pairs checked");
}

#[test]
fn captions_parse_back_to_their_attributes() {
    let mut shapes = HashSet::new();
    for i in 0..3000 {
        let mut rng = sample_rng(5, i);
        let attrs = sample_attributes(&mut rng);
        let text = caption(&attrs, &mut rng);
        assert_eq!(parse_caption(&text), CaptionAttributes::of(&attrs), "caption {text:?} of {attrs:?}");
        if attrs.gender == Gender::Female {
            assert_eq!(attrs.beard.level(), BeardLevel::None);
        }
        // The wording with the age taken out: how many templates and paraphrases occur.
        let shape: String = text.split_whitespace().filter(|w| !w.chars().any(|c| c.is_ascii_digit()) && !w.contains("ties") && !w.contains("teen")).collect();
        shapes.insert(shape);
    }
    assert!(shapes.len() >= 100, "only {} distinct caption wordings", shapes.len());
}

/// Mean brightness and texture (mean absolute difference to the right-hand
/// neighbour) of the photo over the pixels `select` picks.
fn stats(img: &RgbImage, mask: &Mask, select: impl Fn(usize, usize) -> bool) -> (f32, f32, usize) {
    let luma = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    };
    let (mut sum, mut tex, mut n) = (0.0, 0.0, 0);
    for y in 0..mask.height() {
        for x in 0..mask.width() - 1 {
            if select(x, y) && select(x + 1, y) {
                sum += luma(x as u32, y as u32);
                tex += (luma(x as u32, y as u32) - luma(x as u32 + 1, y as u32)).abs();
                n += 1;
            }
        }
    }
    (sum / n.max(1) as f32, tex / n.max(1) as f32, n)
}

/// A man of `age` with `beard`, everything else drawn from `index`.
fn man(index: u64, age: u8, beard: Beard) -> (Attributes, u64) {
    let mut rng = sample_rng(99, index);
    let mut attrs = sample_attributes(&mut rng);
    attrs.gender = Gender::Male;
    attrs.age_years = age;
    attrs.beard = beard;
    attrs.makeup = false;
    (attrs, index)
}

fn render_with(attrs: &Attributes, index: u64) -> (Mask, RgbImage) {
    render(attrs, 128, &mut sample_rng(1000, index))
}

#[test]
fn beard_is_darker_and_more_textured_than_bare_skin() {
    let (mut darker, mut rougher, mut faces) = (0, 0, 0);
    for i in 0..30 {
        let (mut attrs, idx) = man(i, 30, Beard::NONE);
        if attrs.hair_color == HairColor::Blond {
            attrs.hair_color = HairColor::Brown;
        }
        let (mask, bare) = render_with(&attrs, idx);
        attrs.beard = Beard::of_level(BeardLevel::Medium);
        let (mask_b, bearded) = render_with(&attrs, idx);
        assert_eq!(mask, mask_b, "a beard must not change the mask");
        // The chin: skin below the lower lip.
        let lip_bottom = (0..mask.height()).rev().find(|&y| (0..mask.width()).any(|x| mask.get(x, y) == L_LIP));
        let Some(lip_bottom) = lip_bottom else { continue };
        let chin = |x: usize, y: usize| y > lip_bottom + 1 && mask.get(x, y) == SKIN;
        let (l0, t0, n) = stats(&bare, &mask, chin);
        let (l1, t1, _) = stats(&bearded, &mask, chin);
        if n < 20 {
            continue;
        }
        faces += 1;
        darker += (l1 < l0 - 8.0) as usize;
        rougher += (t1 > t0 * 1.3) as usize;
        // Hair above the eyes is untouched.
        let brow_top = (0..mask.height()).find(|&y| (0..mask.width()).any(|x| [L_BROW, R_BROW].contains(&mask.get(x, y))));
        let hair = |x: usize, y: usize| mask.get(x, y) == HAIR && brow_top.is_some_and(|top| y + 4 < top);
        assert_eq!(stats(&bare, &mask, hair), stats(&bearded, &mask, hair));
    }
    assert!(faces >= 25, "only {faces} faces had a chin to compare");
    assert!(darker >= faces * 9 / 10, "beard darker on {darker} of {faces} chins");
    assert!(rougher >= faces * 9 / 10, "beard more textured on {rougher} of {faces} chins");
}

#[test]
fn stubble_is_lighter_than_a_long_beard() {
    let (mut ordered, mut faces) = (0, 0);
    for i in 0..20 {
        let (mut attrs, idx) = man(i + 500, 40, Beard::of_level(BeardLevel::Stubble));
        attrs.hair_color = HairColor::DarkBrown;
        let (mask, stubble) = render_with(&attrs, idx);
        attrs.beard = Beard::of_level(BeardLevel::Long);
        let (_, long) = render_with(&attrs, idx);
        attrs.beard = Beard::NONE;
        let (_, bare) = render_with(&attrs, idx);
        let jaw = |x: usize, y: usize| mask.get(x, y) == SKIN && y > mask.height() * 6 / 10;
        let (ls, _, n) = stats(&stubble, &mask, jaw);
        let (ll, _, _) = stats(&long, &mask, jaw);
        let (lb, _, _) = stats(&bare, &mask, jaw);
        if n < 20 {
            continue;
        }
        faces += 1;
        ordered += (lb > ls && ls > ll) as usize;
    }
    assert!(faces >= 15 && ordered >= faces * 9 / 10, "bare > stubble > long brightness on {ordered} of {faces}");
}

fn grey_white_hair_pixels(img: &RgbImage, mask: &Mask) -> usize {
    (0..mask.height())
        .flat_map(|y| (0..mask.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = img.get_pixel(x as u32, y as u32).0;
            let (max, min) = (*p.iter().max().unwrap(), *p.iter().min().unwrap());
            mask.get(x, y) == HAIR && max as i32 - min as i32 <= 24 && min >= 130
        })
        .count()
}

#[test]
fn older_faces_have_more_grey_white_hair() {
    let (mut more, mut faces, mut young_total, mut old_total) = (0, 0, 0, 0);
    for i in 0..30 {
        let (mut attrs, idx) = man(i + 200, 22, Beard::NONE);
        attrs.gender = if i % 2 == 0 { Gender::Male } else { Gender::Female };
        if matches!(attrs.hair_style, HairStyle::Bald) {
            attrs.hair_style = HairStyle::Short;
        }
        attrs.hat = None::<Hat>;
        let (mask, young) = render_with(&attrs, idx);
        attrs.age_years = 72;
        let (mask_old, old) = render_with(&attrs, idx);
        assert_eq!(mask, mask_old, "age must not change the mask");
        let (y, o) = (grey_white_hair_pixels(&young, &mask), grey_white_hair_pixels(&old, &mask));
        let hair = mask.class_histogram()[HAIR as usize];
        if hair < 100 {
            continue;
        }
        faces += 1;
        more += (o > y + hair / 4) as usize;
        young_total += y;
        old_total += o;
    }
    assert!(faces >= 20, "only {faces} faces with hair");
    assert!(more >= faces * 9 / 10, "greyer at 72 on {more} of {faces} faces");
    assert!(old_total > 5 * young_total.max(1), "grey-white hair pixels: {young_total} at 22, {old_total} at 72");
}

#[test]
fn any_resolution_works() {
    for size in [16, 100, 256] {
        let s = generate(8, 3, size);
        assert_eq!((s.mask.width(), s.mask.height()), (size, size));
        assert_eq!((s.image.width() as usize, s.image.height() as usize), (size, size));
    }
    // The same face at two sizes: masks agree where the small one is sampled.
    let (a, b) = (generate(8, 4, 64), generate(8, 4, 128));
    let agree = a.mask.classes().iter().zip(b.mask.resize_nearest(64, 64).classes()).filter(|(p, q)| p == q).count();
    assert!(agree as f32 > 0.9 * 64.0 * 64.0, "only {agree} of 4096 pixels agree across sizes");
}

#[test]
fn layouts_range_from_portraits_to_tight_crops_with_turned_faces() {
    let masks: Vec<Mask> = (0..300).map(|i| generate(4, i, 64).mask).collect();
    let mut widths: Vec<f32> = masks.iter().filter_map(LayoutStats::of).map(|s| s.face_width).collect();
    widths.sort_by(f32::total_cmp);
    let at = |q: f32| widths[((widths.len() - 1) as f32 * q) as usize];
    assert!(at(0.05) < 0.36 && at(0.95) > 0.7, "face widths 5%-95%: {:.2}-{:.2} of the frame", at(0.05), at(0.95));
    // A strong turn hides the far ear: exactly one ear shows.
    let one_ear = masks.iter().filter(|m| (m.class_histogram()[L_EAR as usize] > 0) != (m.class_histogram()[R_EAR as usize] > 0)).count();
    assert!(one_ear >= 15, "only {one_ear} of 300 masks show exactly one ear");
}
