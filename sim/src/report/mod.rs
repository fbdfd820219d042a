//! Reports: everything a run writes to disk, plus the baseline check.
//!
//! | file                          | from                                   |
//! |-------------------------------|----------------------------------------|
//! | `summary.json`                | [`summary::Summary`] (deterministic)   |
//! | `config.toml`                 | the cores' configuration the run used  |
//! | `pods.csv`, `registry.csv`    | [`csvs`] (deterministic)               |
//! | `node_groups.csv` (with groups)| [`csvs`]: node, group, zone            |
//! | `startup_cdf.{png,svg}`       | [`charts::StartupCdf`]                 |
//! | `registry_bandwidth.{png,svg}`| [`charts::RegistryBandwidth`]          |
//! | `matrix/…`                    | [`matrix`]                             |
//! | `policies.{csv,md}`           | [`policies`]                           |
//! | `index.html`, `policies.html` | [`html`]: one self-contained page each |
//!
//! Nothing here reads a clock: wall-clock figures are printed by the CLI, never written.

pub mod charts;
pub mod check;
#[cfg(test)]
mod churn_tests;
pub mod csvs;
pub mod format;
pub mod html;
pub mod matrix;
pub mod policies;
pub mod summary;
pub mod table;
pub mod text;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::result::RunResult;
use anyhow::Context;
use std::fs;
use std::path::{Path, PathBuf};
use summary::Summary;

/// What the charts need to know about the scenario beyond the `RunResult`.
#[derive(Debug, Clone, Default)]
pub struct ChartContext {
    /// Registry egress capacity (dashed line on the bandwidth chart).
    pub registry_gbps: Option<f64>,
    /// Pods of the rollout, for titles.
    pub pods: Option<u32>,
}

/// The files of one run, and its summary.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub dir: PathBuf,
    pub summary: Summary,
    /// The terminal table (modes x metrics and the lower bound line).
    pub table: String,
    pub files: Vec<PathBuf>,
}

/// The directory a scenario's reports go to: `out_root/<scenario name>`.
pub fn run_dir(out_root: &Path, scenario: &str) -> anyhow::Result<PathBuf> {
    let bad = scenario.is_empty()
        || scenario == "."
        || scenario == ".."
        || scenario.contains(['/', '\\'])
        || scenario.chars().any(char::is_control);
    if bad {
        anyhow::bail!("scenario name {scenario:?} cannot be used as a directory name");
    }
    Ok(out_root.join(scenario))
}

fn write(path: &Path, text: &str) -> anyhow::Result<PathBuf> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// "policy default · seed 1 · 500 pods · image 1.23 GB"
pub fn run_subtitle(run: &RunResult, ctx: &ChartContext) -> String {
    let mut s = format!("policy {} \u{b7} seed {}", run.policy, run.seed);
    if let Some(p) = ctx.pods {
        s.push_str(&format!(" \u{b7} {p} pods"));
    }
    s.push_str(&format!(" \u{b7} image {}", format::bytes(run.image_bytes)));
    s
}

/// Writes `summary.json`, `pods.csv`, `registry.csv` and the two charts (PNG + SVG) to
/// `out_root/<scenario>/`; `pieces.csv` too for a traced run.
pub fn write_run_reports(out_root: &Path, run: &RunResult, ctx: &ChartContext) -> anyhow::Result<RunReport> {
    let dir = run_dir(out_root, &run.scenario)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let summary = Summary::of(run);
    let mut files = vec![
        write(&dir.join("summary.json"), &summary.to_json())?,
        write(&dir.join("pods.csv"), &csvs::pods_csv(run)?)?,
        write(&dir.join("registry.csv"), &csvs::registry_csv(run)?)?,
    ];
    if let Some(text) = csvs::node_groups_csv(run)? {
        files.push(write(&dir.join("node_groups.csv"), &text)?);
    }
    if let Some(text) = csvs::pieces_csv(run)? {
        files.push(write(&dir.join("pieces.csv"), &text)?);
    }
    if !run.config_toml.is_empty() {
        files.push(write(&dir.join("config.toml"), &run.config_toml)?);
    }
    files.extend(write_run_charts(&dir, run, ctx)?);
    Ok(RunReport { dir, table: table::modes_table(&summary, run.request_floor_s), summary, files })
}

/// Just the charts of one run (also used by tests to look at fabricated results).
pub fn write_run_charts(dir: &Path, run: &RunResult, ctx: &ChartContext) -> anyhow::Result<Vec<PathBuf>> {
    let subtitle = run_subtitle(run, ctx);
    let cdf = charts::StartupCdf {
        title: format!("Pod start time, {}", run.scenario),
        subtitle: subtitle.clone(),
        curves: run.modes.iter().map(|m| (m.mode, summary::sorted_start_times(m))).collect(),
        lower_bound_s: run.lower_bound_s,
    };
    let bw = charts::RegistryBandwidth {
        title: format!("Back-to-source (registry) egress, {}", run.scenario),
        subtitle: format!("{subtitle} \u{b7} 100 ms buckets \u{b7} each panel has its own time axis"),
        panels: run
            .modes
            .iter()
            .map(|m| charts::BandwidthPanel {
                mode: m.mode,
                buckets: m.registry_egress_bytes_per_bucket.clone(),
                registry_bytes: m.registry_bytes,
                image_bytes: run.image_bytes,
            })
            .collect(),
        capacity_gbps: ctx.registry_gbps,
    };
    let mut files = charts::render(&cdf, dir, "startup_cdf").context("drawing startup_cdf")?;
    files.extend(charts::render(&bw, dir, "registry_bandwidth").context("drawing registry_bandwidth")?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::fake_run;

    pub(crate) fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sim-report-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn two_writes_are_byte_identical() {
        let run = fake_run("nginx-50", 50, 70_000_000, 5);
        let ctx = ChartContext { registry_gbps: Some(10.0), pods: Some(50) };
        let a = scratch("ident-a");
        let b = scratch("ident-b");
        write_run_reports(&a, &run, &ctx).unwrap();
        write_run_reports(&b, &run, &ctx).unwrap();
        for f in ["summary.json", "pods.csv", "registry.csv"] {
            let x = fs::read(a.join("nginx-50").join(f)).unwrap();
            let y = fs::read(b.join("nginx-50").join(f)).unwrap();
            assert_eq!(x, y, "{f} differs");
        }
        for f in ["startup_cdf.png", "startup_cdf.svg", "registry_bandwidth.png", "registry_bandwidth.svg"] {
            assert!(a.join("nginx-50").join(f).metadata().unwrap().len() > 1000, "{f}");
        }
        let _ = fs::remove_dir_all(&a);
        let _ = fs::remove_dir_all(&b);
    }

    #[test]
    fn bad_scenario_names_are_refused() {
        assert!(run_dir(Path::new("r"), "../x").is_err());
        assert!(run_dir(Path::new("r"), "").is_err());
        assert_eq!(run_dir(Path::new("r"), "nginx-50").unwrap(), Path::new("r/nginx-50"));
    }

    /// Renders every chart from fabricated results into $SIM_CHART_DIR (or a temp dir) so a
    /// person can look at them: `SIM_CHART_DIR=/tmp/charts cargo test -p sim --lib
    /// report::tests::render_sample_charts -- --ignored`.
    #[test]
    #[ignore]
    fn render_sample_charts() {
        let dir = std::env::var_os("SIM_CHART_DIR").map(PathBuf::from).unwrap_or_else(|| scratch("charts"));
        fs::create_dir_all(&dir).unwrap();
        let run = fake_run("tensorflow-500", 500, 1_200_000_000, 1);
        let ctx = ChartContext { registry_gbps: Some(10.0), pods: Some(500) };
        let r = write_run_reports(&dir, &run, &ctx).unwrap();
        println!("{}", r.table);
        let small = fake_run("small-8", 8, 50_000_000, 3);
        write_run_reports(&dir, &small, &ChartContext { registry_gbps: Some(10.0), pods: Some(8) }).unwrap();
        let mut entries = vec![];
        for (fam, img) in [("nginx", 70_000_000u64), ("tensorflow", 1_200_000_000)] {
            for pods in [50u32, 100, 200, 500] {
                let run = fake_run(&format!("{fam}-{pods}"), pods, img, 1);
                entries.push(matrix::MatrixEntry::new(&run, pods, Some(10.0)));
            }
        }
        matrix::write_matrix(&dir.join("matrix"), &entries).unwrap();
        println!("charts in {}", dir.display());
    }
}
