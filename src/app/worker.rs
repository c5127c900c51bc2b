//! The background worker: the one place a thread is spawned for inference.
//!
//! The UI sends [`Job`]s over a channel and polls [`WorkerEvent`]s back; it
//! never blocks. The worker wakes the UI with `request_repaint` after every
//! event so progress shows as soon as it exists.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use image::RgbImage;

use crate::data::mask::Mask;
use crate::model::checkpoint::LoadProgress;
use crate::pipeline::edit::{EditEvent, EditRequest};
use crate::pipeline::generate::{Event, GenerateRequest, RgbFrame};

/// What the studio shows about the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    /// Image side length in pixels.
    pub resolution: usize,
    pub parameters: usize,
    /// Where it runs: "CUDA GPU 0 (NVIDIA H200)", "CPU (8 threads)".
    pub device: String,
    /// Why it runs on the CPU although a GPU was looked for.
    pub device_fallback: Option<String>,
}

/// Something that turns a [`GenerateRequest`] into a stream of [`Event`]s.
/// The studio depends on this and nothing else of the engine.
pub trait Engine: Send + Sync {
    /// Runs one generation; returns early (with `Ok`) once `cancel` is set.
    fn generate(&self, request: &GenerateRequest, cancel: &AtomicBool, sink: &mut dyn FnMut(Event)) -> Result<(), String>;
    fn describe(&self) -> ModelInfo;
    /// A photo crop's own mask and description, as the judges read them.
    fn read_photo(&self, _photo: &RgbImage) -> Result<(Mask, String), String> {
        Err("this model comes without a face parser; paint the photo's mask and describe it yourself".into())
    }
    /// One photo edit, one image per alpha; returns early (with `Ok` and no images) once `cancel` is set.
    fn edit(&self, _request: &EditRequest, _cancel: &AtomicBool, _sink: &mut dyn FnMut(EditEvent)) -> Result<Vec<(f64, RgbFrame)>, String> {
        Err("this model cannot edit photos".into())
    }
}

/// Builds an engine, counting its progress; runs on the worker thread because loading weights takes seconds.
pub type EngineLoader = Box<dyn FnOnce(Arc<LoadProgress>) -> Result<Arc<dyn Engine>, String> + Send>;

/// Work for the worker, in the order it arrives.
pub enum Job {
    LoadModel { label: String, load: EngineLoader },
    /// A generation; `cancel` belongs to this job alone, so a late cancel never stops the next one.
    Generate { request: GenerateRequest, cancel: Arc<AtomicBool> },
    /// Read a photo crop's mask and description.
    ReadPhoto { photo: RgbImage },
    Edit { request: Box<EditRequest>, cancel: Arc<AtomicBool> },
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    Cancelled,
    Failed(String),
}

/// What the worker reports back.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    ModelLoading { label: String, progress: Arc<LoadProgress> },
    ModelLoaded(ModelInfo),
    /// `kept`: the model the worker still serves, if one was loaded before.
    ModelFailed { label: String, error: String, kept: Option<ModelInfo> },
    Generation(Event),
    GenerationEnded(Outcome),
    PhotoRead(Result<(Mask, String), String>),
    Edit(EditEvent),
    EditEnded { images: Vec<(f64, RgbFrame)>, outcome: Outcome },
}

/// The UI's handle on the worker thread.
pub struct Worker {
    jobs: Option<Sender<Job>>,
    events: Receiver<WorkerEvent>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Spawns the worker; `wake` is called after every event (the UI passes `ctx.request_repaint`).
    pub fn spawn(engine: Option<Arc<dyn Engine>>, wake: impl Fn() + Send + 'static) -> Self {
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (event_tx, event_rx) = crossbeam_channel::unbounded::<WorkerEvent>();
        let thread = std::thread::Builder::new()
            .name("codiff-worker".into())
            .spawn(move || worker_loop(engine, job_rx, event_tx, wake))
            .ok();
        Self { jobs: Some(job_tx), events: event_rx, thread }
    }

    /// Queues a job; returns false when the worker thread is gone.
    pub fn send(&self, job: Job) -> bool {
        self.thread.is_some() && self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Every event that has arrived since the last call, without waiting.
    pub fn poll(&self) -> Vec<WorkerEvent> {
        self.events.try_iter().collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the job channel ends the loop once the current job returns.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn worker_loop(mut engine: Option<Arc<dyn Engine>>, jobs: Receiver<Job>, events: Sender<WorkerEvent>, wake: impl Fn()) {
    let send = |event: WorkerEvent| {
        let _ = events.send(event);
        wake();
    };
    if let Some(engine) = &engine {
        send(WorkerEvent::ModelLoaded(engine.describe()));
    }
    for job in jobs.iter() {
        match job {
            Job::LoadModel { label, load } => {
                let progress = Arc::new(LoadProgress::default());
                send(WorkerEvent::ModelLoading { label: label.clone(), progress: progress.clone() });
                match load(progress) {
                    Ok(loaded) => {
                        send(WorkerEvent::ModelLoaded(loaded.describe()));
                        engine = Some(loaded);
                    }
                    // The old model stays until a new one has loaded in full.
                    Err(error) => send(WorkerEvent::ModelFailed { label, error, kept: engine.as_ref().map(|e| e.describe()) }),
                }
            }
            Job::Generate { request, cancel } => {
                let outcome = match &engine {
                    None => Outcome::Failed("no model is loaded; open a model first".into()),
                    Some(engine) => {
                        let result = engine.generate(&request, &cancel, &mut |event| send(WorkerEvent::Generation(event)));
                        match result {
                            Err(error) => Outcome::Failed(error),
                            Ok(()) if cancel.load(Ordering::Relaxed) => Outcome::Cancelled,
                            Ok(()) => Outcome::Finished,
                        }
                    }
                };
                send(WorkerEvent::GenerationEnded(outcome));
            }
            Job::ReadPhoto { photo } => {
                let read = engine.as_ref().ok_or_else(|| "no model is loaded; open a model first".to_string()).and_then(|e| e.read_photo(&photo));
                send(WorkerEvent::PhotoRead(read));
            }
            Job::Edit { request, cancel } => {
                let (images, outcome) = match &engine {
                    None => (Vec::new(), Outcome::Failed("no model is loaded; open a model first".into())),
                    Some(engine) => match engine.edit(&request, &cancel, &mut |event| send(WorkerEvent::Edit(event))) {
                        Err(error) => (Vec::new(), Outcome::Failed(error)),
                        Ok(_) if cancel.load(Ordering::Relaxed) => (Vec::new(), Outcome::Cancelled),
                        Ok(images) => (images, Outcome::Finished),
                    },
                };
                send(WorkerEvent::EditEnded { images, outcome });
            }
        }
    }
}
