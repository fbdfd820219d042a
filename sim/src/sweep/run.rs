//! Running a grid: every (point, mode) is one unit, run on `jobs` threads. A unit runs its
//! mode, keeps the summary and drops the per-pod record, so memory holds `jobs` runs at a
//! time whatever the grid's size. Units are handed out costliest first (the longest run
//! should not start last and leave the other threads idle), and each result goes to its
//! unit's slot, so the output does not depend on `jobs` or on which thread ran what.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::engine::{image_bytes, node_count, run_mode};
use crate::report::summary::ModeSummary;
use crate::scenario::{mode_bytes, Mode, Scenario};

/// Threads a sweep may use: more than any machine here has cores, and each holds a run.
pub const JOBS_MAX: usize = 1024;

/// One unit's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub summary: ModeSummary,
    pub events: u64,
    pub wall_s: f64,
}

/// Where the grid is, after a unit finished.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub point: usize,
    pub mode: Mode,
    pub units_done: usize,
    pub units: usize,
    /// Estimated work done and in all (`unit_cost`), for a bar whose ETA means something.
    pub cost_done: u64,
    pub cost_total: u64,
}

/// A unit's expected work: hosts x image megabytes (the engine's events grow with both).
pub fn unit_cost(sc: &Scenario) -> u64 {
    let hosts = u64::from(node_count(sc)) + u64::from(sc.cluster.seed_peers);
    hosts.saturating_mul((image_bytes(sc) / 1_000_000).max(1))
}

/// The most threads whose runs fit in `available_bytes` at once (the costliest units
/// together), from `jobs` down to 1.
pub fn jobs_within_memory(points: &[Scenario], jobs: usize, available_bytes: u64) -> usize {
    let mut per_run: Vec<u64> =
        points.iter().flat_map(|sc| std::iter::repeat_n(mode_bytes(sc), sc.modes.len())).collect();
    per_run.sort_unstable_by(|a, b| b.cmp(a));
    let mut j = jobs.max(1);
    while j > 1 {
        let need: u64 = per_run.iter().take(j).copied().fold(0u64, u64::saturating_add);
        if need <= available_bytes {
            break;
        }
        j -= 1;
    }
    j
}

/// Runs every mode of every point on `jobs` threads; the result of point `p`, mode `m` is
/// at `p * modes.len() + m`. `on_progress` is called on this thread after each unit.
pub fn run_grid(
    points: &[Scenario],
    modes: &[Mode],
    jobs: usize,
    on_progress: &mut dyn FnMut(&Progress),
) -> Vec<Result<Outcome, String>> {
    let units = points.len() * modes.len();
    let cost: Vec<u64> = points.iter().map(unit_cost).collect();
    let mut order: Vec<usize> = (0..units).collect();
    // Costliest first; equal costs in grid order.
    order.sort_by_key(|&u| (std::cmp::Reverse(cost[u / modes.len()]), u));
    let cost_total: u64 = order.iter().map(|&u| cost[u / modes.len()]).sum();
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Outcome, String>>> = vec![None; units];
    let jobs = jobs.clamp(1, units.max(1));
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(usize, Result<Outcome, String>)>();
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                let tx = tx.clone();
                let (order, next) = (&order, &next);
                s.spawn(move || {
                    while let Some(&unit) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let outcome = run_unit(&points[unit / modes.len()], modes[unit % modes.len()]);
                        if tx.send((unit, outcome)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let (mut done, mut cost_done) = (0, 0);
        for (unit, outcome) in rx {
            done += 1;
            cost_done += cost[unit / modes.len()];
            results[unit] = Some(outcome);
            on_progress(&Progress {
                point: unit / modes.len(),
                mode: modes[unit % modes.len()],
                units_done: done,
                units,
                cost_done,
                cost_total,
            });
        }
        for w in workers {
            if let Err(panic) = w.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    results.into_iter().map(|r| r.expect("every unit reports once")).collect()
}

fn run_unit(sc: &Scenario, mode: Mode) -> Result<Outcome, String> {
    let policy = sched::Policy::parse(&sc.policy).ok_or_else(|| format!("unknown policy {:?}", sc.policy))?;
    let result = run_mode(sc, mode, policy).map_err(|e| format!("{e:#}"))?;
    // The per-pod record goes out of scope here: only the summary is kept.
    Ok(Outcome { summary: ModeSummary::of(&result), events: result.events, wall_s: result.wall_s })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    #[test]
    fn fewer_jobs_when_the_largest_runs_do_not_fit_together() {
        let sc = |pods: u32| {
            let text = format!(
                "name = \"m\"\nmodes = [\"oci\", \"p2p\"]\n[cluster]\npods = {pods}\n[image]\nreference = \"r\"\nlayer_bytes = [100_000_000]\n"
            );
            parse_scenario(&text, "m.toml").unwrap()
        };
        let points = vec![sc(10), sc(10_000)];
        let big = mode_bytes(&points[1]);
        assert!(big > 50_000_000, "{big}");
        // The two modes of the 10,000-pod point are the two largest runs.
        assert_eq!(jobs_within_memory(&points, 2, 2 * big), 2);
        assert_eq!(jobs_within_memory(&points, 2, 2 * big - 1), 1);
        assert_eq!(jobs_within_memory(&points, 4, 0), 1);
        assert!(unit_cost(&points[1]) > unit_cost(&points[0]));
    }
}
