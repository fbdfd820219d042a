//! Charts (plotters), each written as PNG and SVG with the same drawing code.
//!
//! Text uses the embedded DejaVu Sans (`sim/assets/`), so PNGs look the same on every
//! machine and no system font is needed. Legends are drawn in a strip of their own below
//! each plot, so they never cover data.

use super::format::{bytes, secs_short, times_image_str};
use super::summary::{bucket_gbps, peak_window_bytes};
use super::text::{Label, Txt};
use crate::result::REGISTRY_BUCKET_NS;
use crate::scenario::Mode;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, KeyPointWeight, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &str = "sans-serif";
static FONT_ONCE: Once = Once::new();

/// Registers the embedded font under "sans-serif" (once per process).
pub fn ensure_font() {
    FONT_ONCE.call_once(|| {
        let ok = plotters::style::register_font(FONT, FontStyle::Normal, super::text::FONT_BYTES).is_ok();
        assert!(ok, "embedded DejaVuSans.ttf is not a valid font");
    });
}

/// One colour per mode, the same in every chart (colour-blind-safe Okabe-Ito hues).
pub fn mode_color(mode: Mode) -> RGBColor {
    match mode {
        Mode::Oci => RGBColor(213, 94, 0),      // vermillion
        Mode::P2p => RGBColor(0, 114, 178),     // blue
        Mode::P2pLazy => RGBColor(0, 158, 115), // bluish green
    }
}

pub(crate) const GREY: RGBColor = RGBColor(90, 90, 90);
const LIGHT_GREY: RGBColor = RGBColor(225, 225, 225);
const GRID: RGBColor = RGBColor(228, 228, 228);
const FAINT_GRID: RGBColor = RGBColor(244, 244, 244);

/// Something drawable on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    /// `raster` is true for the PNG (thick lines are drawn in a way that avoids plotters'
    /// polygon artefacts), false for the SVG.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, raster: bool) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static;
}

/// Writes `dir/stem.png` and `dir/stem.svg`; returns both paths.
pub fn render<F: Figure>(fig: &F, dir: &Path, stem: &str) -> anyhow::Result<Vec<PathBuf>> {
    ensure_font();
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    {
        let root = BitMapBackend::new(&png, fig.size()).into_drawing_area();
        root.fill(&WHITE)?;
        fig.draw(&root, true)?;
        root.present()?;
    }
    {
        let root = SVGBackend::new(&svg, fig.size()).into_drawing_area();
        root.fill(&WHITE)?;
        fig.draw(&root, false)?;
        root.present()?;
    }
    Ok(vec![png, svg])
}

// ---------------------------------------------------------------------------------------
// Axis with explicit ticks, linear or log10.

/// A value axis with ticks chosen here (1-2-5 steps), linear or log10.
#[derive(Debug, Clone)]
pub struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl Axis {
    /// Linear axis from `lo` to a 1-2-5 rounded `max`, with about `n` ticks.
    pub fn linear(lo: f64, max: f64, n: usize) -> Axis {
        let max = if max > lo { max } else { lo + 1.0 };
        let step = nice_step((max - lo) / n.max(1) as f64);
        let hi = lo + ((max - lo) / step).ceil() * step;
        let count = ((hi - lo) / step).round() as usize;
        let ticks = (0..=count).map(|i| clean(lo + i as f64 * step)).collect();
        Axis { lo, hi, log: false, ticks, minor: vec![] }
    }

    /// Linear axis with categories at 0, 1, .., n-1 (grouped bars).
    pub fn categories(n: usize) -> Axis {
        Axis { lo: -0.5, hi: n as f64 - 0.5, log: false, ticks: (0..n).map(|i| i as f64).collect(), minor: vec![] }
    }

    /// Log10 axis covering [min, max], bounds and ticks on the 1-2-5 sequence.
    pub fn log(min: f64, max: f64) -> Axis {
        let min = if min.is_finite() && min > 0.0 { min } else { 1.0 };
        let max = if max.is_finite() && max > min { max } else { min * 10.0 };
        let lo = seq125_floor(min);
        let hi = seq125_ceil(max);
        let mut ticks = seq125_between(lo, hi);
        // Too many labels: keep 1-10 decades (plus the bounds' decades).
        if ticks.len() > 12 {
            ticks.retain(|&t| (t.log10() - t.log10().round()).abs() < 1e-9);
        }
        let mut minor = vec![];
        let mut d = 10f64.powi(lo.log10().floor() as i32);
        while d <= hi * 1.0001 {
            for k in 1..10 {
                let v = clean(d * k as f64);
                if v >= lo * 0.9999 && v <= hi * 1.0001 {
                    minor.push(v);
                }
            }
            d *= 10.0;
        }
        Axis { lo, hi, log: true, ticks, minor }
    }

    /// An axis over [lo, hi] (log10 when `log`) with ticks exactly at `ticks`, e.g. the
    /// values a sweep ran.
    pub fn with_ticks(lo: f64, hi: f64, log: bool, ticks: Vec<f64>) -> Axis {
        Axis { lo, hi, log, ticks, minor: vec![] }
    }

    /// Linear axis over [min, max] starting at a tick below `min` (not at 0), about `n` ticks.
    pub fn linear_over(min: f64, max: f64, n: usize) -> Axis {
        let step = nice_step((max - min) / n.max(1) as f64);
        Axis::linear(clean((min / step).floor() * step), max, n)
    }

    pub fn is_log(&self) -> bool {
        self.log
    }

    pub fn lo(&self) -> f64 {
        self.lo
    }
    pub fn hi(&self) -> f64 {
        self.hi
    }

    fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = if v > 0.0 { v } else { self.lo * 1e-6 };
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() {
            f.clamp(-20.0, 20.0)
        } else if f > 0.0 {
            20.0
        } else {
            -20.0
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = self.frac(*value);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.ticks.clone(),
            KeyPointWeight::Any => {
                let mut v = self.ticks.clone();
                v.extend(self.minor.iter().copied());
                v
            }
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// Strips float noise (0.30000000000000004 -> 0.3).
fn clean(v: f64) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let mag = 10f64.powi(v.abs().log10().floor() as i32 - 9);
    (v / mag).round() * mag
}

fn nice_step(raw: f64) -> f64 {
    let raw = if raw > 0.0 && raw.is_finite() { raw } else { 1.0 };
    let mag = 10f64.powi(raw.log10().floor() as i32);
    let m = raw / mag;
    let k = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    clean(k * mag)
}

fn seq125_between(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = vec![];
    let mut d = 10f64.powi(lo.log10().floor() as i32);
    while d <= hi * 1.0001 {
        for k in [1.0, 2.0, 5.0] {
            let v = clean(d * k);
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                out.push(v);
            }
        }
        d *= 10.0;
    }
    out
}

fn seq125_floor(v: f64) -> f64 {
    let d = 10f64.powi(v.log10().floor() as i32);
    let best = [5.0, 2.0, 1.0].into_iter().map(|k| clean(d * k)).find(|&c| c <= v * 1.0000001);
    best.unwrap_or(d)
}

fn seq125_ceil(v: f64) -> f64 {
    let d = 10f64.powi(v.log10().floor() as i32);
    let best = [1.0, 2.0, 5.0, 10.0].into_iter().map(|k| clean(d * k)).find(|&c| c >= v * 0.9999999);
    best.unwrap_or(d * 10.0)
}

/// Tick label: "0.5", "1.5", "2", "100", "1000" (no float noise, no trailing zeros).
pub fn tick_label(v: f64) -> String {
    let v = clean(v);
    if v == 0.0 {
        return "0".to_string();
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

// ---------------------------------------------------------------------------------------
// Text, axes and legend helpers. All text goes through `text::Label` (see text.rs).

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

pub(crate) fn label(size: f64) -> Label {
    Label::new(size)
}

/// A polyline `width` pixels thick. plotters turns thick paths into one polygon, which
/// grows spikes where a jagged data line turns back on itself within a pixel or two; for
/// the PNG the line is drawn instead as 1-pixel polylines offset within the pen's width.
/// The SVG gets an ordinary stroked polyline.
pub(crate) fn thick_path<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut Chart<'_, DB>,
    pts: &[(f64, f64)],
    color: RGBColor,
    width: u32,
    raster: bool,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    if !raster {
        chart.draw_series(std::iter::once(PathElement::new(pts.to_vec(), color.stroke_width(width))))?;
        return Ok(());
    }
    let mut px: Vec<(i32, i32)> = pts.iter().map(|p| chart.backend_coord(p)).collect();
    px.dedup();
    let r = (width as i32 - 1) / 2;
    let extra = (width as i32 - 1) % 2; // even widths lean right/down by one pixel
    for dx in -r..=r + extra {
        for dy in -r..=r + extra {
            if dx * dx + dy * dy > (r + extra) * (r + extra) {
                continue;
            }
            let shifted: Vec<(i32, i32)> = px.iter().map(|&(x, y)| (x + dx, y + dy)).collect();
            root.draw(&PathElement::new(shifted, color.stroke_width(1)))?;
        }
    }
    Ok(())
}

/// Draws a large title and a smaller grey subtitle; returns the area below them.
pub(crate) fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> anyhow::Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let (w, _) = root.dim_in_pixel();
    let (head, rest) = root.split_vertically(80);
    let cx = w as i32 / 2;
    head.draw(&Txt::new(title, (cx, 12), label(30.0).anchor(HPos::Center, VPos::Top)))?;
    head.draw(&Txt::new(subtitle, (cx, 50), label(19.0).color(GREY).anchor(HPos::Center, VPos::Top)))?;
    Ok(rest)
}

/// Builds a chart on `area` with room for our own axis labels, and draws its grid.
pub(crate) fn build_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    x: &Axis,
    y: &Axis,
    x_label_h: u32,
    y_label_w: u32,
    light_grid: bool,
    x_grid: bool,
) -> anyhow::Result<Chart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .margin_left(16)
        .margin_right(36)
        .margin_top(8)
        .margin_bottom(4)
        .x_label_area_size(x_label_h)
        .y_label_area_size(y_label_w)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let mut mesh = chart.configure_mesh();
    // plotters' own labels are switched off (transparent, empty): draw_axes draws them.
    mesh.x_label_formatter(&|_| String::new())
        .y_label_formatter(&|_| String::new())
        .label_style((FONT, 10).into_font().color(&TRANSPARENT))
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(if light_grid { FAINT_GRID.stroke_width(1) } else { TRANSPARENT.stroke_width(0) })
        .axis_style(GREY.stroke_width(1));
    if !x_grid {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;
    Ok(chart)
}

/// Tick labels, tick marks and axis titles, drawn on `root` in pixels next to the plot.
#[allow(clippy::too_many_arguments)]
pub(crate) fn draw_axes<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<'_, DB>,
    x: &Axis,
    y: &Axis,
    x_fmt: &dyn Fn(f64) -> String,
    y_fmt: &dyn Fn(f64) -> String,
    x_desc: &str,
    y_desc: &str,
    tick_px: f64,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let tick = label(tick_px).color(RGBColor(40, 40, 40));
    for &t in &x.ticks {
        let (px, _) = chart.backend_coord(&(t, y.lo()));
        root.draw(&PathElement::new(vec![(px, yr.end), (px, yr.end + 5)], GREY.stroke_width(1)))?;
        root.draw(&Txt::new(x_fmt(t), (px, yr.end + 8), tick.anchor(HPos::Center, VPos::Top)))?;
    }
    let mut widest = 0.0f64;
    for &t in &y.ticks {
        let (_, py) = chart.backend_coord(&(x.lo(), t));
        let s = y_fmt(t);
        widest = widest.max(tick.width(&s));
        root.draw(&PathElement::new(vec![(xr.start - 5, py), (xr.start, py)], GREY.stroke_width(1)))?;
        root.draw(&Txt::new(s, (xr.start - 9, py), tick.anchor(HPos::Right, VPos::Center)))?;
    }
    let desc = label(tick_px + 2.0);
    let mid_x = (xr.start + xr.end) / 2;
    let x_desc_y = yr.end + 8 + tick.line_height().ceil() as i32 + 6;
    root.draw(&Txt::new(x_desc, (mid_x, x_desc_y), desc.anchor(HPos::Center, VPos::Top)))?;
    let mid_y = (yr.start + yr.end) / 2;
    let y_desc_x = xr.start - 9 - widest.ceil() as i32 - 10 - (desc.line_height() / 2.0).ceil() as i32;
    root.draw(&Txt::new(y_desc, (y_desc_x, mid_y), desc.rotated().anchor(HPos::Center, VPos::Center)))?;
    Ok(())
}

/// What a legend entry's sample looks like.
#[derive(Debug, Clone, Copy)]
pub enum Swatch {
    Line(RGBColor),
    Dashed(RGBColor),
    Bar(RGBColor),
    Whisker,
    /// A black ring (a marked point).
    Ring,
    /// Four greys, light to dark (lines shaded by a second variable).
    Ramp,
    /// A square outlined in black, this many pixels thick (a marked heatmap cell).
    Outline(u32),
}

#[derive(Debug, Clone)]
pub struct LegendEntry {
    pub swatch: Swatch,
    pub label: String,
}

const LEGEND_PX: f64 = 19.0;

fn legend_rows(width: u32, entries: &[LegendEntry]) -> Vec<Vec<usize>> {
    let style = label(LEGEND_PX);
    let widths: Vec<i32> = entries.iter().map(|e| 34 + 10 + style.width(&e.label).ceil() as i32).collect();
    let mut rows: Vec<Vec<usize>> = vec![vec![]];
    let mut row_w = 0;
    for (i, &ew) in widths.iter().enumerate() {
        let empty = rows.last().unwrap().is_empty();
        let need = if empty { ew } else { row_w + 40 + ew };
        if need > width as i32 - 40 && !empty {
            rows.push(vec![i]);
            row_w = ew;
        } else {
            rows.last_mut().unwrap().push(i);
            row_w = need;
        }
    }
    rows
}

pub(crate) fn legend_height(width: u32, entries: &[LegendEntry]) -> u32 {
    let rows = legend_rows(width, entries).len() as u32;
    12 + rows * (label(LEGEND_PX).line_height().ceil() as u32 + 10)
}

/// Lays entries out in centered rows inside `area`.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let style = label(LEGEND_PX);
    let (sample_w, gap, spacing) = (34i32, 10i32, 40i32);
    let row_h = style.line_height().ceil() as i32 + 10;
    let widths: Vec<i32> = entries.iter().map(|e| sample_w + gap + style.width(&e.label).ceil() as i32).collect();
    for (r, row) in legend_rows(w, entries).iter().enumerate() {
        let total: i32 = row.iter().map(|&i| widths[i]).sum::<i32>() + spacing * (row.len() as i32 - 1);
        let mut x = (w as i32 - total) / 2;
        let y = 8 + r as i32 * row_h + row_h / 2;
        for &i in row {
            let e = &entries[i];
            let (x0, x1) = (x, x + sample_w);
            match e.swatch {
                Swatch::Line(c) => {
                    area.draw(&Rectangle::new([(x0, y - 2), (x1, y + 2)], c.filled()))?;
                }
                Swatch::Dashed(c) => {
                    for s in (x0..x1).step_by(10) {
                        area.draw(&Rectangle::new([(s, y - 1), ((s + 6).min(x1), y + 1)], c.filled()))?;
                    }
                }
                Swatch::Bar(c) => {
                    area.draw(&Rectangle::new([(x0 + 6, y - 9), (x1 - 6, y + 9)], c.filled()))?;
                }
                Swatch::Ramp => {
                    for (k, g) in [200u8, 150, 100, 50].into_iter().enumerate() {
                        let a = x0 + k as i32 * (x1 - x0) / 4;
                        let b = x0 + (k as i32 + 1) * (x1 - x0) / 4;
                        area.draw(&Rectangle::new([(a, y - 3), (b, y + 3)], RGBColor(g, g, g).filled()))?;
                    }
                }
                Swatch::Ring => {
                    area.draw(&Circle::new(((x0 + x1) / 2, y), 9, BLACK.stroke_width(2)))?;
                }
                Swatch::Outline(px) => {
                    area.draw(&Rectangle::new([(x0 + 7, y - 10), (x1 - 7, y + 10)], BLACK.stroke_width(px)))?;
                }
                Swatch::Whisker => {
                    let xm = (x0 + x1) / 2;
                    area.draw(&Rectangle::new([(x0 + 9, y - 1), (x1 - 9, y + 11)], LIGHT_GREY.filled()))?;
                    area.draw(&Rectangle::new([(xm - 1, y - 11), (xm + 1, y - 1)], BLACK.filled()))?;
                    area.draw(&Rectangle::new([(xm - 6, y - 12), (xm + 6, y - 10)], BLACK.filled()))?;
                }
            }
            area.draw(&Txt::new(e.label.as_str(), (x1 + gap, y), style.anchor(HPos::Left, VPos::Center)))?;
            x += widths[i] + spacing;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Start-time CDF.

/// `startup_cdf`: the share of pods started over time, one curve per mode, log time axis
/// (oci can take 100x longer than p2p; a log axis keeps both readable).
pub struct StartupCdf {
    pub title: String,
    pub subtitle: String,
    /// Per mode: pod start times, ascending (non-finite = never started).
    pub curves: Vec<(Mode, Vec<f64>)>,
    pub lower_bound_s: f64,
}

impl StartupCdf {
    fn legend(&self) -> Vec<LegendEntry> {
        let mut entries = vec![];
        for (mode, starts) in &self.curves {
            let p = |q: u32| super::summary::nearest_rank(starts, q);
            let never = starts.iter().filter(|s| !s.is_finite()).count();
            let mut text = format!(
                "{}: p50 {}, p99 {}, max {}",
                mode.name(),
                secs_short(p(50)),
                secs_short(p(99)),
                secs_short(p(100))
            );
            if never > 0 {
                text.push_str(&format!(" ({never} never started)"));
            }
            entries.push(LegendEntry { swatch: Swatch::Line(mode_color(*mode)), label: text });
        }
        let lb = self.lower_bound_s;
        if lb.is_finite() && lb > 0.0 {
            entries.push(LegendEntry {
                swatch: Swatch::Dashed(GREY),
                label: format!("lower bound (Kumar & Ross) for the whole image: {}", secs_short(lb)),
            });
        }
        entries
    }
}

impl Figure for StartupCdf {
    fn size(&self) -> (u32, u32) {
        (1200, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, raster: bool) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let rest = titled(root, &self.title, &self.subtitle)?;
        let (w, h) = rest.dim_in_pixel();
        let entries = self.legend();
        let (plot, legend) = rest.split_vertically(h - legend_height(w, &entries));

        let finite = || self.curves.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
        let min = finite().fold(f64::INFINITY, f64::min);
        let max = finite().fold(0.0f64, f64::max);
        let lb = self.lower_bound_s;
        let (min, max) = if min.is_finite() { (min, max) } else { (1.0, 10.0) };
        let (min, max) = if lb.is_finite() && lb > 0.0 { (min.min(lb), max.max(lb)) } else { (min, max) };
        let x = Axis::log(min * 0.85, max * 1.15);
        let y = Axis::linear(0.0, 100.0, 10);
        let mut chart = build_chart(&plot, &x, &y, 70, 90, true, true)?;
        draw_axes(
            root,
            &chart,
            &x,
            &y,
            &tick_label,
            &tick_label,
            "seconds since rollout start (log scale)",
            "pods started (%)",
            17.0,
        )?;

        // p50 / p99 guides.
        for (pct, name) in [(50.0, "p50"), (99.0, "p99")] {
            chart.draw_series(DashedLineSeries::new(
                vec![(x.lo(), pct), (x.hi(), pct)],
                4,
                4,
                RGBColor(150, 150, 150).stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(
                Txt::new(name, (x.lo(), pct), label(15.0).color(GREY).anchor(HPos::Left, VPos::Bottom)).offset(6, -3),
            ))?;
        }
        if lb.is_finite() && lb > 0.0 {
            chart.draw_series(DashedLineSeries::new(vec![(lb, 0.0), (lb, 100.0)], 8, 5, GREY.stroke_width(2)))?;
        }

        for (mode, starts) in &self.curves {
            let c = mode_color(*mode);
            thick_path(root, &mut chart, &cdf_points(starts, x.lo(), x.hi()), c, 3, raster)?;
        }
        draw_legend(&legend, &entries)?;
        Ok(())
    }
}

/// The polyline of an empirical CDF in percent. Up to 100 pods it is the exact step
/// function; above, it joins the points (t_i, 100 (i+1)/n), which looks the same at chart
/// resolution and avoids hundreds of 1-pixel stair steps.
pub(crate) fn cdf_points(starts: &[f64], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let n = starts.len();
    let mut pts = vec![(lo, 0.0)];
    if n == 0 {
        return pts;
    }
    let step = n <= 100;
    for (i, &s) in starts.iter().enumerate() {
        if !s.is_finite() {
            break;
        }
        if step || i == 0 {
            pts.push((s, 100.0 * i as f64 / n as f64));
        }
        pts.push((s, 100.0 * (i + 1) as f64 / n as f64));
    }
    if starts.iter().all(|s| s.is_finite()) {
        pts.push((hi, 100.0));
    } else if let Some(&(t, v)) = pts.last() {
        pts.push((hi.max(t), v));
    }
    pts.dedup();
    pts
}

// ---------------------------------------------------------------------------------------
// Registry bandwidth, small multiples.

pub struct BandwidthPanel {
    pub mode: Mode,
    pub buckets: Vec<u64>,
    pub registry_bytes: u64,
    pub image_bytes: u64,
}

/// `registry_bandwidth`: registry egress over time, one panel per mode. Each panel has its
/// own time range (oci runs for minutes, p2p for seconds) and all share the Gbit/s scale.
pub struct RegistryBandwidth {
    pub title: String,
    pub subtitle: String,
    pub panels: Vec<BandwidthPanel>,
    pub capacity_gbps: Option<f64>,
}

const PANEL_H: u32 = 270;

impl Figure for RegistryBandwidth {
    fn size(&self) -> (u32, u32) {
        (1200, 80 + PANEL_H * self.panels.len().max(1) as u32 + 10)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, raster: bool) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let rest = titled(root, &self.title, &self.subtitle)?;
        let (_, h) = rest.dim_in_pixel();
        let (rest, _) = rest.split_vertically(h - 10);
        let areas = rest.split_evenly((self.panels.len().max(1), 1));
        let bucket_s = REGISTRY_BUCKET_NS as f64 / 1e9;
        let top = self
            .panels
            .iter()
            .flat_map(|p| p.buckets.iter().map(|&b| bucket_gbps(b)))
            .fold(0.0f64, f64::max)
            .max(self.capacity_gbps.unwrap_or(0.0))
            .max(0.001);
        let y = Axis::linear(0.0, top * 1.2, 5);
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            let c = mode_color(panel.mode);
            let last = panel.buckets.iter().rposition(|&b| b > 0);
            let end_s = last.map(|i| (i + 1) as f64 * bucket_s).unwrap_or(1.0);
            let x = Axis::linear(0.0, (end_s * 1.03).max(0.5), 10);
            let peak = peak_window_bytes(&panel.buckets) as f64 * 8.0;
            let (cap_area, plot) = area.split_vertically(34);
            let (w, _) = cap_area.dim_in_pixel();
            let head = format!("{}:", panel.mode.name());
            let head_style = label(20.0).color(c).anchor(HPos::Left, VPos::Center);
            let body = format!(
                " {} from the registry ({} the image), busiest 1 s window {:.2} Gbit/s, last byte at {}",
                bytes(panel.registry_bytes),
                times_image_str(panel.registry_bytes, panel.image_bytes),
                peak / 1e9,
                secs_short(end_s)
            );
            let body_style = label(18.0).anchor(HPos::Left, VPos::Center);
            let total = head_style.width(&head) + body_style.width(&body);
            let x0 = ((w as f64 - total) / 2.0).max(0.0) as i32;
            cap_area.draw(&Txt::new(head.as_str(), (x0, 20), head_style))?;
            cap_area.draw(&Txt::new(body, (x0 + head_style.width(&head).round() as i32, 20), body_style))?;

            let mut chart = build_chart(&plot, &x, &y, 56, 80, false, true)?;
            draw_axes(root, &chart, &x, &y, &tick_label, &tick_label, "seconds since rollout start", "Gbit/s", 16.0)?;
            // Step shape: each 100 ms bucket is flat over its interval.
            let mut pts = Vec::with_capacity(panel.buckets.len() * 2 + 2);
            for (i, &b) in panel.buckets.iter().enumerate() {
                let g = bucket_gbps(b);
                pts.push((i as f64 * bucket_s, g));
                pts.push(((i + 1) as f64 * bucket_s, g));
            }
            pts.dedup();
            if last.is_some() {
                chart.draw_series(AreaSeries::new(pts.clone(), 0.0, c.mix(0.35)))?;
                thick_path(root, &mut chart, &pts, c, 2, raster)?;
            } else {
                chart.draw_series(std::iter::once(Txt::new(
                    "no registry traffic",
                    ((x.lo() + x.hi()) / 2.0, y.hi() / 2.0),
                    label(20.0).color(GREY).anchor(HPos::Center, VPos::Center),
                )))?;
            }
            if let Some(cap) = self.capacity_gbps {
                chart.draw_series(DashedLineSeries::new(
                    vec![(x.lo(), cap), (x.hi(), cap)],
                    10,
                    6,
                    BLACK.stroke_width(2),
                ))?;
                chart.draw_series(std::iter::once(
                    Txt::new(
                        format!("registry capacity {} Gbit/s", tick_label(cap)),
                        (x.hi(), cap),
                        label(16.0).anchor(HPos::Right, VPos::Bottom),
                    )
                    .offset(-8, -4),
                ))?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Grouped bars (matrix charts).

/// One bar: its height and optionally a whisker top (p99 over a p50 bar).
#[derive(Debug, Clone, Copy)]
pub struct Bar {
    pub value: f64,
    pub whisker: Option<f64>,
}

pub struct BarSeries {
    pub mode: Mode,
    /// One per group; None leaves a gap.
    pub bars: Vec<Option<Bar>>,
}

/// Grouped bars: groups on x (pod counts), one bar per mode in each group, the value
/// printed above each bar.
pub struct GroupedBars {
    pub title: String,
    pub subtitle: String,
    pub groups: Vec<String>,
    pub x_desc: String,
    pub series: Vec<BarSeries>,
    pub log_y: bool,
    pub y_desc: String,
    /// Formats a bar value (raw units) for its label.
    pub value_label: fn(f64) -> String,
    /// Divides values for the y axis (e.g. 1e9 to show GB); labels use raw values.
    pub y_scale: f64,
    /// A dashed reference line (value in raw units, label).
    pub hline: Option<(f64, String)>,
    /// Extra legend entries (e.g. what the whisker means).
    pub notes: Vec<LegendEntry>,
}

impl GroupedBars {
    fn legend(&self) -> Vec<LegendEntry> {
        let mut entries: Vec<LegendEntry> = self
            .series
            .iter()
            .map(|s| LegendEntry { swatch: Swatch::Bar(mode_color(s.mode)), label: s.mode.name().to_string() })
            .collect();
        entries.extend(self.notes.iter().cloned());
        if let Some((_, text)) = &self.hline {
            entries.push(LegendEntry { swatch: Swatch::Dashed(BLACK), label: text.clone() });
        }
        entries
    }
}

impl Figure for GroupedBars {
    fn size(&self) -> (u32, u32) {
        (1200, 780)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, _raster: bool) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let rest = titled(root, &self.title, &self.subtitle)?;
        let (w, h) = rest.dim_in_pixel();
        let entries = self.legend();
        let (plot, legend) = rest.split_vertically(h - legend_height(w, &entries));
        let s = self.y_scale;
        let all = || {
            self.series
                .iter()
                .flat_map(|ser| ser.bars.iter().flatten())
                .flat_map(|b| std::iter::once(b.value).chain(b.whisker))
                .filter(|v| v.is_finite())
                .map(move |v| v / s)
        };
        let hline = self.hline.as_ref().map(|(v, _)| v / s);
        let max = all().chain(hline).fold(0.0f64, f64::max);
        let y = if self.log_y {
            let min = all().filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min);
            // Headroom above the tallest whisker for the value labels.
            Axis::log(min * 0.5, max * 2.5)
        } else {
            Axis::linear(0.0, max.max(1e-9) * 1.15, 6)
        };
        let x = Axis::categories(self.groups.len());
        let mut chart = build_chart(&plot, &x, &y, 70, 100, self.log_y, false)?;
        let groups = &self.groups;
        let group_label = |v: f64| {
            let i = v.round();
            if i >= 0.0 && (i as usize) < groups.len() {
                groups[i as usize].clone()
            } else {
                String::new()
            }
        };
        draw_axes(root, &chart, &x, &y, &group_label, &tick_label, &self.x_desc, &self.y_desc, 17.0)?;

        if let Some(v) = hline {
            chart.draw_series(DashedLineSeries::new(vec![(x.lo(), v), (x.hi(), v)], 10, 6, BLACK.stroke_width(2)))?;
        }

        let m = self.series.len().max(1) as f64;
        let slot = 0.8 / m;
        let bar_w = slot * 0.86;
        let base = y.lo();
        let value_style = label(16.0).anchor(HPos::Center, VPos::Bottom);
        for (k, ser) in self.series.iter().enumerate() {
            let c = mode_color(ser.mode);
            let off = (k as f64 - (m - 1.0) / 2.0) * slot;
            for (g, bar) in ser.bars.iter().enumerate() {
                let Some(bar) = bar else { continue };
                let xc = g as f64 + off;
                let v = if bar.value.is_finite() { bar.value / s } else { y.hi() };
                let v_draw = v.max(base);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(xc - bar_w / 2.0, base), (xc + bar_w / 2.0, v_draw)],
                    c.filled(),
                )))?;
                let mut label_at = v_draw;
                if let Some(wt) = bar.whisker {
                    let wt = if wt.is_finite() { wt / s } else { y.hi() };
                    if wt > v {
                        chart.draw_series(std::iter::once(PathElement::new(
                            vec![(xc, v_draw), (xc, wt)],
                            BLACK.stroke_width(2),
                        )))?;
                        chart.draw_series(std::iter::once(PathElement::new(
                            vec![(xc - bar_w / 4.0, wt), (xc + bar_w / 4.0, wt)],
                            BLACK.stroke_width(2),
                        )))?;
                        label_at = wt;
                    }
                }
                let text = if bar.value.is_finite() { (self.value_label)(bar.value) } else { "never".into() };
                chart.draw_series(std::iter::once(Txt::new(text, (xc, label_at), value_style).offset(0, -5)))?;
            }
        }
        draw_legend(&legend, &entries)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_ticks_follow_1_2_5() {
        let a = Axis::log(1.7, 640.0);
        assert_eq!(a.lo(), 1.0);
        assert_eq!(a.hi(), 1000.0);
        assert_eq!(a.ticks, vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        let a = Axis::log(0.35, 4.2);
        assert_eq!((a.lo(), a.hi()), (0.2, 5.0));
        assert_eq!(tick_label(0.2), "0.2");
        assert_eq!(tick_label(1000.0), "1000");
        assert_eq!(tick_label(0.05), "0.05");
    }

    #[test]
    fn linear_axis_rounds_up() {
        let a = Axis::linear(0.0, 11.8, 5);
        assert_eq!(a.hi(), 12.0);
        assert_eq!(a.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        let a = Axis::linear(0.0, 0.7, 10);
        assert!((a.hi() - 0.7).abs() < 1e-12, "{a:?}");
    }
}
