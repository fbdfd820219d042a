//! Upload slots of one host: at most `limit` piece uploads at once, across tasks; further
//! requests wait in arrival order. The daemon and the simulator both admit through it.

use sched::core::TimeNs;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct UploadSlots<T> {
    limit: u32,
    /// A request waits at most this long in line (`PeerConfig::upload_slot_wait_ns`); then
    /// `expire` hands it back, to be refused as busy.
    max_wait_ns: TimeNs,
    active: u32,
    /// Requests in arrival order, with when they arrived.
    waiting: VecDeque<(T, TimeNs)>,
}

impl<T> UploadSlots<T> {
    pub fn new(limit: u32, max_wait_ns: TimeNs) -> Self {
        UploadSlots { limit: limit.max(1), max_wait_ns, active: 0, waiting: VecDeque::new() }
    }

    /// Admits `request` now (returned) or queues it (None), as of `now`.
    pub fn admit(&mut self, now: TimeNs, request: T) -> Option<T> {
        if self.active < self.limit {
            self.active += 1;
            Some(request)
        } else {
            self.waiting.push_back((request, now));
            None
        }
    }

    /// An upload ended; returns the next request to start, if one waits.
    pub fn release(&mut self) -> Option<T> {
        debug_assert!(self.active > 0, "release without an active upload");
        match self.waiting.pop_front() {
            Some((next, _)) => Some(next),
            None => {
                self.active = self.active.saturating_sub(1);
                None
            }
        }
    }

    /// The oldest request that has waited `max_wait_ns` by `now`, taken out of the line:
    /// its sender is told the host is busy (call until None).
    pub fn expire(&mut self, now: TimeNs) -> Option<T> {
        let (_, since) = self.waiting.front()?;
        if now.saturating_sub(*since) < self.max_wait_ns {
            return None;
        }
        self.waiting.pop_front().map(|(r, _)| r)
    }

    /// When `expire` next has something to hand back.
    pub fn next_expiry(&self) -> Option<TimeNs> {
        self.waiting.front().map(|(_, since)| since.saturating_add(self.max_wait_ns))
    }

    /// Drops queued requests that match (a child went away).
    pub fn forget(&mut self, mut gone: impl FnMut(&T) -> bool) {
        self.waiting.retain(|(r, _)| !gone(r));
    }

    pub fn active(&self) -> u32 {
        self.active
    }
    pub fn queued(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_limit_then_queues_in_order() {
        let mut s = UploadSlots::new(2, 10);
        assert_eq!(s.admit(0, 1), Some(1));
        assert_eq!(s.admit(0, 2), Some(2));
        assert_eq!(s.admit(0, 3), None);
        assert_eq!(s.admit(0, 4), None);
        assert_eq!(s.active(), 2);
        assert_eq!(s.release(), Some(3));
        s.forget(|r| *r == 4);
        assert_eq!(s.release(), None);
        assert_eq!(s.active(), 1);
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn a_request_waits_at_most_max_wait_then_is_handed_back_in_order() {
        let mut s = UploadSlots::new(1, 10);
        assert_eq!(s.admit(0, 1), Some(1));
        assert_eq!(s.admit(2, 2), None);
        assert_eq!(s.admit(5, 3), None);
        assert_eq!(s.next_expiry(), Some(12));
        assert_eq!(s.expire(11), None);
        assert_eq!(s.expire(12), Some(2));
        assert_eq!(s.expire(12), None);
        assert_eq!(s.next_expiry(), Some(15));
        // The slot goes to the one still in line.
        assert_eq!(s.release(), Some(3));
        assert_eq!(s.next_expiry(), None);
    }
}
