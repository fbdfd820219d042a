//! `sweep_heatmap`: for a grid of two keys, one metric of one mode over both (the target's
//! metric and mode, else p2p start p99): first key across, second key up, one cell per grid
//! point, light for low values and dark for high, the value written in the cell where it
//! fits. Cells meeting the target are outlined and the cheapest one is outlined thick.

use super::charts::x_label;
use super::table::{Row, SweepResult};
use super::target::{Metric, Target};
use crate::report::charts::{
    build_chart, draw_axes, draw_legend, label, legend_height, titled, Axis, Figure, LegendEntry, Swatch,
};
use crate::report::text::Txt;
use crate::scenario::Mode;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// Light yellow to dark red (ColorBrewer YlOrRd): low values light, so the eye goes to the
/// slow (or costly) corner.
const RAMP: [(u8, u8, u8); 6] =
    [(255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (177, 0, 38), (102, 0, 38)];
const NO_VALUE: RGBColor = RGBColor(200, 200, 200);
const BAR_H: u32 = 96;

pub struct Heatmap<'a> {
    result: &'a SweepResult,
    mode: Mode,
    metric: Metric,
    target: Option<&'a Target>,
}

impl<'a> Heatmap<'a> {
    pub fn new(result: &'a SweepResult, target: Option<&'a Target>) -> Heatmap<'a> {
        let mode = result.focus_mode(target);
        let metric = target.filter(|t| t.mode == mode).map_or(Metric::StartupP99, |t| t.metric);
        Heatmap { result, mode, metric, target: target.filter(|t| t.mode == mode) }
    }

    fn row(&self, i: usize, j: usize) -> Option<&'a Row> {
        let n2 = self.result.grid.dims[1].values.len();
        self.result.row_at(i * n2 + j, self.mode)
    }

    fn legend(&self) -> Vec<LegendEntry> {
        let mut out = vec![];
        if let Some(t) = self.target {
            let label = format!(
                "outlined: meets the target, {} {} {} {}",
                t.mode.name(),
                t.metric.label(),
                t.op.sign(),
                t.metric.show(t.value)
            );
            out.push(LegendEntry { swatch: Swatch::Outline(2), label });
            if let Some(best) = self.result.judge(t).cheapest() {
                let label = format!("thick: the cheapest, {}", self.result.grid.label(self.result.rows[best].point));
                out.push(LegendEntry { swatch: Swatch::Outline(5), label });
            }
        }
        out
    }

    /// The colour scale: value range, and whether it is logarithmic.
    fn scale(&self) -> (f64, f64, bool) {
        let vals: Vec<f64> = self
            .result
            .rows
            .iter()
            .filter(|r| r.mode == self.mode)
            .map(|r| self.metric.of(r))
            .filter(|v| v.is_finite())
            .collect();
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !min.is_finite() {
            return (0.0, 1.0, false);
        }
        let log = min > 0.0 && max / min > 10.0;
        (min, max, log)
    }
}

/// Position of `v` on the scale, 0 to 1.
fn frac(v: f64, (min, max, log): (f64, f64, bool)) -> f64 {
    let f = if log { (v.ln() - min.ln()) / (max.ln() - min.ln()) } else { (v - min) / (max - min) };
    if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

fn ramp(f: f64) -> RGBColor {
    let x = f.clamp(0.0, 1.0) * (RAMP.len() - 1) as f64;
    let i = (x.floor() as usize).min(RAMP.len() - 2);
    let t = x - i as f64;
    let (a, b) = (RAMP[i], RAMP[i + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Black text on light cells, white on dark ones.
fn ink(c: RGBColor) -> RGBColor {
    let luma = 0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2);
    if luma > 140.0 {
        BLACK
    } else {
        WHITE
    }
}

/// A cell's text: the value, short ("12.3 s", "1.2 GB").
fn cell_text(metric: Metric, v: f64) -> String {
    use crate::report::format::{bytes_f, secs, sig3};
    if !v.is_finite() {
        return "never".into();
    }
    match metric {
        Metric::RegistryBytes => bytes_f(v),
        Metric::RegistryPeakBps => format!("{} G", sig3(v / 1e9)),
        m if m.is_time() => secs(v),
        _ => sig3(v),
    }
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 900)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, _raster: bool) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let r = self.result;
        let (a, b) = (&r.grid.dims[0], &r.grid.dims[1]);
        let title = format!("{} {} by {} and {}, {}", self.mode.name(), self.metric.label(), a.key, b.key, r.scenario);
        let rest = titled(root, &title, &format!("{} \u{b7} one simulation per cell", r.settings))?;
        let (w, h) = rest.dim_in_pixel();
        let entries = self.legend();
        let legend_h = if entries.is_empty() { 0 } else { legend_height(w, &entries) };
        let (plot, bottom) = rest.split_vertically(h - BAR_H - legend_h);
        let (bar, legend) = bottom.split_vertically(BAR_H);
        let x = Axis::categories(a.values.len());
        let y = Axis::categories(b.values.len());
        let chart = build_chart(&plot, &x, &y, 70, 110, false, false)?;
        let at = |vals: &[crate::scenario::Num], v: f64| {
            let i = v.round();
            if i >= 0.0 && (i as usize) < vals.len() {
                x_label(vals[i as usize].as_f64())
            } else {
                String::new()
            }
        };
        draw_axes(root, &chart, &x, &y, &|v| at(&a.values, v), &|v| at(&b.values, v), &a.key, &b.key, 17.0)?;

        let scale = self.scale();
        let verdict = self.target.map(|t| r.judge(t));
        let meets = |row: &Row| self.target.is_some_and(|t| t.holds(self.metric.of(row)));
        let cheapest = verdict.as_ref().and_then(|v| v.cheapest()).map(|i| r.rows[i].point);
        let (px0, _) = chart.backend_coord(&(-0.5, 0.0));
        let (px1, _) = chart.backend_coord(&(0.5, 0.0));
        let (_, py0) = chart.backend_coord(&(0.0, -0.5));
        let (_, py1) = chart.backend_coord(&(0.0, 0.5));
        let (cell_w, cell_h) = ((px1 - px0).abs(), (py0 - py1).abs());
        let text_px = (f64::from(cell_h) * 0.4).clamp(11.0, 22.0);
        for i in 0..a.values.len() {
            for j in 0..b.values.len() {
                let (xi, yj) = (i as f64, j as f64);
                let row = self.row(i, j);
                let v = row.map_or(f64::NAN, |row| self.metric.of(row));
                let fill = if v.is_finite() { ramp(frac(v, scale)) } else { NO_VALUE };
                let (tl, br) = (chart.backend_coord(&(xi - 0.5, yj + 0.5)), chart.backend_coord(&(xi + 0.5, yj - 0.5)));
                root.draw(&Rectangle::new([tl, br], fill.filled()))?;
                root.draw(&Rectangle::new([tl, br], WHITE.stroke_width(2)))?;
                if let Some(row) = row.filter(|row| meets(row)) {
                    let thick = cheapest == Some(row.point);
                    let inset = if thick { 4 } else { 3 };
                    root.draw(&Rectangle::new(
                        [(tl.0 + inset, tl.1 + inset), (br.0 - inset, br.1 - inset)],
                        BLACK.stroke_width(if thick { 5 } else { 2 }),
                    ))?;
                }
                let text = match row {
                    Some(_) => cell_text(self.metric, v),
                    None => "failed".into(),
                };
                let style = label(text_px).color(ink(fill)).anchor(HPos::Center, VPos::Center);
                if f64::from(cell_w) > style.width(&text) + 10.0 && f64::from(cell_h) > style.line_height() + 4.0 {
                    root.draw(&Txt::new(text, ((tl.0 + br.0) / 2, (tl.1 + br.1) / 2), style))?;
                }
            }
        }
        draw_colour_bar(&bar, self.metric, scale)?;
        if !entries.is_empty() {
            draw_legend(&legend, &entries)?;
        }
        Ok(())
    }
}

/// A horizontal colour bar with ticks and the metric's name, centred in `area`.
fn draw_colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    metric: Metric,
    scale: (f64, f64, bool),
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let (bar_w, bar_h, top) = (640i32, 18i32, 14i32);
    let x0 = (w as i32 - bar_w) / 2;
    let slices = 128;
    for k in 0..slices {
        let (a, b) = (x0 + bar_w * k / slices, x0 + bar_w * (k + 1) / slices);
        let c = ramp((k as f64 + 0.5) / slices as f64);
        area.draw(&Rectangle::new([(a, top), (b, top + bar_h)], c.filled()))?;
    }
    area.draw(&Rectangle::new([(x0, top), (x0 + bar_w, top + bar_h)], RGBColor(90, 90, 90).stroke_width(1)))?;
    let (min, max, log) = scale;
    let (div, unit) = match metric {
        Metric::RegistryBytes => (1e9, "GB"),
        Metric::RegistryPeakBps => (1e9, "Gbit/s"),
        m if m.is_time() => (1.0, "s"),
        _ => (1.0, "count"),
    };
    let axis = if log { Axis::log(min / div, max / div) } else { Axis::linear_over(min / div, max / div, 5) };
    let tick = label(15.0).anchor(HPos::Center, VPos::Top);
    let ticks: Vec<f64> =
        axis_ticks(&axis).into_iter().filter(|t| *t * div >= min * 0.999 && *t * div <= max * 1.001).collect();
    for t in ticks {
        let px = x0 + (frac(t * div, scale) * f64::from(bar_w)).round() as i32;
        area.draw(&PathElement::new(vec![(px, top + bar_h), (px, top + bar_h + 5)], BLACK.stroke_width(1)))?;
        area.draw(&Txt::new(crate::report::charts::tick_label(t), (px, top + bar_h + 8), tick))?;
    }
    let what = format!(
        "{} ({unit}{}): {} to {}",
        metric.label(),
        if log { ", log scale" } else { "" },
        metric.show(min),
        metric.show(max)
    );
    area.draw(&Txt::new(what, (w as i32 / 2, top + bar_h + 34), label(16.0).anchor(HPos::Center, VPos::Top)))?;
    Ok(())
}

fn axis_ticks(a: &Axis) -> Vec<f64> {
    use plotters::coord::ranged1d::{BoldPoints, Ranged};
    a.key_points(BoldPoints(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_runs_light_to_dark() {
        let luma = |c: RGBColor| 0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2);
        let l: Vec<f64> = (0..=10).map(|k| luma(ramp(k as f64 / 10.0))).collect();
        assert!(l.windows(2).all(|w| w[0] > w[1]), "{l:?}");
        assert_eq!(ink(ramp(0.0)), BLACK);
        assert_eq!(ink(ramp(1.0)), WHITE);
        assert_eq!(frac(10.0, (1.0, 100.0, true)), 0.5);
        assert_eq!(frac(50.0, (0.0, 100.0, false)), 0.5);
    }
}
