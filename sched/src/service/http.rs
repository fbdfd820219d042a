//! What `/metrics` and `/healthz` answer for the scheduler; the HTTP responder itself is
//! `svc::probe_http`.

use super::shared::Shared;
use std::sync::{Arc, Weak};
use svc::probe_http::{self, Route};
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let shutdown = shared.shutdown_signal();
    probe_http::serve(listener, shutdown, route(&shared)).await
}

/// `/metrics` renders the gauges and counters; `/healthz` is 503 while shutting down.
/// The route holds the state weakly: a scraper must not keep a stopped service alive.
pub fn route(shared: &Arc<Shared>) -> Route {
    let (m, h): (Weak<Shared>, Weak<Shared>) = (Arc::downgrade(shared), Arc::downgrade(shared));
    probe_http::standard_route(
        move || {
            m.upgrade()
                .map(|s| {
                    let gauges = s.read(|st| st.gauges());
                    s.metrics.render(&gauges)
                })
                .unwrap_or_default()
        },
        move || match h.upgrade() {
            Some(s) if !s.is_shutting_down() => Ok(()),
            _ => Err("shutting down".into()),
        },
    )
}
