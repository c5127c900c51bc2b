//! Photo work too slow for a frame: decoding a photo of many megapixels,
//! resizing its crop, blending an edit back and encoding the PNG each take
//! from a tenth of a second to a second. Each runs on a short-lived thread
//! (not the worker, which may be busy generating for minutes) and the studio
//! polls for the result, so the window never stalls.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender};
use image::RgbImage;

use super::outputs::Outputs;
use crate::data::image_params::{save_png_with_params, ImageParams};
use crate::pipeline::edit::{Crop, Photo};
use crate::pipeline::generate::RgbFrame;

/// A photo decoded and cut, ready to become a [`super::photo::PhotoEdit`].
pub struct OpenedPhoto {
    pub path: PathBuf,
    pub photo: Photo,
    /// The crop at the canvas's size.
    pub underlay: egui::ColorImage,
    /// The whole photo, scaled down.
    pub overview: egui::ColorImage,
    /// The crop at the model's size.
    pub model_input: RgbImage,
}

/// A new crop of an open photo.
pub struct Recropped {
    /// The photo it belongs to (it may have been closed meanwhile).
    pub path: PathBuf,
    pub crop: Crop,
    pub underlay: egui::ColorImage,
    pub model_input: RgbImage,
}

/// What a finished job hands back.
pub enum PhotoDone {
    Opened(Result<OpenedPhoto, String>),
    Recropped(Recropped),
    Saved(Result<PathBuf, String>),
    /// An edit written to the outputs folder (reported only when it failed).
    Output(Result<PathBuf, String>),
    /// The job panicked; nothing it would have changed has changed.
    Crashed(String),
}

/// The sizes a photo is cut to.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub canvas: usize,
    pub model: usize,
}

pub struct PhotoJobs {
    tx: Sender<PhotoDone>,
    rx: Receiver<PhotoDone>,
    pending: usize,
    ctx: egui::Context,
}

impl PhotoJobs {
    pub fn new(ctx: egui::Context) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Self { tx, rx, pending: 0, ctx }
    }

    /// Whether a job is still running.
    pub fn busy(&self) -> bool {
        self.pending > 0
    }

    /// Reads the photo at `path` cut at `crop` (by default its centred square).
    pub fn open(&mut self, path: PathBuf, crop: Option<Crop>, sizes: Sizes) {
        self.spawn(move || {
            PhotoDone::Opened(Photo::load(&path, crop).map(|photo| OpenedPhoto {
                underlay: crop_image(&photo, sizes.canvas),
                overview: overview_image(&photo.full),
                model_input: photo.model_input(sizes.model),
                path,
                photo,
            }))
        });
    }

    /// Cuts `photo` (of the file at `path`) again at `crop`, already checked against it.
    pub fn recrop(&mut self, path: PathBuf, mut photo: Photo, crop: Crop, sizes: Sizes) {
        self.spawn(move || {
            photo.crop = crop;
            PhotoDone::Recropped(Recropped { path, crop, underlay: crop_image(&photo, sizes.canvas), model_input: photo.model_input(sizes.model) })
        });
    }

    /// Blends `edited` into `photo` and writes it to `path` as a PNG carrying `params`.
    pub fn save(&mut self, photo: Photo, edited: RgbFrame, path: PathBuf, params: ImageParams) {
        self.spawn(move || {
            let saved = pasted_back(&photo, &edited).and_then(|full| save_png_with_params(&path, &full, &params).map_err(|e| e.to_string()));
            PhotoDone::Saved(saved.map(|()| path))
        });
    }

    /// Blends `edited` into `photo` and writes it into the outputs folder.
    pub fn save_output(&mut self, photo: Photo, edited: RgbFrame, outputs: Outputs, params: ImageParams) {
        self.spawn(move || PhotoDone::Output(pasted_back(&photo, &edited).and_then(|full| outputs.write(&full, &params))));
    }

    /// The next finished job, if any.
    pub fn poll(&mut self) -> Option<PhotoDone> {
        let done = self.rx.try_recv().ok()?;
        self.pending -= 1;
        Some(done)
    }

    fn spawn(&mut self, job: impl FnOnce() -> PhotoDone + Send + 'static) {
        self.pending += 1;
        let (tx, ctx) = (self.tx.clone(), self.ctx.clone());
        std::thread::spawn(move || {
            let done = catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|panic| {
                let why = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
                PhotoDone::Crashed(why.unwrap_or_else(|| "unknown panic".into()))
            });
            // The studio may have closed; then nobody needs the result.
            let _ = tx.send(done);
            ctx.request_repaint();
        });
    }
}

/// The full photo with `edited` blended into its crop.
fn pasted_back(photo: &Photo, edited: &RgbFrame) -> Result<RgbFrame, String> {
    let image = edited.to_image().ok_or_else(|| "the edited image is malformed".to_string())?;
    Ok(RgbFrame::from_image(&photo.paste_back(&image)))
}

/// The overview's longest side in texture pixels (it shows at most 256 points wide).
const OVERVIEW_SIDE: u32 = 512;

/// The whole photo at most [`OVERVIEW_SIDE`] on its longest side, as an egui image.
fn overview_image(full: &RgbImage) -> egui::ColorImage {
    let (w, h) = full.dimensions();
    let shrink = (OVERVIEW_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (((w as f32 * shrink).round() as u32).max(1), ((h as f32 * shrink).round() as u32).max(1));
    let small = image::imageops::resize(full, tw, th, image::imageops::FilterType::Triangle);
    egui::ColorImage::from_rgb([tw as usize, th as usize], small.as_raw())
}

/// The crop at the canvas's resolution, as an egui image.
fn crop_image(photo: &Photo, size: usize) -> egui::ColorImage {
    let crop = photo.crop.cut(&photo.full, size);
    egui::ColorImage::from_rgb([size, size], crop.as_raw())
}
