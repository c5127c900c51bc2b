//! Frame timing for an instrumented run: with `CODIFF_FRAME_STATS=1` the studio
//! repaints continuously while idle (a run's events drive its frames), records
//! every frame's interval and CPU time, split by whether a generation is
//! running, and prints percentiles at the end of each run. The series restart
//! with each run, so a run's summary describes that run, not the session.

use std::time::Instant;

#[derive(Default)]
struct Series {
    interval_ms: Vec<f32>,
    cpu_ms: Vec<f32>,
}

pub struct FrameStats {
    last_frame: Option<Instant>,
    idle: Series,
    generating: Series,
}

impl FrameStats {
    /// Instrumentation is on when `CODIFF_FRAME_STATS` is set to anything but 0.
    pub fn from_env() -> Option<Self> {
        let on = std::env::var("CODIFF_FRAME_STATS").is_ok_and(|v| !v.is_empty() && v != "0");
        on.then(Self::new)
    }

    fn new() -> Self {
        Self { last_frame: None, idle: Series::default(), generating: Series::default() }
    }

    /// Forgets the frames recorded so far; called when a generation starts.
    pub fn reset(&mut self) {
        self.idle = Series::default();
        self.generating = Series::default();
    }

    /// Records the frame now starting; `cpu_secs` is the previous frame's CPU time as eframe measured it.
    pub fn record(&mut self, cpu_secs: Option<f32>, generating: bool) {
        let now = Instant::now();
        let series = if generating { &mut self.generating } else { &mut self.idle };
        if let Some(last) = self.last_frame {
            series.interval_ms.push(now.duration_since(last).as_secs_f32() * 1000.0);
        }
        series.cpu_ms.extend(cpu_secs.map(|s| s * 1000.0));
        self.last_frame = Some(now);
    }

    pub fn summary(&self) -> String {
        let line = |name: &str, s: &Series| {
            format!("{name}: frame interval {} · frame CPU {}", percentiles(&s.interval_ms), percentiles(&s.cpu_ms))
        };
        format!("{}\n{}", line("idle", &self.idle), line("generating", &self.generating))
    }
}

/// "n = N, p50 X ms, p95 Y ms, max Z ms".
fn percentiles(values: &[f32]) -> String {
    if values.is_empty() {
        return "no frames".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let at = |q: f32| sorted[((sorted.len() - 1) as f32 * q).round() as usize];
    format!("n = {}, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms", sorted.len(), at(0.5), at(0.95), at(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranked_values() {
        let values: Vec<f32> = (1..=101).rev().map(|v| v as f32).collect();
        assert_eq!(percentiles(&values), "n = 101, p50 51.0 ms, p95 96.0 ms, max 101.0 ms");
        assert_eq!(percentiles(&[]), "no frames");
    }

    #[test]
    fn a_reset_starts_the_series_afresh() {
        let mut stats = FrameStats::new();
        for _ in 0..5 {
            stats.record(Some(0.010), true);
        }
        stats.record(Some(0.004), false);
        stats.reset();
        stats.record(Some(0.020), true);
        stats.record(Some(0.030), true);
        let summary = stats.summary();
        assert!(summary.starts_with("idle: frame interval no frames · frame CPU no frames\n"), "{summary}");
        assert!(summary.contains("frame CPU n = 2, p50 30.0 ms, p95 30.0 ms, max 30.0 ms"), "{summary}");
    }
}
