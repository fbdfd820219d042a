//! `plan.json`: everything a sweep's grid is built from (the scenario file's text and path,
//! the `--vary` arguments, `--seed`, `--policy`, `--target`), so that `sim sweep-point` on
//! another machine rebuilds exactly the grid a local `sim sweep` would, and `sim sweep
//! --collect` writes the same reports. Written by `sim sweep --emit-job`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Overrides, PlanError, Sweep, Target, Vary};
use crate::scenario::{without_machine_memory_check, ScenarioFile};

/// Bumped when the file's meaning changes; a reader refuses another.
pub const FORMAT: u32 = 1;

/// The file name in the emitted directory, the ConfigMap and the results directory.
pub const FILE_NAME: &str = "plan.json";

/// A sweep as data. Field order is the file's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPlan {
    pub format: u32,
    /// The `sim` that wrote it: a point run by another version could differ.
    pub sim_version: String,
    /// The scenario file's path as given (messages and `index.html` name it).
    pub scenario_path: String,
    /// The scenario file as written.
    pub scenario_text: String,
    /// `--vary` arguments as given.
    pub vary: Vec<String>,
    pub seed: Option<u64>,
    pub policy: Option<String>,
    /// `--target` as given, for the collected reports.
    pub target: Option<String>,
    /// Grid points, checked when the grid is rebuilt.
    pub points: usize,
}

impl JobPlan {
    /// The plan of `sweep` (planned from `file`, `varies` and `overrides`).
    pub fn new(
        file: &ScenarioFile,
        varies: &[Vary],
        overrides: &Overrides,
        target: Option<&Target>,
        points: usize,
    ) -> JobPlan {
        JobPlan {
            format: FORMAT,
            sim_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario_path: file.path().display().to_string(),
            scenario_text: file.text().to_string(),
            vary: varies.iter().map(|v| v.arg.clone()).collect(),
            seed: overrides.seed,
            policy: overrides.policy.clone(),
            target: target.map(Target::text),
            points,
        }
    }

    /// The file's bytes: pretty JSON and a final newline, the same for the same plan.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a plan serializes");
        s.push('\n');
        s
    }

    /// Parses `text` read from `path`; one line naming the file on error.
    pub fn parse(path: &Path, text: &str) -> Result<JobPlan, String> {
        let plan: JobPlan = serde_json::from_str(text).map_err(|e| {
            format!("{}: not a sweep plan ({e}); write it again with `sim sweep ... --emit-job`", path.display())
        })?;
        if plan.format != FORMAT {
            return Err(format!(
                "{}: plan format {} but this sim reads format {FORMAT}; emit the job again with this sim",
                path.display(),
                plan.format
            ));
        }
        if plan.sim_version != env!("CARGO_PKG_VERSION") {
            return Err(format!(
                "{}: written by sim {} but this is sim {}; run the points and collect with the sim that emitted the job",
                path.display(),
                plan.sim_version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        Ok(plan)
    }

    pub fn read(path: &Path) -> Result<JobPlan, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the sweep plan: {e}", path.display()))?;
        JobPlan::parse(path, &text)
    }

    /// What tells this plan from any other: FNV-1a 64 of its bytes, hex. A consistency
    /// check between a plan and its point files, not a security measure.
    pub fn hash(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.to_json().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    pub fn scenario_file(&self) -> ScenarioFile {
        ScenarioFile::from_text(&PathBuf::from(&self.scenario_path), &self.scenario_text)
    }

    pub fn target(&self) -> Result<Option<Target>, String> {
        self.target.as_deref().map(Target::parse).transpose()
    }

    /// The grid, planned as `sim sweep` plans it, without the check of each point against
    /// this machine's memory: a pod runs its point's modes one at a time under the memory
    /// the Job asked for, and `--collect` runs nothing.
    pub fn sweep(&self) -> Result<Sweep, PlanError> {
        without_machine_memory_check(|| self.sweep_checked())
    }

    fn sweep_checked(&self) -> Result<Sweep, PlanError> {
        let varies =
            self.vary.iter().map(|v| Vary::parse(v)).collect::<Result<Vec<_>, _>>().map_err(PlanError::Usage)?;
        let overrides = Overrides { seed: self.seed, policy: self.policy.clone() };
        let sweep = Sweep::plan(&self.scenario_file(), &varies, &overrides)?;
        if sweep.points.len() != self.points {
            return Err(PlanError::Usage(format!(
                "the plan says {} grid points but its grid has {}; emit the job again",
                self.points,
                sweep.points.len()
            )));
        }
        Ok(sweep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_as_written_and_unknown_fields_are_refused() {
        let file = ScenarioFile::from_text(Path::new("t.toml"), "name = \"t\"\n");
        let varies = [Vary::parse("cluster.pods=1..4:2g").unwrap()];
        let target = Target::parse("p2p.startup_p99_s<=2.5").unwrap();
        let over = Overrides { seed: Some(3), policy: Some("kraken".into()) };
        let plan = JobPlan::new(&file, &varies, &over, Some(&target), 2);
        let back = JobPlan::parse(Path::new("p.json"), &plan.to_json()).unwrap();
        assert_eq!((&back, back.hash()), (&plan, plan.hash()));
        assert_eq!(back.target().unwrap(), Some(target));
        let extra = plan.to_json().replacen('{', "{\"extra\": 1,", 1);
        let e = JobPlan::parse(Path::new("p.json"), &extra).unwrap_err();
        assert!(e.starts_with("p.json: not a sweep plan (unknown field `extra`"), "{e}");
        let old = JobPlan { sim_version: "0.0.1".into(), ..plan.clone() };
        let e = JobPlan::parse(Path::new("p.json"), &old.to_json()).unwrap_err();
        assert!(e.contains("written by sim 0.0.1 but this is sim"), "{e}");
        assert_ne!(JobPlan { seed: Some(4), ..plan.clone() }.hash(), plan.hash());
    }
}
