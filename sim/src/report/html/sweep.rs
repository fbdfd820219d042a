//! A sweep's page, `DIR/<name>/sweep/index.html`: every grid point and mode, the two-key
//! table, the target's verdict, the charts inline and the scenario swept.

use super::nav::{self, Here};
use super::page::{Cell, Html, Page};
use super::{figures, file_links, scenario_section, write, ScenarioText};
use crate::report::format::{bytes, gbps, secs};
use crate::report::run_dir;
use crate::report::table::MODE_COLUMNS;
use crate::scenario::Num;
use crate::sweep::table::mode_cells;
use crate::sweep::target::Metric;
use crate::sweep::{SweepResult, Target};
use std::path::{Path, PathBuf};

/// Rows of the main table; sweep.csv has them all.
const ROWS_MAX: usize = 2000;
/// Points listed under a target.
const TARGET_ROWS_MAX: usize = 50;

pub fn sweep_page(
    out_root: &Path,
    result: &SweepResult,
    target: Option<&Target>,
    scenario: &ScenarioText,
) -> anyhow::Result<String> {
    let dir = run_dir(out_root, &result.scenario)?.join("sweep");
    let dims: Vec<String> = result.grid.dims.iter().map(|d| d.describe()).collect();
    let mut p = Page::new(&format!("Sweep: {}", result.scenario));
    p.sub(&format!(
        "{} \u{b7} {} \u{b7} {} runs ({} points x {} modes)",
        dims.join(" x "),
        result.settings,
        result.grid.len() * result.modes.len(),
        result.grid.len(),
        result.modes.len()
    ));
    if let Some(t) = target {
        target_section(&mut p, result, t);
    }
    p.h2("Every point and mode");
    let keys = result.keys();
    let mut header: Vec<&str> = keys.clone();
    header.extend(MODE_COLUMNS);
    let body: Vec<Vec<Cell>> = result
        .rows
        .iter()
        .take(ROWS_MAX)
        .enumerate()
        .map(|(i, r)| {
            let first = i == 0 || result.rows[i - 1].point != r.point;
            let mut cells: Vec<Cell> =
                r.values.iter().map(|v| Cell::num(&if first { v.to_string() } else { String::new() })).collect();
            let m = mode_cells(r);
            cells.push(Cell::text(&m[0]));
            cells.extend(m[1..].iter().map(|c| Cell::num(c)));
            cells
        })
        .collect();
    p.table(&header, &body);
    if result.rows.len() > ROWS_MAX {
        p.p(Html::text(&format!("The first {ROWS_MAX} of {} rows; sweep.csv has them all.", result.rows.len())));
    }
    pivot(&mut p, result, target);
    if !result.failures.is_empty() {
        p.h2("Runs that failed");
        p.list(
            result
                .failures
                .iter()
                .map(|f| Html::text(&format!("{}, mode {}: {}", result.grid.label(f.point), f.mode.name(), f.error))),
        );
    }
    p.h2("Charts");
    figures(
        &mut p,
        &dir,
        &[
            ("sweep_startup".into(), "start p50, p99 and makespan against the first key".into()),
            ("sweep_registry".into(), "registry peak and bytes against the first key".into()),
            ("sweep_heatmap".into(), "the focus metric over both keys".into()),
        ],
    )?;
    p.h2("Files");
    p.list(file_links(
        &dir,
        &["sweep.csv", "sweep.md", "sweep_startup.png", "sweep_registry.png", "sweep_heatmap.png"],
    ));
    scenario_section(&mut p, scenario, None);
    Ok(p.finish(&nav::bar(out_root, &result.scenario, Here::Sweep)))
}

/// The target's verdict: how many points meet it and the cheapest, or the closest miss.
fn target_section(p: &mut Page, result: &SweepResult, t: &Target) {
    p.h2(&format!("Target: {}", t.text()));
    let v = result.judge(t);
    let describe = |i: usize| {
        let r = &result.rows[i];
        let mut parts = vec![format!("{} {}", t.metric.name(), t.metric.show(t.metric.of(r)))];
        if !matches!(t.metric, Metric::RegistryBytes | Metric::RegistryPeakBps) {
            parts.push(format!("registry {}", bytes(r.summary.registry_bytes)));
            parts.push(format!("peak {} Gbit/s", gbps(r.summary.registry_peak_bps as f64)));
        }
        Html::join([Html::strong(&result.grid.label(r.point)), Html::text(&format!(": {}", parts.join(", ")))], "")
    };
    let Some(best) = v.cheapest() else {
        let mut line = vec![Html::text(&format!("Not met: none of {} points meets it.", v.considered))];
        if let Some(c) = v.closest {
            line.extend([Html::text("Closest:"), describe(c)]);
        }
        p.p(Html::join(line, " "));
        return;
    };
    p.p(Html::join(
        [
            Html::text(&format!("Met: {} of {} points meet it. Cheapest:", v.meeting.len(), v.considered)),
            describe(best),
        ],
        " ",
    ));
    p.sub(&format!(
        "cheapest first: least registry bytes of {m}, then lowest {m} registry peak, then fewest seed peers, pods, \
         then slowest node, seed peer and registry links",
        m = t.mode.name()
    ));
    let mut header: Vec<&str> = result.keys();
    header.extend([t.metric.name(), "registry bytes", "registry peak"]);
    let body: Vec<Vec<Cell>> = v
        .meeting
        .iter()
        .take(TARGET_ROWS_MAX)
        .map(|&i| {
            let r = &result.rows[i];
            let mut cells: Vec<Cell> = r.values.iter().map(|v| Cell::num(&v.to_string())).collect();
            cells.push(Cell::num(&t.metric.show(t.metric.of(r))));
            cells.push(Cell::num(&bytes(r.summary.registry_bytes)));
            cells.push(Cell::num(&format!("{} Gbit/s", gbps(r.summary.registry_peak_bps as f64))));
            cells
        })
        .collect();
    p.table(&header, &body);
    if v.meeting.len() > TARGET_ROWS_MAX {
        p.p(Html::text(&format!("The {TARGET_ROWS_MAX} cheapest of {}; sweep.csv has every point.", v.meeting.len())));
    }
}

/// Two keys: the focus mode's start p99, first key down, second across.
fn pivot(p: &mut Page, result: &SweepResult, target: Option<&Target>) {
    let [a, b] = result.grid.dims.as_slice() else { return };
    let mode = result.focus_mode(target);
    p.h2(&format!("{} start p99 by {} (down) and {} (across)", mode.name(), a.key, b.key));
    let corner = format!("{} \\ {}", a.key, b.key);
    let columns: Vec<String> = b.values.iter().map(Num::to_string).collect();
    let mut header = vec![corner.as_str()];
    header.extend(columns.iter().map(String::as_str));
    let body: Vec<Vec<Cell>> = a
        .values
        .iter()
        .enumerate()
        .map(|(i, va)| {
            let mut cells = vec![Cell::num(&va.to_string())];
            cells.extend((0..b.values.len()).map(|j| {
                let point = i * b.values.len() + j;
                Cell::num(&result.row_at(point, mode).map_or("failed".into(), |r| secs(r.summary.startup_p99_s)))
            }));
            cells
        })
        .collect();
    p.table(&header, &body);
}

/// Writes `DIR/<name>/sweep/index.html` and redraws the links of the scenario's other pages.
pub fn write_sweep_page(
    out_root: &Path,
    result: &SweepResult,
    target: Option<&Target>,
    scenario: &ScenarioText,
) -> anyhow::Result<PathBuf> {
    let path = Here::Sweep.file(out_root, &result.scenario);
    let written = write(&path, &sweep_page(out_root, result, target, scenario)?)?;
    nav::refresh(out_root, &result.scenario)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::html::testing::broken_links;
    use crate::scenario::ScenarioFile;
    use crate::sweep::charts::{write_charts, Capacity};
    use crate::sweep::{Overrides, Sweep, Vary};

    const TINY: &str = "name = \"tiny\"\nseed = 5\n[cluster]\npods = 6\n[image]\nreference = \"t/tiny:1\"\nlayer_bytes = [2_000_000, 10_000_000]\n";

    #[test]
    fn the_page_holds_the_grid_the_verdict_and_the_charts() {
        let out = crate::report::tests::scratch("html-sweep");
        let file = ScenarioFile::from_text(Path::new("tiny.toml"), TINY);
        let varies =
            [Vary::parse("cluster.seed_peers=1..2:2").unwrap(), Vary::parse("registry.egress_gbps=1..4:2").unwrap()];
        let sweep = Sweep::plan(&file, &varies, &Overrides::default()).unwrap();
        let result = sweep.run(1, &mut |_| {});
        let target = Target::parse("p2p.startup_p99_s<=1000").unwrap();
        let dir = out.join("tiny").join("sweep");
        std::fs::create_dir_all(&dir).unwrap();
        write_charts(&dir, &result, Some(&target), Capacity::None).unwrap();
        let text = ScenarioText::of(Path::new("tiny.toml"), file.text(), &sweep.base).unwrap();
        let page = write_sweep_page(&out, &result, Some(&target), &text).unwrap();
        assert_eq!(page, dir.join("index.html"));
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("Met: 4 of 4 points meet it. Cheapest:"), "{html}");
        assert!(html.contains("p2p start p99 by cluster.seed_peers (down) and registry.egress_gbps (across)"));
        let p99 = secs(result.rows[1].summary.startup_p99_s);
        assert!(html.contains(&format!("<td class=\"n\">{p99}</td>")), "{p99}");
        assert_eq!(html.matches("<svg").count(), 3, "startup, registry and heatmap inline");
        assert!(html.contains("layer_bytes = [2_000_000, 10_000_000]"), "the file as written");
        assert!(broken_links(&page).is_empty(), "{:?}", broken_links(&page));
        assert_eq!(html, sweep_page(&out, &result, Some(&target), &text).unwrap(), "same bytes again");
        let _ = std::fs::remove_dir_all(&out);
    }
}
