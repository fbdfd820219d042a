//! `/metrics` and `/healthz` over a minimal HTTP/1.1 responder: one request per connection,
//! bounded head and body size, read timeout and connection count. It uses only
//! `tokio::net` and `tokio::io`, so it also runs under madsim. What each path answers is
//! the caller's `route` (method and path), or its `Handler` (the whole `Request`, for the
//! scheduler's POST endpoints).

use crate::watch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const MAX_HEAD_BYTES: usize = 8 << 10;
/// The largest request body read: a Harbor push event of a few hundred artifacts is tens
/// of KiB; nothing served here takes more.
pub const MAX_BODY_BYTES: usize = 1 << 20;
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

/// A request as a `Handler` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The target without its query.
    pub path: String,
    /// The `Authorization` header's value, if sent (once).
    pub authorization: Option<String>,
    /// The body (`Content-Length` bytes, at most `MAX_BODY_BYTES`).
    pub body: Vec<u8>,
}

/// Answers a whole request.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A `Route` as a `Handler`: the body and headers are not looked at.
pub fn handler_of(route: Route) -> Handler {
    Arc::new(move |r: &Request| route(&r.method, &r.path))
}

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
pub async fn serve(listener: TcpListener, shutdown: watch::Receiver<bool>, route: Route) {
    serve_requests(listener, shutdown, handler_of(route)).await
}

/// Serves whole requests (bodies included) until `shutdown` turns true.
pub async fn serve_requests(listener: TcpListener, mut shutdown: watch::Receiver<bool>, handler: Handler) {
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
                let handler = handler.clone();
                tokio::spawn(async move {
                    respond(stream, &handler).await;
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

async fn respond(mut stream: TcpStream, handler: &Handler) {
    let Ok(Some(request)) = tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await else {
        return;
    };
    let reply = match request {
        Ok(request) => handler(&request),
        Err(refusal) => refusal,
    };
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

/// Reads the request head and its body; None when the connection gives no head, a refusal
/// when the request cannot be taken (no length, too large, cut short).
async fn read_request(stream: &mut TcpStream) -> Option<Result<Request, Reply>> {
    let mut bytes = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if bytes.len() > MAX_HEAD_BYTES {
            return None;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            if bytes.is_empty() {
                return None;
            }
            break bytes.len();
        }
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut request = match parse_head(&head) {
        Ok(r) => r,
        Err(refusal) => return Some(Err(refusal)),
    };
    let length = match content_length(&head) {
        Ok(n) => n,
        Err(refusal) => return Some(Err(refusal)),
    };
    let mut body = bytes.get(head_end + 4..).unwrap_or_default().to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return Some(Err(Reply::text(
                400,
                &format!("the body ended after {} of its {length} bytes\n", body.len()),
            )));
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    request.body = body;
    Some(Ok(request))
}

/// The method, path and `Authorization` of a request head (the body is read after).
pub fn parse_head(head: &str) -> Result<Request, Reply> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut authorization = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.trim().eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Err(Reply::text(400, "more than one Authorization header\n"));
            }
            authorization = Some(value.trim().to_string());
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    Ok(Request { method: method.to_string(), path, authorization, body: Vec::new() })
}

/// The body's length from the head: 0 without `Content-Length`; chunked bodies are refused
/// (411: every client this port has sends a length).
fn content_length(head: &str) -> Result<usize, Reply> {
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reply::text(411, "chunked bodies are not taken; send Content-Length\n"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.trim().parse().map_err(|_| Reply::text(400, "Content-Length is not a number\n"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Reply::text(400, "two different Content-Length headers\n"));
            }
            length = Some(n);
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY_BYTES {
        return Err(Reply::text(413, &format!("the body is {length} bytes; at most {MAX_BODY_BYTES} are taken\n")));
    }
    Ok(length)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        500 => "Internal Server Error",
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

    #[test]
    fn heads_give_method_path_and_authorization() {
        let r = parse_head("POST /api/v1/preheat?x=1 HTTP/1.1\r\nHost: h\r\nauthorization:  Bearer s3 \r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.authorization.as_deref()),
            ("POST", "/api/v1/preheat", Some("Bearer s3"))
        );
        assert_eq!(parse_head("POST / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b").unwrap_err().status, 400);
        assert_eq!(content_length("POST / HTTP/1.1\r\nContent-Length: 12").unwrap(), 12);
        assert_eq!(content_length("GET / HTTP/1.1").unwrap(), 0);
        assert_eq!(content_length("POST / HTTP/1.1\r\nTransfer-Encoding: chunked").unwrap_err().status, 411);
        assert_eq!(content_length("POST / HTTP/1.1\r\nContent-Length: 99999999").unwrap_err().status, 413);
        assert_eq!(
            content_length("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2").unwrap_err().status,
            400
        );
    }

    #[tokio::test]
    async fn bodies_reach_the_handler() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let handler: Handler = Arc::new(|r: &Request| {
            Reply::text(201, &format!("{} {} {}", r.method, r.path, String::from_utf8_lossy(&r.body)))
        });
        let server = tokio::spawn(serve_requests(listener, stopped, handler));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /jobs HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"a\":").await.unwrap();
        s.write_all(b"\"bcd\"}").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 201 Created") && out.ends_with("POST /jobs {\"a\":\"bcd\"}"), "{out}");
        let _ = stop.send(true);
        let _ = server.await;
    }
}
