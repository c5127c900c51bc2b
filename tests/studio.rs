//! Interaction tests of the studio, driven through egui_kittest on a software
//! Vulkan renderer. A scripted engine stands in for the diffusion engine: it
//! emits events of the real shapes at a fixed pace, so the UI's handling of
//! streaming, completion and cancellation is what is tested.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codiff::app::canvas::{stamp_disc, Ink, Tool};
use codiff::app::palette::CLASS_KEYS;
use codiff::app::worker::{Engine, ModelInfo};
use codiff::app::generation::Settings;
use codiff::app::{ModelStatus, Studio, StudioOptions, MIN_WINDOW_SIZE};
use codiff::data::image_params::read_png_params;
use codiff::data::mask::{class, Mask, NUM_CLASSES};
use codiff::diffusion::collaborate::CombineMode;
use codiff::model::defaults::ModelFiles;
use codiff::pipeline::edit::{Crop, EditEvent, EditRequest};
use codiff::pipeline::generate::{Event, GenerateRequest, RgbFrame, ScalarMap, StepFrame};
use clap::Parser;
use egui::{Key, Modifiers, PointerButton, Pos2};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

mod common;
// Tests of issue 20's editing feedback and steady layout, in their own files.
#[path = "studio/editing.rs"]
mod editing;
#[path = "studio/layout.rs"]
mod layout;

/// Side of the scripted engine's images.
const IMAGE: usize = 64;

/// Emits one step every `step_delay`, checking the cancel flag before each step as the real engine does.
struct ScriptedEngine {
    step_delay: Duration,
    /// Step events emitted so far, over all runs.
    emitted: Arc<AtomicUsize>,
    /// A warning sent at the start of every run, as the real engine warns about a prompt it cuts.
    warning: Option<&'static str>,
}

fn ramp(width: usize, height: usize, f: impl Fn(usize, usize) -> f32) -> ScalarMap {
    let values = (0..width * height).map(|i| f(i % width, i / width)).collect();
    ScalarMap { width, height, values }
}

fn rgb(f: impl Fn(usize, usize) -> [u8; 3]) -> RgbFrame {
    let pixels = (0..IMAGE * IMAGE).flat_map(|i| f(i % IMAGE, i / IMAGE)).collect();
    RgbFrame { width: IMAGE, height: IMAGE, pixels }
}

impl Engine for ScriptedEngine {
    fn generate(&self, request: &GenerateRequest, cancel: &AtomicBool, sink: &mut dyn FnMut(Event)) -> Result<(), String> {
        let started = Instant::now();
        if let Some(warning) = self.warning {
            sink(Event::Warning(warning.into()));
        }
        let total = request.steps;
        for index in 0..total {
            if cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(self.step_delay);
            let progress = (index + 1) as f32 / total as f32;
            let frames = (0..request.batch)
                .map(|b| {
                    let w_mask = ramp(IMAGE / 2, IMAGE / 2, |x, y| ((x + y) as f32 / IMAGE as f32 * (1.0 - progress)).clamp(0.0, 1.0));
                    let w_text = ScalarMap { values: w_mask.values.iter().map(|v| 1.0 - v).collect(), ..w_mask.clone() };
                    StepFrame {
                        pred_x0: rgb(|x, y| [(x * 4) as u8, (y * 4) as u8, (progress * 255.0) as u8 ^ b as u8]),
                        x_t: rgb(|x, y| [((x * 37 + y * 11 + index * 5) % 256) as u8; 3]),
                        w_mask,
                        w_text,
                    }
                })
                .collect();
            let t = 1000 - 1000 * (index + 1) / total;
            sink(Event::Step { index, total, t, elapsed_secs: started.elapsed().as_secs_f64(), frames });
            self.emitted.fetch_add(1, Ordering::SeqCst);
        }
        let images = (0..request.batch).map(|b| rgb(|x, y| [200, (x * 4) as u8, (y * 4 + b) as u8])).collect();
        sink(Event::Done { images, elapsed_secs: started.elapsed().as_secs_f64() });
        Ok(())
    }

    fn describe(&self) -> ModelInfo {
        ModelInfo { name: "scripted test engine".into(), resolution: IMAGE, parameters: 0, device: "CPU".into(), device_fallback: None }
    }

    /// Reads every photo as a skin disc on background, described as a man in his twenties.
    fn read_photo(&self, photo: &image::RgbImage) -> Result<(Mask, String), String> {
        assert_eq!(photo.dimensions(), (IMAGE as u32, IMAGE as u32), "the judges get the crop at the model's size");
        let mut mask = Mask::filled(IMAGE, IMAGE, class::BACKGROUND);
        stamp_disc(&mut mask, Pos2::new(32.0, 32.0), 20.0, Ink::Class(class::SKIN));
        Ok((mask, "This man is in his twenties.".into()))
    }

    /// Streams a step event for every step of the request's plan, then returns
    /// one flat image per alpha, red as much as the target mask has skin.
    fn edit(&self, request: &EditRequest, cancel: &AtomicBool, sink: &mut dyn FnMut(EditEvent)) -> Result<Vec<(f64, RgbFrame)>, String> {
        for (stage, (phase, total)) in request.plan().into_iter().enumerate() {
            for step in 1..=total {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                std::thread::sleep(self.step_delay);
                sink(EditEvent::Stage { phase, name: format!("stage {stage}"), step, total });
            }
        }
        let skin = request.target_mask.class_histogram()[class::SKIN as usize] as f32 / (IMAGE * IMAGE) as f32;
        let red = (skin * 255.0) as u8;
        Ok(request.alphas.iter().map(|&a| (a, rgb(|_, _| [red, 0, 0]))).collect())
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("codiff-studio-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn studio(step_delay_ms: u64, autosave_dir: Option<PathBuf>) -> Harness<'static, Studio> {
    studio_counting(step_delay_ms, autosave_dir, Arc::default())
}

fn studio_counting(step_delay_ms: u64, autosave_dir: Option<PathBuf>, emitted: Arc<AtomicUsize>) -> Harness<'static, Studio> {
    let engine = ScriptedEngine { step_delay: Duration::from_millis(step_delay_ms), emitted, warning: None };
    studio_with(engine, [1600.0, 1000.0], StudioOptions { autosave_dir, samples_dir: PathBuf::from("/nonexistent/samples"), ..StudioOptions::default() })
}

/// A studio window of `size` on `engine`, with `options` (whose engine is replaced).
fn studio_with(engine: ScriptedEngine, size: [f32; 2], options: StudioOptions) -> Harness<'static, Studio> {
    let options = StudioOptions { engine: Some(Arc::new(engine)), loader: None, model_error: None, photo: None, ..options };
    let mut harness = Harness::builder().with_size(size).wgpu().build_eframe(|cc| Studio::new(cc, options));
    run_until(&mut harness, "the engine reports its model", |s| matches!(s.model_status(), ModelStatus::Ready(_)));
    harness
}

/// Steps the UI until `done` holds; the worker runs on its own thread meanwhile.
fn run_until(harness: &mut Harness<'_, Studio>, what: &str, done: impl Fn(&Studio) -> bool) {
    run_until_within(harness, what, 20, done);
}

fn run_until_within(harness: &mut Harness<'_, Studio>, what: &str, secs: u64, done: impl Fn(&Studio) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(harness.state()) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    harness.step();
}

fn screen(harness: &Harness<'_, Studio>, x: f32, y: f32) -> Pos2 {
    harness.state().canvas().mask_to_screen(Pos2::new(x, y)).expect("the canvas was drawn")
}

/// A horizontal brush stroke across the canvas from mask x = 100 to 400 at y = 256.
fn drag_stroke(harness: &mut Harness<'_, Studio>) {
    let (from, to) = (screen(harness, 100.0, 256.0), screen(harness, 400.0, 256.0));
    drag(harness, from, to);
}

/// A mouse drag from `from` to `to` in ten moves, a frame each.
fn drag(harness: &mut Harness<'_, Studio>, from: Pos2, to: Pos2) {
    harness.hover_at(from);
    harness.step();
    harness.drag_at(from);
    harness.step();
    for i in 1..=10 {
        harness.hover_at(from.lerp(to, i as f32 / 10.0));
        harness.step();
    }
    harness.drop_at(to);
    harness.run();
}

/// The primary button going down or up at `pos`, as an event to put into one frame.
fn primary(pos: Pos2, pressed: bool) -> egui::Event {
    egui::Event::PointerButton { pos, button: PointerButton::Primary, pressed, modifiers: Modifiers::NONE }
}

/// A key press without modifiers, as an event to put into one frame.
fn plain_press(key: Key) -> egui::Event {
    egui::Event::Key { key, physical_key: None, pressed: true, repeat: false, modifiers: Modifiers::NONE }
}

#[test]
fn drag_paints_the_selected_class_and_undo_redo_restore_it_exactly() {
    let mut harness = studio(0, None);
    harness.key_press(Key::H);
    harness.run();
    assert_eq!(harness.state().canvas().class, 13, "H selects hair");
    let blank = harness.state().mask().clone();

    drag_stroke(&mut harness);
    let painted = harness.state().mask().clone();
    for x in [100, 180, 256, 330, 400] {
        assert_eq!(painted.get(x, 256), 13, "hair along the stroke at x = {x}");
    }
    assert_eq!(painted.get(256, 100), 0, "nothing painted away from the stroke");
    let radius = harness.state().canvas().brush_radius as usize;
    assert_eq!(painted.get(256, 256 + radius + 2), 0, "the stroke is as wide as the brush");

    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.run();
    assert_eq!(harness.state().mask(), &blank, "one undo removes the whole stroke");
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    harness.run();
    assert_eq!(harness.state().mask(), &painted, "redo restores it exactly");
}

#[test]
fn a_quick_stroke_within_one_slow_frame_paints_along_its_bend() {
    // While a generation keeps the CPU busy, a frame can hold a whole stroke.
    let mut harness = studio(0, None);
    harness.key_press(Key::H);
    harness.run();
    let path = [(100.0, 100.0), (400.0, 100.0), (400.0, 400.0)].map(|(x, y)| screen(&harness, x, y));
    harness.hover_at(path[0]);
    harness.step();
    let frame = &mut harness.input_mut().events; // the harness's own queue feeds one event a frame
    frame.push(primary(path[0], true));
    frame.extend(path.map(egui::Event::PointerMoved));
    frame.push(primary(path[2], false));
    harness.step();
    harness.run();
    let mask = harness.state().mask();
    for (x, y) in [(100, 100), (250, 100), (400, 100), (400, 250), (400, 400)] {
        assert_eq!(mask.get(x, y), class::HAIR, "hair along the stroke at ({x}, {y})");
    }
    assert_eq!(mask.get(250, 250), 0, "nothing along the chord from the first point to the last");
}

#[test]
fn a_class_key_between_two_strokes_in_one_frame_changes_only_the_second() {
    let mut harness = studio(0, None);
    harness.key_press(Key::H);
    harness.run();
    let [a, b, c, d] = [(100.0, 100.0), (400.0, 100.0), (100.0, 400.0), (400.0, 400.0)].map(|(x, y)| screen(&harness, x, y));
    let frame = &mut harness.input_mut().events;
    frame.extend([egui::Event::PointerMoved(a), primary(a, true), egui::Event::PointerMoved(b), primary(b, false)]);
    frame.push(plain_press(Key::Num1));
    frame.extend([egui::Event::PointerMoved(c), primary(c, true), egui::Event::PointerMoved(d), primary(d, false)]);
    harness.step();
    harness.run();
    let mask = harness.state().mask();
    assert_eq!((mask.get(250, 100), mask.get(400, 100)), (class::HAIR, class::HAIR), "the first stroke, to its end, in hair");
    assert_eq!((mask.get(100, 400), mask.get(250, 400)), (class::SKIN, class::SKIN), "the second in skin");
}

#[test]
fn eraser_and_fill_tools_follow_their_hotkeys() {
    let mut harness = studio(0, None);
    harness.key_press(Key::F);
    harness.run();
    assert_eq!(harness.state().canvas().tool, Tool::Fill);
    harness.key_press(Key::Num1);
    harness.run();
    let at = screen(&harness, 10.0, 10.0);
    harness.hover_at(at);
    harness.step();
    harness.drag_at(at);
    harness.step();
    harness.drop_at(at);
    harness.run();
    assert_eq!(harness.state().mask().class_histogram()[class::SKIN as usize], 512 * 512, "the fill covers the connected background");
}

#[test]
fn hotkeys_select_every_class() {
    let mut harness = studio(0, None);
    for class in (0..NUM_CLASSES).rev() {
        harness.key_press(CLASS_KEYS[class]);
        harness.run();
        assert_eq!(harness.state().canvas().class as usize, class, "key {:?}", CLASS_KEYS[class]);
    }
}

#[test]
fn generate_streams_step_previews_and_ends_with_an_image() {
    let mut harness = studio(60, None);
    harness.state_mut().settings_mut().steps = 6;
    harness.state_mut().settings_mut().batch = 2;
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    harness.step();
    assert!(harness.state().is_generating());

    run_until(&mut harness, "the first step arrives", |s| !s.timeline().steps.is_empty());
    assert!(harness.state().is_generating());
    assert!(!harness.state().previews_final(), "a step shows a preview, not a result");
    assert_eq!(harness.state().preview_sizes(), vec![[IMAGE, IMAGE]; 2]);
    assert!(harness.query_by_label_contains("of 6").is_some(), "the progress bar reads step k of 6");

    run_until(&mut harness, "the run ends", |s| !s.is_generating());
    let studio = harness.state();
    assert!(studio.previews_final());
    assert_eq!(studio.preview_sizes(), vec![[IMAGE, IMAGE]; 2]);
    assert_eq!(studio.timeline().steps.len(), 6);
    assert_eq!(studio.timeline().steps.last().unwrap().t, 0);
    assert_eq!(studio.history().len(), 1);
    assert_eq!(studio.history()[0].images.len(), 2);
    assert_eq!(studio.history()[0].images[0].pixels[0], 200);
    assert!(studio.last_first_preview_secs.is_some_and(|s| s < 1.0));

    // The run exports as one looping GIF, a frame per step, the four views side by side.
    let gif = temp_dir("gif").join("steps.gif");
    assert_eq!(studio.timeline().export_gif(&gif), Ok(6));
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(std::fs::File::open(&gif).unwrap())).unwrap();
    let frames = image::AnimationDecoder::into_frames(decoder).collect_frames().unwrap();
    assert_eq!(frames.len(), 6);
    assert_eq!(frames[0].buffer().dimensions(), (4 * IMAGE as u32, IMAGE as u32), "each view at the output image's size");
}

#[test]
fn cancel_stops_a_run_within_one_step() {
    let emitted = Arc::new(AtomicUsize::new(0));
    let mut harness = studio_counting(80, None, emitted.clone());
    harness.state_mut().settings_mut().steps = 40;
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "two steps arrive", |s| s.timeline().steps.len() >= 2);
    harness.get_by_label("Cancel").click();
    run_until(&mut harness, "the Cancel click registers", |s| s.cancel_requested());
    // Read after the flag was set, so this is at least the count at that moment.
    let steps_at_cancel = emitted.load(Ordering::SeqCst);
    run_until(&mut harness, "the run ends", |s| !s.is_generating());
    let steps = harness.state().timeline().steps.len();
    assert!(steps <= steps_at_cancel + 1, "{steps} steps arrived after cancelling at {steps_at_cancel}");
    assert!(steps < 40);
    assert!(harness.state().history().is_empty(), "a cancelled run leaves no result");
    assert!(!harness.state().previews_final(), "the last preview stays");
    harness.get_by_label_contains("Cancelled after step");

    // A new run is not affected by the old cancel.
    harness.state_mut().settings_mut().steps = 3;
    harness.state_mut().generate();
    run_until(&mut harness, "the second run ends", |s| !s.is_generating());
    assert_eq!(harness.state().timeline().steps.len(), 3);
    assert!(!harness.state().messages().iter().any(|m| m.text.starts_with("Cancelled")), "a finished run clears the old Cancelled message");

    // Esc cancels too.
    harness.state_mut().settings_mut().steps = 40;
    let before = emitted.load(Ordering::SeqCst);
    harness.state_mut().generate();
    run_until(&mut harness, "a step arrives", |s| !s.timeline().steps.is_empty());
    harness.key_press(Key::Escape);
    harness.step();
    // The flag is set within this frame; the run may even end within it.
    let steps_at_cancel = emitted.load(Ordering::SeqCst) - before;
    run_until(&mut harness, "the third run ends", |s| !s.is_generating());
    let steps = harness.state().timeline().steps.len();
    assert!(steps <= steps_at_cancel + 1 && steps < 40, "Esc: {steps} steps after cancelling at {steps_at_cancel}");
    assert!(harness.state().messages().last().is_some_and(|m| m.text.starts_with("Cancelled after step")));
}

#[derive(Debug)]
struct DroppedPath(PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn loading_a_bad_mask_shows_a_message_and_keeps_the_current_mask() {
    let dir = temp_dir("bad-mask");
    let mut harness = studio(0, None);
    drag_stroke(&mut harness);
    let painted = harness.state().mask().clone();

    let not_png = dir.join("notes.png");
    std::fs::write(&not_png, b"this is not an image").unwrap();
    harness.input_mut().dropped_files.push(Arc::new(DroppedPath(not_png)));
    harness.run();
    assert_eq!(harness.state().mask(), &painted);
    harness.get_by_label_contains("notes.png is not a readable image");

    // "Load mask…" insists on a mask (a dropped file of other colours opens as a photo).
    let grey = dir.join("grey.png");
    image::RgbImage::from_pixel(8, 8, image::Rgb([128, 128, 128])).save(&grey).unwrap();
    harness.state_mut().load_mask(&grey);
    harness.run();
    assert_eq!(harness.state().mask(), &painted);
    harness.get_by_label_contains("is not one of the 19 mask colours");

    let good = dir.join("good.png");
    Mask::filled(256, 256, class::NECK).save(&good).unwrap();
    harness.input_mut().dropped_files.push(Arc::new(DroppedPath(good)));
    harness.run();
    assert_eq!(harness.state().mask(), &Mask::filled(256, 256, class::NECK), "a good mask replaces it");
}

#[test]
fn saving_never_replaces_a_file_without_asking() {
    let dir = temp_dir("save");
    let existing = dir.join("mask.png");
    std::fs::write(&existing, b"precious").unwrap();
    let mut harness = studio(0, None);
    drag_stroke(&mut harness);

    harness.state_mut().save_mask(&existing);
    harness.run();
    assert_eq!(harness.state().pending_overwrite(), Some(existing.as_path()));
    harness.get_by_label("Keep the file").click();
    harness.run();
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");

    harness.state_mut().save_mask(&existing);
    harness.run();
    harness.get_by_label("Replace").click();
    harness.run();
    assert_eq!(&Mask::load(&existing).unwrap(), harness.state().mask());
}

#[test]
fn open_work_is_restored_on_start() {
    let dir = temp_dir("autosave");
    let mut harness = studio(0, Some(dir.clone()));
    drag_stroke(&mut harness);
    harness.state_mut().set_prompt("This woman is in her forties.");
    harness.state_mut().settings_mut().seed = 1234;
    eframe::App::on_exit(harness.state_mut());
    let mask = harness.state().mask().clone();
    drop(harness);

    let harness = studio(0, Some(dir));
    assert_eq!(harness.state().mask(), &mask);
    assert_eq!(harness.state().prompt(), "This woman is in her forties.");
    assert!(harness.query_all_by_value("This woman is in her forties.").next().is_some(), "the prompt box shows it");
    assert_eq!(harness.state().history().len(), 0);
}

/// Paints a rough frontal face: hair, skin, ears, brows, eyes, nose, lips, neck and cloth.
fn paint_face(mask: &mut Mask) {
    use class::*;
    let disc = |m: &mut Mask, x: f32, y: f32, r: f32, c: u8| stamp_disc(m, Pos2::new(x, y), r, Ink::Class(c));
    for y in 380..512 {
        for x in 60..452 {
            mask.set(x, y, CLOTH);
        }
    }
    for y in 300..430 {
        for x in 200..312 {
            mask.set(x, y, NECK);
        }
    }
    disc(mask, 256.0, 210.0, 175.0, HAIR);
    disc(mask, 256.0, 250.0, 135.0, SKIN);
    disc(mask, 256.0, 300.0, 110.0, SKIN);
    disc(mask, 118.0, 260.0, 24.0, R_EAR);
    disc(mask, 394.0, 260.0, 24.0, L_EAR);
    for (x, eye, brow) in [(200.0, R_EYE, R_BROW), (312.0, L_EYE, L_BROW)] {
        disc(mask, x, 240.0, 16.0, eye);
        for dx in -24..=24 {
            disc(mask, x + dx as f32, 212.0 - (dx as f32 / 10.0).powi(2), 5.0, brow);
        }
    }
    disc(mask, 256.0, 290.0, 20.0, NOSE);
    for dx in -40..=40 {
        disc(mask, 256.0 + dx as f32, 342.0, 7.0, U_LIP);
        disc(mask, 256.0 + dx as f32, 356.0, 8.0, L_LIP);
    }
}

#[test]
fn snapshot_after_a_generation() {
    let mut harness = studio(10, None);
    let mut mask = Mask::filled(512, 512, class::BACKGROUND);
    paint_face(&mut mask);
    harness.state_mut().canvas_mut().replace_mask(mask);
    harness.state_mut().set_prompt("This man has beard of medium length. He is in his thirties.");
    harness.state_mut().settings_mut().steps = 8;
    harness.state_mut().generate();
    run_until(&mut harness, "the run ends", |s| !s.is_generating());
    harness.run();
    harness.snapshot("studio_after_generation");
}

/// The golden tiny composed model's config and checkpoint.
fn golden_model_files(golden: &common::Golden) -> ModelFiles {
    let config = std::fs::read_dir(&golden.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .find(|p| matches!(codiff::model::config::ModelConfig::load(p), Ok(codiff::model::config::ModelConfig::Composed(_))))
        .expect("the golden directory holds a composed config");
    let weights = ["ckpt", "safetensors"].iter().map(|ext| config.with_extension(ext)).find(|p| p.is_file()).expect("its checkpoint");
    ModelFiles { config, weights }
}

/// The studio with the real engine on the golden tiny model, loaded.
fn studio_with_golden_model(golden: &common::Golden) -> Harness<'static, Studio> {
    let options = StudioOptions {
        loader: Some(codiff::app::engine::loader(golden_model_files(golden))),
        autosave_dir: None,
        samples_dir: PathBuf::from("/nonexistent/samples"),
        ..StudioOptions::default()
    };
    let mut harness = Harness::builder().with_size([1600.0, 1000.0]).wgpu().build_eframe(|cc| Studio::new(cc, options));
    run_until_within(&mut harness, "the model loads", 300, |s| matches!(s.model_status(), ModelStatus::Ready(_)));
    harness
}

/// Runs `codiff generate` with the golden tiny model, as the command line does.
fn codiff_generate(golden: &common::Golden, args: &[&str]) {
    let files = golden_model_files(golden);
    let mut argv = vec!["codiff".to_string(), "generate".into(), "--force".into()];
    argv.extend(["--config".into(), files.config.display().to_string(), "--ckpt".into(), files.weights.display().to_string()]);
    argv.extend(args.iter().map(|a| a.to_string()));
    let command = codiff::cli::Cli::try_parse_from(argv).unwrap().command.unwrap();
    codiff::cli::run(command, false).unwrap();
}

/// A PNG written by `codiff generate` and dropped on the studio brings back
/// its prompt, sampler settings and mask.
#[test]
fn a_png_from_the_command_line_restores_its_settings_and_mask() {
    let Some(golden) = common::Golden::get() else { return };
    let dir = temp_dir("cli-png");
    let (mask_path, out) = (dir.join("mask.png"), dir.join("face.png"));
    let mask = golden.mask();
    mask.save(&mask_path).unwrap();
    let text = "This woman is in her forties and has no beard.";
    let (mask_arg, out_arg) = (mask_path.display().to_string(), out.display().to_string());
    codiff_generate(golden, &["--mask", &mask_arg, "--text", text, "--seed", "7", "--steps", "4", "--eta", "0.5", "--mode", "composable", "--out", &out_arg]);

    let mut harness = studio(0, None);
    drag_stroke(&mut harness);
    harness.input_mut().dropped_files.push(Arc::new(DroppedPath(out)));
    harness.run();
    let studio = harness.state_mut();
    assert_eq!(studio.prompt(), text);
    assert_eq!(studio.mask(), &mask);
    let settings = studio.settings_mut().clone();
    assert_eq!((settings.seed, settings.steps, settings.eta, settings.mode), (7, 4, 0.5, CombineMode::Composable));
    assert!(settings.seed_locked, "Generate makes the same image again");
    harness.get_by_label_contains("and its mask");
}

/// A result the studio saved, given to `codiff generate` with the settings
/// it carries, comes out pixel for pixel the same.
#[test]
fn a_png_the_studio_saved_is_made_again_by_the_command_line() {
    let Some(golden) = common::Golden::get() else { return };
    let mut harness = studio_with_golden_model(golden);
    let studio = harness.state_mut();
    studio.canvas_mut().replace_mask(golden.mask());
    studio.set_prompt(&golden.captions()[0]);
    *studio.settings_mut() = Settings { seed: 3, seed_locked: true, steps: 4, eta: 1.0, mode: CombineMode::Collaborative, batch: 2 };
    harness.get_by_label("Generate").click();
    run_until_within(&mut harness, "the run ends", 300, |s| s.history().len() == 1 && !s.is_generating());

    let dir = temp_dir("studio-png");
    let saved = dir.join("saved.png");
    harness.state_mut().save_result(0, 1, &saved);
    let params = read_png_params(&saved).unwrap().expect("the saved PNG carries its settings");
    assert_eq!((params.seed, params.steps, params.mode), (4, 4, CombineMode::Collaborative), "the second image's seed");
    assert_eq!(params.mask.as_ref(), Some(&golden.mask()));
    let mask_path = dir.join("mask.png");
    params.mask.as_ref().unwrap().save(&mask_path).unwrap();
    let out = dir.join("again.png");
    let (seed, steps, eta) = (params.seed.to_string(), params.steps.to_string(), params.eta.to_string());
    let (mask_arg, out_arg) = (mask_path.display().to_string(), out.display().to_string());
    codiff_generate(golden, &["--mask", &mask_arg, "--text", &params.prompt, "--seed", &seed, "--steps", &steps, "--eta", &eta, "--mode", "collaborative", "--out", &out_arg]);

    let pixels = |path: &Path| image::open(path).unwrap().to_rgb8();
    assert_eq!(pixels(&out), pixels(&saved), "the same settings make the same pixels");
    let again = read_png_params(&out).unwrap().unwrap();
    assert_eq!(again, params, "and the command line records the same settings");
}

/// The real engine on the golden tiny composed model: the studio loads it on
/// the worker, streams every DDIM step and ends with images of the model's size.
#[test]
fn the_real_engine_streams_into_the_studio() {
    let Some(golden) = common::Golden::get() else { return };
    let mut harness = studio_with_golden_model(golden);

    let (batch, _, height, width) = golden.tensor("sample.image").dims4().unwrap();
    let (steps, _, _, map_h, map_w) = golden.tensor("sample.w_mask").dims5().unwrap();
    let ModelStatus::Ready(info) = harness.state().model_status().clone() else { unreachable!() };
    assert_eq!(info.resolution, width);
    assert!(info.parameters > 0);

    let studio = harness.state_mut();
    studio.canvas_mut().replace_mask(golden.mask());
    studio.set_prompt(&golden.captions()[0]);
    studio.settings_mut().steps = golden.meta("sample_S").parse().unwrap();
    studio.settings_mut().batch = batch;
    harness.get_by_label("Generate").click();
    run_until_within(&mut harness, "the first step arrives", 300, |s| !s.timeline().steps.is_empty());
    run_until_within(&mut harness, "the run ends", 300, |s| !s.is_generating());

    let studio = harness.state();
    assert!(studio.messages().iter().all(|m| m.kind != codiff::app::MessageKind::Error), "{:?}", studio.messages());
    assert_eq!(studio.timeline().steps.len(), steps, "one timeline entry per DDIM step");
    let frame = &studio.timeline().steps[steps / 2].frames[0];
    assert_eq!((frame.w_mask.width, frame.w_mask.height), (map_w, map_h));
    for (m, t) in frame.w_mask.values.iter().zip(&frame.w_text.values) {
        assert!((m + t - 1.0).abs() < 1e-4, "collaborative shares sum to 1, got {m} + {t}");
    }
    assert!(studio.previews_final());
    assert_eq!(studio.preview_sizes(), vec![[width, height]; batch]);
    assert_eq!(studio.history().len(), 1);
}

#[test]
fn live_mode_regenerates_after_a_stroke_never_during_it() {
    let mut harness = studio(20, None);
    harness.state_mut().settings_mut().steps = 3;
    harness.get_by_label("live").click();
    harness.run();
    assert!(harness.state().live);

    let (from, to) = (screen(&harness, 100.0, 100.0), screen(&harness, 300.0, 100.0));
    harness.hover_at(from);
    harness.step();
    harness.drag_at(from);
    harness.step();
    for i in 1..=4 {
        harness.hover_at(from.lerp(to, i as f32 / 4.0));
        harness.step();
        std::thread::sleep(Duration::from_millis(250)); // longer than the debounce, mid-stroke
        harness.step();
        assert!(!harness.state().is_generating(), "no run starts mid-stroke");
    }
    harness.drop_at(to);
    harness.step();
    assert!(harness.state().mask().get(200, 100) != class::BACKGROUND, "the stroke painted");
    run_until(&mut harness, "live mode starts a run", |s| s.is_generating());
    run_until(&mut harness, "the run ends", |s| !s.is_generating());
    assert_eq!(harness.state().history().len(), 1);
    // Nothing changed since: no further run.
    std::thread::sleep(Duration::from_millis(800));
    harness.run();
    assert!(!harness.state().is_generating());
    assert_eq!(harness.state().history().len(), 1);
}

#[test]
fn open_sample_lists_the_samples_folder_and_copes_without_one() {
    let mut harness = studio(0, None);
    harness.get_by_label("Open sample").click();
    harness.run();
    harness.get_by_label_contains("No sample masks in /nonexistent/samples");

    let dir = temp_dir("samples");
    Mask::filled(64, 64, class::HAIR).save(dir.join("all_hair.png")).unwrap();
    let options = StudioOptions { autosave_dir: None, samples_dir: dir.clone(), ..StudioOptions::default() };
    let mut harness = Harness::builder().with_size([1600.0, 1000.0]).wgpu().build_eframe(|cc| Studio::new(cc, options));
    harness.get_by_label("Open sample").click();
    harness.run();
    harness.get_by_label("all_hair").click();
    harness.run();
    assert_eq!(harness.state().mask(), &Mask::filled(64, 64, class::HAIR));

    // A sample photo opens as a photo to edit, not as a mask (here there is no model to read it with).
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 150, 120])).save(dir.join("all_hair_photo.png")).unwrap();
    harness.get_by_label("Open sample").click();
    harness.run();
    harness.get_by_label("all_hair_photo").click();
    harness.run();
    assert_eq!(harness.state().mask(), &Mask::filled(64, 64, class::HAIR), "the mask is untouched");
    assert!(harness.state().messages().iter().any(|m| m.text.contains("load a model before opening a photo")), "{:?}", harness.state().messages());
}

#[test]
fn a_photo_is_read_onto_the_canvas_edited_and_pasted_back() {
    let dir = temp_dir("photo");
    let path = dir.join("portrait.jpg");
    image::RgbImage::from_pixel(300, 200, image::Rgb([0, 0, 200])).save(&path).unwrap();
    let mut harness = studio(10, None);
    harness.state_mut().open_photo(&path);
    run_until(&mut harness, "the judges read the photo", |s| s.photo().is_some_and(|p| p.source_mask.is_some()));
    let studio = harness.state();
    assert_eq!(studio.prompt(), "This man is in his twenties.", "the reading becomes the prompt to change");
    assert_eq!(studio.mask().width(), 512, "the reading is scaled to the canvas");
    assert_eq!(studio.mask().get(256, 256), 1, "skin where the parser saw it");
    assert!(studio.canvas().restore.is_some(), "the eraser restores the reading");
    harness.run();
    assert!(chip_selected(&harness, "man") && chip_selected(&harness, "twenties"), "the chips show the photo's description");

    // Paint the whole face background, then edit: the scripted edit sees the target mask.
    let blank = Mask::filled(512, 512, class::BACKGROUND);
    harness.state_mut().canvas_mut().replace_mask(blank);
    harness.state_mut().set_prompt("This man is in his sixties.");
    harness.state_mut().edit_photo();
    assert!(harness.state().is_busy(), "the edit runs on the worker");
    run_until(&mut harness, "the edit finishes", |s| !s.is_busy());
    let photo = harness.state().photo().unwrap();
    assert_eq!(photo.results.len(), 1);
    assert_eq!(photo.results[0].image.pixels[0], 0, "the target mask (no skin) reached the engine");
    let saved = dir.join("portrait-edited.png");
    harness.state_mut().save_edited_photo(0, saved.clone());
    run_until(&mut harness, "the edited photo is saved", |s| !s.photo_work_pending());
    let full = image::open(&saved).expect("the edited photo was written").to_rgb8();
    assert_eq!(full.dimensions(), (300, 200), "the edit is pasted back into the full photo");
    assert_eq!(full.get_pixel(150, 100)[2], 0, "the crop's centre is the edit");
    assert!(full.get_pixel(10, 100)[2] > 150, "outside the crop the photo is unchanged");

    let unwritable = dir.join("no-such-folder").join("edited.png");
    harness.state_mut().save_edited_photo(0, unwritable);
    run_until(&mut harness, "the failed save is reported", |s| !s.photo_work_pending());
    assert!(harness.state().messages().iter().any(|m| m.text.contains("cannot write")), "{:?}", harness.state().messages());
    assert_eq!(harness.state().photo().unwrap().results.len(), 1, "the edit is kept to save again");
}

#[test]
fn dragging_the_crop_square_moves_it_and_reads_the_new_crop() {
    let dir = temp_dir("crop-drag");
    let path = dir.join("wide.jpg");
    image::RgbImage::from_pixel(300, 200, image::Rgb([0, 0, 200])).save(&path).unwrap();
    let mut harness = studio(0, None);
    harness.state_mut().open_photo(&path);
    run_until(&mut harness, "the judges read the photo", |s| s.photo().is_some_and(|p| p.source_mask.is_some()));
    let at = |h: &Harness<'_, Studio>, x: f32, y: f32| h.state().photo().unwrap().overview_to_screen(x, y).expect("the overview was drawn");
    assert_eq!(harness.state().photo().unwrap().photo.crop, Crop { x: 50, y: 0, side: 200 }, "centred at first");

    // Drag from the middle of the square 40 photo pixels to the left.
    let (from, to) = (at(&harness, 150.0, 100.0), at(&harness, 110.0, 100.0));
    drag(&mut harness, from, to);
    run_until(&mut harness, "the new crop is cut and read", |s| !s.photo_work_pending() && s.photo().is_some_and(|p| p.source_mask.is_some()));
    let crop = harness.state().photo().unwrap().photo.crop;
    assert!((8..=12).contains(&crop.x) && crop.y == 0 && crop.side == 200, "moved left by the drag: {crop:?}");

    // Drag the corner up-left: the square shrinks about its top-left corner.
    let (from, to) = (at(&harness, crop.x as f32 + 199.0, 199.0), at(&harness, crop.x as f32 + 100.0, 100.0));
    drag(&mut harness, from, to);
    run_until(&mut harness, "the resized crop is cut and read", |s| !s.photo_work_pending() && s.photo().is_some_and(|p| p.source_mask.is_some()));
    let resized = harness.state().photo().unwrap().photo.crop;
    assert!((95..=105).contains(&resized.side) && resized.x == crop.x && resized.y == 0, "resized by its corner: {resized:?}");
}

#[test]
fn a_bad_photo_is_refused_and_nothing_changes() {
    let dir = temp_dir("bad-photo");
    let path = dir.join("broken.jpg");
    std::fs::write(&path, b"not a jpeg").unwrap();
    let mut harness = studio(0, None);
    let before = harness.state().mask().clone();
    harness.state_mut().open_photo(&path);
    run_until(&mut harness, "the photo is refused", |s| !s.photo_work_pending());
    harness.run();
    assert!(harness.state().photo().is_none());
    assert_eq!(harness.state().mask(), &before);
    assert!(harness.state().messages().iter().any(|m| m.text.contains("not a readable")), "{:?}", harness.state().messages());
}

/// A `.ckpt` whose state dict holds one tensor that declares 2^62 values over four: the
/// old reader aborted the process (and the studio's worker with it) on allocation.
fn hostile_checkpoint(dir: &Path) -> PathBuf {
    use std::io::Write;
    let int = |i: u32| [&b"J"[..], &i.to_le_bytes()].concat();
    let string = |s: &str| [&b"X"[..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat();
    let storage = [&b"("[..], &string("storage"), b"ctorch\nFloatStorage\n", &string("0"), &string("cpu"), &int(4), b"tQ"].concat();
    let huge = (1u32 << 31) - 1;
    let dims = |a: u32, b: u32| [&b"("[..], &int(a), &int(b), b"t"].concat();
    let tensor = [&b"ctorch._utils\n_rebuild_tensor_v2\n("[..], &storage, &int(0), &dims(huge, huge), &dims(huge, 1), b"\x89}tR"].concat();
    let pickle = [&b"\x80\x02}"[..], &string("state_dict"), b"}", &string("w"), &tensor, b"ss."].concat();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&pickle).unwrap();
    zip.start_file("archive/data/0", stored).unwrap();
    zip.write_all(&[0; 16]).unwrap();
    let path = dir.join("hostile.ckpt");
    std::fs::write(&path, zip.finish().unwrap().into_inner()).unwrap();
    path
}

#[test]
fn a_hostile_checkpoint_is_reported_and_the_worker_survives() {
    let dir = std::env::temp_dir().join(format!("codiff-studio-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let options = StudioOptions { autosave_dir: None, samples_dir: PathBuf::from("/nonexistent/samples"), ..StudioOptions::default() };
    let mut harness = Harness::builder().with_size([1600.0, 1000.0]).wgpu().build_eframe(|cc| Studio::new(cc, options));
    harness.step();

    let hostile = codiff::model::defaults::ModelFiles { config: models.join("codiff.yaml"), weights: hostile_checkpoint(&dir) };
    harness.state_mut().open_model(hostile);
    run_until_within(&mut harness, "the load fails", 60, |s| matches!(s.model_status(), ModelStatus::Failed(_)));
    let error = harness.state().messages().iter().find(|m| m.kind == codiff::app::MessageKind::Error).map(|m| m.text.clone());
    let error = error.expect("the failure is in the message area");
    assert!(error.contains("hostile.ckpt") && error.contains("storage holds 4"), "{error}");

    // The same worker then loads a good model.
    let good = codiff::model::defaults::ModelFiles { config: models.join("codiff.yaml"), weights: models.join("codiff.safetensors") };
    harness.state_mut().open_model(good);
    run_until_within(&mut harness, "the good model loads", 300, |s| matches!(s.model_status(), ModelStatus::Ready(_)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn first_launch_opens_a_sample_and_its_description_and_a_restored_session_wins() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    let launch = |autosave_dir: Option<PathBuf>| {
        let engine = ScriptedEngine { step_delay: Duration::ZERO, emitted: Arc::default(), warning: None };
        studio_with(engine, [1600.0, 1000.0], StudioOptions { autosave_dir, samples_dir: samples.clone(), ..StudioOptions::default() })
    };
    let dir = temp_dir("first-launch");
    let mut harness = launch(Some(dir.clone()));
    let sample = Mask::load(samples.join("00000.png")).unwrap();
    assert_eq!(harness.state().mask(), &sample);
    assert_ne!(sample.class_histogram()[class::SKIN as usize], 0, "the sample is a face, not a blank canvas");
    assert_eq!(harness.state().prompt(), "This person has a big, long beard. He is in his twenties.");
    assert!(!harness.state().canvas().can_undo(), "opening the sample is not an edit to undo");

    // Generate does something sensible at once: a result from the sample and its description.
    harness.state_mut().settings_mut().steps = 2;
    generate_and_wait(&mut harness);
    assert_eq!(harness.state().history()[0].mask, sample);

    // Once work is autosaved, it is what opens next time, not the sample.
    drag_stroke(&mut harness);
    harness.state_mut().set_prompt("She is in her sixties.");
    eframe::App::on_exit(harness.state_mut());
    let work = harness.state().mask().clone();
    drop(harness);
    let harness = launch(Some(dir));
    assert_eq!(harness.state().mask(), &work);
    assert_eq!(harness.state().prompt(), "She is in her sixties.");
}

#[test]
fn the_same_warning_is_shown_once_with_a_count_and_long_errors_wrap() {
    let engine = ScriptedEngine { step_delay: Duration::ZERO, emitted: Arc::default(), warning: Some("The description was cut to 77 tokens.") };
    let mut harness = studio_with(engine, [1600.0, 1000.0], StudioOptions { autosave_dir: None, samples_dir: PathBuf::from("/nonexistent/samples"), ..StudioOptions::default() });
    harness.state_mut().settings_mut().steps = 2;
    for _ in 1..=3 {
        harness.state_mut().generate();
        run_until(&mut harness, "the run ends", |s| !s.is_generating());
    }
    let warnings: Vec<_> = harness.state().messages().iter().filter(|m| m.text.starts_with("The description was cut")).collect();
    assert_eq!(warnings.len(), 1, "{:?}", harness.state().messages());
    assert_eq!(warnings[0].count, 3);
    harness.get_by_label("The description was cut to 77 tokens. (×3)");

    // An error naming a long path wraps inside the window instead of running off it.
    let mut dir = temp_dir("long-error");
    for part in ["a-folder-whose-name-goes-on-and-on", "and-another-one-that-is-just-as-long-as-the-first", "and-a-third"] {
        dir = dir.join(part.repeat(4));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let not_png = dir.join("notes.png");
    std::fs::write(&not_png, b"this is not an image").unwrap();
    harness.input_mut().dropped_files.push(Arc::new(DroppedPath(not_png)));
    harness.run();
    let error = harness.get_by_label_contains("notes.png is not a readable image").rect();
    assert!(error.right() <= 1600.0, "the error ends inside the window: {error:?}");
    assert!(error.height() > 20.0, "the error wraps onto more lines: {error:?}");
}

#[test]
fn class_hotkeys_ignore_modifiers_and_every_bracket_press_counts() {
    let mut harness = studio(0, None);
    harness.key_press(Key::H);
    harness.run();
    for key in [Key::N, Key::Num0] {
        harness.key_press_modifiers(Modifiers::COMMAND, key);
        harness.run();
        assert_eq!(harness.state().canvas().class, class::HAIR, "Ctrl+{key:?} selects no class");
    }
    harness.key_press_modifiers(Modifiers::COMMAND, Key::E);
    harness.run();
    assert_eq!(harness.state().canvas().tool, Tool::Brush, "Ctrl+E picks no tool");

    // 12 px grows by a quarter per press, rounded: 15, 19, 24, 30, 38.
    assert_eq!(harness.state().canvas().brush_radius, 12.0);
    for _ in 0..5 {
        harness.key_press(Key::CloseBracket);
        harness.step();
    }
    harness.run();
    assert_eq!(harness.state().canvas().brush_radius, 38.0, "five presses in five frames");
    // Five presses within one slow frame (as while generating) count five times too.
    harness.input_mut().events.extend(std::iter::repeat_n(plain_press(Key::OpenBracket), 5)); // the harness's own queue feeds one event a frame
    harness.step();
    assert_eq!(harness.state().canvas().brush_radius, 12.0, "five presses in one frame");
}

#[test]
fn the_window_works_at_its_minimum_size() {
    let engine = ScriptedEngine { step_delay: Duration::ZERO, emitted: Arc::default(), warning: None };
    let [width, height] = MIN_WINDOW_SIZE;
    let options = StudioOptions { autosave_dir: None, samples_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples"), ..StudioOptions::default() };
    let mut harness = studio_with(engine, MIN_WINDOW_SIZE, options);
    harness.run();
    let window = egui::Rect::from_min_size(Pos2::ZERO, egui::vec2(width, height));
    for label in ["Generate", "live", "Open sample", "Open model…", "Influence timeline"] {
        let rect = harness.get_by_label(label).rect();
        assert!(window.contains_rect(rect), "{label} at {rect:?} lies outside the {width} x {height} window");
    }
    let (redo, model) = (harness.get_by_label("Redo").rect(), harness.get_by_label_contains("model: scripted test engine").rect());
    assert!(model.left() >= redo.right(), "the model's name {model:?} is cut short rather than drawn over the buttons {redo:?}");
    let side = harness.state().mask().width() as f32;
    let (top_left, bottom_right) = (screen(&harness, 0.0, 0.0), screen(&harness, side, side));
    assert!(window.contains(top_left) && window.contains(bottom_right), "the canvas {top_left:?}-{bottom_right:?} fits");
    assert!(bottom_right.x - top_left.x >= 250.0, "the canvas is {} px wide", bottom_right.x - top_left.x);
    harness.state_mut().settings_mut().steps = 2;
    generate_and_wait(&mut harness);
    harness.snapshot("studio_at_minimum_size");
}

fn drop_file(harness: &mut Harness<'_, Studio>, path: &Path) {
    harness.input_mut().dropped_files.push(Arc::new(DroppedPath(path.to_path_buf())));
    harness.run();
}

#[test]
fn a_dropped_png_photo_opens_as_a_photo_and_a_palette_png_as_a_mask() {
    let dir = temp_dir("drop-kinds");
    let mut harness = studio(0, None);
    let photo = dir.join("portrait.png");
    image::RgbImage::from_fn(120, 90, |x, y| image::Rgb([180, 120 + (x % 50) as u8, 90 + (y % 60) as u8])).save(&photo).unwrap();
    drop_file(&mut harness, &photo);
    run_until(&mut harness, "the PNG photo is opened and read", |s| s.photo().is_some_and(|p| p.source_mask.is_some()));
    assert_eq!(harness.state().photo().unwrap().path, photo);
    assert_eq!(harness.state().prompt(), "This man is in his twenties.", "read like any photo");
    harness.get_by_label_contains("is a photo, not a mask");
    assert!(harness.state().messages().iter().all(|m| m.kind != codiff::app::MessageKind::Error), "{:?}", harness.state().messages());

    let mask_path = dir.join("painted.png");
    let mut mask = Mask::filled(128, 128, class::BACKGROUND);
    stamp_disc(&mut mask, Pos2::new(64.0, 64.0), 30.0, Ink::Class(class::HAIR));
    image::RgbImage::from_raw(128, 128, mask.to_rgb()).unwrap().save(&mask_path).unwrap();
    drop_file(&mut harness, &mask_path);
    assert_eq!(harness.state().mask(), &mask, "an RGB PNG in the palette's colours is a mask");
}

/// Files under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn studio_with_outputs(autosave_dir: &Path, outputs_dir: &Path) -> Harness<'static, Studio> {
    let engine = ScriptedEngine { step_delay: Duration::ZERO, emitted: Arc::default(), warning: None };
    let options = StudioOptions {
        autosave_dir: Some(autosave_dir.to_path_buf()),
        outputs_dir: Some(outputs_dir.to_path_buf()),
        samples_dir: PathBuf::from("/nonexistent/samples"),
        ..StudioOptions::default()
    };
    studio_with(engine, [1600.0, 1000.0], options)
}

/// Clicks Generate and steps until the run has ended, not only until its result
/// arrived: the end reaches the UI a frame or more later on a loaded machine, and
/// only the frame after it is settled (the Generate button enabled and hovered).
fn generate_and_wait(harness: &mut Harness<'_, Studio>) {
    harness.get_by_label("Generate").click();
    run_until(harness, "the run starts", |s| s.is_generating());
    run_until(harness, "the run ends", |s| !s.is_generating());
}

#[test]
fn every_result_is_also_written_to_the_outputs_folder_unless_turned_off() {
    let (autosave, outputs) = (temp_dir("outputs-autosave"), temp_dir("outputs"));
    let mut harness = studio_with_outputs(&autosave, &outputs);
    harness.state_mut().set_prompt("She is in her thirties.");
    *harness.state_mut().settings_mut() = Settings { seed: 42, seed_locked: true, steps: 2, batch: 2, ..Settings::default() };
    generate_and_wait(&mut harness);
    let written = files_under(&outputs);
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["00001-seed42.png", "00002-seed43.png"], "one file per image, numbered, named by seed");
    let day = written[0].parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    assert!(day.len() == 10 && day.as_bytes()[4] == b'-' && day.as_bytes()[7] == b'-', "a folder per day: {day}");
    let params = read_png_params(&written[1]).unwrap().expect("the output carries its settings");
    assert_eq!((params.prompt.as_str(), params.seed, params.steps), ("She is in her thirties.", 43, 2));
    assert_eq!(params.model.as_deref(), Some("scripted test engine"));
    assert_eq!(params.mask.as_ref(), Some(harness.state().mask()), "and its mask");
    harness.get_by_label_contains(&outputs.display().to_string());

    // Again with the same settings: written again (numbered on), but one gallery entry.
    generate_and_wait(&mut harness);
    assert_eq!(files_under(&outputs).len(), 4, "nothing overwritten");

    harness.get_by_label("also save every result to the outputs folder").click();
    harness.run();
    assert!(!harness.state().outputs().unwrap().enabled);
    harness.state_mut().settings_mut().seed = 7;
    generate_and_wait(&mut harness);
    assert_eq!(files_under(&outputs).len(), 4, "turned off, nothing more is written");

    eframe::App::on_exit(harness.state_mut());
    drop(harness);
    let harness = studio_with_outputs(&autosave, &outputs);
    assert!(!harness.state().outputs().unwrap().enabled, "the setting survives a restart");
}

#[test]
fn the_same_settings_twice_add_no_second_gallery_entry() {
    let mut harness = studio(0, None);
    harness.state_mut().settings_mut().steps = 2;
    generate_and_wait(&mut harness);
    generate_and_wait(&mut harness);
    assert_eq!(harness.state().history().len(), 1, "the same mask and settings make the same image");
    harness.state_mut().settings_mut().seed = 5;
    generate_and_wait(&mut harness);
    generate_and_wait(&mut harness);
    harness.state_mut().settings_mut().seed = 42;
    generate_and_wait(&mut harness);
    let seeds: Vec<u64> = harness.state().history().iter().map(|e| e.params.settings.seed).collect();
    assert_eq!(seeds, [5, 42], "the repeated result moves to the front instead of a twin");
    drag_stroke(&mut harness);
    generate_and_wait(&mut harness);
    assert_eq!(harness.state().history().len(), 3, "another mask is another result");
}

#[test]
fn restoring_a_gallery_entry_shows_its_result_and_timeline_and_one_undo_takes_it_back() {
    let mut harness = studio(0, None);
    harness.state_mut().set_prompt("He is in his twenties.");
    *harness.state_mut().settings_mut() = Settings { seed: 1, seed_locked: true, steps: 3, ..Settings::default() };
    generate_and_wait(&mut harness);
    let first_mask = harness.state().mask().clone();

    drag_stroke(&mut harness);
    harness.state_mut().set_prompt("She is in her sixties.");
    *harness.state_mut().settings_mut() = Settings { seed: 2, seed_locked: false, steps: 5, eta: 0.0, ..Settings::default() };
    generate_and_wait(&mut harness);
    let (second_mask, second_settings) = (harness.state().mask().clone(), harness.state_mut().settings_mut().clone());
    assert_eq!(harness.state().timeline().steps.len(), 5);

    let ctx = harness.ctx.clone();
    harness.state_mut().restore_entry(&ctx, 0);
    harness.run();
    let studio = harness.state_mut();
    assert_eq!((studio.prompt(), studio.mask()), ("He is in his twenties.", &first_mask));
    assert_eq!((studio.settings_mut().seed, studio.settings_mut().steps), (1, 3));
    assert_eq!(studio.timeline().steps.len(), 3, "the entry's own timeline");
    assert!(studio.previews_final());
    assert_eq!(studio.preview_sizes(), vec![[IMAGE, IMAGE]], "its result is shown");

    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.run();
    let studio = harness.state_mut();
    assert_eq!((studio.prompt(), studio.mask()), ("She is in her sixties.", &second_mask), "one undo takes the whole restore back");
    assert_eq!(studio.settings_mut(), &second_settings);
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    harness.run();
    assert_eq!((harness.state().prompt(), harness.state().mask()), ("He is in his twenties.", &first_mask), "and redo brings it again");
    for _ in 0..2 {
        harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
        harness.run();
    }
    assert_eq!(harness.state().prompt(), "She is in her sixties.", "the stroke's undo leaves the prompt alone");
    assert_eq!(harness.state().mask(), &first_mask, "it undoes the stroke");
}

#[test]
fn edits_enter_the_gallery_and_the_open_photo_survives_a_restart() {
    let (dir, autosave, outputs) = (temp_dir("edit-gallery"), temp_dir("edit-autosave"), temp_dir("edit-outputs"));
    let path = dir.join("portrait.jpg");
    image::RgbImage::from_pixel(300, 200, image::Rgb([0, 0, 200])).save(&path).unwrap();
    let mut harness = studio_with_outputs(&autosave, &outputs);
    harness.state_mut().open_photo(&path);
    run_until(&mut harness, "the judges read the photo", |s| s.photo().is_some_and(|p| p.source_mask.is_some()));
    harness.state_mut().photo_mut().unwrap().source_text = "This man is in his late twenties.".into();
    harness.state_mut().set_prompt("This man is in his sixties.");
    harness.state_mut().edit_photo();
    run_until(&mut harness, "the edit finishes", |s| !s.is_busy());
    run_until(&mut harness, "the edit is written to the outputs folder", |s| !s.photo_work_pending());

    let history = harness.state().history();
    assert_eq!(history.len(), 1, "the edit is in the gallery");
    let edit = history[0].params.edit.as_ref().expect("as an edit");
    assert_eq!((edit.photo.as_str(), edit.method.as_str()), (path.to_str().unwrap(), "inversion"));
    assert_eq!(history[0].params.prompt, "This man is in his sixties.");
    let written = files_under(&outputs);
    assert_eq!(written.len(), 1);
    assert!(written[0].file_name().unwrap().to_string_lossy().ends_with("-portrait-inversion.png"), "{written:?}");
    assert_eq!(image::open(&written[0]).unwrap().to_rgb8().dimensions(), (300, 200), "the full photo with the edit pasted back");
    let params = read_png_params(&written[0]).unwrap().unwrap();
    let carried = params.edit.expect("the edit's settings");
    assert_eq!((carried.photo.as_str(), carried.source_text.as_str()), (path.to_str().unwrap(), "This man is in his late twenties."));
    assert_eq!(carried.crop.as_deref(), Some("50,0,200"), "and the square edited, as --crop takes it");
    assert_eq!((params.prompt.as_str(), params.eta), ("This man is in his sixties.", 0.0));
    let saved = dir.join("saved.png");
    harness.state_mut().save_edited_photo(0, saved.clone());
    run_until(&mut harness, "the edited photo is saved", |s| !s.photo_work_pending());
    assert_eq!(read_png_params(&saved).unwrap().unwrap().edit.unwrap().photo, path.display().to_string(), "Save names the source photo too");

    let target = harness.state().mask().clone();
    eframe::App::on_exit(harness.state_mut());
    drop(harness);
    let mut harness = studio_with_outputs(&autosave, &outputs);
    run_until(&mut harness, "the photo is reopened", |s| s.photo().is_some());
    let studio = harness.state();
    let photo = studio.photo().unwrap();
    assert_eq!(photo.path, path);
    assert_eq!(photo.source_text, "This man is in his late twenties.", "the corrected reading, not a new one");
    assert!(photo.source_mask.is_some());
    assert_eq!(photo.results.len(), 1, "with its edit");
    assert_eq!((studio.prompt(), studio.mask()), ("This man is in his sixties.", &target), "the target as it was left");
    assert_eq!(studio.history().len(), 1);
}

/// Whether the chip (or any toggle) labelled `label` is drawn selected.
fn chip_selected(harness: &Harness<'_, Studio>, label: &str) -> bool {
    use egui_kittest::kittest::NodeT;
    harness.get_by_label(label).accesskit_node().toggled() == Some(egui::accesskit::Toggled::True)
}

#[test]
fn chips_show_what_the_description_says_and_edit_it_in_place() {
    let mut harness = studio(0, None);
    harness.state_mut().set_prompt("This man is in his thirties and has red hair.");
    harness.run();
    assert!(chip_selected(&harness, "man") && chip_selected(&harness, "thirties"));
    assert!(!chip_selected(&harness, "woman") && !chip_selected(&harness, "goatee"));

    harness.get_by_label("woman").click();
    harness.run();
    assert_eq!(harness.state().prompt(), "This woman is in her thirties and has red hair.", "the typed words stay");
    harness.get_by_label("goatee").click();
    harness.run();
    assert_eq!(harness.state().prompt(), "This woman is in her thirties and has red hair. She has a goatee.");
    harness.get_by_label("sixties").click();
    harness.run();
    assert_eq!(harness.state().prompt(), "This woman is in her sixties and has red hair. She has a goatee.");
    assert!(chip_selected(&harness, "woman") && chip_selected(&harness, "sixties") && chip_selected(&harness, "goatee"));
    assert!(!chip_selected(&harness, "thirties") && !chip_selected(&harness, "man"));
    // A chip the text already says changes nothing.
    harness.get_by_label("woman").click();
    harness.run();
    assert_eq!(harness.state().prompt(), "This woman is in her sixties and has red hair. She has a goatee.");
}

#[test]
fn a_model_that_fails_to_load_leaves_the_loaded_one_working() {
    let mut harness = studio(0, None);
    let broken = ModelFiles { config: PathBuf::from("/nonexistent/codiff.yaml"), weights: PathBuf::from("/nonexistent/broken.ckpt") };
    harness.state_mut().open_model(broken);
    run_until(&mut harness, "the load fails", |s| s.messages().iter().any(|m| m.kind == codiff::app::MessageKind::Error));
    let error = &harness.state().messages().iter().find(|m| m.kind == codiff::app::MessageKind::Error).unwrap().text;
    assert!(error.contains("broken.ckpt") && error.contains("scripted test engine is still loaded"), "{error}");
    assert!(matches!(harness.state().model_status(), ModelStatus::Ready(info) if info.name == "scripted test engine"));
    harness.state_mut().settings_mut().steps = 2;
    generate_and_wait(&mut harness);
    assert_eq!(harness.state().history().len(), 1, "the old model generates");
}

/// Whether the studio asked its window to close in the last frame.
fn close_requested(harness: &Harness<'_, Studio>) -> bool {
    harness.output().viewport_output.get(&egui::ViewportId::ROOT).is_some_and(|v| v.commands.contains(&egui::ViewportCommand::Close))
}

/// Ctrl+Q and one frame, so that the frame's output is the one that saw it
/// (`key_press_modifiers` spreads its events over several frames).
fn press_ctrl_q(harness: &mut Harness<'_, Studio>) {
    harness.input_mut().events.push(egui::Event::Key { key: Key::Q, physical_key: None, pressed: true, repeat: false, modifiers: Modifiers::COMMAND });
    harness.step();
}

#[test]
fn ctrl_q_asks_while_a_run_is_in_progress_and_quits_at_once_otherwise() {
    let mut harness = studio(100, None);
    harness.state_mut().settings_mut().steps = 50;
    harness.state_mut().generate();
    harness.step();
    press_ctrl_q(&mut harness);
    assert!(!close_requested(&harness), "a run in progress is not dropped without asking");
    harness.step();
    harness.get_by_label("Keep working").click();
    harness.step();
    harness.step();
    assert!(harness.query_by_label("Keep working").is_none() && harness.state().is_generating() && !harness.state().cancel_requested());

    press_ctrl_q(&mut harness);
    harness.step();
    harness.get_by_label("Quit").click();
    harness.step();
    assert!(close_requested(&harness) && harness.state().cancel_requested(), "Quit cancels the run and closes");

    let mut idle = studio(0, None);
    press_ctrl_q(&mut idle);
    assert!(close_requested(&idle), "with nothing running Ctrl+Q quits at once");
    idle.get_by_label("Keys").click();
    idle.run();
    idle.get_by_label_contains("quit (asks while a run or edit is in progress)");
}

fn text_box<'a>(harness: &'a Harness<'_, Studio>, label: &'a str) -> egui_kittest::Node<'a> {
    harness.get_by_role_and_label(egui::accesskit::Role::TextInput, label)
}

fn studio_with_dialogs(autosave_dir: &Path, native_dialog: Option<codiff::app::dialogs::NativeDialog>) -> Harness<'static, Studio> {
    let engine = ScriptedEngine { step_delay: Duration::ZERO, emitted: Arc::default(), warning: None };
    let options = StudioOptions { autosave_dir: Some(autosave_dir.to_path_buf()), samples_dir: PathBuf::from("/nonexistent/samples"), native_dialog, ..StudioOptions::default() };
    studio_with(engine, [1600.0, 1000.0], options)
}

#[test]
fn without_a_native_dialog_the_studios_browser_opens_and_saves_masks_in_remembered_folders() {
    let dir = temp_dir("browser");
    let masks = dir.join("masks");
    std::fs::create_dir_all(masks.join("deeper")).unwrap();
    let face = Mask::filled(256, 256, class::NECK);
    face.save(masks.join("face.png")).unwrap();
    std::fs::write(masks.join("notes.txt"), "not a mask").unwrap();
    let autosave = dir.join("autosave");
    let mut harness = studio_with_dialogs(&autosave, None);

    // Into the folder by its path, then into "masks" by a click.
    harness.get_by_label("Load mask…").click();
    harness.run();
    let start = std::env::current_dir().unwrap().display().to_string();
    assert_eq!(text_box(&harness, "Folder:").value().as_deref(), Some(start.as_str()), "the first dialog starts in the working directory");
    text_box(&harness, "Folder:").focus();
    harness.run();
    text_box(&harness, "Folder:").set_text_value_accesskit(&dir.display().to_string());
    harness.run();
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_label("masks/").click();
    harness.run();
    harness.get_by_label("deeper/");
    assert!(harness.query_by_label("notes.txt").is_none(), "only mask images are listed");
    harness.get_by_label("face.png").click();
    harness.run();
    harness.get_by_label("Open").click();
    harness.run();
    assert_eq!(harness.state().mask(), &face, "the picked mask loads");

    // Saving starts in the same folder; a typed name gets its extension, and an existing file is not replaced unasked.
    harness.get_by_label("Save mask…").click();
    harness.run();
    harness.get_by_label("face.png");
    text_box(&harness, "File name:").set_text_value_accesskit("copy");
    harness.run();
    harness.key_press(Key::Enter);
    harness.run();
    assert_eq!(Mask::load(masks.join("copy.png")).unwrap(), face);
    harness.get_by_label("Save mask…").click();
    harness.run();
    text_box(&harness, "File name:").set_text_value_accesskit("face");
    harness.run();
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_label("face.png already exists. Replace it?");
    harness.get_by_label("Keep the file").click();
    harness.run();
    harness.key_press(Key::Escape);
    harness.run();
    assert!(harness.query_by_label("copy.png").is_none(), "Escape closes the browser");

    // After a restart the dialogs still start in the folder last used.
    eframe::App::on_exit(harness.state_mut());
    drop(harness);
    let mut harness = studio_with_dialogs(&autosave, None);
    harness.get_by_label("Load mask…").click();
    harness.run();
    harness.get_by_label("copy.png");
    harness.get_by_label("Cancel").click();
    harness.run();
    assert!(harness.query_by_label("copy.png").is_none());
}

#[test]
fn native_dialogs_answer_off_the_ui_thread_and_one_that_cannot_open_gives_way_to_the_browser() {
    use std::sync::Mutex;
    let dir = temp_dir("native-dialog");
    let face = Mask::filled(256, 256, class::HAIR);
    face.save(dir.join("face.png")).unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let calls = Arc::new(AtomicUsize::new(0));
    let (counted, picked) = (calls.clone(), dir.join("face.png"));
    // The first dialog stays open until released, then picks face.png; the next cannot open.
    let native: codiff::app::dialogs::NativeDialog = Arc::new(move |_request: &codiff::app::dialogs::FileRequest, _start: &Path| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            released.lock().unwrap().recv().unwrap();
            codiff::app::dialogs::NativeOutcome::Picked(picked.clone())
        } else {
            codiff::app::dialogs::NativeOutcome::Unavailable("no portal in this test".into())
        }
    });
    let mut harness = studio_with_dialogs(&dir.join("autosave"), Some(native));
    let before = harness.state().mask().clone();
    harness.get_by_label("Load mask…").click();
    for _ in 0..10 {
        harness.step(); // frames go on while the dialog is open
    }
    assert_eq!(harness.state().mask(), &before);
    release.send(()).unwrap();
    run_until(&mut harness, "the picked mask loads", |s| s.mask() == &face);

    harness.get_by_label("Open photo…").click();
    run_until(&mut harness, "the dialog reports back", |s| s.messages().iter().any(|m| m.text.contains("no portal in this test")));
    harness.get_by_label("Photo to edit");
    harness.get_by_label("Cancel").click();
    harness.run();
    harness.get_by_label("Load mask…").click();
    harness.run();
    harness.get_by_label("Load mask");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "once unavailable, the studio's browser opens without trying again");
}
