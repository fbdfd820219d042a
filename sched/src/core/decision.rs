//! What the scheduler tells its driver to do. The driver delivers each decision to the
//! peer it names (a gRPC stream message in production, an event in the simulator).

use super::ids::{HostId, PeerId, TaskId};
use serde::{Deserialize, Serialize};

/// A share of a parent's pieces: piece numbers p with p % count == index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stripe {
    pub index: u32,
    pub count: u32,
}

impl Stripe {
    pub fn contains(self, piece: u32) -> bool {
        piece % self.count == self.index
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub peer: PeerId,
    pub host: HostId,
    /// When set, the child fetches only this stripe's pieces from this parent (unless it
    /// has nothing else to do): the seed's upload then carries each piece about once.
    pub stripe: Option<Stripe>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Make `seed_host` download the task back-to-source (it registers a peer with
    /// `need_back_to_source`).
    TriggerSeed { task: TaskId, seed_host: HostId },
    /// The peer's parents from now on (the set is replaced, not merged, except where the
    /// peer's own policy merges handouts, as Kraken agents do).
    Parents { peer: PeerId, parents: Vec<ParentRef> },
    /// Download from the origin.
    BackToSource { peer: PeerId, reason: BackToSourceReason },
    /// Scheduling gave up on this peer.
    Failed { peer: PeerId, reason: FailReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackToSourceReason {
    /// A triggered seed peer, or a peer told to fetch itself because no seed exists.
    Ordered,
    /// No parent was found within the retry budget.
    NoParents,
    /// The peer gave up on P2P and asked (`Scheduler::ask_back_to_source`); the task was
    /// under its back-to-source limit.
    PeerAsked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    RetryLimit,
    /// No parent and back-to-source is not allowed for this task.
    NoSource,
}
