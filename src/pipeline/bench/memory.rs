//! This process's resident memory, as Linux reports it in /proc/self/status.

use super::BenchError;

/// The peak resident memory of phases of a run. Linux lets a process reset
/// its peak (VmHWM) by writing 5 to /proc/self/clear_refs; where it cannot,
/// each phase's figure is the peak so far, and `peak_rss_mb` is right either way.
pub struct PhasePeaks {
    figures: Vec<(&'static str, f64)>,
    /// The process's peak before the last reset (none: never reset).
    before_reset_mb: f64,
    error: Option<BenchError>,
}

impl PhasePeaks {
    /// Starts the first phase at the start of the process.
    pub fn start() -> Self {
        Self { figures: Vec::new(), before_reset_mb: 0.0, error: None }
    }

    /// Starts a phase: from here VmHWM counts from the current resident memory.
    pub fn start_phase(&mut self) {
        match peak_rss_mb() {
            Ok(peak) => {
                self.before_reset_mb = self.before_reset_mb.max(peak);
                let _ = std::fs::write("/proc/self/clear_refs", "5");
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Ends the phase that started last, naming its peak.
    pub fn end(&mut self, name: &'static str) {
        match peak_rss_mb() {
            Ok(peak) => self.figures.push((name, peak)),
            Err(e) => self.error = Some(e),
        }
    }

    /// Every phase's peak and the process's, `peak_rss_mb`.
    pub fn finish(self) -> Result<Vec<(&'static str, f64)>, BenchError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let peak = peak_rss_mb()?.max(self.before_reset_mb);
        let mut figures = self.figures;
        figures.push(("peak_rss_mb", peak));
        Ok(figures)
    }
}

/// The process's peak resident memory (VmHWM), in MB.
pub fn peak_rss_mb() -> Result<f64, BenchError> {
    memory_mb("VmHWM:")
}

/// The process's resident memory now (VmRSS), in MB.
pub fn rss_mb() -> Result<f64, BenchError> {
    memory_mb("VmRSS:")
}

/// A memory figure of this process from /proc/self/status, in MB.
fn memory_mb(field: &str) -> Result<f64, BenchError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| BenchError::Memory(format!("reading /proc/self/status: {e}")))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| BenchError::Memory(format!("no {field} in /proc/self/status")))?;
    Ok(kb / 1024.0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_at_least_what_is_resident() {
        let (now, peak) = (rss_mb().unwrap(), peak_rss_mb().unwrap());
        assert!(now > 0.0 && peak >= now, "resident {now} MB, peak {peak} MB");
        let mut peaks = PhasePeaks::start();
        peaks.end("phase_mb");
        let figures = peaks.finish().unwrap();
        assert_eq!(figures.iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["phase_mb", "peak_rss_mb"]);
        assert!(figures[1].1 >= figures[0].1);
    }
}
