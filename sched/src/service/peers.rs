//! A peer's life as the service sees it: registration (the first AnnouncePeer message),
//! progress reports, rescheduling, the end of its download, and leaving (LeavePeer,
//! LeaveTask, LeaveHost). Each handler checks the wire input, calls the core once and
//! delivers the core's decisions.

use super::error::ServiceError;
use super::state::{HostRecord, OnClose, PeerRecord, PeerStream, State, TaskRecord};
use super::wire::{self, Registration, MAX_BLOCKED_PER_RESCHEDULE};
use crate::core::hashring;
use crate::core::{HostId, HostKind, PeerId, PeerState, PieceReport, PieceSet, RegisterPeer, TaskId, TimeNs};
use api::pb;
use api::pb::announce_peer_response::Response;
use tonic::Status;

impl State {
    /// Registers a peer whose responses go to `stream`. Sends `Registered`, then whatever
    /// the core decided.
    pub fn register_peer(
        &mut self,
        now: TimeNs,
        reg: Registration,
        stream: PeerStream,
    ) -> Result<PeerId, ServiceError> {
        let host = self.live_host(&reg.host_id)?;
        // A peer id may be reused once its peer failed or left, never while it is active.
        if let Some(existing) = self.peer_ids.get(&reg.peer_id) {
            if !matches!(self.core.peer_state(PeerId(existing)), None | Some(PeerState::Failed | PeerState::Leave)) {
                return Err(ServiceError::PeerExists(reg.peer_id));
            }
        }
        let existing_task = self.task_ids.get(&reg.task_id).map(TaskId);
        if let Some(task) = existing_task {
            let known = &self.tasks[task.0 as usize].meta;
            for (field, known, got) in [
                ("piece_length_bytes", known.piece_length_bytes, reg.meta.piece_length_bytes),
                ("content_length_bytes", known.content_length_bytes, reg.meta.content_length_bytes),
            ] {
                if known != got {
                    return Err(ServiceError::TaskMismatch { task: reg.task_id, field, known, got });
                }
            }
        }
        self.admit(host, existing_task, &reg)?;
        // Checks are done: allocate handles and records (a handle always has a record).
        let task = match existing_task {
            Some(t) => {
                // A completed peer's registration carries the URL of its store (possibly
                // redacted) and no origin headers: the first downloading peer's replace them,
                // as they are what a seed would fetch with.
                let rec = &mut self.tasks[t.0 as usize];
                if rec.meta_from_completed && !reg.completed {
                    rec.meta = reg.meta.clone();
                    rec.meta_from_completed = false;
                }
                t
            }
            None => {
                let t = TaskId(self.task_ids.rebind(&reg.task_id, "task")?);
                self.tasks.push(TaskRecord {
                    meta: reg.meta.clone(),
                    peers: Vec::new(),
                    seed_host: None,
                    meta_from_completed: reg.completed,
                });
                t
            }
        };
        let peer = PeerId(self.peer_ids.rebind(&reg.peer_id, "peer")?);
        let is_seed = reg.need_back_to_source && self.hosts[host.0 as usize].info.kind == HostKind::Seed;
        self.peers.push(PeerRecord {
            task,
            host,
            reported: if reg.completed {
                PieceSet::full(reg.meta.piece_count)
            } else {
                PieceSet::new(reg.meta.piece_count)
            },
            is_seed,
            stream: None,
        });
        let core_reg = RegisterPeer {
            peer,
            task,
            task_key: hashring::key_of(reg.task_id.as_bytes()),
            host,
            piece_count: reg.meta.piece_count,
            content_length: reg.meta.content_length_bytes,
            need_back_to_source: reg.need_back_to_source,
            policy: reg.policy,
            partial: reg.partial,
        };
        let decisions = if reg.completed {
            self.core.register_completed_peer(now, core_reg)?
        } else {
            self.core.register_peer(now, core_reg)?
        };
        self.hosts[host.0 as usize].peers.push(peer);
        self.tasks[task.0 as usize].peers.push(peer);
        if is_seed && self.pending_seeds.get(&task).is_some_and(|p| p.host == host) {
            self.pending_seeds.remove(&task);
        }
        self.peers[peer.0 as usize].stream = Some(stream);
        tracing::info!(
            peer = reg.peer_id,
            task = reg.task_id,
            host = reg.host_id,
            need_back_to_source = reg.need_back_to_source,
            completed = reg.completed,
            "peer registered"
        );
        self.send(now, peer, Response::Registered(pb::Registered {}));
        self.deliver(now, decisions);
        Ok(peer)
    }

    /// One non-register message of a peer's stream.
    pub fn peer_request(
        &mut self,
        now: TimeNs,
        peer: PeerId,
        request: pb::announce_peer_request::Request,
    ) -> Result<(), ServiceError> {
        use pb::announce_peer_request::Request as R;
        match request {
            R::Register(_) => Err(ServiceError::AlreadyRegistered(self.peer_wire(peer).to_string())),
            R::PiecesFinished(m) => self.pieces_finished(now, peer, m),
            R::PieceFailed(m) => {
                let parent = self.known_peer("piece_failed.parent_peer_id", &m.parent_peer_id)?;
                self.check_piece("piece_failed.number", peer, m.number)?;
                self.core.piece_failed(now, peer, parent)?;
                Ok(())
            }
            R::Reschedule(m) => {
                if m.blocked_parent_peer_ids.len() > MAX_BLOCKED_PER_RESCHEDULE {
                    return Err(ServiceError::field(
                        "reschedule.blocked_parent_peer_ids",
                        format!("has {} ids; at most {MAX_BLOCKED_PER_RESCHEDULE}", m.blocked_parent_peer_ids.len()),
                    ));
                }
                let blocked = m
                    .blocked_parent_peer_ids
                    .iter()
                    .map(|id| self.known_peer("reschedule.blocked_parent_peer_ids", id))
                    .collect::<Result<Vec<_>, _>>()?;
                let decisions = self.core.reschedule(now, peer, &blocked)?;
                self.deliver(now, decisions);
                Ok(())
            }
            R::AskBackToSource(m) => {
                tracing::info!(peer = self.peer_wire(peer), description = m.description, "peer asks for the origin");
                let decisions = self.core.ask_back_to_source(now, peer)?;
                self.deliver(now, decisions);
                Ok(())
            }
            R::WantAll(_) => {
                let decisions = self.core.peer_wants_all(now, peer)?;
                self.deliver(now, decisions);
                Ok(())
            }
            R::DownloadFinished(_) => {
                let decisions = self.core.peer_finished(now, peer)?;
                let rec = &mut self.peers[peer.0 as usize];
                rec.reported = PieceSet::full(rec.reported.len());
                tracing::info!(peer = self.peer_wire(peer), "peer finished");
                self.deliver(now, decisions);
                Ok(())
            }
            R::DownloadFailed(m) => {
                tracing::info!(peer = self.peer_wire(peer), description = m.description, "peer failed");
                self.close_stream(now, peer, None, OnClose::FailUnfinished);
                Ok(())
            }
        }
    }

    fn pieces_finished(&mut self, now: TimeNs, peer: PeerId, m: pb::PiecesFinished) -> Result<(), ServiceError> {
        let mut reports = Vec::with_capacity(m.pieces.len());
        for piece in &m.pieces {
            self.check_piece("pieces_finished.pieces.number", peer, piece.number)?;
            let parent = match &piece.parent_peer_id {
                None => None,
                Some(id) => Some(self.known_peer("pieces_finished.pieces.parent_peer_id", id)?),
            };
            reports.push(PieceReport { piece: piece.number, parent, cost_ns: piece.cost_ns });
        }
        let decisions = self.core.pieces_finished(now, peer, &reports)?;
        let rec = &mut self.peers[peer.0 as usize];
        for r in &reports {
            rec.reported.insert(r.piece);
        }
        self.deliver(now, decisions);
        Ok(())
    }

    fn check_piece(&self, field: &'static str, peer: PeerId, number: u32) -> Result<(), ServiceError> {
        let count = self.peer_record(peer).reported.len();
        if number >= count {
            return Err(ServiceError::field(
                field,
                format!("piece {number} out of range: the task has {count} pieces"),
            ));
        }
        Ok(())
    }

    /// A peer id some client once registered (it may have ended since: reports race
    /// with leaving, and that is fine).
    fn known_peer(&self, field: &'static str, id: &str) -> Result<PeerId, ServiceError> {
        wire::id(field, id)?;
        self.peer_ids
            .get(id)
            .map(PeerId)
            .ok_or_else(|| ServiceError::field(field, format!("peer {id:?} is not known to this scheduler")))
    }

    /// The peer's stream ended: the client closed it, it broke, or the service refused a
    /// message (`status`). An unfinished download counts as failed.
    pub fn stream_ended(&mut self, now: TimeNs, peer: PeerId, stream_id: u64, status: Option<Status>) {
        let rec = &self.peers[peer.0 as usize];
        if rec.stream.as_ref().is_some_and(|s| s.id != stream_id) {
            return;
        }
        if let Some(status) = &status {
            tracing::info!(peer = self.peer_wire(peer), %status, "AnnouncePeer stream refused a message");
        }
        self.close_stream(now, peer, status, OnClose::FailUnfinished);
    }

    // ---- leaving ----

    pub fn leave_peer(&mut self, now: TimeNs, peer_id: &str) -> Result<(), ServiceError> {
        wire::id("peer_id", peer_id)?;
        let peer = self.peer_ids.get(peer_id).map(PeerId).ok_or_else(|| ServiceError::UnknownPeer(peer_id.into()))?;
        self.retire(now, peer, Status::cancelled("the peer left (LeavePeer)"));
        Ok(())
    }

    pub fn leave_task(&mut self, now: TimeNs, host_id: &str, task_id: &str) -> Result<u32, ServiceError> {
        wire::id("host_id", host_id)?;
        let task_wire = wire::task_id("task_id", task_id)?;
        let host = self.host_ids.get(host_id).map(HostId).ok_or_else(|| ServiceError::UnknownHost(host_id.into()))?;
        let task = self.task_ids.get(&task_wire).map(TaskId).ok_or(ServiceError::UnknownTask(task_wire))?;
        let mine: Vec<PeerId> =
            self.host_record(host).peers.iter().copied().filter(|p| self.peer_record(*p).task == task).collect();
        let mut left = 0;
        for p in mine {
            left += u32::from(self.retire(now, p, Status::cancelled("the host left the task (LeaveTask)")));
        }
        Ok(left)
    }

    /// The host's peers retire and its seed watch closes; what that changes for the tasks
    /// is the core's rule (`Scheduler::host_left`): tasks waiting for it as their seed are
    /// told it is unavailable.
    pub fn leave_host(&mut self, now: TimeNs, host_id: &str) -> Result<u32, ServiceError> {
        wire::id("host_id", host_id)?;
        let host = self.host_ids.get(host_id).map(HostId).ok_or_else(|| ServiceError::UnknownHost(host_id.into()))?;
        if self.host_record(host).left {
            return Ok(0);
        }
        let out = self.core.host_left(now, host)?;
        for p in self.host_record(host).peers.clone() {
            self.close_stream(now, p, Some(Status::cancelled("the host left (LeaveHost)")), OnClose::Nothing);
        }
        if let Some(w) = self.seed_watchers.remove(&host) {
            let _ = w.tx.try_send(Err(Status::cancelled("the host left (LeaveHost)")));
        }
        self.hosts[host.0 as usize].left = true;
        self.live_hosts = self.live_hosts.saturating_sub(1);
        let waiting: Vec<TaskId> = self.pending_seeds.iter().filter(|(_, p)| p.host == host).map(|(t, _)| *t).collect();
        for task in waiting {
            self.pending_seeds.remove(&task);
            self.metrics.seed_unavailable();
        }
        self.deliver(now, out.decisions);
        let left = out.peers.len() as u32;
        tracing::info!(host = host_id, peers_left = left, "host left");
        Ok(left)
    }

    /// The admission limits a registration must pass: the host's active peers, and live
    /// tasks when it brings a new one. Ended peers are dropped from the host's and tasks'
    /// lists on the way (they are kept nowhere else than the core's record).
    fn admit(&mut self, host: HostId, task: Option<TaskId>, reg: &Registration) -> Result<(), ServiceError> {
        let core = &self.core;
        let mine = &mut self.hosts[host.0 as usize].peers;
        mine.retain(|p| State::is_active(core, *p));
        if mine.len() >= self.tuning.max_peers_per_host {
            return Err(ServiceError::Admission {
                key: "max_peers_per_host",
                limit: self.tuning.max_peers_per_host,
                what: format!("host {:?} already has {} active peers", reg.host_id, mine.len()),
            });
        }
        let new_task = match task {
            None => true,
            Some(t) => !self.tasks[t.0 as usize].peers.iter().any(|p| State::is_active(core, *p)),
        };
        // Counted only when the records could be over the limit: a scan of the tasks.
        if new_task && self.tasks.len() >= self.tuning.max_tasks {
            let mut live = 0;
            for t in &mut self.tasks {
                t.peers.retain(|p| State::is_active(core, *p));
                live += usize::from(!t.peers.is_empty());
            }
            if live >= self.tuning.max_tasks {
                return Err(ServiceError::Admission {
                    key: "max_tasks",
                    limit: self.tuning.max_tasks,
                    what: format!("task {:?} would be one live task too many", reg.task_id),
                });
            }
        }
        Ok(())
    }

    pub(super) fn host_record(&self, host: HostId) -> &HostRecord {
        &self.hosts[host.0 as usize]
    }
}
