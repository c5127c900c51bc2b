//! Photo editing's defaults and feedback (issue 20, item 7): Imagic starts at
//! the alpha the default models need, says how long it will take before it
//! starts, and shows the time left while it runs.

use super::*;
use codiff::pipeline::edit::{EditMethod, DEFAULT_IMAGIC_ALPHA};

/// A studio with a 64 x 64 photo open and read for Imagic with `tuning_steps`
/// embedding and fine-tuning steps and `steps` DDIM steps, on an engine that
/// takes `step_delay_ms` a step.
fn studio_with_imagic(step_delay_ms: u64, steps: usize, tuning_steps: usize) -> Harness<'static, Studio> {
    let dir = temp_dir(&format!("imagic-{step_delay_ms}"));
    let path = dir.join("face.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([180, 140, 120])).save(&path).unwrap();
    let mut harness = studio(step_delay_ms, None);
    harness.state_mut().open_photo(&path);
    run_until(&mut harness, "the judges read the photo", |s| s.photo().is_some_and(|p| p.source_mask.is_some()));
    harness.state_mut().settings_mut().steps = steps;
    let photo = harness.state_mut().photo_mut().unwrap();
    (photo.method, photo.embed_steps, photo.finetune_steps) = (EditMethod::Imagic, tuning_steps, tuning_steps);
    harness
}

#[test]
fn imagic_says_how_long_it_will_take_and_shows_the_time_left_while_it_runs() {
    let mut harness = studio_with_imagic(20, 4, 3);
    harness.run();
    harness.get_by_label("time: known after a generation");

    // A generation times its steps; the estimate follows from them.
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "the run ends", |s| s.history().len() == 1);
    let estimate = super::layout::text_of(&harness.get_by_label_contains("about "));
    assert!(estimate.ends_with(" s"), "an expected time before the edit starts: {estimate:?}");

    // While it runs: a bar through all the stages with the time left; no estimate beside the button.
    harness.state_mut().edit_photo();
    let mut seen = Vec::new();
    while harness.state().is_busy() {
        harness.step();
        seen.extend(harness.query_all_by_label_contains(" left").map(|bar| super::layout::text_of(&bar)).filter(|t| t.contains(" of ")).take(1));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen.len() >= 3, "the bar showed the time left on several frames: {seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("stage 0")) && seen.iter().any(|s| s.starts_with("stage 5")), "from the first stage to the last: {seen:?}");
    harness.run();
    assert_eq!(harness.state().photo().unwrap().results.len(), 1);
}

#[test]
fn imagic_starts_at_the_alpha_the_default_models_need() {
    let mut harness = studio_with_imagic(0, 2, 1);
    harness.state_mut().edit_photo();
    run_until(&mut harness, "the edit ends", |s| !s.is_busy());
    let result = &harness.state().photo().unwrap().results[0];
    assert_eq!(result.alpha, DEFAULT_IMAGIC_ALPHA, "the studio asks for the default alpha");
}
