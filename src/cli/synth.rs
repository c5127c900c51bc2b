//! `codiff synth`: writes a synthetic face data set in the CelebAMask-HQ / CelebA-Dialog layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use rayon::prelude::*;

use crate::data::conditions;
use crate::data::painted::painted;
use crate::data::synth::sheet::{contact_sheet, SheetEntry};
use crate::data::synth::{generate, AttributeRecord, Sample};

/// Faces shown on a contact sheet at most.
const SHEET_SAMPLES: usize = 16;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// How many faces to generate.
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Side length of masks and photos in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Seed of the data set: equal seeds give identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (gets masks/, images/, captions.json, attributes.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write sheet.png: the first faces beside their masks and captions.
    #[arg(long)]
    pub sheet: bool,
    /// Write rough masks as a person paints them instead (masks/ and captions.json only;
    /// for evaluation, never training).
    #[arg(long)]
    pub painted: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// What is kept of each sample once its PNGs are written.
struct Written {
    caption: String,
    record: AttributeRecord,
    /// The whole sample, for the first few that go on the contact sheet.
    sample: Option<Sample>,
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    if !(16..=2048).contains(&args.size) {
        bail!("--size {} is out of range; pick a side length between 16 and 2048 pixels", args.size);
    }
    if args.count == 0 {
        bail!("--count is 0; ask for at least one face");
    }
    if args.painted {
        let entries: Vec<_> = (0..args.count)
            .into_par_iter()
            .map(|i| {
                let (mask, caption) = painted(args.seed, i as u64, args.size);
                (file_name(i), mask, vec![caption])
            })
            .collect();
        conditions::write(&args.out, &entries)?;
        println!("wrote {} painted-style masks of {}x{} to {}", args.count, args.size, args.size, args.out.display());
        return Ok(());
    }
    let masks = args.out.join("masks");
    let images = args.out.join("images");
    for dir in [&masks, &images] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let bar = ProgressBar::new(args.count as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} faces  {per_sec}  eta {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()));

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Written>>> = Mutex::new((0..args.count).map(|_| None).collect());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads.min(args.count))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= args.count {
                            return Ok(());
                        }
                        let written = write_sample(&args, i, &masks, &images)?;
                        results.lock().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?[i] = Some(written);
                        bar.inc(1);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        Ok(())
    })?;
    bar.finish();

    let results = results.into_inner().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    let mut captions = BTreeMap::new();
    let mut attributes = BTreeMap::new();
    let mut shown = Vec::new();
    for (i, w) in results.into_iter().enumerate() {
        let w = w.with_context(|| format!("sample {i} was not generated"))?;
        let name = file_name(i);
        captions.insert(name.clone(), w.caption);
        attributes.insert(name.clone(), w.record);
        if let Some(sample) = w.sample {
            shown.push((name, sample));
        }
    }
    write_json(&args.out.join("captions.json"), &captions)?;
    write_json(&args.out.join("attributes.json"), &attributes)?;
    if args.sheet {
        let entries: Vec<SheetEntry> = shown
            .iter()
            .map(|(name, s)| SheetEntry { name, image: &s.image, mask: &s.mask, caption: &s.caption })
            .collect();
        let path = args.out.join("sheet.png");
        contact_sheet(&entries).save(&path).with_context(|| format!("cannot write {}", path.display()))?;
        println!("contact sheet: {}", path.display());
    }
    println!("wrote {} faces of {}x{} to {}", args.count, args.size, args.size, args.out.display());
    Ok(())
}

fn file_name(i: usize) -> String {
    format!("{i:05}.png")
}

fn write_sample(args: &SynthArgs, i: usize, masks: &Path, images: &Path) -> anyhow::Result<Written> {
    let sample = generate(args.seed, i as u64, args.size);
    let name = file_name(i);
    sample.mask.save(masks.join(&name))?;
    let image_path = images.join(&name);
    sample.image.save(&image_path).with_context(|| format!("cannot write {}", image_path.display()))?;
    Ok(Written {
        caption: sample.caption.clone(),
        record: AttributeRecord::from(&sample.attributes),
        sample: (args.sheet && i < SHEET_SAMPLES).then_some(sample),
    })
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
