//! The 19-class palette: a swatch per class with its name and hotkey.

use egui::{Key, RichText, Sense, Vec2};

use super::canvas::class_color;
use crate::data::mask::{CLASSES, NUM_CLASSES};

/// Hotkey of each class, by index: digits for 0-9, mnemonic letters for the rest
/// (Mouth, Upper lip, Lower lip, Hair, haT, eaRring, necKlace, Neck, Cloth).
pub const CLASS_KEYS: [Key; NUM_CLASSES] = [
    Key::Num0,
    Key::Num1,
    Key::Num2,
    Key::Num3,
    Key::Num4,
    Key::Num5,
    Key::Num6,
    Key::Num7,
    Key::Num8,
    Key::Num9,
    Key::M,
    Key::U,
    Key::L,
    Key::H,
    Key::T,
    Key::R,
    Key::K,
    Key::N,
    Key::C,
];

/// The class whose hotkey `key` is, if any.
pub fn class_of_key(key: Key) -> Option<u8> {
    CLASS_KEYS.iter().position(|&k| k == key).map(|c| c as u8)
}

/// The class list; clicking a swatch selects it. Present classes show their
/// share; those in `lost` (gone at the model's mask size) are marked.
pub fn palette_ui(ui: &mut egui::Ui, selected: &mut u8, counts: &[usize; NUM_CLASSES], lost: &[u8]) {
    let total: usize = counts.iter().sum::<usize>().max(1);
    // Tight rows, so that all 19 fit beside the canvas in a 640-point-high window.
    ui.spacing_mut().item_spacing.y = 1.0;
    for (index, class) in CLASSES.iter().enumerate() {
        let is_selected = *selected as usize == index;
        let key = CLASS_KEYS[index].name();
        let share = 100.0 * counts[index] as f32 / total as f32;
        let response = ui
            .horizontal(|ui| {
                let (rect, _) = ui.allocate_exact_size(Vec2::new(18.0, 14.0), Sense::hover());
                ui.painter().rect_filled(rect, 2.0, class_color(index as u8));
                if is_selected {
                    ui.painter().rect_stroke(rect.expand(1.5), 2.0, (2.0, ui.visuals().strong_text_color()), egui::StrokeKind::Outside);
                }
                let name = RichText::new(format!("{key}  {}", class.name));
                let label = ui.selectable_label(is_selected, if is_selected { name.strong() } else { name });
                if lost.contains(&(index as u8)) {
                    ui.colored_label(ui.visuals().warn_fg_color, format!("{share:.1}% lost")).on_hover_text("vanishes at the model's mask size");
                } else if counts[index] > 0 {
                    ui.weak(format!("{share:.1}%"));
                }
                label
            })
            .inner;
        if response.clicked() {
            *selected = index as u8;
        }
    }
}
