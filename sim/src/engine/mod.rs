//! The discrete-event engine. It runs each mode of a scenario in virtual time over the
//! flow-level bandwidth model, driving the production `sched` and `peer` cores.

mod blobs;
mod bound;
mod cpu;
#[cfg(test)]
mod cpu_tests;
mod events;
#[cfg(test)]
mod preheat_tests;
mod world;

pub use bound::{image_bytes, lower_bound_s, manifest_path, node_count, request_floor_s, ManifestPath, Resolving};

use crate::result::{GroupNodes, ModeResult, RunResult};
use crate::scenario::{Mode, Scenario};
use sched::Policy;

/// What the caller wants to see while a run goes on.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Draw a progress bar on stderr (the CLI draws its own; kept for library callers).
    pub progress: bool,
    /// Record every piece transfer (`ModeResult::piece_trace`, `pieces.csv`): for small
    /// runs, to set beside a real run's (`bench/piece_trace.py`).
    pub trace_pieces: bool,
}

/// Runs every mode of `scenario` and returns the results.
pub fn run_scenario(scenario: &Scenario, options: &RunOptions) -> anyhow::Result<RunResult> {
    let policy = Policy::parse(&scenario.policy)
        .ok_or_else(|| anyhow::anyhow!("unknown policy {:?}; valid: {}", scenario.policy, Policy::NAMES.join(", ")))?;
    // The modes share nothing, so they run on threads of their own; each is deterministic
    // by itself and the results keep the scenario's mode order.
    let runs: Vec<anyhow::Result<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = scenario
            .modes
            .iter()
            .map(|mode| s.spawn(move || run_mode_with(scenario, *mode, policy, options.trace_pieces)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let modes = runs.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RunResult {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        policy: policy.name().to_string(),
        image_bytes: image_bytes(scenario),
        lower_bound_s: lower_bound_s(scenario),
        request_floor_s: request_floor_s(scenario, floor_mode(scenario), policy),
        modes,
        node_groups: node_groups(scenario),
        workloads: scenario.workloads.iter().map(|w| w.name.clone()).collect(),
        config_toml: effective_config_toml(scenario, policy)?,
    })
}

/// The declared node groups and their nodes (none for a cluster written without groups).
pub fn node_groups(scenario: &Scenario) -> Vec<GroupNodes> {
    if !scenario.cluster.has_groups() {
        return Vec::new();
    }
    let layout = scenario.cluster.layout().into_iter();
    layout.map(|g| GroupNodes { name: g.name, first_node: g.first_node, nodes: g.nodes, zone: g.zone }).collect()
}

/// The mode whose request floor a run prints beside the bound: its first p2p mode (both
/// resolve manifests alike), else oci.
pub fn floor_mode(scenario: &Scenario) -> Mode {
    scenario.modes.iter().copied().find(|m| *m != Mode::Oci).unwrap_or(Mode::Oci)
}

/// Runs one mode of `scenario` under `policy`: what `run_scenario` runs on each of its
/// threads, and what `sim sweep` runs as one unit of its grid.
pub fn run_mode(scenario: &Scenario, mode: Mode, policy: Policy) -> anyhow::Result<ModeResult> {
    run_mode_with(scenario, mode, policy, false)
}

fn run_mode_with(scenario: &Scenario, mode: Mode, policy: Policy, trace_pieces: bool) -> anyhow::Result<ModeResult> {
    let wall = std::time::Instant::now();
    let world = world::World::new(scenario, mode, policy)?;
    let world = if trace_pieces { world.traced() } else { world };
    let mut result = world.run()?;
    result.wall_s = wall.elapsed().as_secs_f64();
    Ok(result)
}

/// The run's core configuration as the two tables `scheduler.toml` and `peerd.toml` take.
pub fn effective_config_toml(scenario: &Scenario, policy: Policy) -> anyhow::Result<String> {
    let (sched, peer) =
        crate::scenario::core_configs(scenario, policy).map_err(|e| anyhow::anyhow!("{}: {e}", scenario.name))?;
    let mut doc = toml::Table::new();
    doc.insert("scheduler".into(), toml::Value::Table(toml::Table::try_from(&sched)?));
    doc.insert("peer".into(), toml::Value::Table(toml::Table::try_from(&peer)?));
    let preheats = scenario.workloads.iter().any(|w| w.preheat_at_s.is_some());
    if preheats {
        doc.insert("preheat".into(), toml::Value::Table(toml::Table::try_from(scenario.preheat)?));
    }
    let mut head = format!(
        "# The scheduler and peer configuration scenario {:?} ran (policy {}): every key, defaults\n\
         # included. [scheduler] goes into scheduler.toml, [peer] into peerd.toml.\n",
        scenario.name,
        policy.name()
    );
    if preheats {
        head.push_str("# [preheat] goes into the seed peers' peerd.toml.\n");
    }
    Ok(head + &toml::to_string(&doc)?)
}

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
