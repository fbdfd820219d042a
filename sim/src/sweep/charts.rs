//! A sweep's line charts: each metric against the first varied key, one line per mode (and
//! with a second key, one per mode and value of it, lighter to darker), a marker at every
//! grid point. `sweep_startup`: p50 and p99 start and makespan, one panel each on one time
//! axis; `sweep_registry`: registry peak and bytes. Axes turn logarithmic where the values
//! span more than a decade (oci and p2p often differ 100x). The target, if any, is a dashed
//! line on its metric's panel and its cheapest point is ringed.

use super::table::{Row, SweepResult};
use super::target::{Metric, Target};
use crate::report::charts::{
    build_chart, draw_axes, draw_legend, label, legend_height, mode_color, thick_path, tick_label, titled, Axis,
    Figure, LegendEntry, Swatch, GREY,
};
use crate::report::format::sig3;
use crate::report::text::Txt;
use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::path::{Path, PathBuf};

/// Lines per mode for the second key's values; more would be a tangle (the heatmap shows
/// them all).
const SECOND_KEY_LINES_MAX: usize = 5;
const PANEL_H: u32 = 290;

/// One panel: a metric, its caption and how its axis reads.
struct Panel {
    metric: Metric,
    caption: String,
}

/// Where the registry's capacity goes on the peak panel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Capacity {
    None,
    /// One capacity for every point (Gbit/s).
    Constant(f64),
    /// The first key is `registry.egress_gbps`: the capacity is x.
    AlongX,
}

/// One line: a mode, or a mode and a value of the second key.
struct Series<'a> {
    /// Line width and marker radius in pixels: the first mode widest, so a mode whose
    /// values equal another's shows around it instead of vanishing under it.
    width: u32,
    radius: i32,
    color: RGBColor,
    rows: Vec<&'a Row>,
}

pub struct SweepLines<'a> {
    result: &'a SweepResult,
    title: String,
    subtitle: String,
    panels: Vec<Panel>,
    /// One y axis for every panel (the three times), else one per panel.
    shared_y: bool,
    target: Option<&'a Target>,
    capacity: Capacity,
}

impl<'a> SweepLines<'a> {
    pub fn startup(result: &'a SweepResult, target: Option<&'a Target>) -> SweepLines<'a> {
        SweepLines {
            result,
            title: format!("Pod start time against {}, {}", result.grid.dims[0].key, result.scenario),
            subtitle: subtitle(result, "one simulation per point and mode"),
            panels: vec![
                Panel { metric: Metric::StartupP50, caption: "p50: half of the pods started".into() },
                Panel { metric: Metric::StartupP99, caption: "p99: 99 % of the pods started".into() },
                Panel { metric: Metric::Makespan, caption: "makespan: the last node holds the whole image".into() },
            ],
            shared_y: true,
            target,
            capacity: Capacity::None,
        }
    }

    pub fn registry(result: &'a SweepResult, target: Option<&'a Target>, capacity: Capacity) -> SweepLines<'a> {
        SweepLines {
            result,
            title: format!("Registry (back-to-source) egress against {}, {}", result.grid.dims[0].key, result.scenario),
            subtitle: subtitle(result, "one simulation per point and mode"),
            panels: vec![
                Panel { metric: Metric::RegistryPeakBps, caption: "peak: the busiest 1 s window".into() },
                Panel { metric: Metric::RegistryBytes, caption: "bytes served for the whole rollout".into() },
            ],
            shared_y: false,
            target,
            capacity,
        }
    }

    fn series(&self) -> Vec<Series<'a>> {
        let r = self.result;
        let mut out = vec![];
        for (m, &mode) in r.modes.iter().enumerate() {
            let layer = (r.modes.len() - 1 - m) as u32;
            let (width, radius) = (2 + 2 * layer, 4 + 2 * layer as i32);
            let of_mode = |j: Option<usize>| -> Vec<&'a Row> {
                let mut rows: Vec<&Row> = r
                    .rows
                    .iter()
                    .filter(|row| row.mode == mode && j.is_none_or(|j| r.grid.indices(row.point)[1] == j))
                    .collect();
                rows.sort_by(|a, b| a.values[0].as_f64().total_cmp(&b.values[0].as_f64()));
                rows
            };
            let color = mode_color(mode);
            match r.grid.dims.get(1) {
                None => out.push(Series { width, radius, color, rows: of_mode(None) }),
                Some(second) => {
                    let shown = second_key_lines(second.values.len());
                    for (k, &j) in shown.iter().enumerate() {
                        let color = shade(color, k, shown.len());
                        out.push(Series { width, radius, color, rows: of_mode(Some(j)) });
                    }
                }
            }
        }
        out
    }

    /// One entry per mode, and for two keys what the shades mean.
    fn legend(&self) -> Vec<LegendEntry> {
        let r = self.result;
        let mut entries: Vec<LegendEntry> = r
            .modes
            .iter()
            .map(|&m| LegendEntry { swatch: Swatch::Line(mode_color(m)), label: m.name().into() })
            .collect();
        if let Some(second) = r.grid.dims.get(1) {
            let values: Vec<String> =
                second_key_lines(second.values.len()).iter().map(|&j| second.values[j].to_string()).collect();
            entries.push(LegendEntry {
                swatch: Swatch::Ramp,
                label: format!("lighter to darker: {} = {}", second.key, values.join(", ")),
            });
        }
        if let Some(t) = self.on_panels() {
            entries.push(LegendEntry {
                swatch: Swatch::Dashed(BLACK),
                label: format!(
                    "target: {} {} {} {}",
                    t.mode.name(),
                    t.metric.label(),
                    t.op.sign(),
                    t.metric.show(t.value)
                ),
            });
            if let Some(best) = self.result.judge(t).cheapest() {
                let label = format!(
                    "ringed: the cheapest point meeting it ({})",
                    self.result.grid.label(self.result.rows[best].point)
                );
                entries.push(LegendEntry { swatch: Swatch::Ring, label });
            }
        }
        if self.capacity != Capacity::None {
            let label = match self.capacity {
                Capacity::Constant(g) => format!("registry capacity, {} Gbit/s", tick_label(g)),
                _ => "registry capacity (registry.egress_gbps)".into(),
            };
            entries.push(LegendEntry { swatch: Swatch::Dashed(GREY), label });
        }
        entries
    }

    /// The target, when its metric is on one of the panels.
    fn on_panels(&self) -> Option<&Target> {
        self.target.filter(|t| self.panels.iter().any(|p| p.metric == t.metric) && self.result.modes.contains(&t.mode))
    }

    fn y_axis(&self, metrics: &[Metric]) -> (Axis, f64, String) {
        let rows = &self.result.rows;
        let mut vals: Vec<f64> = rows
            .iter()
            .flat_map(|r| metrics.iter().map(move |m| m.of(r)))
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        if let Some(t) = self.on_panels().filter(|t| metrics.contains(&t.metric)) {
            vals.push(t.value);
        }
        if metrics.contains(&Metric::RegistryPeakBps) {
            match self.capacity {
                Capacity::Constant(g) => vals.push(g * 1e9),
                Capacity::AlongX => vals.extend(self.result.grid.dims[0].values.iter().map(|v| v.as_f64() * 1e9)),
                Capacity::None => {}
            }
        }
        let max = vals.iter().copied().fold(0.0f64, f64::max);
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let (scale, unit) = match metrics[0] {
            Metric::RegistryPeakBps => (1e9, "Gbit/s".to_string()),
            Metric::RegistryBytes if max >= 1e9 => (1e9, "GB".to_string()),
            Metric::RegistryBytes => (1e6, "MB".to_string()),
            Metric::Pods | Metric::RegistryRequests => (1.0, "count".to_string()),
            _ => (1.0, "seconds".to_string()),
        };
        let (min, max) = if min.is_finite() { (min / scale, max / scale) } else { (1.0, 10.0) };
        if max / min > 10.0 {
            (Axis::log(min * 0.8, max * 1.25), scale, format!("{unit} (log scale)"))
        } else {
            (Axis::linear(0.0, max.max(1e-9) * 1.15, 6), scale, unit)
        }
    }
}

impl Figure for SweepLines<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 80 + PANEL_H * self.panels.len() as u32 + legend_height(1200, &self.legend()) + 10)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, raster: bool) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let series = self.series();
        let entries = self.legend();
        let rest = titled(root, &self.title, &self.subtitle)?;
        let (w, h) = rest.dim_in_pixel();
        let (plots, legend) = rest.split_vertically(h - legend_height(w, &entries));
        let areas = plots.split_evenly((self.panels.len(), 1));
        let dim = &self.result.grid.dims[0];
        let x = x_axis(&dim.values.iter().map(|v| v.as_f64()).collect::<Vec<_>>());
        let shared = self.panels.iter().map(|p| p.metric).collect::<Vec<_>>();
        let target = self.on_panels();
        let cheapest = target.and_then(|t| self.result.judge(t).cheapest()).map(|i| &self.result.rows[i]);
        for (k, (panel, area)) in self.panels.iter().zip(areas.iter()).enumerate() {
            let (y, scale, y_desc) =
                if self.shared_y { self.y_axis(&shared) } else { self.y_axis(std::slice::from_ref(&panel.metric)) };
            let (cap, plot) = area.split_vertically(34);
            let (cw, _) = cap.dim_in_pixel();
            cap.draw(&Txt::new(
                panel.caption.as_str(),
                (cw as i32 / 2, 20),
                label(20.0).anchor(HPos::Center, VPos::Center),
            ))?;
            let mut chart = build_chart(&plot, &x, &y, 64, 96, y.is_log(), true)?;
            let last = k + 1 == self.panels.len();
            let x_desc = if last { dim.key.clone() } else { String::new() };
            draw_axes(root, &chart, &x, &y, &x_label, &tick_label, &x_desc, &y_desc, 16.0)?;
            if panel.metric == Metric::RegistryPeakBps {
                let cap_line = match self.capacity {
                    Capacity::Constant(g) => Some(vec![(x.lo(), g), (x.hi(), g)]),
                    Capacity::AlongX => Some(dim.values.iter().map(|v| (v.as_f64(), v.as_f64())).collect()),
                    Capacity::None => None,
                };
                if let Some(pts) = cap_line {
                    let (lx, ly) = pts[pts.len() - 1];
                    chart.draw_series(DashedLineSeries::new(pts, 10, 6, GREY.stroke_width(2)))?;
                    chart.draw_series(std::iter::once(
                        Txt::new(
                            "registry capacity",
                            (lx, ly),
                            label(16.0).color(GREY).anchor(HPos::Right, VPos::Bottom),
                        )
                        .offset(-8, -4),
                    ))?;
                }
            }
            if let Some(t) = target.filter(|t| t.metric == panel.metric) {
                let v = t.value / scale;
                chart.draw_series(DashedLineSeries::new(
                    vec![(x.lo(), v), (x.hi(), v)],
                    10,
                    6,
                    BLACK.stroke_width(2),
                ))?;
                chart.draw_series(std::iter::once(
                    Txt::new(
                        format!("target {} {}", t.op.sign(), t.metric.show(t.value)),
                        (x.hi(), v),
                        label(16.0).anchor(HPos::Right, VPos::Bottom),
                    )
                    .offset(-8, -4),
                ))?;
            }
            for s in &series {
                let pts: Vec<(f64, f64)> =
                    s.rows.iter().map(|r| (r.values[0].as_f64(), panel.metric.of(r) / scale)).collect();
                // A run that never finished breaks its line.
                for seg in pts.split(|p| !p.1.is_finite()) {
                    if seg.len() > 1 {
                        thick_path(root, &mut chart, seg, s.color, s.width, raster)?;
                    }
                }
                chart.draw_series(
                    pts.iter().filter(|p| p.1.is_finite()).map(|&p| Circle::new(p, s.radius, s.color.filled())),
                )?;
            }
            if let (Some(t), Some(best)) = (target.filter(|t| t.metric == panel.metric), cheapest) {
                let v = panel.metric.of(best) / scale;
                if v.is_finite() && best.mode == t.mode {
                    chart.draw_series(std::iter::once(Circle::new(
                        (best.values[0].as_f64(), v),
                        11,
                        BLACK.stroke_width(2),
                    )))?;
                }
            }
        }
        draw_legend(&legend, &entries)?;
        Ok(())
    }
}

/// Writes `sweep_startup`, `sweep_registry` and, for two keys, `sweep_heatmap` (PNG and SVG).
pub fn write_charts(
    dir: &Path,
    result: &SweepResult,
    target: Option<&Target>,
    capacity: Capacity,
) -> anyhow::Result<Vec<PathBuf>> {
    use crate::report::charts::render;
    let mut files =
        render(&SweepLines::startup(result, target), dir, "sweep_startup").context("drawing sweep_startup")?;
    files.extend(
        render(&SweepLines::registry(result, target, capacity), dir, "sweep_registry")
            .context("drawing sweep_registry")?,
    );
    if result.grid.dims.len() == 2 {
        let map = super::heatmap::Heatmap::new(result, target);
        files.extend(render(&map, dir, "sweep_heatmap").context("drawing sweep_heatmap")?);
    }
    Ok(files)
}

/// "policy default · seed 1 · 50 pods · image 526 MB · <note>", with the other key's
/// spread when there are two.
fn subtitle(r: &SweepResult, note: &str) -> String {
    let mut s = format!("{} \u{b7} {note}", r.settings);
    if let Some(second) = r.grid.dims.get(1) {
        if second.values.len() > SECOND_KEY_LINES_MAX {
            s.push_str(&format!(
                " \u{b7} {SECOND_KEY_LINES_MAX} of {} values of {} drawn",
                second.values.len(),
                second.key
            ));
        }
    }
    s
}

/// Which of `n` values of the second key get a line: all, or five spread from first to last.
fn second_key_lines(n: usize) -> Vec<usize> {
    if n <= SECOND_KEY_LINES_MAX {
        return (0..n).collect();
    }
    let m = SECOND_KEY_LINES_MAX;
    let mut v: Vec<usize> = (0..m).map(|k| (k * (n - 1) + (m - 1) / 2) / (m - 1)).collect();
    v.dedup();
    v
}

/// The `k`-th of `n` shades of `c`, light (mixed with white) to dark (mixed with black).
fn shade(c: RGBColor, k: usize, n: usize) -> RGBColor {
    if n <= 1 {
        return c;
    }
    let f = -0.55 + 0.9 * k as f64 / (n - 1) as f64;
    let mix = |v: u8| {
        let v = f64::from(v);
        let out = if f < 0.0 { v + (255.0 - v) * -f } else { v * (1.0 - f) };
        out.round().clamp(0.0, 255.0) as u8
    };
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// The x axis over a key's values: ticks at the values themselves when there are few,
/// logarithmic when they span more than a decade.
pub(crate) fn x_axis(values: &[f64]) -> Axis {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    let (min, max) = match (v.first(), v.last()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => (0.0, 1.0),
    };
    let log = min > 0.0 && max / min > 10.0;
    if v.len() <= 10 {
        if log {
            let pad = (max / min).powf(0.04);
            return Axis::with_ticks(min / pad, max * pad, true, v);
        }
        let span = if max > min { max - min } else { min.abs().max(1.0) };
        return Axis::with_ticks(min - 0.05 * span, max + 0.05 * span, false, v);
    }
    if log {
        Axis::log(min, max)
    } else {
        Axis::linear_over(min, max, 8)
    }
}

/// A key's value as a tick: "4", "0.25", "2.15" (three significant digits past five).
pub(crate) fn x_label(v: f64) -> String {
    let s = tick_label(v);
    if s.len() > 6 && v.abs() < 1e6 {
        sig3(v)
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_key_lines_spread_from_first_to_last() {
        assert_eq!(second_key_lines(3), [0, 1, 2]);
        assert_eq!(second_key_lines(9), [0, 2, 4, 6, 8]);
        assert_eq!(second_key_lines(100), [0, 25, 50, 74, 99]);
    }

    #[test]
    fn x_ticks_are_the_grid_values_when_few() {
        let a = x_axis(&[1.0, 2.0, 3.0, 4.0]);
        assert!(!a.is_log() && a.lo() < 1.0 && a.hi() > 4.0);
        let g = x_axis(&[50.0, 158.0, 500.0, 1581.0, 5000.0]);
        assert!(g.is_log());
        let one = x_axis(&[6.0]);
        assert!(one.lo() < 6.0 && one.hi() > 6.0);
        assert_eq!(x_label(2.15443), "2.15");
        assert_eq!(x_label(5000.0), "5000");
    }
}
