//! The one PNG-with-parameters format. A result carries what made it (prompt,
//! seed, steps, eta, mode, model and the mask itself) as one JSON iTXt chunk,
//! so the command line and the studio can each make it again: `codiff
//! generate` and `codiff edit` write it, the studio writes it when saving and
//! reads it when a PNG is dropped on the window.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::image::{save_png_with_text, ImageError, RgbFrame};
use super::mask::Mask;
use crate::diffusion::collaborate::CombineMode;

/// The chunk's keyword (the studio's results have carried it from the start).
const KEYWORD: &str = "codiff";

/// What made an image, enough to make it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageParams {
    pub prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub eta: f64,
    pub mode: CombineMode,
    /// The weights' file name, to say which model made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The mask it was made from, embedded as a base64 palette PNG.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "embedded_mask")]
    pub mask: Option<Mask>,
    /// How a photo was edited into this image; absent for generated images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<EditParams>,
}

/// The parts of an edit that a generation does not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditParams {
    /// The photo's description as read, which the prompt replaced.
    pub source_text: String,
    /// The method, as `codiff edit --method` names it.
    pub method: String,
    pub alpha: f64,
    /// The edited photo's path.
    pub photo: String,
    /// The square edited, as `codiff edit --crop` takes it: "X,Y,SIDE" in the photo's pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
    /// Imagic's optimisation; absent for inversion, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imagic: Option<ImagicParams>,
}

/// How Imagic optimised the embedding and fine-tuned the models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagicParams {
    pub embed_steps: usize,
    pub finetune_steps: usize,
    pub embed_lr: f64,
    pub finetune_lr: f64,
}

/// What the studio wrote before this format: prompt and settings, no mask.
#[derive(Deserialize)]
struct StudioParams {
    prompt: String,
    settings: StudioSettings,
}

#[derive(Deserialize)]
struct StudioSettings {
    seed: u64,
    steps: usize,
    eta: f64,
    mode: CombineMode,
}

impl From<StudioParams> for ImageParams {
    fn from(old: StudioParams) -> Self {
        let s = old.settings;
        Self { prompt: old.prompt, seed: s.seed, steps: s.steps, eta: s.eta, mode: s.mode, model: None, mask: None, edit: None }
    }
}

/// Writes `frame` as an RGB PNG carrying `params`, replacing `path` atomically.
pub fn save_png_with_params(path: impl AsRef<Path>, frame: &RgbFrame, params: &ImageParams) -> Result<(), ImageError> {
    let path = path.as_ref();
    let json = serde_json::to_string(params).map_err(|e| ImageError::Write { path: path.display().to_string(), reason: e.to_string() })?;
    save_png_with_text(path, frame, &[(KEYWORD, json)])
}

/// The parameters a PNG carries: `Ok(None)` for a file that is no PNG or
/// carries none; an error when it cannot be read or its parameters are damaged.
pub fn read_png_params(path: impl AsRef<Path>) -> Result<Option<ImageParams>, ImageError> {
    let path = path.as_ref();
    let err = |reason: String| ImageError::Read { path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let Ok(reader) = png::Decoder::new(std::io::Cursor::new(bytes)).read_info() else { return Ok(None) };
    let Some(chunk) = reader.info().utf8_text.iter().find(|c| c.keyword == KEYWORD) else { return Ok(None) };
    let json = chunk.get_text().map_err(|e| err(e.to_string()))?;
    match serde_json::from_str::<ImageParams>(&json) {
        Ok(params) => Ok(Some(params)),
        Err(e) => serde_json::from_str::<StudioParams>(&json).map(|old| Some(old.into())).map_err(|_| err(format!("its {KEYWORD} parameters are damaged ({e})"))),
    }
}

/// A mask as the base64 text of its palette PNG.
mod embedded_mask {
    use base64::{decode, encode};
    use serde::{de, Deserialize, Deserializer, Serializer};

    use crate::data::mask::Mask;

    pub fn serialize<S: Serializer>(mask: &Option<Mask>, serializer: S) -> Result<S::Ok, S::Error> {
        match mask {
            Some(mask) => serializer.serialize_str(&encode(mask.encode_png().map_err(serde::ser::Error::custom)?)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Mask>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
        let bytes = decode(text).map_err(|e| de::Error::custom(format!("the embedded mask is not base64: {e}")))?;
        Mask::decode(&bytes, "the embedded mask").map(Some).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_png(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("codiff-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn parameters_and_mask_round_trip_through_one_chunk() {
        let path = temp_png("params.png");
        let frame = RgbFrame { width: 2, height: 1, pixels: vec![1, 2, 3, 250, 251, 252] };
        let mut mask = Mask::filled(4, 4, 0);
        mask.set(1, 2, 17);
        let params = ImageParams {
            prompt: "Er ist in seinen Fünfzigern.".into(),
            seed: 7,
            steps: 20,
            eta: 0.5,
            mode: CombineMode::NoSpatial,
            model: Some("codiff_256.safetensors".into()),
            mask: Some(mask),
            edit: Some(EditParams { source_text: "She is a teen.".into(), method: "imagic".into(), alpha: 0.9, photo: "me.jpg".into(), crop: Some("10,0,480".into()), imagic: Some(ImagicParams { embed_steps: 500, finetune_steps: 1000, embed_lr: 1e-3, finetune_lr: 1e-6 }) }),
        };
        save_png_with_params(&path, &frame, &params).unwrap();
        assert_eq!(read_png_params(&path).unwrap(), Some(params));
        assert_eq!(image::open(&path).unwrap().to_rgb8().into_raw(), frame.pixels);

        save_png_with_text(&path, &frame, &[("columns", "pred_x0".into())]).unwrap();
        assert_eq!(read_png_params(&path).unwrap(), None, "a PNG without the chunk carries no parameters");
        save_png_with_text(&path, &frame, &[(KEYWORD, "{\"prompt\": 1}".into())]).unwrap();
        assert!(read_png_params(&path).unwrap_err().to_string().contains("damaged"));
        std::fs::write(&path, b"GIF89a").unwrap();
        assert_eq!(read_png_params(&path).unwrap(), None);
    }

    #[test]
    fn results_the_studio_saved_before_this_format_still_restore() {
        let path = temp_png("studio.png");
        let frame = RgbFrame { width: 1, height: 1, pixels: vec![9, 9, 9] };
        let old = r#"{"prompt":"This woman is in her forties.","attributes":{"gender":"Woman","age":3,"beard":null},
            "settings":{"seed":11,"seed_locked":true,"steps":30,"eta":1.0,"mode":"composable","batch":1}}"#;
        save_png_with_text(&path, &frame, &[(KEYWORD, old.into())]).unwrap();
        let read = read_png_params(&path).unwrap().unwrap();
        let expected = ImageParams {
            prompt: "This woman is in her forties.".into(),
            seed: 11,
            steps: 30,
            eta: 1.0,
            mode: CombineMode::Composable,
            model: None,
            mask: None,
            edit: None,
        };
        assert_eq!(read, expected);
    }
}
