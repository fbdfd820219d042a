//! The matrix page, `DIR/matrix/index.html`: every scenario x mode in one table (each
//! scenario linking to its run page), then each family's charts inline.

use super::nav::{self, Here};
use super::page::{Cell, Html, Page};
use super::{figures, file_links, write};
use crate::report::format::{bytes, gbps, secs, thousands};
use crate::report::matrix::{rows, MatrixEntry};
use crate::report::table::MODE_COLUMNS;
use std::path::{Path, PathBuf};

/// The page's text; charts are read from `DIR/matrix/`.
pub fn matrix_page(out_root: &Path, entries: &[MatrixEntry]) -> anyhow::Result<String> {
    let dir = out_root.join("matrix");
    let rows = rows(entries);
    let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    let mut p = Page::new(&format!("Matrix: {} scenarios", scenarios.len()));
    p.sub("one row per scenario and mode; a scenario's name links to its run page");
    let body: Vec<Vec<Cell>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let first = i == 0 || rows[i - 1].scenario != r.scenario;
            let name = if !first {
                Html::default()
            } else if Here::Run.file(out_root, &r.scenario).is_file() {
                Html::link(&Here::Matrix.href_to(Here::Run, &r.scenario), &r.scenario)
            } else {
                Html::text(&r.scenario)
            };
            let fact = |s: String| if first { Cell::num(&s) } else { Cell::num("") };
            vec![
                Cell::html(name, false),
                fact(thousands(u64::from(r.pods))),
                fact(r.policy.clone()),
                fact(r.seed.to_string()),
                fact(bytes(r.image_bytes)),
                Cell::text(&r.mode),
                Cell::num(&secs(r.startup_p50_s)),
                Cell::num(&secs(r.startup_p99_s)),
                Cell::num(&secs(r.startup_max_s)),
                Cell::num(&secs(r.makespan_s)),
                fact(secs(r.lower_bound_s)),
                Cell::num(&bytes(r.registry_bytes)),
                Cell::num(&format!("{} Gbit/s", gbps(r.registry_peak_bps as f64))),
                Cell::num(&thousands(r.registry_requests)),
            ]
        })
        .collect();
    let mut header = vec!["scenario", "pods", "policy", "seed", "image"];
    header.extend(MODE_COLUMNS);
    p.table(&header, &body);
    let mut families: Vec<&str> = rows.iter().map(|r| r.family.as_str()).collect();
    families.dedup();
    for fam in families {
        p.h2(&format!("Family {fam}"));
        let charts: Vec<(String, String)> = [
            ("startup", "pod start time: bar p50, whisker p99"),
            ("registry_peak", "registry egress in the busiest 1 s window"),
            ("registry_traffic", "bytes the registry served"),
        ]
        .iter()
        .map(|(stem, what)| (format!("{fam}_{stem}"), format!("{fam}: {what}")))
        .collect();
        figures(&mut p, &dir, &charts)?;
    }
    p.h2("Files");
    p.list(file_links(&dir, &["matrix.csv", "matrix.json"]));
    Ok(p.finish(&nav::bar(out_root, "", Here::Matrix)))
}

/// Writes `DIR/matrix/index.html`, then redraws the links of every listed scenario's pages
/// (they now point back to the matrix).
pub fn write_matrix_page(out_root: &Path, entries: &[MatrixEntry]) -> anyhow::Result<PathBuf> {
    let path = Here::Matrix.file(out_root, "");
    let written = write(&path, &matrix_page(out_root, entries)?)?;
    for e in entries {
        nav::refresh(out_root, &e.scenario)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;
    use crate::report::html::run::write_run_page;
    use crate::report::html::testing::broken_links;
    use crate::report::html::ScenarioText;
    use crate::report::matrix::write_matrix;
    use crate::report::{write_run_reports, ChartContext};

    #[test]
    fn the_matrix_links_to_each_run_and_each_run_back() {
        let out = crate::report::tests::scratch("html-matrix");
        let mut entries = vec![];
        for (name, pods) in [("nginx-50", 50u32), ("nginx-100", 100)] {
            let run = fake_run(name, pods, 70_000_000, 1);
            let ctx = ChartContext { registry_gbps: Some(10.0), pods: Some(pods) };
            write_run_reports(&out, &run, &ctx).unwrap();
            write_run_page(&out, &run, &ctx, &ScenarioText::default()).unwrap();
            assert!(!std::fs::read_to_string(out.join(name).join("index.html")).unwrap().contains("matrix/index.html"));
            entries.push(MatrixEntry::new(&run, pods, Some(10.0)));
        }
        write_matrix(&out.join("matrix"), &entries).unwrap();
        let page = write_matrix_page(&out, &entries).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("<a href=\"../nginx-50/index.html\">nginx-50</a>"), "{html}");
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(broken_links(&page).is_empty(), "{:?}", broken_links(&page));
        for name in ["nginx-50", "nginx-100"] {
            let run_page = out.join(name).join("index.html");
            let text = std::fs::read_to_string(&run_page).unwrap();
            assert!(text.contains("<a href=\"../matrix/index.html\">matrix</a>"), "{name}");
            assert!(broken_links(&run_page).is_empty());
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
