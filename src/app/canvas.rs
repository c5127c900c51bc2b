//! The mask canvas: brush, eraser, bucket fill, eyedropper, mirror painting,
//! per-stroke undo and redo, zoom and pan (with the zoom shown and a way back
//! to fit), the mask over the current image,
//! and "what the model sees" at the mask encoder's 32 x 32.

use egui::{Color32, ColorImage, Key, Pos2, Rect, Sense, TextureHandle, TextureOptions, Vec2};

use crate::data::mask::{mirrored_class, Mask, CLASSES, NUM_CLASSES};

/// The mask encoder reads masks at this size (FACTS: nearest resize to 32 x 32).
pub const MODEL_MASK_SIZE: usize = 32;
/// Undo keeps this many strokes; older ones are dropped.
const UNDO_DEPTH: usize = 100;
pub const BRUSH_RADIUS_RANGE: std::ops::RangeInclusive<f32> = 1.0..=128.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tool {
    Brush,
    Eraser,
    Fill,
    Eyedropper,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Brush, Tool::Eraser, Tool::Fill, Tool::Eyedropper];

    pub fn key(self) -> Key {
        match self {
            Tool::Brush => Key::B,
            Tool::Eraser => Key::E,
            Tool::Fill => Key::F,
            Tool::Eyedropper => Key::I,
        }
    }

    /// Short, so that the four fit on one row of the tools panel; the key goes in [`Tool::key`].
    pub fn label(self) -> &'static str {
        match self {
            Tool::Brush => "Brush",
            Tool::Eraser => "Eraser",
            Tool::Fill => "Fill",
            Tool::Eyedropper => "Pick",
        }
    }
}

/// The mask before (on the undo stack) or after (on the redo stack) one edit,
/// and the tag the edit was made with.
struct UndoStep {
    mask: Mask,
    tag: Option<u64>,
}

/// The mask being painted and everything about how it is painted.
pub struct Canvas {
    mask: Mask,
    pub class: u8,
    pub tool: Tool,
    /// Brush radius in mask pixels.
    pub brush_radius: f32,
    /// Paint the mirror image too, swapping left/right classes.
    pub mirror: bool,
    /// Mask opacity over the image underneath (1 shows the mask alone).
    pub opacity: f32,
    /// Show the mask as the model sees it (32 x 32).
    pub model_view: bool,
    /// 1 fits the canvas area; larger zooms in.
    pub zoom: f32,
    pub pan: Vec2,
    undo: Vec<UndoStep>,
    redo: Vec<UndoStep>,
    /// Mask position of the pointer during a stroke, to draw continuous lines.
    last_paint: Option<Pos2>,
    texture: Option<TextureHandle>,
    texture_dirty: bool,
    /// Where the mask was drawn last frame, in screen points.
    screen_rect: Option<Rect>,
    /// Bumped on every change, so others (autosave) notice edits.
    pub revision: u64,
    /// What the eraser paints back: over a photo, the class its parser read at
    /// each pixel (the same size as the mask); otherwise background.
    pub restore: Option<Mask>,
}

/// Where the zoom readout and its Fit button sit: the canvas's bottom-left
/// corner, which strokes leave alone.
fn zoom_corner(area: Rect) -> Rect {
    Rect::from_min_size(area.left_bottom() - Vec2::new(-6.0, 34.0), Vec2::new(area.width().min(200.0), 28.0))
}

impl Canvas {
    pub fn new(mask: Mask) -> Self {
        Self {
            mask,
            class: crate::data::mask::class::SKIN,
            tool: Tool::Brush,
            brush_radius: 12.0,
            mirror: false,
            opacity: 1.0,
            model_view: false,
            zoom: 1.0,
            pan: Vec2::ZERO,
            undo: Vec::new(),
            redo: Vec::new(),
            last_paint: None,
            texture: None,
            texture_dirty: true,
            screen_rect: None,
            revision: 0,
            restore: None,
        }
    }

    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// Replaces the whole mask as one undoable edit (new, clear, open).
    pub fn replace_mask(&mut self, mask: Mask) {
        self.replace_mask_tagged(mask, None);
    }

    /// Replaces the whole mask as one undoable edit that `tag` names: undo
    /// and redo hand the tag back, so the studio can undo what else changed with it.
    pub fn replace_mask_tagged(&mut self, mask: Mask, tag: Option<u64>) {
        self.begin_edit(tag);
        self.mask = mask;
        self.changed();
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Undoes the last edit; returns its tag.
    pub fn undo(&mut self) -> Option<u64> {
        let previous = self.undo.pop()?;
        self.redo.push(UndoStep { mask: std::mem::replace(&mut self.mask, previous.mask), tag: previous.tag });
        self.changed();
        previous.tag
    }

    /// Redoes the last undone edit; returns its tag.
    pub fn redo(&mut self) -> Option<u64> {
        let next = self.redo.pop()?;
        self.undo.push(UndoStep { mask: std::mem::replace(&mut self.mask, next.mask), tag: next.tag });
        self.changed();
        next.tag
    }

    /// A plain key press: a class (then the brush, unless filling), a tool,
    /// the brush size (`[` `]`) or fit (Z).
    pub fn hotkey(&mut self, key: Key) {
        if let Some(class) = super::palette::class_of_key(key) {
            self.class = class;
            if matches!(self.tool, Tool::Eraser | Tool::Eyedropper) {
                self.tool = Tool::Brush;
            }
        }
        if let Some(tool) = Tool::ALL.into_iter().find(|t| t.key() == key) {
            self.tool = tool;
        }
        match key {
            Key::OpenBracket => self.grow_brush(1.0 / 1.25),
            Key::CloseBracket => self.grow_brush(1.25),
            Key::Z => self.fit(), // not Ctrl+0, which egui keeps for its own interface zoom
            _ => {}
        }
    }

    pub fn grow_brush(&mut self, factor: f32) {
        self.brush_radius = (self.brush_radius * factor).round().clamp(*BRUSH_RADIUS_RANGE.start(), *BRUSH_RADIUS_RANGE.end());
    }

    /// Classes present in the mask that vanish at the model's 32 x 32.
    pub fn classes_lost_at_model_size(&self) -> Vec<u8> {
        let full = self.mask.class_histogram();
        let small = self.mask.resize_nearest(MODEL_MASK_SIZE, MODEL_MASK_SIZE).class_histogram();
        (0..NUM_CLASSES).filter(|&c| full[c] > 0 && small[c] == 0).map(|c| c as u8).collect()
    }

    /// Starts a stroke at mask position `at`; the state before it becomes one undo step.
    pub fn stroke_begin(&mut self, at: Pos2) {
        match self.tool {
            Tool::Brush | Tool::Eraser => {
                self.begin_edit(None);
                self.stamp_line(at, at);
                self.last_paint = Some(at);
            }
            Tool::Fill => {
                if let Some((x, y)) = self.pixel_at(at) {
                    self.begin_edit(None);
                    let class = self.class;
                    flood_fill(&mut self.mask, x, y, class);
                    if self.mirror {
                        let mirror_x = self.mask.width() - 1 - x;
                        flood_fill(&mut self.mask, mirror_x, y, mirrored_class(class));
                    }
                    self.changed();
                }
            }
            Tool::Eyedropper => {
                if let Some((x, y)) = self.pixel_at(at) {
                    self.class = self.mask.get(x, y);
                    self.tool = Tool::Brush;
                }
            }
        }
    }

    /// Continues a brush or eraser stroke to mask position `to`.
    pub fn stroke_to(&mut self, to: Pos2) {
        if let Some(from) = self.last_paint {
            self.stamp_line(from, to);
            self.last_paint = Some(to);
        }
    }

    pub fn stroke_end(&mut self) {
        self.last_paint = None;
    }

    /// Whether a brush or eraser stroke is under way.
    pub fn stroke_active(&self) -> bool {
        self.last_paint.is_some()
    }

    fn begin_edit(&mut self, tag: Option<u64>) {
        if self.undo.len() == UNDO_DEPTH {
            self.undo.remove(0);
        }
        self.undo.push(UndoStep { mask: self.mask.clone(), tag });
        self.redo.clear();
    }

    fn changed(&mut self) {
        self.texture_dirty = true;
        self.revision += 1;
    }

    fn pixel_at(&self, at: Pos2) -> Option<(usize, usize)> {
        let inside = at.x >= 0.0 && at.y >= 0.0 && (at.x as usize) < self.mask.width() && (at.y as usize) < self.mask.height();
        inside.then_some((at.x as usize, at.y as usize))
    }

    fn stamp_line(&mut self, from: Pos2, to: Pos2) {
        let ink = match (self.tool, &self.restore) {
            (Tool::Eraser, Some(restore)) if restore.width() == self.mask.width() && restore.height() == self.mask.height() => Ink::From(restore),
            (Tool::Eraser, _) => Ink::Class(crate::data::mask::class::BACKGROUND),
            _ => Ink::Class(self.class),
        };
        let spacing = (self.brush_radius * 0.5).max(0.5);
        let stamps = ((to - from).length() / spacing).ceil().max(1.0) as usize;
        let width = self.mask.width() as f32;
        for i in 0..=stamps {
            let at = from.lerp(to, i as f32 / stamps as f32);
            stamp_disc(&mut self.mask, at, self.brush_radius, ink);
            if self.mirror {
                stamp_disc(&mut self.mask, Pos2::new(width - at.x, at.y), self.brush_radius, ink.mirrored());
            }
        }
        self.changed();
    }

    /// The canvas widget: paints with the primary button, pans with the
    /// secondary or middle button, zooms with the scroll wheel around the
    /// pointer; with `hotkeys`, plain keys pick classes, tools and brush size.
    pub fn ui(&mut self, ui: &mut egui::Ui, underlay: Option<&TextureHandle>, hotkeys: bool) -> egui::Response {
        let (area, response) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
        let image_rect = self.image_rect(area);
        self.screen_rect = Some(image_rect);
        let mask_size = Vec2::new(self.mask.width() as f32, self.mask.height() as f32);
        let to_mask = move |p: Pos2| Pos2::ZERO + (p - image_rect.min) / image_rect.size() * mask_size;

        if let Some(pointer) = response.hover_pos() {
            let scroll = ui.input(|i| i.smooth_scroll_delta.y);
            if scroll != 0.0 {
                let factor = (scroll / 200.0).exp();
                let new_zoom = (self.zoom * factor).clamp(0.25, 32.0);
                // Keep the mask point under the pointer fixed while zooming.
                let center = area.center() + self.pan;
                self.pan += (pointer - center) * (1.0 - new_zoom / self.zoom);
                self.zoom = new_zoom;
            }
        }
        use egui::PointerButton::{Middle, Primary, Secondary};
        if response.dragged_by(Secondary) || response.dragged_by(Middle) {
            self.pan += response.drag_delta();
        }
        // Strokes and hotkeys follow the input events in their order, not the
        // frame's summary of them: while a generation keeps the CPU busy, one
        // frame can hold a whole quick stroke (press, bends, release) and the
        // key for the next class, which the summary would drop, straighten or
        // apply to the stroke before it.
        let corner = zoom_corner(area);
        let on_canvas = |pos: Pos2| {
            area.contains(pos) && !corner.contains(pos) && ui.ctx().layer_id_at(pos).is_none_or(|layer| layer == ui.layer_id())
        };
        for event in ui.input(|i| i.events.clone()) {
            match event {
                egui::Event::PointerButton { pos, button: Primary, pressed: true, .. } if on_canvas(pos) => self.stroke_begin(to_mask(pos)),
                egui::Event::PointerMoved(pos) => self.stroke_to(to_mask(pos)),
                egui::Event::PointerButton { pos, button: Primary, pressed: false, .. } => {
                    self.stroke_to(to_mask(pos));
                    self.stroke_end();
                }
                // The event's own modifiers: a quick Ctrl+N can begin and end within one frame.
                egui::Event::Key { key, pressed: true, modifiers, .. } if hotkeys && !modifiers.any() => self.hotkey(key),
                _ => {}
            }
        }
        if !ui.input(|i| i.pointer.primary_down()) {
            self.stroke_end(); // released where no event reached us (outside the window)
        }

        self.paint(ui, area, image_rect, underlay);
        if let (Some(pointer), Tool::Brush | Tool::Eraser) = (response.hover_pos(), self.tool) {
            let radius = self.brush_radius * image_rect.width() / self.mask.width() as f32;
            ui.painter_at(area).circle_stroke(pointer, radius, (1.0, Color32::WHITE));
            ui.ctx().set_cursor_icon(egui::CursorIcon::Crosshair);
        }
        self.zoom_ui(ui, area);
        response
    }

    /// Back to the whole mask, centred in the canvas (the Fit button, key Z).
    pub fn fit(&mut self) {
        self.zoom = 1.0;
        self.pan = Vec2::ZERO;
    }

    pub fn is_fitted(&self) -> bool {
        self.zoom == 1.0 && self.pan == Vec2::ZERO
    }

    /// Screen points per mask pixel as a percentage, as drawn last frame.
    pub fn zoom_percent(&self) -> Option<f32> {
        Some(self.screen_rect?.width() / self.mask.width() as f32 * 100.0)
    }

    /// The zoom in the canvas's bottom-left corner, with a button back to fit.
    fn zoom_ui(&mut self, ui: &mut egui::Ui, area: Rect) {
        let Some(percent) = self.zoom_percent() else { return };
        let corner = zoom_corner(area);
        ui.scope_builder(egui::UiBuilder::new().max_rect(corner).layout(egui::Layout::left_to_right(egui::Align::Center)), |ui| {
            egui::Frame::popup(ui.style()).inner_margin(egui::Margin::symmetric(6, 2)).show(ui, |ui| {
                let fitted = self.is_fitted();
                ui.label(format!("{percent:.0}%{}", if fitted { " (fit)" } else { "" }));
                if ui.add_enabled(!fitted, egui::Button::new("Fit").small()).on_hover_text("Show the whole mask (Z)").clicked() {
                    self.fit();
                }
            });
        });
    }

    /// The screen position of mask position `at`, as drawn last frame.
    pub fn mask_to_screen(&self, at: Pos2) -> Option<Pos2> {
        let rect = self.screen_rect?;
        Some(rect.min + Vec2::new(at.x / self.mask.width() as f32, at.y / self.mask.height() as f32) * rect.size())
    }

    /// Where the mask lies on screen: fitted into `area`, then zoomed and panned.
    fn image_rect(&self, area: Rect) -> Rect {
        let side = area.width().min(area.height()) * self.zoom;
        let aspect = self.mask.width() as f32 / self.mask.height() as f32;
        let size = if aspect >= 1.0 { Vec2::new(side, side / aspect) } else { Vec2::new(side * aspect, side) };
        Rect::from_center_size(area.center() + self.pan, size)
    }

    fn paint(&mut self, ui: &egui::Ui, area: Rect, image_rect: Rect, underlay: Option<&TextureHandle>) {
        if self.texture_dirty || self.texture.is_none() {
            let shown = if self.model_view { self.mask.resize_nearest(MODEL_MASK_SIZE, MODEL_MASK_SIZE) } else { self.mask.clone() };
            let image = ColorImage::from_rgb([shown.width(), shown.height()], &shown.to_rgb());
            match &mut self.texture {
                Some(texture) => texture.set(image, TextureOptions::NEAREST),
                None => self.texture = Some(ui.ctx().load_texture("mask", image, TextureOptions::NEAREST)),
            }
            self.texture_dirty = false;
        }
        let painter = ui.painter_at(area);
        painter.rect_filled(area, 0.0, ui.visuals().extreme_bg_color);
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        let opacity = match underlay {
            Some(texture) => {
                painter.image(texture.id(), image_rect, uv, Color32::WHITE);
                self.opacity
            }
            None => 1.0,
        };
        if let Some(texture) = &self.texture {
            painter.image(texture.id(), image_rect, uv, Color32::WHITE.gamma_multiply(opacity));
        }
        // The mask's edge, visible even where the mask is background black.
        painter.rect_stroke(image_rect, 0.0, (1.0, ui.visuals().weak_text_color()), egui::StrokeKind::Outside);
    }

    pub fn set_model_view(&mut self, on: bool) {
        if self.model_view != on {
            self.model_view = on;
            self.texture_dirty = true;
        }
    }
}

/// What a stamp writes: one class, or each pixel's class in another mask of the same size.
#[derive(Debug, Clone, Copy)]
pub enum Ink<'a> {
    Class(u8),
    From(&'a Mask),
}

impl Ink<'_> {
    fn at(&self, x: usize, y: usize) -> u8 {
        match self {
            Ink::Class(class) => *class,
            Ink::From(mask) => mask.get(x, y),
        }
    }

    /// The ink of the mirror stroke: left and right classes swap; a restored
    /// mask is already right at every pixel.
    fn mirrored(self) -> Self {
        match self {
            Ink::Class(class) => Ink::Class(mirrored_class(class)),
            from => from,
        }
    }
}

/// Sets every pixel within `radius` of `center` (mask coordinates, pixel centres at +0.5).
pub fn stamp_disc(mask: &mut Mask, center: Pos2, radius: f32, ink: Ink) {
    let (w, h) = (mask.width() as i64, mask.height() as i64);
    let r2 = radius * radius;
    let x0 = ((center.x - radius).floor() as i64).max(0);
    let x1 = ((center.x + radius).ceil() as i64).min(w - 1);
    let y0 = ((center.y - radius).floor() as i64).max(0);
    let y1 = ((center.y + radius).ceil() as i64).min(h - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let d = Vec2::new(x as f32 + 0.5 - center.x, y as f32 + 0.5 - center.y);
            if d.length_sq() <= r2.max(0.25) {
                mask.set(x as usize, y as usize, ink.at(x as usize, y as usize));
            }
        }
    }
}

/// Fills the 4-connected region of equal class around (x, y) with `class`.
pub fn flood_fill(mask: &mut Mask, x: usize, y: usize, class: u8) {
    let target = mask.get(x, y);
    if target == class {
        return;
    }
    let (w, h) = (mask.width(), mask.height());
    let mut stack = vec![(x, y)];
    while let Some((x, y)) = stack.pop() {
        if mask.get(x, y) != target {
            continue;
        }
        mask.set(x, y, class);
        if x > 0 {
            stack.push((x - 1, y));
        }
        if x + 1 < w {
            stack.push((x + 1, y));
        }
        if y > 0 {
            stack.push((x, y - 1));
        }
        if y + 1 < h {
            stack.push((x, y + 1));
        }
    }
}

/// A class's palette colour as an egui colour.
pub fn class_color(class: u8) -> Color32 {
    let [r, g, b] = CLASSES[class as usize].rgb;
    Color32::from_rgb(r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mask::class::*;

    #[test]
    fn flood_fill_stays_inside_the_region() {
        let mut mask = Mask::filled(5, 5, BACKGROUND);
        for y in 0..5 {
            mask.set(2, y, HAIR); // a wall
        }
        flood_fill(&mut mask, 0, 0, SKIN);
        let filled: usize = mask.classes().iter().filter(|&&c| c == SKIN).count();
        assert_eq!(filled, 10);
        assert_eq!(mask.get(4, 4), BACKGROUND);
    }

    #[test]
    fn the_eraser_restores_the_photo_s_parsed_class() {
        let mut parsed = Mask::filled(16, 16, SKIN);
        parsed.set(5, 5, MOUTH);
        let mut canvas = Canvas::new(Mask::filled(16, 16, NECK)); // painted over the photo
        canvas.tool = Tool::Eraser;
        canvas.brush_radius = 2.0;
        canvas.stroke_begin(Pos2::new(5.5, 5.5));
        canvas.stroke_end();
        assert_eq!(canvas.mask().get(5, 5), BACKGROUND, "without a photo the eraser paints background");
        canvas.undo();
        canvas.restore = Some(parsed);
        canvas.stroke_begin(Pos2::new(5.5, 5.5));
        canvas.stroke_end();
        assert_eq!((canvas.mask().get(5, 5), canvas.mask().get(6, 5), canvas.mask().get(12, 12)), (MOUTH, SKIN, NECK));
    }

    #[test]
    fn mirror_paints_the_swapped_class_on_the_other_side() {
        let mut canvas = Canvas::new(Mask::filled(16, 16, BACKGROUND));
        canvas.mirror = true;
        canvas.class = L_EYE;
        canvas.brush_radius = 1.0;
        canvas.stroke_begin(Pos2::new(3.5, 8.5));
        canvas.stroke_end();
        assert_eq!(canvas.mask().get(3, 8), L_EYE);
        assert_eq!(canvas.mask().get(12, 8), R_EYE);
        let histogram = canvas.mask().class_histogram();
        assert_eq!(histogram[L_EYE as usize], histogram[R_EYE as usize]);
    }

    #[test]
    fn one_stroke_is_one_undo_step() {
        let mut canvas = Canvas::new(Mask::filled(32, 32, BACKGROUND));
        canvas.brush_radius = 2.0;
        canvas.stroke_begin(Pos2::new(4.0, 4.0));
        canvas.stroke_to(Pos2::new(20.0, 4.0));
        canvas.stroke_to(Pos2::new(20.0, 20.0));
        canvas.stroke_end();
        let painted = canvas.mask().clone();
        assert!(painted.class_histogram()[SKIN as usize] > 60);
        canvas.undo();
        assert_eq!(canvas.mask(), &Mask::filled(32, 32, BACKGROUND));
        canvas.redo();
        assert_eq!(canvas.mask(), &painted);
    }

    #[test]
    fn undo_and_redo_hand_back_the_tag_of_a_tagged_replacement() {
        let mut canvas = Canvas::new(Mask::filled(4, 4, BACKGROUND));
        canvas.replace_mask_tagged(Mask::filled(4, 4, SKIN), Some(7));
        canvas.replace_mask(Mask::filled(4, 4, HAIR));
        assert_eq!(canvas.undo(), None, "the untagged replacement");
        assert_eq!(canvas.undo(), Some(7));
        assert_eq!(canvas.mask(), &Mask::filled(4, 4, BACKGROUND));
        assert_eq!(canvas.redo(), Some(7));
        assert_eq!(canvas.mask(), &Mask::filled(4, 4, SKIN));
        assert_eq!(canvas.redo(), None);
    }

    #[test]
    fn small_classes_vanish_at_model_size() {
        let mut mask = Mask::filled(512, 512, SKIN);
        mask.set(0, 0, EARRING); // one pixel, not on the 32 x 32 sampling grid
        let canvas = Canvas::new(mask);
        assert_eq!(canvas.classes_lost_at_model_size(), vec![EARRING]);
    }
}
