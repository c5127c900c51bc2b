//! Generation controls (seed, steps, eta, mode, batch) and the progress bar.

use std::time::Instant;

use crate::diffusion::collaborate::CombineMode;

/// The sampler settings a run uses; saved with every result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub seed: u64,
    /// A locked seed makes edits comparable: the same settings give the same face.
    pub seed_locked: bool,
    pub steps: usize,
    pub eta: f64,
    pub mode: CombineMode,
    pub batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        // The original generation script's sampler: 50 DDIM steps, eta 1.
        Self { seed: 42, seed_locked: true, steps: 50, eta: 1.0, mode: CombineMode::Collaborative, batch: 1 }
    }
}

impl Settings {
    pub fn new_seed(&mut self) {
        self.seed = rand::random::<u32>() as u64;
    }
}

const MODES: [(CombineMode, &str); 5] = [
    (CombineMode::Collaborative, "collaborative"),
    (CombineMode::Softmax, "collaborative (plain softmax)"),
    (CombineMode::Composable, "composable average"),
    (CombineMode::Mask, "mask only"),
    (CombineMode::Text, "text only"),
];

pub fn mode_label(mode: CombineMode) -> &'static str {
    MODES.iter().find(|(m, _)| *m == mode).map_or("?", |(_, label)| label)
}

/// A run in progress, as the progress bar sees it.
pub struct Progress {
    pub started: Instant,
    /// Steps finished so far and the total.
    pub done: usize,
    pub total: usize,
    pub elapsed_secs: f64,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Self { started: Instant::now(), done: 0, total, elapsed_secs: 0.0 }
    }

    /// Seconds left, from the mean step time so far.
    pub fn eta_secs(&self) -> Option<f64> {
        (self.done > 0).then(|| self.elapsed_secs / self.done as f64 * self.total.saturating_sub(self.done) as f64)
    }
}

/// Seed, steps, eta, mode and batch. `running` disables what a run cannot change.
pub fn settings_ui(ui: &mut egui::Ui, settings: &mut Settings, running: bool) {
    ui.add_enabled_ui(!running, |ui| {
        egui::Grid::new("generation-settings").num_columns(2).spacing([8.0, 4.0]).show(ui, |ui| {
            let label = ui.label("seed");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut settings.seed).range(0..=u32::MAX as u64)).labelled_by(label.id);
                ui.checkbox(&mut settings.seed_locked, "locked").on_hover_text("Keep the seed between runs so edits are comparable");
                if ui.button("New seed").clicked() {
                    settings.new_seed();
                }
            });
            ui.end_row();
            let label = ui.label("steps");
            ui.add(egui::Slider::new(&mut settings.steps, 1..=250).logarithmic(true)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("eta");
            ui.add(egui::Slider::new(&mut settings.eta, 0.0..=1.0)).labelled_by(label.id).on_hover_text("0: deterministic DDIM; 1: the original's stochastic sampler");
            ui.end_row();
            let label = ui.label("mode");
            egui::ComboBox::from_id_salt("combine-mode")
                .selected_text(mode_label(settings.mode))
                .show_ui(ui, |ui| {
                    for (mode, name) in MODES {
                        ui.selectable_value(&mut settings.mode, mode, name);
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("batch");
            ui.add(egui::Slider::new(&mut settings.batch, 1..=8).text("variations")).labelled_by(label.id);
            ui.end_row();
        });
    });
}

/// "step k of N" with the time left.
pub fn progress_ui(ui: &mut egui::Ui, progress: &Progress) {
    let fraction = if progress.total == 0 { 0.0 } else { progress.done as f32 / progress.total as f32 };
    let text = match progress.eta_secs() {
        Some(eta) => format!("step {} of {} · {:.0} s left", progress.done, progress.total, eta.ceil()),
        None => format!("step {} of {} · starting…", progress.done, progress.total),
    };
    ui.add(egui::ProgressBar::new(fraction).text(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_extrapolates_the_mean_step_time() {
        let mut p = Progress::new(50);
        assert_eq!(p.eta_secs(), None);
        p.done = 10;
        p.elapsed_secs = 20.0;
        assert_eq!(p.eta_secs(), Some(80.0));
    }
}
