//! Node churn (`[[churn.event]]`), as the deployed daemons and scheduler live it.
//!
//! A node that fails stops answering: every transfer to or from it ends, its pods that had
//! not started never will (lost, not stuck: the run still finishes), and the downloads it
//! fed see what a daemon sees. A transfer that breaks is reported (`PieceFailed`, the
//! core's `piece_failed`) and dropped by the plan (`on_piece_failed`); a piece-map stream
//! that breaks, or a connection to it that is refused, is `on_parent_failed`. Each plan then
//! asks for new parents, or for the origin, by its own rules, and the scheduler learns of
//! the crash only from those reports. A node that leaves does the same after its daemon has
//! told every replica (`LeaveHost`: the core's `host_left`). Nothing here decides who
//! downloads from whom.

use super::{ms, Event, SchedRequest, TransferKind, World};
use crate::net::TimeNs;
use crate::result::{ChurnRecord, ModeResult};
use crate::scenario::{ChurnAction, Scenario};
use peer::core::Source;
use sched::core::{Decision, HostId, PeerId, Scheduler, TaskId};
use std::collections::{BTreeMap, BTreeSet};

/// The service's `[service] seed_register_timeout_ms` default (scheduler.toml): a seed
/// trigger whose peer has not registered by then makes the task's seed unavailable. A
/// crashed seed host's trigger stream looks open, so its triggers lapse only then.
const SEED_REGISTER_TIMEOUT_NS: TimeNs = 30_000_000_000;

/// The run's churn: which hosts are down, and what it cost.
#[derive(Default)]
pub(super) struct Churn {
    /// Per host (nodes, then seed peers): when it went down and whether it left (told the
    /// scheduler). Empty without churn.
    down: Vec<Option<(TimeNs, bool)>>,
    failed: u32,
    left: u32,
    /// Pods that will never start because their node went, and whether their node had
    /// unpacked (mounted) their image before it went.
    lost: BTreeMap<u32, bool>,
    /// Times a download found a parent on a host that was down.
    parent_failures: u64,
}

impl Churn {
    /// Queues every node that goes in this mode (`scenario::Churn::plan`); hosts are the
    /// nodes, then `seeds` seed peers.
    pub(super) fn plan(sc: &Scenario, n_nodes: usize, seeds: usize, queue: &mut super::EventQueue) -> Churn {
        if sc.churn.is_empty() {
            return Churn::default();
        }
        for g in sc.churn.plan(sc, sc.seed, seeds as u32) {
            let host = if g.seed { n_nodes + g.index as usize } else { g.index as usize };
            queue.push(ms(g.at_s * 1e3), Event::NodeDown { host, leave: g.action == ChurnAction::Leave });
        }
        Churn { down: vec![None; n_nodes + seeds], ..Churn::default() }
    }

    pub(super) fn is_down(&self, host: usize) -> bool {
        self.down.get(host).is_some_and(Option::is_some)
    }

    fn active(&self) -> bool {
        !self.down.is_empty()
    }
}

/// What a run's churn did, for its result (`ChurnOutcome::apply`).
pub(super) struct ChurnOutcome {
    record: Option<ChurnRecord>,
    lost: BTreeMap<u32, bool>,
}

impl ChurnOutcome {
    /// Marks the lost pods (no start time; no unpack unless it happened before their node
    /// went) and adds the churn figures, to a run that has churn.
    pub(super) fn apply(self, result: &mut ModeResult) {
        result.churn = self.record;
        for p in result.pods.iter_mut() {
            if let Some(&unpacked) = self.lost.get(&p.pod) {
                p.lost = true;
                p.started_s = f64::NAN;
                if !unpacked {
                    p.unpacked_s = f64::NAN;
                }
            }
        }
    }
}

impl World<'_> {
    pub(super) fn churn_outcome(&mut self) -> ChurnOutcome {
        let c = &mut self.churn;
        let record = c.active().then_some(ChurnRecord {
            nodes_failed: c.failed,
            nodes_left: c.left,
            pods_lost: c.lost.len() as u64,
            parent_failures: c.parent_failures,
            reschedules: self.reschedules,
        });
        ChurnOutcome { record, lost: std::mem::take(&mut c.lost) }
    }

    fn peer_is_down(&self, peer: PeerId) -> bool {
        self.churn.is_down(self.peers[peer.0 as usize].host)
    }

    fn pull_is_down(&self, pull: usize) -> bool {
        self.churn.is_down(self.pulls[pull].node)
    }

    /// Whether `ev` meets a host that is down; churn then takes it, and `handle` does
    /// nothing more with it.
    pub(super) fn churn_takes(&mut self, ev: &Event) -> bool {
        if !self.churn.active() {
            return false;
        }
        match ev {
            Event::PodScheduled { pod } => {
                let pull = self.pod_pull[*pod as usize].0 as usize;
                if !self.pull_is_down(pull) {
                    return false;
                }
                self.churn.lost.entry(*pod).or_insert(false);
                self.rolling_pod_gone(*pod);
                true
            }
            Event::ManifestHeadDone { pull } | Event::UnpackDone { pull } | Event::Started { pull } => {
                self.pull_is_down(*pull)
            }
            Event::ResolverAsked { seed, pull, key } => {
                if self.pull_is_down(*pull) {
                    return true;
                }
                if !self.churn.is_down(*seed) {
                    return false;
                }
                // The daemon's rule: any failure at a seed's resolver goes to the registry.
                self.mirror_asks_registry(*pull, *key);
                true
            }
            Event::StartTransfer { transfer } => self.transfer_meets_down_host(*transfer),
            Event::Decision(Decision::TriggerSeed { task, seed_host }) => {
                let host = seed_host.0 as usize;
                if !self.churn.is_down(host) {
                    return false;
                }
                // A seed that left has no trigger stream, and the service says so at once;
                // a crashed one's looks open until the service's deadline.
                let left = self.churn.down[host].is_some_and(|(_, left)| left);
                let at = if left { self.now } else { self.now + SEED_REGISTER_TIMEOUT_NS };
                self.queue.push(at, Event::SeedTriggerLapsed { task: *task, host });
                true
            }
            Event::Decision(Decision::Parents { peer, parents }) => {
                if self.peer_is_down(*peer) {
                    return true;
                }
                // The download dials its new parents: one on a host that is down fails after
                // the round trip (the decision itself is applied as usual).
                let down: Vec<PeerId> = parents.iter().map(|p| p.peer).filter(|p| self.peer_is_down(*p)).collect();
                for parent in down {
                    self.queue.push(self.now + self.rpc_ns, Event::ParentUnreachable { peer: *peer, parent });
                }
                false
            }
            Event::Decision(Decision::BackToSource { peer, .. } | Decision::Failed { peer, .. })
            | Event::PeerDeadline { peer } => self.peer_is_down(*peer),
            Event::PreheatOrdered { job } | Event::PreheatResolved { job } => {
                self.churn.is_down(self.preheats.jobs[*job].seed)
            }
            _ => false,
        }
    }

    /// `[[churn.event]]`: the host fails (crashes) or leaves.
    pub(super) fn node_down(&mut self, host: usize, leave: bool) {
        if self.churn.is_down(host) {
            return;
        }
        self.churn.down[host] = Some((self.now, leave));
        if leave {
            self.churn.left += 1;
            // The daemon's shutdown: `LeaveHost` to every replica, then it stops.
            for replica in 0..self.replicas.len() {
                self.sched_send_to(replica, SchedRequest::HostLeft(HostId(host as u32)), false);
            }
        } else {
            self.churn.failed += 1;
        }
        if host < self.n_nodes {
            self.pods_lost_on(host);
        }
        let gone: Vec<PeerId> = self.host_blob_peer[host].iter().flatten().copied().collect();
        // Every transfer to or from the host ends; the live ends of piece transfers and
        // manifest answers see it.
        let touching: Vec<usize> = (0..self.transfers.len())
            .filter(|&id| !self.transfers[id].cancelled && self.transfer_touches(id, host))
            .collect();
        let mut broken = Vec::new();
        let mut manifests = Vec::new();
        let mut fetches = Vec::new();
        for id in touching {
            let kind = self.transfers[id].kind;
            self.end_transfer(id, false);
            match kind {
                TransferKind::Piece { dst, piece, from } if !self.peer_is_down(dst) => broken.push((dst, piece, from)),
                TransferKind::Manifest { pull, key, from: Some(_) } if !self.pull_is_down(pull) => {
                    manifests.push((pull, key))
                }
                TransferKind::ResolverFetch { fetch } => fetches.push(fetch),
                _ => {}
            }
        }
        let mut touched = BTreeSet::new();
        for (dst, piece, from) in broken {
            let Source::Parent(parent) = from else { unreachable!("a live download's transfer from a host that went") };
            self.churn.parent_failures += 1;
            if self.peers[dst.0 as usize].registered {
                self.sched_send(dst, SchedRequest::ParentFailed(dst, parent), false);
            }
            self.peers[dst.0 as usize].dl.on_piece_failed(self.now, piece, from);
            touched.insert(dst);
        }
        // Piece-map streams to the host's peers break for the downloads still running; its
        // peers' own parents stop counting them as children.
        for p in gone {
            let parents: Vec<PeerId> = self.peers[p.0 as usize].dl.parent_ids().collect();
            for q in parents {
                self.peers[q.0 as usize].children.retain(|c| *c != p);
            }
            for c in std::mem::take(&mut self.peers[p.0 as usize].children) {
                // A finished download no longer reads piece maps.
                let child = &self.peers[c.0 as usize];
                if !child.done && !self.peer_is_down(c) && child.dl.has_parent(p) {
                    self.churn.parent_failures += 1;
                    self.peers[c.0 as usize].dl.on_parent_failed(p);
                    touched.insert(c);
                }
            }
        }
        for c in touched {
            self.drive(c);
        }
        for (pull, key) in manifests {
            self.mirror_asks_registry(pull, key);
        }
        for fetch in fetches {
            self.resolver_fetch_lost(fetch);
        }
    }

    /// Whether transfer `id` goes to or comes from `host`.
    fn transfer_touches(&self, id: usize, host: usize) -> bool {
        match self.transfers[id].kind {
            TransferKind::Piece { dst, from, .. } => {
                self.peers[dst.0 as usize].host == host
                    || matches!(from, Source::Parent(p) if self.peers[p.0 as usize].host == host)
            }
            TransferKind::Blob { pull, .. } | TransferKind::Manifest { pull, from: None, .. } => {
                self.pulls[pull].node == host
            }
            TransferKind::Manifest { pull, from: Some(seed), .. } => seed == host || self.pulls[pull].node == host,
            TransferKind::ResolverFetch { fetch } => self.resolver_fetches[fetch].seed == host,
        }
    }

    /// A transfer about to start meets a host that is down: a piece from it fails for its
    /// child (as a refused request), an answer from a seed's resolver goes to the registry
    /// instead, and anything for a node that is down is dropped.
    fn transfer_meets_down_host(&mut self, id: usize) -> bool {
        if self.transfers[id].cancelled {
            // `start_flow` retires it.
            return false;
        }
        match self.transfers[id].kind {
            TransferKind::Piece { dst, piece, from } => {
                if self.peer_is_down(dst) {
                    self.end_transfer(id, true);
                    return true;
                }
                let Source::Parent(parent) = from else { return false };
                if !self.peer_is_down(parent) {
                    return false;
                }
                self.end_transfer(id, true);
                self.churn.parent_failures += 1;
                if self.peers[dst.0 as usize].registered {
                    self.sched_send(dst, SchedRequest::ParentFailed(dst, parent), false);
                }
                self.peers[dst.0 as usize].dl.on_piece_failed(self.now, piece, from);
                self.drive(dst);
                true
            }
            TransferKind::Blob { pull, .. } | TransferKind::Manifest { pull, from: None, .. } => {
                let down = self.pull_is_down(pull);
                if down {
                    self.end_transfer(id, true);
                }
                down
            }
            TransferKind::Manifest { pull, key, from: Some(seed) } => {
                if self.pull_is_down(pull) {
                    self.end_transfer(id, true);
                    return true;
                }
                if !self.churn.is_down(seed) {
                    return false;
                }
                self.end_transfer(id, true);
                self.mirror_asks_registry(pull, key);
                true
            }
            TransferKind::ResolverFetch { fetch } => {
                if !self.churn.is_down(self.resolver_fetches[fetch].seed) {
                    return false;
                }
                self.end_transfer(id, true);
                self.resolver_fetch_lost(fetch);
                true
            }
        }
    }

    /// A seed's resolver went with its registry request in flight: each node waiting for it
    /// asks the registry (the daemon's fallback).
    fn resolver_fetch_lost(&mut self, fetch: usize) {
        let f = &mut self.resolver_fetches[fetch];
        let (seed, image, key) = (f.seed, f.image, f.key);
        let waiters = std::mem::take(&mut f.waiters);
        let asking = &mut self.resolver_asking[seed - self.n_nodes];
        if asking.get(&(image, key)) == Some(&fetch) {
            asking.remove(&(image, key));
        }
        for pull in waiters {
            if !self.pull_is_down(pull) {
                self.mirror_asks_registry(pull, key);
            }
        }
    }

    /// The node's pods that had not started by now never will. A pod of a rolling update is
    /// not waited for (its replacement on another node is not modelled).
    fn pods_lost_on(&mut self, node: usize) {
        let start_ns = ms(self.sc.pod.container_start_ms);
        for i in 0..self.node_pulls[node].len() {
            let pull = self.node_pulls[node][i];
            // `TimeNs::MAX` while unpacking: not unpacked.
            let unpacked = self.pulls[pull].unpacked_ns.filter(|t| *t <= self.now);
            for k in 0..self.pulls[pull].pods.len() {
                let (pod, scheduled) = (self.pulls[pull].pods[k], self.pulls[pull].scheduled_ns[k]);
                let started = unpacked.filter(|_| scheduled <= self.now).map(|u| u.max(scheduled) + start_ns);
                if started.is_some_and(|t| t <= self.now) {
                    continue;
                }
                self.churn.lost.insert(pod, unpacked.is_some());
                if scheduled != TimeNs::MAX {
                    self.rolling_pod_gone(pod);
                }
            }
            if unpacked.is_none() {
                // An unpack in progress never ends.
                self.pulls[pull].unpacked_ns = None;
            }
        }
    }

    fn rolling_pod_gone(&mut self, pod: u32) {
        let workload = self.pod_workload[pod as usize] as usize;
        if self.rolling[workload].is_none() || std::mem::replace(&mut self.ready_queued[pod as usize], true) {
            return;
        }
        self.queue.push(self.now, Event::PodReady { workload });
    }

    /// A download's dial to a parent on a host that is down failed.
    pub(super) fn parent_unreachable(&mut self, peer: PeerId, parent: PeerId) {
        if self.peer_is_down(peer) || !self.peers[peer.0 as usize].dl.has_parent(parent) {
            return;
        }
        self.churn.parent_failures += 1;
        self.peers[peer.0 as usize].dl.on_parent_failed(parent);
        self.drive(peer);
    }

    /// The service's deadline for a seed trigger nobody answered: the task's replica hears
    /// the seed is unavailable.
    pub(super) fn seed_trigger_lapsed(&mut self, task: TaskId, host: usize) {
        let replica = self.replica_of(task.0 as usize);
        self.sched_send_to(replica, SchedRequest::SeedUnavailable(task, HostId(host as u32)), false);
    }

    /// A replica's fresh instance has not heard from the hosts that are down (the crashed
    /// do not announce, the departed left): they serve nobody there.
    pub(super) fn forget_down_hosts(&self, core: &mut Scheduler) {
        for host in (0..self.churn.down.len()).filter(|h| self.churn.is_down(*h)) {
            core.host_left(self.now, HostId(host as u32)).expect("every host is announced to every replica");
        }
    }
}

#[cfg(test)]
#[path = "../churn_tests.rs"]
mod tests;
