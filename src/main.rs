use clap::Parser;
use codiff::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    match args.command {
        Some(command) => cli::run(command),
        None => codiff::app::run(codiff::app::StudioOptions::with_startup_model()).map_err(anyhow::Error::msg),
    }
}
