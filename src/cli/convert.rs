//! `codiff convert`: a checkpoint (Lightning `.ckpt` or safetensors) to
//! safetensors, so later loads are a memory map; with `--weights-dtype f16`
//! its matrices and kernels are stored as f16 (how `models/` is made).

use std::path::PathBuf;

use clap::Args;

use crate::model::checkpoint::Weights;
use crate::model::precision::WeightsDtype;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The checkpoint to read (.ckpt, of which only the `state_dict` tensors are read and nothing is executed; or .safetensors).
    pub input: PathBuf,
    /// The safetensors file to write (through OUTPUT.partial, renamed into place once complete).
    pub output: PathBuf,
    /// How to store the weights: f16 keeps every matrix and kernel that fits f16's range as f16, vectors as f32 (the loader widens them back).
    #[arg(long, value_enum, default_value_t = WeightsDtype::F32)]
    pub weights_dtype: WeightsDtype,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    super::output::check_outputs(std::slice::from_ref(&args.output), &[&args.input], args.force)?;
    let weights = Weights::open(&args.input)?;
    weights.save_safetensors(&args.output, args.weights_dtype)?;
    eprintln!("wrote {} tensors to {} ({})", weights.shapes().len(), args.output.display(), args.weights_dtype.name());
    Ok(())
}
