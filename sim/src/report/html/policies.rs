//! The policy comparison's page, `DIR/<name>/policies.html` (beside the run's `index.html`
//! in the same directory): per p2p mode, every metric under each scheduler policy, the
//! best of a row in bold.

use super::nav::{self, Here};
use super::page::{Cell, Html, Page};
use super::{file_links, scenario_section, write, ScenarioText};
use crate::report::policies::{shown_cells, PolicyTable};
use crate::report::run_dir;
use crate::scenario::Mode;
use std::path::{Path, PathBuf};

pub fn policies_page(out_root: &Path, table: &PolicyTable, scenario: &ScenarioText) -> anyhow::Result<String> {
    let dir = run_dir(out_root, &table.scenario)?;
    let mut p = Page::new(&format!("Scheduler policies: {}", table.scenario));
    p.sub(&format!(
        "seed {} \u{b7} one run per policy \u{b7} lower is better in every row; the best of a row in bold",
        table.seed
    ));
    let mut modes: Vec<Mode> = table.rows.iter().map(|r| r.0).collect();
    modes.dedup();
    let mut header = vec!["metric"];
    header.extend(table.policies.iter().map(String::as_str));
    for mode in modes {
        p.h2(&format!("mode {}", mode.name()));
        let body: Vec<Vec<Cell>> = table
            .rows
            .iter()
            .filter(|r| r.0 == mode)
            .map(|(_, _, label, decimals, values)| {
                let mut cells = vec![Cell::text(label)];
                cells.extend(
                    shown_cells(values, *decimals)
                        .into_iter()
                        .map(|(v, best)| Cell::html(if best { Html::strong(&v) } else { Html::text(&v) }, true)),
                );
                cells
            })
            .collect();
        p.table(&header, &body);
    }
    p.h2("Files");
    p.list(file_links(&dir, &["policies.csv", "policies.md"]));
    scenario_section(&mut p, scenario, None);
    Ok(p.finish(&nav::bar(out_root, &table.scenario, Here::Policies)))
}

/// Writes `DIR/<name>/policies.html` and redraws the links of the scenario's other pages.
pub fn write_policies_page(out_root: &Path, table: &PolicyTable, scenario: &ScenarioText) -> anyhow::Result<PathBuf> {
    let path = Here::Policies.file(out_root, &table.scenario);
    let written = write(&path, &policies_page(out_root, table, scenario)?)?;
    nav::refresh(out_root, &table.scenario)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;
    use crate::report::html::run::write_run_page;
    use crate::report::html::testing::broken_links;
    use crate::report::{write_run_reports, ChartContext};

    #[test]
    fn policies_and_run_pages_link_both_ways() {
        let out = crate::report::tests::scratch("html-policies");
        let mut runs = vec![];
        for (i, pol) in ["default", "kraken"].iter().enumerate() {
            let mut r = fake_run("a<b", 20, 70_000_000, 1);
            r.policy = pol.to_string();
            for pod in &mut r.modes[1].pods {
                pod.started_s += i as f64;
            }
            runs.push((pol.to_string(), r));
        }
        let table = PolicyTable::new(&runs);
        let page = write_policies_page(&out, &table, &ScenarioText::default()).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("Scheduler policies: a&lt;b") && html.contains("<th class=\"n\">kraken</th>"), "{html}");
        assert!(html.contains("<strong>"), "the best of a row in bold");
        assert!(!html.contains("index.html"), "no run page yet: no link to it");
        let ctx = ChartContext { registry_gbps: Some(10.0), pods: Some(20) };
        write_run_reports(&out, &runs[0].1, &ctx).unwrap();
        let run_page = write_run_page(&out, &runs[0].1, &ctx, &ScenarioText::default()).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("<a href=\"index.html\">run</a>"), "the run page was written: linked now");
        assert!(std::fs::read_to_string(&run_page).unwrap().contains("<a href=\"policies.html\">policies</a>"));
        assert!(broken_links(&page).is_empty() && broken_links(&run_page).is_empty());
        let _ = std::fs::remove_dir_all(&out);
    }
}
