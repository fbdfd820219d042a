//! Upload slots of one host: at most `limit` piece uploads at once, across tasks; further
//! requests wait in arrival order. The daemon and the simulator both admit through it.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct UploadSlots<T> {
    limit: u32,
    active: u32,
    waiting: VecDeque<T>,
}

impl<T> UploadSlots<T> {
    pub fn new(limit: u32) -> Self {
        UploadSlots { limit: limit.max(1), active: 0, waiting: VecDeque::new() }
    }

    /// Admits `request` now (returned) or queues it (None).
    pub fn admit(&mut self, request: T) -> Option<T> {
        if self.active < self.limit {
            self.active += 1;
            Some(request)
        } else {
            self.waiting.push_back(request);
            None
        }
    }

    /// An upload ended; returns the next request to start, if one waits.
    pub fn release(&mut self) -> Option<T> {
        debug_assert!(self.active > 0, "release without an active upload");
        match self.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                self.active = self.active.saturating_sub(1);
                None
            }
        }
    }

    /// Drops queued requests that match (a child went away).
    pub fn forget(&mut self, mut gone: impl FnMut(&T) -> bool) {
        self.waiting.retain(|r| !gone(r));
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
        let mut s = UploadSlots::new(2);
        assert_eq!(s.admit(1), Some(1));
        assert_eq!(s.admit(2), Some(2));
        assert_eq!(s.admit(3), None);
        assert_eq!(s.admit(4), None);
        assert_eq!(s.active(), 2);
        assert_eq!(s.release(), Some(3));
        s.forget(|r| *r == 4);
        assert_eq!(s.release(), None);
        assert_eq!(s.active(), 1);
        assert_eq!(s.queued(), 0);
    }
}
