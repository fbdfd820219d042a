//! The scheduler's state and its event handlers. Every handler takes the time as an
//! argument and returns decisions; randomness comes from the injected seeded generator.
//! Parent *selection* lives in `select.rs`, one function per policy.

use super::bitset::PieceSet;
use super::config::SchedulerConfig;
use super::decision::{BackToSourceReason, Decision, FailReason, ParentRef, Stripe};
use super::fed::FedIndex;
use super::hashring;
use super::ids::{HostId, PeerId, TaskId, TimeNs};
use super::policy::Policy;
use super::records::{CostStats, Host, HostInfo, HostKind, Peer, PeerState, Task, UNFED};
use super::select::{self, Placement};
use super::tree::TreeIndex;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Default policy: children that must report the seed failing them before the task counts
/// as having lost its seed (one could be a broken link between that child and the seed).
pub const SEED_LOST_REPORTS: usize = 2;

/// Default policy: strays looked at per stripe each time the stripe gains room, and
/// strays that fit no open slot before the look ends (the open slots are then for others).
const STRAYS_PER_WAKE: usize = 64;
const STRAY_MISSES_PER_WAKE: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("unknown peer {0:?}")]
    UnknownPeer(PeerId),
    #[error("unknown host {0:?}: announce the host before registering peers on it")]
    UnknownHost(HostId),
    #[error("peer {0:?} is already registered")]
    DuplicatePeer(PeerId),
    #[error("task {task:?} has {known} pieces but the peer registered with {got}")]
    PieceCountMismatch { task: TaskId, known: u32, got: u32 },
    #[error("piece {piece} out of range: task has {count} pieces")]
    PieceOutOfRange { piece: u32, count: u32 },
    #[error(
        "peer {0:?} registers as completed and as going back to source; a peer holding the whole task fetches nothing"
    )]
    CompletedWithBackToSource(PeerId),
    #[error(
        "peer {peer:?} runs policy {peer_policy:?} but this scheduler runs {scheduler_policy:?}; set the peer's [peer] policy to the scheduler's [scheduler] policy"
    )]
    PolicyMismatch { peer: PeerId, peer_policy: &'static str, scheduler_policy: &'static str },
}

/// A peer asks to download a task.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterPeer {
    pub peer: PeerId,
    pub task: TaskId,
    /// Hash of the wire task id (see `hashring::key_of`); picks the seed peer.
    pub task_key: u64,
    pub host: HostId,
    pub piece_count: u32,
    pub content_length: u64,
    /// Set on the peer a seed host registers after `Decision::TriggerSeed`.
    pub need_back_to_source: bool,
    /// The policy the peer's core runs; it must be the scheduler's.
    pub policy: Policy,
    /// The peer fetches only part of the task (a lazy reader's ranges) until it says it
    /// wants all of it (`Scheduler::peer_wants_all`). An origin grant to it covers those
    /// ranges only.
    pub partial: bool,
}

/// One finished piece, as a peer reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PieceReport {
    pub piece: u32,
    /// None: the piece came from the origin.
    pub parent: Option<PeerId>,
    pub cost_ns: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedStats {
    pub registrations: u64,
    pub parent_rounds: u64,
    pub back_to_source_orders: u64,
    /// Asks for the origin (`ask_back_to_source`) answered with parents: the task was at
    /// its back-to-source limit.
    pub back_to_source_refusals: u64,
    pub seeds_triggered: u64,
    /// Triggered seeds that could not serve their task (`seed_unavailable`).
    pub seeds_unavailable: u64,
    /// Peers the seed took beyond its roots in some stripe (`seed_takes_the_unplaced`).
    pub seed_fallbacks: u64,
    pub evictions: u64,
    pub failures: u64,
}

pub struct Scheduler {
    pub(crate) cfg: SchedulerConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) hosts: BTreeMap<HostId, Host>,
    pub(crate) tasks: BTreeMap<TaskId, Task>,
    pub(crate) peers: BTreeMap<PeerId, Peer>,
    /// (when, sequence, peer): a retry round, a poll, or a wait timeout.
    timers: BTreeSet<(TimeNs, u64, PeerId)>,
    timer_seq: u64,
    /// `wake_waiters` is running (a nested call leaves the new work to it).
    waking: bool,
    /// Default policy: tasks with a stripe that gained a possible parent (`Task::dirty`).
    dirty_tasks: BTreeSet<TaskId>,
    /// Default policy: per seed host, the tasks it was triggered for, pruned of those it
    /// finished, failed or lost when read (`seed_for`).
    seeding: BTreeMap<HostId, BTreeSet<TaskId>>,
    pub stats: SchedStats,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, rng: ChaCha8Rng) -> Scheduler {
        Scheduler {
            cfg,
            rng,
            hosts: BTreeMap::new(),
            tasks: BTreeMap::new(),
            peers: BTreeMap::new(),
            timers: BTreeSet::new(),
            timer_seq: 0,
            waking: false,
            dirty_tasks: BTreeSet::new(),
            seeding: BTreeMap::new(),
            stats: SchedStats::default(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Creates or refreshes a host.
    pub fn announce_host(&mut self, _now: TimeNs, info: HostInfo) {
        let upload_limit = match info.kind {
            HostKind::Normal => self.cfg.normal_upload_limit,
            HostKind::Seed => self.cfg.seed_upload_limit,
        };
        let id = info.id;
        match self.hosts.get_mut(&id) {
            Some(h) => {
                let sharing_changed = h.info.disable_shared != info.disable_shared;
                h.info = info;
                if sharing_changed {
                    self.refresh_host(id);
                }
            }
            None => {
                self.hosts.insert(
                    info.id,
                    Host {
                        info,
                        upload_limit,
                        concurrent_uploads: 0,
                        upload_count: 0,
                        upload_failed_count: 0,
                        peers: Vec::new(),
                    },
                );
            }
        }
    }

    pub fn register_peer(&mut self, now: TimeNs, req: RegisterPeer) -> Result<Vec<Decision>, SchedError> {
        self.add_peer(now, req, false)
    }

    /// A peer that already holds the whole task (a daemon restarted with it in its store,
    /// or re-announcing to a restarted scheduler) joins as a finished parent: it triggers
    /// no seed, gets no parents and no back-to-source order, and counts as serving, so the
    /// task's next downloads are children of it rather than new trips to the origin.
    pub fn register_completed_peer(&mut self, now: TimeNs, req: RegisterPeer) -> Result<Vec<Decision>, SchedError> {
        if req.need_back_to_source {
            return Err(SchedError::CompletedWithBackToSource(req.peer));
        }
        self.add_peer(now, req, true)
    }

    /// The seed host for a task with this key. Dragonfly and Kraken: rendezvous hashing over
    /// the seed hosts. Default policy: the same hashing among the seed hosts seeding the
    /// fewest tasks right now (consistent hashing with bounded loads, at the tightest bound).
    /// An image's layers are separate tasks pulled at once, and plain hashing can put all of
    /// them on one seed (it did, for the five blobs of nginx-50: the registry then sent at
    /// that seed's 6 Gbit/s download instead of its own 10). A seed's tasks are pruned here
    /// once it has finished, failed or lost them.
    fn seed_for(&mut self, key: u64) -> Option<HostId> {
        let seeds = self.hosts.values().filter(|h| h.info.kind == HostKind::Seed).map(|h| h.info.id);
        if self.cfg.policy != Policy::Default {
            return hashring::pick(key, seeds.map(|id| (id, u64::from(id.0))));
        }
        let (tasks, peers) = (&self.tasks, &self.peers);
        let seeding = |task: &TaskId| {
            tasks.get(task).is_some_and(|t| {
                t.seed_failed_ns.is_none()
                    && match t.seed_peer {
                        // Triggered, its peer not registered yet.
                        None => true,
                        Some(p) => peers.get(&p).is_some_and(|p| {
                            !matches!(p.state, PeerState::Succeeded | PeerState::Failed | PeerState::Leave)
                        }),
                    }
            })
        };
        let mut loads = Vec::new();
        for id in seeds {
            let load = match self.seeding.get_mut(&id) {
                Some(set) => {
                    set.retain(|t| seeding(t));
                    set.len()
                }
                None => 0,
            };
            loads.push((id, load));
        }
        let least = loads.iter().map(|&(_, load)| load).min()?;
        hashring::pick(key, loads.into_iter().filter(|&(_, load)| load == least).map(|(id, _)| (id, u64::from(id.0))))
    }

    fn add_peer(&mut self, now: TimeNs, req: RegisterPeer, completed: bool) -> Result<Vec<Decision>, SchedError> {
        if self.peers.contains_key(&req.peer) {
            return Err(SchedError::DuplicatePeer(req.peer));
        }
        if req.policy != self.cfg.policy {
            return Err(SchedError::PolicyMismatch {
                peer: req.peer,
                peer_policy: req.policy.name(),
                scheduler_policy: self.cfg.policy.name(),
            });
        }
        let host_kind = self.hosts.get(&req.host).ok_or(SchedError::UnknownHost(req.host))?.info.kind;
        let task = self.tasks.entry(req.task).or_insert_with(|| Task {
            id: req.task,
            key: req.task_key,
            piece_count: req.piece_count,
            content_length: req.content_length,
            peers: Vec::new(),
            dag: Default::default(),
            back_to_source: BTreeSet::new(),
            seed_triggered: None,
            seed_failed_ns: None,
            seed_peer: None,
            seed_blockers: BTreeSet::new(),
            stripe_dags: Vec::new(),
            home_members: Vec::new(),
            waiting: BTreeSet::new(),
            waiting_in: Vec::new(),
            fed: FedIndex::default(),
            tree: TreeIndex::default(),
            strays: Vec::new(),
            dirty: 0,
            serving: 0,
        });
        let stripes = if self.cfg.policy == Policy::Default { self.cfg.stripes as usize } else { 0 };
        if task.stripe_dags.len() != stripes {
            task.stripe_dags = vec![Default::default(); stripes];
            task.home_members = vec![Vec::new(); stripes];
            task.waiting_in = vec![BTreeSet::new(); stripes];
            task.fed = FedIndex::new(stripes);
            task.tree = TreeIndex::new(stripes);
            task.strays = vec![BTreeSet::new(); stripes];
        }
        if task.piece_count != req.piece_count {
            return Err(SchedError::PieceCountMismatch {
                task: req.task,
                known: task.piece_count,
                got: req.piece_count,
            });
        }
        self.stats.registrations += 1;
        // A seed host other than the first triggered for the task is one of its replicas
        // (`seed_peers_per_task`): it takes the task from the swarm, not the origin.
        let replica = host_kind == HostKind::Seed
            && req.need_back_to_source
            && self.cfg.seed_peers_per_task > 1
            && task.seed_triggered.is_some_and(|(first, _)| first != req.host);
        // Default policy: one seed reads the origin for a task at a time. After a failover
        // the replica now in charge may trigger a seed host other than the one that fetched
        // the task (it hears of that one only when it registers again); whichever registers
        // second takes the task from the swarm instead of the registry (the simulator's
        // replica outage of tensorflow-200 read 1.50 registry copies without this).
        // ... and none does while another host holds the task whole (the completed peers
        // a failover's hosts announce to their new replica). Looked at only for a seed
        // host's registration: the scan of the task's peers stays off the common path.
        let copy_elsewhere = || {
            let serving_seed = task.seed_peer.and_then(|p| self.peers.get(&p)).is_some_and(|p| {
                p.host != req.host
                    && matches!(
                        p.state,
                        PeerState::Received | PeerState::Running | PeerState::BackToSource | PeerState::Succeeded
                    )
            });
            serving_seed
                || task
                    .peers
                    .iter()
                    .any(|q| self.peers.get(q).is_some_and(|q| q.host != req.host && q.state == PeerState::Succeeded))
        };
        let replica = replica
            || (self.cfg.policy == Policy::Default
                && host_kind == HostKind::Seed
                && req.need_back_to_source
                && copy_elsewhere());
        let is_seed = host_kind == HostKind::Seed && req.need_back_to_source && !replica;
        task.peers.push(req.peer);
        task.dag.add_vertex(req.peer);
        for d in task.stripe_dags.iter_mut() {
            d.add_vertex(req.peer);
        }
        if is_seed {
            task.seed_peer = Some(req.peer);
        }
        // Default policy: the peer is an inner node of the stripe with the fewest so far
        // (a completed peer is a parent in every stripe; it takes no home).
        let partial = req.partial && !completed && !is_seed;
        let home_stripe = (!is_seed && !completed && stripes > 0).then(|| {
            let (si, members) =
                task.home_members.iter_mut().enumerate().min_by_key(|(_, m)| m.len()).expect("stripes > 0");
            members.push(req.peer);
            si as u32
        });
        let stripe_depth = vec![if is_seed { 0 } else { UNFED }; stripes];
        let mut need_back_to_source = req.need_back_to_source && !replica;
        let mut out = Vec::new();
        let first_download = task.serving == 0;
        let seed_pending = task.seed_triggered.is_some() && task.seed_failed_ns.is_none();
        if host_kind == HostKind::Normal && first_download && !seed_pending && !completed {
            let seed_failed_recently =
                task.seed_failed_ns.is_some_and(|t| now.saturating_sub(t) < self.cfg.seed_failed_timeout_ns);
            let key = task.key;
            let seed = self.seed_for(key);
            let task = self.tasks.get_mut(&req.task).expect("created above");
            match seed {
                Some(seed_host) if !seed_failed_recently => {
                    if self.cfg.policy == Policy::Default {
                        self.seeding.entry(seed_host).or_default().insert(req.task);
                    }
                    task.seed_triggered = Some((seed_host, now));
                    task.seed_failed_ns = None;
                    self.stats.seeds_triggered += 1;
                    out.push(Decision::TriggerSeed { task: req.task, seed_host });
                    let replicas = self.cfg.seed_peers_per_task as usize - 1;
                    if replicas > 0 {
                        let seeds = self.hosts.values().filter(|h| h.info.kind == HostKind::Seed).map(|h| h.info.id);
                        let ring = hashring::pick_n(key, seeds.map(|id| (id, u64::from(id.0))), replicas + 1);
                        for replica in ring.into_iter().filter(|h| *h != seed_host).take(replicas) {
                            out.push(Decision::TriggerSeed { task: req.task, seed_host: replica });
                        }
                    }
                }
                // No seed peer (or it failed): this peer fetches the task itself.
                _ => need_back_to_source = self.cfg.back_to_source_limit > 0,
            }
        }
        self.peers.insert(
            req.peer,
            Peer {
                id: req.peer,
                task: req.task,
                host: req.host,
                state: PeerState::Received,
                finished: PieceSet::new(req.piece_count),
                costs: CostStats::default(),
                blocked: BTreeSet::new(),
                need_back_to_source,
                rounds_without_parents: 0,
                waiting_since: None,
                registered_ns: now,
                last_progress_ns: now,
                is_seed,
                home_stripe,
                stripe_depth,
                stripe_children: 0,
                partial,
            },
        );
        self.hosts.get_mut(&req.host).expect("checked above").peers.push(req.peer);
        if completed {
            let p = self.peers.get_mut(&req.peer).expect("inserted above");
            p.finished = PieceSet::full(req.piece_count);
            self.set_state(req.peer, PeerState::Succeeded);
            self.refresh_fed(req.peer);
        } else {
            self.schedule(now, req.peer, true, &mut out);
        }
        self.wake_waiters(now, &mut out);
        Ok(out)
    }

    /// Pieces a peer finished since its last report (one request, however many pieces).
    pub fn pieces_finished(
        &mut self,
        now: TimeNs,
        peer: PeerId,
        reports: &[PieceReport],
    ) -> Result<Vec<Decision>, SchedError> {
        let p = self.peers.get_mut(&peer).ok_or(SchedError::UnknownPeer(peer))?;
        let count = p.finished.len();
        let was_outlier = p.costs.last_is_outlier;
        let mut bad = None;
        for r in reports {
            if r.piece >= count {
                bad = Some(SchedError::PieceOutOfRange { piece: r.piece, count });
                break;
            }
            p.finished.insert(r.piece);
            p.costs.add(r.cost_ns);
            p.last_progress_ns = now;
        }
        if p.costs.last_is_outlier != was_outlier {
            self.refresh_fed(peer);
        }
        if let Some(e) = bad {
            return Err(e);
        }
        // A parent that serves pieces is alive too.
        for parent in reports.iter().filter_map(|r| r.parent) {
            if let Some(q) = self.peers.get_mut(&parent) {
                q.last_progress_ns = q.last_progress_ns.max(now);
            }
        }
        let mut out = Vec::new();
        self.wake_waiters(now, &mut out);
        Ok(out)
    }

    /// A piece from `parent` failed. A temporary failure blocks that parent for this peer;
    /// the peer asks for new parents with `reschedule`.
    pub fn piece_failed(&mut self, now: TimeNs, peer: PeerId, parent: PeerId) -> Result<(), SchedError> {
        let parent_host = self.peers.get(&parent).map(|q| q.host);
        let p = self.peers.get_mut(&peer).ok_or(SchedError::UnknownPeer(peer))?;
        p.blocked.insert(parent);
        if let Some(h) = parent_host.and_then(|h| self.hosts.get_mut(&h)) {
            h.upload_failed_count += 1;
        }
        self.note_seed_blocked(now, peer, &[parent]);
        Ok(())
    }

    /// Default policy: a seed that crashed without leaving still looks alive here (its
    /// stream may stay half-open), while its children find it unreachable. Once
    /// `SEED_LOST_REPORTS` distinct children blocked it, the task counts as having lost its
    /// seed, so the first peer asking takes the seed's place at the origin at once, within
    /// the back-to-source budget. Without this, every child waits out its own timeout and
    /// the peers' own give-up rule sends each of them to the origin.
    fn note_seed_blocked(&mut self, now: TimeNs, child: PeerId, blocked: &[PeerId]) {
        if self.cfg.policy != Policy::Default {
            return;
        }
        let Some(task_id) = self.peers.get(&child).map(|p| p.task) else { return };
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        let Some(seed) = task.seed_peer else { return };
        if child == seed || !blocked.contains(&seed) || task.seed_failed_ns.is_some() {
            return;
        }
        task.seed_blockers.insert(child);
        if task.seed_blockers.len() >= SEED_LOST_REPORTS {
            task.seed_failed_ns = Some(now);
            // No longer a copy coming from the origin: its place there is free.
            task.back_to_source.remove(&seed);
        }
    }

    /// The peer wants new parents; `blocked` are parents it gives up on.
    pub fn reschedule(&mut self, now: TimeNs, peer: PeerId, blocked: &[PeerId]) -> Result<Vec<Decision>, SchedError> {
        let p = self.peers.get_mut(&peer).ok_or(SchedError::UnknownPeer(peer))?;
        p.blocked.extend(blocked.iter().copied());
        let state = p.state;
        self.note_seed_blocked(now, peer, blocked);
        let mut out = Vec::new();
        if matches!(state, PeerState::Received | PeerState::Running) {
            self.schedule(now, peer, true, &mut out);
        }
        self.wake_waiters(now, &mut out);
        Ok(out)
    }

    /// A triggered seed host will not serve `task`: it did not register its peer in time,
    /// has no seed-task stream to be told on, or was evicted. The task goes on as after a
    /// seed peer's failure: waiting peers stop counting on it (the default policy sends one
    /// to the origin once its wait ends), and a later download may trigger a seed again
    /// after `seed_failed_timeout_ns`. Nothing happens for a host that is not the task's
    /// triggered seed (a late report of an older trigger).
    pub fn seed_unavailable(&mut self, now: TimeNs, task: TaskId, seed_host: HostId) -> Vec<Decision> {
        let mut out = Vec::new();
        let Some(t) = self.tasks.get_mut(&task) else {
            return out;
        };
        if t.seed_triggered.map(|(h, _)| h) != Some(seed_host) || t.seed_failed_ns.is_some() {
            return out;
        }
        t.seed_failed_ns = Some(now);
        // Every stripe may now hand its waiters to someone else.
        t.dirty |= u64::MAX >> (64 - t.stripe_dags.len().clamp(1, 64));
        self.dirty_tasks.insert(task);
        if let Some(tasks) = self.seeding.get_mut(&seed_host) {
            tasks.remove(&task);
        }
        self.stats.seeds_unavailable += 1;
        self.wake_waiters(now, &mut out);
        out
    }

    /// The peer's plan gave up on P2P and asks to fetch the rest from the origin. This is
    /// the only way a peer reaches the origin besides an order of the scheduler's own, so
    /// the task's `back_to_source_limit` holds for every driver: under it the peer is sent
    /// to the origin; at it the peer gets another round of parents (or waits for one, as a
    /// rescheduling peer does). A peer no longer downloading gets no answer.
    pub fn ask_back_to_source(&mut self, now: TimeNs, peer: PeerId) -> Result<Vec<Decision>, SchedError> {
        let p = self.peers.get(&peer).ok_or(SchedError::UnknownPeer(peer))?;
        let mut out = Vec::new();
        if !matches!(p.state, PeerState::Received | PeerState::Running) {
            return Ok(out);
        }
        let in_flight = self.tasks[&p.task].back_to_source.len() as u32;
        if in_flight < self.cfg.back_to_source_limit {
            self.order_back_to_source(now, peer, BackToSourceReason::PeerAsked, &mut out);
        } else {
            self.stats.back_to_source_refusals += 1;
            self.schedule(now, peer, true, &mut out);
        }
        self.wake_waiters(now, &mut out);
        Ok(out)
    }

    /// A partial peer (`RegisterPeer::partial`) now wants the whole task (a lazy reader's
    /// background prefetch). One the origin served its ranges comes back to P2P for the
    /// rest (its peer core left the origin too): a whole blob from the origin for every
    /// lazy reader that once stalled was issue 23's registry storm. A no-op for a peer that
    /// wanted all already.
    pub fn peer_wants_all(&mut self, now: TimeNs, peer: PeerId) -> Result<Vec<Decision>, SchedError> {
        let p = self.peers.get_mut(&peer).ok_or(SchedError::UnknownPeer(peer))?;
        if !std::mem::take(&mut p.partial) {
            return Ok(Vec::new());
        }
        if p.state == PeerState::BackToSource && !p.is_seed {
            let task = p.task;
            self.tasks.get_mut(&task).expect("a peer's task exists").back_to_source.remove(&peer);
            self.set_state(peer, PeerState::Running);
            self.refresh_fed(peer);
        }
        // Stripes it went without while its ranges came from elsewhere get a parent now.
        let mut out = Vec::new();
        if matches!(self.peers[&peer].state, PeerState::Received | PeerState::Running) {
            self.schedule(now, peer, true, &mut out);
        }
        self.wake_waiters(now, &mut out);
        Ok(out)
    }

    pub fn peer_finished(&mut self, now: TimeNs, peer: PeerId) -> Result<Vec<Decision>, SchedError> {
        let p = self.peers.get_mut(&peer).ok_or(SchedError::UnknownPeer(peer))?;
        p.finished = PieceSet::full(p.finished.len());
        p.waiting_since = None;
        // It holds the whole task now, whatever it set out to fetch.
        p.partial = false;
        let task = p.task;
        self.set_state(peer, PeerState::Succeeded);
        self.drop_in_edges(peer);
        let t = self.tasks.get_mut(&task).expect("peer's task exists");
        t.back_to_source.remove(&peer);
        t.unwait(peer);
        self.refresh_fed(peer);
        let mut out = Vec::new();
        self.wake_waiters(now, &mut out);
        Ok(out)
    }

    /// The peer gave up (or its back-to-source failed). Its children lose a parent and
    /// ask for new ones when their own plan notices.
    pub fn peer_failed(&mut self, now: TimeNs, peer: PeerId) -> Result<(), SchedError> {
        self.remove_peer(now, peer, PeerState::Failed)
    }

    pub fn peer_left(&mut self, now: TimeNs, peer: PeerId) -> Result<(), SchedError> {
        self.remove_peer(now, peer, PeerState::Leave)
    }

    /// Earliest pending timer.
    pub fn next_timer(&self) -> Option<TimeNs> {
        self.timers.first().map(|t| t.0)
    }

    /// Runs every timer due at or before `now`.
    pub fn on_timers(&mut self, now: TimeNs) -> Vec<Decision> {
        let mut out = Vec::new();
        while let Some(&(at, seq, peer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, seq, peer));
            let Some(p) = self.peers.get(&peer) else {
                continue;
            };
            if matches!(p.state, PeerState::Received | PeerState::Running) {
                self.schedule(now, peer, false, &mut out);
            }
        }
        self.wake_waiters(now, &mut out);
        out
    }

    /// Evicts running peers that made no progress for `peer_idle_timeout_ns` (abnormal
    /// peers: hung daemons, vanished nodes). Returns the evicted peers.
    pub fn evict_idle(&mut self, now: TimeNs) -> Vec<PeerId> {
        let idle: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| matches!(p.state, PeerState::Running | PeerState::BackToSource))
            .filter(|p| now.saturating_sub(p.last_progress_ns) >= self.cfg.peer_idle_timeout_ns)
            .map(|p| p.id)
            .collect();
        for p in &idle {
            let _ = self.remove_peer(now, *p, PeerState::Leave);
            self.stats.evictions += 1;
        }
        idle
    }

    // ---- read access for drivers and tests ----

    pub fn peer_state(&self, peer: PeerId) -> Option<PeerState> {
        self.peers.get(&peer).map(|p| p.state)
    }
    /// Current parents in any DAG of the task (the task's, or a stripe's), each once.
    pub fn parents_of(&self, peer: PeerId) -> Vec<PeerId> {
        let Some(p) = self.peers.get(&peer) else {
            return Vec::new();
        };
        let t = &self.tasks[&p.task];
        let mut all: Vec<PeerId> = t.dag.parents(peer).to_vec();
        for d in &t.stripe_dags {
            all.extend_from_slice(d.parents(peer));
        }
        all.sort();
        all.dedup();
        all
    }
    /// Every DAG of the task is acyclic (the task's, and each stripe's).
    pub fn task_is_acyclic(&self, task: TaskId) -> bool {
        self.tasks.get(&task).is_none_or(|t| t.dag.is_acyclic() && t.stripe_dags.iter().all(|d| d.is_acyclic()))
    }
    /// Tasks whose DAGs hold a cycle: a peer that is its own ancestor. `Dag` refuses such
    /// edges, so this is empty unless that rule is broken; drivers check it (the madsim suite
    /// after every step).
    pub fn cyclic_tasks(&self) -> Vec<TaskId> {
        self.tasks.keys().copied().filter(|t| !self.task_is_acyclic(*t)).collect()
    }
    pub fn back_to_source_count(&self, task: TaskId) -> usize {
        self.tasks.get(&task).map_or(0, |t| t.back_to_source.len())
    }
    pub fn host(&self, host: HostId) -> Option<&Host> {
        self.hosts.get(&host)
    }

    // ---- internals ----

    fn arm(&mut self, at: TimeNs, peer: PeerId) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq, peer));
    }

    /// One scheduling round for `peer`, following its policy.
    /// `asked`: the peer asked (registration, reschedule) and waits for an answer even if
    /// its parents stay the same.
    fn schedule(&mut self, now: TimeNs, peer: PeerId, asked: bool, out: &mut Vec<Decision>) {
        match self.cfg.policy {
            Policy::Dragonfly => self.schedule_dragonfly(now, peer, out),
            Policy::Kraken => self.schedule_kraken(now, peer, out),
            Policy::Default => self.schedule_default(now, peer, asked, out),
        }
    }

    /// Dragonfly v2 `ScheduleCandidateParents`: back to source when ordered or after
    /// `retry_back_to_source_limit` empty rounds (while the task is under its limit),
    /// failure after `retry_limit`, otherwise retry every `retry_interval`.
    fn schedule_dragonfly(&mut self, now: TimeNs, peer: PeerId, out: &mut Vec<Decision>) {
        let p = &self.peers[&peer];
        let task = &self.tasks[&p.task];
        let can_back_to_source =
            task.back_to_source.len() as u32 <= self.cfg.back_to_source_limit && self.cfg.back_to_source_limit > 0;
        if can_back_to_source
            && (p.need_back_to_source || p.rounds_without_parents >= self.cfg.retry_back_to_source_limit)
        {
            let reason =
                if p.need_back_to_source { BackToSourceReason::Ordered } else { BackToSourceReason::NoParents };
            self.order_back_to_source(now, peer, reason, out);
            return;
        }
        if p.rounds_without_parents >= self.cfg.retry_limit {
            self.fail(now, peer, FailReason::RetryLimit, out);
            return;
        }
        self.drop_in_edges(peer);
        let parents = select::dragonfly(self, peer);
        if parents.is_empty() {
            let p = self.peers.get_mut(&peer).expect("exists");
            p.rounds_without_parents += 1;
            self.arm(now + self.cfg.retry_interval_ns, peer);
        } else {
            self.give_parents(now, peer, parents, out);
        }
    }

    /// Kraken: origins fetch the whole blob first (agents poll the metainfo with backoff
    /// until then); afterwards each announce gets a random handout, completed peers first.
    fn schedule_kraken(&mut self, now: TimeNs, peer: PeerId, out: &mut Vec<Decision>) {
        let p = &self.peers[&peer];
        if p.need_back_to_source {
            self.order_back_to_source(now, peer, BackToSourceReason::Ordered, out);
            return;
        }
        let task = &self.tasks[&p.task];
        // The blob is in the origin cluster once the seed has it; a peer registered as
        // holding it whole (a restarted agent) has it too.
        let origin_ready =
            task.seed_peer.and_then(|s| self.peers.get(&s)).is_some_and(|s| s.state == PeerState::Succeeded)
                || task.peers.iter().any(|q| self.peers.get(q).is_some_and(|q| q.state == PeerState::Succeeded));
        if !origin_ready {
            let rounds = p.rounds_without_parents;
            let backoff = (self.cfg.poll_initial_ns as f64 * self.cfg.poll_factor.powi(rounds.min(64) as i32))
                .min(self.cfg.poll_max_ns as f64) as TimeNs;
            self.peers.get_mut(&peer).expect("exists").rounds_without_parents += 1;
            self.arm(now + backoff.max(1), peer);
            return;
        }
        let parents = select::kraken(self, peer);
        // Kraken keeps no DAG: handouts are connections, used in both directions.
        self.set_state(peer, PeerState::Running);
        let p = self.peers.get_mut(&peer).expect("exists");
        p.rounds_without_parents = 0;
        self.stats.parent_rounds += 1;
        out.push(Decision::Parents { peer, parents });
    }

    /// The project's policy: a parent per stripe, see `select::default_stripe`.
    /// Differences from Dragonfly that matter at scale:
    /// - no 2 s retry cliff: a peer missing a parent in some stripe waits and is scheduled
    ///   the moment one may have appeared (a peer gets fed, starts back-to-source, or
    ///   finishes), so a burst of registrations never turns into a back-to-source storm;
    /// - back-to-source is for seed peers; a normal peer goes to the origin only when no
    ///   seed serves the task and it waited `wait_for_parent_timeout_ns`, within a small
    ///   per-task budget;
    /// - a stripe keeps its parent until that parent fails, is blocked or leaves: the
    ///   trees stay put instead of being rebuilt on every round.
    fn schedule_default(&mut self, now: TimeNs, peer: PeerId, asked: bool, out: &mut Vec<Decision>) {
        let p = &self.peers[&peer];
        let task_id = p.task;
        let task = &self.tasks[&task_id];
        let under_budget = (task.back_to_source.len() as u32) < self.cfg.back_to_source_limit;
        if p.need_back_to_source && (p.is_seed || under_budget) {
            self.order_back_to_source(now, peer, BackToSourceReason::Ordered, out);
            return;
        }
        // The seed failed mid-task and no peer holds the whole content or is at the origin:
        // every tree hangs from a dead root. The first peer asking for parents takes the
        // seed's place at the origin (one, not the budget's worth: each is another copy
        // from the registry) and the others are fed through it.
        if asked && under_budget && task.seed_failed_ns.is_some() && task.back_to_source.is_empty() {
            // (A seed counted as lost is no copy, even if it finished before it went.)
            let whole_copy = task.peers.iter().any(|q| {
                Some(*q) != task.seed_peer && self.peers.get(q).is_some_and(|q| q.state == PeerState::Succeeded)
            });
            if !whole_copy {
                self.order_back_to_source(now, peer, BackToSourceReason::NoParents, out);
                return;
            }
        }
        let mut changed = false;
        // Leaves that made room for this peer (push-down), placed again once it is fed.
        let mut orphans = Vec::new();
        for si in 0..task.stripe_dags.len() {
            let blocked: Vec<PeerId> = {
                let p = &self.peers[&peer];
                let dag = &self.tasks[&task_id].stripe_dags[si];
                dag.parents(peer).iter().copied().filter(|q| p.blocked.contains(q)).collect()
            };
            for q in blocked {
                self.remove_stripe_edge(task_id, si, q, peer);
                changed = true;
            }
            let dag = &self.tasks[&task_id].stripe_dags[si];
            if dag.in_degree(peer) > 0 {
                continue;
            }
            let placement = select::default_stripe(self, peer, si as u32);
            if let Some(Placement::PushDown { parent, orphan }) = &placement {
                self.remove_stripe_edge(task_id, si, parent.peer, *orphan);
                orphans.push(*orphan);
            }
            match placement {
                Some(Placement::Under(parent) | Placement::PushDown { parent, .. }) => {
                    changed |= self.attach_stripe(task_id, si, &parent, peer);
                }
                Some(Placement::Fallback(parent)) => {
                    let attached = self.attach_stripe(task_id, si, &parent, peer);
                    if attached {
                        changed = true;
                        self.tasks.get_mut(&task_id).expect("exists").strays[si].insert(peer);
                    }
                }
                None => {}
            }
        }
        changed |= self.seed_takes_the_unplaced(now, peer);
        let (parents, missing) = self.stripe_parents(peer);
        if parents.is_empty() {
            // Not fed after all (a refused edge): the leaves it displaced still need a place.
            for orphan in orphans.drain(..) {
                self.schedule(now, orphan, true, out);
            }
        }
        let task = self.tasks.get_mut(&task_id).expect("exists");
        if missing {
            task.wait(peer);
            self.peers.get_mut(&peer).expect("exists").waiting_since.get_or_insert(now);
        } else {
            task.unwait(peer);
            self.peers.get_mut(&peer).expect("exists").waiting_since = None;
        }
        if !parents.is_empty() {
            if changed || asked {
                self.set_state(peer, PeerState::Running);
                let p = self.peers.get_mut(&peer).expect("exists");
                p.rounds_without_parents = 0;
                self.stats.parent_rounds += 1;
                out.push(Decision::Parents { peer, parents });
            }
            // Fed now: an eligible parent for whoever waits (the handler wakes them).
            self.refresh_fed(peer);
            for orphan in orphans {
                self.schedule(now, orphan, true, out);
            }
            return;
        }
        let p = &self.peers[&peer];
        let task = &self.tasks[&task_id];
        // A seed this peer blocked (it failed the peer: unreachable, bad pieces) serves
        // others, not this peer: waiting for it would be waiting forever.
        let seed_blocked = task.seed_peer.is_some_and(|s| p.blocked.contains(&s));
        let seed_serving = task.seed_failed_ns.is_none() && task.seed_triggered.is_some() && !seed_blocked;
        let waited_since = p.waiting_since.unwrap_or(now);
        if !seed_serving && under_budget && now - waited_since >= self.cfg.wait_for_parent_timeout_ns {
            self.order_back_to_source(now, peer, BackToSourceReason::NoParents, out);
            return;
        }
        // Re-check when the wait times out (again later if a seed still serves the task).
        let deadline = waited_since + self.cfg.wait_for_parent_timeout_ns;
        let at = if deadline > now { deadline } else { now + self.cfg.wait_for_parent_timeout_ns.max(1) };
        self.arm(at, peer);
    }

    /// Default policy: in the stripes where no candidate fit `peer`, the seed peer takes it
    /// beyond its `seed_children_per_stripe` roots once it has waited
    /// `wait_for_parent_timeout_ns` (at once for range readers sent 1.70 registry copies
    /// of an 8-layer image to 200 lazy pods, against 1.06: the seed's upload went to the
    /// readers and its own trees starved). The seed holds the task whole; without this a
    /// reader that blocked the other readers above it (they hold only their own ranges,
    /// and never fetch the pieces it wants) waited for a change that never came, the seed
    /// counting as serving the task: every read of a range nobody else reads went to the
    /// registry after the mirror's wait. True if an edge was added.
    fn seed_takes_the_unplaced(&mut self, now: TimeNs, peer: PeerId) -> bool {
        let p = &self.peers[&peer];
        let waited = p.waiting_since.is_some_and(|w| now.saturating_sub(w) >= self.cfg.wait_for_parent_timeout_ns);
        if !waited {
            return false;
        }
        let task_id = p.task;
        let mut added = false;
        for si in 0..self.tasks[&task_id].stripe_dags.len() {
            let t = &self.tasks[&task_id];
            let dag = &t.stripe_dags[si];
            if dag.in_degree(peer) > 0 {
                continue;
            }
            let Some(seed) = select::usable_seed(t, &self.peers, &self.peers[&peer], dag) else {
                break;
            };
            if self.hosts[&seed.host].info.disable_shared {
                break;
            }
            let stripe = Some(Stripe { index: si as u32, count: t.stripe_dags.len() as u32 });
            let parent = ParentRef { peer: seed.id, host: seed.host, stripe };
            added |= self.attach_stripe(task_id, si, &parent, peer);
        }
        if added {
            self.stats.seed_fallbacks += 1;
        }
        added
    }

    /// Adds `parent -> child` to stripe `si`'s DAG with its bookkeeping; false if refused.
    fn attach_stripe(&mut self, task_id: TaskId, si: usize, parent: &ParentRef, child: PeerId) -> bool {
        let depth = select::depth_of(&self.peers[&parent.peer], si).min(UNFED - 1);
        let task = self.tasks.get_mut(&task_id).expect("exists");
        let added = task.stripe_dags[si].add_edge(parent.peer, child);
        debug_assert!(added.is_ok(), "selection returned a parent the stripe DAG refuses");
        if added.is_err() {
            return false;
        }
        self.peers.get_mut(&parent.peer).expect("exists").stripe_children += 1;
        self.take_upload(parent.host);
        self.peers.get_mut(&child).expect("exists").stripe_depth[si] = depth + 1;
        self.refresh_fed(parent.peer);
        true
    }

    /// Default policy: the peer's parents, one `ParentRef` per stripe edge, and whether
    /// some stripe has none.
    fn stripe_parents(&self, peer: PeerId) -> (Vec<ParentRef>, bool) {
        let task = &self.tasks[&self.peers[&peer].task];
        let stripes = task.stripe_dags.len() as u32;
        let mut parents = Vec::new();
        let mut missing = false;
        for (si, dag) in task.stripe_dags.iter().enumerate() {
            missing |= dag.in_degree(peer) == 0;
            for q in dag.parents(peer) {
                let stripe = Some(Stripe { index: si as u32, count: stripes });
                parents.push(ParentRef { peer: *q, host: self.peers[q].host, stripe });
            }
        }
        (parents, missing)
    }

    /// Default policy: children placed in stripe `si` under a peer that is no inner node
    /// there (when no inner node had room) move to an inner node's open slot once there
    /// is one, so a stray edge does not keep eating a leaf's upload, which its home
    /// stripe's children need, for the whole download.
    fn adopt_strays(&mut self, now: TimeNs, task_id: TaskId, si: usize, out: &mut Vec<Decision>) {
        // A stray that fits no open slot is looked at again on the next change; the bound
        // keeps a stripe full of strays that the open slots cannot take from costing a
        // scan of them all on every change.
        let strays: Vec<PeerId> = self.tasks[&task_id].strays[si].iter().copied().take(STRAYS_PER_WAKE).collect();
        let mut misses = 0;
        for c in strays {
            if misses == STRAY_MISSES_PER_WAKE {
                break;
            }
            let t = &self.tasks[&task_id];
            if t.tree.open(si).next().is_none() {
                break;
            }
            let parent = t.stripe_dags[si].parents(c).first().copied();
            let still_stray = parent
                .is_some_and(|q| self.peers.get(&q).is_some_and(|q| !select::tree_parent(q, si as u32)))
                && self.peers.get(&c).is_some_and(|c| c.state == PeerState::Running);
            let (Some(q), true) = (parent, still_stray) else {
                self.tasks.get_mut(&task_id).expect("exists").strays[si].remove(&c);
                continue;
            };
            let t = &self.tasks[&task_id];
            let child = &self.peers[&c];
            let seed = select::usable_seed(t, &self.peers, child, &t.stripe_dags[si]);
            let slot = select::open_slot(&self.cfg, &self.hosts, t, &self.peers, child, si, seed);
            if let Some((_, p)) = slot {
                let stripe = Some(Stripe { index: si as u32, count: t.stripe_dags.len() as u32 });
                let p = ParentRef { peer: p, host: self.peers[&p].host, stripe };
                self.tasks.get_mut(&task_id).expect("exists").strays[si].remove(&c);
                self.remove_stripe_edge(task_id, si, q, c);
                if self.attach_stripe(task_id, si, &p, c) {
                    self.refresh_fed(c);
                } else {
                    // Refused after all: it waits for a parent in this stripe like any peer.
                    self.tasks.get_mut(&task_id).expect("exists").wait(c);
                    self.peers.get_mut(&c).expect("exists").waiting_since.get_or_insert(now);
                }
                let (parents, _) = self.stripe_parents(c);
                self.stats.parent_rounds += 1;
                out.push(Decision::Parents { peer: c, parents });
            } else {
                misses += 1;
            }
        }
    }

    fn remove_stripe_edge(&mut self, task: TaskId, si: usize, parent: PeerId, child: PeerId) {
        let t = self.tasks.get_mut(&task).expect("exists");
        if t.stripe_dags[si].remove_edge(parent, child) {
            // The parent (the seed too, which no index holds) has room again here.
            t.dirty |= 1 << si;
            self.dirty_tasks.insert(task);
            let q = self.peers.get_mut(&parent).expect("exists");
            q.stripe_children = q.stripe_children.saturating_sub(1);
            let host = q.host;
            self.release_uploads(host, 1);
            self.peers.get_mut(&child).expect("exists").stripe_depth[si] = UNFED;
            self.refresh_fed(parent);
            self.refresh_fed(child);
        }
    }

    /// Counts a new child edge of a host.
    fn take_upload(&mut self, host: HostId) {
        let h = self.hosts.get_mut(&host).expect("parent host known");
        h.concurrent_uploads += 1;
        h.upload_count += 1;
        if h.free_uploads() == 0 {
            self.refresh_host(host);
        }
    }

    /// Gives back `n` child edges of a host.
    fn release_uploads(&mut self, host: HostId, n: u32) {
        let Some(h) = self.hosts.get_mut(&host) else {
            return;
        };
        let was_full = h.free_uploads() == 0;
        h.concurrent_uploads = h.concurrent_uploads.saturating_sub(n);
        if was_full && h.free_uploads() > 0 {
            self.refresh_host(host);
        }
    }

    fn refresh_host(&mut self, host: HostId) {
        if self.cfg.policy != Policy::Default {
            return;
        }
        let peers = self.hosts[&host].peers.clone();
        for p in peers {
            self.refresh_fed(p);
        }
    }

    /// Default policy: puts the peer in or out of its task's fed index, stripe by stripe
    /// (`select::offers_stripe`); a stripe it joins gets its waiters woken. Called after
    /// every change to what that filter reads.
    fn refresh_fed(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(&p.task) else {
            return;
        };
        let host = &self.hosts[&p.host];
        let mut joined = 0u64;
        for si in 0..task.stripe_dags.len() {
            if task.fed.set(peer, si, select::offers_stripe(&self.cfg, host, p, si)) {
                joined |= 1 << si;
            }
        }
        let entry = select::tree_entry(&self.cfg, host, p, &task.stripe_dags, &self.peers);
        let opened = entry.and_then(|e| e.open.map(|_| e.stripe));
        if task.tree.entry(peer).and_then(|e| e.open).is_none() {
            if let Some(si) = opened {
                joined |= 1 << si;
            }
        }
        task.tree.set(peer, entry);
        if joined != 0 {
            task.dirty |= joined;
            self.dirty_tasks.insert(p.task);
        }
    }

    /// Moves a peer to `state`, keeping its task's count of serving peers.
    fn set_state(&mut self, peer: PeerId, state: PeerState) {
        let serves = |s: PeerState| matches!(s, PeerState::Running | PeerState::BackToSource | PeerState::Succeeded);
        let p = self.peers.get_mut(&peer).expect("exists");
        let before = serves(p.state);
        p.state = state;
        if before != serves(state) {
            let t = self.tasks.get_mut(&p.task).expect("exists");
            if before {
                t.serving -= 1;
            } else {
                t.serving += 1;
            }
        }
    }

    /// Default policy: schedules the waiting peers of every stripe that gained a possible
    /// parent, in id order, while the stripe has any left. A stripe's waiters are not
    /// touched when nothing changed for them, so a burst of registrations does not turn
    /// into rounds over every waiting peer. Nested calls (a woken peer's new parents wake
    /// others) leave the work to the running one, so the stack stays flat.
    fn wake_waiters(&mut self, now: TimeNs, out: &mut Vec<Decision>) {
        if self.cfg.policy != Policy::Default || self.waking {
            return;
        }
        self.waking = true;
        while let Some(task_id) = self.dirty_tasks.pop_first() {
            loop {
                let mask = std::mem::take(&mut self.tasks.get_mut(&task_id).expect("exists").dirty);
                if mask == 0 {
                    break;
                }
                for si in (0..64).filter(|si| mask >> si & 1 == 1) {
                    let mut after: Option<PeerId> = None;
                    loop {
                        let t = &self.tasks[&task_id];
                        if !self.stripe_has_room(t, si) {
                            break;
                        }
                        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
                        let Some(&w) = t.waiting_in[si].range((lower, Bound::Unbounded)).next() else {
                            break;
                        };
                        after = Some(w);
                        self.schedule(now, w, false, out);
                    }
                    self.adopt_strays(now, task_id, si, out);
                }
            }
        }
        self.waking = false;
    }

    /// Some parent could take a child in stripe `si`: a fed peer in the index, or the
    /// seed peer with a free root slot.
    fn stripe_has_room(&self, t: &Task, si: usize) -> bool {
        !t.fed.is_empty(si)
            || t.tree.open(si).next().is_some()
            || t.seed_peer
                .and_then(|p| self.peers.get(&p))
                .is_some_and(|seed| select::seed_has_room(&self.cfg, &self.hosts[&seed.host], seed, &t.stripe_dags[si]))
    }

    fn give_parents(&mut self, _now: TimeNs, peer: PeerId, parents: Vec<ParentRef>, out: &mut Vec<Decision>) {
        let task_id = self.peers[&peer].task;
        for parent in &parents {
            let task = self.tasks.get_mut(&task_id).expect("exists");
            if task.dag.add_edge(parent.peer, peer).is_ok() {
                self.take_upload(parent.host);
            } else {
                debug_assert!(false, "selection returned a parent the DAG refuses");
            }
        }
        self.set_state(peer, PeerState::Running);
        let p = self.peers.get_mut(&peer).expect("exists");
        p.rounds_without_parents = 0;
        p.waiting_since = None;
        self.tasks.get_mut(&task_id).expect("exists").unwait(peer);
        self.stats.parent_rounds += 1;
        out.push(Decision::Parents { peer, parents });
    }

    fn order_back_to_source(
        &mut self,
        _now: TimeNs,
        peer: PeerId,
        reason: BackToSourceReason,
        out: &mut Vec<Decision>,
    ) {
        self.drop_in_edges(peer);
        self.set_state(peer, PeerState::BackToSource);
        let p = self.peers.get_mut(&peer).expect("exists");
        p.waiting_since = None;
        let (task_id, is_seed) = (p.task, p.is_seed);
        let task = self.tasks.get_mut(&task_id).expect("exists");
        task.back_to_source.insert(peer);
        task.unwait(peer);
        if is_seed {
            // The seed takes one root per stripe; no index holds it.
            task.dirty |= u64::MAX >> (64 - task.stripe_dags.len().max(1));
            self.dirty_tasks.insert(task_id);
        }
        self.refresh_fed(peer);
        self.stats.back_to_source_orders += 1;
        out.push(Decision::BackToSource { peer, reason });
    }

    fn fail(&mut self, now: TimeNs, peer: PeerId, reason: FailReason, out: &mut Vec<Decision>) {
        let _ = self.remove_peer(now, peer, PeerState::Failed);
        self.stats.failures += 1;
        out.push(Decision::Failed { peer, reason });
    }

    /// Deletes the peer's in-edges and gives back the parents' upload slots and stripes.
    fn drop_in_edges(&mut self, peer: PeerId) {
        let task_id = self.peers[&peer].task;
        let task = self.tasks.get_mut(&task_id).expect("exists");
        let mut former = task.dag.remove_in_edges(peer);
        let mut stripe_former = Vec::new();
        for (si, d) in task.stripe_dags.iter_mut().enumerate() {
            let lost = d.remove_in_edges(peer);
            if !lost.is_empty() {
                task.dirty |= 1 << si;
                self.dirty_tasks.insert(task_id);
            }
            stripe_former.extend(lost);
        }
        for q in &stripe_former {
            let q = self.peers.get_mut(q).expect("exists");
            q.stripe_children = q.stripe_children.saturating_sub(1);
        }
        former.extend(stripe_former);
        let p = self.peers.get_mut(&peer).expect("exists");
        for depth in p.stripe_depth.iter_mut() {
            *depth = UNFED;
        }
        for parent in &former {
            let host = self.peers[parent].host;
            self.release_uploads(host, 1);
        }
        for parent in former {
            self.refresh_fed(parent);
        }
        self.refresh_fed(peer);
    }

    fn remove_peer(&mut self, now: TimeNs, peer: PeerId, state: PeerState) -> Result<(), SchedError> {
        let p = self.peers.get(&peer).ok_or(SchedError::UnknownPeer(peer))?;
        let task_id = p.task;
        let was_seed = p.is_seed;
        self.drop_in_edges(peer);
        let task = self.tasks.get_mut(&task_id).expect("exists");
        // Its children lose this parent; the vertex stays, edge-less, so the peer keeps
        // its place in the task's history until garbage collection.
        let mut children = task.dag.remove_vertex(peer);
        task.dag.add_vertex(peer);
        for (si, d) in task.stripe_dags.iter_mut().enumerate() {
            let lost = d.remove_vertex(peer);
            d.add_vertex(peer);
            for c in &lost {
                if let Some(cp) = self.peers.get_mut(c) {
                    cp.stripe_depth[si] = UNFED;
                }
            }
            children.extend(lost);
        }
        let orphans = children.clone();
        if let Some(home) = self.peers[&peer].home_stripe {
            task.home_members[home as usize].retain(|m| *m != peer);
        }
        task.back_to_source.remove(&peer);
        task.unwait(peer);
        if was_seed && state == PeerState::Failed {
            task.seed_failed_ns = Some(now);
        }
        let host = self.peers[&peer].host;
        self.release_uploads(host, children.len() as u32);
        self.set_state(peer, state);
        let p = self.peers.get_mut(&peer).expect("exists");
        p.waiting_since = None;
        p.stripe_children = 0;
        self.refresh_fed(peer);
        let task = self.tasks.get_mut(&task_id).expect("exists");
        for c in &orphans {
            // A waiting child now waits in the stripes it lost this parent in too.
            if task.waiting.contains(c) {
                task.wait(*c);
            }
        }
        for c in orphans {
            self.refresh_fed(c);
        }
        Ok(())
    }
}

#[path = "host_left.rs"]
mod host_left;
pub use host_left::HostLeft;

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
