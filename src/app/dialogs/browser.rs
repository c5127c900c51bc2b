//! The studio's own file browser, drawn with egui, for desktops without a
//! native file dialog: a folder listing filtered by extension, Up, a location
//! box, a typed file name, Enter to confirm and Escape to cancel.

use std::path::{Path, PathBuf};

use egui::{Key, TextEdit};

use super::{FileRequest, Filter, Mode};

pub enum BrowserOutcome {
    Picked(PathBuf),
    Cancelled,
}

struct Entry {
    name: String,
    is_dir: bool,
}

pub struct Browser {
    title: &'static str,
    mode: Mode,
    filter: Filter,
    dir: PathBuf,
    entries: Vec<Entry>,
    /// The file name typed or clicked.
    name: String,
    /// The location box: a folder typed here opens on Enter.
    location: String,
    error: Option<String>,
    /// A save waiting for the person to confirm replacing this file.
    replace: Option<PathBuf>,
    /// Put the keyboard in the name box once, when the browser opens.
    focus_name: bool,
}

enum Action {
    Up,
    Enter(PathBuf),
    Choose(String),
    Confirm,
    Replace(bool),
    Cancel,
}

impl Browser {
    /// Opens at `start`, or the nearest folder above it that can be listed.
    pub fn new(request: &FileRequest, start: &Path) -> Self {
        let mut browser = Self {
            title: request.title,
            mode: request.mode,
            filter: request.filter,
            dir: PathBuf::new(),
            entries: Vec::new(),
            name: request.file_name.clone().unwrap_or_default(),
            location: String::new(),
            error: None,
            replace: None,
            focus_name: request.mode != Mode::Folder,
        };
        let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
        for dir in start.ancestors() {
            if browser.enter(dir.to_path_buf()) {
                browser.error = None;
                break;
            }
        }
        browser
    }

    /// Lists `dir` and shows it; on failure stays where it is and says why.
    fn enter(&mut self, dir: PathBuf) -> bool {
        match list(&dir, self.mode, &self.filter) {
            Ok(entries) => {
                self.location = dir.display().to_string();
                self.dir = dir;
                self.entries = entries;
                self.error = None;
                true
            }
            Err(e) => {
                self.error = Some(format!("cannot open {}: {e}", dir.display()));
                false
            }
        }
    }

    /// Draws the browser; `Some` once the person picked or cancelled.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<BrowserOutcome> {
        let mut action = None;
        let modal = egui::Modal::new(egui::Id::unique("file-browser")).show(ctx, |ui| {
            ui.set_width(560.0);
            ui.heading(self.title);
            let enter_pressed = ui.input(|i| i.key_pressed(Key::Enter));
            ui.horizontal(|ui| {
                if ui.add_enabled(self.dir.parent().is_some(), egui::Button::new("Up")).on_hover_text("The folder above").clicked() {
                    action = Some(Action::Up);
                }
                let label = ui.label("Folder:");
                let location = ui.add(TextEdit::singleline(&mut self.location).desired_width(f32::INFINITY)).labelled_by(label.id);
                if location.lost_focus() && enter_pressed {
                    action = Some(Action::Enter(PathBuf::from(&self.location)));
                }
            });
            ui.separator();
            // A fixed height, so the browser does not jump as folders of other lengths open.
            egui::ScrollArea::vertical().max_height(320.0).auto_shrink([false, false]).show(ui, |ui| {
                for entry in &self.entries {
                    if entry.is_dir {
                        if ui.selectable_label(false, format!("{}/", entry.name)).clicked() {
                            action = Some(Action::Enter(self.dir.join(&entry.name)));
                        }
                    } else {
                        let row = ui.selectable_label(self.name == entry.name, &entry.name);
                        if row.double_clicked() {
                            self.name = entry.name.clone();
                            action = Some(Action::Confirm);
                        } else if row.clicked() {
                            action = Some(Action::Choose(entry.name.clone()));
                        }
                    }
                }
                if self.entries.is_empty() {
                    ui.weak(if self.mode == Mode::Folder { "no folders here" } else { "no folders or matching files here" });
                }
            });
            ui.separator();
            if self.mode != Mode::Folder {
                ui.horizontal(|ui| {
                    let label = ui.label("File name:");
                    let name = ui.add(TextEdit::singleline(&mut self.name).desired_width(f32::INFINITY)).labelled_by(label.id);
                    if std::mem::take(&mut self.focus_name) {
                        name.request_focus();
                    }
                });
                let extensions: Vec<String> = self.filter.extensions.iter().map(|e| format!(".{e}")).collect();
                ui.weak(format!("Showing folders and {} files ({})", self.filter.name, extensions.join(", ")));
            }
            if let Some(error) = &self.error {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            ui.horizontal(|ui| match &self.replace {
                Some(path) => {
                    ui.label(format!("{} already exists. Replace it?", file_name(path)));
                    if ui.button("Replace").clicked() {
                        action = Some(Action::Replace(true));
                    }
                    if ui.button("Keep the file").clicked() {
                        action = Some(Action::Replace(false));
                    }
                }
                None => {
                    let confirm = match self.mode {
                        Mode::Open => "Open",
                        Mode::Save => "Save",
                        Mode::Folder => "Use this folder",
                    };
                    if ui.button(confirm).on_hover_text("Enter").clicked() {
                        action = Some(Action::Confirm);
                    }
                    if ui.button("Cancel").on_hover_text("Esc").clicked() {
                        action = Some(Action::Cancel);
                    }
                }
            });
            if action.is_none() && enter_pressed {
                action = Some(Action::Confirm);
            }
        });
        if modal.should_close() {
            action = Some(Action::Cancel);
        }
        match action? {
            Action::Up => {
                if let Some(parent) = self.dir.parent().map(Path::to_path_buf) {
                    self.enter(parent);
                }
                None
            }
            Action::Enter(dir) => {
                self.enter(dir);
                None
            }
            Action::Choose(name) => {
                self.name = name;
                self.replace = None;
                None
            }
            Action::Confirm => self.confirm(),
            Action::Replace(true) => self.replace.take().map(BrowserOutcome::Picked),
            Action::Replace(false) => {
                self.replace = None;
                None
            }
            Action::Cancel => Some(BrowserOutcome::Cancelled),
        }
    }

    /// The pick the typed name makes: a folder opens, a file is picked (a
    /// save that would replace one asks first), a bad name says what is wrong.
    fn confirm(&mut self) -> Option<BrowserOutcome> {
        if self.mode == Mode::Folder {
            return Some(BrowserOutcome::Picked(self.dir.clone()));
        }
        let name = self.name.trim();
        if name.is_empty() {
            self.error = Some(if self.mode == Mode::Open { "Pick a file, or type its name." } else { "Type a name for the file." }.into());
            return None;
        }
        let mut path = self.dir.join(name);
        if path.is_dir() {
            self.enter(path);
            self.name.clear();
            return None;
        }
        match self.mode {
            Mode::Open if path.is_file() => Some(BrowserOutcome::Picked(path)),
            Mode::Open => {
                self.error = Some(format!("There is no file {} in {}.", file_name(&path), path.parent().unwrap_or(&self.dir).display()));
                None
            }
            _ => {
                if path.extension().is_none() {
                    if let Some(extension) = self.filter.extensions.first() {
                        path.set_extension(extension);
                    }
                }
                if !path.parent().is_some_and(Path::is_dir) {
                    self.error = Some(format!("The folder {} does not exist.", path.parent().unwrap_or(&self.dir).display()));
                    None
                } else if path.exists() {
                    self.replace = Some(path);
                    None
                } else {
                    Some(BrowserOutcome::Picked(path))
                }
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The folders in `dir`, then the files `filter` lets through (none when
/// picking a folder), each sorted by name; hidden ones left out.
fn list(dir: &Path, mode: Mode, filter: &Filter) -> std::io::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Follows links, so a linked folder opens like a folder.
            let is_dir = entry.path().is_dir();
            let shown = !name.starts_with('.') && (is_dir || (mode != Mode::Folder && filter.matches(Path::new(&name))));
            shown.then_some(Entry { name, is_dir })
        })
        .collect();
    entries.sort_by_key(|e| (!e.is_dir, e.name.to_lowercase()));
    Ok(entries)
}
