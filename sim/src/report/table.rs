//! The terminal table comparing the modes of one run.

use super::format::{bytes, gbps, secs, text_table, thousands, times_image_str};
use super::summary::{GroupSummary, ModeSummary, Summary};
use std::collections::BTreeMap;

/// The mode table and the lines of the two bounds, ready to print.
pub fn modes_table(summary: &Summary, request_floor_s: f64) -> String {
    let header: Vec<String> = [
        "mode",
        "pods",
        "start p50",
        "start p99",
        "start max",
        "makespan",
        "registry bytes",
        "x image",
        "registry peak",
        "registry reqs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = summary
        .modes
        .iter()
        .map(|(name, m)| {
            vec![
                name.clone(),
                m.pods.to_string(),
                secs(m.startup_p50_s),
                secs(m.startup_p99_s),
                secs(m.startup_max_s),
                secs(m.makespan_s),
                bytes(m.registry_bytes),
                times_image_str(m.registry_bytes, summary.image_bytes),
                format!("{} Gbit/s", gbps(m.registry_peak_bps as f64)),
                thousands(m.registry_requests),
            ]
        })
        .collect();
    let mut out = format!(
        "{}  policy {}  seed {}  image {}\n",
        summary.scenario,
        summary.policy,
        summary.seed,
        bytes(summary.image_bytes)
    );
    out.push_str(&text_table(&header, &rows));
    out.push_str(&groups_table(summary));
    out.push_str(&workloads_table(summary));
    out.push_str(&churn_table(summary));
    let shown = |s: f64| if s.is_finite() { secs(s) } else { "n/a".to_string() };
    out.push_str(&format!("lower bound (Kumar & Ross) = {}\n", shown(summary.lower_bound_s)));
    out.push_str(&format!(
        "request floor (manifests upstream at the registry's QPS, then the image at one node's rate) = {}\n",
        shown(request_floor_s)
    ));
    out
}

/// A mode's columns where runs are listed side by side (matrix and sweep tables, text and
/// HTML): after the columns that tell the runs apart.
pub const MODE_COLUMNS: [&str; 9] = [
    "mode",
    "start p50",
    "start p99",
    "start max",
    "makespan",
    "lower bound",
    "registry bytes",
    "registry peak",
    "registry reqs",
];

/// The columns of the per-group table (`group_rows`), shared by the text and HTML reports.
pub const GROUP_HEADER: [&str; 9] =
    ["mode", "node group", "pods", "start p50", "start p99", "start max", "from registry", "from seeds", "from peers"];

/// Per mode and node group: pods, start times and bytes by source, as printed; no rows with
/// fewer than two groups (one group is the modes table).
pub fn group_rows(summary: &Summary) -> Vec<Vec<String>> {
    if summary.modes.values().all(|m| m.node_groups.len() < 2) {
        return Vec::new();
    }
    breakdown_rows(summary, |m| &m.node_groups)
}

/// Per mode and name, one part of a mode's pods (a node group or a workload), as printed.
fn breakdown_rows(
    summary: &Summary,
    parts: impl Fn(&ModeSummary) -> &BTreeMap<String, GroupSummary> + Copy,
) -> Vec<Vec<String>> {
    summary
        .modes
        .iter()
        .flat_map(|(mode, m)| {
            parts(m).iter().map(move |(name, g)| {
                vec![
                    mode.clone(),
                    name.clone(),
                    thousands(g.pods),
                    secs(g.startup_p50_s),
                    secs(g.startup_p99_s),
                    secs(g.startup_max_s),
                    bytes(g.bytes_from_registry),
                    bytes(g.bytes_from_seed_peers),
                    bytes(g.bytes_from_peers),
                ]
            })
        })
        .collect()
}

/// The columns of the per-workload table (`workload_rows`), shared by the text and HTML reports.
pub const WORKLOAD_HEADER: [&str; 9] =
    ["mode", "workload", "pods", "start p50", "start p99", "start max", "from registry", "from seeds", "from peers"];

/// Per mode and workload, as printed: only for a scenario with `[[workload]]` tables.
pub fn workload_rows(summary: &Summary) -> Vec<Vec<String>> {
    breakdown_rows(summary, |m| &m.workloads)
}

/// The per-workload table as text; empty without workloads.
fn workloads_table(summary: &Summary) -> String {
    let rows = workload_rows(summary);
    if rows.is_empty() {
        return String::new();
    }
    let header: Vec<String> = WORKLOAD_HEADER.iter().map(|s| s.to_string()).collect();
    let mut text = format!("per workload (start times from t = 0; bytes of each node's pull, a shared layer on the workload that asked first):\n{}", text_table(&header, &rows));
    for line in preheat_lines(summary) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// The preheat jobs, one line each; empty without any.
pub fn preheat_lines(summary: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    for (mode, m) in &summary.modes {
        for p in &m.preheats {
            let done = if p.done_s.is_finite() {
                format!("every blob on the seed at {}", secs(p.done_s))
            } else {
                "not done when the run ended".into()
            };
            out.push(format!(
                "{mode}: preheat of {} on seed peer {}: ordered at {}, {done}",
                p.image,
                p.seed_peer,
                secs(p.ordered_s)
            ));
        }
    }
    out
}

/// The columns of the churn table (`churn_rows`), shared by the text and HTML reports.
pub const CHURN_HEADER: [&str; 6] =
    ["mode", "nodes failed", "nodes left", "pods lost", "parent failures", "reschedules"];

/// Per mode, what node churn did: only for a scenario with `[[churn.event]]`.
pub fn churn_rows(summary: &Summary) -> Vec<Vec<String>> {
    summary
        .modes
        .iter()
        .filter_map(|(mode, m)| {
            let c = m.churn.as_ref()?;
            Some(vec![
                mode.clone(),
                thousands(c.nodes_failed.into()),
                thousands(c.nodes_left.into()),
                thousands(c.pods_lost),
                thousands(c.parent_failures),
                thousands(c.reschedules),
            ])
        })
        .collect()
}

/// What the churn table's figures are, in one sentence.
pub const CHURN_NOTE: &str = "nodes failed crashed without a word; nodes left told the scheduler (LeaveHost); pods lost had not started when their node went, and start times leave them out; parent failures are the times a download found a parent gone (a transfer broken, a connection refused, a piece map cut); reschedules are every request for new parents, churn or not";

/// The churn table as text; empty without churn.
fn churn_table(summary: &Summary) -> String {
    let rows = churn_rows(summary);
    if rows.is_empty() {
        return String::new();
    }
    let header: Vec<String> = CHURN_HEADER.iter().map(|s| s.to_string()).collect();
    format!(
        "node churn (pods lost: not started when their node went; start times leave them out):\n{}",
        text_table(&header, &rows)
    )
}

/// The per-group table as text; empty with fewer than two groups.
fn groups_table(summary: &Summary) -> String {
    let rows = group_rows(summary);
    if rows.is_empty() {
        return String::new();
    }
    let header: Vec<String> = GROUP_HEADER.iter().map(|s| s.to_string()).collect();
    format!("per node group:\n{}", text_table(&header, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;

    #[test]
    fn table_has_a_row_per_mode_and_the_lower_bound() {
        let run = fake_run("tensorflow-50", 50, 1_200_000_000, 1);
        let t = modes_table(&Summary::of(&run), run.request_floor_s);
        assert!(t.contains("\noci "), "{t}");
        assert!(t.contains("\np2p "), "{t}");
        assert!(t.contains("\np2p-lazy "), "{t}");
        assert!(t.contains("50.00x"), "{t}");
        assert!(t.contains("lower bound (Kumar & Ross) = "), "{t}");
        assert!(t.contains("request floor (manifests upstream"), "{t}");
    }

    #[test]
    fn groups_get_a_section_only_when_there_are_two_or_more() {
        let group = |name: &str, first_node: u32, nodes: u32| crate::result::GroupNodes {
            name: name.into(),
            first_node,
            nodes,
            zone: String::new(),
        };
        let mut run = fake_run("mixed", 8, 1_000_000, 1);
        assert!(!modes_table(&Summary::of(&run), 1.0).contains("per node group"));
        run.node_groups = vec![group("all", 0, 8)];
        assert!(!modes_table(&Summary::of(&run), 1.0).contains("per node group"));
        run.node_groups = vec![group("fast", 0, 6), group("slow", 6, 2)];
        let summary = Summary::of(&run);
        let t = modes_table(&summary, 1.0);
        assert!(t.contains("per node group:") && t.contains("\np2p             slow     2 "), "{t}");
        let oci = &summary.modes["oci"].node_groups;
        assert_eq!((oci["fast"].pods, oci["slow"].pods), (6, 2));
        assert_eq!(oci["slow"].bytes_from_registry, 2 * 1_000_000);
    }
}
