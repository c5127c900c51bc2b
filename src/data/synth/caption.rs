//! CelebA-Dialog-style captions: gender, age decade and beard, in varied wording,
//! and the parser that reads those three back (used by tests and the evaluation).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::attributes::{Attributes, BeardLevel, Decade, Gender};

/// What a caption says about a face; `None` where it does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionAttributes {
    pub gender: Option<Gender>,
    pub decade: Option<Decade>,
    /// A caption that does not mention facial hair reads as [`BeardLevel::None`].
    pub beard: BeardLevel,
}

impl CaptionAttributes {
    /// What a faithful caption of `attrs` says.
    pub fn of(attrs: &Attributes) -> Self {
        Self { gender: Some(attrs.gender), decade: Some(attrs.age_decade()), beard: attrs.beard.level() }
    }
}

/// A caption chosen part by part (the studio's chips), each part in its plain
/// CelebA-Dialog wording; `None` where the caption says nothing of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionChoice {
    pub gender: Option<Gender>,
    pub decade: Option<Decade>,
    pub beard: Option<BeardLevel>,
}

impl CaptionChoice {
    /// "This man is in his thirties and has beard of medium length.", "This
    /// person has a goatee.", "This is a woman.", or nothing when nothing is chosen.
    pub fn caption(&self) -> String {
        let person = self.gender.map_or(&PERSON, |g| person(g, self.decade.unwrap_or(Decade::Twenties)));
        let subject = person.subjects[0];
        let age = self.decade.map(|d| age_phrases(person, d.years().0).swap_remove(0));
        let beard = self.beard.map(|b| beard_phrases(person, b).swap_remove(0));
        match (age, beard) {
            (Some(age), Some(beard)) => format!("{subject} {age} and {beard}."),
            (Some(part), None) | (None, Some(part)) => format!("{subject} {part}."),
            (None, None) if self.gender.is_some() => format!("This is a {}.", person.nouns[0]),
            (None, None) => String::new(),
        }
    }
}

/// The words a caption uses for one person.
pub(super) struct Person {
    /// "he" / "she"
    pub(super) pronoun: &'static str,
    /// "his" / "her"
    pub(super) possessive: &'static str,
    /// Noun phrases that open a sentence: "This man", "The lady", ...
    pub(super) subjects: &'static [&'static str],
    /// Nouns after "A" or "An old": "man", "woman", ...
    pub(super) nouns: &'static [&'static str],
}

pub(super) const MAN: Person = Person {
    pronoun: "he",
    possessive: "his",
    subjects: &["This man", "The man", "This gentleman", "This guy", "The gentleman"],
    nouns: &["man", "gentleman", "guy"],
};
pub(super) const BOY: Person = Person {
    pronoun: "he",
    possessive: "his",
    subjects: &["This boy", "The boy", "This young man", "This teenage boy"],
    nouns: &["boy", "young man", "teenage boy"],
};
pub(super) const WOMAN: Person = Person {
    pronoun: "she",
    possessive: "her",
    subjects: &["This woman", "The woman", "This lady", "The lady"],
    nouns: &["woman", "lady"],
};
pub(super) const GIRL: Person = Person {
    pronoun: "she",
    possessive: "her",
    subjects: &["This girl", "The girl", "This young woman", "This teenage girl"],
    nouns: &["girl", "young woman", "teenage girl"],
};

/// Who a caption speaks of when it does not say the gender.
pub(super) const PERSON: Person = Person { pronoun: "they", possessive: "their", subjects: &["This person"], nouns: &["person"] };

pub(super) fn person(gender: Gender, decade: Decade) -> &'static Person {
    match (gender, decade) {
        (Gender::Male, Decade::Teens) => &BOY,
        (Gender::Male, _) => &MAN,
        (Gender::Female, Decade::Teens) => &GIRL,
        (Gender::Female, _) => &WOMAN,
    }
}

pub(super) const DECADE_NUMBERS: [&str; 7] = ["teen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy"];

fn choose<'a, R: Rng + ?Sized>(rng: &mut R, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

pub(super) fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The verb phrases about age: "is in his thirties", "is about 34 years old", ...
/// The first is CelebA-Dialog's plain wording.
pub(super) fn age_phrases(p: &Person, age: u8) -> Vec<String> {
    let decade = Decade::of_age(age as u32);
    let d = decade.word();
    let pos = p.possessive;
    let part = match age % 10 {
        _ if decade == Decade::Teens => "late",
        0..=3 => "early",
        4..=6 => "mid-",
        _ => "late",
    };
    if decade == Decade::Teens {
        vec![
            "is a teen".into(),
            "is a teenager".into(),
            format!("is in {pos} teens"),
            format!("is in {pos} teenage years"),
            format!("is about {age} years old"),
            format!("looks like {} is in {pos} teens", p.pronoun),
        ]
    } else {
        let late_or_early = if part == "mid-" { format!("in {pos} mid-{d}") } else { format!("in {pos} {part} {d}") };
        vec![
            format!("is in {pos} {d}"),
            format!("is {late_or_early}"),
            format!("looks like {} is in {pos} {d}", p.pronoun),
            format!("appears to be in {pos} {d}"),
            format!("is about {age} years old"),
            format!("is {}-something", DECADE_NUMBERS[decade as usize]),
            format!("seems to be {late_or_early}"),
            format!("is aged somewhere in {pos} {d}"),
        ]
    }
}

/// The verb phrases about facial hair: "has a long beard", "is clean-shaven", ...
/// The first is CelebA-Dialog's plain wording.
pub(super) fn beard_phrases(p: &Person, level: BeardLevel) -> Vec<String> {
    let pos = p.possessive;
    match level {
        BeardLevel::None if p.pronoun == "she" => {
            vec!["has no beard".into(), "doesn't have any beard".into(), "has no facial hair".into()]
        }
        BeardLevel::None => vec![
            "has no beard".into(),
            "doesn't have any beard".into(),
            "is clean-shaven".into(),
            "has a clean-shaven face".into(),
            "has no facial hair".into(),
        ],
        BeardLevel::Stubble => vec![
            "has stubble".into(),
            "has a light stubble".into(),
            format!("has some stubble on {pos} face"),
            "has a five o'clock shadow".into(),
            "is unshaven, with a bit of stubble".into(),
        ],
        BeardLevel::Short => vec![
            "has a short beard".into(),
            "has short pointed beard".into(),
            "has a neatly trimmed short beard".into(),
            "has beard of short length".into(),
        ],
        BeardLevel::Medium => vec![
            "has beard of medium length".into(),
            "has a medium-length beard".into(),
            "has a full beard of medium length".into(),
            format!("grows {pos} beard to a medium length"),
        ],
        BeardLevel::Long => vec![
            "has a long beard".into(),
            "has a very long beard".into(),
            "has a big, long beard".into(),
            "has a long, thick beard".into(),
        ],
        BeardLevel::Mustache => vec![
            "has a mustache but no beard".into(),
            "has a mustache".into(),
            "wears a moustache".into(),
            "has only a mustache".into(),
        ],
        BeardLevel::Goatee => vec!["has a goatee".into(), "wears a goatee".into(), "has a goatee beard".into()],
    }
}

fn choose_phrase<R: Rng + ?Sized>(rng: &mut R, mut options: Vec<String>) -> String {
    options.swap_remove(rng.random_range(0..options.len()))
}

/// The beard as a sentence of its own without the person as subject, if there is one.
fn beard_sentence<R: Rng + ?Sized>(rng: &mut R, p: &Person, level: BeardLevel) -> Option<String> {
    let mut options = beard_sentences(p, level);
    match options.len() {
        0 | 1 => options.pop(),
        _ => Some(choose_phrase(rng, options)),
    }
}

/// Every wording of [`beard_sentence`]: none for a mustache or goatee.
pub(super) fn beard_sentences(p: &Person, level: BeardLevel) -> Vec<String> {
    let pos = p.possessive;
    match level {
        BeardLevel::Stubble => vec!["The face is covered with stubble.".into(), "There is some stubble on the face.".into()],
        BeardLevel::Short => vec!["The face is covered with short pointed beard.".into(), "The face is covered with a short beard.".into()],
        BeardLevel::Medium => vec!["The face is covered with beard of medium length.".into(), "The beard is of medium length.".into()],
        BeardLevel::Long => ["very long", "long and thick"].iter().map(|length| format!("{} beard is {length}.", capitalise(pos))).collect(),
        BeardLevel::None => vec![format!("There is no beard on {pos} face.")],
        BeardLevel::Mustache | BeardLevel::Goatee => Vec::new(),
    }
}

/// One caption for `attrs`: gender by pronoun or noun, the age decade, and the
/// beard (always for a bearded man, sometimes for others), worded at random.
pub fn caption<R: Rng + ?Sized>(attrs: &Attributes, rng: &mut R) -> String {
    let decade = attrs.age_decade();
    let person = person(attrs.gender, decade);
    let level = attrs.beard.level();
    let mention_beard = level != BeardLevel::None || rng.random_bool(if attrs.gender == Gender::Male { 0.6 } else { 0.2 });
    let age = choose_phrase(rng, age_phrases(person, attrs.age_years));
    let subject = choose(rng, person.subjects);
    let he = capitalise(person.pronoun);
    if !mention_beard {
        return if rng.random_bool(0.5) { format!("{subject} {age}.") } else { format!("{he} {age}.") };
    }
    let beard = choose_phrase(rng, beard_phrases(person, level));
    match rng.random_range(0..7) {
        0 => format!("{subject} {age}. {he} {beard}."),
        1 => format!("{subject} {beard}. {he} {age}."),
        2 => format!("{subject} {age} and {beard}."),
        // The pronoun in the second sentence carries the gender.
        3 => format!("This person {beard}. {he} {age}."),
        4 => match beard.strip_prefix("has ").or_else(|| beard.strip_prefix("wears ")) {
            Some(with) => {
                let noun = choose(rng, person.nouns);
                format!("{} {noun} in {} {} with {with}.", article(noun), person.possessive, decade.word())
            }
            None => format!("{subject} {age}. {he} {beard}."),
        },
        5 => match beard_sentence(rng, person, level) {
            Some(sentence) => format!("{he} {age}. {sentence}"),
            None => format!("{he} {beard}, and {} {age}.", person.pronoun),
        },
        _ => format!("{he} {age}, and {} {beard}.", person.pronoun),
    }
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "An"
    } else {
        "A"
    }
}

/// Lower-cases and splits a caption into words ("clean-shaven" -> "clean", "shaven").
pub(super) fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn decade_of_word(word: &str) -> Option<Decade> {
    let d = match word {
        "teen" | "teens" | "teenager" | "teenage" => Decade::Teens,
        "twenty" | "twenties" => Decade::Twenties,
        "thirty" | "thirties" => Decade::Thirties,
        "forty" | "forties" => Decade::Forties,
        "fifty" | "fifties" => Decade::Fifties,
        "sixty" | "sixties" => Decade::Sixties,
        "seventy" | "seventies" => Decade::Seventies,
        _ => match word.parse::<u32>() {
            Ok(n) if (10..=79).contains(&n) => Decade::of_age(n),
            _ => return None,
        },
    };
    Some(d)
}

fn gender_of_word(word: &str) -> Option<Gender> {
    match word {
        "he" | "his" | "him" | "himself" | "man" | "gentleman" | "guy" | "boy" | "male" => Some(Gender::Male),
        "she" | "her" | "hers" | "herself" | "woman" | "lady" | "girl" | "female" => Some(Gender::Female),
        _ => None,
    }
}

/// Reads gender, age decade and beard level out of a caption in the style
/// [`caption`] writes (and CelebA-Dialog's wording of the same things).
pub fn parse_caption(text: &str) -> CaptionAttributes {
    let said = CaptionChoice::read(text);
    CaptionAttributes { gender: said.gender, decade: said.decade, beard: said.beard.unwrap_or(BeardLevel::None) }
}

impl CaptionChoice {
    /// What `text` says of gender, age decade and beard, each `None` where it
    /// says nothing (the first word that tells wins).
    pub fn read(text: &str) -> Self {
        let words = words(text);
        let gender = words.iter().find_map(|w| gender_of_word(w));
        let decade = words.iter().find_map(|w| decade_of_word(w));
        Self { gender, decade, beard: said_beard(&words) }
    }
}

/// The beard level the words speak of, if they speak of facial hair.
fn said_beard(words: &[String]) -> Option<BeardLevel> {
    let has = |w: &str| words.iter().any(|x| x == w);
    let has_pair = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    let level = if has("goatee") {
        BeardLevel::Goatee
    } else if has("mustache") || has("moustache") {
        BeardLevel::Mustache
    } else if has("stubble") || has_pair("clock", "shadow") || has("unshaven") {
        BeardLevel::Stubble
    } else if has_pair("no", "beard") || has_pair("any", "beard") || has("shaven") || has_pair("no", "facial") {
        BeardLevel::None
    } else if has("beard") && has("long") {
        BeardLevel::Long
    } else if has("beard") && has("medium") {
        BeardLevel::Medium
    } else if has("beard") {
        BeardLevel::Short
    } else {
        return None;
    };
    Some(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_celeba_dialog_examples() {
        let p = parse_caption("This man has beard of medium length. He is in his thirties.");
        assert_eq!(p, CaptionAttributes { gender: Some(Gender::Male), decade: Some(Decade::Thirties), beard: BeardLevel::Medium });
        let p = parse_caption("This woman is in her forties.");
        assert_eq!(p, CaptionAttributes { gender: Some(Gender::Female), decade: Some(Decade::Forties), beard: BeardLevel::None });
        let p = parse_caption("He is a teen. The face is covered with short pointed beard.");
        assert_eq!(p, CaptionAttributes { gender: Some(Gender::Male), decade: Some(Decade::Teens), beard: BeardLevel::Short });
        let p = parse_caption("She is about 57 years old.");
        assert_eq!(p.decade, Some(Decade::Fifties));
        assert_eq!(parse_caption("A guy with a mustache but no beard, sixty-something.").beard, BeardLevel::Mustache);
    }

    #[test]
    fn chosen_captions_say_what_was_chosen() {
        let man = CaptionChoice { gender: Some(Gender::Male), decade: Some(Decade::Thirties), beard: Some(BeardLevel::Medium) };
        assert_eq!(man.caption(), "This man is in his thirties and has beard of medium length.");
        let girl = CaptionChoice { gender: Some(Gender::Female), decade: Some(Decade::Teens), beard: None };
        assert_eq!(girl.caption(), "This girl is a teen.");
        let someone = CaptionChoice { gender: None, decade: None, beard: Some(BeardLevel::Goatee) };
        assert_eq!(someone.caption(), "This person has a goatee.");
        assert_eq!(CaptionChoice { gender: Some(Gender::Female), ..CaptionChoice::default() }.caption(), "This is a woman.");
        assert_eq!(CaptionChoice::default().caption(), "");
        // Every choice reads back as chosen: the chips speak the parser's (and the training captions') vocabulary.
        fn maybe<T: Copy>(all: &[T]) -> Vec<Option<T>> {
            std::iter::once(None).chain(all.iter().copied().map(Some)).collect()
        }
        for gender in maybe(&Gender::ALL) {
            for decade in maybe(&Decade::ALL) {
                for beard in maybe(&BeardLevel::ALL) {
                    let choice = CaptionChoice { gender, decade, beard };
                    let read = parse_caption(&choice.caption());
                    assert_eq!((read.gender, read.decade, read.beard), (gender, decade, beard.unwrap_or(BeardLevel::None)), "{choice:?}");
                }
            }
        }
    }
}
