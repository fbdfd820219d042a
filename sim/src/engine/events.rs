//! The event queue: earliest time first, then insertion order, so equal times replay in
//! the same order on every run.

use super::world::SchedRequest;
use crate::net::TimeNs;
use sched::core::{Decision, PeerId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone)]
pub(crate) enum Event {
    PodScheduled { node: usize },
    ManifestHeadDone { node: usize },
    StartTransfer { transfer: usize },
    SchedDeliver { replica: usize, request: SchedRequest },
    SchedTimer { replica: usize },
    Decision(Decision),
    PeerDeadline { peer: PeerId },
    UnpackDone { node: usize },
    Started { node: usize },
}

#[derive(Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Reverse<(TimeNs, u64)>>,
    slots: Vec<Option<Event>>,
    free: Vec<usize>,
    index_of_seq: std::collections::BTreeMap<u64, usize>,
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
        self.index_of_seq.insert(self.seq, slot);
        self.heap.push(Reverse((at, self.seq)));
    }

    pub(crate) fn peek_time(&self) -> Option<TimeNs> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        let Reverse((_, seq)) = self.heap.pop()?;
        let slot = self.index_of_seq.remove(&seq).expect("every queued seq has a slot");
        self.free.push(slot);
        self.slots[slot].take()
    }
}
