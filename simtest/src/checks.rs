//! The invariants checked on every run: downloads end (done or a reported error) within a
//! virtual-time bound, completed bytes equal the origin's, origin traffic stays within the
//! back-to-source limit, and no scheduler DAG ever holds a cycle.

use crate::cluster::{Attempt, Cluster, Ended};
use std::time::Duration;

/// Samples every scheduler replica's DAGs; remembers the first cycle seen.
#[derive(Default)]
pub struct DagWatch {
    pub checks: u64,
    pub first_violation: Option<String>,
}

impl DagWatch {
    pub fn check(&mut self, c: &Cluster) {
        let replicas = c.sched_state.lock().unwrap().clone();
        for (i, shared) in replicas.iter().enumerate() {
            let Some(shared) = shared else { continue };
            let cyclic = shared.read(|s| s.core().cyclic_tasks());
            self.checks += 1;
            if !cyclic.is_empty() && self.first_violation.is_none() {
                self.first_violation =
                    Some(format!("sched-{i} at {:?}: tasks {cyclic:?} have a peer that is its own ancestor", c.now()));
            }
        }
    }
}

/// What a scenario expects beyond the always-on checks.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Indexes of peers whose last attempt must have ended (peers killed for good are left out).
    pub peers: Vec<usize>,
    /// Every attempt must end by this virtual time.
    pub bound: Duration,
    /// A reported failure is acceptable (e.g. the origin keeps refusing); otherwise every
    /// last attempt must be done.
    pub failure_allowed: bool,
    /// Hosts that may read the blob from the origin; None: any (the scheduler was lost, so
    /// peers legitimately go back to source).
    pub origin_readers: Option<usize>,
}

/// All violations found, one line each; empty when the run is good.
pub fn verify(c: &Cluster, expect: &Expect, dag: &DagWatch) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(v) = &dag.first_violation {
        bad.push(format!("DAG invariant: {v}"));
    }
    let outcomes = c.outcomes();
    for i in &expect.peers {
        let name = &c.peer_names[*i];
        let last: Option<&Attempt> = outcomes.get(name).and_then(|a| a.last());
        match last.and_then(|a| a.ended.clone()) {
            None => bad.push(format!("{name}: download did not end within {:?} of virtual time", expect.bound)),
            Some((at, _)) if at > expect.bound => {
                bad.push(format!("{name}: ended at {at:?}, after {:?}", expect.bound))
            }
            Some((_, Ended::Done { sha_ok, bytes, .. })) => {
                if !sha_ok || bytes != c.spec.content_bytes {
                    bad.push(format!(
                        "{name}: completed {bytes} bytes (origin: {}), sha256 {}",
                        c.spec.content_bytes,
                        if sha_ok { "equal" } else { "differs" }
                    ));
                }
            }
            Some((_, Ended::Failed(e))) => {
                if !expect.failure_allowed {
                    bad.push(format!("{name}: failed: {e}"));
                }
            }
        }
    }
    // Any attempt that completed (also earlier ones of restarted peers) must be the blob.
    for (name, attempts) in &outcomes {
        for a in attempts {
            if let Some((_, Ended::Done { sha_ok: false, .. })) = &a.ended {
                bad.push(format!("{name}: an attempt completed with bytes that differ from the origin's"));
            }
        }
    }
    if let Some(readers) = expect.origin_readers {
        let t = c.origin.traffic(crate::cluster::BLOB_PATH);
        let clients = t.bytes_by_client.len();
        let useful = t.bytes_sent - t.bytes_cut;
        // A reader re-reads at most the piece it was in when its read broke; pieces are
        // re-read after origin faults, so allow one piece per injected fault on top.
        let limit = readers as u64 * c.spec.content_bytes + t.injected * c.spec.piece_bytes;
        if clients > readers {
            bad.push(format!(
                "origin: {clients} hosts read the blob, back-to-source limit allows {readers}: {:?}",
                t.bytes_by_client
            ));
        }
        if useful > limit {
            bad.push(format!("origin: served {useful} useful bytes, limit {limit} ({readers} readers)"));
        }
    }
    bad
}
