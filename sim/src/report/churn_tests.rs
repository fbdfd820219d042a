//! Node churn in the reports: `summary.json`, `pods.csv`, the printed table and the run page
//! show it only for a run that has it, and lost pods leave the start percentiles.

use crate::report::csvs::pods_csv;
use crate::report::fixtures::fake_run;
use crate::report::summary::Summary;
use crate::report::table::modes_table;
use crate::result::{ChurnRecord, RunResult};

fn with_churn() -> RunResult {
    let mut run = fake_run("c", 10, 50_000_000, 2);
    for m in &mut run.modes {
        m.churn =
            Some(ChurnRecord { nodes_failed: 2, nodes_left: 1, pods_lost: 3, parent_failures: 17, reschedules: 9 });
        for (i, p) in m.pods.iter_mut().enumerate() {
            p.started_s = 1.0 + i as f64;
            if i >= 7 {
                p.lost = true;
                p.started_s = f64::NAN;
            }
        }
    }
    run
}

#[test]
fn churn_is_reported_only_for_a_run_that_has_it() {
    let plain = fake_run("c", 10, 50_000_000, 2);
    let (summary, csv) = (Summary::of(&plain).to_json(), pods_csv(&plain).unwrap());
    assert!(!summary.contains("churn") && !csv.contains("lost"), "{summary}\n{csv}");
    assert!(!modes_table(&Summary::of(&plain), 1.0).contains("node churn"));

    let run = with_churn();
    let s = Summary::of(&run);
    let json = s.to_json();
    assert!(
        json.contains(
            "\"churn\": {\n        \"nodes_failed\": 2,\n        \"nodes_left\": 1,\n        \"pods_lost\": 3,\n        \
             \"parent_failures\": 17,\n        \"reschedules\": 9\n      }"
        ),
        "{json}"
    );
    assert_eq!(Summary::from_json(&json).unwrap(), s, "reads back");
    // Lost pods are not "never started": the percentiles are of the 7 that ran.
    let p2p = &s.modes["p2p"];
    assert_eq!((p2p.pods, p2p.startup_p50_s, p2p.startup_max_s), (10, 4.0, 7.0));

    let csv = pods_csv(&run).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].ends_with(",bytes_from_peers,lost"), "{}", lines[0]);
    assert!(lines[1].ends_with(",0") && lines[8].ends_with(",1"), "{csv}");
    let started = lines[0].split(',').position(|c| c == "started_s").unwrap();
    assert_eq!(lines[8].split(',').nth(started), Some(""), "a lost pod has no start time");

    let table = modes_table(&s, 1.0);
    assert!(
        table.contains("node churn (") && table.contains("\np2p                  2           1          3"),
        "{table}"
    );
}

#[test]
fn the_run_page_has_a_churn_section_only_with_churn() {
    use crate::report::html::run::run_page;
    use crate::report::html::ScenarioText;
    use crate::report::{write_run_reports, ChartContext};
    let out = crate::report::tests::scratch("html-churn");
    let ctx = ChartContext { registry_gbps: Some(10.0), pods: Some(10) };
    let sc = ScenarioText { path: "c.toml".into(), file: "name = \"c\"\n".into(), resolved: "x = 1\n".into() };
    for (run, shown) in [(fake_run("c", 10, 50_000_000, 2), false), (with_churn(), true)] {
        write_run_reports(&out, &run, &ctx).unwrap();
        let html = run_page(&out, &run, &ctx, &sc).unwrap();
        assert_eq!(html.contains("<h2>Node churn</h2>"), shown);
        if shown {
            assert!(html.contains(">parent failures</th>") && html.contains(">17</td>"), "{html}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
