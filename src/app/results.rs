//! Results in the studio: finished runs and photo edits enter the gallery
//! once (the same mask and settings again bring the entry to the front
//! instead of adding its twin) and the outputs folder; a gallery entry brings
//! back its inputs, its result and its timeline as one step that one Ctrl+Z undoes.

use egui::TextureOptions;

use super::autosave::HISTORY_LIMIT;
use super::gallery::{HistoryEntry, RunParams};
use super::generation::Settings;
use super::timeline::{rgb_image, StepRecord};
use super::{MessageKind, Studio};
use crate::data::image_params::ImageParams;
use crate::data::mask::Mask;
use crate::pipeline::generate::RgbFrame;

/// What a run is asked besides the mask.
#[derive(Debug, Clone)]
pub(super) struct Inputs {
    prompt: String,
    settings: Settings,
}

/// A gallery restore: the inputs before and after it, named by the tag of its canvas edit.
pub(super) struct RestoreMark {
    tag: u64,
    before: Inputs,
    after: Inputs,
}

/// Restores remembered for undo; the canvas keeps fewer undo steps than this.
const RESTORE_MARKS: usize = 64;

impl Studio {
    /// Adds a finished result to the gallery; one made from the same mask and
    /// settings as an entry brings that entry to the front instead.
    pub(super) fn add_to_gallery(&mut self, params: RunParams, mask: Mask, images: Vec<RgbFrame>, steps: Vec<StepRecord>) {
        let mut entry = HistoryEntry::new(self.next_history_id, params, mask, images);
        entry.steps = steps;
        match self.history.iter().position(|e| e.same_result(&entry)) {
            Some(k) => {
                let mut twin = self.history.remove(k);
                if !entry.steps.is_empty() {
                    twin.steps = entry.steps;
                }
                self.history.push(twin);
            }
            None => {
                self.next_history_id += 1;
                self.history.push(entry);
                if self.history.len() > HISTORY_LIMIT {
                    self.history.remove(0);
                }
            }
        }
    }

    /// Writes a finished image to the outputs folder, when that is on.
    pub(super) fn write_output(&mut self, image: &RgbFrame, params: &ImageParams) {
        let Some(outputs) = self.outputs.as_ref().filter(|o| o.enabled) else { return };
        if let Err(e) = outputs.write(image, params) {
            self.inform(MessageKind::Error, format!("{e}; the result is still in the gallery"));
        }
    }

    /// Whether results also go to the outputs folder, and where it is.
    pub fn outputs(&self) -> Option<&super::outputs::Outputs> {
        self.outputs.as_ref()
    }

    pub fn set_save_outputs(&mut self, on: bool) {
        if let Some(outputs) = &mut self.outputs {
            outputs.enabled = on;
        }
    }

    fn inputs(&self) -> Inputs {
        Inputs { prompt: self.prompt.clone(), settings: self.settings.clone() }
    }

    fn set_inputs(&mut self, inputs: Inputs) {
        Inputs { prompt: self.prompt, settings: self.settings } = inputs;
    }

    /// Restores gallery entry `index`: its mask, prompt and settings (the seed
    /// locked, so Generate makes it again) as one undoable step, and, unless a
    /// run is streaming, its result and timeline.
    pub fn restore_entry(&mut self, ctx: &egui::Context, index: usize) {
        let Some(entry) = self.history.get(index) else { return };
        let after = Inputs { prompt: entry.params.prompt.clone(), settings: Settings { seed_locked: true, ..entry.params.settings.clone() } };
        let (mask, images, steps) = (entry.mask.clone(), entry.images.clone(), entry.steps.clone());
        let before = self.inputs();
        let tag = self.restore_marks.last().map_or(1, |m| m.tag + 1);
        self.canvas.replace_mask_tagged(mask, Some(tag));
        self.set_inputs(after.clone());
        self.restore_marks.push(RestoreMark { tag, before, after });
        if self.restore_marks.len() > RESTORE_MARKS {
            self.restore_marks.remove(0);
        }
        if self.run.is_none() {
            let image_size = images.first().map(|i| [i.width, i.height]);
            self.timeline.show_run(steps, image_size);
            self.show_previews(ctx, images.iter().map(rgb_image).collect());
            self.previews_final = true;
        }
        self.underlay = images.first().map(|image| ctx.load_texture("underlay", rgb_image(image), TextureOptions::LINEAR));
    }

    /// Undoes the last canvas edit, and with a restore its prompt and settings too.
    pub fn undo(&mut self) {
        if let Some(tag) = self.canvas.undo() {
            if let Some(before) = self.restore_marks.iter().find(|m| m.tag == tag).map(|m| m.before.clone()) {
                self.set_inputs(before);
            }
        }
    }

    /// Redoes the last undone canvas edit, and with a restore its prompt and settings too.
    pub fn redo(&mut self) {
        if let Some(tag) = self.canvas.redo() {
            if let Some(after) = self.restore_marks.iter().find(|m| m.tag == tag).map(|m| m.after.clone()) {
                self.set_inputs(after);
            }
        }
    }
}
