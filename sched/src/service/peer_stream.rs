//! The driver of one AnnouncePeer stream: reads the client's messages in order and hands
//! each to the state. Responses do not come from here: the state queues them on the
//! stream's channel whenever the core decides something for this peer.
//!
//! The stream must open with `register` within `register_timeout`. After that, the stream
//! ends when the client closes it or breaks it (an unfinished download then counts as
//! failed), when the service refuses a message (the status says why), when the state closes
//! it (scheduling failed, eviction, leave), or at shutdown.

use super::error::ServiceError;
use super::shared::Shared;
use super::state::{PeerStream, PeerTx};
use super::wire;
use crate::core::PeerId;
use api::pb;
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::{Status, Streaming};

pub async fn drive(shared: Arc<Shared>, mut inbound: Streaming<pb::AnnouncePeerRequest>, tx: PeerTx) {
    let mut shutdown = shared.shutdown_signal();
    let first = svc::select! {
        first = tokio::time::timeout(shared.tuning.register_timeout, inbound.message()) => first,
        _ = shutdown.changed() => return,
    };
    let message = match first {
        Ok(Ok(Some(m))) => m,
        // The client went away before registering: nothing to undo.
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            let secs = shared.tuning.register_timeout.as_secs_f64();
            let _ = tx.try_send(Err(Status::deadline_exceeded(format!("no `register` message within {secs} s"))));
            return;
        }
    };
    let Some((peer, stream_id, mut stop)) = register(&shared, message, tx) else {
        return;
    };
    let mut budget = MessageBudget::new(shared.tuning.max_stream_messages_per_s);
    loop {
        svc::select! {
            next = inbound.message() => match next {
                Ok(Some(m)) => {
                    let name = m.request.as_ref().map_or("empty", wire::request_name);
                    if !budget.take(tokio::time::Instant::now()) {
                        shared.metrics.refused(name);
                        let limit = shared.tuning.max_stream_messages_per_s;
                        let e = ServiceError::Admission {
                            key: "max_stream_messages_per_s",
                            limit: limit as usize,
                            what: format!("this AnnouncePeer stream sent more than {limit} messages a second"),
                        };
                        shared.with_state("stream_end", |s, now| s.stream_ended(now, peer, stream_id, Some(e.into())));
                        return;
                    }
                    let handled = shared.with_state(name, |s, now| match m.request {
                        None => Err(ServiceError::EmptyRequest),
                        Some(r) => s.peer_request(now, peer, r),
                    });
                    if let Err(e) = handled {
                        shared.metrics.refused(name);
                        shared.with_state("stream_end", |s, now| s.stream_ended(now, peer, stream_id, Some(e.into())));
                        return;
                    }
                }
                Ok(None) | Err(_) => {
                    shared.with_state("stream_end", |s, now| s.stream_ended(now, peer, stream_id, None));
                    return;
                }
            },
            // The state closed the stream.
            _ = &mut stop => return,
            _ = shutdown.changed() => return,
        }
    }
}

/// A token bucket: `per_s` messages a second, bursts of up to twice that.
struct MessageBudget {
    tokens: f64,
    per_s: f64,
    last: Option<tokio::time::Instant>,
}

impl MessageBudget {
    fn new(per_s: u32) -> MessageBudget {
        let per_s = f64::from(per_s.max(1));
        MessageBudget { tokens: 2.0 * per_s, per_s, last: None }
    }

    /// Takes one message's token; false when the stream is over its rate.
    fn take(&mut self, now: tokio::time::Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.per_s;
            self.tokens = (self.tokens + refill).min(2.0 * self.per_s);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Handles the first message. On success the state holds the only sender of the
/// response stream, so the stream ends exactly when the state closes it.
fn register(
    shared: &Shared,
    message: pb::AnnouncePeerRequest,
    tx: PeerTx,
) -> Option<(PeerId, u64, oneshot::Receiver<()>)> {
    let refuse = |tx: &PeerTx, e: ServiceError| {
        shared.metrics.refused("register");
        let _ = tx.try_send(Err(e.into()));
    };
    let r = match message.request {
        Some(pb::announce_peer_request::Request::Register(r)) => r,
        Some(other) => {
            refuse(&tx, ServiceError::NotRegistered(wire::request_name(&other)));
            return None;
        }
        None => {
            refuse(&tx, ServiceError::EmptyRequest);
            return None;
        }
    };
    let reg = match wire::registration(r) {
        Ok(reg) => reg,
        Err(e) => {
            refuse(&tx, e);
            return None;
        }
    };
    let stream_id = shared.stream_id();
    let (stop_tx, stop_rx) = oneshot::channel();
    let stream = PeerStream { id: stream_id, tx: tx.clone(), stop: stop_tx };
    match shared.with_state("register", |s, now| s.register_peer(now, reg, stream)) {
        Ok(peer) => Some((peer, stream_id, stop_rx)),
        Err(e) => {
            refuse(&tx, e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MessageBudget;
    use std::time::Duration;

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let t0 = tokio::time::Instant::now();
        let mut b = MessageBudget::new(10);
        assert_eq!((0..25).filter(|_| b.take(t0)).count(), 20, "burst: twice the per-second rate");
        // Half a second later: 5 more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| b.take(t1)).count(), 5);
        // Idle for a minute: the bucket holds no more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..50).filter(|_| b.take(t2)).count(), 20);
    }
}
