//! The discrete-event engine. It runs each mode of a scenario in virtual time over the
//! flow-level bandwidth model, driving the production `sched` and `peer` cores.

mod bound;
mod events;
mod world;

pub use bound::{image_bytes, lower_bound_s, node_count};

use crate::result::RunResult;
use crate::scenario::Scenario;
use sched::Policy;

/// What the caller wants to see while a run goes on.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Draw a progress bar on stderr (the CLI draws its own; kept for library callers).
    pub progress: bool,
}

/// Runs every mode of `scenario` and returns the results.
pub fn run_scenario(scenario: &Scenario, _options: &RunOptions) -> anyhow::Result<RunResult> {
    let policy = Policy::parse(&scenario.policy)
        .ok_or_else(|| anyhow::anyhow!("unknown policy {:?}; valid: {}", scenario.policy, Policy::NAMES.join(", ")))?;
    let mut modes = Vec::new();
    for mode in &scenario.modes {
        let wall = std::time::Instant::now();
        let mut result = world::World::new(scenario, *mode, policy).run()?;
        result.wall_s = wall.elapsed().as_secs_f64();
        modes.push(result);
    }
    Ok(RunResult {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        policy: policy.name().to_string(),
        image_bytes: image_bytes(scenario),
        lower_bound_s: lower_bound_s(scenario),
        modes,
    })
}

#[cfg(test)]
mod tests;
