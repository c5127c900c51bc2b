//! The cases that `scripts/bench-vs-pytorch.sh` times here and in PyTorch,
//! one run at a time, so that the two sides alternate under the same load.
//!
//! `codiff bench --serve` reads one command per line on standard input and
//! answers each with one JSON line: `cases` (every case with the shapes the
//! PyTorch side builds its twin from), `setup NAME` (builds the case, runs it
//! once to warm up, and answers with its trained variables' names and shapes,
//! which the other side checks its network against), `run` (times the case
//! once: `{"ms": ...}`), `peak` (the machine's FMA peak at this process's
//! thread count: `{"gflops": ...}`, null without FMA). A failed command
//! answers `{"error": "..."}`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};

use super::shared_dir;
use crate::data::mask::NUM_CLASSES;
use crate::kernels;
use crate::diffusion::collaborate::{combine, CombineMode, Influence, PostProcess};
use crate::diffusion::modality::PerModality;
use crate::model::collaborative::{side_by_side, Contexts};
use crate::model::config::{ComposedConfig, LdmConfig};
use crate::model::optim::AdamW;
use crate::model::unet::{UNetConfig, UNetModel};
use crate::pipeline::train::init::seeded_var_builder;

/// Training batch of the default models (`pipeline::train::ldm`).
const TRAIN_BATCH: usize = 16;
/// The text encoder's context length in the released configs (`max_seq_len`).
const TEXT_TOKENS: usize = 77;

/// One measurement, described by the shapes both sides build it from.
#[derive(Debug, Clone)]
pub enum Case {
    /// `(n x n) @ (n x n)`.
    Matmul { n: usize },
    /// 3x3 convolution, stride 1, padding 1, `channels` in and out, with bias;
    /// `train`: forward, then the gradients of input, weight and bias.
    Conv { channels: usize, side: usize, batch: usize, train: bool },
    /// `softmax(q k^T / sqrt(d)) v` over `heads` (batch x heads) of `channels`;
    /// `train`: forward, then the gradients of q, k and v.
    Attention { heads: usize, channels: usize, queries: usize, keys: usize, train: bool },
    /// One training step of a UNet: forward at `batch`, MSE against the noise,
    /// backward, gradient clipping and AdamW.
    UNetTrain { config: PathBuf, batch: usize },
    /// One forward at batch 1 of a UNet (`diffuser`: the composed config's dynamic diffuser).
    UNetForward { config: PathBuf, diffuser: bool },
    /// One collaborative step at batch 1 of the composed config: both
    /// collaborators' UNets and both dynamic diffusers, side by side, then the
    /// per-pixel softmax of the diffusers' maps and the weighted sum of the
    /// two noise predictions. One UNet and one diffuser, each run under both
    /// conditions, stand in for the pairs (the same on the PyTorch side): the
    /// time is the same, at half the memory.
    CollaborativeStep { config: PathBuf },
}

impl Case {
    pub fn name(&self) -> String {
        match self {
            Case::Matmul { n } => format!("matmul {n}^3"),
            Case::Conv { channels, side, batch, train } => {
                let pass = if *train { "forward + backward" } else { "forward" };
                format!("conv 3x3 {channels}ch {side}x{side} batch {batch}, {pass}")
            }
            Case::Attention { heads, channels, queries, keys, train } => {
                let kind = if queries == keys { "self" } else { "cross" };
                let pass = if *train { "forward + backward" } else { "forward" };
                format!("{kind}-attention {heads} heads x {channels}ch, {queries} x {keys} tokens, {pass}")
            }
            Case::UNetTrain { batch, .. } => format!("default-size UNet training step, batch {batch}"),
            Case::UNetForward { diffuser: false, .. } => "full-size UNet forward".into(),
            Case::UNetForward { diffuser: true, .. } => "full-size dynamic diffuser forward".into(),
            Case::CollaborativeStep { .. } => "full-size collaborative step".into(),
        }
    }

    /// The case as the PyTorch side reads it.
    pub fn describe(&self) -> Value {
        let mut v = match self {
            Case::Matmul { n } => json!({ "kind": "matmul", "n": n }),
            Case::Conv { channels, side, batch, train } => {
                json!({ "kind": "conv", "channels": channels, "side": side, "batch": batch, "train": train })
            }
            Case::Attention { heads, channels, queries, keys, train } => json!({
                "kind": "attention", "heads": heads, "channels": channels, "queries": queries, "keys": keys, "train": train
            }),
            Case::UNetTrain { config, batch } => json!({ "kind": "unet_train", "config": config, "batch": batch }),
            Case::UNetForward { config, diffuser } => json!({ "kind": "unet_forward", "config": config, "diffuser": diffuser }),
            Case::CollaborativeStep { config } => json!({ "kind": "collab_step", "config": config, "text_tokens": TEXT_TOKENS }),
        };
        v["name"] = json!(self.name());
        v["context_tokens"] = json!(NUM_CLASSES);
        v
    }
}

/// The kernel table's shapes, the default models' training step and, where
/// the released configs are on this machine, the full-size networks.
pub fn cases() -> Vec<Case> {
    let mut cases = vec![Case::Matmul { n: 1024 }];
    for (channels, side, batch) in [(192, 64, 1), (384, 32, 1), (960, 8, 1), (64, 32, 16)] {
        cases.push(Case::Conv { channels, side, batch, train: false });
    }
    cases.push(Case::Conv { channels: 64, side: 32, batch: 16, train: true });
    for train in [false, true] {
        for (heads, channels, queries, keys) in [(32, 12, 1024, 1024), (32, 4, 1024, 1024), (32, 30, 4096, 77)] {
            cases.push(Case::Attention { heads, channels, queries, keys, train });
        }
    }
    let recipe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/pipeline/train/recipe/mask.yaml");
    cases.push(Case::UNetTrain { config: recipe, batch: TRAIN_BATCH });
    let configs = shared_dir().join("reference/configs");
    if configs.join("256_mask.yaml").is_file() && configs.join("256_codiff_mask_text.yaml").is_file() {
        cases.push(Case::UNetForward { config: configs.join("256_mask.yaml"), diffuser: false });
        cases.push(Case::UNetForward { config: configs.join("256_codiff_mask_text.yaml"), diffuser: true });
        cases.push(Case::CollaborativeStep { config: configs.join("256_codiff_mask_text.yaml") });
    }
    cases
}

/// A case built and ready to run.
type Runner = Box<dyn FnMut() -> anyhow::Result<()>>;

fn randn(dims: &[usize]) -> candle_core::Result<Tensor> {
    Tensor::randn(0f32, 1.0, dims, &Device::Cpu)
}

/// `loss = sum(y * probe)`, so that every output element gets a gradient.
fn backward_through(y: Tensor, probe: &Tensor) -> anyhow::Result<()> {
    (y * probe)?.sum_all()?.backward()?;
    Ok(())
}

/// `t` as a variable, whose gradient a backward computes, when `train` is set.
fn tracked(t: Tensor, train: bool) -> candle_core::Result<Tensor> {
    if train {
        Var::from_tensor(&t).map(Var::into_inner)
    } else {
        Ok(t)
    }
}

/// Builds `case`; also returns the names and shapes of its network's variables.
fn build(case: &Case) -> anyhow::Result<(Runner, BTreeMap<String, Vec<usize>>)> {
    let no_vars = BTreeMap::new();
    Ok(match case.clone() {
        Case::Matmul { n } => {
            let (a, b) = (randn(&[n, n])?, randn(&[n, n])?);
            (Box::new(move || Ok(a.matmul(&b).map(drop)?)), no_vars)
        }
        Case::Conv { channels: c, side, batch, train } => {
            let x = tracked(randn(&[batch, c, side, side])?, train)?;
            let w = tracked((randn(&[c, c, 3, 3])? / ((c * 9) as f64).sqrt())?, train)?;
            let b = tracked(randn(&[c])?, train)?;
            let probe = randn(&[batch, c, side, side])?;
            let run = move || -> anyhow::Result<()> {
                let y = kernels::conv2d(&x, &w, Some(&b), 1, 1)?;
                if train { backward_through(y, &probe) } else { Ok(()) }
            };
            (Box::new(run), no_vars)
        }
        Case::Attention { heads, channels: d, queries, keys, train } => {
            let q = tracked(randn(&[heads, queries, d])?, train)?;
            let k = tracked(randn(&[heads, keys, d])?, train)?;
            let v = tracked(randn(&[heads, keys, d])?, train)?;
            let probe = randn(&[heads, queries, d])?;
            let scale = (d as f64).powf(-0.5);
            let run = move || -> anyhow::Result<()> {
                let y = kernels::attention(&q, &k, &v, scale)?;
                if train { backward_through(y, &probe) } else { Ok(()) }
            };
            (Box::new(run), no_vars)
        }
        Case::UNetTrain { config, batch } => {
            let config = LdmConfig::load(&config)?.unet;
            let (vars, unet) = unet(&config)?;
            let names = shapes(&vars);
            let (x, t, context) = unet_inputs(&config, batch)?;
            let noise = randn(x.dims())?;
            let mut opt = AdamW::new(&vars, 1e-4, None)?;
            let run = move || -> anyhow::Result<()> {
                let loss = (unet.forward(&x, &t, &context)? - &noise)?.sqr()?.mean_all()?;
                opt.backward_step(&loss)?;
                Ok(())
            };
            (Box::new(run), names)
        }
        Case::UNetForward { config, diffuser } => {
            let config = if diffuser { ComposedConfig::load(&config)?.diffuser } else { LdmConfig::load(&config)?.unet };
            let (unet, names) = frozen_unet(&config)?;
            let (x, t, context) = unet_inputs(&config, 1)?;
            (Box::new(move || Ok(unet.forward(&x, &t, &context).map(drop)?)), names)
        }
        Case::CollaborativeStep { config } => {
            let composed = ComposedConfig::load(&config)?;
            let (collaborator, unet_names) = frozen_unet(&composed.mask.unet)?;
            let (diffuser, diffuser_names) = frozen_unet(&composed.diffuser)?;
            let (x, t, mask_context) = unet_inputs(&composed.mask.unet, 1)?;
            let text_context = randn(&[1, TEXT_TOKENS, mask_context.dim(2)?])?;
            let contexts = Contexts { mask: mask_context, text: text_context };
            let step = t.to_vec1::<f32>()?[0] as usize;
            let run = move || -> anyhow::Result<()> {
                let eps = side_by_side(PerModality { mask: &collaborator, text: &collaborator }, &x, &t, &contexts)?;
                let maps = side_by_side(PerModality { mask: &diffuser, text: &diffuser }, &x, &t, &contexts)?;
                let influence = Influence::Diffusers(maps.as_ref());
                combine(&eps.mask, &eps.text, influence, step, CombineMode::Softmax, &PostProcess::default())?;
                Ok(())
            };
            let mut names = BTreeMap::new();
            for (prefix, network) in [("unet", unet_names), ("diffuser", diffuser_names)] {
                names.extend(network.into_iter().map(|(k, v)| (format!("{prefix}.{k}"), v)));
            }
            (Box::new(run), names)
        }
    })
}

/// A UNet of `config` with random weights as plain tensors, not variables:
/// a forward that records nothing for a backward. Also returns its variables' shapes.
fn frozen_unet(config: &UNetConfig) -> anyhow::Result<(UNetModel, BTreeMap<String, Vec<usize>>)> {
    let (vars, _) = unet(config)?;
    let weights = vars.data().lock().expect("the VarMap lock is never poisoned").iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    let unet = UNetModel::new(VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu), config)?;
    Ok((unet, shapes(&vars)))
}

/// A UNet of `config` with the training stages' random initialisation.
fn unet(config: &UNetConfig) -> anyhow::Result<(VarMap, UNetModel)> {
    let vars = VarMap::new();
    let vb: VarBuilder = seeded_var_builder(&vars, 0, &Device::Cpu);
    let unet = UNetModel::new(vb, config)?;
    Ok((vars, unet))
}

/// Latents, timesteps and a mask-encoder-sized context for `batch` samples.
fn unet_inputs(config: &UNetConfig, batch: usize) -> anyhow::Result<(Tensor, Tensor, Tensor)> {
    let x = randn(&[batch, config.in_channels, config.image_size, config.image_size])?;
    let steps: Vec<f32> = (0..batch).map(|i| (1 + i * 997 / batch) as f32).collect();
    let t = Tensor::from_vec(steps, batch, &Device::Cpu)?;
    let context = randn(&[batch, NUM_CLASSES, config.context_dim.unwrap_or(1)])?;
    Ok((x, t, context))
}

fn shapes(vars: &VarMap) -> BTreeMap<String, Vec<usize>> {
    let data = vars.data().lock().expect("the VarMap lock is never poisoned");
    data.iter().map(|(name, var)| (name.clone(), var.dims().to_vec())).collect()
}

/// Answers the harness's commands until standard input closes.
pub fn serve() -> anyhow::Result<()> {
    let all = cases();
    let mut current: Option<Runner> = None;
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let (command, argument) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match command {
            "cases" => Ok(json!(all.iter().map(Case::describe).collect::<Vec<_>>())),
            "setup" => {
                current = None; // free the previous case's memory first
                setup(&all, argument).map(|(runner, names)| {
                    current = Some(runner);
                    json!({ "variables": names })
                })
            }
            "run" => match current.as_mut() {
                Some(run) => {
                    let start = Instant::now();
                    run().map(|()| json!({ "ms": start.elapsed().as_secs_f64() * 1e3 }))
                }
                None => Err(anyhow::anyhow!("no case is set up; send 'setup NAME' first")),
            },
            "peak" => Ok(json!({ "gflops": super::peak::fma_peak_gflops(rayon::current_num_threads()) })),
            other => Err(anyhow::anyhow!("unknown command '{other}' (cases, setup NAME, run, peak)")),
        };
        let answer = answer.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
        let mut out = stdout.lock();
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

fn setup(all: &[Case], name: &str) -> anyhow::Result<(Runner, BTreeMap<String, Vec<usize>>)> {
    let case = all.iter().find(|c| c.name() == name).ok_or_else(|| anyhow::anyhow!("no case named '{name}'"))?;
    let (mut runner, names) = build(case)?;
    runner()?;
    Ok((runner, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_are_unique_and_every_small_case_runs() {
        let all = cases();
        let names: std::collections::HashSet<String> = all.iter().map(Case::name).collect();
        assert_eq!(names.len(), all.len());
        // The attention and convolution cases at their real sizes take seconds in
        // a debug build; the training step shows that a network case builds and steps.
        let train = all.iter().find(|c| matches!(c, Case::UNetTrain { .. })).expect("the training case is always there");
        let Case::UNetTrain { config, .. } = train else { unreachable!() };
        let (mut run, names) = build(&Case::UNetTrain { config: config.clone(), batch: 2 }).unwrap();
        run().unwrap();
        assert!(names.contains_key("input_blocks.0.0.weight"), "{:?}", names.keys().take(3).collect::<Vec<_>>());
        let unet = LdmConfig::load(config).unwrap().unet;
        assert_eq!(names["input_blocks.0.0.weight"], vec![unet.model_channels, unet.in_channels, 3, 3]);
    }
}
