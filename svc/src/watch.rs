//! A single-value channel that tells receivers of changes: `tokio::sync::watch` in the real
//! build; under `--cfg madsim` a replacement with the part of its API the services use.
//!
//! Why: tokio's watch spreads its waiters over notifier shards picked by a thread-local
//! generator that tokio seeds from a process-wide counter, outside madsim's seeded
//! randomness. A seed run a second time in one process (madsim's determinism check) then
//! wakes tasks in another order and diverges. The replacement keeps one `Notify`, which
//! wakes waiters in the order they started waiting.

#[cfg(not(madsim))]
pub use tokio::sync::watch::*;

#[cfg(madsim)]
pub use sim::*;

#[cfg(madsim)]
mod sim {
    use std::ops::Deref;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use tokio::sync::Notify;

    pub mod error {
        /// The value could not be sent: every receiver is gone.
        #[derive(Debug, PartialEq, Eq)]
        pub struct SendError<T>(pub T);

        impl<T> std::fmt::Display for SendError<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("channel closed")
            }
        }

        impl<T: std::fmt::Debug> std::error::Error for SendError<T> {}

        /// The sender is gone.
        #[derive(Debug, PartialEq, Eq, Clone)]
        pub struct RecvError(pub(super) ());

        impl std::fmt::Display for RecvError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("channel closed")
            }
        }

        impl std::error::Error for RecvError {}
    }

    struct Shared<T> {
        /// The value and its version (bumped by every send).
        value: Mutex<(T, u64)>,
        /// Woken on every send, on the sender's drop, and on a receiver's drop.
        notify: Notify,
        sender_alive: AtomicBool,
        receivers: AtomicUsize,
    }

    impl<T> Shared<T> {
        fn lock(&self) -> MutexGuard<'_, (T, u64)> {
            self.value.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
        let shared = Arc::new(Shared {
            value: Mutex::new((init, 0)),
            notify: Notify::new(),
            sender_alive: AtomicBool::new(true),
            receivers: AtomicUsize::new(1),
        });
        (Sender { shared: shared.clone() }, Receiver { shared, seen: 0 })
    }

    /// A borrowed value; do not hold it across an `.await`.
    pub struct Ref<'a, T>(MutexGuard<'a, (T, u64)>);

    impl<T> Deref for Ref<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0 .0
        }
    }

    pub struct Sender<T> {
        shared: Arc<Shared<T>>,
    }

    impl<T> Sender<T> {
        pub fn send(&self, value: T) -> Result<(), error::SendError<T>> {
            if self.shared.receivers.load(Ordering::Acquire) == 0 {
                return Err(error::SendError(value));
            }
            self.send_replace(value);
            Ok(())
        }

        /// Stores `value` whether or not anyone listens; returns the previous one.
        pub fn send_replace(&self, value: T) -> T {
            let old = {
                let mut v = self.shared.lock();
                v.1 += 1;
                std::mem::replace(&mut v.0, value)
            };
            self.shared.notify.notify_waiters();
            old
        }

        pub fn borrow(&self) -> Ref<'_, T> {
            Ref(self.shared.lock())
        }

        pub fn subscribe(&self) -> Receiver<T> {
            self.shared.receivers.fetch_add(1, Ordering::AcqRel);
            let seen = self.shared.lock().1;
            Receiver { shared: self.shared.clone(), seen }
        }

        pub fn receiver_count(&self) -> usize {
            self.shared.receivers.load(Ordering::Acquire)
        }

        pub fn is_closed(&self) -> bool {
            self.receiver_count() == 0
        }

        /// Waits until every receiver is gone.
        pub async fn closed(&self) {
            loop {
                let notified = self.shared.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.is_closed() {
                    return;
                }
                notified.await;
            }
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            self.shared.sender_alive.store(false, Ordering::Release);
            self.shared.notify.notify_waiters();
        }
    }

    impl<T: std::fmt::Debug> std::fmt::Debug for Sender<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Sender").finish_non_exhaustive()
        }
    }

    pub struct Receiver<T> {
        shared: Arc<Shared<T>>,
        /// The version this receiver saw last.
        seen: u64,
    }

    impl<T> Receiver<T> {
        pub fn borrow(&self) -> Ref<'_, T> {
            Ref(self.shared.lock())
        }

        /// The value, marked seen.
        pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
            let guard = self.shared.lock();
            self.seen = guard.1;
            Ref(guard)
        }

        pub fn has_changed(&self) -> Result<bool, error::RecvError> {
            if !self.shared.sender_alive.load(Ordering::Acquire) {
                return Err(error::RecvError(()));
            }
            Ok(self.shared.lock().1 != self.seen)
        }

        /// Waits for a value not seen yet (marks it seen); an error once the sender is gone.
        pub async fn changed(&mut self) -> Result<(), error::RecvError> {
            loop {
                let notified = self.shared.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let version = self.shared.lock().1;
                if version != self.seen {
                    self.seen = version;
                    return Ok(());
                }
                if !self.shared.sender_alive.load(Ordering::Acquire) {
                    return Err(error::RecvError(()));
                }
                notified.await;
            }
        }

        /// Waits until the value satisfies `f` (the current one included); an error once
        /// the sender is gone and the value does not.
        pub async fn wait_for(&mut self, mut f: impl FnMut(&T) -> bool) -> Result<Ref<'_, T>, error::RecvError> {
            loop {
                let notified = self.shared.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let guard = self.shared.lock();
                    self.seen = guard.1;
                    if f(&guard.0) {
                        // Locked again for the caller: a borrow returned from inside the
                        // loop does not pass the borrow checker (one task runs at a time
                        // under madsim, so nothing sends in between).
                        drop(guard);
                        return Ok(Ref(self.shared.lock()));
                    }
                }
                if !self.shared.sender_alive.load(Ordering::Acquire) {
                    return Err(error::RecvError(()));
                }
                notified.await;
            }
        }
    }

    impl<T> Clone for Receiver<T> {
        fn clone(&self) -> Self {
            self.shared.receivers.fetch_add(1, Ordering::AcqRel);
            Receiver { shared: self.shared.clone(), seen: self.seen }
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            self.shared.receivers.fetch_sub(1, Ordering::AcqRel);
            self.shared.notify.notify_waiters();
        }
    }

    impl<T: std::fmt::Debug> std::fmt::Debug for Receiver<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Receiver").finish_non_exhaustive()
        }
    }
}
