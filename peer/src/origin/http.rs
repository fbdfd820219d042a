//! The HTTP(S) origin: reqwest with rustls, certificates verified by default.

use super::address_policy::AddressPolicy;
use super::{BodyChunks, ContentInfo, HttpOriginConfig, Origin, OriginBody, OriginError, OriginFuture, OriginRequest};
use crate::task_id::redact_url;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

pub struct HttpOrigin {
    client: reqwest::Client,
    config: HttpOriginConfig,
    policy: Arc<AddressPolicy>,
}

/// The address policy's refusal, carried through reqwest's error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Name resolution that keeps only the addresses the policy allows (checked where the
/// connection is made, so a name cannot resolve to one address when checked and another
/// when dialled).
struct PolicyResolver(Arc<AddressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.trusts_host(&host) {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refusal.get_or_insert(format!("{host} resolves to {why}"));
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(why)) => Err(Box::new(Refused(why)) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// An address literal in a URL is dialled without resolution: checked here.
fn check_literal(policy: &AddressPolicy, url: &reqwest::Url) -> Result<(), String> {
    let Some(host) = url.host_str() else { return Ok(()) };
    if policy.trusts_host(host) {
        return Ok(());
    }
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => policy.check(ip),
        Err(_) => Ok(()),
    }
}

impl HttpOrigin {
    pub fn new(config: HttpOriginConfig) -> Result<HttpOrigin, OriginError> {
        let policy = Arc::new(
            AddressPolicy::new(&config.allowed_networks, config.trusted_hosts.clone())
                .map_err(|e| OriginError::Config(format!("allowed_networks: {e}")))?,
        );
        let on_redirect = policy.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("more than 10 redirects");
            }
            match check_literal(&on_redirect, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(Refused(format!("a redirect to {why}"))),
            }
        });
        let mut builder = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .redirect(redirects)
            .use_rustls_tls()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .read_timeout(Duration::from_millis(config.read_timeout_ms))
            .user_agent(config.user_agent.clone())
            .danger_accept_invalid_certs(config.insecure_skip_verify);
        for path in &config.ca_cert_files {
            let pem = std::fs::read(path)
                .map_err(|e| OriginError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                OriginError::Config(format!("CA file {} is not a PEM certificate: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| OriginError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpOrigin { client, config, policy })
    }

    /// Checks the URL and builds the header map.
    fn prepare(&self, request: &OriginRequest) -> Result<(reqwest::Url, HeaderMap), OriginError> {
        let shown = redact_url(&request.url);
        let url = reqwest::Url::parse(request.url.trim())
            .map_err(|e| OriginError::InvalidUrl { url: shown.clone(), reason: e.to_string() })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OriginError::UnsupportedScheme { url: shown, scheme: url.scheme().to_string() });
        }
        check_literal(&self.policy, &url)
            .map_err(|reason| OriginError::AddressRefused { url: shown.clone(), reason })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| OriginError::InvalidUrl {
                url: shown.clone(),
                reason: format!("bad header name {name:?}"),
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| OriginError::InvalidUrl {
                url: shown.clone(),
                reason: format!("bad value for header {name}"),
            })?;
            headers.append(name, value);
        }
        Ok((url, headers))
    }

    async fn send(&self, builder: reqwest::RequestBuilder, shown: &str) -> Result<reqwest::Response, OriginError> {
        builder.send().await.map_err(|e| self.send_error(shown, e))
    }

    fn send_error(&self, shown: &str, e: reqwest::Error) -> OriginError {
        let url = shown.to_string();
        let reason = error_chain(&e);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<Refused>() {
                return OriginError::AddressRefused { url, reason: refused.0.clone() };
            }
            source = s.source();
        }
        if e.is_timeout() {
            OriginError::Timeout { url, after_ms: self.config.connect_timeout_ms.max(self.config.read_timeout_ms) }
        } else if is_tls_error(&e) {
            OriginError::Tls { url, reason }
        } else if e.is_connect() {
            OriginError::Unreachable { url, reason }
        } else {
            OriginError::Other { url, reason }
        }
    }

    async fn content_length(&self, request: &OriginRequest) -> Result<u64, OriginError> {
        let shown = redact_url(&request.url);
        let (url, headers) = self.prepare(request)?;
        let head = self.send(self.client.head(url.clone()).headers(headers.clone()), &shown).await?;
        let status = head.status();
        if status.is_success() {
            if let Some(len) = header_u64(head.headers(), CONTENT_LENGTH) {
                return Ok(len);
            }
        } else if !head_refused(status) {
            return Err(status_error(&shown, status));
        }
        // HEAD refused (S3 URLs presigned for GET answer 403) or without a length: ask for
        // the first byte and read the total from Content-Range.
        let get = self.client.get(url).headers(headers).header(RANGE, "bytes=0-0");
        let response = self.send(get, &shown).await?;
        let status = response.status();
        let total = match status {
            StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE => content_range_total(response.headers())
                .ok_or_else(|| OriginError::NoContentLength {
                    url: shown.clone(),
                    reason: format!("HTTP {} without a total in Content-Range", status.as_u16()),
                })?,
            s if s.is_success() => header_u64(response.headers(), CONTENT_LENGTH).ok_or_else(|| {
                OriginError::NoContentLength { url: shown.clone(), reason: "no Content-Length on HEAD or GET".into() }
            })?,
            s => return Err(status_error(&shown, s)),
        };
        Ok(total)
    }

    async fn open(&self, request: &OriginRequest, range: Range<u64>) -> Result<OriginBody, OriginError> {
        let shown = redact_url(&request.url);
        let (url, headers) = self.prepare(request)?;
        let len = range.end.saturating_sub(range.start);
        if len == 0 {
            return Ok(OriginBody::new(shown, 0, Box::new(NoChunks)));
        }
        let get =
            self.client.get(url).headers(headers).header(RANGE, format!("bytes={}-{}", range.start, range.end - 1));
        let response = self.send(get, &shown).await?;
        let status = response.status();
        match status {
            StatusCode::PARTIAL_CONTENT => {
                if let Some(start) = content_range_start(response.headers()) {
                    if start != range.start {
                        return Err(OriginError::Other {
                            url: shown,
                            reason: format!("asked for bytes from {}, got Content-Range from {start}", range.start),
                        });
                    }
                }
            }
            // A server without range support sends everything: fine when the range starts
            // at 0 (the body is cut at the range's end), wasteful and refused otherwise.
            StatusCode::OK if range.start == 0 => {}
            StatusCode::OK => {
                return Err(OriginError::RangeIgnored { url: shown, status: 200, start: range.start, end: range.end });
            }
            s => return Err(status_error(&shown, s)),
        }
        Ok(OriginBody::new(shown.clone(), len, Box::new(HttpChunks { response, shown })))
    }
}

impl Origin for HttpOrigin {
    fn stat<'a>(&'a self, request: &'a OriginRequest) -> OriginFuture<'a, ContentInfo> {
        Box::pin(async move { Ok(ContentInfo { content_bytes: self.content_length(request).await? }) })
    }

    fn open_range<'a>(&'a self, request: &'a OriginRequest, range: Range<u64>) -> OriginFuture<'a, OriginBody> {
        Box::pin(self.open(request, range))
    }
}

struct HttpChunks {
    response: reqwest::Response,
    shown: String,
}

impl BodyChunks for HttpChunks {
    fn next_chunk(&mut self) -> OriginFuture<'_, Option<Bytes>> {
        Box::pin(async move {
            self.response.chunk().await.map_err(|e| {
                if e.is_timeout() {
                    OriginError::Timeout { url: self.shown.clone(), after_ms: 0 }
                } else {
                    OriginError::Other { url: self.shown.clone(), reason: error_chain(&e) }
                }
            })
        })
    }
}

struct NoChunks;

impl BodyChunks for NoChunks {
    fn next_chunk(&mut self) -> OriginFuture<'_, Option<Bytes>> {
        Box::pin(async { Ok(None) })
    }
}

/// Statuses that mean "HEAD is not how to ask here", not "the content is not there".
fn head_refused(status: StatusCode) -> bool {
    matches!(status, StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED)
}

fn status_error(url: &str, status: StatusCode) -> OriginError {
    OriginError::from_status(url, status.as_u16())
}

fn header_u64(headers: &HeaderMap, name: HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `bytes 0-0/1234` or `bytes */1234` -> 1234.
fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

/// `bytes 100-199/1234` -> 100.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes")?.trim();
    spec.split_once('-')?.0.trim().parse().ok()
}

/// The error and its causes, which reqwest's and hyper's Display leave out.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A rustls error anywhere in the chain. `io::Error` hides what it wraps from `source()`
/// (it returns the wrapped error's source), so look inside it with `get_ref`.
fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    for _ in 0..32 {
        let Some(err) = current else { return false };
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        current = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}
