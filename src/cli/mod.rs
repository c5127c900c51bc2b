//! The command line: one module per subcommand; no subcommand opens the studio.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "codiff", version, about = "CoDiff Studio: paint a face mask, describe the face, let two diffusion models collaborate")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {}
}
