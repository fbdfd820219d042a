//! Read-only views: StatTask, StatPeer, and the gauges of /metrics.

use super::error::ServiceError;
use super::listing::state_name;
use super::metrics::Gauges;
use super::state::State;
use super::wire;
use crate::core::{PeerId, PeerState, TaskId};
use api::pb;

/// The states of `sched_peers{state}`, in the order they are rendered.
const GAUGE_STATES: [PeerState; 6] = [
    PeerState::Received,
    PeerState::Running,
    PeerState::BackToSource,
    PeerState::Succeeded,
    PeerState::Failed,
    PeerState::Leave,
];

/// Peers listed by StatTask when the request does not say.
pub const DEFAULT_MAX_PEERS: u32 = 1000;

impl State {
    pub fn stat_task(&self, req: &pb::StatTaskRequest) -> Result<pb::TaskStat, ServiceError> {
        let task_wire = wire::task_id("task_id", &req.task_id)?;
        let task = self.task_ids.get(&task_wire).map(TaskId).ok_or(ServiceError::UnknownTask(task_wire.clone()))?;
        let rec = &self.tasks[task.0 as usize];
        let mut counts = pb::PeerCounts::default();
        let mut finished_pieces_reported = 0;
        for p in &rec.peers {
            finished_pieces_reported += u64::from(self.peer_record(*p).reported.count());
            match self.core.peer_state(*p) {
                Some(PeerState::Received) => counts.received += 1,
                Some(PeerState::Running) => counts.running += 1,
                Some(PeerState::BackToSource) => counts.back_to_source += 1,
                Some(PeerState::Succeeded) => counts.succeeded += 1,
                Some(PeerState::Failed) => counts.failed += 1,
                Some(PeerState::Leave) => counts.left += 1,
                None => {}
            }
        }
        let max_peers = if req.max_peers == 0 { DEFAULT_MAX_PEERS } else { req.max_peers } as usize;
        let peers = if req.include_peers {
            rec.peers.iter().take(max_peers).map(|p| self.peer_stat(*p)).collect()
        } else {
            Vec::new()
        };
        Ok(pb::TaskStat {
            task_id: task_wire,
            url: rec.meta.url.clone(),
            digest: rec.meta.digest.clone(),
            piece_length_bytes: rec.meta.piece_length_bytes,
            content_length_bytes: rec.meta.content_length_bytes,
            piece_count: rec.meta.piece_count,
            peer_counts: Some(counts),
            back_to_source_peers: self.core.back_to_source_count(task) as u32,
            seed_host_id: rec.seed_host.map(|h| self.host_record(h).info.id.clone()),
            finished_pieces_reported,
            peers_truncated: req.include_peers && rec.peers.len() > max_peers,
            peers,
        })
    }

    pub fn stat_peer(&self, peer_id: &str) -> Result<pb::PeerStat, ServiceError> {
        wire::id("peer_id", peer_id)?;
        let peer = self.peer_ids.get(peer_id).map(PeerId).ok_or_else(|| ServiceError::UnknownPeer(peer_id.into()))?;
        Ok(self.peer_stat(peer))
    }

    fn peer_stat(&self, peer: PeerId) -> pb::PeerStat {
        let rec = self.peer_record(peer);
        let state = self.core.peer_state(peer).map_or(pb::PeerState::Unspecified, wire::peer_state);
        pb::PeerStat {
            peer_id: self.peer_wire(peer).to_string(),
            host_id: self.host_record(rec.host).info.id.clone(),
            task_id: self.task_ids.wire(rec.task.0).to_string(),
            state: state.into(),
            is_seed: rec.is_seed,
            finished_piece_count: rec.reported.count(),
            parent_peer_ids: self.core.parents_of(peer).iter().map(|p| self.peer_wire(*p).to_string()).collect(),
            connected: rec.stream.is_some(),
        }
    }

    pub fn gauges(&self) -> Gauges {
        let mut by_state = [0i64; 6];
        let mut peer_streams = 0;
        for (i, rec) in self.peers.iter().enumerate() {
            peer_streams += i64::from(rec.stream.is_some());
            let Some(state) = self.core.peer_state(PeerId(i as u32)) else { continue };
            if let Some(slot) = GAUGE_STATES.iter().position(|s| *s == state) {
                by_state[slot] += 1;
            }
        }
        let names = GAUGE_STATES.map(state_name);
        Gauges {
            hosts: self.hosts.iter().filter(|h| !h.left).count() as i64,
            tasks: self.tasks.len() as i64,
            peers: names.into_iter().zip(by_state).collect(),
            peer_streams,
            seed_watchers: self.seed_watchers.values().filter(|w| !w.tx.is_closed()).count() as i64,
            seed_fallbacks: self.core.stats.seed_fallbacks,
        }
    }
}
