//! The listing API: `GET /api/v1/hosts`, `/api/v1/tasks`, `/api/v1/peers` and
//! `/api/v1/tasks/ID/peers` on the HTTP port, JSON arrays of what the scheduler knows now,
//! for `p2pctl` and scripts. Read-only.
//! A task's URL is shown as the daemons log it (`svc::redact::redact_url`: no user info,
//! and its query, where signed URLs carry credentials, as `?<redacted>`); its request
//! headers not at all.

use super::state::State;
use crate::core::{HostKind, PeerId, PeerState, TaskId};
use serde::Serialize;
use svc::redact::redact_url;

#[derive(Debug, Serialize)]
pub struct HostRow {
    pub id: String,
    pub hostname: String,
    pub ip: String,
    pub data_port: u16,
    pub kind: &'static str,
    pub idc: String,
    pub location: String,
    /// Peers of the host that have not failed or left.
    pub live_peers: usize,
    pub left: bool,
}

#[derive(Debug, Serialize)]
pub struct TaskRow {
    pub id: String,
    pub url: String,
    pub digest: Option<String>,
    pub content_length_bytes: u64,
    pub piece_count: u32,
    pub peers: usize,
    pub succeeded: usize,
    pub seed_host: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PeerRow {
    pub id: String,
    pub task: String,
    pub host: String,
    pub state: &'static str,
    pub seed: bool,
    pub pieces_reported: u32,
    pub piece_count: u32,
}

pub fn state_name(state: PeerState) -> &'static str {
    match state {
        PeerState::Received => "received",
        PeerState::Running => "running",
        PeerState::BackToSource => "back_to_source",
        PeerState::Succeeded => "succeeded",
        PeerState::Failed => "failed",
        PeerState::Leave => "left",
    }
}

impl State {
    pub fn host_rows(&self) -> Vec<HostRow> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.host_ids.wire(*i as u32).is_empty())
            .map(|(i, h)| HostRow {
                id: self.host_ids.wire(i as u32).to_string(),
                hostname: h.info.hostname.clone(),
                ip: h.info.ip.to_string(),
                data_port: h.info.data_port,
                kind: match h.info.kind {
                    HostKind::Seed => "seed",
                    HostKind::Normal => "normal",
                },
                idc: h.info.idc.clone(),
                location: h.info.location.clone(),
                live_peers: h.peers.iter().filter(|p| self.is_live(**p)).count(),
                left: h.left,
            })
            .collect()
    }

    pub fn task_rows(&self) -> Vec<TaskRow> {
        self.tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskRow {
                id: self.task_ids.wire(i as u32).to_string(),
                url: redact_url(&t.meta.url),
                digest: t.meta.digest.clone(),
                content_length_bytes: t.meta.content_length_bytes,
                piece_count: t.meta.piece_count,
                peers: t.peers.iter().filter(|p| self.is_live(**p)).count(),
                succeeded: t.peers.iter().filter(|p| self.core.peer_state(**p) == Some(PeerState::Succeeded)).count(),
                seed_host: t.seed_host.map(|h| self.host_ids.wire(h.0).to_string()),
            })
            .collect()
    }

    /// Peers that have not left, or of one task only (`task`: its wire id).
    pub fn peer_rows(&self, task: Option<&str>) -> Vec<PeerRow> {
        let only = task.map(|t| self.task_ids.get(t).map(TaskId));
        if let Some(None) = only {
            return Vec::new();
        }
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(i, rec)| {
                let id = PeerId(i as u32);
                let state = self.core.peer_state(id)?;
                if state == PeerState::Leave || only.is_some_and(|t| t != Some(rec.task)) {
                    return None;
                }
                let wire = self.peer_ids.wire(i as u32);
                if wire.is_empty() {
                    return None;
                }
                Some(PeerRow {
                    id: wire.to_string(),
                    task: self.task_ids.wire(rec.task.0).to_string(),
                    host: self.host_ids.wire(rec.host.0).to_string(),
                    state: state_name(state),
                    seed: rec.is_seed,
                    pieces_reported: if state == PeerState::Succeeded {
                        rec.reported.len()
                    } else {
                        rec.reported.count()
                    },
                    piece_count: rec.reported.len(),
                })
            })
            .collect()
    }

    fn is_live(&self, peer: PeerId) -> bool {
        !matches!(self.core.peer_state(peer), None | Some(PeerState::Failed | PeerState::Leave))
    }
}
