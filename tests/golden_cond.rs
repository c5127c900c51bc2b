//! Parity of the condition encoders and the diffusion math with the original
//! implementation, against the golden tensors (see ../shared/golden/README.md).
//! Every size and setting is read from the golden directory itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use codiff::data::mask::Mask;
use codiff::diffusion::collaborate::{combine, CombineMode, DiffuserMaps, PostProcess};
use codiff::diffusion::ddim::{DdimSchedule, NoiseSource};
use codiff::diffusion::schedule::{NoiseSchedule, ScheduleConfig};
use codiff::model::mask_encoder::{MaskEncoder, MaskEncoderConfig};
use codiff::model::text_encoder::{TextEncoder, TextEncoderConfig};
use codiff::model::tokenizer::BertTokenizer;

const TOLERANCE: f64 = 1e-4;

/// The golden directory: $CODIFF_GOLDEN_DIR, else `shared/golden` beside the
/// checkout (or beside its parent, for worktrees). None (test skipped) when
/// absent, except under CI=true where that is a failure.
fn golden_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("CODIFF_GOLDEN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => ["../shared/golden", "../../shared/golden"]
            .iter()
            .map(|rel| manifest.join(rel))
            .find(|dir| dir.is_dir())
            .unwrap_or_else(|| manifest.join("../shared/golden")),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "golden directory {} is missing", dir.display());
    eprintln!("skipped: golden directory {} not found (set CODIFF_GOLDEN_DIR)", dir.display());
    None
}

struct Golden {
    dir: PathBuf,
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
}

impl Golden {
    fn load() -> Option<Self> {
        let dir = golden_dir()?;
        let path = dir.join("expected.safetensors");
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let metadata = header.metadata().clone().unwrap_or_default();
        Some(Self { dir, tensors, metadata })
    }

    fn get(&self, name: &str) -> &Tensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("expected.safetensors lacks {name}"))
    }

    /// `model.params` of a YAML config in the golden directory.
    fn params(&self, yaml: &str) -> serde_yaml::Value {
        let text = std::fs::read_to_string(self.dir.join(yaml)).unwrap();
        let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        config["model"]["params"].clone()
    }

    /// The uni-modal config (`model.params`) and checkpoint file name the
    /// composed config names under `{key}_config_path` / `{key}_ckpt_path`.
    fn branch(&self, key: &str) -> (serde_yaml::Value, String) {
        let composed = self.params("tiny_codiff.yaml");
        let file = |field: &str| {
            let field = format!("{key}_{field}_path");
            let path = composed[field.as_str()].as_str().unwrap_or_else(|| panic!("tiny_codiff.yaml lacks {field}"));
            Path::new(path).file_name().unwrap().to_string_lossy().into_owned()
        };
        (self.params(&file("config")), file("ckpt"))
    }

    /// The weights of a checkpoint, None when the file is absent.
    fn weights(&self, ckpt: &str) -> Option<VarBuilder<'static>> {
        let path = self.dir.join(ckpt);
        if !path.is_file() {
            eprintln!("{ckpt:?} not in the golden directory; its check skipped");
            return None;
        }
        let tensors: HashMap<String, Tensor> =
            candle_core::pickle::read_all_with_key(&path, Some("state_dict")).unwrap().into_iter().collect();
        Some(VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu))
    }
}

fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "shape");
    let got = got.to_dtype(DType::F64).unwrap();
    let want = want.to_dtype(DType::F64).unwrap();
    let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap().sqrt();
    let (diff, reference) = (norm(&(&got - &want).unwrap()), norm(&want));
    if reference > 0.0 {
        diff / reference
    } else {
        diff
    }
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    let err = rel_err(got, want);
    eprintln!("{name}: rel err {err:.3e}");
    assert!(err < TOLERANCE, "{name}: rel err {err:.3e} >= {TOLERANCE:e}");
}

fn f64_tensor(values: &[f64]) -> Tensor {
    Tensor::new(values, &Device::Cpu).unwrap()
}

fn captions(golden: &Golden) -> (Vec<String>, Vec<Vec<u32>>) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.dir.join("tokenizer.json")).unwrap()).unwrap();
    let captions = serde_json::from_value(json["captions"].clone()).unwrap();
    let ids = serde_json::from_value(json["ids"].clone()).unwrap();
    (captions, ids)
}

fn token_ids(tokenizer: &BertTokenizer, texts: &[String]) -> Tensor {
    let rows: Vec<Tensor> = texts
        .iter()
        .map(|text| Tensor::new(tokenizer.encode(text).unwrap().ids, &Device::Cpu).unwrap())
        .collect();
    Tensor::stack(&rows, 0).unwrap()
}

#[test]
fn tokenizer_ids_match_exactly() {
    let Some(golden) = Golden::load() else { return };
    let (captions, want) = captions(&golden);
    let tokenizer = BertTokenizer::new().unwrap();
    for (caption, want) in captions.iter().zip(&want) {
        assert_eq!(&tokenizer.encode(caption).unwrap().ids, want, "caption {caption:?}");
    }
    let stacked: Vec<Vec<i64>> = golden.get("tokenizer.ids").to_vec2().unwrap();
    let as_i64: Vec<Vec<i64>> = want.iter().map(|row| row.iter().map(|&id| id as i64).collect()).collect();
    assert_eq!(stacked, as_i64);
}

#[test]
fn text_context_matches_from_composed_and_text_checkpoints() {
    let Some(golden) = Golden::load() else { return };
    let want = golden.get("text.context");
    let texts: Vec<String> = match golden.metadata.get("captions_for_text_context") {
        Some(json) => serde_json::from_str(json).unwrap(),
        None => captions(&golden).0[..want.dim(0).unwrap()].to_vec(),
    };
    let ids = token_ids(&BertTokenizer::new().unwrap(), &texts);
    let (params, text_ckpt) = golden.branch("text_ldm");
    let config: TextEncoderConfig = serde_yaml::from_value(params["cond_stage_config"]["params"].clone()).unwrap();
    for (ckpt, prefix) in [("tiny_codiff.ckpt", "cond_stage_model.text_cond_stage_model"), (text_ckpt.as_str(), "cond_stage_model")] {
        let Some(vb) = golden.weights(ckpt) else { continue };
        let encoder = TextEncoder::new(vb.pp(prefix), &config).unwrap();
        assert_close(&format!("text.context ({ckpt})"), &encoder.forward(&ids).unwrap(), want);
    }
}

#[test]
fn mask_onehot_and_context_match() {
    let Some(golden) = Golden::load() else { return };
    let png = golden.metadata.get("mask_png").map_or("29980.png", String::as_str);
    let mask = Mask::load(golden.dir.join(png)).unwrap();
    let (params, mask_ckpt) = golden.branch("seg_mask_ldm");
    let config: MaskEncoderConfig = serde_yaml::from_value(params["cond_stage_config"]["params"].clone()).unwrap();
    let onehot = MaskEncoder::one_hot(&mask, config.mask_embed_dim, &Device::Cpu).unwrap();
    assert_eq!(rel_err(&onehot, golden.get("mask.onehot")), 0.0, "mask.onehot");
    let want = golden.get("mask.context");
    for (ckpt, prefix) in [("tiny_codiff.ckpt", "cond_stage_model.seg_mask_cond_stage_model"), (mask_ckpt.as_str(), "cond_stage_model")] {
        let Some(vb) = golden.weights(ckpt) else { continue };
        let context = MaskEncoder::new(vb.pp(prefix), &config).unwrap().forward(&onehot).unwrap();
        let batch = context.repeat((want.dim(0).unwrap(), 1, 1)).unwrap();
        assert_close(&format!("mask.context ({ckpt})"), &batch, want);
    }
}

fn schedule(golden: &Golden) -> NoiseSchedule {
    let config: ScheduleConfig = serde_yaml::from_value(golden.params("tiny_codiff.yaml")).unwrap();
    NoiseSchedule::from_config(&config).unwrap()
}

#[test]
fn schedule_matches() {
    let Some(golden) = Golden::load() else { return };
    let schedule = schedule(&golden);
    assert_close("schedule.betas", &f64_tensor(schedule.betas()), golden.get("schedule.betas"));
    assert_close("schedule.alphas_cumprod", &f64_tensor(schedule.alphas_cumprod()), golden.get("schedule.alphas_cumprod"));
}

#[test]
fn every_ddim_table_matches() {
    let Some(golden) = Golden::load() else { return };
    let schedule = schedule(&golden);
    let mut checked = 0;
    for name in golden.tensors.keys() {
        // ddim.S{n}.eta{e}.sigmas, with timesteps, alphas and alphas_prev beside it.
        let Some(rest) = name.strip_prefix("ddim.S").and_then(|r| r.strip_suffix(".sigmas")) else { continue };
        let (steps, eta) = rest.split_once(".eta").unwrap();
        let (steps, eta): (usize, f64) = (steps.parse().unwrap(), eta.parse().unwrap());
        let ddim = DdimSchedule::new(&schedule, steps, eta).unwrap();
        let prefix = format!("ddim.S{steps}");
        let timesteps: Vec<i64> = golden.get(&format!("{prefix}.timesteps")).to_vec1().unwrap();
        assert_eq!(ddim.timesteps().iter().map(|&t| t as i64).collect::<Vec<_>>(), timesteps, "{prefix}.timesteps");
        assert_close(&format!("{prefix}.alphas"), &f64_tensor(ddim.alphas()), golden.get(&format!("{prefix}.alphas")));
        let alphas_prev = golden.get(&format!("{prefix}.alphas_prev"));
        assert_close(&format!("{prefix}.alphas_prev"), &f64_tensor(ddim.alphas_prev()), alphas_prev);
        assert_close(name, &f64_tensor(ddim.sigmas()), golden.get(name));
        checked += 1;
    }
    assert!(checked > 0, "no ddim.S*.eta*.sigmas tensors in the golden file");
}

/// Replays the recorded sampling run through our DDIM step with the recorded
/// noise. The UNets are not run: each step's eps is recovered from the
/// recorded x_t and pred_x0, so this checks the update x_t -> x_{t-1}.
#[test]
fn ddim_steps_replay_the_recorded_trajectory() {
    let Some(golden) = Golden::load() else { return };
    let steps: usize = golden.metadata["sample_S"].parse().unwrap();
    let eta: f64 = golden.metadata["sample_eta"].parse().unwrap();
    let ddim = DdimSchedule::new(&schedule(&golden), steps, eta).unwrap();
    let (x_inter, pred_x0) = (golden.get("sample.x_inter"), golden.get("sample.pred_x0"));
    let mut source = NoiseSource::injected(golden.get("sample.x_T").clone(), golden.get("sample.noise").clone());
    let mut x = source.start_latent(golden.get("sample.x_T").dims(), &Device::Cpu).unwrap();
    for step in 0..ddim.len() {
        let a = ddim.alphas()[ddim.len() - 1 - step];
        let want_x0 = pred_x0.get(step).unwrap();
        let eps = ((&x - (&want_x0 * a.sqrt()).unwrap()).unwrap() / (1.0 - a).sqrt()).unwrap();
        let (x_prev, x0) = ddim.step_from(&x, &eps, step, &mut source).unwrap();
        assert_close(&format!("sample.pred_x0[{step}]"), &x0, &want_x0);
        assert_close(&format!("sample.x_inter[{step}]"), &x_prev, &x_inter.get(step).unwrap());
        x = x_inter.get(step).unwrap();
    }
}

/// Diffuser maps whose softmax gives the mask model weight `w` (the text map is 0).
fn maps_for_weight(w: &Tensor) -> (Tensor, Tensor) {
    let logit = (w / (1.0 - w).unwrap()).unwrap().log().unwrap();
    let zeros = logit.zeros_like().unwrap();
    (logit, zeros)
}

/// The post-processing applied to the recorded plain-softmax weights must give
/// the recorded influence functions of the same step.
#[test]
fn post_processing_turns_softmax_weights_into_the_recorded_influence() {
    let Some(golden) = Golden::load() else { return };
    let post = PostProcess::default();
    let mut checked = 0;
    for name in golden.tensors.keys() {
        let Some(t) = name.strip_prefix("compose_raw.t").and_then(|r| r.strip_suffix(".w_mask")) else { continue };
        let (d_mask, d_text) = maps_for_weight(golden.get(name));
        let eps = golden.get(&format!("compose.t{t}.eps"));
        let maps = Some(DiffuserMaps { mask: &d_mask, text: &d_text });
        let c = combine(eps, eps, maps, t.parse().unwrap(), CombineMode::Collaborative, &post).unwrap();
        assert_close(&format!("compose.t{t}.w_mask"), &c.w_mask, golden.get(&format!("compose.t{t}.w_mask")));
        assert_close(&format!("compose.t{t}.w_text"), &c.w_text, golden.get(&format!("compose.t{t}.w_text")));
        checked += 1;
    }
    assert!(checked > 0, "no compose_raw.t*.w_mask tensors in the golden file");
}

/// Where a recorded collaborative step ran at the same t as the recorded UNet
/// outputs, eps = w_mask eps_mask + w_text eps_text with those outputs. The
/// softmax weights are recovered by inverting the post-processing.
#[test]
fn collaborative_eps_combines_the_recorded_unet_outputs() {
    let Some(golden) = Golden::load() else { return };
    let post = PostProcess::default();
    let unet_t: Vec<i64> = golden.get("unet.t").to_vec1().unwrap();
    let mut checked = 0;
    for (item, &t) in unet_t.iter().enumerate() {
        let Some(eps) = golden.tensors.get(&format!("compose.t{t}.eps")) else { continue };
        let pick = |name: &str| golden.get(name).narrow(0, item, 1).unwrap();
        // Inverse of w' = k s r / (k s r + 1 - s r) for the softmax weight r.
        let (w, k, s) = (pick(&format!("compose.t{t}.w_mask")), post.mask_scale.unwrap(), post.decay(t as usize));
        let r = (&w / (((1.0 - &w).unwrap() * k).unwrap() + &w).unwrap().affine(s, 0.0).unwrap()).unwrap();
        let (d_mask, d_text) = maps_for_weight(&r);
        let maps = Some(DiffuserMaps { mask: &d_mask, text: &d_text });
        let c = combine(&pick("unet.mask_eps"), &pick("unet.text_eps"), maps, t as usize, CombineMode::Collaborative, &post)
            .unwrap();
        assert_close(&format!("compose.t{t}.w_mask[{item}]"), &c.w_mask, &w);
        assert_close(&format!("compose.t{t}.eps[{item}]"), &c.eps, &eps.narrow(0, item, 1).unwrap());
        checked += 1;
    }
    eprintln!("{checked} batch items with matching t checked");
}
