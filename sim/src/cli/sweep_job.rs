//! Sweeps on Kubernetes: `sim sweep ... --emit-job DIR`, `sim sweep-point` (what the Job's
//! pods run) and `sim sweep --collect DIR` (see `sim::sweep::job` and sim/README.md).
//!
//! Exit codes as `sim sweep`: 2 for a bad argument, plan or point file (one line naming the
//! file and what to do); `--collect` exits 1 when a run failed or no point meets the target.

use super::sweep::{check_target, exit_code, write_reports, SweepArgs};
use super::{out, path_or, split, Command, Failure, Parsed, UsageError};
use sim::report::format::thousands;
use sim::report::run_dir;
use sim::scenario::{without_machine_memory_check, ScenarioFile};
use sim::sweep::collect::collect;
use sim::sweep::job::{job_files, write_job_files, JobOptions, PVC_DEFAULT};
use sim::sweep::plan_file::{self, JobPlan};
use sim::sweep::point::{self, run_point};
use sim::sweep::{Overrides, Sweep};
use std::path::{Path, PathBuf};

/// Pods an Indexed Job runs at once, at most (Kubernetes allows more; a sweep has at most
/// `grid::POINTS_MAX` points).
const PARALLELISM_MAX: usize = sim::sweep::grid::POINTS_MAX;

/// `--emit-job DIR` and its options.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitArgs {
    pub dir: PathBuf,
    pub options: JobOptions,
}

/// `sim sweep-point PLAN --index I --out DIR`.
#[derive(Debug, Clone, PartialEq)]
pub struct PointArgs {
    pub plan: PathBuf,
    /// None: `$JOB_COMPLETION_INDEX`, as Kubernetes sets it in an Indexed Job's pods.
    pub index: Option<usize>,
    pub out: PathBuf,
}

/// The `--emit-job` flags of `sim sweep`; `--image`, `--parallelism` and `--pvc` only with it.
pub(super) fn parse_emit(p: &Parsed) -> Result<Option<EmitArgs>, UsageError> {
    let Some(dir) = p.take("emit-job") else {
        for flag in ["image", "parallelism", "pvc"] {
            if p.take(flag).is_some() {
                return Err(UsageError(format!("--{flag} is for --emit-job DIR (a sweep as a Kubernetes Job)")));
            }
        }
        return Ok(None);
    };
    let parallelism = match p.take("parallelism") {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=PARALLELISM_MAX).contains(&n) => Some(n),
            _ => {
                return Err(UsageError(format!(
                    "--parallelism: expected a whole number from 1 to {PARALLELISM_MAX}, got {v:?}"
                )))
            }
        },
    };
    let pvc = p.take("pvc").unwrap_or(PVC_DEFAULT).to_string();
    sim::sweep::job::check_pvc_name(&pvc).map_err(UsageError)?;
    let image = p.take("image").map_or_else(JobOptions::default_image, str::to_string);
    Ok(Some(EmitArgs { dir: PathBuf::from(dir), options: JobOptions { image, parallelism, pvc } }))
}

pub(super) fn parse_point(args: &[String]) -> Result<Command, UsageError> {
    let p = split("sweep-point", args, &["index", "out"])?;
    let plan = match p.positionals.as_slice() {
        [one] => PathBuf::from(one),
        [] => return Err(UsageError("`sim sweep-point` needs the plan file (plan.json from --emit-job)".into())),
        [_, extra, ..] => {
            return Err(UsageError(format!("`sim sweep-point` takes one plan file; unexpected {extra:?}")))
        }
    };
    let index = p
        .take("index")
        .map(|v| v.parse::<usize>().map_err(|_| UsageError(format!("--index: expected a whole number, got {v:?}"))))
        .transpose()?;
    if p.take("out").is_none() {
        return Err(UsageError("`sim sweep-point` needs --out DIR (where point-<index>.json goes)".into()));
    }
    Ok(Command::SweepPoint(PointArgs { plan, index, out: path_or(&p, "out", ".") }))
}

pub(super) fn cmd_emit_job(a: &SweepArgs, e: &EmitArgs) -> Result<i32, Failure> {
    let file = ScenarioFile::read(&a.scenario)?;
    let overrides = Overrides { seed: a.seed, policy: a.policy.clone() };
    // The points run on the cluster's nodes: their pods ask for the memory estimate, which
    // this machine need not have.
    let sweep = without_machine_memory_check(|| Sweep::plan(&file, &a.varies, &overrides))
        .map_err(|e| Failure::Input(e.to_string()))?;
    check_target(a, &sweep)?;
    run_dir(Path::new("reports"), &sweep.base.name)
        .map_err(|e| Failure::Input(format!("{}: name: {e}", a.scenario.display())))?;
    if sweep.base.scheduler_toml.is_some() || sweep.base.peerd_toml.is_some() {
        return Err(Failure::Input(format!(
            "{}: names scheduler_toml or peerd_toml, files the Job's pods would not have; write their tables into the scenario for --emit-job",
            a.scenario.display()
        )));
    }
    for note in &sweep.notes {
        eprintln!("note: {note}");
    }
    let plan = JobPlan::new(&file, &a.varies, &overrides, a.target.as_ref(), sweep.points.len());
    let files = job_files(&plan, &sweep, &e.options).map_err(Failure::Input)?;
    let written = write_job_files(&e.dir, &files).map_err(Failure::Input)?;
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("written: {}", names.join(", "));
    println!(
        "Job {}: {} grid points x {} modes; apply and collect as {} says",
        files.name,
        sweep.points.len(),
        sweep.modes.len(),
        e.dir.join("README.md").display()
    );
    Ok(0)
}

pub(super) fn cmd_sweep_point(a: &PointArgs) -> Result<i32, Failure> {
    let index = match a.index {
        Some(i) => i,
        None => match std::env::var("JOB_COMPLETION_INDEX") {
            Ok(v) => v.trim().parse::<usize>().map_err(|_| {
                Failure::Input(format!("JOB_COMPLETION_INDEX={v:?} is not a whole number; give --index I"))
            })?,
            Err(_) => return Err(Failure::Input(
                "no --index and no JOB_COMPLETION_INDEX (Kubernetes sets it in an Indexed Job's pods); give --index I"
                    .into(),
            )),
        },
    };
    let plan = JobPlan::read(&a.plan).map_err(Failure::Input)?;
    let sweep = plan.sweep().map_err(|e| Failure::Input(format!("{}: {e}", a.plan.display())))?;
    if index >= sweep.points.len() {
        let n = sweep.points.len();
        return Err(Failure::Input(format!(
            "{}: --index {index}: the grid has {n} points (indexes 0 to {})",
            a.plan.display(),
            n.saturating_sub(1)
        )));
    }
    // Unique among the Job's pods (all pid 1): the pod's name, else the index.
    let writer = std::env::var("HOSTNAME").unwrap_or_else(|_| format!("{index}-{}", std::process::id()));
    let unwritable = |e: String| Failure::Input(format!("{e} (--out must be a writable directory)"));
    // The plan's copy first: an unwritable --out fails before the point runs.
    point::write_atomic(&a.out, plan_file::FILE_NAME, &plan.to_json(), &writer).map_err(unwritable)?;
    let p = run_point(&plan, &sweep, index).map_err(|e| Failure::Input(format!("{}: {e}", a.plan.display())))?;
    let path = point::write_atomic(&a.out, &point::file_name(index), &p.to_json(), &writer).map_err(unwritable)?;
    let events: u64 = p.modes.iter().map(|m| m.events).sum();
    println!("written: {} ({}, {} events)", path.display(), p.point, thousands(events));
    let failed: Vec<&str> = p.modes.iter().filter(|m| m.error.is_some()).map(|m| m.mode.as_str()).collect();
    if !failed.is_empty() {
        // The file records the failure (collect lists it); the pod succeeds so that the
        // Job does not retry a deterministic failure.
        eprintln!("note: mode {} failed at this point (in the file)", failed.join(", "));
    }
    Ok(0)
}

pub(super) fn cmd_collect(dir: &Path, out_root: &Path) -> Result<i32, Failure> {
    let c = collect(dir).map_err(Failure::Input)?;
    let target =
        c.plan.target().map_err(|e| Failure::Input(format!("{}: {e}", dir.join(plan_file::FILE_NAME).display())))?;
    write_reports(
        out_root,
        Path::new(&c.plan.scenario_path),
        &c.plan.scenario_text,
        &c.sweep,
        &c.result,
        target.as_ref(),
    )?;
    println!(
        "collected {} points x {} modes from {}, {} events",
        c.sweep.points.len(),
        c.sweep.modes.len(),
        dir.display(),
        thousands(c.result.events)
    );
    Ok(exit_code(&c.result, target.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::super::args::testing::{args, err};
    use super::super::{main_with_args, parse as parse_all};
    use super::*;

    fn files_under(root: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_path_buf());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn emit_point_and_collect_arguments() {
        let Command::Sweep(a) = parse_all(&args(
            "sweep s.toml --vary cluster.pods=1..4:4 --emit-job j --image r/sim:2 --parallelism 3 --pvc my-claim",
        ))
        .unwrap() else {
            panic!()
        };
        let e = a.emit.unwrap();
        assert_eq!(e.dir, PathBuf::from("j"));
        assert_eq!(e.options, JobOptions { image: "r/sim:2".into(), parallelism: Some(3), pvc: "my-claim".into() });
        let Command::Sweep(d) = parse_all(&args("sweep s.toml --vary cluster.pods=1..4:4 --emit-job j")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            d.emit.unwrap().options,
            JobOptions { image: JobOptions::default_image(), parallelism: None, pvc: PVC_DEFAULT.into() }
        );
        assert_eq!(
            parse_all(&args("sweep --collect r --out o")).unwrap(),
            Command::SweepCollect { dir: "r".into(), out: "o".into() }
        );
        assert_eq!(
            parse_all(&args("sweep-point p.json --index 4 --out r")).unwrap(),
            Command::SweepPoint(PointArgs { plan: "p.json".into(), index: Some(4), out: "r".into() })
        );
        assert!(err("sweep s.toml --vary a.b=1..2:2 --pvc x").contains("--pvc is for --emit-job DIR"));
        assert!(err("sweep s.toml --vary a.b=1..2:2 --emit-job j --jobs 2").contains("--jobs and --out do not apply"));
        assert!(err("sweep s.toml --vary a.b=1..2:2 --emit-job j --parallelism 0").contains("--parallelism: expected"));
        assert!(err("sweep s.toml --vary a.b=1..2:2 --emit-job j --pvc Big").contains("--pvc \"Big\": a claim name"));
        assert!(err("sweep s.toml --collect r").contains("takes no scenario file"));
        assert!(err("sweep --collect r --vary a.b=1..2:2").contains("unknown flag --vary for `sim sweep --collect`"));
        assert!(err("sweep-point p.json --index x --out r").contains("--index: expected a whole number, got \"x\""));
        assert!(err("sweep-point p.json --index 1").contains("needs --out DIR"));
        assert!(err("sweep-point --out r").contains("needs the plan file"));
    }

    /// The whole path a Job takes, on this machine: emit, every index, collect; the reports
    /// are those of a local `sim sweep` of the same grid, byte for byte.
    #[test]
    fn collected_reports_are_the_local_sweeps_byte_for_byte() {
        let root = std::env::temp_dir().join(format!("sim-cli-sweep-job-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/fidelity/small-4.toml");
        let s = scenario.display();
        let grid =
            "--vary cluster.seed_peers=1..3:3 --vary registry.egress_gbps=0.2..0.4:2 --target p2p.startup_p99_s<=100";
        let (job, results, collected, local) =
            (root.join("job"), root.join("results"), root.join("collected"), root.join("local"));
        let run = |a: String| main_with_args(&args(&a));
        assert_eq!(run(format!("sweep {s} {grid} --emit-job {}", job.display())), 0);
        let names: Vec<PathBuf> =
            ["README.md", "copy-pod.yaml", "job.yaml", "plan.json", "pvc.yaml"].map(PathBuf::from).into();
        assert_eq!(files_under(&job), names);
        for i in 0..6 {
            assert_eq!(
                run(format!("sweep-point {} --index {i} --out {}", job.join("plan.json").display(), results.display())),
                0
            );
        }
        assert_eq!(
            run(format!("sweep-point {} --index 6 --out {}", job.join("plan.json").display(), results.display())),
            2
        );
        assert_eq!(run(format!("sweep --collect {} --out {}", results.display(), collected.display())), 0);
        assert_eq!(run(format!("sweep {s} {grid} --out {}", local.display())), 0);
        let files = files_under(&local);
        assert!(files.len() >= 8, "{files:?}");
        assert_eq!(files_under(&collected), files);
        for f in &files {
            let (a, b) = (std::fs::read(local.join(f)).unwrap(), std::fs::read(collected.join(f)).unwrap());
            assert!(a == b, "{} differs between the local and the collected sweep", f.display());
        }
        // Emitting again gives the same bytes.
        let again = root.join("job2");
        assert_eq!(run(format!("sweep {s} {grid} --emit-job {}", again.display())), 0);
        for f in &names {
            assert_eq!(std::fs::read(job.join(f)).unwrap(), std::fs::read(again.join(f)).unwrap(), "{}", f.display());
        }
        // A file where the directory should be: exit 2, not a panic.
        assert_eq!(run(format!("sweep {s} {grid} --emit-job {}", job.join("README.md").display())), 2);
        let _ = std::fs::remove_dir_all(&root);
    }
}
