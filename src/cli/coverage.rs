//! `codiff coverage`: how sets of masks lay faces out, side by side (face box
//! size and centre, each class's share of the area), as a Markdown table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::data::coverage::{markdown_table, LayoutStats};
use crate::data::mask::Mask;

#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// Mask files, or folders of masks (a data set's or conditions folder's masks/ is found by
    /// itself); one table row each.
    #[arg(required = true)]
    sets: Vec<PathBuf>,
}

pub fn run(args: CoverageArgs) -> anyhow::Result<()> {
    let mut sets = Vec::new();
    for path in &args.sets {
        let mut stats = Vec::new();
        for file in mask_files(path)? {
            let mask = Mask::load(&file)?;
            stats.extend(LayoutStats::of(&mask));
        }
        if stats.is_empty() {
            bail!("{} holds no mask with a face (skin or facial features)", path.display());
        }
        sets.push((path.display().to_string(), stats));
    }
    print!("{}", markdown_table(&sets));
    Ok(())
}

/// The file itself, or the PNGs of a folder (of its masks/ where it has one), sorted.
fn mask_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = if path.join("masks").is_dir() { path.join("masks") } else { path.to_path_buf() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    Ok(files)
}
