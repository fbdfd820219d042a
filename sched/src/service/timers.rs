//! Time for the core, and the task that runs what is due: the core's timers
//! (`next_timer` / `on_timers`), idle-peer eviction every `evict_interval`, seed
//! triggers whose seed did not register in time, and preheat jobs whose seed went quiet.
//!
//! The core's clock is nanoseconds since the service started (`Clock`). Under madsim,
//! `tokio::time` is virtual, and so is this clock.

use super::shared::Shared;
use super::state::{OnClose, State};
use crate::core::TimeNs;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Status;

/// Wall (or virtual) time mapped to the core's `TimeNs`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { start: Instant::now() }
    }
    pub fn now_ns(&self) -> TimeNs {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    pub fn instant_at(&self, t: TimeNs) -> Instant {
        self.start + Duration::from_nanos(t)
    }
}

impl State {
    /// The earliest moment something is due.
    pub fn next_deadline(&self) -> TimeNs {
        let seed = self.pending_seeds.values().map(|p| p.deadline_ns).min();
        [self.core.next_timer(), seed, Some(self.next_evict_ns), self.preheat_jobs.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Runs everything due at `now`.
    pub fn run_due(&mut self, now: TimeNs) {
        let decisions = self.core.on_timers(now);
        self.deliver(now, decisions);
        self.expire_seed_triggers(now);
        self.expire_preheats(now);
        if now >= self.next_evict_ns {
            self.evict_idle(now);
            self.next_evict_ns = now.saturating_add(self.tuning.evict_interval_ns);
        }
    }

    fn evict_idle(&mut self, now: TimeNs) {
        let idle_s = self.core.config().peer_idle_timeout_ns / 1_000_000_000;
        for peer in self.core.evict_idle(now) {
            let rec = self.peer_record(peer);
            self.metrics.eviction();
            tracing::warn!(peer = self.peer_wire(peer), idle_s, "peer evicted: no progress");
            let (task, host, was_seed) = (rec.task, rec.host, rec.is_seed);
            let status = Status::aborted(format!("evicted: no piece reported for {idle_s} s"));
            self.close_stream(now, peer, Some(status), OnClose::Nothing);
            // The core marks an evicted peer as left, not failed, so an evicted seed would
            // leave the task's waiting peers waiting.
            if was_seed {
                self.seed_unavailable(now, task, host);
            }
        }
    }
}

/// Sleeps until the next deadline (or until a request makes one earlier) and runs what is
/// due; ends when the service shuts down.
pub async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown_signal();
    loop {
        let wake_at = shared.arm_timer();
        let sleep =
            tokio::time::sleep_until(shared.clock.instant_at(wake_at.min(shared.clock.now_ns() + 3_600_000_000_000)));
        svc::select! {
            _ = sleep => shared.with_state("timers", |s, now| s.run_due(now)),
            _ = shared.timer_changed.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
