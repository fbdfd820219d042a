//! `[preheat]`: the seed peers' preheat limits, the keys of peerd.toml's `[preheat]` of the
//! same names and defaults (`peer::core::PreheatLimits`). A workload's `preheat_at_s` starts
//! a job.

use serde::{Deserialize, Serialize};

use super::validate::{fail, Invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preheat {
    /// Jobs one seed runs at once; more wait their turn.
    pub jobs_in_flight: usize,
    /// Blobs of one job a seed fetches at once.
    pub blobs_in_flight: usize,
}

impl Default for Preheat {
    fn default() -> Self {
        let core = peer::core::PreheatLimits::default();
        Preheat { jobs_in_flight: core.jobs_in_flight, blobs_in_flight: core.blobs_in_flight }
    }
}

impl Preheat {
    pub fn is_default(&self) -> bool {
        *self == Preheat::default()
    }

    pub fn limits(&self) -> peer::core::PreheatLimits {
        peer::core::PreheatLimits { jobs_in_flight: self.jobs_in_flight, blobs_in_flight: self.blobs_in_flight }
    }

    pub(super) fn validate(&self) -> Result<(), Invalid> {
        match self.limits().check() {
            Ok(()) => Ok(()),
            Err((key, message)) => fail(&format!("preheat.{key}"), message),
        }
    }
}
