//! The folder each kind of file was last picked in, kept beside the autosaved
//! work (`folders.json`) so that dialogs start there after a restart too.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The kinds of file that remember a folder of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderKind {
    Masks,
    Photos,
    Models,
    /// Results, edited photos, timeline frames and GIFs.
    Exports,
}

/// The remembered folders, written to `file` (if any) whenever one changes.
#[derive(Debug, Default)]
pub struct Folders {
    file: Option<PathBuf>,
    folders: BTreeMap<FolderKind, PathBuf>,
}

impl Folders {
    /// The folders saved in `file`; none when it is missing or unreadable
    /// (a damaged file costs only the remembered folders, and is replaced at the next pick).
    pub fn load(file: PathBuf) -> Self {
        let folders = std::fs::read_to_string(&file).ok().and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
        Self { file: Some(file), folders }
    }

    /// The last folder used for `kind`, if it still exists.
    pub fn get(&self, kind: FolderKind) -> Option<PathBuf> {
        self.folders.get(&kind).filter(|dir| dir.is_dir()).cloned()
    }

    /// Remembers `folder` for `kind` and saves the list.
    pub fn remember(&mut self, kind: FolderKind, folder: PathBuf) -> Result<(), String> {
        if self.folders.get(&kind) == Some(&folder) {
            return Ok(());
        }
        self.folders.insert(kind, folder);
        let Some(file) = &self.file else { return Ok(()) };
        let json = serde_json::to_string_pretty(&self.folders).map_err(|e| e.to_string())?;
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| crate::data::output::write_atomically(file, |w| std::io::Write::write_all(w, json.as_bytes())));
        written.map_err(|e| format!("could not remember the folder in {}: {e}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_survive_a_restart_and_vanished_ones_are_forgotten() {
        let dir = std::env::temp_dir().join(format!("codiff-folders-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (masks, photos) = (dir.join("masks"), dir.join("photos"));
        std::fs::create_dir_all(&masks).unwrap();
        std::fs::create_dir_all(&photos).unwrap();
        let file = dir.join("autosave/folders.json");

        let mut folders = Folders::load(file.clone());
        assert_eq!(folders.get(FolderKind::Masks), None);
        folders.remember(FolderKind::Masks, masks.clone()).unwrap();
        folders.remember(FolderKind::Photos, photos.clone()).unwrap();

        let again = Folders::load(file.clone());
        assert_eq!(again.get(FolderKind::Masks), Some(masks));
        assert_eq!(again.get(FolderKind::Photos), Some(photos.clone()));
        assert_eq!(again.get(FolderKind::Exports), None);
        std::fs::remove_dir_all(&photos).unwrap();
        assert_eq!(again.get(FolderKind::Photos), None, "a folder deleted since is not offered");

        std::fs::write(&file, "{ not json").unwrap();
        assert_eq!(Folders::load(file).get(FolderKind::Masks), None, "a damaged file reads as nothing remembered");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
