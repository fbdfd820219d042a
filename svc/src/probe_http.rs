//! `/metrics` and `/healthz` over a minimal HTTP/1.1 responder: one request per connection,
//! GET only, bounded head size, read timeout and connection count. It uses only
//! `tokio::net` and `tokio::io`, so it also runs under madsim. What each path answers is
//! the caller's `route`.

use crate::watch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const MAX_HEAD_BYTES: usize = 8 << 10;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A response: status code, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: body.to_string() }
    }
    pub fn metrics(body: String) -> Reply {
        Reply { status: 200, content_type: OPENMETRICS, body }
    }
}

/// Answers a request line such as `GET /metrics HTTP/1.1`, given its method and path.
pub type Route = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

/// The usual routes: `/metrics` from `metrics()`, `/healthz` ok unless `healthy()` says why
/// not (503 with the reason), 404 elsewhere, 405 for anything but GET.
pub fn standard_route(
    metrics: impl Fn() -> String + Send + Sync + 'static,
    healthy: impl Fn() -> Result<(), String> + Send + Sync + 'static,
) -> Route {
    Arc::new(move |method, path| match (method, path) {
        ("GET", "/metrics") => Reply::metrics(metrics()),
        ("GET", "/healthz") => match healthy() {
            Ok(()) => Reply::text(200, "ok\n"),
            Err(why) => Reply::text(503, &format!("{why}\n")),
        },
        ("GET", _) => Reply::text(404, "not found; try /metrics or /healthz\n"),
        _ => Reply::text(405, "only GET is served\n"),
    })
}

/// Serves until `shutdown` turns true.
pub async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<bool>, route: Route) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = crate::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                // Over the limit the connection is simply closed: scrapers retry.
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let route = route.clone();
                tokio::spawn(async move {
                    respond(stream, &route).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, route: &Route) {
    let Ok(Some(request_line)) = tokio::time::timeout(READ_TIMEOUT, read_request_line(&mut stream)).await else {
        return;
    };
    let reply = route_line(&request_line, route);
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(reply.body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The reply to a request line such as `GET /metrics?x HTTP/1.1`.
pub fn route_line(request_line: &str, route: &Route) -> Reply {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    route(method, path)
}

/// Reads up to the end of the request head; returns its first line.
async fn read_request_line(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return None;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    text.lines().next().map(str::to_string)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_routes() {
        let route = standard_route(|| "m 1\n".into(), || Err("draining".into()));
        assert_eq!(route_line("GET /metrics HTTP/1.1", &route), Reply::metrics("m 1\n".into()));
        assert_eq!(route_line("GET /healthz?x=1 HTTP/1.1", &route).status, 503);
        assert_eq!(route_line("GET /nope HTTP/1.1", &route).status, 404);
        assert_eq!(route_line("POST /metrics HTTP/1.1", &route).status, 405);
        assert_eq!(route_line("", &route).status, 405);
    }
}
