//! AdamW with an exponential moving average of the weights, whose whole state
//! (weights, both moments, EMA, step) saves to one safetensors file so a run
//! can stop and resume exactly. candle-nn's AdamW keeps its moments private,
//! which is why this one exists.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::VarMap;

use crate::kernels::{self, AdamWStep};

/// One trained variable and its optimiser state.
struct Slot {
    name: String,
    var: Var,
    first_moment: Tensor,
    second_moment: Tensor,
    ema: Option<Tensor>,
}

/// AdamW (decoupled weight decay) with global gradient-norm clipping, a linear
/// learning-rate warm-up and, when the run's last step is known, a linear
/// cool-down to zero over its last fifth.
pub struct AdamW {
    slots: Vec<Slot>,
    pub step: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    /// The run's last step, where the cool-down ends; `None`: constant after the warm-up.
    /// Short runs end with weights as noisy as their learning rate makes them;
    /// cooling down takes that noise out (it is not saved: each run sets its own end).
    pub end_step: Option<usize>,
    pub weight_decay: f64,
    pub clip_norm: f64,
    /// EMA decay, or `None` for no EMA.
    pub ema_decay: Option<f64>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;
/// The share of a run's steps over which the learning rate cools down.
const COOLDOWN: f64 = 0.2;

impl AdamW {
    /// Every variable of `vars`, in name order so that runs are reproducible.
    pub fn new(vars: &VarMap, lr: f64, ema_decay: Option<f64>) -> Result<Self> {
        let data = vars.data().lock().expect("the VarMap lock is never poisoned");
        let mut named: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                // Each tensor of its own: the step updates them in place.
                let first_moment = var.as_tensor().zeros_like()?;
                let second_moment = var.as_tensor().zeros_like()?;
                let ema = ema_decay.map(|_| var.as_tensor().detach().copy()).transpose()?;
                Ok(Slot { name, first_moment, second_moment, ema, var })
            })
            .collect::<Result<_>>()?;
        Ok(Self { slots, step: 0, lr, warmup_steps: 200, end_step: None, weight_decay: 0.0, clip_norm: 1.0, ema_decay })
    }

    /// Backpropagates `loss` and takes one step. Returns the gradient norm before clipping.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<f32> {
        let grads = loss.backward()?;
        self.apply(&grads)
    }

    fn apply(&mut self, grads: &GradStore) -> Result<f32> {
        let mut squares = 0f64;
        for slot in &self.slots {
            if let Some(g) = grads.get(slot.var.as_tensor()) {
                squares += kernels::sum_squares(g)?;
            }
        }
        let norm = squares.sqrt() as f32;
        let clip = if norm as f64 > self.clip_norm { self.clip_norm / norm as f64 } else { 1.0 };
        self.step += 1;
        let step = AdamWStep {
            clip,
            beta1: BETA1,
            beta2: BETA2,
            eps: EPS,
            lr: self.lr * self.lr_factor(self.step),
            weight_decay: self.weight_decay,
            c1: 1.0 - BETA1.powi(self.step as i32),
            c2: 1.0 - BETA2.powi(self.step as i32),
        };
        // Early on the average follows the weights closely (as in the original's LitEma).
        let ema_decay = self.ema_decay.map(|d| d.min((1.0 + self.step as f64) / (10.0 + self.step as f64)));
        for slot in &self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            // In place: no op on the variable is recorded, and no tensor is allocated per operation.
            kernels::adamw_step(slot.var.as_tensor(), g, &slot.first_moment, &slot.second_moment, &step)?;
            if let (Some(ema), Some(decay)) = (&slot.ema, ema_decay) {
                kernels::ema_update(ema, slot.var.as_tensor(), decay)?;
            }
        }
        Ok(norm)
    }

    /// The learning rate of `step` (counted from 1) as a share of the peak.
    fn lr_factor(&self, step: usize) -> f64 {
        let warmup = (step as f64 / self.warmup_steps.max(1) as f64).min(1.0);
        let cooldown = self.end_step.map_or(1.0, |end| {
            let length = (end as f64 * COOLDOWN).max(1.0);
            ((end as f64 + 1.0 - step as f64) / length).clamp(0.0, 1.0)
        });
        warmup.min(cooldown)
    }

    /// The weights to ship: the EMA where there is one, else the current ones
    /// (the live tensors, which the next step updates in place).
    pub fn final_weights(&self) -> HashMap<String, Tensor> {
        self.slots
            .iter()
            // Detached: a network built from these must not record a backward
            // graph (the autoencoder's held-out pass after training held
            // every activation and ran out of 23 GB).
            .map(|s| (s.name.clone(), s.ema.clone().unwrap_or_else(|| s.var.as_tensor().clone()).detach()))
            .collect()
    }

    /// Starts from the weights in `path` (a trained model's file, e.g. a
    /// previous run's judges) instead of the seeded initialisation: every
    /// variable must be there under its own name and shape, in any float
    /// type (a shipped model stores its matrices as f16). The moments and
    /// the step start afresh.
    pub fn start_from(&mut self, path: &Path) -> Result<()> {
        let device = self.slots.first().map(|s| s.var.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let saved = candle_core::safetensors::load(path, &device)?;
        for s in &mut self.slots {
            let weights = saved.get(&s.name).ok_or_else(|| {
                candle_core::Error::Msg(format!("{} has no {}: it holds another network", path.display(), s.name))
            })?;
            if weights.dims() != s.var.dims() {
                candle_core::bail!("{}: {} is {:?} there but {:?} here: another architecture", path.display(), s.name, weights.dims(), s.var.dims());
            }
            let weights = &weights.to_dtype(s.var.dtype())?;
            s.var.set(weights)?;
            if let Some(ema) = &mut s.ema {
                *ema = weights.copy()?;
            }
        }
        Ok(())
    }

    /// Writes weights, moments, EMA and step to `path` (atomically: a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for s in &self.slots {
            tensors.insert(format!("weights.{}", s.name), s.var.as_tensor().clone());
            tensors.insert(format!("adam_m.{}", s.name), s.first_moment.clone());
            tensors.insert(format!("adam_v.{}", s.name), s.second_moment.clone());
            if let Some(ema) = &s.ema {
                tensors.insert(format!("ema.{}", s.name), ema.clone());
            }
        }
        let device = candle_core::Device::Cpu;
        tensors.insert("step".into(), Tensor::new(&[self.step as u32], &device)?);
        crate::data::output::save_safetensors(&tensors, path)
    }

    /// Restores the state [`save`](Self::save) wrote; the variables must match by name and shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self.slots.first().map(|s| s.var.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let saved = candle_core::safetensors::load(path, &device)?;
        let get = |key: String| -> Result<Tensor> {
            saved.get(&key).cloned().ok_or_else(|| {
                candle_core::Error::Msg(format!("{} has no {key}: it is from another model", path.display()))
            })
        };
        for s in &mut self.slots {
            s.var.set(&get(format!("weights.{}", s.name))?)?;
            s.first_moment = get(format!("adam_m.{}", s.name))?;
            s.second_moment = get(format!("adam_v.{}", s.name))?;
            if s.ema.is_some() {
                s.ema = Some(get(format!("ema.{}", s.name))?);
            }
        }
        self.step = get("step".into())?.to_dtype(DType::U32)?.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimises_a_quadratic_and_resumes_where_it_stopped() -> Result<()> {
        let dev = Device::Cpu;
        let run = |steps: usize, resume: Option<&Path>, save: Option<&Path>| -> Result<Vec<f32>> {
            let vars = VarMap::new();
            let w = vars.get((4,), "w", candle_nn::init::ZERO, DType::F32, &dev)?;
            let target = Tensor::new(&[1f32, -2., 3., 0.5], &dev)?;
            let mut opt = AdamW::new(&vars, 0.1, Some(0.9))?;
            opt.warmup_steps = 1;
            if let Some(p) = resume {
                opt.load(p)?;
            }
            for _ in 0..steps {
                opt.backward_step(&(&w - &target)?.sqr()?.sum_all()?)?;
            }
            if let Some(p) = save {
                opt.save(p)?;
            }
            w.to_vec1()
        };
        let dir = std::env::temp_dir().join(format!("codiff-adamw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(candle_core::Error::wrap)?;
        let state = dir.join("state.safetensors");
        let straight = run(300, None, None)?;
        run(120, None, Some(&state))?;
        let resumed = run(180, Some(&state), None)?;
        assert_eq!(straight, resumed, "a resumed run continues exactly");
        for (got, want) in straight.iter().zip([1f32, -2., 3., 0.5]) {
            assert!((got - want).abs() < 0.05, "{got} vs {want}");
        }
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn networks_built_from_the_final_weights_record_no_backward_graph() -> Result<()> {
        let dev = Device::Cpu;
        for ema in [None, Some(0.9)] {
            let vars = VarMap::new();
            let w = vars.get((4,), "w", candle_nn::init::ONE, DType::F32, &dev)?;
            let mut opt = AdamW::new(&vars, 0.1, ema)?;
            opt.backward_step(&w.sqr()?.sum_all()?)?;
            for weight in opt.final_weights().values() {
                assert!(!(weight * 2.0)?.track_op(), "EMA {ema:?}: an op on a final weight records its graph");
            }
        }
        Ok(())
    }

    #[test]
    fn starts_from_a_trained_file_and_rejects_one_of_another_network() -> Result<()> {
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("codiff-adamw-init-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(candle_core::Error::wrap)?;
        let write = |name: &str, tensors: &[(&str, Tensor)]| -> Result<std::path::PathBuf> {
            let path = dir.join(name);
            candle_core::safetensors::save(&tensors.iter().cloned().map(|(k, t)| (k.to_string(), t)).collect::<HashMap<_, _>>(), &path)?;
            Ok(path)
        };
        let trained = Tensor::new(&[1f32, -2., 3., 0.5], &dev)?;
        let fresh = || -> Result<(VarMap, AdamW)> {
            let vars = VarMap::new();
            vars.get((4,), "net.w", candle_nn::init::ZERO, DType::F32, &dev)?;
            let opt = AdamW::new(&vars, 0.1, Some(0.9))?;
            Ok((vars, opt))
        };
        let good = write("good.safetensors", &[("net.w", trained.clone()), ("other.b", trained.clone())])?;
        let half = write("half.safetensors", &[("net.w", trained.to_dtype(DType::F16)?)])?;
        for path in [good, half] {
            let (_, mut opt) = fresh()?;
            opt.start_from(&path)?;
            assert_eq!(opt.step, 0);
            for weight in opt.final_weights().values() {
                assert_eq!(weight.dtype(), DType::F32, "{}", path.display());
                assert_eq!(weight.to_vec1::<f32>()?, trained.to_vec1::<f32>()?, "the weights and their EMA start from {}", path.display());
            }
        }
        let missing = write("missing.safetensors", &[("other.w", trained.clone())])?;
        let short = write("short.safetensors", &[("net.w", trained.narrow(0, 0, 3)?)])?;
        for (path, says) in [(missing, "has no net.w"), (short, "another architecture")] {
            let error = fresh()?.1.start_from(&path).expect_err("a file of another network").to_string();
            assert!(error.contains(says), "{error}");
        }
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn learning_rate_warms_up_then_cools_down_over_the_last_fifth() -> Result<()> {
        let vars = VarMap::new();
        vars.get((1,), "w", candle_nn::init::ZERO, DType::F32, &Device::Cpu)?;
        let mut opt = AdamW::new(&vars, 1.0, None)?;
        opt.warmup_steps = 10;
        assert_eq!([1, 5, 10, 500].map(|s| opt.lr_factor(s)), [0.1, 0.5, 1.0, 1.0], "constant without an end");
        opt.end_step = Some(1000);
        let factors = [10, 800, 801, 900, 1000].map(|s| opt.lr_factor(s));
        assert_eq!(factors[..3], [1.0, 1.0, 1.0], "full rate until the last fifth");
        assert!((factors[3] - 0.505).abs() < 1e-9 && (factors[4] - 0.005).abs() < 1e-9, "{factors:?}");
        Ok(())
    }
}
