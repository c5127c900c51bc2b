//! Editing a description one attribute at a time, as the studio's chips do:
//! the phrase that says the attribute is rewritten and the rest of the text is
//! kept; where nothing says it, a sentence saying it is appended.
//!
//! The phrases recognised are every wording [`caption`](super::caption::caption)
//! uses (so a description read from a photo edits cleanly); free typing falls
//! back to swapping the words that carry the attribute.

use super::attributes::{BeardLevel, Decade, Gender};
use super::caption::{
    age_phrases, beard_phrases, beard_sentences, capitalise, decade_of_word, person, CaptionChoice, Person, BOY, DECADE_NUMBERS, GIRL,
    MAN, PERSON, WOMAN,
};

/// One chip: an attribute and the value it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptionPart {
    Gender(Gender),
    Decade(Decade),
    Beard(BeardLevel),
}

/// `text` changed to say `part`, everything else kept.
pub fn with_part(text: &str, part: CaptionPart) -> String {
    let said = CaptionChoice::read(text);
    match part {
        CaptionPart::Gender(gender) if said.gender != Some(gender) => with_gender(text, said, gender),
        CaptionPart::Decade(decade) if said.decade != Some(decade) => with_decade(text, said, decade),
        CaptionPart::Beard(level) if said.beard != Some(level) => with_beard(text, said, level),
        _ => text.to_string(),
    }
}

fn with_gender(text: &str, said: CaptionChoice, gender: Gender) -> String {
    let swapped = replace_words(text, |w| swap_gender(w, gender));
    if said.gender.is_some() {
        return swapped;
    }
    // Nothing gendered: "This person ... their" takes the gender.
    let p = person(gender, said.decade.unwrap_or(Decade::Twenties));
    let personal = replace_words(text, |w| match w {
        "person" => Some(p.nouns[0].into()),
        "their" => Some(p.possessive.into()),
        _ => None,
    });
    if personal != text {
        return personal;
    }
    append(text, &format!("This is a {}.", p.nouns[0]))
}

/// The word of `gender` for a word of the other gender.
fn swap_gender(word: &str, gender: Gender) -> Option<String> {
    const PAIRS: [(&str, &str); 10] = [
        ("man", "woman"),
        ("men", "women"),
        ("boy", "girl"),
        ("gentleman", "lady"),
        ("he", "she"),
        ("his", "her"),
        ("himself", "herself"),
        ("male", "female"),
        ("guy", "woman"),
        ("him", "her"),
    ];
    let other = match gender {
        Gender::Male => PAIRS.iter().find(|(_, female)| *female == word).map(|(male, _)| *male),
        Gender::Female => PAIRS.iter().find(|(male, _)| *male == word).map(|(_, female)| *female),
    };
    other.or((gender == Gender::Male && word == "hers").then_some("his")).map(str::to_string)
}

fn with_decade(text: &str, said: CaptionChoice, decade: Decade) -> String {
    let p = speaker(said.gender, Some(decade));
    let phrase = age_phrases(p, decade.years().0).swap_remove(0);
    let people = [&MAN, &BOY, &WOMAN, &GIRL, &PERSON];
    let candidates: Vec<String> = people.iter().flat_map(|p| (13..=79).flat_map(|age| age_phrases(p, age))).collect();
    let edited = replace_phrase(text, &candidates, |_| phrase.clone())
        .or_else(|| Some(replace_words(text, |w| decade_word(w, decade))).filter(|t| t != text))
        .unwrap_or_else(|| append(text, &format!("{} {phrase}.", subject(said.gender, p))));
    let was_teen = said.decade == Some(Decade::Teens);
    if said.gender.is_none() || was_teen == (decade == Decade::Teens) {
        return edited;
    }
    // A boy in his thirties reads oddly and a "teenage boy" still says teens: the noun follows the age.
    let edited = if was_teen { edited.replace("teenage ", "").replace("Teenage ", "") } else { edited };
    replace_words(&edited, |w| grown_noun(w, decade == Decade::Teens))
}

/// The noun for a teen (`teen`) or a grown-up of the same gender.
fn grown_noun(word: &str, teen: bool) -> Option<String> {
    let noun = match (word, teen) {
        ("man" | "gentleman" | "guy", true) => "boy",
        ("woman" | "lady", true) => "girl",
        ("boy", false) => "man",
        ("girl", false) => "woman",
        _ => return None,
    };
    Some(noun.into())
}

/// A word that names an age decade, said of `decade` in the same form.
fn decade_word(word: &str, decade: Decade) -> Option<String> {
    let old = decade_of_word(word)?;
    if let Ok(years) = word.parse::<u8>() {
        let (first, last) = decade.years();
        return Some((first - first % 10 + years % 10).clamp(first, last).to_string());
    }
    if word.ends_with('s') {
        return Some(decade.word().into());
    }
    // "thirty" of "thirty-something"; the singular teen words have no such form.
    (old != Decade::Teens && decade != Decade::Teens).then(|| DECADE_NUMBERS[decade as usize].into())
}

fn with_beard(text: &str, said: CaptionChoice, level: BeardLevel) -> String {
    let p = speaker(said.gender, said.decade);
    let verb = beard_phrases(p, level).swap_remove(0);
    let sentence = format!("{} {verb}.", subject(said.gender, p));
    let people = [&MAN, &BOY, &WOMAN, &GIRL, &PERSON];
    let mut candidates = Vec::new();
    for p in people {
        for level in BeardLevel::ALL {
            let verbs = beard_phrases(p, level);
            // "A man in his thirties with a goatee": the verb phrase without its verb.
            candidates.extend(verbs.iter().filter_map(|v| with_form(v)));
            candidates.extend(verbs);
            candidates.extend(beard_sentences(p, level));
        }
    }
    replace_phrase(text, &candidates, |found| {
        if found.ends_with('.') {
            sentence.clone()
        } else if found.starts_with("with ") {
            with_form(&verb).unwrap_or_else(|| format!("with {verb}"))
        } else {
            verb.clone()
        }
    })
    .unwrap_or_else(|| append(text, &sentence))
}

fn with_form(verb: &str) -> Option<String> {
    verb.strip_prefix("has ").or_else(|| verb.strip_prefix("wears ")).map(|rest| format!("with {rest}"))
}

/// Who the description speaks of, worded for `decade`.
fn speaker(gender: Option<Gender>, decade: Option<Decade>) -> &'static Person {
    gender.map_or(&PERSON, |g| person(g, decade.unwrap_or(Decade::Twenties)))
}

/// The subject of an appended sentence: "He", "She", or "This person" (whose "they" would need "are").
fn subject(gender: Option<Gender>, p: &Person) -> String {
    if gender.is_some() {
        capitalise(p.pronoun)
    } else {
        p.subjects[0].to_string()
    }
}

/// `text` with `sentence` after it.
fn append(text: &str, sentence: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() {
        return sentence.to_string();
    }
    let stop = if text.ends_with(['.', '!', '?']) { "" } else { "." };
    format!("{text}{stop} {sentence}")
}

/// Replaces the longest of `candidates` found in `text` (whole words, any
/// case) with what `replacement` makes of it (in lower case), capitalised
/// where the found phrase was; `None` when no candidate occurs.
fn replace_phrase(text: &str, candidates: &[String], replacement: impl Fn(&str) -> String) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let mut candidates: Vec<String> = candidates.iter().map(|c| c.to_ascii_lowercase()).collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.len()));
    candidates.dedup();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    for candidate in &candidates {
        for (start, _) in lower.match_indices(candidate.as_str()) {
            let end = start + candidate.len();
            if is_word(lower[..start].chars().next_back()) || (!candidate.ends_with('.') && is_word(lower[end..].chars().next())) {
                continue;
            }
            let new = replacement(candidate);
            let new = if text[start..].starts_with(|c: char| c.is_uppercase()) { capitalise(&new) } else { new };
            return Some(format!("{}{new}{}", &text[..start], &text[end..]));
        }
    }
    None
}

/// `text` with every word `f` has a replacement for (given in lower case)
/// replaced, keeping a capital first letter.
fn replace_words(text: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphanumeric()) {
        out.push_str(&rest[..start]);
        let end = rest[start..].find(|c: char| !c.is_ascii_alphanumeric()).map_or(rest.len(), |n| start + n);
        let word = &rest[start..end];
        match f(&word.to_ascii_lowercase()) {
            Some(new) if word.starts_with(|c: char| c.is_uppercase()) => out.push_str(&capitalise(&new)),
            Some(new) => out.push_str(&new),
            None => out.push_str(word),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::attributes::sample_attributes;
    use super::super::caption::caption;
    use super::*;

    #[test]
    fn a_chip_rewrites_its_phrase_and_keeps_the_rest() {
        let text = "This man is in his thirties and has beard of medium length. He smiles.";
        assert_eq!(with_part(text, CaptionPart::Gender(Gender::Female)), "This woman is in her thirties and has beard of medium length. She smiles.");
        assert_eq!(with_part(text, CaptionPart::Decade(Decade::Sixties)), "This man is in his sixties and has beard of medium length. He smiles.");
        assert_eq!(with_part(text, CaptionPart::Beard(BeardLevel::Goatee)), "This man is in his thirties and has a goatee. He smiles.");
        assert_eq!(with_part(text, CaptionPart::Decade(Decade::Teens)), "This boy is a teen and has beard of medium length. He smiles.");
        assert_eq!(with_part("He is about 34 years old.", CaptionPart::Decade(Decade::Fifties)), "He is in his fifties.");
        assert_eq!(with_part("A man in his thirties with a goatee.", CaptionPart::Beard(BeardLevel::Long)), "A man in his thirties with a long beard.");
        assert_eq!(with_part("He is a teen. The face is covered with stubble.", CaptionPart::Beard(BeardLevel::Long)), "He is a teen. He has a long beard.");
        // What nothing says is appended; what is already said is left alone.
        assert_eq!(with_part("Red hair, smiling", CaptionPart::Gender(Gender::Female)), "Red hair, smiling. This is a woman.");
        assert_eq!(with_part("This person has a goatee.", CaptionPart::Gender(Gender::Male)), "This man has a goatee.");
        assert_eq!(with_part("She has red hair.", CaptionPart::Decade(Decade::Forties)), "She has red hair. She is in her forties.");
        assert_eq!(with_part("", CaptionPart::Beard(BeardLevel::Stubble)), "This person has stubble.");
        assert_eq!(with_part(text, CaptionPart::Gender(Gender::Male)), text);
    }

    #[test]
    fn every_chip_on_every_generated_caption_says_its_value_and_keeps_the_others() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let parts: Vec<CaptionPart> = Gender::ALL
            .into_iter()
            .map(CaptionPart::Gender)
            .chain(Decade::ALL.into_iter().map(CaptionPart::Decade))
            .chain(BeardLevel::ALL.into_iter().map(CaptionPart::Beard))
            .collect();
        for _ in 0..300 {
            let text = caption(&sample_attributes(&mut rng), &mut rng);
            let before = CaptionChoice::read(&text);
            for &part in &parts {
                let edited = with_part(&text, part);
                let after = CaptionChoice::read(&edited);
                let expected = match part {
                    CaptionPart::Gender(g) => CaptionChoice { gender: Some(g), ..before },
                    CaptionPart::Decade(d) => CaptionChoice { decade: Some(d), ..before },
                    CaptionPart::Beard(b) => CaptionChoice { beard: Some(b), ..before },
                };
                assert_eq!(after, expected, "{text:?} with {part:?} became {edited:?}");
            }
        }
    }
}
