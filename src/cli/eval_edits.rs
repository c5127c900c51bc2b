//! `codiff eval-edits`: collaborative editing against each uni-modal edit, on
//! held-out synthetic photos with known targets, judged by the judges.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::pipeline::evaluate::edits::{self, EditEvalRequest};
use crate::pipeline::evaluate::report;

#[derive(Debug, Args)]
pub struct EvalEditsArgs {
    /// Held-out photos, each edited in mask and caption at once.
    #[arg(long, default_value_t = 50)]
    count: usize,
    /// How many of them Imagic also edits (minutes each at the original settings).
    #[arg(long, default_value_t = 10)]
    imagic_count: usize,
    /// DDIM steps of inversion and sampling (eta 0).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    #[arg(long, default_value_t = 500)]
    embed_steps: usize,
    #[arg(long, default_value_t = 1000)]
    finetune_steps: usize,
    /// Imagic's interpolation weights, each judged on its own (the original sweeps 0 to 2.5).
    #[arg(long, value_delimiter = ',', default_value = "1,2.5")]
    imagic_alphas: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where results.json, results.md and examples.png go.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: super::JudgedModelArgs,
}

pub fn run(args: EvalEditsArgs) -> anyhow::Result<()> {
    use super::output::{check_count, check_range};
    check_count("--count", args.count, 1_000_000, "the figures are means over the photos")?;
    check_count("--steps", args.steps, 1000, "the model was trained on 1000 noise levels")?;
    for &alpha in &args.imagic_alphas {
        check_range("--imagic-alphas", alpha, -100.0..=100.0, "Imagic interpolates at 0 to 2; the studio goes to 10")?;
    }
    let (model, judges) = args.model.load()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("could not create {}", args.out.display()))?;
    let request = EditEvalRequest {
        count: args.count,
        imagic_count: args.imagic_count,
        steps: args.steps,
        embed_steps: args.embed_steps,
        finetune_steps: args.finetune_steps,
        imagic_alphas: args.imagic_alphas.clone(),
        seed: args.seed,
    };
    let bar = super::progress::bar(0, "{bar:40} {pos}/{len} edits {elapsed} < {eta}");
    let report = edits::run(&model, &judges, &request, super::interrupted(), &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    report::write_edit_results(&report, &args.out)?;
    println!("{}", report::edit_results_table(&report));
    println!("wrote {}", args.out.display());
    Ok(())
}
