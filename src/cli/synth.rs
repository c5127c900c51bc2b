//! `codiff synth`: writes a synthetic face data set in the CelebAMask-HQ / CelebA-Dialog layout.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::data::synth::dataset::{self, DatasetRequest};

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

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    if !(16..=2048).contains(&args.size) {
        bail!("--size {} is out of range; pick a side length between 16 and 2048 pixels", args.size);
    }
    if args.count == 0 {
        bail!("--count is 0; ask for at least one face");
    }
    let request = DatasetRequest { count: args.count, size: args.size, seed: args.seed };
    let threads = args.threads.unwrap_or(0);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("could not start the worker threads")?;
    if args.painted {
        pool.install(|| dataset::write_painted(&args.out, request))?;
        println!("wrote {} painted-style masks of {}x{} to {}", args.count, args.size, args.size, args.out.display());
        return Ok(());
    }
    let bar = super::progress::bar(args.count, "{bar:40} {pos}/{len} faces  {per_sec}  eta {eta}");
    let sheet = pool.install(|| dataset::write(&args.out, request, args.sheet, &|| bar.inc(1)))?;
    bar.finish();
    if let Some(path) = sheet {
        println!("contact sheet: {}", path.display());
    }
    println!("wrote {} faces of {}x{} to {}", args.count, args.size, args.size, args.out.display());
    Ok(())
}
