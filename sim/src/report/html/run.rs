//! A run's page, `DIR/<name>/index.html`: the modes table, the bound and the request floor,
//! the two charts inline, the files, the scenario and the configuration the cores ran.

use super::nav::{self, Here};
use super::page::{Cell, Html, Page};
use super::{figures, file_links, scenario_section, write, ScenarioText};
use crate::report::format::{bytes, gbps, secs, thousands, times_image_str};
use crate::report::summary::Summary;
use crate::report::table::{
    churn_rows, group_rows, preheat_lines, workload_rows, CHURN_HEADER, CHURN_NOTE, GROUP_HEADER, WORKLOAD_HEADER,
};
use crate::report::{run_dir, run_subtitle, ChartContext};
use crate::result::RunResult;
use std::path::{Path, PathBuf};

/// Files of a run's directory the page links to, when written.
/// (`policies.*` are reached through the policies page, whose link follows the files on disk.)
const FILES: [&str; 7] = [
    "summary.json",
    "pods.csv",
    "registry.csv",
    "node_groups.csv",
    "config.toml",
    "startup_cdf.png",
    "registry_bandwidth.png",
];

fn shown(s: f64) -> String {
    if s.is_finite() {
        secs(s)
    } else {
        "n/a".into()
    }
}

/// The page's text (its charts are read from `DIR/<name>/`, where the run wrote them).
pub fn run_page(
    out_root: &Path,
    run: &RunResult,
    ctx: &ChartContext,
    scenario: &ScenarioText,
) -> anyhow::Result<String> {
    let dir = run_dir(out_root, &run.scenario)?;
    let summary = Summary::of(run);
    let mut p = Page::new(&format!("Run: {}", run.scenario));
    p.sub(&run_subtitle(run, ctx));
    p.h2("Modes");
    let rows: Vec<Vec<Cell>> = summary
        .modes
        .iter()
        .map(|(name, m)| {
            vec![
                Cell::text(name),
                Cell::num(&thousands(m.pods)),
                Cell::num(&secs(m.startup_p50_s)),
                Cell::num(&secs(m.startup_p99_s)),
                Cell::num(&secs(m.startup_max_s)),
                Cell::num(&secs(m.makespan_s)),
                Cell::num(&bytes(m.registry_bytes)),
                Cell::num(&times_image_str(m.registry_bytes, summary.image_bytes)),
                Cell::num(&format!("{} Gbit/s", gbps(m.registry_peak_bps as f64))),
                Cell::num(&thousands(m.registry_requests)),
            ]
        })
        .collect();
    p.table(
        &[
            "mode",
            "pods",
            "start p50",
            "start p99",
            "start max",
            "makespan",
            "registry bytes",
            "x image",
            "registry peak (1 s)",
            "registry requests",
        ],
        &rows,
    );
    groups_table(&mut p, &summary);
    workloads_table(&mut p, &summary);
    churn_table(&mut p, &summary);
    p.table(
        &["bound", "seconds", "what"],
        &[
            vec![
                Cell::text("lower bound (Kumar & Ross)"),
                Cell::num(&shown(summary.lower_bound_s)),
                Cell::text(
                    "the least time any scheme needs to give every node the whole image over these links (fluid bound)",
                ),
            ],
            vec![
                Cell::text("request floor"),
                Cell::num(&shown(run.request_floor_s)),
                Cell::text("manifests upstream at the registry's QPS, then the image at one node's rate"),
            ],
        ],
    );
    p.h2("Charts");
    figures(
        &mut p,
        &dir,
        &[
            ("startup_cdf".into(), "Share of pods started over time, one curve per mode".into()),
            ("registry_bandwidth".into(), "Registry egress over time, one panel per mode".into()),
        ],
    )?;
    p.h2("Files");
    p.list(file_links(&dir, &FILES));
    scenario_section(&mut p, scenario, Some(&run.config_toml));
    Ok(p.finish(&nav::bar(out_root, &run.scenario, Here::Run)))
}

/// A breakdown table's cells: its first `text_columns` columns are names, the rest figures.
fn cells(rows: Vec<Vec<String>>, text_columns: usize) -> Vec<Vec<Cell>> {
    rows.iter()
        .map(|row| {
            row.iter().enumerate().map(|(i, v)| if i < text_columns { Cell::text(v) } else { Cell::num(v) }).collect()
        })
        .collect()
}

/// Per mode and node group, when the scenario has two groups or more.
fn groups_table(p: &mut Page, summary: &Summary) {
    let rows = cells(group_rows(summary), 2);
    if !rows.is_empty() {
        p.table(&GROUP_HEADER, &rows);
    }
}

/// Per mode and workload, when the scenario declares `[[workload]]` tables.
fn workloads_table(p: &mut Page, summary: &Summary) {
    let rows = cells(workload_rows(summary), 2);
    if !rows.is_empty() {
        p.h2("Workloads");
        p.p(Html::text("Start times are from t = 0, so a workload's include its start offset and, for a rolling update, the pods created later. Bytes are each node's pull of the workload's image; a layer two images share counts for the workload whose pull asked for it first."));
        p.table(&WORKLOAD_HEADER, &rows);
        for line in preheat_lines(summary) {
            p.p(Html::text(&line));
        }
    }
}

/// Per mode, what node churn did, when the scenario declares `[[churn.event]]`.
fn churn_table(p: &mut Page, summary: &Summary) {
    let rows = cells(churn_rows(summary), 1);
    if !rows.is_empty() {
        p.h2("Node churn");
        p.p(Html::text(&format!("{}{}.", CHURN_NOTE[..1].to_uppercase(), &CHURN_NOTE[1..])));
        p.table(&CHURN_HEADER, &rows);
    }
}

/// Writes `DIR/<name>/index.html` and redraws the links of the scenario's other pages.
pub fn write_run_page(
    out_root: &Path,
    run: &RunResult,
    ctx: &ChartContext,
    scenario: &ScenarioText,
) -> anyhow::Result<PathBuf> {
    let path = Here::Run.file(out_root, &run.scenario);
    let written = write(&path, &run_page(out_root, run, ctx, scenario)?)?;
    nav::refresh(out_root, &run.scenario)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;
    use crate::report::html::testing::broken_links;
    use crate::report::write_run_reports;

    #[test]
    fn the_page_holds_the_table_the_bounds_and_the_charts_inline() {
        let out = crate::report::tests::scratch("html-run");
        let mut run = fake_run("nginx-50", 50, 70_000_000, 5);
        run.config_toml = "[scheduler]\nkey = \"<v>\"\n".into();
        let ctx = ChartContext { registry_gbps: Some(10.0), pods: Some(50) };
        let report = write_run_reports(&out, &run, &ctx).unwrap();
        let sc = ScenarioText {
            path: "s.toml".into(),
            file: "name = \"nginx-50\" # <&>\n".into(),
            resolved: "x = 1\n".into(),
        };
        let page = write_run_page(&out, &run, &ctx, &sc).unwrap();
        assert_eq!(page, out.join("nginx-50/index.html"));
        let html = std::fs::read_to_string(&page).unwrap();
        let m = &report.summary.modes["p2p"];
        for want in
            [secs(m.startup_p50_s), secs(m.startup_p99_s), bytes(m.registry_bytes), secs(report.summary.lower_bound_s)]
        {
            assert!(html.contains(&format!(">{want}</td>")), "{want} missing");
        }
        assert!(html.contains("lower bound (Kumar &amp; Ross)") && html.contains("request floor"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(!html.contains("<?xml") && !html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("# &lt;&amp;&gt;") && html.contains("key = &quot;&lt;v&gt;&quot;"));
        assert!(broken_links(&page).is_empty(), "{:?}", broken_links(&page));
        // Same inputs, same bytes.
        assert_eq!(html, run_page(&out, &run, &ctx, &sc).unwrap());
        let _ = std::fs::remove_dir_all(&out);
    }
}
