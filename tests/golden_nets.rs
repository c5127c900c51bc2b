//! Parity of the networks with the original implementation: the tiny UNets,
//! dynamic diffusers and VAE of the golden directory must reproduce its
//! tensors, and the full-size released configs must ask for exactly the
//! checkpoint keys and shapes of the official manifest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use codiff::model::autoencoder::{AutoencoderConfig, AutoencoderKL};
use codiff::model::unet::{UNetConfig, UNetModel};
use serde::de::DeserializeOwned;

/// ||out - ref|| / ||ref|| bound for one float32 forward (golden README).
const FORWARD_TOLERANCE: f64 = 1e-4;

/// The directory named by `var`, or `default`; None (with a note) when it is
/// absent, a failure under CI=true.
fn data_dir(var: &str, default: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_string()));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} is missing (set {var}); under CI the golden tests must run",
        dir.display()
    );
    eprintln!("skipped: {} not found (set {var})", dir.display());
    None
}

fn read_yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value at a dotted path of a YAML document, deserialised.
fn yaml_at<T: DeserializeOwned>(doc: &serde_yaml::Value, dotted: &str) -> T {
    let value = dotted
        .split('.')
        .try_fold(doc, |v, key| v.get(key))
        .unwrap_or_else(|| panic!("YAML has no {dotted}"));
    serde_yaml::from_value(value.clone()).unwrap_or_else(|e| panic!("YAML {dotted}: {e}"))
}

/// A composed config and the two uni-modal configs it names, which the
/// original resolves from its repository root: here they sit beside it.
struct ComposedConfig {
    dir: PathBuf,
    composed: serde_yaml::Value,
    mask: serde_yaml::Value,
    text: serde_yaml::Value,
}

impl ComposedConfig {
    fn read(path: &Path) -> Self {
        let composed = read_yaml(path);
        let dir = path.parent().expect("config has a directory").to_path_buf();
        let sibling = |key: &str| -> PathBuf {
            let named: PathBuf = yaml_at::<String>(&composed, key).into();
            dir.join(named.file_name().expect("a file name"))
        };
        let mask = read_yaml(&sibling("model.params.seg_mask_ldm_config_path"));
        let text = read_yaml(&sibling("model.params.text_ldm_config_path"));
        Self {
            dir,
            composed,
            mask,
            text,
        }
    }

    fn unet(modal: &serde_yaml::Value) -> UNetConfig {
        yaml_at(modal, "model.params.unet_config.params")
    }

    fn diffuser(&self) -> UNetConfig {
        yaml_at(
            &self.composed,
            "model.params.compose_unet_config.params.confidence_map_predictor_config.params",
        )
    }

    fn vae(modal: &serde_yaml::Value) -> AutoencoderConfig {
        yaml_at(modal, "model.params.first_stage_config.params")
    }

    /// The uni-modal checkpoint named under `key`, when the directory holds it.
    fn modal_checkpoint(&self, key: &str) -> Option<PathBuf> {
        let named: PathBuf = yaml_at::<String>(&self.composed, key).into();
        Some(self.dir.join(named.file_name()?)).filter(|p| p.is_file())
    }
}

fn load_checkpoint(path: &Path) -> VarBuilder<'static> {
    let tensors = candle_core::pickle::read_all_with_key(path, Some("state_dict"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    VarBuilder::from_tensors(tensors.into_iter().collect(), DType::F32, &Device::Cpu)
}

/// Everything the golden tests share, loaded once.
struct Golden {
    config: ComposedConfig,
    expected: HashMap<String, Tensor>,
    codiff: VarBuilder<'static>,
}

impl Golden {
    fn get(&self, name: &str) -> &Tensor {
        self.expected
            .get(name)
            .unwrap_or_else(|| panic!("expected.safetensors has no {name}"))
    }
}

fn golden() -> Option<&'static Golden> {
    static GOLDEN: OnceLock<Option<Golden>> = OnceLock::new();
    GOLDEN
        .get_or_init(|| {
            let dir = data_dir("CODIFF_GOLDEN_DIR", "/work/shared/golden")?;
            let expected =
                candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu)
                    .expect("expected.safetensors loads");
            Some(Golden {
                config: ComposedConfig::read(&dir.join("tiny_codiff.yaml")),
                expected,
                codiff: load_checkpoint(&dir.join("tiny_codiff.ckpt")),
            })
        })
        .as_ref()
}

/// ||out - reference|| / ||reference||, after checking the shapes agree.
fn relative_error(out: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(out.dims(), reference.dims(), "shape");
    let norm = |t: &Tensor| -> f64 {
        t.to_dtype(DType::F64)
            .and_then(|t| t.sqr()?.sum_all()?.sqrt()?.to_scalar())
            .expect("norm")
    };
    let diff = (out - reference).expect("same shapes");
    norm(&diff) / norm(reference)
}

fn assert_close(what: &str, out: &Tensor, reference: &Tensor, tolerance: f64) {
    let error = relative_error(out, reference);
    eprintln!("{what}: relative error {error:.3e}");
    assert!(
        error < tolerance,
        "{what}: relative error {error:.3e} >= {tolerance:e}"
    );
}

/// The golden steps as the float values the UNet takes.
fn timesteps(g: &Golden) -> Tensor {
    g.get("unet.t")
        .to_dtype(DType::F32)
        .expect("unet.t converts")
}

#[test]
fn unets_reproduce_the_original_noise_predictions() {
    let Some(g) = golden() else { return };
    let (x, t) = (g.get("unet.x"), timesteps(g));
    let cases = [
        (
            "mask",
            &g.config.mask,
            "seg_mask_unet",
            "seg_mask_ldm_ckpt_path",
        ),
        ("text", &g.config.text, "text_unet", "text_ldm_ckpt_path"),
    ];
    for (modality, modal_yaml, composed_name, ckpt_key) in cases {
        let cfg = ComposedConfig::unet(modal_yaml);
        let context = g.get(&format!("{modality}.context"));
        let expected = g.get(&format!("unet.{modality}_eps"));
        let prefix = format!("model.{composed_name}.diffusion_model");
        let unet = UNetModel::new(g.codiff.pp(&prefix), &cfg).expect("UNet builds");
        let eps = unet.forward(x, &t, context).expect("UNet runs");
        assert_close(
            &format!("tiny_codiff {prefix}"),
            &eps,
            expected,
            FORWARD_TOLERANCE,
        );

        if let Some(path) = g
            .config
            .modal_checkpoint(&format!("model.params.{ckpt_key}"))
        {
            let vb = load_checkpoint(&path).pp("model.diffusion_model");
            let eps = UNetModel::new(vb, &cfg)
                .and_then(|u| u.forward(x, &t, context))
                .expect("UNet runs");
            assert_close(
                &format!("{} diffusion_model", path.display()),
                &eps,
                expected,
                FORWARD_TOLERANCE,
            );
        }
    }
}

#[test]
fn vae_reproduces_the_original_posterior_and_decoding() {
    let Some(g) = golden() else { return };
    let scale_factor: f64 = yaml_at(&g.config.composed, "model.params.scale_factor");
    let mut checkpoints = vec![("tiny_codiff".to_string(), g.codiff.clone(), &g.config.mask)];
    for (key, modal) in [
        ("seg_mask_ldm_ckpt_path", &g.config.mask),
        ("text_ldm_ckpt_path", &g.config.text),
    ] {
        if let Some(path) = g.config.modal_checkpoint(&format!("model.params.{key}")) {
            checkpoints.push((path.display().to_string(), load_checkpoint(&path), modal));
        }
    }
    for (name, vb, modal) in checkpoints {
        let vae = AutoencoderKL::new(vb.pp("first_stage_model"), &ComposedConfig::vae(modal))
            .expect("VAE builds");
        let image = g.get("vae.image");
        let posterior = vae.encode(image).expect("encode runs");
        assert_close(
            &format!("{name} vae.mean"),
            &posterior.mean,
            g.get("vae.mean"),
            FORWARD_TOLERANCE,
        );
        assert_close(
            &format!("{name} vae.logvar"),
            &posterior.logvar,
            g.get("vae.logvar"),
            FORWARD_TOLERANCE,
        );
        let (_, _, height, _) = image.dims4().expect("image is 4-D");
        let (_, _, latent_height, _) = posterior.mean.dims4().expect("mean is 4-D");
        assert_eq!(
            vae.downsampling_factor() * latent_height,
            height,
            "downsampling factor"
        );
        let z = (g.get("vae.z_scaled") / scale_factor).expect("scales");
        let decoded = vae.decode(&z).expect("decode runs");
        assert_close(
            &format!("{name} vae.decoded"),
            &decoded,
            g.get("vae.decoded"),
            FORWARD_TOLERANCE,
        );
    }
}

/// The training-time collaboration at t = 501: the dynamic diffusers run on the
/// UNet input x_t (`unet.x`) with their own conditions, their one-channel maps
/// are softmaxed per pixel into influence functions, which weight the two UNets'
/// noise predictions.
#[test]
fn dynamic_diffusers_reproduce_the_original_influence_functions() {
    let Some(g) = golden() else { return };
    let x = g.get("unet.x");
    let t = Tensor::full(501f32, x.dim(0).expect("batch"), &Device::Cpu).expect("t");
    let diffuser_cfg = g.config.diffuser();
    let run = |name: &str, cfg: &UNetConfig, context: &str| -> Tensor {
        let vb = g.codiff.pp(format!("model.{name}.diffusion_model"));
        UNetModel::new(vb, cfg)
            .and_then(|net| net.forward(x, &t, g.get(context)))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let d_mask = run(
        "seg_mask_confidence_predictor",
        &diffuser_cfg,
        "mask.context",
    );
    let d_text = run("text_confidence_predictor", &diffuser_cfg, "text.context");
    assert_eq!(
        d_mask.dim(1).expect("channels"),
        1,
        "a diffuser predicts one map"
    );

    let influence = candle_nn::ops::softmax(&Tensor::cat(&[&d_mask, &d_text], 1).expect("cat"), 1)
        .expect("softmax");
    let w_mask = influence.narrow(1, 0, 1).expect("w_mask");
    let w_text = influence.narrow(1, 1, 1).expect("w_text");
    assert_close(
        "compose_raw.t501.w_mask",
        &w_mask,
        g.get("compose_raw.t501.w_mask"),
        FORWARD_TOLERANCE,
    );

    let eps_mask = run(
        "seg_mask_unet",
        &ComposedConfig::unet(&g.config.mask),
        "mask.context",
    );
    let eps_text = run(
        "text_unet",
        &ComposedConfig::unet(&g.config.text),
        "text.context",
    );
    let eps = (eps_mask.broadcast_mul(&w_mask).expect("mul")
        + eps_text.broadcast_mul(&w_text).expect("mul"))
    .expect("add");
    assert_close(
        "compose_raw.t501.eps",
        &eps,
        g.get("compose_raw.t501.eps"),
        FORWARD_TOLERANCE,
    );
}

/// A weight source that hands out broadcast zeros and records every key and
/// shape asked for.
#[derive(Clone, Default)]
struct RecordingBackend(Arc<Mutex<BTreeMap<String, Vec<usize>>>>);

impl SimpleBackend for RecordingBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        self.0
            .lock()
            .expect("recorder lock")
            .insert(name.to_string(), s.dims().to_vec());
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("{name} was requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The manifest's keys under `prefix` and the keys a network asks for must be
/// the same set with the same shapes.
fn assert_keys_match(
    manifest: &BTreeMap<String, Vec<usize>>,
    prefix: &str,
    build: impl FnOnce(VarBuilder),
) {
    let recorder = RecordingBackend::default();
    build(VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu).pp(prefix));
    let requested = recorder.0.lock().expect("recorder lock").clone();
    let dotted = format!("{prefix}.");
    let expected: BTreeMap<_, _> = manifest
        .iter()
        .filter(|(k, _)| k.starts_with(&dotted))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !requested.contains_key(*k))
        .collect();
    let extra: Vec<_> = requested
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{prefix}: never requested {missing:?}; not in the checkpoint {extra:?}"
    );
    for (key, shape) in &expected {
        assert_eq!(&requested[key], shape, "{key}");
    }
    eprintln!("{prefix}: {} keys match", expected.len());
}

#[test]
fn full_size_configs_request_exactly_the_released_checkpoint_keys() {
    let Some(reference) = data_dir("CODIFF_REFERENCE_DIR", "/work/shared/reference") else {
        return;
    };
    let manifests: BTreeMap<String, BTreeMap<String, Vec<usize>>> = serde_json::from_str(
        &std::fs::read_to_string(reference.join("official-manifest.json")).expect("manifest reads"),
    )
    .expect("manifest parses");
    for (model, manifest) in &manifests {
        let config = ComposedConfig::read(&reference.join("configs").join(format!("{model}.yaml")));
        let unets = [
            (
                "model.seg_mask_unet.diffusion_model",
                ComposedConfig::unet(&config.mask),
            ),
            (
                "model.text_unet.diffusion_model",
                ComposedConfig::unet(&config.text),
            ),
            (
                "model.seg_mask_confidence_predictor.diffusion_model",
                config.diffuser(),
            ),
            (
                "model.text_confidence_predictor.diffusion_model",
                config.diffuser(),
            ),
        ];
        for (prefix, cfg) in unets {
            assert_keys_match(manifest, prefix, |vb| {
                UNetModel::new(vb, &cfg).expect("UNet builds");
            });
        }
        for modal in [&config.mask, &config.text] {
            assert_keys_match(manifest, "first_stage_model", |vb| {
                AutoencoderKL::new(vb, &ComposedConfig::vae(modal)).expect("VAE builds");
            });
        }
    }
}
