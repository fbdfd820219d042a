//! The simulator checked against real emulated rollouts.
//!
//! `bench/fidelity.sh SCENARIO.toml` asks `sim fidelity-plan` what to emulate (`plan`),
//! runs it on real processes in network namespaces (`bench/netns_fanout.sh`), then gives
//! the script's output to `sim fidelity-compare`, which runs the simulator on the same
//! file and writes `reports/fidelity/<name>/`: `comparison.md`, `comparison.json`,
//! `pods.csv`, `start_cdf.png`/`.svg` and the simulated run's own reports under `sim/`.

pub mod chart;
pub mod compare;
pub mod measured;
pub mod plan;

pub use compare::{compare, Comparison, Limits};
pub use measured::{parse as parse_measured, pushed_layer_bytes, Measured};
pub use plan::{Plan, Refused};

/// The pushed image must be the scenario's: layer by layer within this share.
pub const LAYER_BYTES_TOLERANCE: f64 = 0.005;

/// Checks the image `e2e-oci-push` pushed against `[image] layer_bytes`.
pub fn check_pushed_layers(scenario_layers: &[u64], pushed: &[u64]) -> Result<(), String> {
    let off = scenario_layers.len() != pushed.len()
        || scenario_layers
            .iter()
            .zip(pushed)
            .any(|(&want, &got)| (got as f64 - want as f64).abs() > want as f64 * LAYER_BYTES_TOLERANCE);
    if off {
        let list: Vec<String> = pushed.iter().map(|b| b.to_string()).collect();
        return Err(format!(
            "the pushed image is not the scenario's: its layers are [{}] bytes; set [image] layer_bytes to that \
             (or change [emulation] layers_mib)",
            list.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_layers_within_half_a_percent_are_the_scenarios() {
        assert!(check_pushed_layers(&[1000, 2000], &[1004, 1995]).is_ok());
        let e = check_pushed_layers(&[1000, 2000], &[1000, 2100]).unwrap_err();
        assert!(e.contains("[1000, 2100]"), "{e}");
        assert!(check_pushed_layers(&[1000], &[1000, 5]).is_err());
    }
}
