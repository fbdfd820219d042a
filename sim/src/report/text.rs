//! Chart text with the embedded DejaVu Sans.
//!
//! plotters 0.3.7's own ab_glyph text path misplaces glyphs (it drops each glyph's left
//! side bearing and truncates the pen position and baseline to whole pixels, so "p50"
//! prints as "p5 0"). [`Label`] is a `BackendTextStyle` that lays text out with ab_glyph
//! directly; the bitmap backend rasterizes it through [`Label::draw`], the SVG backend
//! writes a `<text>` element with the same family, size and anchor. Every chart draws its
//! text through [`Txt`] elements with a `Label`.

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::element::{Drawable, PointCollection};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontFamily, FontStyle, FontTransform, RGBColor};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingBackend, DrawingErrorKind};
use std::sync::OnceLock;

/// The embedded font (also registered with plotters as "sans-serif").
pub static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// CSS font-family the SVG files ask for (DejaVu Sans where installed, else any sans).
const SVG_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

fn font() -> &'static FontRef<'static> {
    static F: OnceLock<FontRef<'static>> = OnceLock::new();
    F.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("embedded DejaVuSans.ttf parses"))
}

/// A text style: size in plotters' convention (em = size / 1.24 px, as the SVG backend
/// writes it), colour, anchor and an optional quarter-turn rotation.
#[derive(Clone, Copy)]
pub struct Label {
    pub size: f64,
    pub color: RGBColor,
    pub anchor: Pos,
    pub rotate_left: bool,
}

impl Label {
    pub fn new(size: f64) -> Label {
        Label { size, color: RGBColor(0, 0, 0), anchor: Pos::new(HPos::Left, VPos::Top), rotate_left: false }
    }
    pub fn color(mut self, c: RGBColor) -> Label {
        self.color = c;
        self
    }
    pub fn anchor(mut self, h: HPos, v: VPos) -> Label {
        self.anchor = Pos::new(h, v);
        self
    }
    /// Reads bottom to top (y axis titles).
    pub fn rotated(mut self) -> Label {
        self.rotate_left = true;
        self
    }

    fn scale(&self) -> PxScale {
        let f = font();
        let em = self.size / 1.24;
        let upem = f.units_per_em().unwrap_or(2048.0) as f64;
        PxScale::from((em * f.height_unscaled() as f64 / upem) as f32)
    }

    /// Advance width of `text` in pixels.
    pub fn width(&self, text: &str) -> f64 {
        let f = font().as_scaled(self.scale());
        let mut x = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                x += f.kern(p, id);
            }
            x += f.h_advance(id);
            prev = Some(id);
        }
        x as f64
    }

    /// Height of a line (ascent + descent) in pixels.
    pub fn line_height(&self) -> f64 {
        let f = font().as_scaled(self.scale());
        (f.ascent() - f.descent()) as f64
    }
}

/// Infallible; the type only satisfies `BackendTextStyle`.
#[derive(Debug, Clone, Copy)]
pub struct NoFontError;
impl std::fmt::Display for NoFontError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("font error")
    }
}
impl std::error::Error for NoFontError {}

impl BackendTextStyle for Label {
    type FontError = NoFontError;

    fn color(&self) -> BackendColor {
        BackendColor { alpha: 1.0, rgb: (self.color.0, self.color.1, self.color.2) }
    }
    fn size(&self) -> f64 {
        self.size
    }
    fn transform(&self) -> FontTransform {
        if self.rotate_left {
            FontTransform::Rotate270
        } else {
            FontTransform::None
        }
    }
    fn style(&self) -> FontStyle {
        FontStyle::Normal
    }
    fn anchor(&self) -> Pos {
        self.anchor
    }
    fn family(&self) -> FontFamily<'_> {
        FontFamily::Name(SVG_FAMILY)
    }

    /// The line box: x from 0 to the advance width, y from 0 (ascent line) to
    /// ascent + descent; `draw` uses the same frame.
    fn layout_box(&self, text: &str) -> Result<((i32, i32), (i32, i32)), NoFontError> {
        Ok(((0, 0), (self.width(text).round() as i32, self.line_height().round() as i32)))
    }

    fn draw<E, DrawFunc: FnMut(i32, i32, BackendColor) -> Result<(), E>>(
        &self,
        text: &str,
        pos: BackendCoord,
        mut draw: DrawFunc,
    ) -> Result<Result<(), E>, NoFontError> {
        let f = font();
        let scale = self.scale();
        let sf = f.as_scaled(scale);
        let baseline = sf.ascent();
        let rgb = (self.color.0, self.color.1, self.color.2);
        let mut pen = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                pen += sf.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scale, point(pen, baseline));
            pen += sf.h_advance(id);
            let Some(outline) = f.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            let mut pixels = vec![];
            outline.draw(|x, y, cov| {
                if cov > 0.0 {
                    pixels.push((b.min.x as i32 + x as i32, b.min.y as i32 + y as i32, cov.min(1.0)))
                }
            });
            for (x, y, cov) in pixels {
                if let Err(e) = draw(pos.0 + x, pos.1 + y, BackendColor { alpha: cov as f64, rgb }) {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// A piece of text at a coordinate, offset by some pixels.
pub struct Txt<C> {
    text: String,
    at: C,
    offset: (i32, i32),
    style: Label,
}

impl<C> Txt<C> {
    pub fn new(text: impl Into<String>, at: C, style: Label) -> Txt<C> {
        Txt { text: text.into(), at, offset: (0, 0), style }
    }
    pub fn offset(mut self, dx: i32, dy: i32) -> Txt<C> {
        self.offset = (dx, dy);
        self
    }
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Txt<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Txt<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        match pos.next() {
            Some((x, y)) => backend.draw_text(&self.text, &self.style, (x + self.offset.0, y + self.offset.1)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_grow_with_text_and_size() {
        let l = Label::new(20.0);
        assert!(l.width("p50") > l.width("p5"));
        assert!(Label::new(30.0).width("p50") > l.width("p50"));
        // em = 20 / 1.24 px; DejaVu digits advance 0.636 em.
        let w = l.width("0");
        assert!((w - 0.636 * 20.0 / 1.24).abs() < 0.3, "{w}");
    }
}
