//! A sweep's results as rows (one per grid point and mode), `sweep.csv` and the markdown
//! summary (`sweep.md`, also printed). Nothing here reads a clock: the same grid and seed
//! give byte-identical files whatever `--jobs` was.

use super::grid::Grid;
use super::run::Outcome;
use super::target::{judge, Metric, Target, Verdict};
use super::Sweep;
use crate::report::format::{bytes, csv_f, gbps, secs, thousands};
use crate::report::summary::ModeSummary;
use crate::report::table::MODE_COLUMNS;
use crate::scenario::{Mode, Num, Scenario};

/// Rows of the markdown's main table; the CSV has them all.
const MD_ROWS_MAX: usize = 120;
/// Points listed under a target; the CSV has them all.
const MD_TARGET_ROWS_MAX: usize = 20;
/// Columns of the two-key table (second key's values); wider grids are left to the heatmap.
const MD_PIVOT_COLUMNS_MAX: usize = 12;

/// One grid point and mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub point: usize,
    /// The varied keys' values, in `--vary` order.
    pub values: Vec<Num>,
    pub mode: Mode,
    pub lower_bound_s: f64,
    pub summary: ModeSummary,
}

/// What a grid point provisions, for the cheapest-point order.
#[derive(Debug, Clone, PartialEq)]
pub struct PointFacts {
    pub seed_peers: u32,
    pub pods: u32,
    pub node_bandwidth_gbps: f64,
    pub seed_peer_bandwidth_gbps: f64,
    pub registry_gbps: f64,
}

impl PointFacts {
    pub fn of(sc: &Scenario) -> PointFacts {
        PointFacts {
            seed_peers: sc.cluster.seed_peers,
            pods: sc.cluster.pods(),
            // With node groups: the fastest group's upload (what the cheapest order compares).
            node_bandwidth_gbps: sc.cluster.layout().iter().map(|g| g.upload_gbps).fold(0.0, f64::max),
            seed_peer_bandwidth_gbps: sc.cluster.seed_peer_bandwidth_gbps,
            registry_gbps: sc.registry.egress_gbps,
        }
    }
}

/// A run that failed: its point, mode and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub point: usize,
    pub mode: Mode,
    pub error: String,
}

/// Everything a sweep's reports are written from.
#[derive(Debug, Clone)]
pub struct SweepResult {
    pub scenario: String,
    pub grid: Grid,
    pub modes: Vec<Mode>,
    /// "policy default · seed 1 · 500 pods · image 3.22 GB", without what the grid varies.
    pub settings: String,
    pub rows: Vec<Row>,
    /// Per grid point.
    pub facts: Vec<PointFacts>,
    pub failures: Vec<Failure>,
    /// Row of each (point, mode), at `point * modes.len() + mode index`.
    index: Vec<Option<usize>>,
    /// Events and wall seconds of every run summed, for the closing line (never written to
    /// a file).
    pub events: u64,
    pub runs_wall_s: f64,
}

impl SweepResult {
    /// `outcomes` as `run_grid` returns them.
    pub fn new(sweep: &Sweep, outcomes: Vec<Result<Outcome, String>>) -> SweepResult {
        let n = sweep.modes.len();
        let mut rows = vec![];
        let mut failures = vec![];
        let (mut events, mut runs_wall_s) = (0, 0.0);
        let mut index = vec![None; outcomes.len()];
        for (unit, outcome) in outcomes.into_iter().enumerate() {
            let (point, mode) = (unit / n, sweep.modes[unit % n]);
            if let Ok(o) = &outcome {
                events += o.events;
                runs_wall_s += o.wall_s;
            }
            match outcome {
                Ok(o) => {
                    index[unit] = Some(rows.len());
                    rows.push(Row {
                        point,
                        values: sweep.grid.values(point),
                        mode,
                        lower_bound_s: crate::engine::lower_bound_s(&sweep.points[point]),
                        summary: o.summary,
                    });
                }
                Err(error) => failures.push(Failure { point, mode, error }),
            }
        }
        SweepResult {
            scenario: sweep.base.name.clone(),
            grid: sweep.grid.clone(),
            modes: sweep.modes.clone(),
            settings: settings(sweep),
            rows,
            facts: sweep.points.iter().map(PointFacts::of).collect(),
            failures,
            index,
            events,
            runs_wall_s,
        }
    }

    /// The row of `point` and `mode`; None for a run that failed.
    pub fn row_at(&self, point: usize, mode: Mode) -> Option<&Row> {
        let m = self.modes.iter().position(|x| *x == mode)?;
        self.index.get(point * self.modes.len() + m).copied().flatten().map(|i| &self.rows[i])
    }

    pub fn keys(&self) -> Vec<&str> {
        self.grid.dims.iter().map(|d| d.key.as_str()).collect()
    }

    pub fn judge(&self, target: &Target) -> Verdict {
        judge(target, &self.rows, &self.facts)
    }

    /// `sweep.csv`: the varied keys, then `mode` and the metrics; points in grid order
    /// (first key slowest), modes in report order.
    pub fn csv(&self) -> anyhow::Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<&str> = self.keys();
        header.push("mode");
        header.extend(Metric::ALL.iter().map(|m| m.name()));
        w.write_record(&header)?;
        for r in &self.rows {
            let s = &r.summary;
            let mut rec: Vec<String> = r.values.iter().map(Num::to_string).collect();
            rec.extend([
                r.mode.name().to_string(),
                s.pods.to_string(),
                csv_f(s.startup_p50_s),
                csv_f(s.startup_p99_s),
                csv_f(s.startup_max_s),
                csv_f(s.makespan_s),
                s.registry_bytes.to_string(),
                s.registry_peak_bps.to_string(),
                s.registry_requests.to_string(),
                csv_f(r.lower_bound_s),
            ]);
            w.write_record(&rec)?;
        }
        crate::report::csvs::finish(w)
    }

    /// `sweep.md`: what was swept, a table of every point and mode, a two-key table for a
    /// grid of two keys, the target's verdict and any run that failed.
    pub fn markdown(&self, target: Option<&Target>) -> String {
        let dims: Vec<String> = self.grid.dims.iter().map(|d| d.describe()).collect();
        let mut out = format!("# Sweep: {}, {}\n\n", self.scenario, dims.join(" x "));
        out.push_str(&format!(
            "{} \u{b7} {} runs ({} points x {} modes)\n\n",
            self.settings,
            self.grid.len() * self.modes.len(),
            self.grid.len(),
            self.modes.len()
        ));
        let mut header: Vec<String> = self.keys().iter().map(|k| k.to_string()).collect();
        header.extend(MODE_COLUMNS.map(String::from));
        let mut right = vec![true; self.keys().len()];
        right.push(false);
        right.extend([true; 8]);
        let mut body = vec![];
        for (i, r) in self.rows.iter().take(MD_ROWS_MAX).enumerate() {
            // A point's values once, on its first mode's row.
            let first = i == 0 || self.rows[i - 1].point != r.point;
            let mut cells: Vec<String> =
                r.values.iter().map(|v| if first { v.to_string() } else { String::new() }).collect();
            cells.extend(mode_cells(r));
            body.push(cells);
        }
        out.push_str(&md_table(&header, &right, &body));
        if self.rows.len() > MD_ROWS_MAX {
            out.push_str(&format!("\n(the first {MD_ROWS_MAX} of {} rows; sweep.csv has them all)\n", self.rows.len()));
        }
        if let Some(pivot) = self.pivot(target) {
            out.push_str(&pivot);
        }
        if let Some(t) = target {
            out.push_str(&self.target_section(t));
        }
        if !self.failures.is_empty() {
            out.push_str("\n## Runs that failed\n\n");
            for f in &self.failures {
                out.push_str(&format!("- {}, mode {}: {}\n", self.grid.label(f.point), f.mode.name(), f.error));
            }
        }
        out
    }

    /// The mode a two-key table and heatmap show: the target's, else p2p, else the first.
    pub fn focus_mode(&self, target: Option<&Target>) -> Mode {
        target
            .map(|t| t.mode)
            .filter(|m| self.modes.contains(m))
            .or_else(|| self.modes.iter().copied().find(|m| *m == Mode::P2p))
            .unwrap_or(self.modes[0])
    }

    /// For two keys: the focus mode's p99 start, first key down, second across.
    fn pivot(&self, target: Option<&Target>) -> Option<String> {
        let [a, b] = self.grid.dims.as_slice() else { return None };
        if b.values.len() > MD_PIVOT_COLUMNS_MAX {
            return None;
        }
        let mode = self.focus_mode(target);
        let mut out = format!("\n## {} start p99 by {} (down) and {} (across)\n\n", mode.name(), a.key, b.key);
        let mut header = vec![format!("{} \\ {}", a.key, b.key)];
        header.extend(b.values.iter().map(|v| v.to_string()));
        let right = vec![true; header.len()];
        let body: Vec<Vec<String>> = a
            .values
            .iter()
            .enumerate()
            .map(|(i, va)| {
                let mut cells = vec![va.to_string()];
                cells.extend((0..b.values.len()).map(|j| {
                    let point = i * b.values.len() + j;
                    self.row_at(point, mode).map_or("failed".into(), |r| secs(r.summary.startup_p99_s))
                }));
                cells
            })
            .collect();
        out.push_str(&md_table(&header, &right, &body));
        Some(out)
    }

    fn target_section(&self, t: &Target) -> String {
        let v = self.judge(t);
        let mut out = format!("\n## Target: {}\n\n", t.text());
        let describe = |i: usize| {
            let r = &self.rows[i];
            let mut parts = vec![format!("{} {}", t.metric.name(), t.metric.show(t.metric.of(r)))];
            if !matches!(t.metric, Metric::RegistryBytes | Metric::RegistryPeakBps) {
                parts.push(format!("registry {}", bytes(r.summary.registry_bytes)));
                parts.push(format!("peak {} Gbit/s", gbps(r.summary.registry_peak_bps as f64)));
            }
            format!("**{}**: {}", self.grid.label(r.point), parts.join(", "))
        };
        match v.cheapest() {
            Some(best) => {
                out.push_str(&format!(
                    "{} of {} points meet it. Cheapest: {}.\n\n",
                    v.meeting.len(),
                    v.considered,
                    describe(best)
                ));
                out.push_str(&format!(
                    "Cheapest first: least registry bytes of {m}, then lowest {m} registry peak, then fewest seed \
                     peers, pods, then slowest node, seed peer and registry links.\n\n",
                    m = t.mode.name()
                ));
                let mut header: Vec<String> = self.keys().iter().map(|k| k.to_string()).collect();
                header.extend([t.metric.name().to_string(), "registry bytes".into(), "registry peak".into()]);
                let right = vec![true; header.len()];
                let body: Vec<Vec<String>> = v
                    .meeting
                    .iter()
                    .take(MD_TARGET_ROWS_MAX)
                    .map(|&i| {
                        let r = &self.rows[i];
                        let mut cells: Vec<String> = r.values.iter().map(Num::to_string).collect();
                        cells.push(t.metric.show(t.metric.of(r)));
                        cells.push(bytes(r.summary.registry_bytes));
                        cells.push(format!("{} Gbit/s", gbps(r.summary.registry_peak_bps as f64)));
                        cells
                    })
                    .collect();
                out.push_str(&md_table(&header, &right, &body));
                if v.meeting.len() > MD_TARGET_ROWS_MAX {
                    out.push_str(&format!(
                        "\n(the {MD_TARGET_ROWS_MAX} cheapest of {}; sweep.csv has every point)\n",
                        v.meeting.len()
                    ));
                }
            }
            None => {
                out.push_str(&format!("None of {} points meets it.", v.considered));
                if let Some(c) = v.closest {
                    out.push_str(&format!(" Closest: {}.", describe(c)));
                }
                out.push('\n');
            }
        }
        out
    }
}

/// A row's cells after the varied keys: mode, then the metrics as `sweep.md` shows them.
pub fn mode_cells(r: &Row) -> Vec<String> {
    let s = &r.summary;
    vec![
        r.mode.name().to_string(),
        secs(s.startup_p50_s),
        secs(s.startup_p99_s),
        secs(s.startup_max_s),
        secs(s.makespan_s),
        secs(r.lower_bound_s),
        bytes(s.registry_bytes),
        format!("{} Gbit/s", gbps(s.registry_peak_bps as f64)),
        thousands(s.registry_requests),
    ]
}

/// "policy default · seed 1 · 500 pods · image 3.22 GB", leaving out what the grid varies.
fn settings(sweep: &Sweep) -> String {
    let varied = |key: &str| sweep.grid.dims.iter().any(|d| d.key == key);
    let b = &sweep.base;
    let mut parts = vec![format!("policy {}", b.policy)];
    if !varied("seed") {
        parts.push(format!("seed {}", b.seed));
    }
    if !varied("cluster.pods") {
        parts.push(format!("{} pods", b.cluster.pods()));
    }
    parts.push(format!("image {}", bytes(crate::engine::image_bytes(b))));
    parts.join(" \u{b7} ")
}

/// A markdown table padded to line up in a terminal too.
fn md_table(header: &[String], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count().max(3)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if right[i] {
                s.push_str(&format!(" {}{c} |", " ".repeat(pad)));
            } else {
                s.push_str(&format!(" {c}{} |", " ".repeat(pad)));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header);
    out.push('|');
    for (i, w) in width.iter().enumerate() {
        if right[i] {
            out.push_str(&format!(" {}: |", "-".repeat(w - 1)));
        } else {
            out.push_str(&format!(" {} |", "-".repeat(*w)));
        }
    }
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_tables_line_up() {
        let t = md_table(
            &["key".into(), "mode".into()],
            &[true, false],
            &[vec!["1".into(), "p2p".into()], vec!["10".into(), "oci".into()]],
        );
        assert_eq!(t, "| key | mode |\n| --: | ---- |\n|   1 | p2p  |\n|  10 | oci  |\n");
    }
}
