//! The `sim` command line: argument parsing (by hand, no framework) and the commands.
//!
//! Exit codes: 0 success; 1 a run failed or `check` found a regression; 2 bad usage, a bad
//! scenario file, or a missing/unreadable file.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sim::engine::{run_scenario, RunOptions};
use sim::report::check::{self, CheckError, Tolerances};
use sim::report::format::thousands;
use sim::report::html::{self, ScenarioText};
use sim::report::matrix::{write_matrix, MatrixEntry};
use sim::report::policies::{p2p_modes, PolicyTable};
use sim::report::{run_dir, write_run_reports, ChartContext};
use sim::result::RunResult;
use sim::scenario::{load_scenario, Scenario, ScenarioError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes to stdout. A reader that went away (`sim ... | head`) ends the program quietly
/// (exit 0: every report file is written before anything is printed about it), where
/// `print!` would panic on the broken pipe.
fn out(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

// `print!` and `println!` in this file go through `out`.
macro_rules! print {
    ($($arg:tt)*) => { out(format_args!($($arg)*)) };
}
macro_rules! println {
    () => { out(format_args!("\n")) };
    ($($arg:tt)*) => {{ out(format_args!($($arg)*)); out(format_args!("\n")); }};
}

mod args;
mod sweep;
mod sweep_job;

pub const USAGE: &str = "\
sim: deterministic P2P container-image distribution simulator

usage:
  sim SCENARIO.toml [--seed N] [--policy NAME] [--out DIR]
  sim matrix DIR_OR_FILES... [--seed N] [--policy NAME] [--out DIR]
  sim compare-policies SCENARIO.toml [--seed N] [--out DIR]
  sim sweep SCENARIO.toml --vary KEY=A..B:STEPS[g] [--vary KEY2=A..B:STEPS[g]]
            [--target MODE.METRIC<=VALUE] [--jobs N] [--seed N] [--policy NAME] [--out DIR]
  sim sweep SCENARIO.toml --vary ... [--target ...] [--seed N] [--policy NAME]
            --emit-job DIR [--image IMAGE] [--parallelism N] [--pvc NAME]
  sim sweep --collect DIR [--out DIR]
  sim sweep-point PLAN.json [--index I] --out DIR
  sim check [--baseline DIR] [--current DIR] [--tolerance-file FILE]
  sim bless [--from DIR] [--to DIR]
  sim fidelity-plan SCENARIO.toml --out DIR
  sim fidelity-compare SCENARIO.toml --measured FILE [--image FILE] [--out DIR]
                       [--max-error PCT] [--max-bytes-error PCT] [--max-oci-p50-error PCT]

options:
  --seed N               override the scenario's seed
  --policy NAME          override the scenario's scheduler policy: default, dragonfly, kraken
  --out DIR              reports go to DIR/<scenario>/ (matrix charts: DIR/matrix/) [reports]
  --baseline DIR         baseline summaries, DIR/<scenario>/summary.json [reports/baseline]
  --current DIR          fresh summaries, DIR/<scenario>/summary.json [reports]
  --vary KEY=A..B:STEPS  sweep: STEPS values of a numeric scenario key from A to B, both
                         included (e.g. cluster.seed_peers=1..4:4); STEPSg spaces them
                         geometrically (cluster.pods=50..5000:5g); twice for a grid of two keys
  --target EXPR          sweep: MODE.METRIC<=VALUE (or <, >=, >) over a column of sweep.csv,
                         e.g. p2p.startup_p99_s<=30; exit 1 when no point meets it
  --jobs N               sweep: runs at once [the machine's cores]
  --emit-job DIR         sweep: write a Kubernetes Indexed Job (one grid point per index) to DIR
                         instead of running: plan.json, job.yaml, pvc.yaml, copy-pod.yaml, README.md
  --image IMAGE          emit-job: the image holding this sim as `sim` [p2pimg/sim:<version>]
  --parallelism N        emit-job: pods at once [min(points, 16)]
  --pvc NAME             emit-job: the ReadWriteMany claim results go to [sim-sweep-results]
  --collect DIR          sweep: the Job's results (plan.json, point-*.json) into the reports a
                         local sweep of the plan writes; refuses while an index has no result
  --index I              sweep-point: the grid point [$JOB_COMPLETION_INDEX]
  --tolerance-file FILE  TOML `metric = percent` lines overriding the check tolerances
  --from DIR, --to DIR   bless copies FROM/<scenario>/summary.json to TO/ [reports, reports/baseline]
  --measured FILE        fidelity-compare: bench/netns_fanout.sh's output (fanout_pod/fanout_result)
  --image FILE           fidelity-compare: e2e-oci-push's JSON line, checked against [image]
  --max-error PCT        fidelity-compare: p50, p99 and makespan error allowed [10]
  --max-oci-p50-error PCT  fidelity-compare: oci p50's alone (TCP's unfair shares of the
                         registry's link are not modelled) [--max-error]
  --max-bytes-error PCT  fidelity-compare: registry bytes error allowed [2]

`sim fidelity-plan` writes DIR/env (what bench/netns_fanout.sh runs), DIR/scheduler-core.toml
and DIR/peer-core.toml (the tables the scheduler and every peerd take; DIR/peer-mirror.toml the
[mirror] keys), or refuses a scenario
this machine cannot emulate. `bench/fidelity.sh` runs both fidelity commands around the
emulation; reports go to DIR/<scenario>/ [reports/fidelity].

`sim sweep` writes DIR/<scenario>/sweep/: sweep.csv, sweep.md (also printed), charts and
index.html. `sim sweep-point` (what the Job's pods run) writes DIR/point-<I>.json and
DIR/plan.json; see sim/README.md, Sweeps on Kubernetes. Every run, matrix, compare-policies and sweep writes a self-contained HTML page:
DIR/<scenario>/index.html, policies.html, sweep/index.html, DIR/matrix/index.html.
`sim matrix DIR` runs the DIR/nginx-*.toml and DIR/tensorflow-*.toml scenarios.
exit status: 0 ok; 1 a run failed or check found a regression; 2 bad usage, bad scenario
file, or a missing/unreadable file.
";

use args::{one_scenario, parse_policy, parse_seed, path_or, split, split_repeating, Parsed};
pub use args::{parse, Command, UsageError};

// ---------------------------------------------------------------------------------------
// Running commands.

/// Why a command stopped, and its exit code.
enum Failure {
    /// Bad scenario file, missing input, unreadable baseline: exit 2.
    Input(String),
    /// The engine or report writing failed: exit 1.
    Run(anyhow::Error),
}

impl From<ScenarioError> for Failure {
    fn from(e: ScenarioError) -> Self {
        Failure::Input(e.to_string())
    }
}
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Run(e)
    }
}
impl From<CheckError> for Failure {
    fn from(e: CheckError) -> Self {
        Failure::Input(e.to_string())
    }
}

/// Runs the command line `args` (without the program name); returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    let cmd = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = match cmd {
        Command::Help => {
            print!("{USAGE}");
            Ok(0)
        }
        Command::Run { scenario, seed, policy, out } => cmd_run(&scenario, seed, policy, &out),
        Command::Matrix { inputs, seed, policy, out } => cmd_matrix(&inputs, seed, policy, &out),
        Command::ComparePolicies { scenario, seed, out } => cmd_compare(&scenario, seed, &out),
        Command::Check { baseline, current, tolerance_file } => {
            cmd_check(&baseline, &current, tolerance_file.as_deref())
        }
        Command::Bless { from, to } => cmd_bless(&from, &to),
        Command::Sweep(a) => match &a.emit {
            Some(e) => sweep_job::cmd_emit_job(&a, e),
            None => sweep::cmd_sweep(&a),
        },
        Command::SweepCollect { dir, out } => sweep_job::cmd_collect(&dir, &out),
        Command::SweepPoint(a) => sweep_job::cmd_sweep_point(&a),
        Command::FidelityPlan { scenario, out } => cmd_fidelity_plan(&scenario, &out),
        Command::FidelityCompare { scenario, measured, image, out, limits } => {
            cmd_fidelity_compare(&scenario, &measured, image.as_deref(), &out, limits)
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure::Input(msg)) => {
            eprintln!("error: {msg}");
            2
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn load(path: &Path, seed: Option<u64>, policy: &Option<String>) -> Result<Scenario, Failure> {
    let mut sc = load_scenario(path)?;
    if let Some(s) = seed {
        sc.seed = s;
    }
    if let Some(p) = policy {
        sc.policy = p.clone();
    }
    // Refuse early a name that cannot be a report directory.
    run_dir(Path::new("."), &sc.name).map_err(|e| Failure::Input(format!("{}: name: {e}", path.display())))?;
    Ok(sc)
}

fn chart_context(sc: &Scenario) -> ChartContext {
    ChartContext { registry_gbps: Some(sc.registry.egress_gbps), pods: Some(sc.cluster.pods()) }
}

/// A progress bar on stderr; drawn only when stderr is a terminal.
fn bar(len: Option<u64>) -> ProgressBar {
    let pb = match len {
        Some(n) => {
            let pb = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
            pb
        }
    };
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Simulated work and wall time of a command, for the closing speed line.
#[derive(Default)]
struct Speed {
    events: u64,
    sim_wall: Duration,
}

impl Speed {
    fn add(&mut self, run: &RunResult, wall: Duration) {
        self.events += run.modes.iter().map(|m| m.events).sum::<u64>();
        self.sim_wall += wall;
    }
    fn line(&self, total: Duration) -> String {
        let secs = self.sim_wall.as_secs_f64();
        let rate = if secs > 0.0 { self.events as f64 / secs } else { 0.0 };
        format!(
            "wall {:.2} s (simulation {:.2} s), {} events, {} events/s",
            total.as_secs_f64(),
            secs,
            thousands(self.events),
            thousands(rate.round() as u64)
        )
    }
}

fn simulate(sc: &Scenario, pb: &ProgressBar, speed: &mut Speed) -> anyhow::Result<RunResult> {
    simulate_with(sc, pb, speed, &RunOptions::default())
}

fn simulate_with(
    sc: &Scenario,
    pb: &ProgressBar,
    speed: &mut Speed,
    options: &RunOptions,
) -> anyhow::Result<RunResult> {
    let modes: Vec<&str> = sc.modes.iter().map(|m| m.name()).collect();
    pb.set_message(format!(
        "{}: {} pods, {} (policy {}, seed {})",
        sc.name,
        sc.cluster.pods(),
        modes.join(", "),
        sc.policy,
        sc.seed
    ));
    let t = Instant::now();
    // The CLI owns the progress display; the engine draws nothing.
    let run = run_scenario(sc, options).with_context(|| format!("simulating {}", sc.name))?;
    speed.add(&run, t.elapsed());
    Ok(run)
}

fn cmd_run(path: &Path, seed: Option<u64>, policy: Option<String>, out: &Path) -> Result<i32, Failure> {
    let start = Instant::now();
    let sc = load(path, seed, &policy)?;
    let mut speed = Speed::default();
    let pb = bar(None);
    let run = simulate(&sc, &pb, &mut speed);
    pb.finish_and_clear();
    let run = run?;
    let report = write_run_reports(out, &run, &chart_context(&sc))?;
    let page = html::run::write_run_page(out, &run, &chart_context(&sc), &ScenarioText::read(path, &sc)?)?;
    print!("{}", report.table);
    println!("reports in {} (open {})", report.dir.display(), page.display());
    println!("{}", speed.line(start.elapsed()));
    Ok(0)
}

/// The scenario files `sim matrix` runs: listed files as given, directories' nginx-* and
/// tensorflow-* `.toml` files sorted by name.
pub fn matrix_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = vec![];
    for input in inputs {
        if input.is_dir() {
            let rd = std::fs::read_dir(input).map_err(|e| format!("{}: {e}", input.display()))?;
            let mut found: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    p.is_file()
                        && name.ends_with(".toml")
                        && (name.starts_with("nginx-") || name.starts_with("tensorflow-"))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(format!("{}: no nginx-*.toml or tensorflow-*.toml scenario here", input.display()));
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(format!("{}: no such file or directory", input.display()));
        }
    }
    Ok(files)
}

fn cmd_matrix(inputs: &[PathBuf], seed: Option<u64>, policy: Option<String>, out: &Path) -> Result<i32, Failure> {
    let start = Instant::now();
    let files = matrix_inputs(inputs).map_err(Failure::Input)?;
    // Load every file first: a bad one stops the matrix before hours of running.
    let scenarios = files.iter().map(|f| load(f, seed, &policy)).collect::<Result<Vec<_>, _>>()?;
    let mut speed = Speed::default();
    let mut entries = vec![];
    let mut failed = vec![];
    let pb = bar(Some(scenarios.len() as u64));
    for (sc, file) in scenarios.iter().zip(&files) {
        match simulate(sc, &pb, &mut speed).and_then(|run| {
            let report = write_run_reports(out, &run, &chart_context(sc))?;
            html::run::write_run_page(out, &run, &chart_context(sc), &ScenarioText::read(file, sc)?)?;
            Ok((run, report))
        }) {
            Ok((run, report)) => {
                pb.suspend(|| println!("{}", report.table));
                entries.push(MatrixEntry::new(&run, sc.cluster.pods(), Some(sc.registry.egress_gbps)));
            }
            Err(e) => {
                pb.suspend(|| eprintln!("error: {e:#}"));
                failed.push(sc.name.clone());
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    if !entries.is_empty() {
        let dir = out.join("matrix");
        let mut files = write_matrix(&dir, &entries)?;
        let page = html::matrix::write_matrix_page(out, &entries)?;
        files.push(page.clone());
        println!(
            "matrix: {} scenarios x modes in {} ({} files; open {})",
            entries.len(),
            dir.display(),
            files.len(),
            page.display()
        );
    }
    println!("{}", speed.line(start.elapsed()));
    if failed.is_empty() {
        Ok(0)
    } else {
        eprintln!("error: {} scenario(s) failed: {}", failed.len(), failed.join(", "));
        Ok(1)
    }
}

fn cmd_compare(path: &Path, seed: Option<u64>, out: &Path) -> Result<i32, Failure> {
    let start = Instant::now();
    let mut sc = load(path, seed, &None)?;
    // Only the p2p modes differ between policies; oci would just cost time.
    sc.modes = p2p_modes(&sc.modes);
    let text = ScenarioText::read(path, &sc)?;
    let mut speed = Speed::default();
    let mut runs = vec![];
    let pb = bar(Some(sched::Policy::NAMES.len() as u64));
    for name in sched::Policy::NAMES {
        sc.policy = name.to_string();
        match simulate(&sc, &pb, &mut speed) {
            Ok(run) => runs.push((name.to_string(), run)),
            Err(e) => {
                pb.finish_and_clear();
                return Err(e.into());
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let table = PolicyTable::new(&runs);
    let dir = run_dir(out, &sc.name)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let csv_path = dir.join("policies.csv");
    std::fs::write(&csv_path, table.to_csv()?).with_context(|| format!("writing {}", csv_path.display()))?;
    let md = table.to_markdown();
    let md_path = dir.join("policies.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let page = html::policies::write_policies_page(out, &table, &text)?;
    print!("{md}");
    println!("written: {}, {}, {}", csv_path.display(), md_path.display(), page.display());
    println!("{}", speed.line(start.elapsed()));
    Ok(0)
}

fn cmd_check(baseline: &Path, current: &Path, tolerance_file: Option<&Path>) -> Result<i32, Failure> {
    let tol = match tolerance_file {
        None => Tolerances::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?;
            Tolerances::from_toml(p, &text)?
        }
    };
    match check::check(baseline, current, &tol) {
        Ok(outcome) => {
            print!("{}", outcome.render(&tol));
            Ok(outcome.exit_code())
        }
        Err(errors) => {
            for e in &errors[..errors.len() - 1] {
                eprintln!("error: {e}");
            }
            Err(Failure::Input(errors.last().map(|e| e.to_string()).unwrap_or_default()))
        }
    }
}

fn cmd_bless(from: &Path, to: &Path) -> Result<i32, Failure> {
    let copied = check::bless(from, to)?;
    for p in &copied {
        println!("blessed {}", p.display());
    }
    println!("{} baseline summaries updated in {}; review and commit them deliberately", copied.len(), to.display());
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// Fidelity: the simulator against an emulated rollout.

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| Failure::Run(anyhow::anyhow!("cannot write {}: {e}", path.display())))
}

/// The `[scheduler]` and `[peer]` tables of the run's effective configuration, apart.
fn core_tables(sc: &Scenario) -> Result<(String, String), Failure> {
    let policy =
        sched::Policy::parse(&sc.policy).ok_or_else(|| Failure::Input(format!("policy {:?}: unknown", sc.policy)))?;
    let (sched_cfg, peer_cfg) =
        sim::scenario::core_configs(sc, policy).map_err(|e| Failure::Input(format!("{}: {e}", sc.name)))?;
    let table = |name: &str, t: toml::Table| -> Result<String, Failure> {
        let mut doc = toml::Table::new();
        doc.insert(name.into(), toml::Value::Table(t));
        toml::to_string(&doc).map_err(|e| Failure::Run(anyhow::anyhow!("{e}")))
    };
    let s = toml::Table::try_from(&sched_cfg).map_err(|e| Failure::Run(anyhow::anyhow!("{e}")))?;
    let p = toml::Table::try_from(&peer_cfg).map_err(|e| Failure::Run(anyhow::anyhow!("{e}")))?;
    Ok((table("scheduler", s)?, table("peer", p)?))
}

/// The scenario's `[mirror]` keys as lines of the daemons' `[mirror]` table (no header:
/// `bench/netns_fanout.sh` writes the table, with the registry it proxies, and puts these
/// lines in it), so the real mirrors run the rule the simulator runs.
fn mirror_keys(m: &sim::scenario::Mirror) -> String {
    format!(
        "tag_ttl_ms = {}\nauth_check_ttl_ms = {}\nresolve_via_seeds = {}\n",
        m.tag_ttl_ms, m.auth_check_ttl_ms, m.resolve_via_seeds
    )
}

fn cmd_fidelity_plan(path: &Path, out: &Path) -> Result<i32, Failure> {
    let sc = load(path, None, &None)?;
    let plan = sim::fidelity::Plan::of(&sc).map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    let (sched_toml, peer_toml) = core_tables(&sc)?;
    std::fs::create_dir_all(out).map_err(|e| Failure::Run(anyhow::anyhow!("cannot create {}: {e}", out.display())))?;
    write_file(&out.join("env"), &plan.env())?;
    write_file(&out.join("scheduler-core.toml"), &sched_toml)?;
    write_file(&out.join("peer-core.toml"), &peer_toml)?;
    write_file(&out.join("peer-mirror.toml"), &mirror_keys(&sc.mirror))?;
    print!("{}", plan.env());
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    Ok(0)
}

fn read_input(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::Input(format!("{what} {}: {e}", path.display())))
}

fn cmd_fidelity_compare(
    path: &Path,
    measured_path: &Path,
    image: Option<&Path>,
    out: &Path,
    limits: sim::fidelity::Limits,
) -> Result<i32, Failure> {
    let sc = load(path, None, &None)?;
    let plan = sim::fidelity::Plan::of(&sc).map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    let measured = sim::fidelity::parse_measured(&read_input(measured_path, "--measured")?)
        .map_err(|e| Failure::Input(format!("{}: {e}", measured_path.display())))?;
    if let Some(image) = image {
        let pushed = sim::fidelity::pushed_layer_bytes(&read_input(image, "--image")?)
            .map_err(|e| Failure::Input(format!("{}: {e}", image.display())))?;
        sim::fidelity::check_pushed_layers(&sc.images()[0].layer_bytes, &pushed)
            .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    }
    // The simulator runs the modes that were measured.
    let mut sim_sc = sc.clone();
    sim_sc.modes = measured.modes.keys().copied().collect();
    let mut speed = Speed::default();
    let pb = bar(None);
    // Every piece transfer too (`sim/<name>/pieces.csv`), beside a traced real run's.
    let run = simulate_with(&sim_sc, &pb, &mut speed, &RunOptions { trace_pieces: true, ..RunOptions::default() });
    pb.finish_and_clear();
    let run = run?;
    let dir = run_dir(out, &sc.name).map_err(|e| Failure::Input(format!("{}: {e}", out.display())))?;
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Run(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    // The simulated run's own reports: DIR/<name>/sim/<name>/.
    write_run_reports(&dir.join("sim"), &run, &chart_context(&sc))?;
    let nodes = u64::from(sc.cluster.node_count());
    let mut cmp = sim::fidelity::compare(&run, &measured, &plan.client, sc.images()[0].manifest_bytes * nodes, limits);
    cmp.notes.extend(plan.notes.iter().cloned());
    let how = format!(
        "Emulation: {} pods at {} Mbit/s, registry {} Mbit/s, {} seed peer(s) at {} Mbit/s, client {}.",
        plan.pods, plan.pod_rate_mbit, plan.registry_rate_mbit, plan.seeds, plan.seed_rate_mbit, plan.client
    );
    write_file(&dir.join("comparison.md"), &cmp.markdown(&how))?;
    write_file(&dir.join("comparison.json"), &format!("{:#}\n", cmp.json()))?;
    write_file(&dir.join("pods.csv"), &cmp.pods_csv())?;
    let fig = sim::fidelity::chart::FidelityCdf {
        comparison: &cmp,
        subtitle: format!("solid: measured, dashed: simulated. {how}"),
    };
    sim::report::charts::render(&fig, &dir, "start_cdf")?;
    for m in &cmp.modes {
        for x in &m.metrics {
            println!(
                "{:<4} {:<18} measured {:>10}  simulated {:>10}  error {}",
                m.mode.name(),
                x.name,
                sim::fidelity::compare::show(x.unit, x.measured),
                sim::fidelity::compare::show(x.unit, x.simulated),
                sim::fidelity::compare::error_cell(x)
            );
        }
    }
    println!("reports in {}", dir.display());
    if cmp.passes() {
        let oci_p50 = match limits.oci_p50_pct {
            Some(l) if l != limits.time_pct => format!(", oci p50 within {l} %"),
            _ => String::new(),
        };
        println!(
            "fidelity: passes (times within {} %{oci_p50}, registry bytes within {} %)",
            limits.time_pct, limits.bytes_pct
        );
        Ok(0)
    } else {
        for f in &cmp.failures {
            println!("fidelity: FAILS: {f}");
        }
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::args::testing::{args, err};
    use super::*;

    /// The real mirrors get the scenario's `[mirror]` (one configuration): the lines the plan
    /// writes, put in a `[mirror]` table, read back as the same keys.
    #[test]
    fn the_plan_gives_the_real_mirrors_the_scenarios_mirror_keys() {
        let m = sim::scenario::Mirror { tag_ttl_ms: 0, auth_check_ttl_ms: 1500, resolve_via_seeds: false };
        let text = format!("[mirror]\ndefault_registry = \"r:5000\"\n{}", mirror_keys(&m));
        let mut table: toml::Table = toml::from_str(&text).unwrap();
        let mut mirror = table.remove("mirror").unwrap().try_into::<toml::Table>().unwrap();
        mirror.remove("default_registry");
        assert_eq!(toml::Value::Table(mirror).try_into::<sim::scenario::Mirror>().unwrap(), m);
        let keys: Vec<_> = mirror_keys(&m).lines().map(|l| l.split(' ').next().unwrap().to_string()).collect();
        assert_eq!(keys, sim::scenario::Mirror::KEYS, "every key the simulator models");
    }

    #[test]
    fn run_with_overrides() {
        assert_eq!(
            parse(&args("scenarios/tensorflow-500.toml --seed 7 --policy kraken --out /tmp/r")).unwrap(),
            Command::Run {
                scenario: "scenarios/tensorflow-500.toml".into(),
                seed: Some(7),
                policy: Some("kraken".into()),
                out: "/tmp/r".into()
            }
        );
        assert_eq!(
            parse(&args("run a.toml --seed=3")).unwrap(),
            Command::Run { scenario: "a.toml".into(), seed: Some(3), policy: None, out: "reports".into() }
        );
    }

    #[test]
    fn other_commands_and_defaults() {
        assert_eq!(
            parse(&args("matrix scenarios --out o")).unwrap(),
            Command::Matrix { inputs: vec!["scenarios".into()], seed: None, policy: None, out: "o".into() }
        );
        assert_eq!(
            parse(&args("compare-policies s.toml --seed 2")).unwrap(),
            Command::ComparePolicies { scenario: "s.toml".into(), seed: Some(2), out: "reports".into() }
        );
        assert_eq!(
            parse(&args("check")).unwrap(),
            Command::Check { baseline: "reports/baseline".into(), current: "reports".into(), tolerance_file: None }
        );
        assert_eq!(
            parse(&args("check --baseline b --current c --tolerance-file t.toml")).unwrap(),
            Command::Check { baseline: "b".into(), current: "c".into(), tolerance_file: Some("t.toml".into()) }
        );
        assert_eq!(
            parse(&args("bless")).unwrap(),
            Command::Bless { from: "reports".into(), to: "reports/baseline".into() }
        );
        assert_eq!(parse(&args("--help")).unwrap(), Command::Help);
        assert_eq!(parse(&args("matrix -h")).unwrap(), Command::Help);
    }

    #[test]
    fn errors_name_the_flag() {
        assert!(err("s.toml --sed 1").contains("unknown flag --sed"), "{}", err("s.toml --sed 1"));
        assert!(err("s.toml --seed").contains("--seed needs a value"));
        assert!(err("s.toml --seed abc").contains("--seed: expected a non-negative integer"));
        assert!(err("s.toml --seed -1").contains("--seed: expected a non-negative integer, got \"-1\""));
        let e = err("s.toml --policy fastest");
        assert!(e.contains("--policy") && e.contains("default, dragonfly, kraken"), "{e}");
        assert!(err("compare-policies s.toml --policy kraken").contains("unknown flag --policy"));
        assert!(err("s.toml --seed 1 --seed 2").contains("--seed given twice"));
        assert!(err("s.toml -x").contains("unknown flag -x"));
        assert!(err("").contains("missing scenario file"));
        assert!(err("a.toml b.toml").contains("unexpected \"b.toml\""));
        assert!(err("matrix").contains("needs a directory"));
        assert!(err("check extra").contains("unexpected \"extra\""));
        assert!(err("bless --out x").contains("unknown flag --out"));
        // One line each.
        for e in [err("s.toml --sed 1"), err("s.toml --policy x")] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn bad_flags_exit_2() {
        assert_eq!(main_with_args(&args("s.toml --bogus 1")), 2);
        assert_eq!(main_with_args(&args("check --baseline /nonexistent/sim-test-baseline")), 2);
    }

    #[test]
    fn a_missing_scenario_file_exits_2() {
        assert_eq!(main_with_args(&args("/nonexistent/sim-test.toml")), 2);
    }

    #[test]
    fn matrix_picks_nginx_and_tensorflow_files() {
        let d = std::env::temp_dir().join(format!("sim-cli-matrix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["nginx-50.toml", "tensorflow-500.toml", "capacity-10k.toml", "nginx-notes.md"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let files = matrix_inputs(std::slice::from_ref(&d)).unwrap();
        let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["nginx-50.toml", "tensorflow-500.toml"]);
        let listed = matrix_inputs(&[d.join("capacity-10k.toml")]).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(matrix_inputs(&[d.join("nope.toml")]).unwrap_err().contains("nope.toml"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
