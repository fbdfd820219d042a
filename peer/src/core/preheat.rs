//! How a seed peer runs preheat jobs: how many at once, and how many blobs of one job it
//! fetches at once. The daemon (`[preheat]` of peerd.toml) and the simulator read these
//! limits from here, so a simulated preheat paces itself as the deployed one does (a
//! scenario's `[preheat]` is this table).

use serde::{Deserialize, Serialize};

/// A seed's preheat limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreheatLimits {
    /// Jobs one seed runs at once; more wait their turn.
    pub jobs_in_flight: usize,
    /// Blobs of one job fetched at once (containerd pulls 3 at a time by default).
    pub blobs_in_flight: usize,
}

impl Default for PreheatLimits {
    fn default() -> Self {
        PreheatLimits { jobs_in_flight: 2, blobs_in_flight: 4 }
    }
}

/// The most of either: a seed's piece slots and its link bound it long before this.
pub const MAX_IN_FLIGHT: usize = 64;

impl PreheatLimits {
    pub fn is_default(&self) -> bool {
        *self == PreheatLimits::default()
    }

    /// (key, what is wrong) for the first limit out of range.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [("jobs_in_flight", self.jobs_in_flight), ("blobs_in_flight", self.blobs_in_flight)] {
            if !(1..=MAX_IN_FLIGHT).contains(&value) {
                return Err((key, format!("is {value}; must be between 1 and {MAX_IN_FLIGHT}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_zero_or_too_many_are_named() {
        assert_eq!(PreheatLimits::default().check(), Ok(()));
        let e = PreheatLimits { blobs_in_flight: 0, ..Default::default() }.check().unwrap_err();
        assert_eq!(e.0, "blobs_in_flight");
        let e = PreheatLimits { jobs_in_flight: 65, ..Default::default() }.check().unwrap_err();
        assert_eq!(e, ("jobs_in_flight", "is 65; must be between 1 and 64".to_string()));
    }
}
