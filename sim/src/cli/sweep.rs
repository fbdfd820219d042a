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
use sim::sweep::{Overrides, Sweep, Target, Vary};
use std::path::PathBuf;
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
}

pub(super) fn parse(args: &[String]) -> Result<Command, UsageError> {
    if args.iter().any(|a| a == "--geometric") {
        return Err(UsageError(
            "unknown flag --geometric for `sim sweep`: spacing is chosen per key, end STEPS with g (e.g. --vary cluster.pods=50..5000:5g)"
                .into(),
        ));
    }
    let p: Parsed = split_repeating("sweep", args, &["vary", "target", "jobs", "seed", "policy", "out"], &["vary"])?;
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
    Ok(Command::Sweep(SweepArgs {
        scenario: one_scenario("sweep", &p)?,
        varies,
        target,
        jobs,
        seed: parse_seed(&p)?,
        policy: parse_policy(&p)?,
        out: path_or(&p, "out", "reports"),
    }))
}

pub(super) fn cmd_sweep(a: &SweepArgs) -> Result<i32, Failure> {
    let start = Instant::now();
    let file = ScenarioFile::read(&a.scenario)?;
    let overrides = Overrides { seed: a.seed, policy: a.policy.clone() };
    let sweep = Sweep::plan(&file, &a.varies, &overrides).map_err(|e| Failure::Input(e.to_string()))?;
    let dir = run_dir(&a.out, &sweep.base.name)
        .map_err(|e| Failure::Input(format!("{}: name: {e}", a.scenario.display())))?
        .join("sweep");
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

    std::fs::create_dir_all(&dir).map_err(|e| Failure::Run(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    let csv_path = dir.join("sweep.csv");
    let md_path = dir.join("sweep.md");
    let md = result.markdown(a.target.as_ref());
    super::write_file(&csv_path, &result.csv()?)?;
    super::write_file(&md_path, &md)?;
    let capacity = match sweep.grid.dims.iter().position(|d| d.key == "registry.egress_gbps") {
        Some(0) => Capacity::AlongX,
        Some(_) => Capacity::None,
        None => Capacity::Constant(sweep.base.registry.egress_gbps),
    };
    let charts = write_charts(&dir, &result, a.target.as_ref(), capacity)?;
    let text = ScenarioText::of(&a.scenario, file.text(), &sweep.base)?;
    let page = write_sweep_page(&a.out, &result, a.target.as_ref(), &text)?;
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
    // As the other commands: wall time, and the runs' own wall times added up ("simulation").
    println!(
        "wall {:.2} s (simulation {:.2} s in {units} runs on {jobs} thread(s)), {} events",
        start.elapsed().as_secs_f64(),
        result.runs_wall_s,
        thousands(result.events)
    );
    if !result.failures.is_empty() {
        eprintln!("error: {} of {units} runs failed (listed above)", result.failures.len());
        return Ok(1);
    }
    Ok(match &a.target {
        Some(t) if result.judge(t).cheapest().is_none() => {
            eprintln!("target {} not met by any grid point", t.text());
            1
        }
        _ => 0,
    })
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
    use super::super::{main_with_args, parse as parse_all};
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn err(s: &str) -> String {
        parse_all(&args(s)).unwrap_err().0
    }

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
        assert_eq!((d.jobs, d.target, d.out), (None, None, PathBuf::from("reports")));
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
