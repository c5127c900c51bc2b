//! `codiff eval`: the paper's Tables 1 and 2 and its influence figure on the
//! synthetic world, with the default models (or any composed model) and the judges.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::pipeline::evaluate::{self, mode_name, report, EvalEvent, EvalRequest, MODES};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Generations per mode: held-out (mask, caption) pairs, or the --conditions folder's pairs cycled.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// A folder of masks/*.png and captions.json (file name -> caption or list of captions) to
    /// evaluate on instead of held-out synthetic conditions.
    #[arg(long)]
    conditions: Option<PathBuf>,
    /// Seed of the sampling noise (the same for every mode).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where results.json, results.md and the figures go.
    #[arg(long)]
    out: PathBuf,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM eta (1.0 as the original generation script; the same noise in every mode).
    #[arg(long, default_value_t = 1.0)]
    eta: f64,
    /// Conditions sampled together.
    #[arg(long, default_value_t = 25)]
    batch: usize,
    /// The modes to run, comma-separated (text, mask, composable, collaborative,
    /// no-spatial, no-temporal, plain-softmax); all of them by default.
    #[arg(long, value_delimiter = ',')]
    modes: Vec<String>,
    #[command(flatten)]
    model: super::JudgedModelArgs,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    use super::output::{check_count, check_range};
    check_count("--count", args.count, 1_000_000, "the figures are means over the conditions")?;
    check_count("--steps", args.steps, 1000, "the model was trained on 1000 noise levels")?;
    check_range("--eta", args.eta, 0.0..=1.0, "0 samples deterministically, 1 adds as much noise as DDPM")?;
    check_count("--batch", args.batch, 64, "more only runs out of memory")?;
    let modes = if args.modes.is_empty() { MODES.to_vec() } else { evaluate::modes_named(&args.modes).map_err(anyhow::Error::msg)? };
    let (model, judges) = args.model.load()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("could not create {}", args.out.display()))?;
    let conditions = args.conditions.as_deref().map(crate::data::conditions::read).transpose()?;
    let source = match (&args.conditions, &conditions) {
        (Some(dir), Some(pairs)) => format!("{} (mask, caption) pairs of {}, cycled", pairs.len(), dir.display()),
        _ => "held-out synthetic conditions".to_string(),
    };
    let request = EvalRequest { count: args.count, seed: args.seed, steps: args.steps, eta: args.eta, batch: args.batch, conditions, modes };
    let bar = super::progress::bar(args.count * request.modes.len(), "{bar:40} {pos}/{len} images ({msg}) {elapsed} < {eta}");
    let cancel = super::interrupted();
    let report = evaluate::run(&model, &judges, &request, cancel, &mut |EvalEvent::Progress { done, mode, .. }| {
        bar.set_position(done as u64);
        bar.set_message(mode_name(mode));
    })?;
    bar.finish();
    report::write_results(&report, &source, &args.out)?;
    println!("{}", report::results_table(&report, &source));
    println!("wrote {}", args.out.display());
    Ok(())
}
