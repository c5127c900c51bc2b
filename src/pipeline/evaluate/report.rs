//! What an evaluation leaves on disk: results.json, results.md (Markdown
//! tables laid out like the paper's) and the figures, for `codiff eval` and
//! `codiff eval-edits` alike.

use std::fmt::Write as _;
use std::path::Path;

use thiserror::Error;

use super::edits::{EditEvalReport, VariantResult};
use super::figures;
use super::{mode_name, EvalReport, ModeResult};
use crate::diffusion::collaborate::CombineMode;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("could not write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("the evaluation kept no collaborative examples")]
    NoExamples,
    #[error("could not draw the figures: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("could not write the results: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes the evaluation's results.json, results.md and figures into `out`;
/// `source` says where the conditions came from.
pub fn write_results(report: &EvalReport, source: &str, out: &Path) -> Result<(), ReportError> {
    let modes: serde_json::Map<String, serde_json::Value> =
        report.modes.iter().map(|(mode, result)| Ok((mode_name(*mode).to_string(), serde_json::to_value(result)?))).collect::<Result<_, ReportError>>()?;
    let json = serde_json::json!({
        "modes": modes,
        "conditions": source,
        "count": report.count,
        "seed": report.seed,
        "steps": report.steps,
        "eta": report.eta,
        "real_photos": report.real_photos,
        "autoencoded_photos": report.autoencoded_photos,
        "condition_use": report.condition_use,
        "influence_over_time": report.influence_over_time,
    });
    write(out, "results.json", serde_json::to_string_pretty(&json)?.as_bytes())?;
    write(out, "results.md", results_table(report, source).as_bytes())?;
    save(out, "modes.png", &figures::mode_grid(report)?)?;
    // The influence figures and the captioned faces show the collaborative run.
    if report.modes.iter().any(|(mode, _)| *mode == CombineMode::Collaborative) {
        save(out, "influence_over_time.png", &figures::influence_plot(report))?;
        save(out, "influence_grid.png", &figures::influence_grid(report)?)?;
        save(out, "faces.png", &figures::captioned_faces(report)?)?;
    }
    Ok(())
}

/// Writes the editing evaluation's results.json, results.md and examples.png into `out`.
pub fn write_edit_results(report: &EditEvalReport, out: &Path) -> Result<(), ReportError> {
    write(out, "results.json", serde_json::to_string_pretty(report)?.as_bytes())?;
    write(out, "results.md", edit_results_table(report).as_bytes())?;
    save(out, "examples.png", &figures::edit_examples(report))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ReportError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| ReportError::Write { path: path.display().to_string(), reason: e.to_string() })
}

fn save(dir: &Path, name: &str, image: &image::RgbImage) -> Result<(), ReportError> {
    let path = dir.join(name);
    image.save(&path).map_err(|e| ReportError::Write { path: path.display().to_string(), reason: e.to_string() })
}

const HEADER: &str = "| mode | FD ↓ | text accuracy % ↑ | mask accuracy % ↑ | gender % | age ±1 decade % | beard % |\n|---|---|---|---|---|---|---|\n";

fn mode_row(s: &mut String, name: &str, r: &ModeResult) {
    let _ = writeln!(
        s,
        "| {name} | {:.1} [{:.1}, {:.1}] | {:.1} [{:.1}, {:.1}] | {:.1} [{:.1}, {:.1}] | {:.1} | {:.1} | {:.1} |",
        r.fd,
        r.fd_ci.low,
        r.fd_ci.high,
        100.0 * r.text_accuracy,
        100.0 * r.text_accuracy_ci.low,
        100.0 * r.text_accuracy_ci.high,
        100.0 * r.mask_accuracy,
        100.0 * r.mask_accuracy_ci.low,
        100.0 * r.mask_accuracy_ci.high,
        100.0 * r.gender_accuracy,
        100.0 * r.decade_within_one_accuracy,
        100.0 * r.beard_accuracy,
    );
}

/// The results as Markdown tables laid out like the paper's Tables 1 and 2.
pub fn results_table(report: &EvalReport, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} generations per mode from {source}, {} DDIM steps (eta {}), noise seed {}; FD against {} held-out synthetic photos; [95% bias-corrected bootstrap interval]\n",
        report.count, report.steps, report.eta, report.seed, report.count
    );
    let find = |m: CombineMode| report.modes.iter().find(|(mode, _)| *mode == m).map(|(_, r)| r);
    let tables = [
        ("Table 1: uni-modal models, the composable average and collaboration", [CombineMode::Text, CombineMode::Mask, CombineMode::Composable, CombineMode::Collaborative]),
        ("Table 2: ablations of the influence functions", [CombineMode::NoSpatial, CombineMode::NoTemporal, CombineMode::Softmax, CombineMode::Collaborative]),
    ];
    for (k, (title, modes)) in tables.iter().enumerate() {
        let _ = writeln!(s, "{}**{title}**\n", if k > 0 { "\n" } else { "" });
        s.push_str(HEADER);
        for &mode in modes {
            if let Some(r) = find(mode) {
                mode_row(&mut s, mode_name(mode), r);
            }
        }
    }
    let _ = writeln!(s, "\nThe judges on the real held-out photos, and on the same photos through the autoencoder (the ceilings):\n");
    s.push_str(HEADER);
    mode_row(&mut s, "real photos", &report.real_photos);
    mode_row(&mut s, "autoencoded photos", &report.autoencoded_photos);
    let _ = writeln!(
        s,
        "\nHow much each model uses its condition: the error of its predicted noise on the held-out photos noised to t, \
         given the sample's own condition and given another sample's; the gain is how much lower the own condition makes it:\n"
    );
    s.push_str("| t | mask model: own | swapped | gain % | text model: own | swapped | gain % |\n|---|---|---|---|---|---|---|\n");
    for c in &report.condition_use {
        let (mask_gain, text_gain) = c.gains();
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:.1} | {:.4} | {:.4} | {:.1} |",
            c.t,
            c.mask_own,
            c.mask_swapped,
            100.0 * mask_gain,
            c.text_own,
            c.text_swapped,
            100.0 * text_gain
        );
    }
    s
}

/// The editing evaluation as one Markdown table, the unedited photos first.
pub fn edit_results_table(report: &EditEvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} held-out photos, {} DDIM steps; Imagic with {} embedding and {} fine-tuning steps per modality\n",
        report.count, report.steps, report.embed_steps, report.finetune_steps
    );
    s.push_str("| edit | photos | mask accuracy % ↑ | edited region % ↑ | text accuracy % ↑ | gender % | age ±1 % | beard % | identity PSNR dB ↑ | s / edit |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let row = |s: &mut String, r: &VariantResult| {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.variant,
            r.cases,
            100.0 * r.mask_accuracy,
            100.0 * r.edited_region_accuracy,
            100.0 * r.text_accuracy,
            100.0 * r.gender_accuracy,
            100.0 * r.decade_within_one_accuracy,
            100.0 * r.beard_accuracy,
            r.identity_psnr_db,
            r.seconds_per_edit
        );
    };
    row(&mut s, &report.unedited);
    for r in &report.variants {
        row(&mut s, r);
    }
    s
}
