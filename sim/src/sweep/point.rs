//! `sim sweep-point PLAN --index I --out DIR`: one grid point of a planned sweep (every
//! mode), written as `DIR/point-<I>.json` for `sim sweep --collect`. What a point file
//! holds is what `sweep.csv` is built from; no clock, so the same point gives the same bytes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan_file::JobPlan;
use super::run::{run_grid, Outcome};
use super::Sweep;
use crate::report::summary::ModeSummary;

/// `point-<index>.json`.
pub fn file_name(index: usize) -> String {
    format!("point-{index}.json")
}

/// One grid point's results. Field order is the file's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointFile {
    /// `JobPlan::hash` of the plan it ran.
    pub plan: String,
    pub index: usize,
    /// "cluster.seed_peers = 2", for a reader.
    pub point: String,
    /// One per mode, in report order.
    pub modes: Vec<ModeOutcome>,
}

/// One mode's run: its summary, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeOutcome {
    pub mode: String,
    pub events: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<ModeSummary>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl ModeOutcome {
    /// Back to what `run_grid` gives (wall time is not kept: it is not a result).
    pub fn outcome(&self) -> Option<Result<Outcome, String>> {
        match (&self.summary, &self.error) {
            (Some(s), None) => Some(Ok(Outcome { summary: s.clone(), events: self.events, wall_s: 0.0 })),
            (None, Some(e)) => Some(Err(e.clone())),
            _ => None,
        }
    }
}

/// Runs point `index` of `sweep` (its modes one after another).
pub fn run_point(plan: &JobPlan, sweep: &Sweep, index: usize) -> Result<PointFile, String> {
    let n = sweep.points.len();
    if index >= n {
        return Err(format!("--index {index}: the grid has {n} points (indexes 0 to {})", n.saturating_sub(1)));
    }
    let outcomes = run_grid(&sweep.points[index..=index], &sweep.modes, 1, &mut |_| {});
    let modes = sweep
        .modes
        .iter()
        .zip(outcomes)
        .map(|(m, o)| match o {
            Ok(o) => {
                ModeOutcome { mode: m.name().to_string(), events: o.events, summary: Some(o.summary), error: None }
            }
            Err(e) => ModeOutcome { mode: m.name().to_string(), events: 0, summary: None, error: Some(e) },
        })
        .collect();
    Ok(PointFile { plan: plan.hash(), index, point: sweep.grid.label(index), modes })
}

impl PointFile {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a point serializes");
        s.push('\n');
        s
    }

    pub fn parse(path: &Path, text: &str) -> Result<PointFile, String> {
        serde_json::from_str(text)
            .map_err(|e| format!("{}: not a sweep point file ({e}); delete it and run its index again", path.display()))
    }
}

/// Writes `text` to `dir/name` whole or not at all: a temporary file in `dir` named with
/// `writer` (unique among concurrent writers: pods of a Job all run as pid 1), then a rename
/// (a reader never sees half a file; pods writing the same file leave one whole copy).
pub fn write_atomic(dir: &Path, name: &str, text: &str, writer: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{writer}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot rename to {}: {e}", tmp.display(), path.display())
    })?;
    Ok(path)
}
