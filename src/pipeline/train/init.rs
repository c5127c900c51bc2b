//! Variables initialised from a seeded generator. candle draws a `VarMap`'s
//! initial values from an unseeded thread RNG on the CPU, which would make two
//! runs of the same command differ; this backend draws the same distributions
//! (the networks' `Init` hints) from ChaCha seeded by the run's seed.

use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

struct SeededInit {
    vars: VarMap,
    rng: Mutex<ChaCha8Rng>,
}

/// A `VarBuilder` that creates the variables of `vars`, deterministically from `seed`
/// (in the order the network asks for them, which its constructor fixes).
pub fn seeded_var_builder(vars: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    let backend = SeededInit { vars: vars.clone(), rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)) };
    VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
}

fn draw(init: Init, shape: &Shape, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = shape.elem_count();
    let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| (mean + std * rng.sample::<f64, _>(StandardNormal)) as f32;
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => (0..n).map(|_| normal(rng, mean, stdev)).collect(),
        Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up) as f32).collect(),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => (0..n).map(|_| normal(rng, 0.0, std)).collect(),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect()
                }
            }
        }
    }
}

impl SimpleBackend for SeededInit {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let mut vars = self.vars.data().lock().map_err(|_| candle_core::Error::Msg("the variable map lock was poisoned".into()))?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("variable {name} exists with shape {:?}, asked for {shape:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let values = {
            let mut rng = self.rng.lock().map_err(|_| candle_core::Error::Msg("the init generator lock was poisoned".into()))?;
            draw(init, &shape, &mut rng)
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)?;
        vars.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _device: &Device) -> Result<Tensor> {
        candle_core::bail!("variable {name} has no shape to initialise it with")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.data().lock().map(|v| v.contains_key(name)).unwrap_or(false)
    }
}
