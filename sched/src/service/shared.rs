//! What every connection handler and background task of one running service shares: the
//! state behind its mutex, the clock, the metrics, and the shutdown signal.

use super::config::Tuning;
use super::metrics::Metrics;
use super::state::State;
use super::timers::Clock;
use crate::core::TimeNs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use svc::watch;
use tokio::sync::Notify;

pub struct Shared {
    state: Mutex<State>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub tuning: Tuning,
    /// Poked when a request makes the next deadline earlier than the timer task's.
    pub timer_changed: Notify,
    timer_armed_ns: AtomicU64,
    next_stream_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// Names this run (`AnnounceHostResponse.scheduler_instance`): start time and pid, so
    /// a restart, which forgets every peer, shows as a new value.
    pub instance: String,
}

impl Shared {
    pub fn new(state: State, clock: Clock, tuning: Tuning, shutdown: watch::Receiver<bool>) -> Shared {
        Shared {
            metrics: state.metrics.clone(),
            state: Mutex::new(state),
            clock,
            tuning,
            timer_changed: Notify::new(),
            timer_armed_ns: AtomicU64::new(u64::MAX),
            next_stream_id: AtomicU64::new(1),
            shutdown,
            instance: instance_name(),
        }
    }

    /// Runs one request against the state at the current time and records how long it took
    /// (lock wait included) under `request`.
    pub fn with_state<R>(&self, request: &'static str, f: impl FnOnce(&mut State, TimeNs) -> R) -> R {
        let started = std::time::Instant::now();
        let mut state = self.lock();
        // Read under the lock, so the core sees time that never goes backwards.
        let now = self.clock.now_ns();
        let out = f(&mut state, now);
        let next = state.next_deadline();
        drop(state);
        if next < self.timer_armed_ns.load(Ordering::Acquire) {
            self.timer_changed.notify_one();
        }
        self.metrics.latency(request, started.elapsed());
        out
    }

    /// Read-only access (stats, gauges); not timed.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// The timer task's next wake-up, recorded so requests know when to poke it.
    pub fn arm_timer(&self) -> TimeNs {
        let state = self.lock();
        let at = state.next_deadline();
        self.timer_armed_ns.store(at, Ordering::Release);
        at
    }

    pub fn stream_id(&self) -> u64 {
        self.next_stream_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the core or the service; the state may
        // be half-updated, so nothing may go on with it. The binary exits on any panic.
        self.state.lock().expect("scheduler state poisoned by an earlier panic")
    }
}

fn instance_name() -> String {
    let started_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{started_ns:x}-{}", std::process::id())
}
