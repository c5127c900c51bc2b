//! The command line: one module per subcommand; no subcommand opens the studio.

use clap::{Parser, Subcommand};

pub mod synth;

#[derive(Debug, Parser)]
#[command(name = "codiff", version, about = "CoDiff Studio: paint a face mask, describe the face, let two diffusion models collaborate")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic face data set (masks, photos, captions, attributes).
    Synth(synth::SynthArgs),
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Synth(args) => synth::run(args),
    }
}
