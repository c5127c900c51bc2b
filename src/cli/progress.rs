//! Progress on the terminal: indicatif bars, one per long job or per stage of one.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar style from an indicatif template (the plain bar should the template be bad).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A bar of `len` steps in `template`'s style.
pub fn bar(len: usize, template: &str) -> ProgressBar {
    ProgressBar::new(len as u64).with_style(style(template))
}

/// One bar per stage of a long job, each finished when the next begins.
pub struct StageBars {
    style: ProgressStyle,
    current: Option<(String, ProgressBar)>,
}

impl StageBars {
    pub fn new(template: &str) -> Self {
        Self { style: style(template), current: None }
    }

    /// The bar of stage `name`, begun with `total` steps if the stage is new.
    pub fn stage(&mut self, name: &str, total: usize) -> &ProgressBar {
        if matches!(&self.current, Some((current, _)) if current != name) {
            self.finish();
        }
        let style = &self.style;
        let (_, bar) = self
            .current
            .get_or_insert_with(|| (name.to_string(), ProgressBar::new(total as u64).with_style(style.clone()).with_prefix(name.to_string())));
        bar
    }

    /// The bar of the stage under way, if one has begun.
    pub fn current(&self) -> Option<&ProgressBar> {
        self.current.as_ref().map(|(_, bar)| bar)
    }

    /// Finishes the stage under way.
    pub fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}
