//! The attribute vocabulary of the synthetic face world and how attributes are sampled.
//!
//! Two kinds of attribute: those a caption speaks of (gender, age, beard), which
//! no mask class shows, and layout attributes (hair style, eyeglasses, hat,
//! expression, ...), which the mask shows. Training and evaluation use the same
//! vocabulary, so it is the ground truth written to `attributes.json`.

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    /// In the order of the discriminants (the judges' class ids).
    pub const ALL: [Gender; 2] = [Gender::Male, Gender::Female];
}

/// Age in decades, as CelebA-Dialog words it (teens to seventies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decade {
    Teens,
    Twenties,
    Thirties,
    Forties,
    Fifties,
    Sixties,
    Seventies,
}

impl Decade {
    pub const ALL: [Decade; 7] = [
        Decade::Teens,
        Decade::Twenties,
        Decade::Thirties,
        Decade::Forties,
        Decade::Fifties,
        Decade::Sixties,
        Decade::Seventies,
    ];

    /// The decade an age falls in; ages outside 10..=79 are clamped to the nearest decade.
    pub fn of_age(years: u32) -> Decade {
        Self::ALL[(years / 10).clamp(1, 7) as usize - 1]
    }

    /// The youngest and oldest age the synthetic world uses for this decade.
    pub fn years(self) -> (u8, u8) {
        match self {
            Decade::Teens => (13, 19),
            d => {
                let start = 10 * (d as u8 + 1);
                (start, start + 9)
            }
        }
    }

    /// "teens", "twenties", ...
    pub fn word(self) -> &'static str {
        ["teens", "twenties", "thirties", "forties", "fifties", "sixties", "seventies"][self as usize]
    }
}

/// Where facial hair grows. Stubble is a full beard a few millimetres long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeardKind {
    None,
    /// Cheeks, jaw, chin and upper lip.
    Full,
    /// Upper lip only.
    Mustache,
    /// Chin and around the mouth.
    Goatee,
}

/// The beard levels a caption distinguishes (CelebA-Dialog's beard scale plus two shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeardLevel {
    None,
    Stubble,
    Short,
    Medium,
    Long,
    Mustache,
    Goatee,
}

impl BeardLevel {
    /// In the order of the discriminants (the judges' class ids).
    pub const ALL: [BeardLevel; 7] = [
        BeardLevel::None,
        BeardLevel::Stubble,
        BeardLevel::Short,
        BeardLevel::Medium,
        BeardLevel::Long,
        BeardLevel::Mustache,
        BeardLevel::Goatee,
    ];
}

/// Facial hair: where it grows and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Beard {
    pub kind: BeardKind,
    /// Hair length in millimetres (0 for no beard).
    pub length_mm: f32,
}

impl Beard {
    pub const NONE: Beard = Beard { kind: BeardKind::None, length_mm: 0.0 };

    /// Full beards shorter than this are stubble, longer up to the next bound short, ...
    pub const STUBBLE_MAX_MM: f32 = 4.0;
    pub const SHORT_MAX_MM: f32 = 15.0;
    pub const MEDIUM_MAX_MM: f32 = 40.0;

    pub fn level(&self) -> BeardLevel {
        match self.kind {
            BeardKind::None => BeardLevel::None,
            BeardKind::Mustache => BeardLevel::Mustache,
            BeardKind::Goatee => BeardLevel::Goatee,
            BeardKind::Full if self.length_mm < Self::STUBBLE_MAX_MM => BeardLevel::Stubble,
            BeardKind::Full if self.length_mm < Self::SHORT_MAX_MM => BeardLevel::Short,
            BeardKind::Full if self.length_mm < Self::MEDIUM_MAX_MM => BeardLevel::Medium,
            BeardKind::Full => BeardLevel::Long,
        }
    }

    /// A beard of the given level with a length typical for it.
    pub fn of_level(level: BeardLevel) -> Beard {
        let (kind, length_mm) = match level {
            BeardLevel::None => (BeardKind::None, 0.0),
            BeardLevel::Stubble => (BeardKind::Full, 2.0),
            BeardLevel::Short => (BeardKind::Full, 9.0),
            BeardLevel::Medium => (BeardKind::Full, 25.0),
            BeardLevel::Long => (BeardKind::Full, 80.0),
            BeardLevel::Mustache => (BeardKind::Mustache, 12.0),
            BeardLevel::Goatee => (BeardKind::Goatee, 15.0),
        };
        Beard { kind, length_mm }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HairStyle {
    Bald,
    /// Cropped close to the scalp.
    Buzz,
    Short,
    /// Chin length.
    Bob,
    /// Past the shoulders.
    Long,
    /// A big curly silhouette.
    Curly,
    /// Pulled back, with a bun on top.
    Bun,
}

/// How the hair meets the forehead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fringe {
    /// The forehead shows up to the hairline.
    None,
    /// Straight bangs down to the brows.
    Bangs,
    /// Swept to one side, covering part of the forehead.
    SideSwept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HairColor {
    Black,
    DarkBrown,
    Brown,
    LightBrown,
    Blond,
    Auburn,
    Ginger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaceShape {
    Oval,
    Round,
    Square,
    Heart,
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EyeColor {
    Brown,
    Hazel,
    Green,
    Blue,
    Grey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eyeglasses {
    Round,
    Rectangular,
    /// Dark lenses: the eyes do not show (and are not in the mask).
    Sunglasses,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expression {
    Neutral,
    /// Smiling with closed lips.
    Smile,
    /// Smiling with the mouth open and the teeth showing.
    Laugh,
    /// Mouth slightly open, not smiling.
    Open,
}

impl Expression {
    pub fn smiling(self) -> bool {
        matches!(self, Expression::Smile | Expression::Laugh)
    }

    /// Whether the mouth interior (mask class "mouth") shows.
    pub fn mouth_open(self) -> bool {
        matches!(self, Expression::Laugh | Expression::Open)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hat {
    Beanie,
    Cap,
    Brimmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Earrings {
    Studs,
    Hoops,
    Drops,
}

/// Everything that decides one synthetic face, before pose and colour details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    pub gender: Gender,
    pub age_years: u8,
    pub beard: Beard,
    /// 0 = the lightest skin tone, 1 = the darkest.
    pub skin_tone: f32,
    pub hair_color: HairColor,
    pub hair_style: HairStyle,
    pub fringe: Fringe,
    /// Hair falls over the ears, hiding them (and any earrings).
    pub ears_covered: bool,
    pub face_shape: FaceShape,
    pub eye_color: EyeColor,
    pub eyeglasses: Option<Eyeglasses>,
    pub expression: Expression,
    pub hat: Option<Hat>,
    pub earrings: Option<Earrings>,
    pub necklace: bool,
    /// Lipstick, eyeliner and blush.
    pub makeup: bool,
}

impl Attributes {
    pub fn age_decade(&self) -> Decade {
        Decade::of_age(self.age_years as u32)
    }

    /// Whether the hair leaves room for ears to show at all.
    pub fn ears_visible(&self) -> bool {
        !self.ears_covered
    }
}

/// Picks an index with probability proportional to `weights`.
pub(crate) fn pick_weighted<R: Rng + ?Sized>(rng: &mut R, weights: &[f32]) -> usize {
    let total: f32 = weights.iter().sum();
    let mut r = rng.random::<f32>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    weights.len() - 1
}

fn pick<R: Rng + ?Sized, T: Copy>(rng: &mut R, options: &[(T, f32)]) -> T {
    let weights: Vec<f32> = options.iter().map(|o| o.1).collect();
    options[pick_weighted(rng, &weights)].0
}

/// Draws one face's attributes. Decades are equally likely; the rest follows
/// loose real-world tendencies (beards only on men, baldness growing with age, ...).
pub fn sample_attributes<R: Rng + ?Sized>(rng: &mut R) -> Attributes {
    let gender = if rng.random_bool(0.5) { Gender::Male } else { Gender::Female };
    let male = gender == Gender::Male;
    let decade = Decade::ALL[rng.random_range(0..Decade::ALL.len())];
    let (lo, hi) = decade.years();
    let age_years = rng.random_range(lo..=hi);
    let age = age_years as f32;
    let skin_tone: f32 = rng.random();

    let dark = skin_tone > 0.6;
    let hair_color = pick(
        rng,
        &[
            (HairColor::Black, if dark { 0.6 } else { 0.22 }),
            (HairColor::DarkBrown, 0.25),
            (HairColor::Brown, if dark { 0.08 } else { 0.18 }),
            (HairColor::LightBrown, if dark { 0.02 } else { 0.12 }),
            (HairColor::Blond, if dark { 0.01 } else { 0.13 }),
            (HairColor::Auburn, if dark { 0.01 } else { 0.06 }),
            (HairColor::Ginger, if dark { 0.0 } else { 0.04 }),
        ],
    );

    let bald = if male { 0.02 + 0.35 * ((age - 25.0) / 50.0).clamp(0.0, 1.0) } else { 0.0 };
    let hair_style = if male {
        pick(
            rng,
            &[
                (HairStyle::Bald, bald),
                (HairStyle::Buzz, 0.15),
                (HairStyle::Short, 0.4),
                (HairStyle::Curly, 0.1),
                (HairStyle::Bob, 0.04),
                (HairStyle::Long, 0.06),
                (HairStyle::Bun, 0.02),
            ],
        )
    } else {
        pick(
            rng,
            &[
                (HairStyle::Short, 0.1),
                (HairStyle::Bob, 0.2),
                (HairStyle::Long, 0.36),
                (HairStyle::Curly, 0.14),
                (HairStyle::Bun, 0.14),
                (HairStyle::Buzz, 0.01),
            ],
        )
    };
    let fringe = match hair_style {
        HairStyle::Bald | HairStyle::Buzz => Fringe::None,
        _ => pick(
            rng,
            &[
                (Fringe::None, 0.5),
                (Fringe::Bangs, if male { 0.12 } else { 0.28 }),
                (Fringe::SideSwept, 0.28),
            ],
        ),
    };
    let ears_covered = matches!(hair_style, HairStyle::Bob | HairStyle::Long | HairStyle::Curly) && rng.random_bool(0.7);
    let face_shape = pick(
        rng,
        &[
            (FaceShape::Oval, 0.3),
            (FaceShape::Round, if age < 20.0 { 0.3 } else { 0.18 }),
            (FaceShape::Square, if male { 0.28 } else { 0.1 }),
            (FaceShape::Heart, if male { 0.08 } else { 0.2 }),
            (FaceShape::Long, 0.14),
        ],
    );
    let eye_color = pick(
        rng,
        &[
            (EyeColor::Brown, if dark { 0.9 } else { 0.4 }),
            (EyeColor::Hazel, 0.15),
            (EyeColor::Green, if dark { 0.0 } else { 0.12 }),
            (EyeColor::Blue, if dark { 0.0 } else { 0.23 }),
            (EyeColor::Grey, if dark { 0.0 } else { 0.08 }),
        ],
    );
    let glasses_p = (0.1 + 0.004 * age) as f64;
    let eyeglasses = rng.random_bool(glasses_p).then(|| {
        pick(rng, &[(Eyeglasses::Round, 0.35), (Eyeglasses::Rectangular, 0.45), (Eyeglasses::Sunglasses, 0.2)])
    });
    let expression = pick(
        rng,
        &[
            (Expression::Neutral, 0.35),
            (Expression::Smile, 0.3),
            (Expression::Laugh, 0.25),
            (Expression::Open, 0.1),
        ],
    );
    let hat = rng
        .random_bool(0.12)
        .then(|| pick(rng, &[(Hat::Beanie, 0.4), (Hat::Cap, 0.35), (Hat::Brimmed, 0.25)]));
    let earrings = (!ears_covered && rng.random_bool(if male { 0.06 } else { 0.5 }))
        .then(|| pick(rng, &[(Earrings::Studs, 0.4), (Earrings::Hoops, 0.35), (Earrings::Drops, 0.25)]));
    let necklace = rng.random_bool(if male { 0.06 } else { 0.3 });
    let makeup = !male && rng.random_bool(0.6);
    let beard = if male { sample_beard(rng, age) } else { Beard::NONE };

    Attributes {
        gender,
        age_years,
        beard,
        skin_tone,
        hair_color,
        hair_style,
        fringe,
        ears_covered,
        face_shape,
        eye_color,
        eyeglasses,
        expression,
        hat,
        earrings,
        necklace,
        makeup,
    }
}

/// A man's beard: teens mostly shaven, adults across every level.
fn sample_beard<R: Rng + ?Sized>(rng: &mut R, age: f32) -> Beard {
    let teen = age < 20.0;
    let level = pick(
        rng,
        &[
            (BeardLevel::None, if teen { 0.55 } else { 0.3 }),
            (BeardLevel::Stubble, if teen { 0.3 } else { 0.18 }),
            (BeardLevel::Short, if teen { 0.1 } else { 0.15 }),
            (BeardLevel::Medium, if teen { 0.02 } else { 0.13 }),
            (BeardLevel::Long, if teen { 0.0 } else { 0.1 }),
            (BeardLevel::Mustache, if teen { 0.03 } else { 0.07 }),
            (BeardLevel::Goatee, if teen { 0.03 } else { 0.07 }),
        ],
    );
    let (kind, lo, hi) = match level {
        BeardLevel::None => (BeardKind::None, 0.0, 0.0),
        BeardLevel::Stubble => (BeardKind::Full, 0.5, Beard::STUBBLE_MAX_MM),
        BeardLevel::Short => (BeardKind::Full, Beard::STUBBLE_MAX_MM, Beard::SHORT_MAX_MM),
        BeardLevel::Medium => (BeardKind::Full, Beard::SHORT_MAX_MM, Beard::MEDIUM_MAX_MM),
        BeardLevel::Long => (BeardKind::Full, Beard::MEDIUM_MAX_MM, 120.0),
        BeardLevel::Mustache => (BeardKind::Mustache, 3.0, 25.0),
        BeardLevel::Goatee => (BeardKind::Goatee, 4.0, 40.0),
    };
    let length_mm = if hi > lo { rng.random_range(lo..hi) } else { 0.0 };
    Beard { kind, length_mm }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_cover_their_ages() {
        assert_eq!(Decade::of_age(13), Decade::Teens);
        assert_eq!(Decade::of_age(19), Decade::Teens);
        assert_eq!(Decade::of_age(20), Decade::Twenties);
        assert_eq!(Decade::of_age(79), Decade::Seventies);
        for d in Decade::ALL {
            let (lo, hi) = d.years();
            assert_eq!((Decade::of_age(lo as u32), Decade::of_age(hi as u32)), (d, d));
        }
    }

    #[test]
    fn beard_levels_follow_length() {
        let full = |mm| Beard { kind: BeardKind::Full, length_mm: mm }.level();
        assert_eq!(full(1.0), BeardLevel::Stubble);
        assert_eq!(full(8.0), BeardLevel::Short);
        assert_eq!(full(20.0), BeardLevel::Medium);
        assert_eq!(full(60.0), BeardLevel::Long);
        for level in [
            BeardLevel::None,
            BeardLevel::Stubble,
            BeardLevel::Short,
            BeardLevel::Medium,
            BeardLevel::Long,
            BeardLevel::Mustache,
            BeardLevel::Goatee,
        ] {
            assert_eq!(Beard::of_level(level).level(), level);
        }
    }
}
