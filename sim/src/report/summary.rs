//! The headline metrics of a run (`summary.json`), derived from a `RunResult`.
//!
//! Everything here is a pure function of the result: no wall-clock figure enters a summary,
//! floats are rounded to `DECIMALS` places and keys have a fixed order, so the same result
//! always gives a byte-identical file.

use crate::result::{GroupNodes, ModeResult, RunResult, REGISTRY_BUCKET_NS};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Decimal places kept for every float written to `summary.json` and the CSVs.
pub const DECIMALS: i32 = 6;

/// Length of the sliding window `registry_peak_bps` is measured over.
pub const PEAK_WINDOW_NS: u64 = 1_000_000_000;

/// Rounds to `DECIMALS` places; non-finite values pass through (they serialize as null).
pub fn round_fixed(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(DECIMALS);
    let r = (x * scale).round() / scale;
    // Never write "-0.0".
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest value such that at least
/// `pct` percent of the values are <= it. `pct` in 1..=100; NaN for an empty slice.
pub fn nearest_rank(sorted: &[f64], pct: u32) -> f64 {
    assert!((1..=100).contains(&pct), "percentile out of range: {pct}");
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    // rank = ceil(pct/100 * n), computed in integers so it is exact.
    let rank = (pct as usize * n).div_ceil(100).clamp(1, n);
    sorted[rank - 1]
}

/// Pod start times of one mode, ascending. Pods that never started (non-finite
/// `started_s`, e.g. a mode stopped by its time limit) sort last; pods lost with their node
/// (`[[churn.event]]`) are left out.
pub fn sorted_start_times(mode: &ModeResult) -> Vec<f64> {
    start_times(mode.pods.iter())
}

fn start_times<'a>(pods: impl Iterator<Item = &'a crate::result::PodRecord>) -> Vec<f64> {
    let mut v: Vec<f64> =
        pods.filter(|p| !p.lost).map(|p| if p.started_s.is_finite() { p.started_s } else { f64::INFINITY }).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Number of 100 ms buckets in the peak window (10).
pub fn peak_window_buckets() -> usize {
    (PEAK_WINDOW_NS / REGISTRY_BUCKET_NS).max(1) as usize
}

/// Largest byte count the registry sent in any `PEAK_WINDOW_NS` window of consecutive
/// buckets. A series shorter than the window counts as one window (the registry sends
/// nothing after the series ends).
pub fn peak_window_bytes(buckets: &[u64]) -> u64 {
    let w = peak_window_buckets();
    if buckets.len() <= w {
        return buckets.iter().sum();
    }
    let mut sum: u64 = buckets[..w].iter().sum();
    let mut best = sum;
    for i in w..buckets.len() {
        sum = sum + buckets[i] - buckets[i - w];
        best = best.max(sum);
    }
    best
}

/// Peak registry egress in bit/s: the busiest 1 s window's bytes * 8 / 1 s.
pub fn registry_peak_bps(buckets: &[u64]) -> u64 {
    let bytes = peak_window_bytes(buckets) as u128;
    (bytes * 8 * 1_000_000_000 / PEAK_WINDOW_NS as u128) as u64
}

/// Gbit/s of one 100 ms bucket.
pub fn bucket_gbps(bytes: u64) -> f64 {
    bytes as f64 * 8.0 / (REGISTRY_BUCKET_NS as f64 / 1e9) / 1e9
}

/// One mode's entry in `summary.json`. Field order is the file's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSummary {
    pub pods: u64,
    #[serde(deserialize_with = "nullable_f64")]
    pub startup_p50_s: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub startup_p99_s: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub startup_max_s: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub makespan_s: f64,
    pub registry_bytes: u64,
    pub registry_peak_bps: u64,
    pub registry_requests: u64,
    /// Per node group, by name; only for a scenario that declares `[[cluster.node_groups]]`
    /// (a file without groups gives the same summary as before groups existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_groups: BTreeMap<String, GroupSummary>,
    /// Per workload, by name; only for a scenario that declares `[[workload]]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workloads: BTreeMap<String, GroupSummary>,
    /// Preheat jobs, in image order; only for a scenario whose workloads preheat (p2p modes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preheats: Vec<PreheatSummary>,
    /// What node churn did; only for a scenario with `[[churn.event]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnSummary>,
}

/// Node churn in one mode (`[[churn.event]]`): nodes that crashed and that left, pods lost
/// with them, parent failures the downloads saw and the Reschedule requests they sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnSummary {
    pub nodes_failed: u32,
    pub nodes_left: u32,
    pub pods_lost: u64,
    pub parent_failures: u64,
    pub reschedules: u64,
}

/// One preheat job in one mode: when it was ordered and when the seed held every blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreheatSummary {
    pub image: String,
    pub seed_peer: u32,
    pub ordered_s: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub done_s: f64,
}

/// One node group's (or workload's) pods in one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSummary {
    pub pods: u64,
    #[serde(deserialize_with = "nullable_f64")]
    pub startup_p50_s: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub startup_p99_s: f64,
    #[serde(deserialize_with = "nullable_f64")]
    pub startup_max_s: f64,
    /// Bytes the group's nodes received, by source.
    pub bytes_from_registry: u64,
    pub bytes_from_seed_peers: u64,
    pub bytes_from_peers: u64,
}

impl GroupSummary {
    pub fn of(mode: &ModeResult, group: &GroupNodes) -> GroupSummary {
        GroupSummary::of_pods(mode.pods.iter().filter(|p| group.holds(p.node)).collect())
    }

    /// Of the pods of workload `index` (`RunResult::workloads`).
    pub fn of_workload(mode: &ModeResult, index: usize) -> GroupSummary {
        GroupSummary::of_pods(mode.pods.iter().filter(|p| p.workload as usize == index).collect())
    }

    fn of_pods(pods: Vec<&crate::result::PodRecord>) -> GroupSummary {
        let starts = start_times(pods.iter().copied());
        GroupSummary {
            pods: pods.len() as u64,
            startup_p50_s: round_fixed(nearest_rank(&starts, 50)),
            startup_p99_s: round_fixed(nearest_rank(&starts, 99)),
            startup_max_s: round_fixed(nearest_rank(&starts, 100)),
            bytes_from_registry: pods.iter().map(|p| p.bytes_from_registry).sum(),
            bytes_from_seed_peers: pods.iter().map(|p| p.bytes_from_seed_peers).sum(),
            bytes_from_peers: pods.iter().map(|p| p.bytes_from_peers).sum(),
        }
    }
}

impl ModeSummary {
    pub fn of(mode: &ModeResult) -> ModeSummary {
        let starts = sorted_start_times(mode);
        ModeSummary {
            pods: mode.pods.len() as u64,
            startup_p50_s: round_fixed(nearest_rank(&starts, 50)),
            startup_p99_s: round_fixed(nearest_rank(&starts, 99)),
            startup_max_s: round_fixed(nearest_rank(&starts, 100)),
            makespan_s: round_fixed(mode.makespan_s),
            registry_bytes: mode.registry_bytes,
            registry_peak_bps: registry_peak_bps(&mode.registry_egress_bytes_per_bucket),
            registry_requests: mode.registry_requests,
            node_groups: BTreeMap::new(),
            workloads: BTreeMap::new(),
            preheats: mode
                .preheats
                .iter()
                .map(|p| PreheatSummary {
                    image: p.image.clone(),
                    seed_peer: p.seed_peer,
                    ordered_s: round_fixed(p.ordered_s),
                    done_s: round_fixed(p.done_s),
                })
                .collect(),
            churn: mode.churn.as_ref().map(|c| ChurnSummary {
                nodes_failed: c.nodes_failed,
                nodes_left: c.nodes_left,
                pods_lost: c.pods_lost,
                parent_failures: c.parent_failures,
                reschedules: c.reschedules,
            }),
        }
    }

    /// `of`, with the run's node groups (none: as `of`).
    pub fn with_groups(mode: &ModeResult, groups: &[GroupNodes]) -> ModeSummary {
        let mut m = ModeSummary::of(mode);
        m.node_groups = groups.iter().map(|g| (g.name.clone(), GroupSummary::of(mode, g))).collect();
        m
    }
}

/// `summary.json`. Modes are keyed by name ("oci", "p2p", "p2p-lazy": also their sort
/// order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub policy: String,
    pub image_bytes: u64,
    #[serde(deserialize_with = "nullable_f64")]
    pub lower_bound_s: f64,
    pub modes: BTreeMap<String, ModeSummary>,
}

impl Summary {
    pub fn of(run: &RunResult) -> Summary {
        Summary {
            scenario: run.scenario.clone(),
            seed: run.seed,
            policy: run.policy.clone(),
            image_bytes: run.image_bytes,
            lower_bound_s: round_fixed(run.lower_bound_s),
            modes: run
                .modes
                .iter()
                .map(|m| {
                    let mut s = ModeSummary::with_groups(m, &run.node_groups);
                    s.workloads = run
                        .workloads
                        .iter()
                        .enumerate()
                        .map(|(i, w)| (w.clone(), GroupSummary::of_workload(m, i)))
                        .collect();
                    (m.mode.name().to_string(), s)
                })
                .collect(),
        }
    }

    /// The file's exact text (pretty JSON, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("summary serializes");
        s.push('\n');
        s
    }

    pub fn from_json(text: &str) -> Result<Summary, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// JSON has no NaN/infinity: serde_json writes them as null. Read null back as NaN
/// ("never happened", e.g. a pod that did not start before the time limit).
fn nullable_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{fake_mode, fake_run};
    use crate::scenario::Mode;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), 50.0);
        assert_eq!(nearest_rank(&v, 99), 99.0);
        assert_eq!(nearest_rank(&v, 100), 100.0);
        let v = [1.0, 2.0, 3.0];
        assert_eq!(nearest_rank(&v, 50), 2.0);
        assert_eq!(nearest_rank(&v, 99), 3.0);
        assert_eq!(nearest_rank(&[7.0], 1), 7.0);
        assert!(nearest_rank(&[], 50).is_nan());
        // 8 pods: p50 = 4th, p99 = 8th.
        let v: Vec<f64> = (10..18).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), 13.0);
        assert_eq!(nearest_rank(&v, 99), 17.0);
    }

    #[test]
    fn startup_percentiles_come_from_started_s() {
        let mut m = fake_mode(Mode::P2p, 10, 1_000_000, 3);
        // Shuffle-free, known values: started_s = 10, 9, ..., 1.
        for (i, p) in m.pods.iter_mut().enumerate() {
            p.started_s = 10.0 - i as f64;
            p.image_ready_s = 0.5;
        }
        let s = ModeSummary::of(&m);
        assert_eq!(s.pods, 10);
        assert_eq!(s.startup_p50_s, 5.0);
        assert_eq!(s.startup_p99_s, 10.0);
        assert_eq!(s.startup_max_s, 10.0);
    }

    #[test]
    fn peak_is_the_busiest_one_second_window() {
        // 100 ms buckets: a 1 s window of 10 buckets.
        assert_eq!(peak_window_buckets(), 10);
        let mut b = vec![0u64; 30];
        // 5 buckets of 100 at 3..8, 10 buckets of 10 elsewhere.
        for x in &mut b[3..8] {
            *x = 100;
        }
        for x in &mut b[15..25] {
            *x = 10;
        }
        assert_eq!(peak_window_bytes(&b), 500);
        assert_eq!(registry_peak_bps(&b), 4000);
        // A window straddling two bursts.
        let mut b = vec![0u64; 40];
        b[5] = 60;
        b[14] = 50; // 5..=14 is one window: 110
        b[30] = 100;
        assert_eq!(peak_window_bytes(&b), 110);
        // Shorter than a window: the whole series.
        assert_eq!(peak_window_bytes(&[1, 2, 3]), 6);
        assert_eq!(peak_window_bytes(&[]), 0);
        // 10 Gbit/s for 2 s: 125 MB per 100 ms bucket.
        let b = vec![125_000_000u64; 20];
        assert_eq!(registry_peak_bps(&b), 10_000_000_000);
        assert!((bucket_gbps(125_000_000) - 10.0).abs() < 1e-12);
    }

    #[test]
    fn rounding_is_fixed_and_never_negative_zero() {
        assert_eq!(round_fixed(1.23456789), 1.234568);
        assert_eq!(round_fixed(-0.0000001), 0.0);
        assert!(round_fixed(-0.0000001).is_sign_positive());
        assert!(round_fixed(f64::NAN).is_nan());
    }

    #[test]
    fn summary_json_has_fixed_keys_and_is_byte_identical() {
        let run = fake_run("tensorflow-50", 50, 1_200_000_000, 7);
        let a = Summary::of(&run).to_json();
        let b = Summary::of(&run.clone()).to_json();
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        let top: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
        let mut expect = vec!["scenario", "seed", "policy", "image_bytes", "lower_bound_s", "modes"];
        // serde_json's Map is ordered by key (no preserve_order feature): compare as sets
        // here, and check the text order below.
        expect.sort();
        let mut got = top.clone();
        got.sort();
        assert_eq!(got, expect);
        let pos = |k: &str| a.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("scenario") < pos("seed"));
        assert!(pos("seed") < pos("policy"));
        assert!(pos("policy") < pos("image_bytes"));
        assert!(pos("image_bytes") < pos("lower_bound_s"));
        assert!(pos("lower_bound_s") < pos("modes"));
        let modes = v["modes"].as_object().unwrap();
        assert_eq!(modes.keys().collect::<Vec<_>>(), ["oci", "p2p", "p2p-lazy"]);
        for (_, m) in modes {
            let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(|s| s.as_str()).collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "makespan_s",
                    "pods",
                    "registry_bytes",
                    "registry_peak_bps",
                    "registry_requests",
                    "startup_max_s",
                    "startup_p50_s",
                    "startup_p99_s"
                ]
            );
        }
        // Text order of a mode's keys.
        let oci = &a[a.find("\"oci\"").unwrap()..];
        let order = [
            "pods",
            "startup_p50_s",
            "startup_p99_s",
            "startup_max_s",
            "makespan_s",
            "registry_bytes",
            "registry_peak_bps",
            "registry_requests",
        ];
        let idx: Vec<usize> = order.iter().map(|k| oci.find(&format!("\"{k}\"")).unwrap()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
        // Round trip.
        assert_eq!(Summary::from_json(&a).unwrap(), Summary::of(&run));
    }

    #[test]
    fn a_pod_that_never_started_is_null_and_reads_back_as_nan() {
        let mut run = fake_run("nginx-50", 50, 70_000_000, 1);
        run.modes[0].pods[3].started_s = f64::NAN;
        let s = Summary::of(&run);
        let oci = &s.modes["oci"];
        assert!(oci.startup_max_s.is_infinite());
        let json = s.to_json();
        assert!(json.contains("\"startup_max_s\": null"), "{json}");
        let back = Summary::from_json(&json).unwrap();
        assert!(back.modes["oci"].startup_max_s.is_nan());
    }
}
