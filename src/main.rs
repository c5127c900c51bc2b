use clap::Parser;
use codiff::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    match args.command {
        Some(command) => cli::run(command),
        None => anyhow::bail!("the studio is not built yet; run `codiff --help` for the commands"),
    }
}
