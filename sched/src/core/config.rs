//! Scheduler configuration: one struct for the simulator and the production service.
//! `SchedulerConfig::preset(policy)` holds every default in one place; a configuration
//! file names a policy and overrides fields (serde, unknown keys refused).

use super::ids::{TimeNs, NS_PER_MS, NS_PER_S};
use super::policy::Policy;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub policy: Policy,
    /// Parents returned per scheduling round (Dragonfly candidateParentLimit; Kraken's
    /// tracker handout size).
    pub candidate_parent_limit: usize,
    /// Peers of the task examined per round. Dragonfly samples this many *before*
    /// filtering; the default policy filters first and stops after this many eligible.
    pub filter_parent_limit: usize,
    /// Peers of one task that may go back to the registry at once.
    pub back_to_source_limit: u32,
    /// Dragonfly's retry loop: wait this long when no parent is found...
    pub retry_interval_ns: TimeNs,
    /// ...send the peer back to source after this many empty rounds...
    pub retry_back_to_source_limit: u32,
    /// ...and fail scheduling after this many.
    pub retry_limit: u32,
    /// Children (edges, across tasks) a normal host may serve at once.
    pub normal_upload_limit: u32,
    /// Children a seed host may serve at once.
    pub seed_upload_limit: u32,
    /// A failed seed peer is not triggered again for the same task for this long.
    pub seed_failed_timeout_ns: TimeNs,
    /// A running peer that reports no piece for this long is evicted (Leave).
    pub peer_idle_timeout_ns: TimeNs,
    /// Default policy: a waiting peer goes back to source after this long without any
    /// eligible parent (only when no seed peer serves the task).
    pub wait_for_parent_timeout_ns: TimeNs,
    /// Default policy: children that fetch *new* pieces straight from a task's seed peer,
    /// each from its own stripe (piece number mod this), so every piece leaves the seed
    /// about once.
    pub seed_stripes: u32,
    /// Kraken: metainfo polling backoff while the origin is still fetching the blob.
    pub poll_initial_ns: TimeNs,
    pub poll_factor: f64,
    pub poll_max_ns: TimeNs,
}

impl SchedulerConfig {
    pub fn preset(policy: Policy) -> SchedulerConfig {
        let dragonfly = SchedulerConfig {
            policy,
            candidate_parent_limit: 4,
            filter_parent_limit: 15,
            back_to_source_limit: 200,
            retry_interval_ns: 500 * NS_PER_MS,
            retry_back_to_source_limit: 4,
            retry_limit: 5,
            normal_upload_limit: 200,
            seed_upload_limit: 2000,
            seed_failed_timeout_ns: 30 * 60 * NS_PER_S,
            peer_idle_timeout_ns: 30 * 60 * NS_PER_S,
            wait_for_parent_timeout_ns: 0,
            seed_stripes: 0,
            poll_initial_ns: 0,
            poll_factor: 1.0,
            poll_max_ns: 0,
        };
        match policy {
            Policy::Dragonfly => dragonfly,
            Policy::Kraken => SchedulerConfig {
                // Tracker: up to 50 random peers per announce, plus every origin.
                candidate_parent_limit: 50,
                filter_parent_limit: 50,
                // Agents never go to the storage backend; only origins do.
                back_to_source_limit: 0,
                retry_back_to_source_limit: u32::MAX,
                retry_limit: u32::MAX,
                normal_upload_limit: u32::MAX,
                seed_upload_limit: u32::MAX,
                poll_initial_ns: NS_PER_S,
                poll_factor: 1.3,
                poll_max_ns: 5 * NS_PER_S,
                ..dragonfly
            },
            Policy::Default => SchedulerConfig {
                candidate_parent_limit: 6,
                filter_parent_limit: 256,
                // Seed peers take the registry; normal peers only when no seed can.
                back_to_source_limit: 3,
                retry_back_to_source_limit: u32::MAX,
                retry_limit: u32::MAX,
                // Edges across all tasks of a host; the score spreads children evenly below it.
                normal_upload_limit: 48,
                seed_upload_limit: 64,
                wait_for_parent_timeout_ns: 10 * NS_PER_S,
                seed_stripes: 8,
                ..dragonfly
            },
        }
    }
}
