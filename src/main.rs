use std::process::ExitCode;

use clap::Parser;
use codiff::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::exit_code(match args.command {
        Some(command) => cli::run(command, args.verbose),
        None => {
            let options = codiff::app::StudioOptions { photo: args.photo, ..codiff::app::StudioOptions::with_startup_model() };
            codiff::app::run(options).map_err(anyhow::Error::msg)
        }
    })
}
