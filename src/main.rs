use std::process::ExitCode;

use clap::Parser;
use codiff::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    let result = match args.command {
        Some(command) => cli::run(command, args.verbose),
        None => {
            let options = codiff::app::StudioOptions { photo: args.photo, ..codiff::app::StudioOptions::with_startup_model() };
            codiff::app::run(options).map_err(anyhow::Error::msg)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The sentence and its causes, not a backtrace: errors here are meant for the person.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
