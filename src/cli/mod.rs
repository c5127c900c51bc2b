//! The command line: one module per subcommand; no subcommand opens the studio.

mod bench;
mod convert;
mod edit;
mod eval;
mod generate;
mod synth;
mod train;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "codiff", version, about = "CoDiff Studio: paint a face mask, describe the face, let two diffusion models collaborate")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate faces from a mask and a caption.
    Generate(generate::GenerateArgs),
    /// Edit a photo's mask and description at once (Imagic per modality, or fast DDIM inversion).
    Edit(edit::EditArgs),
    /// Convert a PyTorch Lightning checkpoint to safetensors.
    Convert(convert::ConvertArgs),
    /// Measure milliseconds per step and peak memory of each model configuration.
    Bench(bench::BenchArgs),
    /// Generate a synthetic face data set (masks, photos, captions, attributes).
    Synth(synth::SynthArgs),
    /// Reproduce the paper's Tables 1 and 2 on held-out synthetic conditions, with the judges.
    Eval(eval::EvalArgs),
    /// Train the default models on the synthetic face world (stage by stage, resumable).
    Train(train::TrainArgs),
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate(args) => generate::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Edit(args) => edit::run(args),
    }
}
