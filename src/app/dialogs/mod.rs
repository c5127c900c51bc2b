//! File dialogs that never block the UI thread.
//!
//! A request first goes to the native dialog on a thread of its own (the
//! frame keeps drawing meanwhile); its answer is polled every frame. Where no
//! native dialog can open (no desktop portal and no zenity), the studio says
//! so once and uses its own egui [`browser`] from then on. Either way the
//! folder of the last pick, per kind of file, is remembered ([`folders`]).

mod browser;
mod folders;
mod native;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use self::browser::{Browser, BrowserOutcome};
pub use self::folders::{FolderKind, Folders};
pub use self::native::system_dialog;

/// What the person picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An existing file.
    Open,
    /// A file to write (the chooser asks before replacing one).
    Save,
    /// A folder.
    Folder,
}

/// The files a dialog lists: a name and the extensions (without dots).
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub name: &'static str,
    pub extensions: &'static [&'static str],
}

impl Filter {
    pub fn matches(&self, path: &Path) -> bool {
        path.extension().is_some_and(|e| self.extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
    }
}

/// One dialog to show.
#[derive(Debug, Clone)]
pub struct FileRequest {
    pub title: &'static str,
    pub mode: Mode,
    pub filter: Filter,
    /// Whose remembered folder the dialog starts in.
    pub folder: FolderKind,
    /// The suggested name of a file to save.
    pub file_name: Option<String>,
    /// Where to start instead of the remembered folder (the checkpoint beside its config).
    pub start: Option<PathBuf>,
}

/// How a native dialog ended.
#[derive(Debug, Clone, PartialEq)]
pub enum NativeOutcome {
    Picked(PathBuf),
    Cancelled,
    /// No native dialog could open; the sentence says why.
    Unavailable(String),
}

/// Shows `request` natively, starting in the given folder; runs on a thread of its own.
pub type NativeDialog = Arc<dyn Fn(&FileRequest, &Path) -> NativeOutcome + Send + Sync>;

/// What the dialogs report to the studio.
#[derive(Debug, Clone, PartialEq)]
pub enum DialogEvent<P> {
    Picked(P, PathBuf),
    /// The native dialog could not open: the studio's browser opened instead.
    NoNativeDialog(String),
    /// The remembered folders could not be written.
    Error(String),
}

/// A native dialog open on its thread.
struct Pending<P> {
    purpose: P,
    request: FileRequest,
    start: PathBuf,
    answer: Receiver<NativeOutcome>,
}

/// The studio's dialogs: at most one open at a time; `P` says what a pick is for.
pub struct FileDialogs<P> {
    ctx: egui::Context,
    /// `None` once no native dialog could open (or when none is wanted).
    native: Option<NativeDialog>,
    pending: Option<Pending<P>>,
    browser: Option<(P, FileRequest, Browser)>,
    folders: Folders,
}

impl<P: Clone + Send + 'static> FileDialogs<P> {
    pub fn new(ctx: egui::Context, native: Option<NativeDialog>, folders: Folders) -> Self {
        Self { ctx, native, pending: None, browser: None, folders }
    }

    /// Whether a dialog (native or the studio's own) is open.
    pub fn is_open(&self) -> bool {
        self.pending.is_some() || self.browser.is_some()
    }

    /// Whether the studio's own browser is open (it takes the keyboard).
    pub fn browser_open(&self) -> bool {
        self.browser.is_some()
    }

    /// Opens a dialog for `purpose`; false (and nothing opens) while another is open.
    pub fn open(&mut self, purpose: P, request: FileRequest) -> bool {
        if self.is_open() {
            return false;
        }
        let start = request.start.clone().or_else(|| self.folders.get(request.folder)).unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
        let Some(native) = self.native.clone() else {
            self.browser = Some((purpose, request.clone(), Browser::new(&request, &start)));
            return true;
        };
        let (tx, answer) = crossbeam_channel::bounded(1);
        let (thread_request, thread_start, ctx) = (request.clone(), start.clone(), self.ctx.clone());
        let spawned = std::thread::Builder::new().name("codiff-file-dialog".into()).spawn(move || {
            let _ = tx.send(native(&thread_request, &thread_start));
            ctx.request_repaint();
        });
        match spawned {
            Ok(_) => self.pending = Some(Pending { purpose, request, start, answer }),
            Err(_) => self.browser = Some((purpose, request.clone(), Browser::new(&request, &start))),
        }
        true
    }

    /// Polls the native dialog and draws the studio's browser; call once a frame.
    pub fn show(&mut self, ctx: &egui::Context) -> Vec<DialogEvent<P>> {
        let mut events = Vec::new();
        if let Some(pending) = self.pending.take() {
            match pending.answer.try_recv() {
                Err(crossbeam_channel::TryRecvError::Empty) => self.pending = Some(pending),
                Ok(NativeOutcome::Picked(path)) => self.picked(pending.purpose, &pending.request, path, &mut events),
                Ok(NativeOutcome::Cancelled) => {}
                Ok(NativeOutcome::Unavailable(why)) => {
                    // The same would happen next time: use the studio's browser from now on.
                    self.native = None;
                    events.push(DialogEvent::NoNativeDialog(why));
                    self.browser = Some((pending.purpose, pending.request.clone(), Browser::new(&pending.request, &pending.start)));
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    events.push(DialogEvent::NoNativeDialog("the native file dialog stopped unexpectedly".into()));
                    self.browser = Some((pending.purpose, pending.request.clone(), Browser::new(&pending.request, &pending.start)));
                }
            }
        }
        if let Some((purpose, request, mut browser)) = self.browser.take() {
            match browser.ui(ctx) {
                None => self.browser = Some((purpose, request, browser)),
                Some(BrowserOutcome::Picked(path)) => self.picked(purpose, &request, path, &mut events),
                Some(BrowserOutcome::Cancelled) => {}
            }
        }
        events
    }

    fn picked(&mut self, purpose: P, request: &FileRequest, path: PathBuf, events: &mut Vec<DialogEvent<P>>) {
        // A name typed without its extension gets the filter's first one.
        let path = match (request.mode, request.filter.extensions.first()) {
            (Mode::Save, Some(extension)) if path.extension().is_none() => path.with_extension(extension),
            _ => path,
        };
        let folder = match request.mode {
            Mode::Folder => Some(path.clone()),
            Mode::Open | Mode::Save => path.parent().map(Path::to_path_buf),
        };
        if let Some(Err(e)) = folder.map(|folder| self.folders.remember(request.folder, folder)) {
            events.push(DialogEvent::Error(e));
        }
        events.push(DialogEvent::Picked(purpose, path));
    }
}
