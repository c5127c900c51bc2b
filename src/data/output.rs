//! Files written so that a failure never costs what was there before: the
//! bytes go to `NAME.partial` beside the target, which replaces the target by
//! a rename only once it is complete. A full disk or an error leaves the old
//! file whole; a killed process leaves a `.partial` file that says what it
//! is, and the next write of the same target replaces it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `tensors` as a safetensors file through [`write_atomically`].
pub fn save_safetensors(tensors: &std::collections::HashMap<String, candle_core::Tensor>, path: &Path) -> candle_core::Result<()> {
    let bytes = safetensors::tensor::serialize(tensors, None).map_err(candle_core::Error::wrap)?;
    write_atomically(path, |w| w.write_all(&bytes)).map_err(candle_core::Error::wrap)
}

/// Where the bytes for `path` go until they are complete.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "output".into());
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes `path` through [`partial_path`]; the partial file is removed on failure.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> std::io::Result<()> {
    let partial = partial_path(path);
    let result = File::create(&partial).and_then(|file| {
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        writer.flush()?;
        // Complete on disk before the rename makes it the target.
        writer.get_ref().sync_all()
    });
    let result = result.and_then(|()| std::fs::rename(&partial, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it() {
        let dir = std::env::temp_dir().join(format!("codiff-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.png");
        std::fs::write(&target, b"precious").unwrap();
        let failed = write_atomically(&target, |w| {
            w.write_all(b"half of it")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(!partial_path(&target).exists());
        write_atomically(&target, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the target is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
