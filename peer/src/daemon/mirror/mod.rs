//! The registry mirror (hyper, HTTP/1.1 on `listen.mirror`, 127.0.0.1:65001 by default):
//! what containerd 1.6+ and skopeo send to a mirror. Manifests are resolved upstream once
//! per TTL and shared (`manifest.rs`), through a seed peer's resolver on normal hosts; tags
//! lists and `/v2/` go to the registry; blobs named by sha256 come through P2P (`blob.rs`,
//! `stream.rs`), whole or by range; only configured registries are proxied (`upstream.rs`).
//! A seed host also serves manifests to other peers' mirrors on `listen.resolver`
//! (`serve_resolver`).
//!
//! | file | what |
//! |---|---|
//! | `route.rs` | request path → API call, with reasons for refusals |
//! | `upstream.rs` | which registry (`?ns=`, header, default) and the allow list |
//! | `headers.rs` | header pass-through (hop-by-hop headers dropped) |
//! | `forward.rs` | requests passed to the registry, answers relayed back streaming |
//! | `manifest.rs` | manifests resolved once per TTL, joined, checked, shared (`core::resolve`) |
//! | `auth.rs` | the registry's yes to a client's credentials for a blob, remembered briefly |
//! | `range.rs` | `Range` headers |
//! | `blob.rs`, `stream.rs` | blobs through P2P |

mod auth;
mod blob;
pub(crate) mod forward;
mod headers;
mod manifest;
mod range;
mod route;
mod stream;
pub(crate) mod upstream;

/// The mirror's parsers of client and registry bytes, for the fuzz targets (`fuzz/`); not
/// an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use super::headers::{credentials, to_client, to_upstream};
    pub use super::range::{parse as parse_range, Invalid, Resolved, Spec};
    pub use super::route::{parse as parse_route, Route, RouteError};
    pub use super::upstream::{ns_param, resolve, upstream_query, Refusal, Upstream};
}

use super::Ctx;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use route::Route;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use svc::watch;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use upstream::{Refusal, Upstream};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BodyError>;

/// hyper's smallest read buffer: `max_header_bytes` below it is raised to it.
const MIN_BUF: usize = 8192;

/// How a request ended, for `peer_mirror_requests_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A blob (or its HEAD) served from P2P or the local cache.
    P2p,
    /// A range of a blob served from P2P.
    P2pRange,
    /// Passed to the registry (manifests, tags, /v2/, or a refusal the registry made).
    Upstream,
    /// A blob P2P could not start: passed to the registry instead.
    Fallback,
    /// The request was refused: bad path, range, method, unknown registry.
    ClientError,
    Denied,
    /// The registry could not be reached.
    UpstreamError,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::P2p => "p2p",
            Outcome::P2pRange => "p2p_range",
            Outcome::Upstream => "upstream",
            Outcome::Fallback => "fallback",
            Outcome::ClientError => "client_error",
            Outcome::Denied => "denied",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

pub struct Mirror {
    ctx: Arc<Ctx>,
    clients: forward::Clients,
    auth: auth::AuthCache,
    manifests: manifest::Manifests,
}

impl Mirror {
    pub fn new(ctx: Arc<Ctx>) -> Result<Mirror, String> {
        let m = &ctx.cfg.mirror;
        let clients = forward::Clients::new(&ctx.cfg.origin, m.upstream_timeout_ms)?;
        let auth = auth::AuthCache::new(Duration::from_millis(m.auth_check_ttl_ms));
        let manifests = manifest::Manifests::new(m.resolve_rule());
        Ok(Mirror { ctx, clients, auth, manifests })
    }

    /// `resolver`: the request came to a seed's resolver (`listen.resolver`), which answers
    /// manifests only.
    async fn handle(self: &Arc<Mirror>, request: Request<Incoming>, resolver: bool) -> Response<Body> {
        let (parts, _body) = request.into_parts();
        let (kind, (response, outcome)) = self.route(&parts, resolver).await;
        self.ctx.metrics.mirror_request(kind, outcome.label());
        tracing::debug!(
            method = %parts.method,
            path = parts.uri.path(),
            status = response.status().as_u16(),
            kind,
            result = outcome.label(),
            "mirror request"
        );
        response
    }

    async fn route(
        self: &Arc<Mirror>,
        parts: &http::request::Parts,
        resolver: bool,
    ) -> (&'static str, (Response<Body>, Outcome)) {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let mut r = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{}: a pull-through mirror serves GET and HEAD only", parts.method),
            );
            r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
            return ("invalid", (r, Outcome::ClientError));
        }
        let route = match route::parse(parts.uri.path()) {
            Ok(r) => r,
            Err(e) => {
                let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
                return ("invalid", (json_error(status, &e.message), Outcome::ClientError));
            }
        };
        if resolver && !matches!(route, Route::Manifest { .. }) {
            let message = "this is a seed peer's manifest resolver: it answers /v2/<name>/manifests/<reference> only";
            return ("invalid", (json_error(StatusCode::NOT_FOUND, message), Outcome::ClientError));
        }
        let kind = match &route {
            Route::Ping => "ping",
            Route::Manifest { .. } => "manifest",
            Route::Listing => "listing",
            Route::Blob { .. } if parts.headers.contains_key(http::header::RANGE) => "blob_range",
            Route::Blob { .. } => "blob",
        };
        let cfg = &self.ctx.cfg.mirror;
        let ns = upstream::ns_param(parts.uri.query());
        let header = parts.headers.get(cfg.upstream_header.as_str()).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let upstream = match upstream::resolve(cfg, ns.as_deref(), header) {
            Ok(u) => u,
            // skopeo pings /v2/ with no registry named: the mirror itself answers.
            Err(Refusal::NoneNamed(_)) if route == Route::Ping => {
                let mut r = Response::new(full(Bytes::from_static(b"{}")));
                r.headers_mut()
                    .insert("docker-distribution-api-version", http::HeaderValue::from_static("registry/2.0"));
                r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                return (kind, (r, Outcome::Upstream));
            }
            Err(refusal) => {
                let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
                let outcome = if status == StatusCode::FORBIDDEN { Outcome::Denied } else { Outcome::ClientError };
                return (kind, (json_error(status, refusal.message()), outcome));
            }
        };
        let path = format!("{}{}", parts.uri.path(), upstream::upstream_query(parts.uri.query()));
        let answer = match route {
            Route::Blob { name, digest, sha256: Some(sha256) } => {
                let r = blob::BlobRequest { parts, upstream, name: &name, digest: &digest, sha256 };
                blob::serve(self, r).await
            }
            Route::Manifest { name, reference } => {
                let r = manifest::ManifestRequest { parts, upstream, name: &name, reference: &reference, path: &path };
                manifest::serve(self, r).await
            }
            Route::Ping | Route::Listing | Route::Blob { sha256: None, .. } => {
                self.forward(&parts.method, &parts.headers, &upstream, &path).await
            }
        };
        (kind, answer)
    }

    /// Passes the request to the registry and relays its answer.
    async fn forward(
        &self,
        method: &Method,
        client: &HeaderMap,
        upstream: &Upstream,
        path: &str,
    ) -> (Response<Body>, Outcome) {
        let headers = headers::to_upstream(client, &self.ctx.cfg.mirror.upstream_header);
        match self.clients.send(upstream, method.clone(), path, headers).await {
            Ok(response) => {
                let metrics = self.ctx.metrics.clone();
                (forward::relay(response, method, move |n| metrics.mirror_bytes("upstream", n)), Outcome::Upstream)
            }
            Err(e) => {
                tracing::warn!(registry = upstream.host, error = e.message(), "registry unreachable");
                (json_error(e.status(), e.message()), Outcome::UpstreamError)
            }
        }
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A registry-style error (`{"errors":[{"code","message"}]}`) with a message saying what
/// is wrong.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let code = match status.as_u16() {
        403 => "DENIED",
        404 => "NOT_FOUND",
        405 => "UNSUPPORTED",
        416 => "RANGE_NOT_SATISFIABLE",
        502 => "UPSTREAM_UNREACHABLE",
        504 => "UPSTREAM_TIMEOUT",
        s if s >= 500 => "INTERNAL",
        _ => "BAD_REQUEST",
    };
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string() + "\n";
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

/// A plain-text answer (for errors that have no better form).
pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r
}

/// Serves the mirror until `stop`; at most `mirror.max_connections` connections open and
/// `mirror.max_requests` requests handled at once.
pub async fn serve(mirror: Arc<Mirror>, listener: TcpListener, stop: watch::Receiver<bool>) {
    accept_loop(mirror, listener, stop, false).await
}

/// Serves a seed's manifest resolver (`listen.resolver`) until `stop`: the mirror's
/// manifest requests only, under the same connection limits.
pub async fn serve_resolver(mirror: Arc<Mirror>, listener: TcpListener, stop: watch::Receiver<bool>) {
    accept_loop(mirror, listener, stop, true).await
}

async fn accept_loop(mirror: Arc<Mirror>, listener: TcpListener, mut stop: watch::Receiver<bool>, resolver: bool) {
    let slots = Arc::new(Semaphore::new(mirror.ctx.cfg.mirror.max_connections));
    let requests = Arc::new(Semaphore::new(mirror.ctx.cfg.mirror.max_requests));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "mirror accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (mirror, requests) = (mirror.clone(), requests.clone());
        tokio::spawn(async move {
            serve_connection(mirror, stream, requests, resolver).await;
            drop(permit);
        });
    }
}

/// TLS record type "handshake": the first byte of a ClientHello.
const TLS_HANDSHAKE: u8 = 0x16;

async fn serve_connection(mirror: Arc<Mirror>, mut stream: TcpStream, requests: Arc<Semaphore>, resolver: bool) {
    let _ = stream.set_nodelay(true);
    let head_timeout = Duration::from_millis(mirror.ctx.cfg.mirror.request_head_timeout_ms);
    // containerd and skopeo may try HTTPS first: a ClientHello gets a plain 400 (Go's TLS
    // client reports "server gave HTTP response to HTTPS client" and retries over HTTP).
    let mut first = [0u8; 1];
    match tokio::time::timeout(head_timeout, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    if first[0] == TLS_HANDSHAKE {
        mirror.ctx.metrics.mirror_request("tls_hello", "client_error");
        let body = "this is a plain HTTP registry mirror; use http://\n";
        let reply = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
        let _ = stream.shutdown().await;
        return;
    }
    let max_buf = mirror.ctx.cfg.mirror.max_header_bytes.max(MIN_BUF);
    let service = service_fn(move |request: Request<Incoming>| {
        let (mirror, requests) = (mirror.clone(), requests.clone());
        async move {
            // The request head is whole: only now does the connection take a slot.
            let Ok(_slot) = requests.acquire_owned().await else {
                return Ok::<_, Infallible>(text(StatusCode::SERVICE_UNAVAILABLE, "the mirror is stopping"));
            };
            Ok::<_, Infallible>(mirror.handle(request, resolver).await)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(max_buf)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "mirror connection ended with an error");
    }
}
