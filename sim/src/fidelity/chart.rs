//! `start_cdf`: measured (solid) and simulated (dashed) pod finish times on one axis, one
//! colour per mode, so a reader sees at once where the simulator runs ahead or behind.

use super::compare::Comparison;
use crate::report::charts::{
    build_chart, cdf_points, draw_axes, draw_legend, label, legend_height, mode_color, thick_path, tick_label, titled,
    Axis, Figure, LegendEntry, Swatch, GREY,
};
use crate::report::format::secs_short;
use crate::report::text::Txt;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

pub struct FidelityCdf<'a> {
    pub comparison: &'a Comparison,
    pub subtitle: String,
}

impl FidelityCdf<'_> {
    fn curves(&self) -> Vec<(crate::scenario::Mode, Vec<f64>, Vec<f64>)> {
        self.comparison
            .modes
            .iter()
            .map(|m| {
                let mut meas: Vec<f64> = m.pods.iter().map(|p| p.measured_s).collect();
                let mut sim: Vec<f64> = m.pods.iter().map(|p| p.simulated_s).filter(|v| v.is_finite()).collect();
                meas.sort_by(f64::total_cmp);
                sim.sort_by(f64::total_cmp);
                (m.mode, meas, sim)
            })
            .collect()
    }

    fn legend(&self) -> Vec<LegendEntry> {
        let mut out = vec![];
        for m in &self.comparison.modes {
            let get = |name: &str| m.metrics.iter().find(|x| x.name == name);
            let c = mode_color(m.mode);
            if let (Some(p50), Some(max)) = (get("p50"), get("makespan")) {
                out.push(LegendEntry {
                    swatch: Swatch::Line(c),
                    label: format!(
                        "{} measured: p50 {}, last {}",
                        m.mode.name(),
                        secs_short(p50.measured),
                        secs_short(max.measured)
                    ),
                });
                out.push(LegendEntry {
                    swatch: Swatch::Dashed(c),
                    label: format!(
                        "{} simulated: p50 {} ({:+.0} %), last {} ({:+.0} %)",
                        m.mode.name(),
                        secs_short(p50.simulated),
                        p50.error_pct(),
                        secs_short(max.simulated),
                        max.error_pct()
                    ),
                });
            }
        }
        out
    }
}

impl Figure for FidelityCdf<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, raster: bool) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let title = format!("Measured and simulated pod finish times: {}", self.comparison.scenario);
        let rest = titled(root, &title, &self.subtitle)?;
        let (w, h) = rest.dim_in_pixel();
        let entries = self.legend();
        let (plot, legend) = rest.split_vertically(h - legend_height(w, &entries));
        let curves = self.curves();
        let all = || curves.iter().flat_map(|(_, a, b)| a.iter().chain(b.iter()).copied()).filter(|v| v.is_finite());
        let min = all().fold(f64::INFINITY, f64::min);
        let max = all().fold(0.0f64, f64::max);
        let (min, max) = if min.is_finite() && max > 0.0 { (min, max) } else { (1.0, 10.0) };
        // oci takes several times longer than p2p: a log axis keeps both readable; one
        // mode alone, or modes close together, read better on a linear one from 0.
        let log = max / min.max(1e-9) > 4.0;
        let x = if log { Axis::log(min * 0.85, max * 1.15) } else { Axis::linear(0.0, max * 1.08, 10) };
        let y = Axis::linear(0.0, 100.0, 10);
        let mut chart = build_chart(&plot, &x, &y, 70, 90, true, true)?;
        let x_desc = if log {
            "seconds from the start of the rollout (log scale)"
        } else {
            "seconds from the start of the rollout"
        };
        draw_axes(root, &chart, &x, &y, &tick_label, &tick_label, x_desc, "pods finished (%)", 17.0)?;
        chart.draw_series(DashedLineSeries::new(
            vec![(x.lo(), 50.0), (x.hi(), 50.0)],
            4,
            4,
            RGBColor(150, 150, 150).stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(
            Txt::new("p50", (x.lo(), 50.0), label(15.0).color(GREY).anchor(HPos::Left, VPos::Bottom)).offset(6, -3),
        ))?;
        for (mode, meas, sim) in &curves {
            let c = mode_color(*mode);
            thick_path(root, &mut chart, &cdf_points(meas, x.lo(), x.hi()), c, 3, raster)?;
            chart.draw_series(DashedLineSeries::new(cdf_points(sim, x.lo(), x.hi()), 10, 6, c.stroke_width(3)))?;
        }
        draw_legend(&legend, &entries)?;
        Ok(())
    }
}
