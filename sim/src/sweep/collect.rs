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
        if found[index].is_some() {
            return Err(format!(
                "{}: a second file for index {index} (another name of {}); remove one",
                path.display(),
                point::file_name(index)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioFile;
    use crate::sweep::point::{run_point, write_atomic};
    use crate::sweep::{Overrides, Vary};
    use std::path::PathBuf;

    fn small4() -> ScenarioFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/fidelity/small-4.toml");
        ScenarioFile::read(&path).unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sim-collect-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Each point run as a Job's pod runs it (plan read back from its file), into `dir`.
    fn run_points(plan: &JobPlan, dir: &Path) {
        write_atomic(dir, plan_file::FILE_NAME, &plan.to_json(), "t").unwrap();
        let plan = JobPlan::read(&dir.join(plan_file::FILE_NAME)).unwrap();
        let sweep = plan.sweep().unwrap();
        for i in 0..plan.points {
            let p = run_point(&plan, &sweep, i).unwrap();
            write_atomic(dir, &point::file_name(i), &p.to_json(), &i.to_string()).unwrap();
        }
        let e = run_point(&plan, &sweep, plan.points).unwrap_err();
        assert_eq!(e, "--index 3: the grid has 3 points (indexes 0 to 2)");
    }

    #[test]
    fn collected_csv_is_byte_identical_to_a_local_sweep() {
        let file = small4();
        let varies = [Vary::parse("cluster.seed_peers=1..3:3").unwrap()];
        let over = Overrides { seed: Some(7), policy: None };
        let target = crate::sweep::Target::parse("p2p.startup_p99_s<=100").unwrap();
        let local = Sweep::plan(&file, &varies, &over).unwrap();
        let local_result = local.run(2, &mut |_| {});
        let plan = JobPlan::new(&file, &varies, &over, Some(&target), local.points.len());
        let dir = scratch("same");
        run_points(&plan, &dir);
        let c = collect(&dir).unwrap();
        assert_eq!(c.result.csv().unwrap(), local_result.csv().unwrap());
        let t = c.plan.target().unwrap();
        assert_eq!(c.result.markdown(t.as_ref()), local_result.markdown(Some(&target)));
        assert_eq!(c.result.events, local_result.events);
        // Running a point again gives the same bytes.
        let p1 = std::fs::read_to_string(dir.join("point-1.json")).unwrap();
        assert_eq!(run_point(&plan, &c.sweep, 1).unwrap().to_json(), p1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_foreign_and_broken_point_files_are_named() {
        let file = small4();
        let varies = [Vary::parse("cluster.seed_peers=1..3:3").unwrap()];
        let plan = JobPlan::new(&file, &varies, &Overrides::default(), None, 3);
        let dir = scratch("errors");
        run_points(&plan, &dir);
        let p = |i: usize| dir.join(point::file_name(i));

        std::fs::remove_file(p(0)).unwrap();
        std::fs::remove_file(p(2)).unwrap();
        let e = collect(&dir).err().unwrap();
        assert!(e.ends_with("2 of 3 points have no result: index 0, 2; wait for the Job (or rerun those indexes) and copy the results again"), "{e}");

        let other = JobPlan { seed: Some(99), ..plan.clone() };
        let sweep = other.sweep().unwrap();
        std::fs::write(p(0), run_point(&other, &sweep, 0).unwrap().to_json()).unwrap();
        let e = collect(&dir).err().unwrap();
        assert!(e.starts_with(&format!("{}: written for plan {}", p(0).display(), other.hash())), "{e}");

        std::fs::write(p(0), "{\"plan\": 1}").unwrap();
        let e = collect(&dir).err().unwrap();
        assert!(e.starts_with(&format!("{}: not a sweep point file (", p(0).display())), "{e}");
        assert!(e.ends_with("delete it and run its index again"), "{e}");

        std::fs::remove_file(p(0)).unwrap();
        std::fs::copy(p(1), dir.join("point-0.json")).unwrap();
        let e = collect(&dir).err().unwrap();
        assert!(e.contains("point-0.json: holds index 1 of a 3-point grid"), "{e}");

        std::fs::remove_file(p(0)).unwrap();
        std::fs::copy(p(1), dir.join("point-01.json")).unwrap();
        let e = collect(&dir).err().unwrap();
        assert!(e.contains("a second file for index 1"), "{e}");

        let e = collect(&dir.join("nowhere")).err().unwrap();
        assert!(e.contains("nowhere: not a directory"), "{e}");
        std::fs::write(dir.join(plan_file::FILE_NAME), "{}").unwrap();
        let e = collect(&dir).err().unwrap();
        assert!(e.contains("plan.json: not a sweep plan (missing field"), "{e}");
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
