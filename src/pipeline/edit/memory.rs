//! How much memory Imagic's UNet fine-tuning needs, estimated before it starts,
//! so that a model too big for the machine is refused with a message instead
//! of swapping for an hour or being killed half way.

use crate::model::unet::UNetConfig;

/// Activation floats the backward pass keeps per block output element (norms,
/// SiLUs, convolution inputs, skip concatenations), fitted to one fine-tuning
/// step of the released 256 UNet (`codiff bench --finetune-memory`: 8010 MiB).
const KEPT_PER_ELEMENT: usize = 36;
/// Copies of the UNet's weights while fine-tuning: the trainable variables,
/// their gradients and AdamW's two moments.
const WEIGHT_COPIES: usize = 4;

/// Bytes one fine-tuning step of a UNet with `parameters` weights needs on top
/// of the loaded model, for a `latent_size` x `latent_size` latent and a
/// condition of `context_tokens` tokens.
pub fn finetune_bytes(config: &UNetConfig, parameters: usize, latent_size: usize, context_tokens: usize) -> u64 {
    let mut elements = 0usize;
    let mut peak_scores = 0usize;
    let mut side = latent_size;
    for (level, &mult) in config.channel_mult.iter().enumerate() {
        let channels = config.model_channels * mult;
        let tokens = side * side;
        // The encoder's blocks, the decoder's (one more per level) and their attention.
        let blocks = 2 * config.num_res_blocks + 1;
        let attention = config.attention_resolutions.contains(&(1 << level));
        elements += blocks * channels * tokens * if attention { 2 } else { 1 };
        if attention {
            // An unusable head setting fails when the model is built; count one head meanwhile.
            let heads = config.heads(channels).map_or(1, |(heads, _)| heads);
            // The backward recomputes the probabilities, with two more matrices of their size, one layer at a time.
            peak_scores = peak_scores.max(3 * heads * tokens * (tokens + context_tokens));
        }
        side = side.div_ceil(2);
    }
    let floats = WEIGHT_COPIES * parameters + KEPT_PER_ELEMENT * elements + peak_scores;
    floats as u64 * 4
}

/// Memory the system can still give, from `/proc/meminfo`; `None` where that is not known.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses a fine-tuning that needs more than `available` (with a margin for the rest of the process).
pub fn check_fits(needed: u64, available: Option<u64>) -> Result<(), String> {
    let Some(available) = available else { return Ok(()) };
    if needed as f64 > available as f64 * 0.9 {
        return Err(format!(
            "Imagic's fine-tuning of this model needs about {:.1} GB of memory and {:.1} GB is free; \
             use --method inversion (no fine-tuning), or close other programs",
            needed as f64 / 1e9,
            available as f64 / 1e9
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The released 256 UNet: 192 channels, 64 x 64 latent, 32 heads at 32, 16 and 8.
    fn released_256() -> UNetConfig {
        let yaml = "image_size: 64\nin_channels: 3\nout_channels: 3\nmodel_channels: 192\nnum_res_blocks: 2\n\
                    attention_resolutions: [8, 4, 2]\nchannel_mult: [1, 2, 3, 5]\nnum_heads: 32\ncontext_dim: 640\n";
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_estimate_matches_a_measured_fine_tuning_step_and_refuses_what_will_not_fit() {
        // `codiff bench --finetune-memory` measured 8010 MiB (8.40 GB) for one step of this UNet
        // (403.6 M parameters) with the mask encoder's 19-token context.
        let needed = finetune_bytes(&released_256(), 403_623_939, 64, 19);
        let measured = 8_399_000_000f64;
        assert!((needed as f64 / measured - 1.0).abs() < 0.1, "estimate {needed} vs measured {measured}: {}", needed as f64 / measured);
        assert!(check_fits(needed, Some(4_000_000_000)).unwrap_err().contains("inversion"));
        assert!(check_fits(needed, Some(needed * 2)).is_ok());
        assert!(check_fits(needed, None).is_ok(), "unknown free memory does not block");
    }
}
