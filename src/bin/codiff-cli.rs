//! The command line without the studio, for machines with no display (GPU
//! servers): the linker leaves the window toolkit out, half the size.

use std::process::ExitCode;

use clap::Parser;
use codiff::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::exit_code(match args.command {
        Some(command) => cli::run(command, args.verbose),
        None => Err(anyhow::anyhow!("this build has no studio; name a subcommand (codiff-cli --help lists them)")),
    })
}
