//! Scheduler configuration: one struct for the simulator and the production service.
//! `SchedulerConfig::preset(policy)` holds every default in one place; a configuration
//! file names a policy and overrides fields (serde, unknown keys refused).

use super::ids::{TimeNs, NS_PER_MS, NS_PER_S};
use super::overlay::{overlay, table_policy, OverlayError};
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
    /// filtering; the default policy draws from an index of possible parents and falls
    /// back to collecting at most this many eligible ones (`select::default_stripe`).
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
    /// Default policy: a task's pieces are dealt into this many stripes (piece number mod
    /// this), each with its own DAG; 1 to 64 (1: a single DAG per task, as Dragonfly).
    pub stripes: u32,
    /// Default policy: child edges (over all stripes) a peer takes in one task. Each edge
    /// carries one stripe, 1/stripes of a download, so `stripes` edges fill an upload as
    /// large as the child's download: an inner node's open slots in its home stripe end
    /// there (`tree.rs`), and the edges above it are overflow, taken only when no inner
    /// node of the stripe has room (a failed inner node's children, uneven stripes).
    pub stripe_fanout: u32,
    /// Default policy: children the seed peer takes per stripe (the trees' roots).
    pub seed_children_per_stripe: u32,
    /// Seed hosts triggered per task, by rendezvous hashing (Kraken's `max_replica` origins
    /// per blob). The first reads the origin; the others are replicas that take the task
    /// from the first (and the swarm) and then serve it as seeds.
    #[serde(default = "one_seed_per_task")]
    pub seed_peers_per_task: u32,
    /// Kraken: metainfo polling backoff while the origin is still fetching the blob.
    pub poll_initial_ns: TimeNs,
    pub poll_factor: f64,
    pub poll_max_ns: TimeNs,
}

fn one_seed_per_task() -> u32 {
    1
}

impl SchedulerConfig {
    /// Checks values no policy can work with; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.policy == Policy::Default {
            if !(1..=64).contains(&self.stripes) {
                return Err(format!("stripes = {}: the default policy needs 1 to 64 stripes", self.stripes));
            }
            if self.stripe_fanout < self.stripes {
                return Err(format!(
                    "stripe_fanout = {}: must be at least stripes ({}), or peers run out of parents",
                    self.stripe_fanout, self.stripes
                ));
            }
            if self.seed_children_per_stripe == 0 {
                return Err("seed_children_per_stripe = 0: the seed peer must feed at least one root per stripe".into());
            }
        }
        if self.candidate_parent_limit == 0 {
            return Err("candidate_parent_limit = 0: a peer could never get a parent".into());
        }
        if self.normal_upload_limit == 0 && self.seed_upload_limit == 0 {
            return Err("normal_upload_limit and seed_upload_limit are both 0: nobody could upload".into());
        }
        if self.filter_parent_limit == 0 {
            return Err("filter_parent_limit = 0: must be at least 1".into());
        }
        if self.seed_peers_per_task == 0 {
            return Err("seed_peers_per_task = 0: must be at least 1 (the seed host that reads the origin)".into());
        }
        if self.retry_interval_ns < NS_PER_MS {
            return Err(format!(
                "retry_interval_ns = {}: must be at least 1 ms (1000000); shorter retries spin the scheduler",
                self.retry_interval_ns
            ));
        }
        if self.peer_idle_timeout_ns < NS_PER_S {
            return Err(format!(
                "peer_idle_timeout_ns = {}: must be at least 1 s (1000000000)",
                self.peer_idle_timeout_ns
            ));
        }
        if !self.poll_factor.is_finite() || self.poll_factor < 1.0 {
            return Err(format!("poll_factor = {}: must be a finite number of at least 1.0", self.poll_factor));
        }
        if self.poll_max_ns < self.poll_initial_ns {
            return Err(format!("poll_max_ns = {}: must be at least poll_initial_ns", self.poll_max_ns));
        }
        Ok(())
    }

    /// The configuration a `[scheduler]` table describes: the preset of the policy it names
    /// (`policy`, else `default_policy`) with its other keys laid over it, then checked. The
    /// scheduler service (`scheduler.toml`) and the simulator (a scenario's `[scheduler]`)
    /// both read their tables with this. `order`: the table's keys as written, so the first
    /// bad one is reported.
    pub fn from_table(
        table: &toml::Table,
        order: &[String],
        default_policy: Policy,
    ) -> Result<SchedulerConfig, OverlayError> {
        let policy = table_policy(table, default_policy)?;
        let cfg = overlay(&SchedulerConfig::preset(policy), table, order, "[scheduler]", &[])?;
        cfg.validate().map_err(|message| {
            // The core's messages start with the field they are about ("stripes = 0: ...").
            let lead: String = message.chars().take_while(|ch| ch.is_ascii_lowercase() || *ch == '_').collect();
            let key = if table.contains_key(&lead) { lead } else { "policy".to_string() };
            OverlayError::new(key, message)
        })?;
        Ok(cfg)
    }

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
            stripes: 0,
            stripe_fanout: 0,
            seed_children_per_stripe: 0,
            seed_peers_per_task: 1,
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
                // hashring.max_replica as shipped (devcluster and helm: 2; the code default
                // is 3), kraken.md §1.3.
                seed_peers_per_task: 2,
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
                stripes: 8,
                // Inner nodes fill to `stripes` children; one overflow edge lets the
                // children of a failed inner node, or of a stripe with one inner node too
                // few, find a place at once.
                stripe_fanout: 9,
                seed_children_per_stripe: 1,
                ..dragonfly
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The baseline constants `sched/README.md` gives a source for ("The baseline presets").
    /// A change here changes what `sim compare-policies` compares against: update the table.
    #[test]
    fn presets_pin_their_sourced_constants() {
        let d = SchedulerConfig::preset(Policy::Dragonfly);
        assert_eq!((d.filter_parent_limit, d.candidate_parent_limit), (15, 4));
        assert_eq!(d.back_to_source_limit, 200);
        assert_eq!(d.retry_interval_ns, 500 * NS_PER_MS);
        assert_eq!((d.retry_back_to_source_limit, d.retry_limit), (4, 5));
        assert_eq!((d.normal_upload_limit, d.seed_upload_limit), (200, 2000));
        assert_eq!(d.seed_failed_timeout_ns, 30 * 60 * NS_PER_S);
        let k = SchedulerConfig::preset(Policy::Kraken);
        assert_eq!((k.candidate_parent_limit, k.filter_parent_limit), (50, 50));
        assert_eq!(k.back_to_source_limit, 0);
        assert_eq!((k.seed_peers_per_task, SchedulerConfig::preset(Policy::Dragonfly).seed_peers_per_task), (2, 1));
        assert_eq!((k.poll_initial_ns, k.poll_factor, k.poll_max_ns), (NS_PER_S, 1.3, 5 * NS_PER_S));
    }
}
