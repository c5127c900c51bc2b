//! How a set of masks lays faces out, to set the synthetic world beside real
//! and painted masks: the face box (skin and the features on it) as a share
//! of the frame and its centre, and each class's share of the area.

use super::mask::{class, Mask, NUM_CLASSES};

/// The layout figures of one mask.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutStats {
    /// Width and height of the face box over the frame's.
    pub face_width: f32,
    pub face_height: f32,
    /// Centre of the face box in frame fractions.
    pub centre: (f32, f32),
    /// Each class's share of the pixels.
    pub shares: [f32; NUM_CLASSES],
}

/// The classes whose pixels make up the face box.
const FACE: [u8; 9] =
    [class::SKIN, class::NOSE, class::L_EYE, class::R_EYE, class::L_BROW, class::R_BROW, class::MOUTH, class::U_LIP, class::L_LIP];

impl LayoutStats {
    /// `None` for a mask without a face.
    pub fn of(mask: &Mask) -> Option<Self> {
        let (w, h) = (mask.width(), mask.height());
        let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
        for y in 0..h {
            for x in 0..w {
                if FACE.contains(&mask.get(x, y)) {
                    (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
                }
            }
        }
        if x0 == usize::MAX {
            return None;
        }
        let total = (w * h) as f32;
        let histogram = mask.class_histogram();
        Some(Self {
            face_width: (x1 - x0 + 1) as f32 / w as f32,
            face_height: (y1 - y0 + 1) as f32 / h as f32,
            centre: ((x0 + x1 + 1) as f32 / (2 * w) as f32, (y0 + y1 + 1) as f32 / (2 * h) as f32),
            shares: histogram.map(|n| n as f32 / total),
        })
    }
}

/// Column groups of the report: a heading and the classes it adds up.
const SHARE_COLUMNS: [(&str, &[u8]); 9] = [
    ("background", &[class::BACKGROUND]),
    ("skin", &[class::SKIN]),
    ("nose", &[class::NOSE]),
    ("eyes", &[class::L_EYE, class::R_EYE]),
    ("brows", &[class::L_BROW, class::R_BROW]),
    ("mouth + lips", &[class::MOUTH, class::U_LIP, class::L_LIP]),
    ("hair", &[class::HAIR]),
    ("neck", &[class::NECK]),
    ("cloth", &[class::CLOTH]),
];

/// A Markdown table with one row per named set: for a single mask its
/// figures, for more the median with the 5th to 95th percentile range.
pub fn markdown_table(sets: &[(String, Vec<LayoutStats>)]) -> String {
    let mut out = String::from("| set | masks | face width | face height | centre x | centre y |");
    for (name, _) in SHARE_COLUMNS {
        out += &format!(" {name} % |");
    }
    out += &format!("\n|---|---|{}\n", "---|".repeat(4 + SHARE_COLUMNS.len()));
    for (name, stats) in sets {
        let column = |f: &dyn Fn(&LayoutStats) -> f32, percent: bool| spread(stats.iter().map(f).collect(), percent);
        out += &format!(
            "| {name} | {} | {} | {} | {} | {} |",
            stats.len(),
            column(&|s| s.face_width, false),
            column(&|s| s.face_height, false),
            column(&|s| s.centre.0, false),
            column(&|s| s.centre.1, false)
        );
        for (_, classes) in SHARE_COLUMNS {
            out += &format!(" {} |", column(&|s| classes.iter().map(|&c| s.shares[c as usize]).sum(), true));
        }
        out.push('\n');
    }
    out
}

/// "0.54" for one value, "0.41 (0.31-0.78)" (median and 5th-95th percentiles) for more.
fn spread(mut values: Vec<f32>, percent: bool) -> String {
    let scale = if percent { 100.0 } else { 1.0 };
    let show = |v: f32| if percent { format!("{:.1}", v * scale) } else { format!("{v:.2}") };
    values.sort_by(f32::total_cmp);
    match values.len() {
        0 => "–".into(),
        1 => show(values[0]),
        n => {
            let at = |q: f32| values[((n - 1) as f32 * q).round() as usize];
            format!("{} ({}–{})", show(at(0.5)), show(at(0.05)), show(at(0.95)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_box_and_shares_of_a_drawn_mask() {
        let mut mask = Mask::filled(100, 100, class::BACKGROUND);
        for y in 20..80 {
            for x in 30..70 {
                mask.set(x, y, class::SKIN);
            }
        }
        for x in 40..60 {
            mask.set(x, 90, class::HAIR);
        }
        let s = LayoutStats::of(&mask).unwrap();
        assert_eq!((s.face_width, s.face_height), (0.4, 0.6));
        assert_eq!(s.centre, (0.5, 0.5));
        assert_eq!(s.shares[class::SKIN as usize], 0.24);
        assert_eq!(s.shares[class::HAIR as usize], 0.002);
        assert!(LayoutStats::of(&Mask::filled(8, 8, class::HAIR)).is_none());
        let table = markdown_table(&[("one".into(), vec![s.clone()]), ("two".into(), vec![s.clone(), s])]);
        assert!(table.contains("| one | 1 | 0.40 | 0.60 | 0.50 | 0.50 |"), "{table}");
        assert!(table.contains("| two | 2 | 0.40 (0.40–0.40) |"), "{table}");
    }
}
