//! What the scheduler knows of hosts, tasks and peers.

use super::bitset::PieceSet;
use super::dag::Dag;
use super::fed::FedIndex;
use super::ids::{HostId, PeerId, TaskId, TimeNs};
use super::tree::TreeIndex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HostKind {
    Normal,
    Seed,
}

/// What a host announces about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub id: HostId,
    pub kind: HostKind,
    /// `area|country|province|city|...`; compared element by element.
    pub location: String,
    pub idc: String,
    /// A host that refuses to serve others.
    pub disable_shared: bool,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub info: HostInfo,
    pub upload_limit: u32,
    /// Current child edges across all tasks.
    pub concurrent_uploads: u32,
    /// Child edges ever added, and piece failures children blamed on this host.
    pub upload_count: u64,
    pub upload_failed_count: u64,
    /// Peers ever registered on this host: a change of its free uploads concerns them.
    pub peers: Vec<PeerId>,
}

impl Host {
    pub fn free_uploads(&self) -> u32 {
        self.upload_limit.saturating_sub(self.concurrent_uploads)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerState {
    /// Registered, not yet given parents or an order.
    Received,
    Running,
    BackToSource,
    Succeeded,
    Failed,
    Leave,
}

/// Piece download costs, kept as running sums so the outlier test is O(1).
#[derive(Debug, Clone, Default)]
pub struct CostStats {
    pub count: u64,
    sum: f64,
    sum_sq: f64,
    pub last_ns: u64,
    /// Outcome of the test when `last_ns` was added.
    pub last_is_outlier: bool,
}

impl CostStats {
    /// Dragonfly's bad-node rule: with fewer than 30 earlier samples, an outlier is more
    /// than 20 x their mean; with 30 or more, more than mean + 3 standard deviations.
    pub fn add(&mut self, cost_ns: u64) {
        let c = cost_ns as f64;
        self.last_is_outlier = if self.count < 1 {
            false
        } else {
            let n = self.count as f64;
            let mean = self.sum / n;
            if self.count < 30 {
                c > 20.0 * mean
            } else {
                let var = (self.sum_sq / n - mean * mean).max(0.0);
                c > mean + 3.0 * var.sqrt()
            }
        };
        self.count += 1;
        self.sum += c;
        self.sum_sq += c * c;
        self.last_ns = cost_ns;
    }
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub id: PeerId,
    pub task: TaskId,
    pub host: HostId,
    pub state: PeerState,
    pub finished: PieceSet,
    pub costs: CostStats,
    pub blocked: BTreeSet<PeerId>,
    pub need_back_to_source: bool,
    /// Empty scheduling rounds so far (Dragonfly retry loop, Kraken polls).
    pub rounds_without_parents: u32,
    /// Default policy: parked until an eligible parent appears.
    pub waiting_since: Option<TimeNs>,
    pub registered_ns: TimeNs,
    pub last_progress_ns: TimeNs,
    pub is_seed: bool,
    /// Default policy: the stripe whose tree this peer is an inner node of.
    pub home_stripe: Option<u32>,
    /// Default policy: hops from the seed peer in each stripe's tree (`UNFED`: no parent yet).
    pub stripe_depth: Vec<u16>,
    /// Default policy: child edges in all stripe DAGs of the task (kept, not recounted).
    pub stripe_children: u32,
    /// Fetches only part of the task (`RegisterPeer::partial`) until
    /// `Scheduler::peer_wants_all` or its finish.
    pub partial: bool,
}

/// `Peer::stripe_depth` of a peer without a parent in that stripe.
pub const UNFED: u16 = u16::MAX;

#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    /// Ring key (hash of the wire task id) for seed-peer choice.
    pub key: u64,
    pub piece_count: u32,
    pub content_length: u64,
    /// Peers in registration order (deterministic iteration).
    pub peers: Vec<PeerId>,
    pub dag: Dag,
    pub back_to_source: BTreeSet<PeerId>,
    pub seed_triggered: Option<(HostId, TimeNs)>,
    pub seed_failed_ns: Option<TimeNs>,
    pub seed_peer: Option<PeerId>,
    /// Default policy: children that reported the seed peer failing them (piece_failed or
    /// a blocked parent in reschedule); `SEED_LOST_REPORTS` of them mean the seed is gone.
    pub seed_blockers: BTreeSet<PeerId>,
    /// Default policy: one DAG per stripe (pieces p with p % stripes == s). Each refuses
    /// cycles on its own; across stripes two peers may feed each other.
    pub stripe_dags: Vec<Dag>,
    /// Default policy: peers by home stripe, in registration order.
    pub home_members: Vec<Vec<PeerId>>,
    pub waiting: BTreeSet<PeerId>,
    /// Default policy: waiting peers by stripe they lack a parent in.
    pub waiting_in: Vec<BTreeSet<PeerId>>,
    /// Default policy: peers that could take a child, by stripe (any fed peer below the
    /// fan-out cap: the fallback when `tree` has no place).
    pub fed: FedIndex,
    /// Default policy: inner nodes with room or with a leaf child, by stripe.
    pub tree: TreeIndex,
    /// Default policy: children placed under a peer that is no inner node of the stripe
    /// (`Placement::Fallback`), moved up when an inner node has room (checked lazily).
    pub strays: Vec<BTreeSet<PeerId>>,
    /// Default policy: stripes that gained a possible parent since their waiters were
    /// last woken (bit s: stripe s).
    pub dirty: u64,
    /// Peers running, back-to-source or finished (a registering peer is the task's first
    /// download when there is none).
    pub serving: u32,
}

impl Task {
    /// Default policy: the peer waits for a parent in each stripe it has none in.
    pub fn wait(&mut self, peer: PeerId) {
        self.waiting.insert(peer);
        for (si, d) in self.stripe_dags.iter().enumerate() {
            if d.in_degree(peer) == 0 {
                self.waiting_in[si].insert(peer);
            } else {
                self.waiting_in[si].remove(&peer);
            }
        }
    }

    pub fn unwait(&mut self, peer: PeerId) {
        if self.waiting.remove(&peer) {
            for w in &mut self.waiting_in {
                w.remove(&peer);
            }
        }
    }
}
