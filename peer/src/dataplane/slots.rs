//! Upload admission for the server: `core::upload::UploadSlots` (the rule the simulator uses
//! too: at most `limit` uploads at once across tasks, the rest wait in arrival order) behind
//! an async gate with a bounded wait.

use crate::core::UploadSlots;
use sched::core::TimeNs;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

pub struct UploadGate {
    slots: Mutex<UploadSlots<Waiter>>,
    next_waiter: AtomicU64,
    peak_active: AtomicU32,
}

struct Waiter {
    id: u64,
    /// Fired, under the lock, when a finishing upload hands its slot to this waiter.
    granted: oneshot::Sender<()>,
}

/// An upload slot; dropping it frees the slot or hands it to the next waiter.
pub struct UploadSlot {
    gate: Arc<UploadGate>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.gate.release();
    }
}

impl UploadGate {
    pub fn new(limit: u32) -> Arc<UploadGate> {
        Arc::new(UploadGate {
            // The wait is bounded by `acquire`'s timer (the same `upload_slot_wait_ns`), so
            // the line itself never expires anyone here.
            slots: Mutex::new(UploadSlots::new(limit, TimeNs::MAX)),
            next_waiter: AtomicU64::new(0),
            peak_active: AtomicU32::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, UploadSlots<Waiter>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot now or after waiting in line; `None` if none came free within `max_wait`.
    pub async fn acquire(self: &Arc<Self>, max_wait: Duration) -> Option<UploadSlot> {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (granted, rx) = oneshot::channel();
        {
            let mut slots = self.lock();
            let admitted = slots.admit(0, Waiter { id, granted }).is_some();
            self.peak_active.fetch_max(slots.active(), Ordering::Relaxed);
            if admitted {
                return Some(UploadSlot { gate: self.clone() });
            }
        }
        let mut line = InLine { gate: self, id, rx: Some(rx) };
        let rx = line.rx.as_mut().expect("set above");
        match tokio::time::timeout(max_wait, rx).await {
            Ok(Ok(())) => {
                line.rx = None;
                Some(UploadSlot { gate: self.clone() })
            }
            // Timed out (or the sender vanished): `InLine::drop` leaves the line cleanly.
            _ => None,
        }
    }

    fn release(&self) {
        let mut slots = self.lock();
        // `release` hands the slot to the next waiter; one whose receiver is gone cannot
        // take it, so pass it on.
        while let Some(next) = slots.release() {
            if next.granted.send(()).is_ok() {
                break;
            }
        }
    }

    pub fn active(&self) -> u32 {
        self.lock().active()
    }
    pub fn queued(&self) -> usize {
        self.lock().queued()
    }
    /// The most uploads that were ever active at once.
    pub fn peak_active(&self) -> u32 {
        self.peak_active.load(Ordering::Relaxed)
    }
}

/// A waiter in line; dropped before being granted (timeout, cancelled request), it leaves the
/// line, and if a slot was granted in the meantime it gives the slot back.
struct InLine<'a> {
    gate: &'a Arc<UploadGate>,
    id: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let granted = {
            let mut slots = self.gate.lock();
            slots.forget(|w| w.id == self.id);
            // Grants happen under the same lock, so after `forget` none can arrive.
            rx.try_recv().is_ok()
        };
        if granted {
            self.gate.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_limited_handed_over_in_order_and_timeouts_leave_the_line() {
        let gate = UploadGate::new(1);
        let first = gate.acquire(Duration::ZERO).await.expect("free slot");
        assert!(gate.acquire(Duration::from_millis(20)).await.is_none(), "busy: times out");
        assert_eq!(gate.queued(), 0, "the timed-out waiter left the line");

        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.acquire(Duration::from_secs(5)).await.is_some() });
        for _ in 0..100 {
            if gate.queued() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(gate.queued(), 1);
        drop(first);
        assert!(waiter.await.unwrap(), "the slot was handed to the waiter");
        assert_eq!((gate.active(), gate.peak_active()), (0, 1));
    }
}
