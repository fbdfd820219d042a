//! `pods.csv`, `registry.csv` and `node_groups.csv`: the raw per-pod and per-bucket data behind the charts.
//! Floats have `summary::DECIMALS` fixed decimals; a time that did not happen (NaN, e.g.
//! `pull_done_s` of p2p-lazy without prefetch) is an empty field.

use super::format::csv_f;
use super::summary::bucket_gbps;
use crate::result::{RunResult, REGISTRY_BUCKET_NS};

pub const PODS_HEADER: [&str; 12] = [
    "mode",
    "pod",
    "node",
    "scheduled_s",
    "pull_start_s",
    "image_ready_s",
    "pull_done_s",
    "unpacked_s",
    "started_s",
    "bytes_from_registry",
    "bytes_from_seed_peers",
    "bytes_from_peers",
];

pub const REGISTRY_HEADER: [&str; 4] = ["mode", "t_s", "egress_bytes", "egress_gbps"];

/// The text a CSV writer over a buffer produced (every CSV report ends here).
pub(crate) fn finish(w: csv::Writer<Vec<u8>>) -> anyhow::Result<String> {
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    Ok(String::from_utf8(bytes)?)
}

/// `pods.csv`: one row per pod and mode, modes in run order, pods by id. With
/// `[[workload]]` tables a `workload` column (its name) follows `node`; with
/// `[[churn.event]]` a last column `lost` says 1 for a pod whose node went before it started
/// (its `started_s` is empty); without, the file is as before either existed.
pub fn pods_csv(run: &RunResult) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let with_workloads = !run.workloads.is_empty();
    let with_churn = run.modes.iter().any(|m| m.churn.is_some());
    let mut header: Vec<&str> = PODS_HEADER.to_vec();
    if with_workloads {
        header.insert(3, "workload");
    }
    if with_churn {
        header.push("lost");
    }
    w.write_record(&header)?;
    for m in &run.modes {
        let mut pods: Vec<_> = m.pods.iter().collect();
        pods.sort_by_key(|p| p.pod);
        for p in pods {
            let mut row = vec![m.mode.name().to_string(), p.pod.to_string(), p.node.to_string()];
            if with_workloads {
                row.push(run.workloads.get(p.workload as usize).cloned().unwrap_or_default());
            }
            row.extend([
                csv_f(p.scheduled_s),
                csv_f(p.pull_start_s),
                csv_f(p.image_ready_s),
                csv_f(p.pull_done_s),
                csv_f(p.unpacked_s),
                csv_f(p.started_s),
                p.bytes_from_registry.to_string(),
                p.bytes_from_seed_peers.to_string(),
                p.bytes_from_peers.to_string(),
            ]);
            if with_churn {
                row.push(u8::from(p.lost).to_string());
            }
            w.write_record(&row)?;
        }
    }
    finish(w)
}

pub const NODE_GROUPS_HEADER: [&str; 3] = ["node", "node_group", "zone"];

/// `node_groups.csv`, for a scenario with `[[cluster.node_groups]]` (None without): one
/// row per node, its group and zone, to join with `pods.csv` on `node`. A file of its own
/// keeps `pods.csv` byte-identical for scenarios without groups.
pub fn node_groups_csv(run: &RunResult) -> anyhow::Result<Option<String>> {
    if run.node_groups.is_empty() {
        return Ok(None);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(NODE_GROUPS_HEADER)?;
    for g in &run.node_groups {
        for node in g.first_node..g.first_node + g.nodes {
            w.write_record([node.to_string(), g.name.clone(), g.zone.clone()])?;
        }
    }
    finish(w).map(Some)
}

pub const PIECES_HEADER: [&str; 9] =
    ["mode", "receiver", "blob", "piece", "source", "requested_s", "ended_s", "bytes", "end"];

/// `pieces.csv`, only for a traced run (`RunOptions::trace_pieces`): one row per piece
/// transfer and mode, in the order they ended. `receiver` and `source` are `nodeN` (N as in
/// `pods.csv`'s `node`), `seedN` or `registry`; `end` is `stored`, `cancelled` or `busy`.
pub fn pieces_csv(run: &RunResult) -> anyhow::Result<Option<String>> {
    if run.modes.iter().all(|m| m.piece_trace.is_empty()) {
        return Ok(None);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(PIECES_HEADER)?;
    for m in &run.modes {
        for t in &m.piece_trace {
            w.write_record([
                m.mode.name().to_string(),
                t.receiver.to_string(),
                t.blob.to_string(),
                t.piece.to_string(),
                t.source.to_string(),
                csv_f(t.requested_s),
                csv_f(t.ended_s),
                t.bytes.to_string(),
                t.end.name().to_string(),
            ])?;
        }
    }
    finish(w).map(Some)
}

/// `registry.csv`: one row per 100 ms bucket and mode; `t_s` is the bucket's start.
pub fn registry_csv(run: &RunResult) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(REGISTRY_HEADER)?;
    for m in &run.modes {
        for (i, &b) in m.registry_egress_bytes_per_bucket.iter().enumerate() {
            // Integer nanoseconds, then seconds: no accumulated float error.
            let t_s = (i as u64 * REGISTRY_BUCKET_NS) as f64 / 1e9;
            w.write_record([m.mode.name().to_string(), csv_f(t_s), b.to_string(), csv_f(bucket_gbps(b))])?;
        }
    }
    finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;

    #[test]
    fn pods_csv_rows_and_columns() {
        let run = fake_run("nginx-50", 8, 50_000_000, 3);
        let text = pods_csv(&run).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], PODS_HEADER.join(","));
        assert_eq!(lines.len(), 1 + 3 * 8);
        assert!(lines[1].starts_with("oci,0,0,"));
        assert!(lines[9].starts_with("p2p,0,0,"));
        assert!(lines[17].starts_with("p2p-lazy,0,0,"));
        for l in &lines[1..] {
            assert_eq!(l.split(',').count(), 12, "{l}");
        }
        assert_eq!(text, pods_csv(&run.clone()).unwrap());
    }

    #[test]
    fn registry_csv_one_row_per_bucket() {
        let run = fake_run("nginx-50", 8, 50_000_000, 3);
        let text = registry_csv(&run).unwrap();
        let n: usize = run.modes.iter().map(|m| m.registry_egress_bytes_per_bucket.len()).sum();
        assert_eq!(text.lines().count(), 1 + n);
        let row3 = text.lines().nth(4).unwrap();
        assert!(row3.starts_with("oci,0.300000,"), "{row3}");
        let cols: Vec<&str> = row3.split(',').collect();
        let bytes: f64 = cols[2].parse().unwrap();
        let gbps: f64 = cols[3].parse().unwrap();
        assert!((bytes * 80.0 / 1e9 - gbps).abs() < 1e-6);
    }
}
