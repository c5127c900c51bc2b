//! `codiff train`: trains the default models on the synthetic face world.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::Args;

use crate::pipeline::train::{self, Stage, TrainEvent, TrainRequest};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// What to train: one stage, or `all` (every stage whose output is missing, in order).
    #[arg(value_parser = PossibleValuesParser::new(Stage::ALL.map(Stage::name).into_iter().chain(["all"])))]
    stage: String,
    /// The model directory: configs, stage outputs, and checkpoints, logs and sample grids under train/.
    #[arg(long, default_value = "models")]
    out: PathBuf,
    /// Optimiser steps per network (default: the stage's recipe; a resumed run cools down towards this step).
    #[arg(long)]
    steps: Option<usize>,
    /// Continue from the stage's last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Start the stage's networks from these trained weights (e.g. a previous
    /// model's judges.safetensors) where there is no checkpoint to resume.
    #[arg(long)]
    init: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many seconds of training, at the next step, keeping
    /// the checkpoint; the command then succeeds (continue with --resume).
    #[arg(long)]
    time_limit_s: Option<u64>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(steps) = args.steps {
        // Zero steps would write the untrained network as the finished stage.
        super::output::check_count("--steps", steps, 100_000_000, "a stage needs at least one optimiser step")?;
    }
    let time_limit = args.time_limit_s.map(std::time::Duration::from_secs);
    let request = TrainRequest { dir: args.out, steps: args.steps, resume: args.resume, init: args.init, seed: args.seed, device: super::device()?, time_limit };
    let cancel = super::interrupted();
    let mut bars = super::progress::StageBars::new("{prefix:>10} {bar:32} {pos}/{len} loss {msg} {elapsed} < {eta}");
    let mut smoothed = None::<f32>;
    let mut sink = |event: TrainEvent| match event {
        TrainEvent::Started { stage, total_steps, first_step } => {
            bars.finish();
            let b = bars.stage(stage.name(), total_steps);
            b.set_position(first_step as u64);
            b.reset_eta();
            smoothed = None;
        }
        TrainEvent::Step { step, loss, .. } => {
            let s = smoothed.map_or(loss, |s| 0.98 * s + 0.02 * loss);
            smoothed = Some(s);
            if let Some(b) = bars.current() {
                b.set_position(step as u64);
                b.set_message(format!("{s:.4}"));
            }
        }
        TrainEvent::Note(note) => match bars.current() {
            Some(b) => b.println(note),
            None => eprintln!("{note}"),
        },
    };
    let result = match Stage::ALL.into_iter().find(|s| s.name() == args.stage) {
        None => train::run_all(&request, cancel, &mut sink),
        Some(stage) => train::run(stage, &request, cancel, &mut sink),
    };
    bars.finish();
    match result {
        Err(stopped @ train::TrainError::TimeLimit { .. }) => {
            eprintln!("{stopped}");
            Ok(())
        }
        other => Ok(other?),
    }
}
