//! Seed triggering. The core names a seed host for a task (`Decision::TriggerSeed`); the
//! scheduler never dials peers, so each seed daemon keeps a WatchSeedTasks stream open and
//! the task is pushed there. The seed then registers a peer with need_back_to_source.
//!
//! A trigger can go unanswered: no watch is open, the seed left, or it never registers its
//! peer. The service then tells the core (`Scheduler::seed_unavailable`), which treats the
//! task as after a seed peer's failure: without it, peers of the default policy would wait
//! for that seed forever.

use super::error::ServiceError;
use super::state::{PendingSeed, SeedWatcher, State};
use crate::core::{HostId, HostKind, TaskId, TimeNs};
use api::pb;
use tokio::sync::mpsc::error::TrySendError;
use tonic::Status;

impl State {
    /// Opens (or replaces) the seed-task watch of a seed host.
    pub fn watch_seed_tasks(&mut self, host_id: &str, watcher: SeedWatcher) -> Result<(), ServiceError> {
        super::wire::id("host_id", host_id)?;
        let host = self.live_host(host_id)?;
        if self.host_record(host).info.kind != HostKind::Seed {
            return Err(ServiceError::NotSeedHost(host_id.to_string()));
        }
        if let Some(old) = self.seed_watchers.insert(host, watcher) {
            let _ = old.tx.try_send(Err(Status::cancelled("replaced by a newer WatchSeedTasks of this host")));
        }
        tracing::info!(host = host_id, "seed host watches seed tasks");
        Ok(())
    }

    pub(super) fn trigger_seed(&mut self, now: TimeNs, task: TaskId, seed_host: HostId) {
        self.tasks[task.0 as usize].seed_host = Some(seed_host);
        let message = self.seed_task(task);
        // Err: why not, and whether the watch is broken (and is dropped).
        let sent = match self.seed_watchers.get(&seed_host) {
            None => Err(("no WatchSeedTasks stream is open", false)),
            Some(w) => match w.tx.try_send(Ok(message)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(("its WatchSeedTasks queue is full", true)),
                Err(TrySendError::Closed(_)) => Err(("its WatchSeedTasks stream closed", true)),
            },
        };
        let task_wire = self.task_ids.wire(task.0).to_string();
        let host_wire = self.host_record(seed_host).info.id.clone();
        match sent {
            Ok(()) => {
                tracing::info!(task = task_wire, seed_host = host_wire, "seed triggered");
                let deadline_ns = now + self.tuning.seed_register_timeout_ns;
                self.pending_seeds.insert(task, PendingSeed { host: seed_host, deadline_ns });
            }
            Err((why, broken)) => {
                tracing::warn!(task = task_wire, seed_host = host_wire, why, "seed cannot be triggered");
                if broken {
                    self.seed_watchers.remove(&seed_host);
                }
                self.seed_unavailable(now, task, seed_host);
            }
        }
    }

    fn seed_task(&self, task: TaskId) -> pb::SeedTask {
        let m = &self.tasks[task.0 as usize].meta;
        pb::SeedTask {
            task_id: self.task_ids.wire(task.0).to_string(),
            url: m.url.clone(),
            digest: m.digest.clone(),
            piece_length_bytes: m.piece_length_bytes,
            content_length_bytes: m.content_length_bytes,
            piece_count: m.piece_count,
            request_headers: m.request_headers.clone().into_iter().collect(),
            preheat: None,
        }
    }

    /// Triggered seeds that did not register their peer in time.
    pub(super) fn expire_seed_triggers(&mut self, now: TimeNs) {
        let late: Vec<(TaskId, HostId)> =
            self.pending_seeds.iter().filter(|(_, p)| p.deadline_ns <= now).map(|(t, p)| (*t, p.host)).collect();
        for (task, host) in late {
            tracing::warn!(
                task = self.task_ids.wire(task.0),
                seed_host = self.host_record(host).info.id,
                "triggered seed did not register its peer in time"
            );
            self.seed_unavailable(now, task, host);
        }
    }

    /// Tells the core the task's seed (on `seed_host`) cannot serve it (see the module
    /// comment), and delivers what that changes for the task's other peers.
    pub(super) fn seed_unavailable(&mut self, now: TimeNs, task: TaskId, seed_host: HostId) {
        self.pending_seeds.remove(&task);
        self.metrics.seed_unavailable();
        let decisions = self.core.seed_unavailable(now, task, seed_host);
        self.deliver(now, decisions);
    }
}
