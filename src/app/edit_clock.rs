//! How long a photo edit will take before it starts, and how long it has
//! left while it runs: each stage of the edit's plan times its steps at the
//! rate last measured for its kind of work in this session, or, before any
//! edit was timed, at a share of a generation step.

use std::collections::HashMap;
use std::time::Instant;

use crate::pipeline::edit::{EditEvent, EditPhase};

/// Seconds per step of each phase as a share of a generation step's (both
/// UNets, the influence functions and a preview), measured side by side with
/// `codiff generate` and `codiff edit` on the default models (2-core CPU):
/// a generation step 61 ms, inversion and sampling 46 ms, an embedding step
/// 11 ms (the gradient flows to the condition alone), a fine-tuning step
/// 101 ms (every weight's gradient and an AdamW update).
fn share_of_generation_step(phase: EditPhase) -> f64 {
    match phase {
        EditPhase::Inverting | EditPhase::Sampling => 0.75,
        EditPhase::Embedding => 0.18,
        EditPhase::FineTuning => 1.65,
    }
}

/// The step times the studio has seen.
#[derive(Debug, Default, Clone)]
pub struct EditClock {
    /// Seconds per step of each phase, as last measured in an edit.
    measured: HashMap<EditPhase, f64>,
    /// Seconds per step and image of the last finished generation.
    pub generation_step_secs: Option<f64>,
}

impl EditClock {
    /// Seconds per step of `phase`: measured, else derived from a generation step, else unknown.
    fn rate(&self, phase: EditPhase) -> Option<f64> {
        self.measured.get(&phase).copied().or_else(|| self.generation_step_secs.map(|g| g * share_of_generation_step(phase)))
    }

    /// Seconds the stages of `plan` take (phase, steps), once every phase has a rate.
    pub fn estimate_secs(&self, plan: &[(EditPhase, usize)]) -> Option<f64> {
        plan.iter().map(|&(phase, steps)| self.rate(phase).map(|r| r * steps as f64)).sum()
    }

    fn record(&mut self, phase: EditPhase, secs_per_step: f64) {
        self.measured.insert(phase, secs_per_step);
    }
}

/// Progress of an edit on the worker through its plan.
pub struct EditProgress {
    /// The stages the edit runs: (phase, steps).
    plan: Vec<(EditPhase, usize)>,
    /// The plan's stage now running; `None` before the first step.
    current: Option<usize>,
    pub stage: String,
    pub step: usize,
    pub total: usize,
    /// When the current stage began: when the previous one sent its last step.
    stage_started: Instant,
    last_event: Instant,
}

impl EditProgress {
    pub fn new(plan: Vec<(EditPhase, usize)>, now: Instant) -> Self {
        Self { plan, current: None, stage: "starting".into(), step: 0, total: 0, stage_started: now, last_event: now }
    }

    /// Takes a step event that arrived at `now` and times the stage's steps into `clock`.
    pub fn update(&mut self, EditEvent::Stage { phase, name, step, total }: EditEvent, clock: &mut EditClock, now: Instant) {
        if name != self.stage {
            // The next stage of this phase; stages served from Imagic's cache send nothing and are passed over.
            let from = self.current.map_or(0, |k| k + 1);
            self.current = self.plan.iter().enumerate().skip(from).find(|(_, (p, _))| *p == phase).map(|(k, _)| k).or(self.current);
            self.stage = name;
            self.stage_started = self.last_event;
        }
        self.last_event = now;
        (self.step, self.total) = (step, total);
        if step > 0 {
            clock.record(phase, now.saturating_duration_since(self.stage_started).as_secs_f64() / step as f64);
        }
    }

    /// Seconds left in the whole edit: the current stage's remaining steps and every later stage.
    pub fn secs_left(&self, clock: &EditClock) -> Option<f64> {
        let Some(k) = self.current else { return clock.estimate_secs(&self.plan) };
        let (phase, _) = self.plan[k];
        let now = clock.rate(phase)? * self.total.saturating_sub(self.step) as f64;
        Some(now + clock.estimate_secs(&self.plan[k + 1..])?)
    }

    /// The share of the edit's time done, once the rates are known; by stages otherwise.
    pub fn fraction(&self, clock: &EditClock) -> f32 {
        let Some(k) = self.current else { return 0.0 };
        let in_stage = if self.total > 0 { self.step as f64 / self.total as f64 } else { 0.0 };
        let by_time = || {
            let before = clock.estimate_secs(&self.plan[..k])?;
            let (phase, steps) = self.plan[k];
            let done = before + clock.rate(phase)? * steps as f64 * in_stage;
            Some(done / (done + self.secs_left(clock)?).max(1e-9))
        };
        by_time().unwrap_or((k as f64 + in_stage) / self.plan.len() as f64) as f32
    }
}

/// "12 s", "3 min 20 s", "1 h 5 min".
pub fn duration_text(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EditPhase::*;

    fn event(phase: EditPhase, name: &str, step: usize, total: usize) -> EditEvent {
        EditEvent::Stage { phase, name: name.into(), step, total }
    }

    #[test]
    fn the_estimate_uses_measured_rates_and_falls_back_on_a_generation_step() {
        let plan = [(Embedding, 100), (FineTuning, 200), (Inverting, 50), (Sampling, 50)];
        let mut clock = EditClock::default();
        assert_eq!(clock.estimate_secs(&plan), None, "nothing timed yet");
        clock.generation_step_secs = Some(0.1);
        let prior = 100.0 * 0.018 + 200.0 * 0.165 + 100.0 * 0.075;
        assert!((clock.estimate_secs(&plan).unwrap() - prior).abs() < 1e-9);
        clock.record(FineTuning, 1.0);
        let measured = 100.0 * 0.018 + 200.0 + 100.0 * 0.075;
        assert!((clock.estimate_secs(&plan).unwrap() - measured).abs() < 1e-9, "a measured rate replaces the prior");
    }

    #[test]
    fn time_left_counts_the_current_stage_and_every_later_one_and_skips_cached_stages() {
        let plan = vec![(Embedding, 10), (FineTuning, 10), (Embedding, 10), (FineTuning, 10), (Inverting, 4), (Sampling, 4)];
        let mut clock = EditClock::default();
        for phase in [Embedding, FineTuning, Inverting, Sampling] {
            clock.record(phase, 1.0);
        }
        let start = Instant::now();
        let at = |secs: u64| start + std::time::Duration::from_secs(secs);
        let mut progress = EditProgress::new(plan, start);
        assert_eq!(progress.secs_left(&clock), Some(48.0), "before the first step: the whole plan");
        assert_eq!(progress.fraction(&clock), 0.0);
        // Five embedding steps in 10 s: 2 s a step from now on.
        progress.update(event(Embedding, "mask: embedding", 5, 10), &mut clock, at(10));
        assert_eq!(progress.secs_left(&clock), Some(5.0 * 2.0 + 10.0 + 10.0 * 2.0 + 10.0 + 8.0), "the text model's embedding at 2 s a step too");
        assert!((progress.fraction(&clock) - 10.0 / 68.0).abs() < 1e-6, "{}", progress.fraction(&clock));
        progress.update(event(Embedding, "mask: embedding", 10, 10), &mut clock, at(20));
        // The text model's tuning was cached: its stages never report, inversion comes next.
        progress.update(event(FineTuning, "mask: fine-tuning", 10, 10), &mut clock, at(30));
        progress.update(event(Inverting, "inverting", 1, 4), &mut clock, at(33));
        assert_eq!(progress.secs_left(&clock), Some(3.0 * 3.0 + 4.0), "three inversion steps at 3 s and the sampling are left");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_text(12.4), "12 s");
        assert_eq!(duration_text(200.0), "3 min 20 s");
        assert_eq!(duration_text(3900.0), "1 h 5 min");
    }
}
