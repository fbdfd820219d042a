//! `sim sweep --collect DIR`: a sweep's result from `DIR/plan.json` and the `point-<I>.json`
//! its Job wrote, the same `SweepResult` a local `sim sweep` of the plan builds, so the same
//! reports. Every point must be there and belong to the plan.

use std::path::Path;

use super::plan_file::{self, JobPlan};
use super::point::{self, PointFile};
use super::{Sweep, SweepResult};

/// A collected sweep: the plan, its grid and the result.
pub struct Collected {
    pub plan: JobPlan,
    pub sweep: Sweep,
    pub result: SweepResult,
}

/// Reads `dir`; one line naming the file and what to do on any problem.
pub fn collect(dir: &Path) -> Result<Collected, String> {
    if !dir.is_dir() {
        return Err(format!(
            "--collect {}: not a directory; give the directory the Job's results were copied to (it holds {} and point-*.json)",
            dir.display(),
            plan_file::FILE_NAME
        ));
    }
    let plan_path = dir.join(plan_file::FILE_NAME);
    let plan = JobPlan::read(&plan_path)?;
    let sweep = plan.sweep().map_err(|e| format!("{}: {e}", plan_path.display()))?;
    let hash = plan.hash();
    let n = sweep.points.len();
    let mut found: Vec<Option<PointFile>> = vec![None; n];
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(index) = name.strip_prefix("point-").and_then(|r| r.strip_suffix(".json")) else { continue };
        let path = entry.path();
        let index: usize = index.parse().map_err(|_| {
            format!("{}: not a point file name (point-<index>.json); remove or rename it", path.display())
        })?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let p = PointFile::parse(&path, &text)?;
        if p.plan != hash {
            return Err(format!(
                "{}: written for plan {} but {} is plan {hash}; copy the results of this plan's Job, or remove the file",
                path.display(),
                p.plan,
                plan_path.display()
            ));
        }
        if p.index != index || index >= n {
            return Err(format!(
                "{}: holds index {} of a {n}-point grid; the file name and its index must agree, within the grid",
                path.display(),
                p.index
            ));
        }
        found[index] = Some(p);
    }
    let missing: Vec<usize> = (0..n).filter(|&i| found[i].is_none()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{}: {} of {n} points have no result: index {}; wait for the Job (or rerun those indexes) and copy the results again",
            dir.display(),
            missing.len(),
            ranges(&missing)
        ));
    }
    let mut outcomes = Vec::with_capacity(n * sweep.modes.len());
    for (i, p) in found.into_iter().enumerate() {
        let p = p.expect("checked above");
        let path = dir.join(point::file_name(i));
        for m in &sweep.modes {
            let o = p.modes.iter().find(|o| o.mode == m.name()).and_then(|o| o.outcome()).ok_or_else(|| {
                format!("{}: no result for mode {}; delete it and run index {i} again", path.display(), m.name())
            })?;
            outcomes.push(o);
        }
    }
    let result = SweepResult::new(&sweep, outcomes);
    Ok(Collected { plan, sweep, result })
}

/// "0-2, 5, 7-9".
fn ranges(sorted: &[usize]) -> String {
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        out.push(if i == j { sorted[i].to_string() } else { format!("{}-{}", sorted[i], sorted[j]) });
        i = j + 1;
    }
    out.join(", ")
}
