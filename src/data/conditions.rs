//! A folder of generation conditions, the layout `codiff eval --conditions`
//! reads and `codiff synth` writes: `masks/*.png` (palette or RGB masks) and
//! `captions.json`, whose keys are the masks' file names and whose values are
//! a caption or a list of captions (one condition per mask and caption).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::mask::{Mask, MaskError};

/// One mask with one caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The mask's file name.
    pub name: String,
    pub mask: Mask,
    pub caption: String,
}

#[derive(Debug, Error)]
pub enum ConditionsError {
    #[error("could not {0} {1}: {2}")]
    Io(&'static str, String, std::io::Error),
    #[error("{0} is not a conditions file: {1} (it maps each mask's file name to a caption or a list of captions)")]
    Json(String, serde_json::Error),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error("{0} names {1}, which is not in masks/")]
    MissingMask(String, String),
    #[error("{0} gives no caption for {1}")]
    NoCaption(String, String),
    #[error("{0} holds no masks; a conditions folder has masks/*.png and captions.json")]
    Empty(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Captions {
    One(String),
    Several(Vec<String>),
}

const CAPTIONS: &str = "captions.json";

/// Every (mask, caption) pair of the folder, in file-name order.
pub fn read(dir: &Path) -> Result<Vec<Condition>, ConditionsError> {
    let path = dir.join(CAPTIONS);
    let text = std::fs::read_to_string(&path).map_err(|e| ConditionsError::Io("read", path.display().to_string(), e))?;
    let captions: BTreeMap<String, Captions> = serde_json::from_str(&text).map_err(|e| ConditionsError::Json(path.display().to_string(), e))?;
    if captions.is_empty() {
        return Err(ConditionsError::Empty(dir.display().to_string()));
    }
    let mut conditions = Vec::new();
    for (name, captions) in captions {
        let mask_path = dir.join("masks").join(&name);
        if !mask_path.is_file() {
            return Err(ConditionsError::MissingMask(path.display().to_string(), name));
        }
        let mask = Mask::load(&mask_path)?;
        let captions = match captions {
            Captions::One(c) => vec![c],
            Captions::Several(c) => c,
        };
        if captions.iter().all(|c| c.trim().is_empty()) {
            return Err(ConditionsError::NoCaption(path.display().to_string(), name));
        }
        for caption in captions {
            conditions.push(Condition { name: name.clone(), mask: mask.clone(), caption });
        }
    }
    Ok(conditions)
}

/// Writes `masks/<name>` and `captions.json` (each name with its captions).
pub fn write(dir: &Path, entries: &[(String, Mask, Vec<String>)]) -> Result<(), ConditionsError> {
    let masks = dir.join("masks");
    std::fs::create_dir_all(&masks).map_err(|e| ConditionsError::Io("create", masks.display().to_string(), e))?;
    let mut captions = BTreeMap::new();
    for (name, mask, texts) in entries {
        mask.save(masks.join(name))?;
        let value = match texts.as_slice() {
            [one] => Captions::One(one.clone()),
            _ => Captions::Several(texts.clone()),
        };
        captions.insert(name.clone(), value);
    }
    let path = dir.join(CAPTIONS);
    let text = serde_json::to_string_pretty(&captions).map_err(|e| ConditionsError::Json(path.display().to_string(), e))?;
    std::fs::write(&path, text).map_err(|e| ConditionsError::Io("write", path.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mask::class;

    #[test]
    fn written_conditions_read_back_one_per_caption() {
        let dir = std::env::temp_dir().join(format!("codiff-conditions-{}", std::process::id()));
        let (a, b) = (Mask::filled(8, 8, class::SKIN), Mask::filled(8, 8, class::HAIR));
        let entries = [("a.png".to_string(), a.clone(), vec!["one".to_string()]), ("b.png".to_string(), b.clone(), vec!["two".into(), "three".into()])];
        write(&dir, &entries).unwrap();
        let read_back = read(&dir).unwrap();
        let pairs: Vec<(&str, &str)> = read_back.iter().map(|c| (c.name.as_str(), c.caption.as_str())).collect();
        assert_eq!(pairs, [("a.png", "one"), ("b.png", "two"), ("b.png", "three")]);
        assert_eq!((&read_back[0].mask, &read_back[2].mask), (&a, &b));
        std::fs::write(dir.join(CAPTIONS), r#"{"c.png": "missing"}"#).unwrap();
        assert!(matches!(read(&dir), Err(ConditionsError::MissingMask(..))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
