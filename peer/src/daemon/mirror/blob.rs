//! Blobs named by sha256: the registry vouches for the client first (`auth.rs`), then the
//! bytes come from the P2P task of the blob's digest (`stream.rs`), whole (200) or one
//! range (206). When P2P cannot give the first byte, the request goes to the registry
//! as it is (a fallback, counted).

use super::auth::{BlobInfo, Key};
use super::range::{self, Resolved};
use super::stream::{self, Read};
use super::upstream::Upstream;
use super::{forward, headers, json_error, Body, Mirror, Outcome};
use crate::daemon::download::Job;
use crate::storage::Sha256Digest;
use crate::task_id::TaskRequest;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::StreamExt;

pub struct BlobRequest<'a> {
    pub parts: &'a Parts,
    pub upstream: Upstream,
    pub name: &'a str,
    pub digest: &'a str,
    pub sha256: Sha256Digest,
}

pub async fn serve(m: &Arc<Mirror>, r: BlobRequest<'_>) -> (Response<Body>, Outcome) {
    let cfg = &m.ctx.cfg.mirror;
    let range_header = match r.parts.headers.get(RANGE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return (json_error(StatusCode::RANGE_NOT_SATISFIABLE, "Range header is not ASCII"), Outcome::ClientError)
        }
    };
    let spec = match range::parse(range_header) {
        Ok(s) => s,
        Err(range::Invalid(message)) => {
            return (json_error(StatusCode::RANGE_NOT_SATISFIABLE, &message), Outcome::ClientError)
        }
    };
    let credentials = headers::credentials(&r.parts.headers);
    let key = Key::new(&r.upstream.endpoint, r.name, r.digest, &credentials);
    let mut stale = false;
    let info = match m.auth.get(&key, Instant::now()) {
        Some(info) => info,
        None => match vouch(m, &r).await {
            Vouch::Yes(info) => {
                m.auth.put(key, info.clone(), Instant::now());
                info
            }
            // The registry is failing (unreachable, timeout, 5xx) and an earlier yes to
            // these credentials is kept: served with a warning when the operator allows it.
            Vouch::Outage(e) => match m.auth.get_stale(&key).filter(|_| cfg.serve_stale_on_error) {
                Some(info) => {
                    tracing::warn!(
                        digest = r.digest,
                        registry = r.upstream.host,
                        reason = e.as_ref().map_or("a 5xx answer", |e| e.message()),
                        "registry failing: serving the blob on its last yes (mirror.serve_stale_on_error)"
                    );
                    m.ctx.metrics.mirror_stale_blob();
                    stale = true;
                    info
                }
                // Not allowed or nothing kept: the registry's own 5xx, or why it is unreachable.
                None => match e {
                    Some(e) => return (json_error(e.status(), e.message()), Outcome::UpstreamError),
                    None => return pass_through(m, &r).await,
                },
            },
            // The registry refused (401, 403, 404...) or gave no length: the client gets
            // the registry's own answer to its request.
            Vouch::Refused => return pass_through(m, &r).await,
        },
    };
    let (start, end, partial) = match spec.resolve(info.content_bytes) {
        Resolved::Whole => (0, info.content_bytes, false),
        Resolved::Part { start, end } => (start, end, true),
        Resolved::Unsatisfiable(message) => {
            let mut resp = json_error(StatusCode::RANGE_NOT_SATISFIABLE, &message);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.content_bytes)) {
                resp.headers_mut().insert(CONTENT_RANGE, v);
            }
            return (resp, Outcome::ClientError);
        }
    };
    if r.parts.method == Method::HEAD {
        let resp = head_response(&info, start, end, partial, stale);
        return (resp, Outcome::P2p);
    }
    if info.content_bytes == 0 {
        return pass_through(m, &r).await;
    }
    let task = match m.ctx.ids.task_id(&TaskRequest { url: "", tag: None, application: None, digest: Some(r.digest) }) {
        Ok(t) => t,
        Err(e) => return (json_error(StatusCode::BAD_REQUEST, &e.to_string()), Outcome::ClientError),
    };
    let url = format!("{}/v2/{}/blobs/{}", r.upstream.endpoint, r.name, r.digest);
    let mut job = Job::new(task, url, Some(r.sha256), credentials);
    job.content_bytes_hint = Some(info.content_bytes);
    job.lazy = partial && !cfg.range_prefetch;
    job.insecure_origin = r.upstream.insecure;
    let read = Read { start, end, verify_whole: start == 0 && end == info.content_bytes };
    match stream::open(m.ctx.clone(), job, read).await {
        Ok((first, rest)) => {
            let mut resp = head_response(&info, start, end, partial, stale);
            let counted = m.ctx.metrics.clone();
            let body = tokio_stream::once(Ok(first)).chain(rest).map(move |item| {
                if let Ok(frame) = &item {
                    if let Some(data) = frame.data_ref() {
                        counted.mirror_bytes("p2p", data.len() as u64);
                    }
                }
                item
            });
            *resp.body_mut() = BodyExt::boxed(StreamBody::new(body));
            (resp, if partial { Outcome::P2pRange } else { Outcome::P2p })
        }
        Err(reason) => {
            tracing::info!(
                digest = r.digest,
                registry = r.upstream.host,
                reason = reason.message,
                "P2P cannot serve the blob; passing the request to the registry"
            );
            m.ctx.metrics.mirror_fallback(reason.label);
            let (resp, outcome) = pass_through(m, &r).await;
            (resp, if outcome == Outcome::Upstream { Outcome::Fallback } else { outcome })
        }
    }
}

/// What the registry said to a HEAD of the blob with the client's headers.
enum Vouch {
    /// 2xx with a length: the length and the blob's headers.
    Yes(BlobInfo),
    /// A refusal (4xx) or no length: the client gets the registry's own answer.
    Refused,
    /// The registry is failing: unreachable or no answer in time (the reason), or a 5xx
    /// (None: the client gets that answer).
    Outage(Option<forward::ForwardError>),
}

async fn vouch(m: &Mirror, r: &BlobRequest<'_>) -> Vouch {
    let mut upstream_headers = headers::to_upstream(&r.parts.headers, &m.ctx.cfg.mirror.upstream_header);
    upstream_headers.remove(RANGE);
    let path = format!("/v2/{}/blobs/{}", r.name, r.digest);
    let response = match m.clients.send(&r.upstream, Method::HEAD, &path, upstream_headers).await {
        Ok(response) => response,
        Err(e) => return Vouch::Outage(Some(e)),
    };
    let status = response.status();
    if status.is_server_error() {
        tracing::debug!(digest = r.digest, status = status.as_u16(), "registry failing on the blob HEAD");
        return Vouch::Outage(None);
    }
    if !status.is_success() {
        tracing::debug!(digest = r.digest, status = status.as_u16(), "registry refused the blob HEAD");
        return Vouch::Refused;
    }
    let length =
        response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(content_bytes) = length else { return Vouch::Refused };
    let kept = headers::BLOB_HEADERS
        .iter()
        .filter_map(|name| {
            let name = HeaderName::from_static(name);
            response.headers().get(&name).map(|v| (name, v.clone()))
        })
        .collect();
    Vouch::Yes(BlobInfo { content_bytes, headers: kept })
}

fn head_response(info: &BlobInfo, start: u64, end: u64, partial: bool, stale: bool) -> Response<Body> {
    let mut b = Response::builder()
        .status(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(CONTENT_LENGTH, end - start)
        .header(ACCEPT_RANGES, "bytes");
    for (name, value) in &info.headers {
        b = b.header(name, value);
    }
    if stale {
        b = b.header(http::header::WARNING, "110 - \"Response is Stale\"");
    }
    if partial {
        b = b.header(CONTENT_RANGE, format!("bytes {}-{}/{}", start, end - 1, info.content_bytes));
    }
    b.body(Empty::new().map_err(|never| match never {}).boxed())
        .unwrap_or_else(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

async fn pass_through(m: &Arc<Mirror>, r: &BlobRequest<'_>) -> (Response<Body>, Outcome) {
    let query = super::upstream::upstream_query(r.parts.uri.query());
    let path = format!("{}{query}", r.parts.uri.path());
    m.forward(&r.parts.method, &r.parts.headers, &r.upstream, &path).await
}
