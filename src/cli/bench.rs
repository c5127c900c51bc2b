//! `codiff bench`: milliseconds per part of a collaborative step, and peak memory,
//! per model configuration. Each configuration runs in its own process so that
//! its peak memory is its own.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use crate::model::precision::WeightsDtype;
use crate::pipeline::bench::{configurations, finetune_memory, measure, side_by_side};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure only this configuration (full512, full256, tiny or default).
    #[arg(long)]
    pub only: Option<String>,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Instead of speed: the memory one Imagic fine-tuning step of each
    /// configuration's UNet takes, beside the estimate that decides whether
    /// `codiff edit` may start one.
    #[arg(long)]
    pub finetune_memory: bool,
    /// Instead of speed: every network on the GPU against the same on the
    /// CPU, from the same inputs; fails where a relative error reaches 1e-3.
    #[arg(long, conflicts_with = "finetune_memory")]
    pub parity: bool,
    /// For scripts/bench-vs-pytorch.sh: time the side-by-side cases one run at
    /// a time, as standard input asks (see `pipeline::bench::side_by_side`).
    #[arg(long, conflicts_with_all = ["finetune_memory", "parity", "only"])]
    pub serve: bool,
    /// Precision the loaded weights are kept in (as `codiff generate --weights-dtype`).
    #[arg(long, value_enum, default_value_t = WeightsDtype::F32)]
    pub weights_dtype: WeightsDtype,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.serve {
        return side_by_side::serve();
    }
    if let Some(only) = &args.only {
        let config = configurations()
            .into_iter()
            .find(|c| c.name == only)
            .with_context(|| format!("no configuration {only} on this machine"))?;
        let figures = if args.finetune_memory {
            finetune_memory(&config, &super::device()?)?
        } else if args.parity {
            // The device first: on the CPU alone there is nothing to compare, and no checkpoint to write.
            let gpu = super::device()?;
            super::parity::compare(&config.config, &config.checkpoint()?, &gpu)?
        } else {
            measure(&config, &super::device_choice()?, args.reps, args.weights_dtype)?
        };
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut results = BTreeMap::new();
    for config in configurations() {
        eprintln!("measuring {} ({})", config.name, config.config.display());
        let mut command = std::process::Command::new(&exe);
        command.args(["bench", "--only", config.name, "--reps", &args.reps.to_string()]);
        command.args(["--weights-dtype", args.weights_dtype.name()]);
        if args.finetune_memory {
            command.arg("--finetune-memory");
        }
        if args.parity {
            command.arg("--parity");
        }
        if super::verbose() {
            command.arg("--verbose");
        }
        let out = command
            .stderr(std::process::Stdio::inherit())
            .output()?;
        anyhow::ensure!(out.status.success(), "measuring {} failed", config.name);
        let figures: Value = serde_json::from_slice(&out.stdout)?;
        results.insert(config.name.to_string(), figures);
    }
    let report = json!({
        "configs": results,
        "threads": candle_core::utils::get_num_threads(),
        "weights_dtype": args.weights_dtype.name(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.finetune_memory {
        print_table(&results, &["finetune_parameters_m", "finetune_measured_mb", "finetune_estimate_mb"]);
    } else if args.parity {
        print_table(&results, &PARITY_COLUMNS);
    } else {
        print_table(&results, &SPEED_COLUMNS);
    }
    if args.parity {
        if let Some(failures) = super::parity::failures(&results) {
            anyhow::bail!(failures);
        }
    }
    Ok(())
}

const SPEED_COLUMNS: [&str; 8] =
    ["collab_step_ms", "unet_ms", "diffuser_ms", "vae_decode_ms", "text_encode_ms", "generate50_ms", "first_preview_ms", "peak_rss_mb"];

/// Relative errors are printed as they are, not to one decimal.
const PARITY_COLUMNS: [&str; 5] = ["mask_unet_rel_err", "text_unet_rel_err", "vae_decode_rel_err", "collab_eps_rel_err", "worst_rel_err"];

fn print_table(results: &BTreeMap<String, Value>, columns: &[&str]) {
    print!("{:<10}", "config");
    for c in columns {
        print!("{c:>22}");
    }
    println!();
    for (name, figures) in results {
        print!("{name:<10}");
        for &c in columns {
            match figures.get(c).and_then(Value::as_f64) {
                Some(v) if c.ends_with("_rel_err") => print!("{v:>22.2e}"),
                Some(v) => print!("{v:>22.1}"),
                None => print!("{:>22}", "-"),
            }
        }
        println!();
    }
}
