//! The event queue: earliest time first, then insertion order, so equal times replay in
//! the same order on every run.

use super::world::{ManifestKey, SchedRequest};
use crate::net::TimeNs;
use sched::core::{Decision, PeerId, TaskId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A pod is bound to its node.
    PodScheduled {
        pod: u32,
    },
    /// A rolling update's start: its first pods are created.
    RollingStep {
        workload: usize,
    },
    /// A pod of a rolling update became ready: more may be created.
    PodReady {
        workload: usize,
    },
    /// A HEAD by tag answered (a mirror that keeps nothing, or containerd alone).
    ManifestHeadDone {
        pull: usize,
    },
    /// A node's mirror's request for a pull reached a seed peer's resolver.
    ResolverAsked {
        seed: usize,
        pull: usize,
        key: ManifestKey,
    },
    StartTransfer {
        transfer: usize,
    },
    /// `network.queue_delay_ms` after `peer` got `piece`: its children learn of it.
    PieceNews {
        peer: PeerId,
        piece: u32,
    },
    SchedDeliver {
        replica: usize,
        /// The replica's life it was sent to (`Replica::life`).
        life: u32,
        request: SchedRequest,
    },
    SchedTimer {
        replica: usize,
        life: u32,
    },
    /// `faults.replica_outage`: the replica stops, the daemons notice, it comes back.
    ReplicaStops {
        replica: usize,
    },
    ReplicaNoticed {
        replica: usize,
    },
    ReplicaBack {
        replica: usize,
    },
    Decision(Decision),
    PeerDeadline {
        peer: PeerId,
    },
    /// The oldest request in a host's upload line may have waited its
    /// `upload_slot_wait_ns` (then it is refused as busy).
    SlotWaitEnds {
        host: usize,
    },
    UnpackDone {
        pull: usize,
    },
    /// A preheat job is ordered from its seed peer (`[[workload]] preheat_at_s`).
    PreheatOrdered {
        job: usize,
    },
    /// The seed read the job's manifest at the registry: it asks for the blobs.
    PreheatResolved {
        job: usize,
    },
    Started {
        pull: usize,
    },
    /// `[[churn.event]]`: a host fails (crashes) or leaves (`world/churn.rs`).
    NodeDown {
        host: usize,
        leave: bool,
    },
    /// A download's connection to a parent on a host that is down fails.
    ParentUnreachable {
        peer: PeerId,
        parent: PeerId,
    },
    /// Nobody answered a seed trigger sent to a crashed seed host: the service's
    /// seed-register deadline ran out.
    SeedTriggerLapsed {
        task: TaskId,
        host: usize,
    },
}

#[derive(Default)]
pub(crate) struct EventQueue {
    /// (time, insertion number, slot of the event): the number orders equal times and is
    /// unique, so the slot rides along without ever deciding the order.
    heap: BinaryHeap<Reverse<(TimeNs, u64, usize)>>,
    slots: Vec<Option<Event>>,
    free: Vec<usize>,
    seq: u64,
}

impl EventQueue {
    pub(crate) fn push(&mut self, at: TimeNs, ev: Event) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    pub(crate) fn peek_time(&self) -> Option<TimeNs> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        let Reverse((_, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        self.slots[slot].take()
    }
}
