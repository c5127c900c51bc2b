//! No layout jumps while working, a zoom indicator, and the window's smallest
//! size with nothing cut (issue 20, item 5).

use super::*;
use egui_kittest::kittest::NodeT;
use codiff::app::timeline::{StepRecord, Timeline};

/// The text a node shows: a label's value, or another widget's label.
pub(super) fn text_of(node: &egui_kittest::Node<'_>) -> String {
    node.value().or_else(|| node.accesskit_node().label()).unwrap_or_default()
}

/// A timeline of `steps` steps whose t runs from 980 down to 0, as a run streams them.
fn streamed_timeline(steps: usize) -> Timeline {
    let mut timeline = Timeline::new();
    for index in 0..steps {
        let map = ramp(8, 8, |x, y| (x + y + index) as f32 / 30.0);
        let frame = StepFrame { pred_x0: rgb(|x, y| [x as u8, y as u8, index as u8]), x_t: rgb(|_, _| [index as u8; 3]), w_mask: map.clone(), w_text: map };
        timeline.push(StepRecord { t: 980 - 980 * index / (steps - 1), frames: vec![frame] });
    }
    timeline
}

#[test]
fn the_timeline_header_never_rewraps_while_the_step_changes_or_it_plays() {
    for width in (380..=1400).step_by(20) {
        let mut harness = Harness::builder().with_size([width as f32, 500.0]).build_ui_state(
            |ui, timeline: &mut Timeline| {
                // A panel, as in the studio, so that the width is the window's.
                egui::CentralPanel::default().show(ui, |ui| timeline.ui(ui));
            },
            streamed_timeline(50),
        );
        let place = |h: &Harness<'_, Timeline>| (h.get_by_label("Export GIF…").rect(), h.get_by_label("heatmaps over the image").rect());
        let at_last = place(&harness);
        for index in [0, 4, 9, 30, 49] {
            harness.state_mut().index = index;
            harness.run();
            assert_eq!(place(&harness), at_last, "{width} px wide: the header moved at step {}", index + 1);
        }
        harness.get_by_label("Play").click();
        harness.step();
        assert_eq!(place(&harness), at_last, "{width} px wide: the header moved when Play became Pause");
        // The four views and the legend fit the width.
        for label in ["text influence", "share"] {
            let right = harness.get_by_label(label).rect().right();
            let views: Vec<_> = ["predicted image", "x_t", "mask influence", "text influence", "share"].iter().map(|l| harness.get_by_label(l).rect().x_range()).collect();
            assert!(right <= width as f32, "{width} px wide: {label} ends at {right}: {views:?}");
        }
    }
}

#[test]
fn the_class_list_stays_put_when_a_class_vanishes_or_a_message_arrives() {
    let mut harness = studio(0, None);
    let class_list = |h: &Harness<'_, Studio>| (h.get_by_label("1  skin").rect(), h.get_by_label("C  cloth").rect(), screen(h, 0.0, 0.0));
    let before = class_list(&harness);
    // One earring pixel off the model's 32 x 32 grid: it vanishes there.
    let mut mask = harness.state().mask().clone();
    mask.set(1, 1, class::EARRING);
    harness.state_mut().canvas_mut().replace_mask(mask);
    harness.run();
    harness.get_by_label_contains("Vanishes at 32×32: earring");
    assert_eq!(class_list(&harness), before, "the vanishing warning moved the class list or the canvas");

    let dir = temp_dir("layout-message");
    let not_png = dir.join("notes.png");
    std::fs::write(&not_png, b"this is not an image").unwrap();
    harness.input_mut().dropped_files.push(Arc::new(DroppedPath(not_png)));
    harness.run();
    harness.get_by_label_contains("notes.png is not a readable image");
    assert_eq!(class_list(&harness), before, "the message moved the class list or the canvas");
}

#[test]
fn the_zoom_shows_in_the_canvas_corner_and_fit_or_z_shows_the_whole_mask() {
    let mut harness = studio(0, None);
    let fitted = text_of(&harness.get_by_label_contains("(fit)"));
    let percent = |text: &str| text.split('%').next().and_then(|n| n.parse::<f32>().ok()).expect("a percentage");
    let fit_percent = percent(&fitted);
    // Zoomed in (as the wheel does) and panned.
    harness.state_mut().canvas_mut().zoom = 2.5;
    harness.state_mut().canvas_mut().pan = egui::vec2(40.0, -10.0);
    harness.run();
    let zoomed = harness.state().canvas().zoom_percent().unwrap();
    assert!((zoomed / fit_percent - 2.5).abs() < 0.01, "zoomed from {fit_percent}% to {zoomed}%");
    harness.get_by_label(&format!("{zoomed:.0}%"));
    assert!(harness.query_by_label_contains("(fit)").is_none());

    harness.key_press(Key::Z);
    harness.run();
    assert!(harness.state().canvas().is_fitted(), "Z fits the mask");
    assert_eq!(percent(&text_of(&harness.get_by_label_contains("(fit)"))), fit_percent);

    harness.state_mut().canvas_mut().zoom = 3.0;
    harness.state_mut().canvas_mut().pan = egui::vec2(40.0, -10.0);
    harness.run();
    harness.get_by_label("Fit").click();
    harness.run();
    assert!(harness.state().canvas().is_fitted(), "the Fit button fits the mask");
}

#[test]
fn at_the_minimum_size_every_class_and_every_timeline_view_shows_uncut() {
    let engine = ScriptedEngine { step_delay: Duration::ZERO, emitted: Arc::default(), warning: None };
    let options = StudioOptions { autosave_dir: None, samples_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples"), ..StudioOptions::default() };
    let mut harness = studio_with(engine, MIN_WINDOW_SIZE, options);
    harness.state_mut().settings_mut().steps = 2;
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "the run ends", |s| s.history().len() == 1);
    let height = MIN_WINDOW_SIZE[1];
    let cloth = harness.get_by_label("C  cloth").rect();
    assert!(cloth.bottom() <= height, "the last class ends at {} in a {height}-point window: the list scrolls", cloth.bottom());
    let right_panel = harness.get_by_label("Describe").rect().left();
    for label in ["predicted image", "text influence", "share"] {
        let rect = harness.get_by_label(label).rect();
        let views: Vec<_> = ["predicted image", "x_t", "mask influence", "text influence", "share", "Influence timeline"].iter().map(|l| harness.get_by_label(l).rect().x_range()).collect();
        assert!(rect.right() <= right_panel, "the timeline's {label} ends at {} under the generate panel at {right_panel}: {views:?}", rect.right());
    }
}
