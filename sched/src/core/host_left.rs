//! A host that goes away (its daemon's `LeaveHost`, on shutdown): the scheduler's side of
//! node churn. The service calls it for the RPC and the simulator for a node that leaves, so
//! what a departure changes is decided here once.

use super::*;

/// What `Scheduler::host_left` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostLeft {
    /// The host's peers that were still active, in registration order: each download ended
    /// as failed, each complete one as left.
    pub peers: Vec<PeerId>,
    /// What the departure changed for other peers (those waiting for the host as their
    /// task's seed), for the driver to deliver.
    pub decisions: Vec<Decision>,
}

impl Scheduler {
    /// The host leaves. Its unfinished peers fail (their children lose a parent) and its
    /// finished ones leave, so none is a parent any more; the host itself serves nobody
    /// from now on, neither as a parent nor as a seed, until it is announced again (the
    /// core keeps every host it heard of: it stays as a normal host that shares nothing).
    /// A task that triggered it as its seed and never saw its seed peer register is told the
    /// seed is unavailable (`seed_unavailable`): its waiting peers would otherwise count on
    /// a seed that is gone. Leaving twice changes nothing the second time.
    pub fn host_left(&mut self, now: TimeNs, host: HostId) -> Result<HostLeft, SchedError> {
        let peers = self.hosts.get(&host).ok_or(SchedError::UnknownHost(host))?.peers.clone();
        let mut out = HostLeft::default();
        for peer in peers {
            match self.peer_state(peer) {
                Some(PeerState::Received | PeerState::Running | PeerState::BackToSource) => {
                    self.peer_failed(now, peer)?;
                    out.peers.push(peer);
                }
                Some(PeerState::Succeeded) => {
                    self.peer_left(now, peer)?;
                    out.peers.push(peer);
                }
                Some(PeerState::Failed | PeerState::Leave) | None => {}
            }
        }
        let h = self.hosts.get_mut(&host).expect("checked above");
        let was_sharing = !h.info.disable_shared;
        h.info.kind = HostKind::Normal;
        h.info.disable_shared = true;
        if was_sharing {
            self.refresh_host(host);
        }
        let peers = &self.peers;
        let waiting: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.seed_triggered.is_some_and(|(h, _)| h == host) && t.seed_failed_ns.is_none())
            .filter(|t| !t.peers.iter().any(|p| peers.get(p).is_some_and(|p| p.host == host)))
            .map(|t| t.id)
            .collect();
        for task in waiting {
            out.decisions.extend(self.seed_unavailable(now, task, host));
        }
        Ok(out)
    }
}
