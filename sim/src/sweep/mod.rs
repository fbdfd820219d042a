//! `sim sweep`: one scenario run over a grid of values of one or two of its numeric keys,
//! for capacity planning ("how many seed peers, how much registry egress, for p99 start
//! under X at N pods").
//!
//! | file          | what                                                                  |
//! |---------------|-----------------------------------------------------------------------|
//! | `vary.rs`     | `--vary KEY=A..B:STEPS[g]`: parsing, the values, rounding to the key  |
//! | `keys.rs`     | the scenario's keys as a run reads them: which are numbers, typos     |
//! | `grid.rs`     | dimensions, their product, how a point is written into the file       |
//! | `run.rs`      | every (point, mode) on `--jobs` threads, summaries kept, runs dropped |
//! | `target.rs`   | `--target MODE.METRIC<=VALUE`: who meets it, the cheapest, the closest |
//! | `table.rs`    | rows, `sweep.csv`, `sweep.md`                                          |
//! | `charts.rs`   | start times and registry egress against the first key                 |
//! | `heatmap.rs`  | two keys: start p99 over both                                          |
//! | `plan_file.rs`| `plan.json`: what the grid is rebuilt from on another machine          |
//! | `point.rs`    | `sim sweep-point`: one point's modes, `point-<I>.json`                  |
//! | `collect.rs`  | `sim sweep --collect`: the point files back into one result            |
//! | `job.rs`      | `--emit-job`: the Kubernetes Indexed Job, its claim and commands       |
//! | `yaml.rs`     | the manifests' YAML                                                    |
//!
//! Each grid point is the scenario file with the point's values written into its TOML
//! document and loaded as any file is (`ScenarioFile::load_with`), so every check and
//! message of a normal load applies to the values; every point is loaded before anything
//! runs, so a refused value stops the sweep at once.

pub mod charts;
pub mod collect;
pub mod grid;
pub mod heatmap;
pub mod job;
pub mod keys;
pub mod plan_file;
pub mod point;
pub mod run;
pub mod table;
pub mod target;
pub mod vary;
pub mod yaml;

pub use grid::{Dimension, Grid};
pub use run::{run_grid, Outcome, Progress};
pub use table::SweepResult;
pub use target::Target;
pub use vary::Vary;

use crate::scenario::{Mode, Scenario, ScenarioError, ScenarioFile};

/// `--seed` and `--policy`, laid over every point as `sim run` lays them over its scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub seed: Option<u64>,
    pub policy: Option<String>,
}

impl Overrides {
    fn apply(&self, sc: &mut Scenario) {
        if let Some(s) = self.seed {
            sc.seed = s;
        }
        if let Some(p) = &self.policy {
            sc.policy = p.clone();
        }
    }
}

/// Why a sweep cannot start (all exit 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A `--vary` or the grid: one line naming the argument.
    #[error("{0}")]
    Usage(String),
    /// The scenario file as written.
    #[error("{0}")]
    Scenario(ScenarioError),
    /// A grid point's values refused by the scenario's own checks.
    #[error("grid point {label}: {error}")]
    Point { label: String, error: ScenarioError },
}

/// A sweep ready to run: the grid and every point's scenario.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The scenario as written, with the overrides.
    pub base: Scenario,
    pub grid: Grid,
    /// Point `i`'s scenario.
    pub points: Vec<Scenario>,
    /// The modes each point runs, in report order.
    pub modes: Vec<Mode>,
    /// What rounding merged, said before the run.
    pub notes: Vec<String>,
}

impl Sweep {
    pub fn plan(file: &ScenarioFile, varies: &[Vary], overrides: &Overrides) -> Result<Sweep, PlanError> {
        let mut base = file.load().map_err(PlanError::Scenario)?;
        overrides.apply(&mut base);
        if overrides.seed.is_some() && varies.iter().any(|v| v.key == "seed") {
            return Err(PlanError::Usage("--seed and --vary seed=... both set the seed; give one".into()));
        }
        let keys =
            keys::KeyCatalog::of(&base).map_err(|e| PlanError::Usage(format!("{}: {e}", file.path().display())))?;
        let mut dims = vec![];
        let mut notes = vec![];
        for v in varies {
            let (dim, note) = Dimension::new(v, &keys).map_err(PlanError::Usage)?;
            dims.push(dim);
            notes.extend(note);
        }
        let grid = Grid::new(dims).map_err(PlanError::Usage)?;
        let points = (0..grid.len())
            .map(|i| {
                let mut sc = file
                    .load_with(&grid.assignments(i))
                    .map_err(|error| PlanError::Point { label: grid.label(i), error })?;
                overrides.apply(&mut sc);
                Ok(sc)
            })
            .collect::<Result<Vec<_>, PlanError>>()?;
        let mut modes = base.modes.clone();
        modes.sort();
        modes.dedup();
        Ok(Sweep { base, grid, points, modes, notes })
    }

    /// Runs every point and mode on `jobs` threads.
    pub fn run(&self, jobs: usize, on_progress: &mut dyn FnMut(&Progress)) -> SweepResult {
        let outcomes = run_grid(&self.points, &self.modes, jobs, on_progress);
        SweepResult::new(self, outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// 6 pods, a 12 MB image: a point runs in milliseconds.
    const TINY: &str = r#"
name = "tiny"
seed = 5
[cluster]
pods = 6
[image]
reference = "t/tiny:1"
layer_bytes = [2_000_000, 10_000_000]
"#;

    fn plan(args: &[&str]) -> Result<Sweep, PlanError> {
        let file = ScenarioFile::from_text(Path::new("tiny.toml"), TINY);
        let varies: Vec<Vary> = args.iter().map(|a| Vary::parse(a).unwrap()).collect();
        Sweep::plan(&file, &varies, &Overrides::default())
    }

    #[test]
    fn csv_is_the_same_for_one_job_and_two() {
        let sweep = plan(&["cluster.seed_peers=1..3:3", "registry.egress_gbps=1..4:2"]).unwrap();
        assert_eq!((sweep.points.len(), sweep.modes.len()), (6, 3));
        let serial = sweep.run(1, &mut |_| {});
        let mut seen = 0;
        let parallel = sweep.run(2, &mut |p| {
            seen += 1;
            assert_eq!(p.units_done, seen);
            assert_eq!(p.units, 18);
        });
        assert_eq!(seen, 18);
        assert!(serial.failures.is_empty(), "{:?}", serial.failures);
        let csv = serial.csv().unwrap();
        assert_eq!(csv, parallel.csv().unwrap());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + 18);
        assert_eq!(
            lines[0],
            "cluster.seed_peers,registry.egress_gbps,mode,pods,startup_p50_s,startup_p99_s,startup_max_s,makespan_s,\
             registry_bytes,registry_peak_bps,registry_requests,lower_bound_s"
        );
        assert!(lines[1].starts_with("1,1,oci,6,"), "{}", lines[1]);
        assert!(lines[5].starts_with("1,4,p2p,6,"), "{}", lines[5]);
        assert!(lines[18].starts_with("3,4,p2p-lazy,6,"), "{}", lines[18]);
        // A point is a normal run: the same as running its scenario alone.
        let alone = crate::engine::run_scenario(&sweep.points[5], &Default::default()).unwrap();
        let summary = crate::report::summary::Summary::of(&alone);
        assert_eq!(serial.rows[5 * 3 + 1].summary, summary.modes["p2p"]);
        let md = serial.markdown(Some(&Target::parse("p2p.startup_p99_s<=1000").unwrap()));
        assert!(md.contains("6 of 6 points meet it"), "{md}");
        assert!(md.contains("## p2p start p99 by cluster.seed_peers (down) and registry.egress_gbps (across)"), "{md}");
    }

    #[test]
    fn values_are_checked_by_the_scenarios_own_rules_before_anything_runs() {
        let e = plan(&["cluster.pods=0..2:3"]).unwrap_err().to_string();
        assert!(e.starts_with("grid point cluster.pods = 0: tiny.toml:5: cluster.pods: "), "{e}");
        let e = plan(&["cluster.pod=1..2:2"]).unwrap_err().to_string();
        assert!(e.contains("--vary cluster.pod=1..2:2: cluster.pod is not a key") && e.contains("cluster.pods"), "{e}");
        let e = plan(&["name=1..2:2"]).unwrap_err().to_string();
        assert!(e.contains("name is text, not a number"), "{e}");
        let seeded = ScenarioFile::from_text(Path::new("tiny.toml"), TINY);
        let over = Overrides { seed: Some(3), policy: None };
        let e = Sweep::plan(&seeded, &[Vary::parse("seed=1..2:2").unwrap()], &over).unwrap_err();
        assert!(e.to_string().contains("--seed and --vary seed"), "{e}");
    }

    #[test]
    fn rounding_notes_and_core_keys() {
        let s = plan(&["cluster.seed_peers=1..2:3", "scheduler.candidate_parent_limit=2..4:2"]).unwrap();
        assert_eq!(s.grid.len(), 4);
        assert_eq!(s.notes.len(), 1);
        assert!(s.notes[0].contains("3 steps give 2 distinct values (1, 2)"), "{}", s.notes[0]);
        assert_eq!(s.points[3].scheduler.tuning["candidate_parent_limit"].as_integer(), Some(4));
        assert_eq!(s.points[3].cluster.seed_peers, 2);
    }
}
