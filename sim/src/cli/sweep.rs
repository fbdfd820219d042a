//! `sim sweep`: the command line around `sim::sweep` (see its module and sim/README.md).
//!
//! Exit 0 when every run finished and the target (if any) is met by some point; 1 when a run
//! failed or no point meets the target; 2 for a bad argument, a bad scenario file or a grid
//! value the scenario refuses (before anything runs).

use super::{
    one_scenario, out, parse_policy, parse_seed, path_or, split_repeating, Command, Failure, Parsed, UsageError,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sim::report::format::thousands;
use sim::report::html::sweep::write_sweep_page;
use sim::report::html::ScenarioText;
use sim::report::run_dir;
use sim::scenario::{machine_available_bytes, ScenarioFile};
use sim::sweep::charts::{write_charts, Capacity};
use sim::sweep::run::{jobs_within_memory, JOBS_MAX};
use sim::sweep::{Overrides, Sweep, SweepResult, Target, Vary};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct SweepArgs {
    pub scenario: PathBuf,
    pub varies: Vec<Vary>,
    pub target: Option<Target>,
    /// None: the machine's cores.
    pub jobs: Option<usize>,
    pub seed: Option<u64>,
    pub policy: Option<String>,
    pub out: PathBuf,
    /// `--emit-job DIR`: write a Kubernetes Job instead of running.
    pub emit: Option<super::sweep_job::EmitArgs>,
}

pub(super) fn parse(args: &[String]) -> Result<Command, UsageError> {
    if args.iter().any(|a| a == "--geometric") {
        return Err(UsageError(
            "unknown flag --geometric for `sim sweep`: spacing is chosen per key, end STEPS with g (e.g. --vary cluster.pods=50..5000:5g)"
                .into(),
        ));
    }
    if args.iter().any(|a| a == "--collect" || a.starts_with("--collect=")) {
        let p = split_repeating("sweep --collect", args, &["collect", "out"], &[])?;
        if let Some(extra) = p.positionals.first() {
            return Err(UsageError(format!(
                "`sim sweep --collect DIR` takes no scenario file (the plan in DIR names it); unexpected {extra:?}"
            )));
        }
        let dir = PathBuf::from(p.take("collect").expect("present"));
        return Ok(Command::SweepCollect { dir, out: path_or(&p, "out", "reports") });
    }
    let p: Parsed = split_repeating(
        "sweep",
        args,
        &["vary", "target", "jobs", "seed", "policy", "out", "emit-job", "image", "parallelism", "pvc"],
        &["vary"],
    )?;
    let varies = p.take_all("vary");
    if varies.is_empty() {
        return Err(UsageError(
            "`sim sweep` needs --vary KEY=A..B:STEPS, e.g. --vary cluster.seed_peers=1..4:4".into(),
        ));
    }
    if varies.len() > sim::sweep::grid::KEYS_MAX {
        return Err(UsageError(format!(
            "--vary given {} times; a sweep varies at most {} keys (a grid of two)",
            varies.len(),
            sim::sweep::grid::KEYS_MAX
        )));
    }
    let varies = varies.into_iter().map(Vary::parse).collect::<Result<Vec<_>, _>>().map_err(UsageError)?;
    let target = p.take("target").map(Target::parse).transpose().map_err(UsageError)?;
    let jobs = match p.take("jobs") {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=JOBS_MAX).contains(&n) => Some(n),
            _ => return Err(UsageError(format!("--jobs: expected a whole number from 1 to {JOBS_MAX}, got {v:?}"))),
        },
    };
    let emit = super::sweep_job::parse_emit(&p)?;
    if emit.is_some() && (jobs.is_some() || p.take("out").is_some()) {
        return Err(UsageError(
            "--emit-job writes a Job instead of running: --jobs and --out do not apply (the Job's pods run one point each; \
             `sim sweep --collect` takes --out)"
                .into(),
        ));
    }
    Ok(Command::Sweep(SweepArgs {
        scenario: one_scenario("sweep", &p)?,
        varies,
        target,
        jobs,
        seed: parse_seed(&p)?,
        policy: parse_policy(&p)?,
        out: path_or(&p, "out", "reports"),
        emit,
    }))
}

pub(super) fn cmd_sweep(a: &SweepArgs) -> Result<i32, Failure> {
    let start = Instant::now();
    let file = ScenarioFile::read(&a.scenario)?;
    let overrides = Overrides { seed: a.seed, policy: a.policy.clone() };
    let sweep = Sweep::plan(&file, &a.varies, &overrides).map_err(|e| Failure::Input(e.to_string()))?;
    run_dir(&a.out, &sweep.base.name).map_err(|e| Failure::Input(format!("{}: name: {e}", a.scenario.display())))?;
    check_target(a, &sweep)?;
    for note in &sweep.notes {
        eprintln!("note: {note}");
    }
    let units = sweep.points.len() * sweep.modes.len();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut jobs = a.jobs.unwrap_or(cores).min(units.max(1));
    if let Some(available) = machine_available_bytes() {
        let fit = jobs_within_memory(&sweep.points, jobs, available);
        if fit < jobs {
            eprintln!(
                "note: {fit} runs at once instead of {jobs}: the largest grid points' runs would not fit together in the {:.1} GiB available",
                available as f64 / (1u64 << 30) as f64
            );
            jobs = fit;
        }
    }

    let pb = progress_bar();
    let result = sweep.run(jobs, &mut |p| {
        pb.set_length(p.cost_total.max(1));
        pb.set_position(p.cost_done);
        pb.set_message(format!("{}/{} runs", p.units_done, p.units));
    });
    pb.finish_and_clear();

    write_reports(&a.out, &a.scenario, file.text(), &sweep, &result, a.target.as_ref())?;
    // As the other commands: wall time, and the runs' own wall times added up ("simulation").
    println!(
        "wall {:.2} s (simulation {:.2} s in {units} runs on {jobs} thread(s)), {} events",
        start.elapsed().as_secs_f64(),
        result.runs_wall_s,
        thousands(result.events)
    );
    Ok(exit_code(&result, a.target.as_ref()))
}

/// A target over a mode the scenario does not run is refused before anything runs.
pub(super) fn check_target(a: &SweepArgs, sweep: &Sweep) -> Result<(), Failure> {
    if let Some(t) = &a.target {
        if !sweep.modes.contains(&t.mode) {
            let modes: Vec<&str> = sweep.modes.iter().map(|m| m.name()).collect();
            return Err(Failure::Input(format!(
                "--target {}: {} does not run mode {} (its modes: {})",
                t.text(),
                a.scenario.display(),
                t.mode.name(),
                modes.join(", ")
            )));
        }
    }
    Ok(())
}

/// Writes `OUT/<scenario>/sweep/` (`sweep.csv`, `sweep.md`, charts) and the sweep's
/// `index.html`, prints `sweep.md` and what was written: the same for a local sweep and a
/// collected one.
pub(super) fn write_reports(
    out_root: &Path,
    scenario_path: &Path,
    scenario_text: &str,
    sweep: &Sweep,
    result: &SweepResult,
    target: Option<&Target>,
) -> Result<(), Failure> {
    let dir = run_dir(out_root, &sweep.base.name)
        .map_err(|e| Failure::Input(format!("{}: name: {e}", scenario_path.display())))?
        .join("sweep");
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Run(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    let csv_path = dir.join("sweep.csv");
    let md_path = dir.join("sweep.md");
    let md = result.markdown(target);
    super::write_file(&csv_path, &result.csv()?)?;
    super::write_file(&md_path, &md)?;
    let capacity = match sweep.grid.dims.iter().position(|d| d.key == "registry.egress_gbps") {
        Some(0) => Capacity::AlongX,
        Some(_) => Capacity::None,
        None => Capacity::Constant(sweep.base.registry.egress_gbps),
    };
    let charts = write_charts(&dir, result, target, capacity)?;
    let text = ScenarioText::of(scenario_path, scenario_text, &sweep.base)?;
    let page = write_sweep_page(out_root, result, target, &text)?;
    print!("{md}");
    println!();
    println!(
        "written: {}, {}, {} and {} charts in {}",
        csv_path.display(),
        md_path.display(),
        page.display(),
        charts.len(),
        dir.display()
    );
    Ok(())
}

/// 1 when a run failed or no point meets the target (said on stderr), else 0.
pub(super) fn exit_code(result: &SweepResult, target: Option<&Target>) -> i32 {
    if !result.failures.is_empty() {
        eprintln!(
            "error: {} of {} runs failed (listed above)",
            result.failures.len(),
            result.grid.len() * result.modes.len()
        );
        return 1;
    }
    match target {
        Some(t) if result.judge(t).cheapest().is_none() => {
            eprintln!("target {} not met by any grid point", t.text());
            1
        }
        _ => 0,
    }
}

/// Weighted by each run's expected work, so the ETA means something when points differ in
/// size; drawn only when stderr is a terminal.
fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} sweep [{bar:30}] {percent:>3}% {msg} ({elapsed}, about {eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message("starting");
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

#[cfg(test)]
mod tests {
    use super::super::args::testing::{args, err};
    use super::super::{main_with_args, parse as parse_all};
    use super::*;

    #[test]
    fn sweep_arguments() {
        let Command::Sweep(a) = parse_all(&args(
            "sweep s.toml --vary cluster.pods=50..5000:5g --vary cluster.seed_peers=1..4:4 --target p2p.startup_p99_s<=30 --jobs 3 --seed 2 --out o",
        ))
        .unwrap() else {
            panic!("not a sweep")
        };
        assert_eq!(a.scenario, PathBuf::from("s.toml"));
        assert_eq!(a.varies.len(), 2);
        assert!(a.varies[0].geometric && !a.varies[1].geometric);
        assert_eq!(a.target.unwrap().text(), "p2p.startup_p99_s <= 30");
        assert_eq!((a.jobs, a.seed, a.out), (Some(3), Some(2), PathBuf::from("o")));
        let Command::Sweep(d) = parse_all(&args("sweep s.toml --vary seed=1..3:3")).unwrap() else { panic!() };
        assert_eq!((d.jobs, d.target, d.out, d.emit), (None, None, PathBuf::from("reports"), None));
    }

    #[test]
    fn sweep_errors_name_the_argument() {
        assert!(err("sweep s.toml").contains("needs --vary KEY=A..B:STEPS"));
        let e = err("sweep s.toml --vary a.b=1..2:2 --vary c.d=1..2:2 --vary e.f=1..2:2");
        assert!(e.contains("--vary given 3 times"), "{e}");
        let e = err("sweep s.toml --vary cluster.pods=1..4");
        assert!(e.starts_with("--vary \"cluster.pods=1..4\": no :STEPS"), "{e}");
        let e = err("sweep s.toml --vary a.b=1..2:2 --target p2p.p99<30");
        assert!(e.starts_with("--target \"p2p.p99<30\": unknown metric"), "{e}");
        assert!(
            err("sweep s.toml --vary a.b=1..2:2 --jobs 0").contains("--jobs: expected a whole number from 1 to 1024")
        );
        assert!(err("sweep s.toml --vary a.b=1..2:2 --geometric").contains("end STEPS with g"));
        assert!(err("sweep s.toml --vary a.b=1..2:2 --target x<1 --target y<2").contains("--target given twice"));
        assert!(err("sweep --vary a.b=1..2:2").contains("needs a scenario file"));
    }

    #[test]
    fn a_missing_file_or_key_exits_2() {
        assert_eq!(main_with_args(&args("sweep /nonexistent/sim-sweep.toml --vary cluster.pods=1..2:2")), 2);
    }
}
