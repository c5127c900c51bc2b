//! The command line: one module per subcommand; no subcommand opens the studio.

mod bench;
mod convert;
mod coverage;
mod edit;
mod eval;
mod eval_edits;
mod generate;
mod models;
mod output;
mod parity;
mod progress;
mod synth;
mod train;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

pub use models::{JudgedModelArgs, ModelArgs};

#[derive(Debug, Parser)]
#[command(name = "codiff", version, about = "CoDiff Studio: paint a face mask, describe the face, let two diffusion models collaborate")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open the studio with this photo to edit (PNG, JPEG or WebP).
    #[arg(long)]
    pub photo: Option<PathBuf>,
    /// Say which device (GPU or CPU) the networks run on.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate faces from a mask and a caption.
    Generate(generate::GenerateArgs),
    /// Edit a photo's mask and description at once (Imagic per modality, or fast DDIM inversion).
    Edit(edit::EditArgs),
    /// Convert a checkpoint (Lightning .ckpt or safetensors) to safetensors, optionally with f16 weights.
    Convert(convert::ConvertArgs),
    /// Measure milliseconds per step and peak memory of each model configuration.
    Bench(bench::BenchArgs),
    /// Generate a synthetic face data set (masks, photos, captions, attributes).
    Synth(synth::SynthArgs),
    /// Compare how sets of masks lay faces out (face box, class shares).
    Coverage(coverage::CoverageArgs),
    /// Reproduce the paper's Tables 1 and 2 on held-out synthetic conditions, with the judges.
    Eval(eval::EvalArgs),
    /// Measure collaborative photo editing against each uni-modal edit on held-out synthetic photos.
    EvalEdits(eval_edits::EvalEditsArgs),
    /// Train the default models on the synthetic face world (stage by stage, resumable).
    Train(train::TrainArgs),
}

/// Runs one subcommand.
pub fn run(command: Command, verbose: bool) -> anyhow::Result<()> {
    VERBOSE.store(verbose, Ordering::Relaxed);
    crate::model::pin_thread_count(None);
    crate::model::keep_freed_memory();
    catch_interrupt();
    match command {
        Command::Generate(args) => generate::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Train(args) => train::run(args),
        Command::Coverage(args) => coverage::run(args),
        Command::Eval(args) => eval::run(args),
        Command::EvalEdits(args) => eval_edits::run(args),
        Command::Edit(args) => edit::run(args),
    }
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Whether `--verbose` was given.
pub(crate) fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// The device the networks run on, as `CODIFF_DEVICE` and this build call for.
/// A GPU that was looked for and not found is said on stderr; `--verbose`
/// names the device in any case.
pub(crate) fn device() -> anyhow::Result<candle_core::Device> {
    Ok(device_choice()?.device)
}

/// [`device`], with the words that describe it.
pub(crate) fn device_choice() -> anyhow::Result<crate::model::device::DeviceChoice> {
    let choice = crate::model::device::DeviceChoice::from_env()?;
    if let Some(fallback) = &choice.fallback {
        eprintln!("{fallback}");
    }
    if verbose() {
        eprintln!("device: {}", choice.description);
    }
    Ok(choice)
}

/// The process's exit status for `result`, printing its error for the person:
/// the sentence and its causes, not a backtrace.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Set by the first Ctrl-C: long jobs stop at their next step and keep what
/// they have (training writes its checkpoint). A second Ctrl-C quits at once.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn catch_interrupt() {
    let installed = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current step (Ctrl-C again to quit at once)");
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will quit without saving ({e})");
    }
}

/// The flag long jobs poll as their cancel signal.
pub(crate) fn interrupted() -> &'static AtomicBool {
    &INTERRUPTED
}
