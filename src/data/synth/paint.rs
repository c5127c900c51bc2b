//! The photo: a colour for every pixel from its mask class, its place in the
//! face frame and the face's look (skin, hair, light, age, beard, clothes).
//!
//! Age and beard live here only: the layout (and so the mask) never sees them,
//! which is what leaves them to the caption.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::attributes::{Attributes, BeardKind, EyeColor, Eyeglasses, Gender, HairColor, HairStyle, Hat};
use super::layout::{GlassPart, HatPart, Layout, MouthPart};
use crate::data::mask::class;
use super::math::{cell, desaturate, ellipse, floor_i32, hash2, hsv, luma, mix, rgb8, scale, smoothstep, unit, value_noise, Rgb};

/// Skin tones from lightest to darkest; `Attributes::skin_tone` interpolates them.
const SKIN_TONES: [Rgb; 7] = [
    rgb8(255, 226, 204),
    rgb8(242, 200, 172),
    rgb8(226, 180, 146),
    rgb8(200, 150, 112),
    rgb8(164, 112, 80),
    rgb8(122, 82, 58),
    rgb8(86, 58, 42),
];

fn hair_rgb(c: HairColor) -> Rgb {
    match c {
        HairColor::Black => rgb8(30, 26, 24),
        HairColor::DarkBrown => rgb8(62, 42, 30),
        HairColor::Brown => rgb8(104, 70, 44),
        HairColor::LightBrown => rgb8(152, 114, 76),
        HairColor::Blond => rgb8(216, 186, 124),
        HairColor::Auburn => rgb8(132, 58, 34),
        HairColor::Ginger => rgb8(186, 94, 44),
    }
}

fn iris_rgb(c: EyeColor) -> Rgb {
    match c {
        EyeColor::Brown => rgb8(92, 56, 30),
        EyeColor::Hazel => rgb8(128, 98, 48),
        EyeColor::Green => rgb8(78, 124, 78),
        EyeColor::Blue => rgb8(74, 118, 172),
        EyeColor::Grey => rgb8(118, 128, 138),
    }
}

const LIPSTICKS: [Rgb; 4] = [rgb8(176, 32, 52), rgb8(214, 104, 124), rgb8(136, 38, 72), rgb8(192, 124, 112)];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pattern {
    Plain,
    Stripes,
    Dots,
}

#[derive(Debug, Clone)]
struct Background {
    c0: Rgb,
    c1: Rgb,
    /// Gradient direction (unit vector) or, when `radial`, a vignette.
    dir: (f32, f32),
    radial: bool,
    noise_amp: f32,
    noise_freq: f32,
    /// Soft out-of-focus lights: (u, v, radius, colour); radius 0 = none.
    blobs: [(f32, f32, f32, Rgb); 4],
}

/// Everything about a face's colours, light and surface detail.
#[derive(Debug, Clone)]
pub struct Look {
    seed: u32,
    skin: Rgb,
    hair: Rgb,
    /// Fraction of grey strands in hair, brows and beard.
    grey: f32,
    white: Rgb,
    iris: Rgb,
    lip: Rgb,
    blush: f32,
    eyeliner: f32,
    wrinkles: f32,
    age_spots: f32,
    /// Direction towards the light, and the share of light that is ambient.
    light: [f32; 3],
    ambient: f32,
    cloth: Rgb,
    cloth2: Rgb,
    pattern: Pattern,
    hat: Rgb,
    hat2: Rgb,
    frame: Rgb,
    metal: Rgb,
    pearls: bool,
    background: Background,
    beard: BeardKind,
    /// Beard opacity and how far below the chin it hangs (face units).
    beard_alpha: f32,
    beard_drop: f32,
    stubble: bool,
    curly: bool,
    buzz: bool,
}

impl Look {
    /// Draws the look. Every draw is made whatever the attributes, so two faces
    /// that differ only in age or beard share all other colours.
    pub fn sample(attrs: &Attributes, rng: &mut ChaCha8Rng) -> Look {
        let mut u = || rng.random::<f32>();
        let male = attrs.gender == Gender::Male;
        let age = attrs.age_years as f32;

        let tone = attrs.skin_tone.clamp(0.0, 1.0) * (SKIN_TONES.len() - 1) as f32;
        let i = (tone as usize).min(SKIN_TONES.len() - 2);
        let mut skin = mix(SKIN_TONES[i], SKIN_TONES[i + 1], tone - i as f32);
        let undertone = u() - 0.5;
        skin = [skin[0] * (1.0 + 0.04 * undertone), skin[1], skin[2] * (1.0 - 0.05 * undertone)];
        if male {
            skin = [skin[0] * 0.98, skin[1] * 0.95, skin[2] * 0.93];
        }
        let wrinkles = smoothstep(30.0, 75.0, age) * (0.75 + 0.5 * u());
        // Skin pales, yellows and loses colour with age.
        skin = desaturate(skin, 0.2 * wrinkles);
        skin = mix(skin, [skin[0] * 1.02, skin[1] * 1.0, skin[2] * 0.94], wrinkles);

        let hair = scale(hair_rgb(attrs.hair_color), 0.85 + 0.3 * u());
        let onset = 32.0 + 16.0 * u();
        let grey = smoothstep(onset, onset + 26.0, age);
        let white = scale([0.93, 0.92, 0.9], 0.72 + 0.28 * smoothstep(55.0, 78.0, age));

        let lipstick = LIPSTICKS[(u() * LIPSTICKS.len() as f32) as usize % LIPSTICKS.len()];
        let natural_lip = mix(scale(skin, 0.78), rgb8(190, 80, 84), if male { 0.3 } else { 0.42 });
        let lip = if attrs.makeup { mix(natural_lip, lipstick, 0.75) } else { natural_lip };
        let blush_draw = u();
        let blush = if male { 0.05 } else if attrs.makeup { 0.2 + 0.15 * blush_draw } else { 0.1 };
        let eyeliner = if attrs.makeup { 0.6 + 0.4 * u() } else { 0.15 * u() };

        let (lx, ly) = (u() - 0.5, -0.1 - 0.35 * u());
        let light = [lx, ly, (1.0 - lx * lx - ly * ly).sqrt()];
        let ambient = 0.42 + 0.15 * u();

        let cloth = hsv(u(), 0.15 + 0.6 * u(), 0.2 + 0.7 * u());
        let cloth2 = hsv(u(), 0.2 + 0.5 * u(), 0.5 + 0.5 * u());
        let pattern = match (u() * 10.0) as u32 {
            0..=5 => Pattern::Plain,
            6..=8 => Pattern::Stripes,
            _ => Pattern::Dots,
        };
        let hat = hsv(u(), 0.2 + 0.6 * u(), 0.25 + 0.6 * u());
        let hat2 = hsv(u(), 0.3 + 0.5 * u(), 0.3 + 0.6 * u());
        let frame = match (u() * 4.0) as u32 {
            0 => rgb8(20, 20, 22),
            1 => rgb8(96, 58, 32),
            2 => rgb8(170, 170, 176),
            _ => hsv(u(), 0.5, 0.45),
        };
        let metal = if u() < 0.5 { rgb8(222, 184, 82) } else { rgb8(208, 210, 218) };
        let pearls = u() < 0.3;

        let bg_hue = u();
        let c0 = hsv(bg_hue, 0.05 + 0.45 * u(), 0.35 + 0.6 * u());
        let c1 = hsv(bg_hue + 0.15 * (u() - 0.5), 0.05 + 0.45 * u(), 0.2 + 0.7 * u());
        let angle = u() * std::f32::consts::TAU;
        let radial = u() < 0.3;
        let noise_amp = if u() < 0.5 { 0.03 } else { 0.06 + 0.14 * u() };
        let noise_freq = 2.0 + 8.0 * u();
        let bokeh = u() < 0.3;
        let mut blobs = [(0.0, 0.0, 0.0, [0.0; 3]); 4];
        for b in &mut blobs {
            let (bu, bv, r) = (u(), u() * 0.6, 0.04 + 0.1 * u());
            *b = (bu, bv, if bokeh { r } else { 0.0 }, hsv(u(), 0.3, 1.0));
        }
        let background = Background { c0, c1, dir: (angle.cos(), angle.sin()), radial, noise_amp, noise_freq, blobs };

        let length = attrs.beard.length_mm;
        let beard = if male { attrs.beard.kind } else { BeardKind::None };
        let beard_alpha = match beard {
            BeardKind::None => 0.0,
            BeardKind::Full if length < 4.0 => 0.3 + 0.08 * length,
            _ => 0.72 + 0.28 * smoothstep(4.0, 30.0, length),
        };
        let beard_drop = if beard == BeardKind::Full { 1.2 * smoothstep(12.0, 110.0, length) } else { 0.0 };
        let seed = rng.random::<u32>();
        Look {
            seed,
            skin,
            hair,
            grey,
            white,
            iris: iris_rgb(attrs.eye_color),
            lip,
            blush,
            eyeliner,
            wrinkles,
            age_spots: smoothstep(55.0, 78.0, age),
            light,
            ambient,
            cloth,
            cloth2,
            pattern,
            hat,
            hat2,
            frame,
            metal,
            pearls,
            background,
            beard,
            beard_alpha,
            beard_drop,
            stubble: beard == BeardKind::Full && length < 4.0,
            curly: attrs.hair_style == HairStyle::Curly,
            buzz: attrs.hair_style == HairStyle::Buzz,
        }
    }

    /// Diffuse light on a surface with normal (nx, ny, nz).
    #[inline]
    fn lit(&self, nx: f32, ny: f32, nz: f32) -> f32 {
        let d = (nx * self.light[0] + ny * self.light[1] + nz * self.light[2]).max(0.0);
        self.ambient + (1.0 - self.ambient) * d
    }

    /// Light on a sphere-like surface at normalised offsets (nx, ny) from its centre.
    #[inline]
    fn lit_ball(&self, nx: f32, ny: f32) -> f32 {
        let nz = (1.0 - nx * nx - ny * ny).max(0.03).sqrt();
        self.lit(nx, ny, nz)
    }

    /// The colour of image point (u, v) (fractions) at face point (x, y) of class `c`.
    pub fn colour(&self, l: &Layout, c: u8, x: f32, y: f32, u: f32, v: f32) -> Rgb {
        let xf = l.feature_x(x);
        match c {
            class::SKIN => {
                let base = self.skin_at(l, x, y, xf, true);
                self.beard_over(l, base, x, y, xf, true)
            }
            class::NOSE => self.nose(l, x, y, xf),
            class::EYEGLASS => self.glasses(l, x, y, xf),
            class::L_EYE | class::R_EYE => {
                let eye = self.eye(l, xf, y);
                match l.glasses.as_ref().and_then(|g| g.part(xf, y, l.face.half_width(y))) {
                    Some(GlassPart::Lens { u, v }) => self.lens_tint(eye, u, v),
                    _ => eye,
                }
            }
            class::L_BROW | class::R_BROW => self.brow(l, x, y, xf),
            class::L_EAR | class::R_EAR => self.ear(l, x, y),
            class::MOUTH | class::U_LIP | class::L_LIP => self.mouth(l, x, y, xf),
            class::HAIR => self.hair_at(l, x, y),
            class::HAT => self.hat_at(l, x, y),
            class::EARRING => {
                let s = 0.7 + 0.5 * (0.5 + 0.5 * ((x + y) * 40.0).sin());
                scale(self.metal, s)
            }
            class::NECKLACE => {
                let bead = 0.5 + 0.5 * (x * 70.0).sin();
                let base = if self.pearls { rgb8(236, 230, 218) } else { self.metal };
                scale(base, 0.65 + 0.45 * bead)
            }
            class::NECK => {
                let base = self.neck(l, x, y);
                self.beard_over(l, base, x, y, xf, false)
            }
            class::CLOTH => {
                let base = self.cloth_at(l, x, y);
                self.beard_over(l, base, x, y, xf, false)
            }
            _ => self.background_at(u, v),
        }
    }

    fn skin_at(&self, l: &Layout, x: f32, y: f32, xf: f32, face_detail: bool) -> Rgb {
        let nx = x / (l.face.half_w * 1.15);
        let ny = (y - 0.15) / 1.9;
        let mut s = self.lit_ball(nx, ny);
        let mut c = self.skin;
        if face_detail {
            let ex = xf.abs() - l.eyes.x;
            let socket = (-ellipse(ex, y - l.eyes.y + 0.04, 0.3, 0.16)).exp();
            s *= 1.0 - 0.13 * socket;
            // The nose casts a soft shadow on the side away from the light.
            let xn = x - l.nose_shift;
            let nose_hw = l.nose.half_width(y);
            if nose_hw > 0.0 && xn * self.light[0] < 0.0 {
                s *= 1.0 - 0.12 * smoothstep(nose_hw + 0.15, nose_hw, xn.abs());
            }
            let under_lip = y - l.mouth.extent(xf).3;
            if under_lip > 0.0 && xf.abs() < l.mouth.half_w {
                s *= 1.0 - 0.1 * smoothstep(0.12, 0.0, under_lip);
            }
            let blush = self.blush * (-ellipse(xf.abs() - 0.55, y - 0.32, 0.28, 0.2)).exp();
            c = mix(c, rgb8(222, 96, 96), blush);
            s *= 1.0 - 0.3 * self.wrinkle(l, xf, y);
        }
        s *= 0.96 + 0.08 * value_noise(self.seed, x * 22.0, y * 22.0);
        if self.age_spots > 0.0 && value_noise(self.seed ^ 0x55, x * 8.0, y * 8.0) > 1.0 - 0.06 * self.age_spots {
            c = mix(c, rgb8(140, 96, 62), 0.35);
        }
        scale(c, s)
    }

    /// How dark the age lines are at a face point (0..1).
    fn wrinkle(&self, l: &Layout, xf: f32, y: f32) -> f32 {
        let w = self.wrinkles;
        let ax = xf.abs();
        let mut d = 0.0;
        if w > 0.0 {
            let b = l.brows.y;
            if y < b - 0.1 && y > b - 0.6 && ax < 0.65 {
                let phase = (y - b) / 0.14 + 0.2 * (xf * 5.0).sin();
                let line = (std::f32::consts::TAU * phase).cos();
                d += w * smoothstep(0.8, 0.98, line) * smoothstep(0.65, 0.3, ax);
            }
            let corner = l.eyes.x + l.eyes.half_w;
            let dx = ax - corner;
            if dx > 0.02 && dx < 0.24 {
                let slope = (y - l.eyes.y) / (dx + 0.03);
                if slope.abs() < 1.0 {
                    let line = (std::f32::consts::TAU * slope / 0.55).cos();
                    d += 0.8 * w * smoothstep(0.75, 0.97, line) * smoothstep(0.24, 0.08, dx);
                }
            }
            let t = (ax - l.eyes.x) / l.eyes.half_w;
            if t.abs() < 0.8 {
                let bag = l.eyes.y + l.eyes.lo_h + 0.07 + 0.04 * t * t;
                d += 0.6 * w * (-((y - bag) / 0.025).powi(2)).exp();
            }
        }
        let fold = w + if l.mouth.curve > 0.05 { 0.35 } else { 0.0 };
        if fold > 0.0 {
            let (y0, y1) = (l.nose.bottom - 0.06, l.mouth.y + 0.08);
            let t = (y - y0) / (y1 - y0);
            if (0.0..1.0).contains(&t) {
                let x0 = l.nose.tip_hw + 0.04;
                let x1 = l.mouth.half_w + 0.06;
                let xc = x0 + (x1 - x0) * t + 0.07 * (std::f32::consts::PI * t).sin();
                let fade = smoothstep(0.0, 0.2, t) * smoothstep(1.0, 0.7, t);
                d += fold.min(1.0) * fade * (-((ax - xc) / 0.03).powi(2)).exp();
            }
        }
        d.min(1.0)
    }

    /// Beard opacity at a point of `class` skin (or, below the chin, neck and cloth).
    fn beard_alpha(&self, l: &Layout, x: f32, y: f32, xf: f32, on_face: bool) -> f32 {
        let ax = xf.abs();
        let m = &l.mouth;
        let jitter = 0.06 * (value_noise(self.seed ^ 0xbe, x * 7.0, y * 7.0) - 0.5);
        let above_lip = smoothstep(l.nose.bottom - 0.01, l.nose.bottom + 0.05, y + jitter);
        let mustache = above_lip * smoothstep(m.half_w + 0.14, m.half_w + 0.02, ax) * (y < m.y + 0.05) as u8 as f32;
        if !on_face {
            // Below the chin: only a long beard hangs there.
            let chin = l.face.chin;
            let hw = l.face.half_w * 0.8 * (1.0 - ((y - chin) / self.beard_drop.max(1e-3)).clamp(0.0, 1.0)).sqrt();
            return if y > chin - 0.2 && y < chin + self.beard_drop && ax < hw + jitter { 1.0 } else { 0.0 };
        }
        match self.beard {
            BeardKind::None => 0.0,
            BeardKind::Mustache => {
                let droop = smoothstep(m.half_w + 0.1, m.half_w - 0.02, ax) * smoothstep(m.half_w - 0.12, m.half_w, ax);
                let down = (y < m.y + 0.18) as u8 as f32 * droop * (y >= m.y - 0.05) as u8 as f32;
                mustache.max(down)
            }
            BeardKind::Goatee => {
                let around = smoothstep(m.half_w + 0.12, m.half_w, ax) * (y > m.y - 0.1) as u8 as f32;
                let chin = smoothstep(0.42, 0.3, ax + 0.1 * (y - m.y)) * (y > m.y) as u8 as f32;
                mustache.max(around.min(1.0).max(chin))
            }
            BeardKind::Full => {
                let face_hw = l.face.half_width(y).max(0.3);
                let cheek = if ax < 0.38 {
                    l.nose.bottom
                } else {
                    0.5 - 0.62 * smoothstep(0.38, face_hw, ax) * smoothstep(-0.2, 0.4, -y + 0.45)
                };
                smoothstep(cheek - 0.02, cheek + 0.1, y + jitter).max(mustache)
            }
        }
    }

    fn beard_over(&self, l: &Layout, base: Rgb, x: f32, y: f32, xf: f32, on_face: bool) -> Rgb {
        if self.beard == BeardKind::None || (!on_face && self.beard_drop <= 0.0) {
            return base;
        }
        let a = self.beard_alpha(l, x, y, xf, on_face) * self.beard_alpha;
        if a <= 0.0 {
            return base;
        }
        let grey = (self.grey * 1.25).min(1.0);
        let (tex, strand) = if self.stubble {
            let dot = cell(self.seed ^ 0x5b, x * 90.0, y * 90.0);
            (0.35 + 0.65 * (dot < 0.45) as u8 as f32, 0.45)
        } else {
            let s = cell(self.seed ^ 0x5c, x * 60.0 + 3.0 * value_noise(self.seed, x * 3.0, y * 3.0), y * 18.0);
            (0.75 + 0.25 * value_noise(self.seed ^ 0x5d, x * 30.0, y * 12.0), s)
        };
        let is_grey = (unit(hash2(self.seed ^ 0x5e, (x * 60.0) as i32, (y * 18.0) as i32)) < grey) as u8 as f32;
        let colour = mix(scale(self.hair, 0.9), self.white, is_grey);
        let s = self.lit_ball(x / (l.face.half_w * 1.15), (y - 0.15) / 1.9);
        let beard = scale(colour, s * (0.55 + 0.7 * strand));
        mix(base, beard, a * tex)
    }

    fn nose(&self, l: &Layout, x: f32, y: f32, xf: f32) -> Rgb {
        let mut c = self.skin_at(l, x, y, xf, false);
        let xn = x - l.nose_shift;
        let hw = l.nose.half_width(y).max(1e-3);
        let side = (xn / hw).clamp(-1.0, 1.0);
        let mut s = 1.0 + 0.14 * side * self.light[0].signum() * smoothstep(0.3, 1.0, side.abs());
        let tip = l.nose.bottom - 0.14;
        s += 0.12 * (-ellipse(xn, y - tip, 0.08, 0.08)).exp() + 0.06 * (-ellipse(xn, y - tip + 0.25, 0.03, 0.2)).exp();
        if ellipse(xn.abs() - 0.085, y - (l.nose.bottom - 0.04), 0.055, 0.03) < 1.0 {
            s *= 0.45;
        }
        c = scale(c, s);
        c
    }

    fn eye(&self, l: &Layout, xf: f32, y: f32) -> Rgb {
        let e = &l.eyes;
        let Some((t, v)) = e.local(xf, y) else { return self.skin };
        let side = xf.signum();
        let shade = 0.8 + 0.2 * self.lit_ball(0.0, -0.1);
        let mut c = scale(rgb8(236, 232, 226), shade * (1.0 - 0.3 * t.powi(4)) * if v < -0.4 { 0.85 } else { 1.0 });
        let r = 0.43 * e.half_w;
        let (ix, iy) = (side * e.x + e.gaze_x, e.y + 0.01);
        let d = ((xf - ix).powi(2) + (y - iy).powi(2)).sqrt() / r;
        if d < 1.0 {
            let streak = 0.85 + 0.3 * cell(self.seed ^ 0x1e, (xf - ix).atan2(y - iy) * 6.0, 0.0);
            c = scale(self.iris, (0.75 + 0.45 * (1.0 - d)) * streak * if d > 0.82 { 0.6 } else { 1.0 });
            if d < 0.42 {
                c = rgb8(14, 12, 12);
            }
        }
        let (hx, hy) = (ix - 0.35 * r * self.light[0].signum(), iy - 0.35 * r);
        if ellipse(xf - hx, y - hy, 0.3 * r, 0.3 * r) < 1.0 {
            c = rgb8(250, 250, 250);
        }
        let lash = smoothstep(-0.55 + 0.3 * self.eyeliner, -1.0, v);
        mix(c, rgb8(24, 18, 18), lash.max(smoothstep(0.8, 1.0, v) * 0.4))
    }

    fn brow(&self, l: &Layout, x: f32, y: f32, xf: f32) -> Rgb {
        let skin = self.skin_at(l, x, y, xf, true);
        let Some((t, v)) = l.brows.local(xf, y) else { return skin };
        let strand = cell(self.seed ^ 0xb0, xf * 50.0 + y * 20.0, y * 50.0);
        let grey = (unit(hash2(self.seed ^ 0xb1, (xf * 50.0) as i32, (y * 50.0) as i32)) < self.grey * 0.6) as u8 as f32;
        let base = mix(scale(self.hair, if luma(self.hair) > 0.5 { 0.55 } else { 0.8 }), self.white, grey);
        let a = 0.9 * (1.0 - v.abs().powi(4)) * (0.75 + 0.25 * strand) * smoothstep(1.0, 0.7, t.abs());
        mix(skin, scale(base, 0.7 + 0.3 * self.ambient), a)
    }

    fn ear(&self, l: &Layout, x: f32, y: f32) -> Rgb {
        let i = (x > 0.0) as usize;
        let (cx, rx, ry) = (l.ears.cx[i], l.ears.rx[i], l.ears.ry);
        let s = self.lit_ball(x / (l.face.half_w * 1.3), (y - 0.15) / 1.9) * 0.93;
        let inner = smoothstep(1.0, 0.3, ellipse(x - cx - 0.02 * x.signum(), y - l.ears.y + 0.03, rx * 0.55, ry * 0.6));
        scale(mix(self.skin, rgb8(210, 120, 110), 0.1), s * (1.0 - 0.3 * inner))
    }

    fn mouth(&self, l: &Layout, x: f32, y: f32, xf: f32) -> Rgb {
        let m = &l.mouth;
        let t = (xf / m.half_w).clamp(-1.0, 1.0);
        let s = self.lit_ball(x / (l.face.half_w * 1.15), (y - 0.15) / 1.9) * (1.0 - 0.35 * t.powi(6));
        match m.part(xf, y) {
            Some(MouthPart::UpperLip) => {
                let (line, half_open, _, _) = m.extent(xf);
                let edge = smoothstep(0.03, 0.0, line - half_open - y);
                scale(self.lip, s * 0.85 * (1.0 - 0.35 * edge))
            }
            Some(MouthPart::LowerLip) => {
                let (line, half_open, _, _) = m.extent(xf);
                let mid = line + half_open + 0.45 * m.lower_h;
                let gloss = 0.2 * (-ellipse(xf, y - mid, 0.15, 0.03)).exp();
                [self.lip[0] * s + gloss, self.lip[1] * s + gloss, self.lip[2] * s + gloss]
            }
            Some(MouthPart::Inside { v }) => {
                let dark = rgb8(70, 18, 24);
                let upper_teeth = if m.curve > 0.05 { 0.6 } else { 0.35 };
                if v < upper_teeth && t.abs() < 0.8 {
                    let gap = ((xf + 1.0) / 0.075).fract();
                    let g = if gap < 0.12 { 0.7 } else { 1.0 };
                    scale(rgb8(238, 232, 218), s.max(0.75) * g * (1.0 - 0.45 * t * t) * (0.85 + 0.15 * (v / upper_teeth)))
                } else {
                    scale(dark, 0.6 + 0.4 * s)
                }
            }
            None => self.skin_at(l, x, y, xf, true),
        }
    }

    fn lens_tint(&self, c: Rgb, u: f32, v: f32) -> Rgb {
        let glint = smoothstep(0.25, 0.0, (u + v + 0.6).abs()) * 0.35;
        mix(c, rgb8(225, 235, 245), 0.06 + glint)
    }

    fn glasses(&self, l: &Layout, x: f32, y: f32, xf: f32) -> Rgb {
        let Some(g) = &l.glasses else { return self.skin };
        match g.part(xf, y, l.face.half_width(y)) {
            Some(GlassPart::Lens { u, v }) if g.kind == Eyeglasses::Sunglasses => {
                let glint = smoothstep(0.3, 0.0, (u + v + 0.5).abs()) * 0.3;
                mix(scale(rgb8(28, 30, 36), 1.0 - 0.3 * (v + 1.0) * 0.5), rgb8(200, 210, 225), glint)
            }
            Some(GlassPart::Lens { u, v }) => self.lens_tint(self.skin_at(l, x, y, xf, true), u, v),
            _ => {
                let hi = 1.0 + 0.5 * smoothstep(0.5, 1.0, cell(self.seed ^ 0x6a, x * 40.0, y * 40.0)) * (self.frame[0] > 0.5) as u8 as f32;
                scale(self.frame, hi * self.lit_ball(0.0, 0.0))
            }
        }
    }

    fn hair_at(&self, l: &Layout, x: f32, y: f32) -> Rgb {
        let h = &l.hair;
        let (brightness, grey_pick) = if self.curly {
            let n = value_noise(self.seed ^ 0xc1, x * 9.0, y * 9.0);
            let curl = (0.5 + 0.5 * (x * 30.0 + 6.0 * n).sin()) * (0.5 + 0.5 * (y * 30.0 + 6.0 * n).cos());
            (0.7 + 0.25 * n + 0.3 * curl, cell(self.seed ^ 0xc2, x * 22.0, y * 22.0))
        } else {
            let strand = x / (y + 2.8) * 70.0 + 1.5 * value_noise(self.seed ^ 0xc3, x * 2.0, y * 2.0);
            let id = floor_i32(strand);
            let along = value_noise(self.seed ^ 0xc4, strand * 0.3, y * 4.0);
            (0.72 + 0.38 * unit(hash2(self.seed, id, 7)) + 0.2 * (along - 0.5), unit(hash2(self.seed ^ 0xc5, id, 11)))
        };
        let colour = mix(self.hair, self.white, (grey_pick < self.grey) as u8 as f32);
        let ny = ((y - h.cap_cy) / h.cap_ry).clamp(-1.0, 0.6);
        let nx = (x / h.cap_rx).clamp(-1.0, 1.0);
        let s = self.lit_ball(nx * 0.9, ny * 0.9);
        let sheen = 0.16 * (-((ny + 0.45) / 0.15).powi(2)).exp() * (1.0 - luma(colour));
        let mut c = scale(colour, s * brightness);
        c = [c[0] + sheen, c[1] + sheen, c[2] + sheen];
        if self.buzz {
            c = mix(scale(self.skin, s), c, 0.65 + 0.3 * cell(self.seed ^ 0xc6, x * 60.0, y * 60.0));
        }
        c
    }

    fn hat_at(&self, l: &Layout, x: f32, y: f32) -> Rgb {
        let Some(hat) = &l.hat else { return self.hat };
        let part = hat.part(x, y);
        let s = self.lit_ball((x / hat.crown_rx.max(1.0)).clamp(-1.0, 1.0) * 0.9, ((y - hat.crown_cy) / hat.crown_ry).clamp(-1.0, 1.0) * 0.8);
        let c = match (hat.kind, part) {
            (Hat::Beanie, _) => {
                let rib = 0.85 + 0.15 * (x * 45.0).sin();
                let cuff = y > hat.band_y - 0.28;
                scale(if cuff { scale(self.hat, 0.85) } else { self.hat }, rib * if cuff { 0.9 + 0.1 * (y * 60.0).sin() } else { 1.0 })
            }
            (Hat::Cap, Some(HatPart::Brim)) => scale(self.hat, 0.7),
            (Hat::Cap, _) => {
                let seam = smoothstep(0.03, 0.0, x.abs()) * 0.3;
                scale(self.hat, 1.0 - seam)
            }
            (Hat::Brimmed, Some(HatPart::Brim)) => scale(self.hat, 0.85),
            (Hat::Brimmed, _) => {
                if y > hat.band_y - 0.2 {
                    self.hat2
                } else {
                    self.hat
                }
            }
        };
        scale(c, s * (0.93 + 0.1 * value_noise(self.seed ^ 0x4a, x * 20.0, y * 20.0)))
    }

    fn neck(&self, l: &Layout, x: f32, y: f32) -> Rgb {
        let s = self.lit_ball((x / (l.body.neck_hw + 0.4)).clamp(-1.0, 1.0), 0.1) * 0.86;
        let shadow = 1.0 - 0.4 * smoothstep(l.face.chin + 0.45, l.face.chin - 0.1, y);
        scale(self.skin, s * shadow * (0.97 + 0.06 * value_noise(self.seed, x * 20.0, y * 20.0)))
    }

    fn cloth_at(&self, l: &Layout, x: f32, y: f32) -> Rgb {
        let base = match self.pattern {
            Pattern::Plain => self.cloth,
            Pattern::Stripes => {
                if floor_i32(y * 3.2) % 2 == 0 {
                    self.cloth
                } else {
                    self.cloth2
                }
            }
            Pattern::Dots => {
                let (fx, fy) = ((x * 4.0).fract() - 0.5, (y * 4.0).fract() - 0.5);
                if fx * fx + fy * fy < 0.04 {
                    self.cloth2
                } else {
                    self.cloth
                }
            }
        };
        let folds = 0.82 + 0.3 * value_noise(self.seed ^ 0xf0, x * 1.8, y * 3.5);
        let s = self.lit_ball((x / 3.0).clamp(-1.0, 1.0), -0.3) * folds;
        let collar = 1.0 - 0.25 * smoothstep(l.body.shoulder_y + 0.2, l.body.shoulder_y - 0.1, y) * (x.abs() < 1.0) as u8 as f32;
        scale(base, s * collar)
    }

    fn background_at(&self, u: f32, v: f32) -> Rgb {
        let b = &self.background;
        let t = if b.radial {
            (((u - 0.5).powi(2) + (v - 0.45).powi(2)).sqrt() * 1.6).min(1.0)
        } else {
            (0.5 + (u - 0.5) * b.dir.0 + (v - 0.5) * b.dir.1).clamp(0.0, 1.0)
        };
        let mut c = mix(b.c0, b.c1, t);
        let n = b.noise_amp * (value_noise(self.seed ^ 0xba, u * b.noise_freq, v * b.noise_freq) - 0.5)
            + 0.4 * b.noise_amp * (value_noise(self.seed ^ 0xbb, u * b.noise_freq * 4.0, v * b.noise_freq * 4.0) - 0.5);
        c = [c[0] + n, c[1] + n, c[2] + n];
        for &(bu, bv, r, colour) in &b.blobs {
            if r > 0.0 {
                let d = ((u - bu).powi(2) + (v - bv).powi(2)).sqrt();
                c = mix(c, colour, 0.35 * smoothstep(r, r * 0.75, d));
            }
        }
        c
    }
}
