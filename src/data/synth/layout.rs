//! Where every mask class lies: shapes in a face-centred frame and the per-pixel
//! class lookup.
//!
//! The face frame has its origin between the eyes and the mouth, x to the image
//! right (the subject's left), y down, and one unit = the face's half width.
//! Pose (roll, scale, shift) maps it into the image; yaw shifts the features
//! sideways and narrows one ear. Shapes are implicit tests, checked in a fixed
//! depth order, so each pixel costs a handful of comparisons.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::attributes::{Attributes, Earrings, Expression, FaceShape, Fringe, Gender, HairStyle, Hat, Eyeglasses};
use super::math::{ellipse, smoothstep};
use crate::data::mask::class;

/// The subject's left is the image right (x > 0): pick the class for a side.
#[inline]
fn sided(x: f32, left: u8, right: u8) -> u8 {
    if x > 0.0 {
        left
    } else {
        right
    }
}

/// Image placement of the face frame.
#[derive(Debug, Clone)]
pub struct Pose {
    /// Face origin in image fractions.
    pub cx: f32,
    pub cy: f32,
    /// One face unit in image fractions.
    pub unit: f32,
    pub cos: f32,
    pub sin: f32,
}

impl Pose {
    /// Face-frame coordinates of an image point given in image fractions.
    #[inline]
    pub fn to_face(&self, u: f32, v: f32) -> (f32, f32) {
        let (du, dv) = (u - self.cx, v - self.cy);
        ((self.cos * du + self.sin * dv) / self.unit, (-self.sin * du + self.cos * dv) / self.unit)
    }
}

/// Samples of the face's half width from top to chin (a table, because the
/// superellipse needs two `powf` per pixel otherwise).
const OVAL_SAMPLES: usize = 256;

/// The skin oval: a superellipse above y = 0 and a tapered one below.
#[derive(Debug, Clone)]
pub struct FaceOval {
    pub half_w: f32,
    /// Top of the skull (negative).
    pub top: f32,
    pub chin: f32,
    widths: Vec<f32>,
}

impl FaceOval {
    /// `n_up`, `n_lo`: superellipse exponents of forehead and jaw; `taper` narrows the chin.
    pub fn new(half_w: f32, top: f32, chin: f32, n_up: f32, n_lo: f32, taper: f32) -> Self {
        let exact = |y: f32| {
            if y < 0.0 {
                let t = y / top;
                half_w * (1.0 - t.powf(n_up)).max(0.0).powf(1.0 / n_up)
            } else {
                let t = y / chin;
                half_w * (1.0 - t.powf(n_lo)).max(0.0).powf(1.0 / n_lo) * (1.0 - taper * t * t)
            }
        };
        let widths = (0..=OVAL_SAMPLES).map(|i| exact(top + (chin - top) * i as f32 / OVAL_SAMPLES as f32)).collect();
        Self { half_w, top, chin, widths }
    }

    /// Half width of the face at height y; negative outside the face's height.
    #[inline]
    pub fn half_width(&self, y: f32) -> f32 {
        if y <= self.top || y >= self.chin {
            return -1.0;
        }
        let f = (y - self.top) / (self.chin - self.top) * OVAL_SAMPLES as f32;
        let i = (f as usize).min(OVAL_SAMPLES - 1);
        let t = f - i as f32;
        self.widths[i] + (self.widths[i + 1] - self.widths[i]) * t
    }
}

#[derive(Debug, Clone)]
pub struct Eyes {
    /// Distance of each eye centre from the face's centre line.
    pub x: f32,
    pub y: f32,
    pub half_w: f32,
    pub up_h: f32,
    pub lo_h: f32,
    /// Outer corners this much higher per unit of width.
    pub tilt: f32,
    /// Hidden behind sunglasses.
    pub visible: bool,
    /// Iris offset from the eye centre (gaze), in units.
    pub gaze_x: f32,
}

impl Eyes {
    /// Position inside an eye as (t along the eye from centre, -1..1 with 1 at the
    /// outer corner; v across, -1 at the upper lid, 1 at the lower), if inside.
    #[inline]
    pub fn local(&self, xf: f32, y: f32) -> Option<(f32, f32)> {
        let dx = xf.abs() - self.x;
        let t = dx / self.half_w;
        if t.abs() >= 1.0 {
            return None;
        }
        let w = 1.0 - t * t;
        let dy = y - self.y + self.tilt * dx;
        let (up, lo) = (self.up_h * w, self.lo_h * w * (0.6 + 0.4 * w));
        if dy < -up || dy > lo {
            return None;
        }
        Some((t, if dy < 0.0 { dy / up } else { dy / lo }))
    }
}

#[derive(Debug, Clone)]
pub struct Brows {
    pub x: f32,
    pub y: f32,
    pub half_w: f32,
    pub arch: f32,
    pub thick: f32,
}

impl Brows {
    /// Position inside a brow: (t from the inner end -1 to the outer end 1, v across -1..1).
    #[inline]
    pub fn local(&self, xf: f32, y: f32) -> Option<(f32, f32)> {
        let t = (xf.abs() - self.x) / self.half_w;
        if t.abs() >= 1.0 {
            return None;
        }
        let s = (t - 0.25) / 1.25;
        let centre = self.y - self.arch * (1.0 - s * s);
        let half = 0.5 * self.thick * (1.0 - 0.5 * t.max(0.0)) * (1.0 - (t * t * t * t) * 0.6);
        let v = (y - centre) / half;
        (v.abs() < 1.0).then_some((t, v))
    }
}

#[derive(Debug, Clone)]
pub struct Nose {
    pub top: f32,
    pub bottom: f32,
    pub bridge_hw: f32,
    pub tip_hw: f32,
}

impl Nose {
    /// Half width at height y (negative outside).
    #[inline]
    pub fn half_width(&self, y: f32) -> f32 {
        if y <= self.top || y >= self.bottom {
            return -1.0;
        }
        let t = (y - self.top) / (self.bottom - self.top);
        let hw = self.bridge_hw + (self.tip_hw - self.bridge_hw) * t.powi(3);
        let round = 0.12;
        if self.bottom - y < round {
            let r = (self.bottom - y) / round;
            hw * (1.0 - (1.0 - r) * (1.0 - r)).sqrt()
        } else {
            hw
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mouth {
    pub y: f32,
    pub half_w: f32,
    pub upper_h: f32,
    pub lower_h: f32,
    /// How much the corners rise (a smile).
    pub curve: f32,
    /// Height of the opening at the centre (0 when closed).
    pub open_h: f32,
}

/// Which part of the mouth a point is in, with its position across it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MouthPart {
    UpperLip,
    LowerLip,
    /// Inside the open mouth; `v` runs 0 at the top to 1 at the bottom.
    Inside { v: f32 },
}

impl Mouth {
    /// The centre line of the lips at x (y of the lip line).
    #[inline]
    pub fn line(&self, xf: f32) -> f32 {
        let t = xf / self.half_w;
        self.y - self.curve * t * t
    }

    /// At x: the lip line, half the opening, and the top and bottom of the lips.
    #[inline]
    pub fn extent(&self, xf: f32) -> (f32, f32, f32, f32) {
        let t = (xf / self.half_w).clamp(-1.0, 1.0);
        let w = 1.0 - t * t;
        let root = w.sqrt();
        let line = self.line(xf);
        let half_open = 0.5 * self.open_h * root;
        let bow = 1.0 - 0.3 * (-(t / 0.14) * (t / 0.14)).exp();
        let top = line - half_open - self.upper_h * root * bow;
        let bottom = line + half_open + self.lower_h * root * root.sqrt();
        (line, half_open, top, bottom)
    }

    #[inline]
    pub fn part(&self, xf: f32, y: f32) -> Option<MouthPart> {
        if xf.abs() >= self.half_w || (y - self.y).abs() > 0.5 {
            return None;
        }
        let (line, half_open, top, bottom) = self.extent(xf);
        if y < top || y > bottom {
            return None;
        }
        Some(if y < line - half_open {
            MouthPart::UpperLip
        } else if y > line + half_open {
            MouthPart::LowerLip
        } else {
            MouthPart::Inside { v: (y - (line - half_open)) / (2.0 * half_open).max(1e-4) }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Ears {
    pub y: f32,
    pub ry: f32,
    /// Centre x and half width for the image-left (subject's right) and image-right ear.
    pub cx: [f32; 2],
    pub rx: [f32; 2],
    /// Per ear, in the same order: hidden by hair or by the turn of the head.
    pub visible: [bool; 2],
}

impl Ears {
    /// 0 for the image-left ear, 1 for the image-right one, if (x, y) is inside an ear.
    #[inline]
    pub fn side(&self, x: f32, y: f32) -> Option<usize> {
        let i = (x > 0.0) as usize;
        if !self.visible[i] {
            return None;
        }
        (ellipse(x - self.cx[i], y - self.y, self.rx[i], self.ry) < 1.0).then_some(i)
    }

    /// Lowest point of each ear lobe.
    pub fn lobe(&self, i: usize) -> (f32, f32) {
        (self.cx[i] - 0.02 * self.cx[i].signum(), self.y + 0.85 * self.ry)
    }
}

#[derive(Debug, Clone)]
pub struct Hair {
    pub style: HairStyle,
    pub fringe: Fringe,
    pub cap_cy: f32,
    pub cap_rx: f32,
    pub cap_ry: f32,
    /// Hairline height at the centre, its curvature and, for side-swept hair, its side.
    pub hairline: f32,
    pub hairline_k: f32,
    pub sweep_side: f32,
    /// Amplitude and frequency of a wavy silhouette (curls, tufts).
    pub bumps: f32,
    pub bump_freq: f32,
    pub phase: f32,
    /// Lowest point of hair that falls behind the head, and its widening.
    pub length: f32,
    pub spread: f32,
    /// Strands framing the face: width over the cheeks and how low they reach.
    pub frame_w: f32,
    pub frame_bottom: f32,
    pub sideburn_w: f32,
    pub sideburn_bottom: f32,
    /// A bald head keeps a fringe of hair over the ears.
    pub horseshoe: bool,
}

impl Hair {
    fn has_cap(&self) -> bool {
        self.style != HairStyle::Bald
    }

    fn falls(&self) -> bool {
        matches!(self.style, HairStyle::Long | HairStyle::Bob | HairStyle::Curly)
    }

    /// Inside the hair volume around the skull.
    #[inline]
    pub fn in_cap(&self, x: f32, y: f32) -> bool {
        let dy = y - self.cap_cy;
        let e = ellipse(x, dy, self.cap_rx, self.cap_ry);
        if self.bumps == 0.0 || e < (1.0 - self.bumps) * (1.0 - self.bumps) {
            return e < 1.0;
        }
        if e > (1.0 + self.bumps) * (1.0 + self.bumps) {
            return false;
        }
        let angle = (dy / self.cap_ry).atan2(x / self.cap_rx);
        let r = 1.0 + self.bumps * (self.bump_freq * angle + self.phase).sin();
        e < r * r
    }

    /// The height above which hair covers the forehead at x.
    #[inline]
    pub fn hairline_at(&self, x: f32) -> f32 {
        match self.fringe {
            Fringe::None => self.hairline + self.hairline_k * x * x,
            Fringe::Bangs => self.hairline + 0.03 * (x * 23.0 + self.phase).sin() + 0.12 * x * x,
            Fringe::SideSwept => self.hairline + 0.5 * smoothstep(-0.8, 0.9, self.sweep_side * x) + 0.1 * x * x,
        }
    }

    /// Half width of hair falling behind the head at height y.
    #[inline]
    fn fall_half_width(&self, y: f32) -> f32 {
        self.cap_rx + self.spread * smoothstep(self.cap_cy, self.length, y)
    }

    /// Hair in front of the face: over the forehead, sideburns, strands framing the face.
    #[inline]
    pub fn front(&self, x: f32, y: f32, face_hw: f32) -> bool {
        if !self.has_cap() || y < self.cap_cy - self.cap_ry * 1.4 {
            return false;
        }
        let ax = x.abs();
        if y < self.hairline_at(x) && self.in_cap(x, y) {
            return true;
        }
        // Sideburns narrow towards their lower end.
        let sideburn = self.sideburn_w * (0.3 + 0.7 * smoothstep(self.sideburn_bottom, self.sideburn_bottom - 0.4, y));
        if face_hw > 0.0 && ax > face_hw - sideburn && ax < face_hw + 0.02 && y < self.sideburn_bottom && y > self.cap_cy {
            return true;
        }
        self.frame_w > 0.0
            && y < self.frame_bottom - 0.1 * (x * 9.0 + self.phase).sin().abs()
            && y > self.cap_cy
            && ax > face_hw.max(0.0) - self.frame_w
            && ax < self.fall_half_width(y)
    }

    /// Any hair behind the face (the volume, long hair, a bun, a bald head's fringe).
    #[inline]
    pub fn back(&self, x: f32, y: f32) -> bool {
        if self.horseshoe {
            let ax = x.abs();
            return ax > self.cap_rx * 0.72 && y > self.cap_cy - 0.2 && y < 0.05 && ellipse(x, y - self.cap_cy, self.cap_rx, self.cap_ry) < 1.0;
        }
        if !self.has_cap() {
            return false;
        }
        if self.in_cap(x, y) {
            return true;
        }
        if self.style == HairStyle::Bun {
            let by = self.cap_cy - self.cap_ry - 0.12;
            return ellipse(x, y - by, 0.42, 0.34) < 1.0;
        }
        if self.falls() && y > self.cap_cy {
            let hw = self.fall_half_width(y);
            let t = x / hw;
            let end = self.length - 0.35 * t * t + 0.07 * (x * 11.0 + self.phase).sin();
            return t.abs() < 1.0 && y < end;
        }
        false
    }
}

#[derive(Debug, Clone)]
pub struct HatShape {
    pub kind: Hat,
    /// Lower edge of the hat's crown.
    pub band_y: f32,
    pub crown_cy: f32,
    pub crown_rx: f32,
    pub crown_ry: f32,
    /// Visor (cap) or brim (brimmed hat) half width and height.
    pub brim_rx: f32,
    pub brim_ry: f32,
}

/// Which part of a hat a point is on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HatPart {
    Crown,
    Brim,
}

impl HatShape {
    #[inline]
    pub fn part(&self, x: f32, y: f32) -> Option<HatPart> {
        if y < self.band_y && ellipse(x, y - self.crown_cy, self.crown_rx, self.crown_ry) < 1.0 {
            return Some(HatPart::Crown);
        }
        match self.kind {
            Hat::Beanie => None,
            Hat::Cap => (y >= self.band_y - 0.02 && ellipse(x, y - self.band_y, self.brim_rx, self.brim_ry) < 1.0)
                .then_some(HatPart::Brim),
            Hat::Brimmed => (ellipse(x, y - self.band_y, self.brim_rx, self.brim_ry) < 1.0).then_some(HatPart::Brim),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Glasses {
    pub kind: Eyeglasses,
    pub ex: f32,
    pub ey: f32,
    pub rx: f32,
    pub ry: f32,
    /// Boxy lenses (a superellipse of power 4) rather than elliptic ones.
    pub boxy: bool,
    pub frame_t: f32,
}

/// Which part of the glasses a point is on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GlassPart {
    Frame,
    /// Inside a lens; `u`, `v` in -1..1 across it.
    Lens { u: f32, v: f32 },
}

impl Glasses {
    #[inline]
    pub fn part(&self, xf: f32, y: f32, face_hw: f32) -> Option<GlassPart> {
        let ax = xf.abs();
        let dy = y - self.ey;
        if dy.abs() > self.ry + self.frame_t {
            return None;
        }
        let dx = ax - self.ex;
        if dx.abs() < self.rx + self.frame_t {
            let (u, v) = (dx / self.rx, dy / self.ry);
            let r = if self.boxy { (u * u * u * u + v * v * v * v).sqrt().sqrt() } else { (u * u + v * v).sqrt() };
            let d = (r - 1.0) * self.rx.min(self.ry);
            if d.abs() < 0.5 * self.frame_t {
                return Some(GlassPart::Frame);
            }
            if r < 1.0 {
                return Some(GlassPart::Lens { u: u * xf.signum(), v });
            }
        }
        let bridge = ax < self.ex - self.rx * 0.9 && (dy + self.ry * 0.35).abs() < 0.55 * self.frame_t;
        let temple = ax > self.ex + self.rx * 0.9 && ax < face_hw + 0.1 && (dy + self.ry * 0.45).abs() < 0.45 * self.frame_t;
        (bridge || temple).then_some(GlassPart::Frame)
    }
}

#[derive(Debug, Clone)]
pub struct EarringShape {
    pub kind: Earrings,
    pub size: f32,
}

#[derive(Debug, Clone)]
pub struct Necklace {
    pub y0: f32,
    pub depth: f32,
    pub half_w: f32,
    pub thick: f32,
    pub pendant: bool,
}

impl Necklace {
    #[inline]
    fn contains(&self, x: f32, y: f32) -> bool {
        let t = x / self.half_w;
        if t.abs() < 1.0 {
            let centre = self.y0 + self.depth * (1.0 - t * t).sqrt();
            if (y - centre).abs() < 0.5 * self.thick {
                return true;
            }
        }
        self.pendant && ellipse(x, y - (self.y0 + self.depth + 0.07), 0.06, 0.075) < 1.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Neckline {
    Round,
    V,
    /// A turtleneck covering the neck.
    High,
    /// A wide boat neck.
    Wide,
}

#[derive(Debug, Clone)]
pub struct Body {
    pub neck_hw: f32,
    pub neck_top: f32,
    /// Height of the shoulders where they meet the neck, and how fast they fall away.
    pub shoulder_y: f32,
    pub slope: f32,
    pub neckline: Neckline,
    pub neckline_w: f32,
    pub neckline_d: f32,
}

impl Body {
    #[inline]
    fn neck_half_width(&self, y: f32) -> f32 {
        self.neck_hw + 0.35 * smoothstep(self.shoulder_y - 0.4, self.shoulder_y + 0.15, y)
    }

    /// In the neck column (whatever covers it).
    #[inline]
    pub fn in_neck(&self, x: f32, y: f32) -> bool {
        y > self.neck_top && x.abs() < self.neck_half_width(y)
    }

    #[inline]
    pub fn in_cloth(&self, x: f32, y: f32) -> bool {
        let ax = x.abs();
        if self.neckline == Neckline::High && y > self.shoulder_y - 0.45 && ax < self.neck_half_width(y) + 0.06 {
            return true;
        }
        let top = self.shoulder_y + self.slope * (ax - 0.5).max(0.0).powi(2);
        if y < top {
            return false;
        }
        let t = x / self.neckline_w;
        if t.abs() < 1.0 && self.neckline != Neckline::High {
            let cut = match self.neckline {
                Neckline::V => 1.0 - t.abs(),
                _ => (1.0 - t * t).sqrt(),
            };
            return y > self.shoulder_y + self.neckline_d * cut;
        }
        true
    }
}

/// Every shape of one face.
#[derive(Debug, Clone)]
pub struct Layout {
    pub pose: Pose,
    /// How far the face is turned: positive towards the image right.
    pub yaw: f32,
    /// Sideways offset of the eyes, brows and mouth (yaw), and of the nose.
    pub feature_shift: f32,
    pub nose_shift: f32,
    pub face: FaceOval,
    pub eyes: Eyes,
    pub brows: Brows,
    pub nose: Nose,
    pub mouth: Mouth,
    pub ears: Ears,
    pub hair: Hair,
    pub hat: Option<HatShape>,
    pub glasses: Option<Glasses>,
    pub earrings: Option<EarringShape>,
    pub necklace: Option<Necklace>,
    pub body: Body,
}

/// Uniform in [lo, hi).
fn range(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

impl Layout {
    /// Shapes for `attrs`, jittered by `rng`. Only layout attributes are read
    /// (not age or beard), so faces that differ in those get the same mask.
    pub fn sample(attrs: &Attributes, rng: &mut ChaCha8Rng) -> Layout {
        let male = attrs.gender == Gender::Male;
        let pose = sample_pose(rng);
        // Yaw in -0.35..0.35, small turns more often than large ones.
        let yaw = 0.35 * (rng.random::<f32>() + rng.random::<f32>() - 1.0);

        let (half_w, chin, n_up, n_lo, taper) = match attrs.face_shape {
            FaceShape::Oval => (0.97, 1.55, 2.2, 2.2, 0.12),
            FaceShape::Round => (1.05, 1.45, 2.0, 2.0, 0.02),
            FaceShape::Square => (1.03, 1.5, 2.6, 3.2, 0.2),
            FaceShape::Heart => (1.0, 1.55, 2.6, 2.0, 0.3),
            FaceShape::Long => (0.92, 1.68, 2.2, 2.4, 0.15),
        };
        let face = FaceOval::new(
            half_w * range(rng, 0.96, 1.04) * if male { 1.02 } else { 0.98 },
            -1.45 * range(rng, 0.94, 1.1),
            chin * range(rng, 0.96, 1.14),
            n_up,
            n_lo,
            taper,
        );

        let ey = range(rng, -0.16, -0.04);
        let eye_open = match attrs.expression {
            Expression::Laugh => 0.75,
            Expression::Smile => 0.88,
            _ => 1.0,
        };
        let eyes = Eyes {
            x: range(rng, 0.38, 0.45),
            y: ey,
            half_w: range(rng, 0.18, 0.22),
            up_h: range(rng, 0.09, 0.115) * eye_open,
            lo_h: range(rng, 0.05, 0.065) * eye_open,
            tilt: range(rng, -0.05, 0.12),
            visible: attrs.eyeglasses != Some(Eyeglasses::Sunglasses),
            gaze_x: range(rng, -0.04, 0.04) + yaw * 0.3,
        };
        let brows = Brows {
            x: eyes.x + range(rng, 0.0, 0.04),
            y: ey - range(rng, 0.2, 0.27),
            half_w: range(rng, 0.22, 0.27),
            arch: range(rng, 0.02, 0.07) + if male { 0.0 } else { 0.02 },
            thick: if male { range(rng, 0.07, 0.1) } else { range(rng, 0.045, 0.07) },
        };
        let nose = Nose {
            top: ey + range(rng, -0.02, 0.04),
            bottom: range(rng, 0.45, 0.55),
            bridge_hw: range(rng, 0.07, 0.14),
            tip_hw: range(rng, 0.17, 0.32) + if male { 0.02 } else { 0.0 },
        };
        let (curve, open_h, widen) = match attrs.expression {
            Expression::Neutral => (range(rng, -0.01, 0.02), 0.0, 1.0),
            Expression::Smile => (range(rng, 0.06, 0.1), 0.0, 1.12),
            Expression::Laugh => (range(rng, 0.07, 0.11), range(rng, 0.1, 0.17), 1.18),
            Expression::Open => (range(rng, -0.01, 0.01), range(rng, 0.05, 0.09), 0.95),
        };
        let mouth = Mouth {
            y: nose.bottom + range(rng, 0.3, 0.38),
            half_w: range(rng, 0.29, 0.35) * widen,
            upper_h: range(rng, 0.075, 0.095) * if male { 0.85 } else { 1.0 } * if open_h > 0.0 { 0.85 } else { 1.0 },
            lower_h: range(rng, 0.09, 0.12) * if male { 0.85 } else { 1.0 },
            curve,
            open_h,
        };

        let ear_y = range(rng, -0.02, 0.12);
        let ear_rx = range(rng, 0.15, 0.2);
        let ear_scale = [1.0 + 2.0 * yaw, 1.0 - 2.0 * yaw];
        let edge = face.half_width(ear_y).max(0.5);
        // The far ear (on the side the face turns towards) hides behind the head on a strong turn.
        let far = (yaw > 0.0) as usize;
        let mut visible = [!attrs.ears_covered; 2];
        visible[far] &= yaw.abs() < 0.2;
        let ears = Ears {
            y: ear_y,
            ry: range(rng, 0.28, 0.34),
            cx: [-(edge + ear_rx * 0.45 * ear_scale[0]), edge + ear_rx * 0.45 * ear_scale[1]],
            rx: [ear_rx * ear_scale[0], ear_rx * ear_scale[1]],
            visible,
        };

        let hair = sample_hair(attrs, &face, &brows, rng);
        let hat = sample_hat(attrs, &face, &hair, rng);
        let glasses = attrs.eyeglasses.map(|kind| {
            let (rx, ry, boxy) = match kind {
                Eyeglasses::Round => (0.25, 0.23, false),
                Eyeglasses::Rectangular => (0.28, 0.18, true),
                Eyeglasses::Sunglasses => (0.3, 0.23, false),
            };
            Glasses { kind, ex: eyes.x, ey: ey + 0.02, rx, ry, boxy, frame_t: range(rng, 0.035, 0.06) }
        });
        let earrings = attrs.earrings.map(|kind| EarringShape { kind, size: range(rng, 0.85, 1.2) });
        let body = sample_body(male, &face, rng);
        let necklace = attrs.necklace.then(|| Necklace {
            y0: body.shoulder_y - range(rng, 0.2, 0.35),
            depth: range(rng, 0.15, 0.45),
            half_w: body.neck_hw + range(rng, 0.0, 0.15),
            thick: range(rng, 0.035, 0.06),
            pendant: rng.random_bool(0.5),
        });
        Layout {
            pose,
            yaw,
            feature_shift: yaw * 0.5,
            nose_shift: yaw * 0.75,
            face,
            eyes,
            brows,
            nose,
            mouth,
            ears,
            hair,
            hat,
            glasses,
            earrings,
            necklace,
            body,
        }
    }

    /// Where face-frame x lies in the frame the eyes, brows, mouth and glasses
    /// are drawn in: shifted with the yaw, the far half (the side the face
    /// turns towards) foreshortened and the near half widened.
    #[inline]
    pub fn feature_x(&self, x: f32) -> f32 {
        let xf = x - self.feature_shift;
        if xf * self.yaw > 0.0 {
            xf / (1.0 - 1.2 * self.yaw.abs())
        } else {
            xf / (1.0 + 0.4 * self.yaw.abs())
        }
    }

    /// The mask class at face-frame point (x, y), checked front to back.
    pub fn classify(&self, x: f32, y: f32) -> u8 {
        use class::*;
        if let Some(hat) = &self.hat {
            if hat.part(x, y).is_some() {
                return HAT;
            }
        }
        if self.earring_at(x, y) {
            return EARRING;
        }
        let face_hw = self.face.half_width(y);
        if self.hair.front(x, y, face_hw) {
            return HAIR;
        }
        let xf = self.feature_x(x);
        if let Some(g) = &self.glasses {
            if let Some(part) = g.part(xf, y, face_hw) {
                if self.brows.local(xf, y).is_some() && face_hw > x.abs() {
                    return sided(xf, L_BROW, R_BROW);
                }
                if matches!(part, GlassPart::Lens { .. }) && self.eyes.visible && self.eyes.local(xf, y).is_some() {
                    return sided(xf, L_EYE, R_EYE);
                }
                return EYEGLASS;
            }
        }
        if face_hw > x.abs() {
            if self.brows.local(xf, y).is_some() {
                return sided(xf, L_BROW, R_BROW);
            }
            if self.eyes.visible && self.eyes.local(xf, y).is_some() {
                return sided(xf, L_EYE, R_EYE);
            }
            match self.mouth.part(xf, y) {
                Some(MouthPart::UpperLip) => return U_LIP,
                Some(MouthPart::LowerLip) => return L_LIP,
                Some(MouthPart::Inside { .. }) => return MOUTH,
                None => {}
            }
            if self.nose.half_width(y) > (x - self.nose_shift).abs() {
                return NOSE;
            }
            return SKIN;
        }
        if let Some(i) = self.ears.side(x, y) {
            return if i == 1 { L_EAR } else { R_EAR };
        }
        if let Some(n) = &self.necklace {
            if n.contains(x, y) && (self.body.in_neck(x, y) || self.body.in_cloth(x, y)) {
                return NECKLACE;
            }
        }
        if self.body.in_neck(x, y) {
            return if self.body.in_cloth(x, y) { CLOTH } else { NECK };
        }
        if self.hair.back(x, y) {
            return HAIR;
        }
        if self.body.in_cloth(x, y) {
            return CLOTH;
        }
        BACKGROUND
    }

    fn earring_at(&self, x: f32, y: f32) -> bool {
        let Some(e) = &self.earrings else { return false };
        let i = (x > 0.0) as usize;
        if !self.ears.visible[i] {
            return false;
        }
        let (lx, ly) = self.ears.lobe(i);
        let (dx, dy) = ((x - lx) / e.size, (y - ly) / e.size);
        match e.kind {
            Earrings::Studs => ellipse(dx, dy - 0.02, 0.055, 0.055) < 1.0,
            Earrings::Hoops => {
                let r = ellipse(dx, dy - 0.13, 0.12, 0.14).sqrt();
                (r - 1.0).abs() < 0.22
            }
            Earrings::Drops => ellipse(dx, dy - 0.01, 0.035, 0.035) < 1.0 || ellipse(dx, dy - 0.13, 0.045, 0.085) < 1.0,
        }
    }
}

/// Framing from a head-and-shoulders portrait to a tight CelebA-HQ-style crop:
/// the face 30 to 85% of the frame wide (log-uniform), off-centre by up to a
/// tenth of the frame, rolled up to 25 degrees (small rolls more often).
fn sample_pose(rng: &mut ChaCha8Rng) -> Pose {
    let (narrow, wide) = (0.15f32, 0.425f32);
    let unit = narrow * (wide / narrow).powf(rng.random::<f32>());
    let roll = 0.436 * (rng.random::<f32>() + rng.random::<f32>() - 1.0);
    Pose { cx: 0.5 + range(rng, -0.1, 0.1), cy: 0.5 + range(rng, -0.08, 0.1), unit, cos: roll.cos(), sin: roll.sin() }
}

fn sample_hair(attrs: &Attributes, face: &FaceOval, brows: &Brows, rng: &mut ChaCha8Rng) -> Hair {
    let style = attrs.hair_style;
    let volume = match style {
        HairStyle::Bald => 0.1,
        HairStyle::Buzz => range(rng, 0.03, 0.06),
        HairStyle::Short => range(rng, 0.1, 0.25),
        HairStyle::Bob | HairStyle::Long => range(rng, 0.12, 0.22),
        HairStyle::Curly => range(rng, 0.3, 0.5),
        HairStyle::Bun => range(rng, 0.06, 0.1),
    };
    let receding = range(rng, 0.0, 1.0);
    let hairline = match attrs.fringe {
        Fringe::None => -0.9 - 0.3 * receding * receding,
        Fringe::Bangs => brows.y - range(rng, 0.02, 0.1),
        Fringe::SideSwept => range(rng, -1.05, -0.85),
    };
    let (length, spread) = match style {
        HairStyle::Long => (range(rng, 2.2, 4.5), range(rng, 0.25, 0.7)),
        HairStyle::Bob => (range(rng, 1.1, 1.5), range(rng, 0.1, 0.25)),
        HairStyle::Curly => (range(rng, 0.9, 2.4), range(rng, 0.2, 0.5)),
        _ => (0.0, 0.0),
    };
    let frame = attrs.ears_covered;
    let male = attrs.gender == Gender::Male;
    Hair {
        style,
        fringe: attrs.fringe,
        cap_cy: -0.35 + range(rng, -0.05, 0.05) - 0.3 * volume,
        cap_rx: face.half_w + 0.1 + volume,
        cap_ry: -face.top - 0.35 + range(rng, 0.0, 0.06) + 1.1 * volume,
        hairline,
        hairline_k: range(rng, 0.12, 0.35),
        sweep_side: if rng.random_bool(0.5) { 1.0 } else { -1.0 },
        bumps: match style {
            HairStyle::Curly => range(rng, 0.05, 0.09),
            HairStyle::Short => range(rng, 0.0, 0.04),
            _ => 0.0,
        },
        bump_freq: range(rng, 9.0, 16.0).round(),
        phase: range(rng, 0.0, std::f32::consts::TAU),
        length,
        spread,
        frame_w: if frame { range(rng, 0.1, 0.22) } else { 0.0 },
        frame_bottom: if frame { range(rng, 0.5, 1.2) } else { 0.0 },
        sideburn_w: if male && style != HairStyle::Bald { range(rng, 0.08, 0.14) } else { range(rng, 0.04, 0.08) },
        sideburn_bottom: if male { range(rng, -0.05, 0.15) } else { range(rng, -0.35, -0.15) },
        horseshoe: style == HairStyle::Bald && rng.random_bool(0.6),
    }
}

fn sample_hat(attrs: &Attributes, face: &FaceOval, hair: &Hair, rng: &mut ChaCha8Rng) -> Option<HatShape> {
    let band = range(rng, -0.95, -0.75);
    let grow = range(rng, 0.04, 0.1);
    let brim = range(rng, 1.7, 2.2);
    attrs.hat.map(|kind| {
        // A hat sits on the hair: at least as wide as the hair's volume.
        let (rx, ry, cy) = (hair.cap_rx.max(face.half_w + 0.12) + grow, hair.cap_ry.max(1.1) + grow, hair.cap_cy);
        match kind {
            Hat::Beanie => HatShape { kind, band_y: band, crown_cy: cy, crown_rx: rx, crown_ry: ry, brim_rx: 0.0, brim_ry: 0.0 },
            Hat::Cap => HatShape { kind, band_y: band - 0.1, crown_cy: cy, crown_rx: rx, crown_ry: ry, brim_rx: face.half_w * 1.05, brim_ry: 0.22 },
            Hat::Brimmed => HatShape {
                kind,
                band_y: band - 0.15,
                crown_cy: band - 0.15 - 0.5,
                crown_rx: face.half_w * 1.0,
                crown_ry: 0.75,
                brim_rx: brim,
                brim_ry: 0.17,
            },
        }
    })
}

fn sample_body(male: bool, face: &FaceOval, rng: &mut ChaCha8Rng) -> Body {
    let neckline = match rng.random_range(0..10) {
        0..=3 => Neckline::Round,
        4..=6 => Neckline::V,
        7 => Neckline::High,
        _ => Neckline::Wide,
    };
    let (w, d) = match neckline {
        Neckline::Round => (range(rng, 0.55, 0.8), range(rng, 0.1, 0.35)),
        Neckline::V => (range(rng, 0.5, 0.75), range(rng, 0.4, 0.8)),
        Neckline::High => (0.5, 0.0),
        Neckline::Wide => (range(rng, 1.0, 1.4), range(rng, 0.1, 0.25)),
    };
    Body {
        neck_hw: if male { range(rng, 0.5, 0.7) } else { range(rng, 0.4, 0.58) },
        neck_top: face.chin * 0.5,
        shoulder_y: face.chin + range(rng, 0.3, 0.75),
        slope: range(rng, 0.05, 0.3),
        neckline,
        neckline_w: w,
        neckline_d: d,
    }
}
