//! Which device inference runs on. A build with the `cuda` (or `metal`)
//! feature takes the GPU when one opens and falls back to the CPU, saying so,
//! when none does; `CODIFF_DEVICE` overrides the choice.

use candle_core::Device;
use thiserror::Error;

/// The environment variable that overrides the device choice.
pub const ENV: &str = "CODIFF_DEVICE";

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("{ENV}={0} is not a device; use cpu, cuda or metal (or leave it unset to pick the GPU when there is one)")]
    Unknown(String),
    #[error("{ENV}={0}, but this build has no {0} support; rebuild with `--features {0}` (see the README)")]
    NotBuilt(&'static str),
    #[error("{ENV}={0}, but no {0} GPU could be opened: {1}")]
    Unavailable(&'static str, String),
}

/// What the person asked for in `CODIFF_DEVICE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The GPU this build supports when it opens, else the CPU.
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl DeviceRequest {
    /// Reads `CODIFF_DEVICE`; unset or empty means [`DeviceRequest::Auto`].
    pub fn from_env() -> Result<Self, DeviceError> {
        Self::parse(std::env::var(ENV).ok().as_deref())
    }

    pub fn parse(value: Option<&str>) -> Result<Self, DeviceError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "auto") => Ok(Self::Auto),
            Some("cpu") => Ok(Self::Cpu),
            Some("cuda" | "gpu") => Ok(Self::Cuda),
            Some("metal") => Ok(Self::Metal),
            Some(_) => Err(DeviceError::Unknown(value.unwrap_or_default().to_string())),
        }
    }
}

/// A GPU backend compiled into this build, and how to open its first device.
pub struct Gpu {
    /// The backend's name, as `CODIFF_DEVICE` spells it.
    pub kind: &'static str,
    pub open: fn() -> candle_core::Result<Device>,
}

impl Gpu {
    /// The GPU backend of this build, if any (cuda before metal).
    pub fn built_in() -> Option<Self> {
        #[cfg(feature = "cuda")]
        return Some(Self { kind: "cuda", open: || Device::new_cuda(0) });
        #[cfg(all(feature = "metal", not(feature = "cuda")))]
        return Some(Self { kind: "metal", open: || Device::new_metal(0) });
        #[cfg(not(any(feature = "cuda", feature = "metal")))]
        None
    }
}

/// The device chosen, with the words to tell the person about it.
#[derive(Debug, Clone)]
pub struct DeviceChoice {
    pub device: Device,
    /// "CUDA GPU 0 (NVIDIA H200)", "CPU (16 threads)".
    pub description: String,
    /// Set when a GPU was wanted but did not open: the sentence that says so.
    pub fallback: Option<String>,
}

impl DeviceChoice {
    /// The device `CODIFF_DEVICE` and this build call for.
    pub fn from_env() -> Result<Self, DeviceError> {
        choose(DeviceRequest::from_env()?, Gpu::built_in())
    }

    fn cpu(fallback: Option<String>) -> Self {
        let threads = candle_core::utils::get_num_threads();
        let description = format!("CPU ({threads} thread{})", if threads == 1 { "" } else { "s" });
        Self { device: Device::Cpu, description, fallback }
    }
}

/// The device for `request`, given the GPU backend this build has.
pub fn choose(request: DeviceRequest, gpu: Option<Gpu>) -> Result<DeviceChoice, DeviceError> {
    let wanted = match request {
        DeviceRequest::Cpu => return Ok(DeviceChoice::cpu(None)),
        DeviceRequest::Auto => None,
        DeviceRequest::Cuda => Some("cuda"),
        DeviceRequest::Metal => Some("metal"),
    };
    let gpu = match (gpu, wanted) {
        (None, None) => return Ok(DeviceChoice::cpu(None)),
        (Some(gpu), Some(kind)) if gpu.kind != kind => return Err(DeviceError::NotBuilt(kind)),
        (None, Some(kind)) => return Err(DeviceError::NotBuilt(kind)),
        (Some(gpu), _) => gpu,
    };
    match (gpu.open)() {
        Ok(device) => Ok(DeviceChoice { description: describe_gpu(&device), device, fallback: None }),
        Err(e) if wanted.is_some() => Err(DeviceError::Unavailable(gpu.kind, first_line(&e.to_string()).to_string())),
        Err(e) => Ok(DeviceChoice::cpu(Some(format!(
            "no {} GPU found ({}); running on the CPU (set {ENV}=cpu to skip the search)",
            gpu.kind,
            first_line(&e.to_string())
        )))),
    }
}

fn describe_gpu(device: &Device) -> String {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => {
            let stream = cuda.cuda_stream();
            let context = stream.context();
            match context.name() {
                Ok(name) => format!("CUDA GPU {} ({name})", context.ordinal()),
                Err(_) => format!("CUDA GPU {}", context.ordinal()),
            }
        }
        Device::Metal(_) => "Metal GPU 0".to_string(),
        other => format!("{other:?}"),
    }
}

/// Driver errors can run over several lines (a backtrace, with RUST_BACKTRACE
/// set); the first says what happened.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing_gpu() -> Option<Gpu> {
        Some(Gpu { kind: "cuda", open: || Err(candle_core::Error::Msg("CUDA_ERROR_NO_DEVICE\nmore".into())) })
    }

    #[test]
    fn codiff_device_is_parsed_without_regard_to_case() {
        assert_eq!(DeviceRequest::parse(None).unwrap(), DeviceRequest::Auto);
        assert_eq!(DeviceRequest::parse(Some(" ")).unwrap(), DeviceRequest::Auto);
        assert_eq!(DeviceRequest::parse(Some("CPU")).unwrap(), DeviceRequest::Cpu);
        assert_eq!(DeviceRequest::parse(Some("cuda")).unwrap(), DeviceRequest::Cuda);
        assert_eq!(DeviceRequest::parse(Some("gpu")).unwrap(), DeviceRequest::Cuda);
        assert_eq!(DeviceRequest::parse(Some("Metal")).unwrap(), DeviceRequest::Metal);
        let message = DeviceRequest::parse(Some("tpu")).unwrap_err().to_string();
        assert!(message.starts_with("CODIFF_DEVICE=tpu is not a device; use cpu, cuda or metal"), "{message}");
    }

    #[test]
    fn a_gpu_that_does_not_open_falls_back_to_the_cpu_with_a_sentence() {
        let choice = choose(DeviceRequest::Auto, failing_gpu()).unwrap();
        assert!(choice.device.is_cpu());
        assert!(choice.description.starts_with("CPU ("), "{}", choice.description);
        assert_eq!(
            choice.fallback.as_deref(),
            Some("no cuda GPU found (CUDA_ERROR_NO_DEVICE); running on the CPU (set CODIFF_DEVICE=cpu to skip the search)")
        );
    }

    #[test]
    fn a_requested_gpu_that_does_not_open_is_an_error() {
        let message = choose(DeviceRequest::Cuda, failing_gpu()).unwrap_err().to_string();
        assert_eq!(message, "CODIFF_DEVICE=cuda, but no cuda GPU could be opened: CUDA_ERROR_NO_DEVICE");
    }

    #[test]
    fn a_gpu_this_build_lacks_is_an_error_that_says_how_to_build_it() {
        let message = choose(DeviceRequest::Cuda, None).unwrap_err().to_string();
        assert_eq!(message, "CODIFF_DEVICE=cuda, but this build has no cuda support; rebuild with `--features cuda` (see the README)");
        let other = Some(Gpu { kind: "cuda", open: || unreachable!("a metal request never opens the cuda GPU") });
        assert!(matches!(choose(DeviceRequest::Metal, other), Err(DeviceError::NotBuilt("metal"))));
    }

    #[test]
    fn the_cpu_is_taken_without_looking_for_a_gpu() {
        let gpu = Some(Gpu { kind: "cuda", open: || unreachable!("cpu never opens the GPU") });
        let choice = choose(DeviceRequest::Cpu, gpu).unwrap();
        assert!(choice.device.is_cpu() && choice.fallback.is_none());
        let choice = choose(DeviceRequest::Auto, None).unwrap();
        assert!(choice.device.is_cpu() && choice.fallback.is_none());
    }

    #[test]
    fn a_gpu_that_opens_is_taken() {
        // A stand-in opener: a CPU device, so that this runs on any build.
        let gpu = Some(Gpu { kind: "cuda", open: || Ok(Device::Cpu) });
        let choice = choose(DeviceRequest::Auto, gpu).unwrap();
        assert!(choice.fallback.is_none());
        assert_eq!(choice.description, "Cpu");
    }
}
