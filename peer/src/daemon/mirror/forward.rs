//! Requests passed to the registry as they are (manifests, tags, `/v2/`, fallbacks) and
//! its answers relayed back: status, headers and the body streamed as it arrives.

use super::headers;
use super::upstream::Upstream;
use super::{Body, BodyError};
use crate::origin::error_chain;
use crate::origin::HttpOriginConfig;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// HTTP clients for the registries: certificates verified against the webpki and system
/// roots (plus `origin.ca_cert_files`), or not at all for `insecure = true` registries.
pub struct Clients {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    head_timeout: Duration,
}

#[derive(Debug)]
pub enum ForwardError {
    /// Unreachable, TLS failure, no answer: 502 (504 for a timeout) with the reason.
    Transport { status: StatusCode, message: String },
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::Transport { status, .. } => *status,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            ForwardError::Transport { message, .. } => message,
        }
    }
}

impl Clients {
    pub fn new(origin: &HttpOriginConfig, head_timeout_ms: u64) -> Result<Clients, String> {
        let build = |insecure: bool| -> Result<reqwest::Client, String> {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .connect_timeout(Duration::from_millis(origin.connect_timeout_ms))
                .read_timeout(Duration::from_millis(origin.read_timeout_ms))
                .danger_accept_invalid_certs(insecure || origin.insecure_skip_verify);
            for path in &origin.ca_cert_files {
                let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
                let cert = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| format!("CA file {} is not a PEM certificate: {e}", path.display()))?;
                b = b.add_root_certificate(cert);
            }
            b.build().map_err(|e| format!("cannot build the registry HTTP client: {e}"))
        };
        Ok(Clients {
            verified: build(false)?,
            unverified: build(true)?,
            head_timeout: Duration::from_millis(head_timeout_ms),
        })
    }

    /// Sends `method path_and_query` to the registry with `headers`; the response head.
    pub async fn send(
        &self,
        upstream: &Upstream,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, ForwardError> {
        let url = format!("{}{path_and_query}", upstream.endpoint);
        let client = if upstream.insecure { &self.unverified } else { &self.verified };
        let call = client.request(method, &url).headers(headers).send();
        match tokio::time::timeout(self.head_timeout, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(ForwardError::Transport {
                status: if e.is_timeout() { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY },
                message: format!("registry {} ({}): {}", upstream.host, upstream.endpoint, error_chain(&e)),
            }),
            Err(_) => Err(ForwardError::Transport {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!(
                    "registry {} ({}) sent no response within {} ms",
                    upstream.host,
                    upstream.endpoint,
                    self.head_timeout.as_millis()
                ),
            }),
        }
    }
}

/// The registry's answer for the client: status, headers (hop-by-hop ones dropped), and
/// the body streamed; a body that breaks mid-way aborts the client's response too.
/// `on_bytes` counts what was relayed.
pub fn relay(response: reqwest::Response, method: &Method, on_bytes: impl Fn(u64) + Send + 'static) -> Response<Body> {
    let status = response.status();
    let mut out = Response::builder().status(status);
    if let Some(h) = out.headers_mut() {
        *h = headers::to_client(response.headers());
    }
    let no_body = *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        Empty::new().map_err(|never| match never {}).boxed()
    } else {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BodyError>>(8);
        tokio::spawn(async move {
            let mut response = response;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let n = chunk.len() as u64;
                        if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                            return; // the client went away: dropping the response ends the upstream read
                        }
                        on_bytes(n);
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(format!("registry body broke: {}", error_chain(&e)).into())).await;
                        return;
                    }
                }
            }
        });
        BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx)))
    };
    out.body(body)
        .unwrap_or_else(|e| super::text(StatusCode::INTERNAL_SERVER_ERROR, &format!("bad upstream response: {e}")))
}

/// A registry answer's body, at most `max` bytes (a manifest, a token, an error text): the
/// mirror's manifests and the seed's preheat read them alike.
pub async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<Bytes, String> {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > max {
                    return Err(format!("the registry's answer is larger than {max} bytes"));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(out)),
            Err(e) => return Err(format!("the registry's answer broke: {}", error_chain(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn https_registries_are_verified_unless_marked_insecure() {
        let (addr, _pem) = crate::origin::tests::https_server().await;
        let clients = Clients::new(&HttpOriginConfig::default(), 5_000).unwrap();
        let verified = Upstream { host: addr.to_string(), endpoint: format!("https://{addr}"), insecure: false };
        let e = clients.send(&verified, Method::GET, "/blob", HeaderMap::new()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.message().to_ascii_lowercase().contains("certificate"), "{}", e.message());
        assert!(e.message().contains(&addr.to_string()), "the error names the registry: {}", e.message());
        let insecure = Upstream { insecure: true, ..verified };
        let response = clients.send(&insecure, Method::GET, "/blob", HeaderMap::new()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let relayed = relay(response, &Method::GET, |_| {});
        assert_eq!(relayed.headers().get(http::header::CONTENT_LENGTH).unwrap(), "10000");
        assert!(relayed.headers().get(http::header::CONNECTION).is_none(), "hop-by-hop header dropped");
        let body = relayed.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 10_000);
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_a_502_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let clients = Clients::new(&HttpOriginConfig::default(), 5_000).unwrap();
        let up = Upstream {
            host: format!("127.0.0.1:{port}"),
            endpoint: format!("http://127.0.0.1:{port}"),
            insecure: false,
        };
        let e = clients.send(&up, Method::HEAD, "/v2/", HeaderMap::new()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.message().contains(&format!("127.0.0.1:{port}")), "{}", e.message());
    }
}
