//! `sim matrix`: one table over many scenarios (`matrix.csv`, `matrix.json`) and, per
//! image family (nginx, tensorflow, ...), three grouped-bar charts comparing the modes at
//! each rollout size: pod start time, back-to-source peak bandwidth, back-to-source
//! traffic.

use super::charts::{self, Bar, BarSeries, GroupedBars, LegendEntry, Swatch};
use super::format::{bytes, bytes_f, secs_short};
use super::summary::{ModeSummary, Summary};
use crate::result::RunResult;
use crate::scenario::Mode;
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// One scenario's results as the matrix sees them.
#[derive(Debug, Clone)]
pub struct MatrixEntry {
    pub scenario: String,
    pub family: String,
    pub pods: u32,
    pub registry_gbps: Option<f64>,
    pub summary: Summary,
}

impl MatrixEntry {
    pub fn new(run: &RunResult, pods: u32, registry_gbps: Option<f64>) -> MatrixEntry {
        MatrixEntry {
            scenario: run.scenario.clone(),
            family: family_of(&run.scenario),
            pods,
            registry_gbps,
            summary: Summary::of(run),
        }
    }
}

/// "tensorflow-500" -> "tensorflow"; a name without a numeric suffix is its own family.
pub fn family_of(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((head, tail)) if !head.is_empty() && !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => {
            head.to_string()
        }
        _ => name.to_string(),
    }
}

/// The families charts are drawn for come first, in this order.
const KNOWN_FAMILIES: [&str; 2] = ["nginx", "tensorflow"];

fn family_rank(f: &str) -> (usize, String) {
    (KNOWN_FAMILIES.iter().position(|k| *k == f).unwrap_or(KNOWN_FAMILIES.len()), f.to_string())
}

fn family_title(f: &str) -> String {
    match f {
        "nginx" => "Nginx".into(),
        "tensorflow" => "TensorFlow".into(),
        _ => f.to_string(),
    }
}

fn mode_rank(name: &str) -> usize {
    Mode::ALL.iter().position(|m| m.name() == name).unwrap_or(Mode::ALL.len())
}

/// One row of `matrix.csv` / `matrix.json`: a scenario x mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatrixRow {
    pub scenario: String,
    pub family: String,
    pub pods: u32,
    pub seed: u64,
    pub policy: String,
    pub mode: String,
    pub image_bytes: u64,
    pub lower_bound_s: f64,
    pub startup_p50_s: f64,
    pub startup_p99_s: f64,
    pub startup_max_s: f64,
    pub makespan_s: f64,
    pub registry_bytes: u64,
    pub registry_peak_bps: u64,
    pub registry_requests: u64,
}

fn sorted(entries: &[MatrixEntry]) -> Vec<&MatrixEntry> {
    let mut v: Vec<&MatrixEntry> = entries.iter().collect();
    v.sort_by(|a, b| (family_rank(&a.family), a.pods, &a.scenario).cmp(&(family_rank(&b.family), b.pods, &b.scenario)));
    v
}

/// Rows ordered by family (nginx, tensorflow, others), pods, scenario, mode.
pub fn rows(entries: &[MatrixEntry]) -> Vec<MatrixRow> {
    let mut out = vec![];
    for e in sorted(entries) {
        let mut modes: Vec<(&String, &ModeSummary)> = e.summary.modes.iter().collect();
        modes.sort_by_key(|(name, _)| (mode_rank(name), name.to_string()));
        for (name, m) in modes {
            out.push(MatrixRow {
                scenario: e.scenario.clone(),
                family: e.family.clone(),
                pods: e.pods,
                seed: e.summary.seed,
                policy: e.summary.policy.clone(),
                mode: name.clone(),
                image_bytes: e.summary.image_bytes,
                lower_bound_s: e.summary.lower_bound_s,
                startup_p50_s: m.startup_p50_s,
                startup_p99_s: m.startup_p99_s,
                startup_max_s: m.startup_max_s,
                makespan_s: m.makespan_s,
                registry_bytes: m.registry_bytes,
                registry_peak_bps: m.registry_peak_bps,
                registry_requests: m.registry_requests,
            });
        }
    }
    out
}

pub fn matrix_csv(rows: &[MatrixRow]) -> anyhow::Result<String> {
    use super::format::csv_f;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "scenario",
        "family",
        "pods",
        "seed",
        "policy",
        "mode",
        "image_bytes",
        "lower_bound_s",
        "startup_p50_s",
        "startup_p99_s",
        "startup_max_s",
        "makespan_s",
        "registry_bytes",
        "registry_peak_bps",
        "registry_requests",
    ])?;
    for r in rows {
        w.write_record([
            r.scenario.clone(),
            r.family.clone(),
            r.pods.to_string(),
            r.seed.to_string(),
            r.policy.clone(),
            r.mode.clone(),
            r.image_bytes.to_string(),
            csv_f(r.lower_bound_s),
            csv_f(r.startup_p50_s),
            csv_f(r.startup_p99_s),
            csv_f(r.startup_max_s),
            csv_f(r.makespan_s),
            r.registry_bytes.to_string(),
            r.registry_peak_bps.to_string(),
            r.registry_requests.to_string(),
        ])?;
    }
    super::csvs::finish(w)
}

pub fn matrix_json(rows: &[MatrixRow]) -> String {
    let mut s = serde_json::to_string_pretty(rows).expect("matrix serializes");
    s.push('\n');
    s
}

fn describe(values: BTreeSet<String>, one: &str, many: &str) -> String {
    let v: Vec<String> = values.into_iter().collect();
    if v.len() == 1 {
        format!("{one} {}", v[0])
    } else {
        format!("{many} {}", v.join(", "))
    }
}

/// The three charts of one family.
fn family_charts(family: &str, entries: &[&MatrixEntry]) -> Vec<(String, GroupedBars)> {
    let mut pods_seen = BTreeSet::new();
    let dup = entries.iter().any(|e| !pods_seen.insert(e.pods));
    let groups: Vec<String> =
        entries.iter().map(|e| if dup { e.scenario.clone() } else { format!("{} pods", e.pods) }).collect();
    let modes: Vec<Mode> =
        Mode::ALL.into_iter().filter(|m| entries.iter().any(|e| e.summary.modes.contains_key(m.name()))).collect();
    let series = |f: &dyn Fn(&ModeSummary) -> Bar| -> Vec<BarSeries> {
        modes
            .iter()
            .map(|&mode| BarSeries {
                mode,
                bars: entries.iter().map(|e| e.summary.modes.get(mode.name()).map(f)).collect(),
            })
            .collect()
    };
    let run_desc = format!(
        "{} \u{b7} {}",
        describe(entries.iter().map(|e| e.summary.policy.clone()).collect(), "policy", "policies"),
        describe(entries.iter().map(|e| e.summary.seed.to_string()).collect(), "seed", "seeds"),
    );
    let images: BTreeSet<String> = entries.iter().map(|e| bytes(e.summary.image_bytes)).collect();
    let image_desc = describe(images, "image", "images");
    let title = family_title(family);
    let x_desc = "rollout size (one Deployment, pods created at t = 0)".to_string();

    let startup = GroupedBars {
        title: format!("{title}: pod start time"),
        subtitle: format!("bar and label: p50, whisker: p99 \u{b7} log scale \u{b7} {run_desc} \u{b7} {image_desc}"),
        groups: groups.clone(),
        x_desc: x_desc.clone(),
        series: series(&|m| Bar { value: m.startup_p50_s, whisker: Some(m.startup_p99_s) }),
        log_y: true,
        y_desc: "seconds since rollout start (log scale)".into(),
        value_label: secs_short,
        y_scale: 1.0,
        hline: None,
        notes: vec![LegendEntry { swatch: Swatch::Whisker, label: "whisker top: p99".into() }],
    };

    let caps: BTreeSet<u64> = entries.iter().filter_map(|e| e.registry_gbps).map(|g| (g * 1000.0) as u64).collect();
    let hline = if caps.len() == 1 {
        let g = *caps.iter().next().unwrap() as f64 / 1000.0;
        Some((g * 1e9, format!("registry capacity {} Gbit/s", charts::tick_label(g))))
    } else {
        None
    };
    let peak = GroupedBars {
        title: format!("{title}: back-to-source peak bandwidth"),
        subtitle: format!("registry egress in the busiest 1 s window \u{b7} {run_desc} \u{b7} {image_desc}"),
        groups: groups.clone(),
        x_desc: x_desc.clone(),
        series: series(&|m| Bar { value: m.registry_peak_bps as f64, whisker: None }),
        log_y: false,
        y_desc: "peak registry egress (Gbit/s)".into(),
        value_label: |v| format!("{:.2}", v / 1e9),
        y_scale: 1e9,
        hline,
        notes: vec![],
    };

    let max_bytes = entries.iter().flat_map(|e| e.summary.modes.values().map(|m| m.registry_bytes)).max().unwrap_or(0);
    let (scale, unit) = if max_bytes >= 10_000_000_000 { (1e9, "GB") } else { (1e6, "MB") };
    let traffic = GroupedBars {
        title: format!("{title}: back-to-source traffic"),
        subtitle: format!(
            "bytes served by the registry for the whole rollout \u{b7} log scale \u{b7} {run_desc} \u{b7} {image_desc}"
        ),
        groups,
        x_desc,
        series: series(&|m| Bar { value: m.registry_bytes as f64, whisker: None }),
        log_y: true,
        y_desc: format!("registry egress ({unit}, log scale)"),
        value_label: bytes_f,
        y_scale: scale,
        hline: None,
        notes: vec![],
    };
    vec![
        (format!("{family}_startup"), startup),
        (format!("{family}_registry_peak"), peak),
        (format!("{family}_registry_traffic"), traffic),
    ]
}

/// Writes `matrix.csv`, `matrix.json` and the family charts to `dir`.
pub fn write_matrix(dir: &Path, entries: &[MatrixEntry]) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let rows = rows(entries);
    let mut files = vec![];
    let p = dir.join("matrix.csv");
    fs::write(&p, matrix_csv(&rows)?).with_context(|| format!("writing {}", p.display()))?;
    files.push(p);
    let p = dir.join("matrix.json");
    fs::write(&p, matrix_json(&rows)).with_context(|| format!("writing {}", p.display()))?;
    files.push(p);
    let sorted = sorted(entries);
    let families: Vec<String> = {
        let mut f: Vec<String> = sorted.iter().map(|e| e.family.clone()).collect();
        f.dedup();
        f
    };
    for fam in families {
        let of_family: Vec<&MatrixEntry> = sorted.iter().copied().filter(|e| e.family == fam).collect();
        for (stem, chart) in family_charts(&fam, &of_family) {
            files.extend(charts::render(&chart, dir, &stem).with_context(|| format!("drawing {stem}"))?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;

    #[test]
    fn families() {
        assert_eq!(family_of("tensorflow-500"), "tensorflow");
        assert_eq!(family_of("nginx-50"), "nginx");
        assert_eq!(family_of("my-app-20"), "my-app");
        assert_eq!(family_of("solo"), "solo");
        assert_eq!(family_of("x-y"), "x-y");
    }

    #[test]
    fn rows_are_ordered_and_complete() {
        let mut entries = vec![];
        for (fam, img) in [("tensorflow", 1_000_000_000u64), ("nginx", 70_000_000)] {
            for pods in [500u32, 50] {
                let run = fake_run(&format!("{fam}-{pods}"), pods, img, 1);
                entries.push(MatrixEntry::new(&run, pods, Some(10.0)));
            }
        }
        let r = rows(&entries);
        assert_eq!(r.len(), 12);
        let key: Vec<(String, String)> = r.iter().map(|r| (r.scenario.clone(), r.mode.clone())).collect();
        assert_eq!(key[0], ("nginx-50".into(), "oci".into()));
        assert_eq!(key[1], ("nginx-50".into(), "p2p".into()));
        assert_eq!(key[2], ("nginx-50".into(), "p2p-lazy".into()));
        assert_eq!(key[3].0, "nginx-500");
        assert_eq!(key[6].0, "tensorflow-50");
        let csv = matrix_csv(&r).unwrap();
        assert_eq!(csv.lines().count(), 13);
        assert_eq!(csv, matrix_csv(&rows(&entries)).unwrap());
        let json: serde_json::Value = serde_json::from_str(&matrix_json(&r)).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 12);
    }
}
