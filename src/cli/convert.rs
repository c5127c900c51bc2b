//! `codiff convert`: a Lightning checkpoint to safetensors, so later loads are a memory map.

use std::path::PathBuf;

use clap::Args;

use crate::model::checkpoint::Weights;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The checkpoint to read (.ckpt; only its `state_dict` tensors are read, nothing is executed).
    pub input: PathBuf,
    /// The safetensors file to write (through OUTPUT.partial, renamed into place once complete).
    pub output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    super::output::check_outputs(std::slice::from_ref(&args.output), &[&args.input], args.force)?;
    let weights = Weights::open(&args.input)?;
    weights.save_safetensors(&args.output)?;
    eprintln!("wrote {} tensors to {}", weights.shapes().len(), args.output.display());
    Ok(())
}
