//! `sim compare-policies`: the p2p modes of one scenario under every scheduler policy,
//! side by side (`policies.csv`, `policies.md`).

use super::format::csv_f;
use super::summary::{round_fixed, ModeSummary};
use crate::result::{ModeResult, RunResult};
use crate::scenario::Mode;

/// One metric row: its name, unit note, and how to compute it.
struct Metric {
    key: &'static str,
    label: &'static str,
    value: fn(&RunResult, &ModeResult, &ModeSummary) -> f64,
    decimals: usize,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

const METRICS: [Metric; 16] = [
    Metric { key: "startup_p50_s", label: "startup p50 (s)", value: |_, _, s| s.startup_p50_s, decimals: 2 },
    Metric { key: "startup_p99_s", label: "startup p99 (s)", value: |_, _, s| s.startup_p99_s, decimals: 2 },
    Metric { key: "startup_max_s", label: "startup max (s)", value: |_, _, s| s.startup_max_s, decimals: 2 },
    Metric { key: "makespan_s", label: "makespan (s)", value: |_, _, s| s.makespan_s, decimals: 2 },
    Metric {
        key: "makespan_over_lower_bound",
        label: "makespan / lower bound",
        value: |r, _, s| ratio(s.makespan_s, r.lower_bound_s),
        decimals: 2,
    },
    Metric {
        key: "registry_bytes_over_image",
        label: "registry bytes / image bytes",
        value: |r, _, s| ratio(s.registry_bytes as f64, r.image_bytes as f64),
        decimals: 2,
    },
    Metric {
        key: "registry_peak_gbps",
        label: "registry peak (Gbit/s, 1 s)",
        value: |_, _, s| s.registry_peak_bps as f64 / 1e9,
        decimals: 2,
    },
    Metric {
        key: "registry_requests",
        label: "registry requests",
        value: |_, _, s| s.registry_requests as f64,
        decimals: 0,
    },
    Metric {
        key: "seed_copies",
        label: "copies the seed peers sent",
        value: |r, m, _| {
            ratio(m.pods.iter().map(|p| p.bytes_from_seed_peers).sum::<u64>() as f64, r.image_bytes as f64)
        },
        decimals: 2,
    },
    Metric {
        key: "piece_hops_mean",
        label: "piece hops from the registry, mean",
        value: |_, m, _| m.piece_hops_mean,
        decimals: 2,
    },
    Metric {
        key: "piece_hops_max",
        label: "piece hops, max",
        value: |_, m, _| f64::from(m.piece_hops_max),
        decimals: 0,
    },
    Metric {
        key: "node_upload_idle_pct",
        label: "node upload left idle (%)",
        value: |_, m, _| 100.0 * (1.0 - m.node_upload_used),
        decimals: 1,
    },
    Metric {
        key: "back_to_source_orders",
        label: "back-to-source orders",
        value: |_, m, _| m.back_to_source_orders as f64,
        decimals: 0,
    },
    Metric {
        key: "busy_refusals",
        label: "piece requests refused busy",
        value: |_, m, _| m.busy_refusals as f64,
        decimals: 0,
    },
    Metric {
        key: "scheduler_requests",
        label: "scheduler requests",
        value: |_, m, _| m.scheduler_requests as f64,
        decimals: 0,
    },
    Metric {
        key: "scheduler_max_queue_delay_ms",
        label: "scheduler max queue delay (ms)",
        value: |_, m, _| m.scheduler_max_queue_delay_s * 1e3,
        decimals: 3,
    },
];

/// The p2p modes a policy comparison runs: those of the scenario, or `p2p` if it has none.
pub fn p2p_modes(modes: &[Mode]) -> Vec<Mode> {
    let v: Vec<Mode> = modes.iter().copied().filter(|m| *m != Mode::Oci).collect();
    if v.is_empty() {
        vec![Mode::P2p]
    } else {
        v
    }
}

/// Per p2p mode, per metric: one value per policy (NaN when a run lacks the mode).
pub struct PolicyTable {
    pub scenario: String,
    pub seed: u64,
    pub policies: Vec<String>,
    /// (mode, metric key, metric label, decimals, values per policy)
    pub rows: Vec<(Mode, &'static str, &'static str, usize, Vec<f64>)>,
}

impl PolicyTable {
    /// `runs`: (policy name, result) in column order.
    pub fn new(runs: &[(String, RunResult)]) -> PolicyTable {
        let modes: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|m| *m != Mode::Oci && runs.iter().any(|(_, r)| r.modes.iter().any(|x| x.mode == *m)))
            .collect();
        let mut rows = vec![];
        for mode in modes {
            for metric in &METRICS {
                let values = runs
                    .iter()
                    .map(|(_, r)| match r.modes.iter().find(|x| x.mode == mode) {
                        Some(m) => (metric.value)(r, m, &ModeSummary::of(m)),
                        None => f64::NAN,
                    })
                    .collect();
                rows.push((mode, metric.key, metric.label, metric.decimals, values));
            }
        }
        PolicyTable {
            scenario: runs.first().map(|(_, r)| r.scenario.clone()).unwrap_or_default(),
            seed: runs.first().map(|(_, r)| r.seed).unwrap_or_default(),
            policies: runs.iter().map(|(p, _)| p.clone()).collect(),
            rows,
        }
    }

    /// `policies.csv`: mode, metric, then one column per policy.
    pub fn to_csv(&self) -> anyhow::Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["mode".to_string(), "metric".to_string()];
        header.extend(self.policies.iter().cloned());
        w.write_record(&header)?;
        for (mode, key, _, _, values) in &self.rows {
            let mut rec = vec![mode.name().to_string(), key.to_string()];
            rec.extend(values.iter().map(|v| csv_f(*v)));
            w.write_record(&rec)?;
        }
        super::csvs::finish(w)
    }

    /// `policies.md`: a markdown table per p2p mode; the best (lowest) value of each row
    /// in bold.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("# Scheduler policies: {} (seed {})\n", self.scenario, self.seed);
        let mut modes: Vec<Mode> = self.rows.iter().map(|r| r.0).collect();
        modes.dedup();
        for mode in modes {
            out.push_str(&format!("\n## mode {}\n\n", mode.name()));
            out.push_str("| metric |");
            for p in &self.policies {
                out.push_str(&format!(" {p} |"));
            }
            out.push_str("\n|---|");
            for _ in &self.policies {
                out.push_str("--:|");
            }
            out.push('\n');
            for (_, _, label, decimals, values) in self.rows.iter().filter(|r| r.0 == mode) {
                out.push_str(&format!("| {label} |"));
                for (cell, best) in shown_cells(values, *decimals) {
                    if best {
                        out.push_str(&format!(" **{cell}** |"));
                    } else {
                        out.push_str(&format!(" {cell} |"));
                    }
                }
                out.push('\n');
            }
        }
        out.push_str("\nLower is better in every row; the best value of a row is in bold.\n");
        out
    }
}

/// A row's values as shown (`decimals` places, "n/a" for a missing run), each with whether
/// it is the row's best (lowest) where the values differ: what `policies.md` puts in bold.
pub fn shown_cells(values: &[f64], decimals: usize) -> Vec<(String, bool)> {
    let shown: Vec<f64> = values.iter().map(|v| round_to(*v, decimals)).collect();
    let best = shown.iter().copied().filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
    let distinct = shown.iter().any(|v| *v != best);
    shown
        .iter()
        .map(|v| {
            let cell = if v.is_finite() { format!("{v:.*}", decimals) } else { "n/a".into() };
            (cell, distinct && *v == best)
        })
        .collect()
}

fn round_to(v: f64, decimals: usize) -> f64 {
    if !v.is_finite() {
        return v;
    }
    let s = 10f64.powi(decimals as i32);
    round_fixed((v * s).round() / s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;

    #[test]
    fn one_column_per_policy_and_bold_best() {
        let mut runs = vec![];
        for (i, p) in ["default", "dragonfly", "kraken"].iter().enumerate() {
            let mut r = fake_run("nginx-100", 100, 70_000_000, 1);
            r.policy = p.to_string();
            r.modes.retain(|m| m.mode == Mode::P2p);
            for pod in &mut r.modes[0].pods {
                pod.started_s += i as f64;
            }
            runs.push((p.to_string(), r));
        }
        let t = PolicyTable::new(&runs);
        let csv = t.to_csv().unwrap();
        assert!(csv.starts_with("mode,metric,default,dragonfly,kraken\n"), "{csv}");
        assert_eq!(csv.lines().count(), 1 + METRICS.len());
        let md = t.to_markdown();
        assert!(md.contains("| metric | default | dragonfly | kraken |"), "{md}");
        let p50 = md.lines().find(|l| l.starts_with("| startup p50 (s)")).unwrap();
        assert!(p50.matches("**").count() == 2, "{p50}");
        // Same value for all: nothing bold.
        let req = md.lines().find(|l| l.starts_with("| registry requests")).unwrap();
        assert!(!req.contains("**"), "{req}");
        assert!(md.contains("makespan / lower bound"));
        assert!(md.contains("scheduler max queue delay (ms)"));
    }

    #[test]
    fn p2p_modes_only() {
        assert_eq!(p2p_modes(&Mode::ALL), vec![Mode::P2p, Mode::P2pLazy]);
        assert_eq!(p2p_modes(&[Mode::Oci]), vec![Mode::P2p]);
    }
}
