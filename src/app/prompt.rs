//! The prompt: a text box, chips that show and edit what it says in the
//! synthetic world's vocabulary (gender, age decade, beard: what the models
//! were trained to read), and a token counter against the text encoder's 77 tokens.

use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};

pub use crate::data::synth::CaptionChoice;
use crate::data::synth::{with_part, BeardLevel, CaptionPart, Decade, Gender};
pub use crate::model::tokenizer::MAX_TOKENS;
use crate::model::tokenizer::BertTokenizer;

/// Reads saved chips; chips saved by an older studio (another vocabulary) read
/// as none chosen, so the rest of the saved work still restores.
pub fn chips_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CaptionChoice, D::Error> {
    Ok(CaptionChoice::deserialize(serde_json::Value::deserialize(deserializer)?).unwrap_or_default())
}

fn gender_label(gender: Gender) -> &'static str {
    match gender {
        Gender::Male => "man",
        Gender::Female => "woman",
    }
}

fn beard_label(beard: BeardLevel) -> &'static str {
    match beard {
        BeardLevel::None => "no beard",
        BeardLevel::Stubble => "stubble",
        BeardLevel::Short => "short beard",
        BeardLevel::Medium => "medium beard",
        BeardLevel::Long => "long beard",
        BeardLevel::Mustache => "mustache",
        BeardLevel::Goatee => "goatee",
    }
}

/// Tokens the text encoder needs for `text`, [CLS] and [SEP] included (before
/// truncation to [`MAX_TOKENS`]); `None` if the built-in vocabulary failed to load.
pub fn token_count(text: &str) -> Option<usize> {
    static TOKENIZER: OnceLock<Option<BertTokenizer>> = OnceLock::new();
    let tokenizer = TOKENIZER.get_or_init(|| BertTokenizer::new().ok()).as_ref()?;
    tokenizer.encode(text).ok().map(|tokens| tokens.count)
}

/// The prompt box and its chips. The chips show what the text says (typed,
/// or read from a photo); clicking one rewrites that part of the sentence and
/// keeps the rest. Returns true when the text changed.
pub fn prompt_ui(ui: &mut egui::Ui, text: &mut String) -> bool {
    let said = CaptionChoice::read(text);
    let mut clicked = None;
    ui.horizontal_wrapped(|ui| {
        for gender in Gender::ALL {
            chip(ui, said.gender == Some(gender), CaptionPart::Gender(gender), gender_label(gender), &mut clicked);
        }
        ui.separator();
        for decade in Decade::ALL {
            chip(ui, said.decade == Some(decade), CaptionPart::Decade(decade), decade.word(), &mut clicked);
        }
        ui.separator();
        for beard in BeardLevel::ALL {
            chip(ui, said.beard == Some(beard), CaptionPart::Beard(beard), beard_label(beard), &mut clicked);
        }
    });
    let chip_edit = clicked.map(|part| with_part(text, part)).filter(|edited| edited != text);
    let chips_changed = chip_edit.is_some();
    if let Some(edited) = chip_edit {
        *text = edited;
    }
    let edited = ui
        .add(egui::TextEdit::multiline(text).desired_rows(2).desired_width(f32::INFINITY).hint_text("Describe the face, e.g. This man is in his thirties."))
        .changed();
    match token_count(text) {
        Some(count) if count > MAX_TOKENS => {
            ui.colored_label(ui.visuals().warn_fg_color, format!("{count} / {MAX_TOKENS} tokens: the text encoder ignores everything past token {MAX_TOKENS}"));
        }
        Some(count) => {
            ui.weak(format!("{count} / {MAX_TOKENS} tokens"));
        }
        None => {
            ui.weak("token count unavailable (vocabulary failed to load)");
        }
    }
    chips_changed || edited
}

/// A chip, selected when the text says its value; a click asks for it.
fn chip(ui: &mut egui::Ui, selected: bool, part: CaptionPart, label: &str, clicked: &mut Option<CaptionPart>) {
    let hover = if selected { "the description says this" } else { "rewrite the description to say this" };
    if ui.selectable_label(selected, label).on_hover_text(hover).clicked() {
        *clicked = Some(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_saved_in_another_vocabulary_read_as_none_chosen() {
        #[derive(serde::Deserialize)]
        struct Saved {
            #[serde(deserialize_with = "chips_or_none")]
            chips: CaptionChoice,
        }
        let chosen = CaptionChoice { gender: Some(Gender::Female), decade: Some(Decade::Forties), beard: None };
        let json = format!("{{\"chips\": {}}}", serde_json::to_string(&chosen).unwrap());
        assert_eq!(serde_json::from_str::<Saved>(&json).unwrap().chips, chosen);
        let older = r#"{"chips": {"gender": "Man", "age": 2, "beard": "Medium"}}"#;
        assert_eq!(serde_json::from_str::<Saved>(older).unwrap().chips, CaptionChoice::default());
    }

    #[test]
    fn token_count_includes_cls_and_sep() {
        // "this man is in his thirties." -> this man is in his thirties . = 7 word pieces.
        assert_eq!(token_count("This man is in his thirties."), Some(9));
        assert_eq!(token_count(""), Some(2));
    }
}
