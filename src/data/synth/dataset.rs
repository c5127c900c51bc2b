//! A synthetic face data set on disk, in the CelebAMask-HQ / CelebA-Dialog
//! layout: `masks/NNNNN.png`, `images/NNNNN.png`, `captions.json` and
//! `attributes.json` (file name to caption, and to attributes), and on request
//! `sheet.png`, a contact sheet of the first faces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use thiserror::Error;

use super::sheet::{contact_sheet, SheetEntry};
use super::{generate, AttributeRecord, Sample};
use crate::data::conditions::{self, ConditionsError};
use crate::data::mask::MaskError;
use crate::data::painted::painted;

/// Faces shown on a contact sheet at most.
const SHEET_SAMPLES: usize = 16;

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error("could not {0} {1}: {2}")]
    Io(&'static str, String, String),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error(transparent)]
    Conditions(#[from] ConditionsError),
}

/// Which faces to write: `count` of them at `size` pixels from the world of `seed`.
#[derive(Debug, Clone, Copy)]
pub struct DatasetRequest {
    pub count: usize,
    pub size: usize,
    pub seed: u64,
}

/// Sample `i`'s file name in masks/ and images/.
pub fn file_name(i: usize) -> String {
    format!("{i:05}.png")
}

/// What is kept of each sample once its PNGs are written.
struct Written {
    caption: String,
    record: AttributeRecord,
    /// The whole sample, for the first few that go on the contact sheet.
    sample: Option<Sample>,
}

/// Writes the data set into `dir`, its faces in parallel on rayon's pool,
/// calling `on_face` after each; with `sheet`, also sheet.png, whose path it returns.
pub fn write(dir: &Path, request: DatasetRequest, sheet: bool, on_face: &(dyn Fn() + Sync)) -> Result<Option<PathBuf>, DatasetError> {
    let (masks, images) = (dir.join("masks"), dir.join("images"));
    for dir in [&masks, &images] {
        std::fs::create_dir_all(dir).map_err(|e| DatasetError::Io("create", dir.display().to_string(), e.to_string()))?;
    }
    let written = (0..request.count)
        .into_par_iter()
        .map(|i| {
            let sample = generate(request.seed, i as u64, request.size);
            sample.mask.save(masks.join(file_name(i)))?;
            let image_path = images.join(file_name(i));
            sample.image.save(&image_path).map_err(|e| DatasetError::Io("write", image_path.display().to_string(), e.to_string()))?;
            on_face();
            let (caption, record) = (sample.caption.clone(), AttributeRecord::from(&sample.attributes));
            Ok(Written { caption, record, sample: (sheet && i < SHEET_SAMPLES).then_some(sample) })
        })
        .collect::<Result<Vec<_>, DatasetError>>()?;
    let mut captions = BTreeMap::new();
    let mut attributes = BTreeMap::new();
    let mut shown = Vec::new();
    for (i, w) in written.into_iter().enumerate() {
        captions.insert(file_name(i), w.caption);
        attributes.insert(file_name(i), w.record);
        shown.extend(w.sample.map(|sample| (file_name(i), sample)));
    }
    write_json(&dir.join("captions.json"), &captions)?;
    write_json(&dir.join("attributes.json"), &attributes)?;
    if !sheet {
        return Ok(None);
    }
    let entries: Vec<SheetEntry> = shown.iter().map(|(name, s)| SheetEntry { name, image: &s.image, mask: &s.mask, caption: &s.caption }).collect();
    let path = dir.join("sheet.png");
    contact_sheet(&entries).save(&path).map_err(|e| DatasetError::Io("write", path.display().to_string(), e.to_string()))?;
    Ok(Some(path))
}

/// Writes rough masks as a person paints them, with captions, as a conditions
/// folder (masks/ and captions.json: for evaluation, never training).
pub fn write_painted(dir: &Path, request: DatasetRequest) -> Result<(), DatasetError> {
    let entries: Vec<_> = (0..request.count)
        .into_par_iter()
        .map(|i| {
            let (mask, caption) = painted(request.seed, i as u64, request.size);
            (file_name(i), mask, vec![caption])
        })
        .collect();
    Ok(conditions::write(dir, &entries)?)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DatasetError> {
    let io = |e: String| DatasetError::Io("write", path.display().to_string(), e);
    let text = serde_json::to_string_pretty(value).map_err(|e| io(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mask::Mask;

    #[test]
    fn equal_seeds_write_identical_files_in_the_celeba_layout() {
        let root = std::env::temp_dir().join(format!("codiff-dataset-{}", std::process::id()));
        let request = DatasetRequest { count: 3, size: 32, seed: 7 };
        let faces = std::sync::atomic::AtomicUsize::new(0);
        let count = || {
            faces.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let sheet = write(&root.join("a"), request, true, &count).unwrap();
        assert_eq!(sheet, Some(root.join("a/sheet.png")));
        assert_eq!(write(&root.join("b"), request, false, &count).unwrap(), None);
        assert_eq!(faces.into_inner(), 6, "one call per face written");
        for file in ["masks/00002.png", "images/00002.png", "captions.json", "attributes.json"] {
            assert_eq!(std::fs::read(root.join("a").join(file)).unwrap(), std::fs::read(root.join("b").join(file)).unwrap(), "{file}");
        }
        let sample = generate(7, 1, 32);
        assert_eq!(Mask::load(root.join("a/masks/00001.png")).unwrap(), sample.mask);
        let captions: BTreeMap<String, String> = serde_json::from_str(&std::fs::read_to_string(root.join("a/captions.json")).unwrap()).unwrap();
        assert_eq!(captions.keys().collect::<Vec<_>>(), ["00000.png", "00001.png", "00002.png"]);
        assert_eq!(captions["00001.png"], sample.caption);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
