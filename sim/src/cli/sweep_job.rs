//! Sweeps on Kubernetes: `sim sweep ... --emit-job DIR`, `sim sweep-point` (what the Job's
//! pods run) and `sim sweep --collect DIR` (see `sim::sweep::job` and sim/README.md).
//!
//! Exit codes as `sim sweep`: 2 for a bad argument, plan or point file (one line naming the
//! file and what to do); `--collect` exits 1 when a run failed or no point meets the target.

use super::sweep::{check_target, exit_code, write_reports, SweepArgs};
use super::{out, path_or, split, Command, Failure, Parsed, UsageError};
use sim::report::format::thousands;
use sim::scenario::ScenarioFile;
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
    let sweep = Sweep::plan(&file, &a.varies, &overrides).map_err(|e| Failure::Input(e.to_string()))?;
    check_target(a, &sweep)?;
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
    let p = run_point(&plan, &sweep, index).map_err(|e| Failure::Input(format!("{}: {e}", a.plan.display())))?;
    // Unique among the Job's pods (all pid 1): the pod's name, else the index.
    let writer = std::env::var("HOSTNAME").unwrap_or_else(|_| format!("{index}-{}", std::process::id()));
    point::write_atomic(&a.out, plan_file::FILE_NAME, &plan.to_json(), &writer).map_err(Failure::Input)?;
    let path = point::write_atomic(&a.out, &point::file_name(index), &p.to_json(), &writer).map_err(Failure::Input)?;
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
