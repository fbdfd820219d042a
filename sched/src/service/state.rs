//! The service's state: the core, and what the core does not know (wire ids, addresses,
//! task metadata for the seed, open streams). One mutex guards it all (`Shared`); no
//! method awaits, so the lock is held for one request at a time and never across I/O.
//!
//! Decisions leave the core here (`deliver`) and go to the stream of the peer they name,
//! or to a seed host's watch stream. Sends never block: every stream has a bounded queue,
//! and a peer that lets its queue fill up is disconnected.
//!
//! The request handlers are split by subject: `peers.rs` (AnnouncePeer and leaving),
//! `seeds.rs` (seed triggering), `stats.rs` (StatTask, StatPeer, gauges), `timers.rs`.

use super::config::Tuning;
use super::grants::GrantIssuer;
use super::ids::WireIds;
use super::metrics::Metrics;
use super::wire::{self, HostAnnouncement, TaskMeta};
use crate::core::{
    Decision, HostId, HostInfo, HostKind, ParentRef, PeerId, PeerState, PieceSet, Scheduler, SchedulerConfig, TaskId,
    TimeNs,
};
use api::pb;
use api::pb::announce_peer_response::Response;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

pub type PeerTx = mpsc::Sender<Result<pb::AnnouncePeerResponse, Status>>;
pub type SeedTx = mpsc::Sender<Result<pb::SeedTask, Status>>;

/// The scheduler's end of one AnnouncePeer stream.
#[derive(Debug)]
pub struct PeerStream {
    pub id: u64,
    pub tx: PeerTx,
    /// Dropped when the state closes the stream: the stream's driver then stops reading.
    pub stop: oneshot::Sender<()>,
}

#[derive(Debug)]
pub struct SeedWatcher {
    pub tx: SeedTx,
}

#[derive(Debug)]
pub struct HostRecord {
    pub info: HostAnnouncement,
    /// LeaveHost was called and no AnnounceHost since.
    pub left: bool,
    pub peers: Vec<PeerId>,
}

#[derive(Debug)]
pub struct TaskRecord {
    pub meta: TaskMeta,
    pub peers: Vec<PeerId>,
    /// The seed host last asked to fetch the task.
    pub seed_host: Option<HostId>,
    /// `meta` came from a `completed` registration; the next downloading peer's replaces it.
    pub meta_from_completed: bool,
}

#[derive(Debug)]
pub struct PeerRecord {
    pub task: TaskId,
    pub host: HostId,
    /// Distinct pieces the peer reported.
    pub reported: PieceSet,
    /// Registered on a seed host with need_back_to_source (the task's seed peer).
    pub is_seed: bool,
    pub stream: Option<PeerStream>,
}

/// A seed was asked to fetch a task and has not registered its peer yet.
#[derive(Debug, Clone, Copy)]
pub struct PendingSeed {
    pub host: HostId,
    pub deadline_ns: TimeNs,
}

/// What happens to the peer in the core when its stream closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnClose {
    /// An unfinished peer failed; a finished one stays (it keeps serving).
    FailUnfinished,
    /// The caller already told the core.
    Nothing,
}

pub struct State {
    pub(super) core: Scheduler,
    pub(super) tuning: Tuning,
    pub(super) metrics: Arc<Metrics>,
    pub(super) host_ids: WireIds,
    pub(super) hosts: Vec<HostRecord>,
    pub(super) task_ids: WireIds,
    pub(super) tasks: Vec<TaskRecord>,
    pub(super) peer_ids: WireIds,
    pub(super) peers: Vec<PeerRecord>,
    pub(super) seed_watchers: BTreeMap<HostId, SeedWatcher>,
    pub(super) pending_seeds: BTreeMap<TaskId, PendingSeed>,
    pub(super) next_evict_ns: TimeNs,
    /// Hosts announced and not left (`Tuning::max_hosts`).
    pub(super) live_hosts: usize,
    /// Mints the grant each Parents carries; none: no grants (parents without a key serve
    /// anyone).
    pub(super) grants: Option<GrantIssuer>,
    /// Preheat jobs ordered from the seeds (`preheat/`).
    pub(super) preheat_jobs: super::preheat::Jobs,
}

impl State {
    pub fn new(cfg: SchedulerConfig, tuning: Tuning, rng_seed: u64, metrics: Arc<Metrics>) -> State {
        State {
            core: Scheduler::new(cfg, ChaCha8Rng::seed_from_u64(rng_seed)),
            next_evict_ns: tuning.evict_interval_ns,
            tuning,
            metrics,
            host_ids: WireIds::default(),
            hosts: Vec::new(),
            task_ids: WireIds::default(),
            tasks: Vec::new(),
            peer_ids: WireIds::default(),
            peers: Vec::new(),
            seed_watchers: BTreeMap::new(),
            pending_seeds: BTreeMap::new(),
            live_hosts: 0,
            grants: None,
            preheat_jobs: super::preheat::Jobs::new(super::preheat::JobLimits {
                max_jobs: tuning.preheat_max_jobs,
                report_timeout_ns: tuning.preheat_report_timeout_ns,
                reuse_succeeded_ns: tuning.preheat_reuse_succeeded_ns,
            }),
        }
    }

    /// Sends a data-plane grant with every Parents from now on.
    pub fn with_grants(mut self, grants: Option<GrantIssuer>) -> State {
        self.grants = grants;
        self
    }

    pub fn core(&self) -> &Scheduler {
        &self.core
    }

    // ---- hosts ----

    pub fn announce_host(&mut self, now: TimeNs, ann: HostAnnouncement) -> Result<(), super::ServiceError> {
        let arriving = self.host_ids.get(&ann.id).is_none_or(|h| self.hosts[h as usize].left);
        if arriving {
            if self.live_hosts >= self.tuning.max_hosts {
                return Err(super::ServiceError::Admission {
                    key: "max_hosts",
                    limit: self.tuning.max_hosts,
                    what: format!("host {:?} would be one host too many", ann.id),
                });
            }
            self.live_hosts += 1;
        }
        let handle = HostId(self.host_ids.intern(&ann.id, "host")?);
        if handle.0 as usize == self.hosts.len() {
            self.hosts.push(HostRecord { info: ann, left: false, peers: Vec::new() });
        } else {
            let h = &mut self.hosts[handle.0 as usize];
            h.info = ann;
            h.left = false;
            if h.info.kind != HostKind::Seed {
                self.seed_watchers.remove(&handle);
            }
        }
        let info = self.core_info(handle);
        self.core.announce_host(now, info);
        Ok(())
    }

    /// The manifest resolvers of the seed hosts that are announced and have not left,
    /// `IP:PORT`, sorted (what `AnnounceHostResponse.resolvers` carries).
    pub fn resolvers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| !h.left && h.info.kind == HostKind::Seed && h.info.resolver_port != 0)
            .map(|h| std::net::SocketAddr::new(h.info.ip, h.info.resolver_port).to_string())
            .collect();
        out.sort();
        out
    }

    /// The host as the core should see it. A host that left stays in the core (the core
    /// cannot forget a host): as a normal host that serves nobody, so it is neither a
    /// parent nor a seed candidate.
    pub(super) fn core_info(&self, host: HostId) -> HostInfo {
        let h = &self.hosts[host.0 as usize];
        HostInfo {
            id: host,
            kind: if h.left { HostKind::Normal } else { h.info.kind },
            location: h.info.location.clone(),
            idc: h.info.idc.clone(),
            disable_shared: h.left || h.info.disable_shared,
        }
    }

    /// A host that is announced and has not left.
    pub(super) fn live_host(&self, wire_id: &str) -> Result<HostId, super::ServiceError> {
        match self.host_ids.get(wire_id) {
            Some(h) if !self.hosts[h as usize].left => Ok(HostId(h)),
            _ => Err(super::ServiceError::UnknownHost(wire_id.to_string())),
        }
    }

    /// A peer that has not failed or left (downloading, or serving what it holds).
    pub(super) fn is_active(core: &Scheduler, peer: PeerId) -> bool {
        !matches!(core.peer_state(peer), None | Some(PeerState::Failed | PeerState::Leave))
    }

    pub(super) fn peer_record(&self, peer: PeerId) -> &PeerRecord {
        &self.peers[peer.0 as usize]
    }

    pub(super) fn peer_wire(&self, peer: PeerId) -> &str {
        self.peer_ids.wire(peer.0)
    }

    // ---- decisions out ----

    /// Sends each decision to the stream it concerns.
    pub(super) fn deliver(&mut self, now: TimeNs, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::TriggerSeed { task, seed_host } => {
                    self.metrics.decision("trigger_seed");
                    self.trigger_seed(now, task, seed_host);
                }
                Decision::Parents { peer, parents } => {
                    self.metrics.decision("parents");
                    let parents = pb::Parents {
                        parents: parents.iter().map(|p| self.parent(p)).collect(),
                        grant: self.grant_for(peer),
                    };
                    self.send(now, peer, Response::Parents(parents));
                }
                Decision::BackToSource { peer, reason } => {
                    self.metrics.decision("back_to_source");
                    self.metrics.back_to_source(match reason {
                        crate::core::BackToSourceReason::Ordered => "ordered",
                        crate::core::BackToSourceReason::NoParents => "no_parents",
                        crate::core::BackToSourceReason::PeerAsked => "peer_asked",
                    });
                    self.send(now, peer, Response::BackToSource(wire::back_to_source(reason)));
                }
                Decision::Failed { peer, reason } => {
                    self.metrics.decision("failed");
                    self.send(now, peer, Response::Failed(wire::failed(reason)));
                    // The core already removed the peer.
                    self.close_stream(now, peer, None, OnClose::Nothing);
                }
            }
        }
    }

    /// The grant for the peer's host to read the peer's task, from the wall clock (grants
    /// are checked against the parents' clocks, not the core's service-relative time).
    fn grant_for(&self, peer: PeerId) -> Option<pb::DataGrant> {
        let issuer = self.grants.as_ref()?;
        let record = self.peer_record(peer);
        let task = self.task_ids.wire(record.task.0);
        let host = &self.hosts[record.host.0 as usize].info.id;
        let grant = issuer.grant(task, host, svc::grant::unix_now_s());
        if grant.is_none() {
            tracing::error!(peer = self.peer_wire(peer), task, "no grant for a task id that is not 64 hex digits");
        }
        grant
    }

    fn parent(&self, p: &ParentRef) -> pb::Parent {
        let h = &self.hosts[p.host.0 as usize].info;
        pb::Parent {
            peer_id: self.peer_wire(p.peer).to_string(),
            host_id: h.id.clone(),
            ip: h.ip.to_string(),
            data_port: u32::from(h.data_port),
            is_seed: h.kind == HostKind::Seed,
            stripe: p.stripe.map(|s| pb::Stripe { index: s.index, count: s.count }),
        }
    }

    /// Queues a response on the peer's stream. A peer that does not read its responses
    /// (queue full) or whose stream is gone is disconnected.
    pub(super) fn send(&mut self, now: TimeNs, peer: PeerId, response: Response) {
        let Some(stream) = &self.peers[peer.0 as usize].stream else {
            tracing::debug!(peer = self.peer_wire(peer), "decision for a peer without an open stream dropped");
            return;
        };
        match stream.tx.try_send(Ok(pb::AnnouncePeerResponse { response: Some(response) })) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    peer = self.peer_wire(peer),
                    capacity = self.tuning.peer_stream_capacity,
                    "peer does not read its AnnouncePeer responses; disconnecting it"
                );
                self.close_stream(now, peer, None, OnClose::FailUnfinished);
            }
            Err(TrySendError::Closed(_)) => self.close_stream(now, peer, None, OnClose::FailUnfinished),
        }
    }

    /// Closes the peer's stream (after `status`, if given and there is room for it) and
    /// applies `on_close` in the core.
    pub(super) fn close_stream(&mut self, now: TimeNs, peer: PeerId, status: Option<Status>, on_close: OnClose) {
        if let Some(stream) = self.peers[peer.0 as usize].stream.take() {
            if let Some(status) = status {
                let _ = stream.tx.try_send(Err(status));
            }
        }
        if on_close == OnClose::FailUnfinished && self.is_unfinished(peer) {
            self.fail_in_core(now, peer);
        }
    }

    pub(super) fn is_unfinished(&self, peer: PeerId) -> bool {
        matches!(self.core.peer_state(peer), Some(PeerState::Received | PeerState::Running | PeerState::BackToSource))
    }

    fn fail_in_core(&mut self, now: TimeNs, peer: PeerId) {
        if let Err(e) = self.core.peer_failed(now, peer) {
            tracing::error!(peer = self.peer_wire(peer), error = %e, "core refused peer_failed");
        }
    }

    /// The peer stops: an unfinished one failed, a finished one left. Closes its stream.
    /// Returns whether the peer was still active.
    pub(super) fn retire(&mut self, now: TimeNs, peer: PeerId, status: Status) -> bool {
        let active = match self.core.peer_state(peer) {
            Some(PeerState::Received | PeerState::Running | PeerState::BackToSource) => {
                self.fail_in_core(now, peer);
                true
            }
            Some(PeerState::Succeeded) => {
                if let Err(e) = self.core.peer_left(now, peer) {
                    tracing::error!(peer = self.peer_wire(peer), error = %e, "core refused peer_left");
                }
                true
            }
            _ => false,
        };
        self.close_stream(now, peer, Some(status), OnClose::Nothing);
        active
    }

    /// Shutdown: every stream ends with `status`. The core is left as it is.
    pub fn close_all_streams(&mut self, status: Status) {
        for p in &mut self.peers {
            if let Some(stream) = p.stream.take() {
                let _ = stream.tx.try_send(Err(status.clone()));
            }
        }
        for (_, w) in std::mem::take(&mut self.seed_watchers) {
            let _ = w.tx.try_send(Err(status.clone()));
        }
    }
}
