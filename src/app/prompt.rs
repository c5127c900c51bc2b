//! The prompt: a text box, quick chips that write CelebA-Dialog-style
//! sentences (gender, age decade, beard), and a token counter against the
//! text encoder's 77 tokens.

use std::sync::OnceLock;

pub use crate::model::tokenizer::MAX_TOKENS;
use crate::model::tokenizer::BertTokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Gender {
    Man,
    Woman,
}

/// CelebA-Dialog's age levels.
pub const AGE_DECADES: [&str; 7] = ["teen", "twenties", "thirties", "forties", "fifties", "sixties", "seventies"];

/// CelebA-Dialog-style beard descriptions, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Beard {
    None,
    Short,
    Medium,
    Long,
}

impl Beard {
    pub const ALL: [Beard; 4] = [Beard::None, Beard::Short, Beard::Medium, Beard::Long];

    pub fn label(self) -> &'static str {
        match self {
            Beard::None => "no beard",
            Beard::Short => "short beard",
            Beard::Medium => "medium beard",
            Beard::Long => "long beard",
        }
    }
}

/// The chips' current choices; the caption itself stays freely editable.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attributes {
    pub gender: Option<Gender>,
    /// Index into [`AGE_DECADES`].
    pub age: Option<usize>,
    pub beard: Option<Beard>,
}

impl Attributes {
    /// The caption these attributes describe, in the training captions' words,
    /// e.g. "This man has beard of medium length. He is in his thirties."
    pub fn caption(&self) -> String {
        let (subject, pronoun, possessive) = match self.gender {
            Some(Gender::Man) => ("This man", "He", "his"),
            Some(Gender::Woman) => ("This woman", "She", "her"),
            None => ("This person", "They", "their"),
        };
        // "This person" takes "is"; "They" takes "are".
        let (be, has) = if self.gender.is_none() { ("are", "have") } else { ("is", "has") };
        let age = self.age.map(|a| match AGE_DECADES[a] {
            "teen" => "a teen.".to_string(),
            decade => format!("in {possessive} {decade}."),
        });
        let mut sentences = Vec::new();
        match (self.beard, age) {
            (Some(Beard::Medium), age) => {
                sentences.push(format!("{subject} has beard of medium length."));
                sentences.extend(age.map(|a| format!("{pronoun} {be} {a}")));
            }
            (beard, Some(age)) => {
                sentences.push(format!("{subject} is {age}"));
                sentences.extend(beard.map(|b| beard_sentence(b, pronoun, has)));
            }
            (Some(beard), None) => sentences.push(beard_sentence(beard, subject, "has")),
            (None, None) => {}
        }
        sentences.join(" ")
    }
}

fn beard_sentence(beard: Beard, who: &str, has: &str) -> String {
    match beard {
        Beard::None => format!("{who} doesn't have any beard.").replace("They doesn't", "They don't"),
        Beard::Short => "The face is covered with short pointed beard.".into(),
        Beard::Medium => format!("{who} {has} beard of medium length."),
        Beard::Long => format!("{who} {has} a very long beard."),
    }
}

/// Tokens the text encoder needs for `text`, [CLS] and [SEP] included (before
/// truncation to [`MAX_TOKENS`]); `None` if the built-in vocabulary failed to load.
pub fn token_count(text: &str) -> Option<usize> {
    static TOKENIZER: OnceLock<Option<BertTokenizer>> = OnceLock::new();
    let tokenizer = TOKENIZER.get_or_init(|| BertTokenizer::new().ok()).as_ref()?;
    tokenizer.encode(text).ok().map(|tokens| tokens.count)
}

/// The prompt box and its chips. Returns true when the text changed.
pub fn prompt_ui(ui: &mut egui::Ui, text: &mut String, attributes: &mut Attributes) -> bool {
    let mut chips_changed = false;
    ui.horizontal_wrapped(|ui| {
        for (gender, label) in [(Gender::Man, "man"), (Gender::Woman, "woman")] {
            chips_changed |= chip(ui, &mut attributes.gender, gender, label);
        }
        ui.separator();
        for (index, decade) in AGE_DECADES.iter().enumerate() {
            chips_changed |= chip(ui, &mut attributes.age, index, decade);
        }
        ui.separator();
        for beard in Beard::ALL {
            chips_changed |= chip(ui, &mut attributes.beard, beard, beard.label());
        }
    });
    if chips_changed {
        *text = attributes.caption();
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

/// A toggle chip: selecting it again clears the choice.
fn chip<T: PartialEq + Copy>(ui: &mut egui::Ui, current: &mut Option<T>, value: T, label: &str) -> bool {
    let selected = *current == Some(value);
    if ui.selectable_label(selected, label).clicked() {
        *current = if selected { None } else { Some(value) };
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_write_celeba_dialog_sentences() {
        let mut a = Attributes { gender: Some(Gender::Man), age: Some(2), beard: Some(Beard::Medium) };
        assert_eq!(a.caption(), "This man has beard of medium length. He is in his thirties.");
        a = Attributes { gender: Some(Gender::Woman), age: Some(3), beard: None };
        assert_eq!(a.caption(), "This woman is in her forties.");
        a = Attributes { gender: Some(Gender::Man), age: Some(0), beard: Some(Beard::Short) };
        assert_eq!(a.caption(), "This man is a teen. The face is covered with short pointed beard.");
        // Without a gender: "This person is", then "They are" / "They have".
        a = Attributes { gender: None, age: Some(5), beard: Some(Beard::Long) };
        assert_eq!(a.caption(), "This person is in their sixties. They have a very long beard.");
        a = Attributes { gender: None, age: Some(1), beard: Some(Beard::Medium) };
        assert_eq!(a.caption(), "This person has beard of medium length. They are in their twenties.");
        a = Attributes { gender: None, age: None, beard: Some(Beard::None) };
        assert_eq!(a.caption(), "This person doesn't have any beard.");
    }

    #[test]
    fn token_count_includes_cls_and_sep() {
        // "this man is in his thirties." -> this man is in his thirties . = 7 word pieces.
        assert_eq!(token_count("This man is in his thirties."), Some(9));
        assert_eq!(token_count(""), Some(2));
    }
}
