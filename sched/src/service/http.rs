//! What `/metrics`, `/healthz`, the listing API and the preheat API answer for the
//! scheduler; the HTTP responder itself is `svc::probe_http`.

use super::preheat::{self, PreheatConfig};
use super::shared::Shared;
use std::sync::{Arc, Weak};
use svc::probe_http::{self, Handler, Reply, Request, Route};
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, preheat: PreheatConfig) {
    let shutdown = shared.shutdown_signal();
    probe_http::serve_requests(listener, shutdown, handler(&shared, preheat)).await
}

/// The preheat paths (`preheat::api`), then `route`'s.
pub fn handler(shared: &Arc<Shared>, cfg: PreheatConfig) -> Handler {
    let route = route(shared);
    let weak = Arc::downgrade(shared);
    Arc::new(move |req: &Request| {
        if req.path.starts_with("/api/v1/") {
            let Some(s) = weak.upgrade() else {
                return Reply::text(503, "shutting down\n");
            };
            if let Some(reply) = preheat::api::handle(&s, &cfg, req) {
                return reply;
            }
        }
        route(&req.method, &req.path)
    })
}

/// `/metrics` renders the gauges and counters; `/healthz` is 503 while shutting down;
/// `/api/v1/hosts`, `/api/v1/tasks`, `/api/v1/peers` and `/api/v1/tasks/ID/peers` list what the scheduler
/// knows as JSON (`listing.rs`). The route holds the state weakly: a scraper must not keep
/// a stopped service alive.
pub fn route(shared: &Arc<Shared>) -> Route {
    let standard = standard_route(shared);
    let weak = Arc::downgrade(shared);
    Arc::new(move |method, path| {
        if method != "GET" || !path.starts_with("/api/v1/") {
            return standard(method, path);
        }
        let Some(s) = weak.upgrade() else {
            return Reply::text(503, "shutting down\n");
        };
        let one_task = path.strip_prefix("/api/v1/tasks/").and_then(|rest| rest.strip_suffix("/peers"));
        // Rows are copied out under the state's lock and rendered after it is released, so
        // a long listing does not hold up scheduling.
        let body = match (path, one_task) {
            ("/api/v1/hosts", _) => serde_json::to_string_pretty(&s.read(|st| st.host_rows())),
            ("/api/v1/tasks", _) => serde_json::to_string_pretty(&s.read(|st| st.task_rows())),
            ("/api/v1/peers", _) => serde_json::to_string_pretty(&s.read(|st| st.peer_rows(None))),
            (_, Some(task)) => serde_json::to_string_pretty(&s.read(|st| st.peer_rows(Some(task)))),
            _ => {
                return Reply::text(
                    404,
                    "not found; the listing API has /api/v1/hosts, /api/v1/tasks, /api/v1/peers and /api/v1/tasks/ID/peers, the preheat API /api/v1/preheat (POST) and /api/v1/jobs\n",
                )
            }
        };
        match body {
            Ok(mut json) => {
                json.push('\n');
                Reply { status: 200, content_type: "application/json", body: json }
            }
            Err(e) => Reply::text(500, &format!("cannot render the listing: {e}\n")),
        }
    })
}

fn standard_route(shared: &Arc<Shared>) -> Route {
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
