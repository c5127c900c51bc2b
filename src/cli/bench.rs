//! `codiff bench`: milliseconds per part of a collaborative step, and peak memory,
//! per model configuration. Each configuration runs in its own process so that
//! its peak memory is its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Args;
use serde_json::{json, Value};

use crate::data::mask::Mask;
use crate::diffusion::collaborate::{CombineMode, PostProcess};
use crate::diffusion::ddim::{DdimSchedule, NoiseSource};
use crate::model::checkpoint::StrictLoader;
use crate::model::collaborative::CollaborativeModel;
use crate::model::config::ComposedConfig;
use crate::model::precision::WeightsDtype;
use crate::model::defaults::ModelFiles;
use crate::pipeline::generate::{self, GenerateRequest};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure only this configuration (full256, tiny or default).
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
    /// Precision the loaded weights are kept in (as `codiff generate --weights-dtype`).
    #[arg(long, value_enum, default_value_t = WeightsDtype::F32)]
    pub weights_dtype: WeightsDtype,
}

/// A configuration to measure: a composed config, with its weights or, where
/// none are on this machine, a checkpoint of random ones written once.
struct BenchConfig {
    name: &'static str,
    config: PathBuf,
    weights: Option<PathBuf>,
}

impl BenchConfig {
    /// The checkpoint to load: the configuration's own, or a random one.
    fn checkpoint(&self) -> anyhow::Result<PathBuf> {
        match &self.weights {
            Some(weights) => Ok(weights.clone()),
            None => random_checkpoint(&self.config),
        }
    }
}

fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The configurations present on this machine.
fn configurations() -> Vec<BenchConfig> {
    let mut found = Vec::new();
    let full = shared_dir().join("reference/configs/256_codiff_mask_text.yaml");
    if full.is_file() {
        found.push(BenchConfig { name: "full256", config: full, weights: None });
    }
    let tiny = shared_dir().join("golden/tiny_codiff.yaml");
    if tiny.is_file() {
        found.push(BenchConfig { name: "tiny", config: tiny.clone(), weights: Some(tiny.with_extension("ckpt")) });
    }
    if let Ok(files) = ModelFiles::default_models() {
        found.push(BenchConfig { name: "default", config: files.config, weights: Some(files.weights) });
    }
    found
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(only) = &args.only {
        let config = configurations()
            .into_iter()
            .find(|c| c.name == only)
            .with_context(|| format!("no configuration {only} on this machine"))?;
        let figures = if args.finetune_memory {
            finetune_memory(&config)?
        } else if args.parity {
            // The device first: on the CPU alone there is nothing to compare, and no checkpoint to write.
            let gpu = super::device()?;
            super::parity::compare(&config.config, &config.checkpoint()?, &gpu)?
        } else {
            measure(&config, args.reps, args.weights_dtype)?
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

/// Median milliseconds of `reps` runs of `f`, after one warm-up run. A GPU
/// runs its kernels after the call returns: the clock stops once it is done.
fn time_ms(device: &Device, reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn measure(bench: &BenchConfig, reps: usize, weights_dtype: WeightsDtype) -> anyhow::Result<Value> {
    let choice = super::device_choice()?;
    let device = choice.device.clone();
    // Loaded as the studio and `codiff generate` load it, so that the peak
    // memory is theirs (random weights where none are here: the speed does
    // not depend on the values).
    let checkpoint = bench.checkpoint()?;
    let mut peaks = PhasePeaks::start();
    let model = CollaborativeModel::load_keeping(&bench.config, &checkpoint, &device, Default::default(), weights_dtype)?;
    let rss_after_load_mb = memory_mb("VmRSS:")?;
    peaks.end("load_peak_rss_mb");
    let size = model.config.diffusion.latent_size;
    let mask_size = model.image_size();
    let mask = Mask::filled(mask_size, mask_size, 1);
    let caption = "This man has beard of medium length. He is in his thirties.".to_string();
    let (contexts, _) = model.encode_conditions(&mask, std::slice::from_ref(&caption))?;
    let x = Tensor::randn(0f32, 1f32, (1, model.config.diffusion.latent_channels, size, size), &device)?;
    let t = Tensor::full(501f32, 1, &device)?;
    let post = PostProcess::default();

    let mut figures = BTreeMap::new();
    figures.insert("rss_after_load_mb", rss_after_load_mb);
    figures.insert("unet_ms", time_ms(&device, reps, || Ok(model.mask_unet.forward(&x, &t, &contexts.mask).map(drop)?))?);
    figures.insert("diffuser_ms", time_ms(&device, reps, || Ok(model.mask_diffuser.forward(&x, &t, &contexts.mask).map(drop)?))?);
    figures.insert("text_encode_ms", time_ms(&device, reps, || Ok(model.encode_conditions(&mask, std::slice::from_ref(&caption)).map(drop)?))?);
    peaks.start_phase();
    figures.insert("vae_decode_ms", time_ms(&device, reps, || Ok(model.decode(&x).map(drop)?))?);
    peaks.end("decode_peak_rss_mb");
    let ddim = DdimSchedule::new(&model.schedule, 50, 1.0)?;
    peaks.start_phase();
    figures.insert(
        "collab_step_ms",
        time_ms(&device, reps, || {
            let step = model.predict_noise(&x, 501, &contexts, CombineMode::Collaborative, &post)?;
            let mut noise = NoiseSource::seeded([0]);
            ddim.step_from(&x, &step.eps, 25, &mut noise)?;
            Ok(())
        })?,
    );
    peaks.end("step_peak_rss_mb");
    // 50 steps take seconds on a GPU, and minutes at full size on a CPU.
    if bench.name == "default" || !device.is_cpu() {
        let request = GenerateRequest { mask: mask.clone(), text: caption.clone(), ..GenerateRequest::default() };
        let never = AtomicBool::new(false);
        let mut first_preview_ms = None;
        let start = Instant::now();
        generate::run(&model, &request, &never, &mut |event| {
            if first_preview_ms.is_none() && matches!(event, generate::Event::Step { .. }) {
                first_preview_ms = Some(start.elapsed().as_secs_f64() * 1e3);
            }
        })?;
        figures.insert("generate50_ms", start.elapsed().as_secs_f64() * 1e3);
        figures.insert("first_preview_ms", first_preview_ms.unwrap_or(f64::NAN));
    }
    figures.extend(peaks.finish()?);
    let mut figures = json!(figures);
    figures["device"] = json!(choice.description);
    Ok(figures)
}

/// The peak resident memory of phases of a run. Linux lets a process reset
/// its peak (VmHWM) by writing 5 to /proc/self/clear_refs; where it cannot,
/// each phase's figure is the peak so far, and `peak_rss_mb` is right either way.
struct PhasePeaks {
    figures: Vec<(&'static str, f64)>,
    /// The process's peak before the last reset (none: never reset).
    before_reset_mb: f64,
    error: Option<anyhow::Error>,
}

impl PhasePeaks {
    /// Starts the first phase at the start of the process.
    fn start() -> Self {
        Self { figures: Vec::new(), before_reset_mb: 0.0, error: None }
    }

    /// Starts a phase: from here VmHWM counts from the current resident memory.
    fn start_phase(&mut self) {
        match peak_rss_mb() {
            Ok(peak) => {
                self.before_reset_mb = self.before_reset_mb.max(peak);
                let _ = std::fs::write("/proc/self/clear_refs", "5");
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Ends the phase that started last, naming its peak.
    fn end(&mut self, name: &'static str) {
        match peak_rss_mb() {
            Ok(peak) => self.figures.push((name, peak)),
            Err(e) => self.error = Some(e),
        }
    }

    /// Every phase's peak and the process's, `peak_rss_mb`.
    fn finish(self) -> anyhow::Result<Vec<(&'static str, f64)>> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let peak = peak_rss_mb()?.max(self.before_reset_mb);
        let mut figures = self.figures;
        figures.push(("peak_rss_mb", peak));
        Ok(figures)
    }
}

/// A checkpoint of random weights for `config`, with every key the composed
/// model reads, as float32 safetensors; written once into the temporary
/// directory (about 4.3 GB for the full-size 256 model) and reused. The file
/// name carries a hash of the keys and shapes, so a changed architecture gets a new file.
fn random_checkpoint(config: &Path) -> anyhow::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let recorder = StrictLoader::recording();
    // Zero-cost stand-in tensors: this only records what the model asks for.
    CollaborativeModel::build(recorder.var_builder(DType::F32, &Device::Cpu), ComposedConfig::load(config)?, &Device::Cpu)?;
    let shapes = recorder.requested();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    shapes.hash(&mut hasher);
    let stem = config.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let dir = std::env::temp_dir().join("codiff-bench");
    let path = dir.join(format!("{stem}-random-{:016x}.safetensors", hasher.finish()));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let parameters: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
    eprintln!("writing {} ({:.1} GB of random float32 weights; once)", path.display(), parameters as f64 * 4e-9);
    let tensors = shapes.into_iter().enumerate().map(|(i, (name, shape))| {
        let fill = RandomTensor::fill_for(&name, &shape);
        (name, RandomTensor { shape, seed: i as u64, fill })
    });
    // The writer asks each tensor for its bytes in turn: one tensor is in memory at a time.
    safetensors::serialize_to_file(tensors, None, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// One tensor of a random checkpoint, drawn when the writer asks for its bytes.
struct RandomTensor {
    shape: Vec<usize>,
    seed: u64,
    fill: Fill,
}

enum Fill {
    Constant(f32),
    /// Uniform in [-bound, bound].
    Uniform(f32),
}

impl RandomTensor {
    /// Vectors named `weight` (the norms' scales) one, other vectors (biases)
    /// zero, matrices and kernels in PyTorch's default range (1 / sqrt(fan-in)),
    /// so that activations stay finite.
    fn fill_for(name: &str, shape: &[usize]) -> Fill {
        match shape {
            [_] if name.ends_with(".weight") => Fill::Constant(1.0),
            [_] => Fill::Constant(0.0),
            [_, rest @ ..] => Fill::Uniform(1.0 / (rest.iter().product::<usize>().max(1) as f32).sqrt()),
            [] => Fill::Constant(0.0),
        }
    }
}

impl safetensors::View for RandomTensor {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        use rand::{Rng, SeedableRng};
        let n = self.shape.iter().product::<usize>();
        let mut bytes = Vec::with_capacity(n * 4);
        match self.fill {
            Fill::Constant(v) => (0..n).for_each(|_| bytes.extend_from_slice(&v.to_le_bytes())),
            Fill::Uniform(bound) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                (0..n).for_each(|_| bytes.extend_from_slice(&rng.random_range(-bound..=bound).to_le_bytes()));
            }
        }
        std::borrow::Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}

/// One Imagic fine-tuning step (forward, backward, AdamW) of the mask UNet at
/// batch 1, in a process that holds nothing else: the growth of its peak
/// resident memory, and `edit::memory`'s estimate for the same UNet.
fn finetune_memory(bench: &BenchConfig) -> anyhow::Result<Value> {
    let device = super::device()?;
    let config = ComposedConfig::load(&bench.config)?;
    let unet_config = &config.mask.unet;
    let (size, channels) = (config.diffusion.latent_size, config.diffusion.latent_channels);
    let before = memory_mb("VmRSS:")?;
    let vars = VarMap::new();
    let unet = crate::model::unet::UNetModel::new(VarBuilder::from_varmap(&vars, DType::F32, &device), unet_config)?;
    let parameters: usize = vars.all_vars().iter().map(|v| v.elem_count()).sum();
    let context_dim = unet_config.context_dim.unwrap_or(1);
    // The mask encoder's context: one token per class.
    let context = Tensor::randn(0f32, 1f32, (1, crate::data::mask::NUM_CLASSES, context_dim), &device)?;
    let x = Tensor::randn(0f32, 1f32, (1, channels, size, size), &device)?;
    let t = Tensor::full(501f32, 1, &device)?;
    let mut opt = crate::model::optim::AdamW::new(&vars, 1e-6, None)?;
    for _ in 0..2 {
        let loss = (unet.forward(&x, &t, &context)? - &x)?.sqr()?.mean_all()?;
        opt.backward_step(&loss)?;
    }
    let measured = memory_mb("VmHWM:")? - before;
    let estimate = crate::pipeline::edit::memory::finetune_bytes(unet_config, parameters, size, crate::data::mask::NUM_CLASSES) as f64 / (1024.0 * 1024.0);
    Ok(json!({ "finetune_parameters_m": parameters as f64 / 1e6, "finetune_measured_mb": measured, "finetune_estimate_mb": estimate }))
}

/// The process's peak resident memory (VmHWM), in MB.
fn peak_rss_mb() -> anyhow::Result<f64> {
    memory_mb("VmHWM:")
}

/// A memory figure of this process from /proc/self/status, in MB.
fn memory_mb(field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(kb / 1024.0)
}
