//! Checks made before a subcommand does any work: that its outputs would
//! overwrite none of its inputs, nor an existing file unless `--force` says so,
//! and that its numeric arguments are numbers that make sense.

use std::path::{Path, PathBuf};

/// Refuses outputs that are one of `inputs` (even with `force`: a checkpoint
/// overwritten by a PNG is lost) or that exist already, unless `force`.
pub fn check_outputs(outputs: &[PathBuf], inputs: &[&Path], force: bool) -> anyhow::Result<()> {
    for out in outputs {
        if let Some(input) = inputs.iter().find(|input| same_file(out, input)) {
            anyhow::bail!("{} is also an input ({}); choose another output path", out.display(), input.display());
        }
        if out.exists() && !force {
            anyhow::bail!("{} exists; pass --force to replace it", out.display());
        }
    }
    Ok(())
}

/// Where one of `count` outputs goes: `path` itself when it is the only one,
/// else `path` with `suffix` before its extension (png when it has none).
pub fn one_of(path: &Path, suffix: &str, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map_or_else(|| "out".into(), |s| s.to_string_lossy().into_owned());
    let ext = path.extension().map_or_else(|| "png".into(), |e| e.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}{suffix}.{ext}"))
}

/// Whether two paths name one existing file (through symbolic and hard links too).
#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    matches!((std::fs::metadata(a), std::fs::metadata(b)), (Ok(a), Ok(b)) if (a.dev(), a.ino()) == (b.dev(), b.ino()))
}

/// Whether two paths name one existing file (through symbolic links too).
#[cfg(not(unix))]
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Refuses a value of `name` outside `range` (NaN included) with a sentence that says why.
pub fn check_range(name: &str, value: f64, range: std::ops::RangeInclusive<f64>, why: &str) -> anyhow::Result<()> {
    if !range.contains(&value) {
        anyhow::bail!("{name} is {value}; it must be between {} and {} ({why})", range.start(), range.end());
    }
    Ok(())
}

/// Refuses a count of `name` outside `1..=max`.
pub fn check_count(name: &str, value: usize, max: usize, why: &str) -> anyhow::Result<()> {
    if value == 0 || value > max {
        anyhow::bail!("{name} is {value}; it must be between 1 and {max} ({why})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_that_is_an_input_is_refused_even_with_force() {
        let dir = std::env::temp_dir().join(format!("codiff-outputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("model.ckpt");
        std::fs::write(&input, b"weights").unwrap();
        let via_dots = dir.join(".").join("model.ckpt");
        let err = check_outputs(&[via_dots], &[&input], true).unwrap_err().to_string();
        assert!(err.contains("is also an input"), "{err}");
        let err = check_outputs(std::slice::from_ref(&input), &[], false).unwrap_err().to_string();
        assert!(err.contains("pass --force"), "{err}");
        check_outputs(std::slice::from_ref(&input), &[], true).unwrap();
        check_outputs(&[dir.join("new.png")], &[&input], false).unwrap();
        assert_eq!(one_of(&input, "-1", 1), input);
        assert_eq!(one_of(&input, "-1", 2), dir.join("model-1.ckpt"));
        assert_eq!(one_of(&dir.join("out"), "-a2.5", 3), dir.join("out-a2.5.png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nan_and_out_of_range_values_are_refused() {
        assert!(check_range("--eta", f64::NAN, 0.0..=1.0, "x").is_err());
        assert!(check_range("--eta", 1e6, 0.0..=1.0, "x").is_err());
        check_range("--eta", 0.5, 0.0..=1.0, "x").unwrap();
        assert!(check_count("--steps", 0, 1000, "x").is_err());
        assert!(check_count("--batch", 1_000_000, 64, "x").is_err());
    }
}
