//! The discrete-event engine (in progress).
use crate::result::RunResult;
use crate::scenario::Scenario;

/// What the caller wants to see while a run goes on.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

/// Runs every mode of `scenario` and returns the results.
pub fn run_scenario(_scenario: &Scenario, _options: &RunOptions) -> anyhow::Result<RunResult> {
    anyhow::bail!("engine not ready")
}
