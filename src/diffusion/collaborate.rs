//! Influence functions and the ways two noise predictions are combined.

use serde::{Deserialize, Serialize};

/// How the mask-driven and text-driven predictions are combined at each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CombineMode {
    /// Dynamic diffusers' influence functions with the sampler's post-processing
    /// (mask scale and cosine decay), as the original generation script uses.
    #[default]
    Collaborative,
    /// Plain per-pixel softmax of the two diffuser maps, as in training.
    Softmax,
    /// The plain average of both predictions (Composable Diffusion, the paper's baseline).
    Composable,
    /// The mask-driven model alone.
    Mask,
    /// The text-driven model alone.
    Text,
}
