//! Like A1111's outputs folder: every finished result, generated or edited,
//! also lands in `outputs/YYYY-MM-DD/` under the studio's data directory
//! (the date in UTC), numbered on from the highest number there, never
//! overwriting a file. A setting, autosaved with the work, turns it off.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::data::image_params::{save_png_with_params, ImageParams};
use crate::pipeline::generate::RgbFrame;

/// Where results go unless the person turned it off.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub dir: PathBuf,
    pub enabled: bool,
}

/// `outputs` beside the autosave folder, in the studio's data directory.
pub fn default_dir() -> Option<PathBuf> {
    super::autosave::data_dir().map(|d| d.join("outputs"))
}

impl Outputs {
    /// Writes `frame` carrying `params` into today's folder; returns the file written.
    pub fn write(&self, frame: &RgbFrame, params: &ImageParams) -> Result<PathBuf, String> {
        write_numbered(&self.dir.join(utc_date(SystemTime::now())), frame, params)
    }
}

/// Writes `NNNNN-NAME.png` into `day`, NNNNN one above the highest number
/// there; the name is claimed with `create_new`, so no file is ever replaced.
fn write_numbered(day: &Path, frame: &RgbFrame, params: &ImageParams) -> Result<PathBuf, String> {
    std::fs::create_dir_all(day).map_err(|e| format!("cannot create the outputs folder {}: {e}", day.display()))?;
    let entries = std::fs::read_dir(day).map_err(|e| format!("cannot read the outputs folder {}: {e}", day.display()))?;
    let highest = entries.flatten().filter_map(|e| e.file_name().to_str()?.split('-').next()?.parse::<u64>().ok()).max().unwrap_or(0);
    let name = match &params.edit {
        Some(edit) => format!("{}-{}", Path::new(&edit.photo).file_stem().map_or("photo".into(), |s| s.to_string_lossy()), edit.method),
        None => format!("seed{}", params.seed),
    };
    for number in highest + 1.. {
        let path = day.join(format!("{number:05}-{name}.png"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return save_png_with_params(&path, frame, params).map(|()| path).map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
        }
    }
    unreachable!("an unbounded range has a next number")
}

/// `YYYY-MM-DD` of `time` in UTC (the civil-from-days algorithm of H. Hinnant's date library).
fn utc_date(time: SystemTime) -> String {
    let days = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image_params::read_png_params;
    use crate::diffusion::collaborate::CombineMode;
    use std::time::Duration;

    #[test]
    fn dates_are_the_utc_calendar_day() {
        let at = |secs: u64| utc_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29", "a leap day");
        assert_eq!(at(1_796_083_199), "2026-11-30");
        assert_eq!(at(1_796_083_200), "2026-12-01");
    }

    #[test]
    fn results_are_numbered_on_and_never_overwrite() {
        let day = std::env::temp_dir().join(format!("codiff-outputs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&day);
        let frame = RgbFrame { width: 1, height: 1, pixels: vec![1, 2, 3] };
        let params = ImageParams { prompt: "He is in his thirties.".into(), seed: 5, steps: 3, eta: 1.0, mode: CombineMode::Collaborative, model: None, mask: None, edit: None };
        let first = write_numbered(&day, &frame, &params).unwrap();
        assert_eq!(first.file_name().unwrap(), "00001-seed5.png");
        std::fs::write(day.join("00007-seed9.png"), b"someone else's").unwrap();
        let second = write_numbered(&day, &frame, &params).unwrap();
        assert_eq!(second.file_name().unwrap(), "00008-seed5.png", "after the highest number, whatever its name");
        assert_eq!(std::fs::read(day.join("00007-seed9.png")).unwrap(), b"someone else's");
        assert_eq!(read_png_params(&second).unwrap(), Some(params), "the file carries its settings");
        let _ = std::fs::remove_dir_all(&day);
    }
}
