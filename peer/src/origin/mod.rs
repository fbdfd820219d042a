//! Back-to-source reads behind a small trait, so a simulation can put a modelled origin in
//! place of the HTTP one (hyper and reqwest do not run under madsim).
//!
//! `HttpOrigin` (not built under `--cfg madsim`) speaks HTTP and HTTPS with `Range`
//! requests. Certificates are verified against the webpki and system roots unless
//! `insecure_skip_verify` is set.

pub mod address_policy;
mod config;
#[cfg(not(madsim))]
mod http;
#[cfg(all(test, not(madsim)))]
pub(crate) mod tests;

#[cfg(test)]
mod status_tests {
    use super::OriginError;

    #[test]
    fn too_many_requests_is_transient_and_other_4xx_are_not() {
        let e = OriginError::from_status("https://r.example/blob", 429);
        assert_eq!(e, OriginError::Throttled { url: "https://r.example/blob".into(), status: 429 });
        assert!(e.is_transient());
        assert_eq!(e.status(), Some(429));
        assert!(OriginError::from_status("u", 503).is_transient());
        assert!(!OriginError::from_status("u", 404).is_transient());
        assert!(!OriginError::from_status("u", 403).is_transient());
        assert!(!OriginError::from_status("u", 400).is_transient());
    }
}

pub use config::HttpOriginConfig;
#[cfg(not(madsim))]
pub(crate) use http::error_chain;
#[cfg(not(madsim))]
pub use http::HttpOrigin;

use crate::task_id::redact_url;
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

pub type OriginFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, OriginError>> + Send + 'a>>;

/// What to read: a URL and the request headers to pass on (a registry token...).
#[derive(Clone, Default)]
pub struct OriginRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl OriginRequest {
    pub fn new(url: impl Into<String>) -> OriginRequest {
        OriginRequest { url: url.into(), headers: Vec::new() }
    }
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> OriginRequest {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Header values and the query string may hold credentials: never printed.
impl fmt::Debug for OriginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OriginRequest").field("url", &redact_url(&self.url)).field("headers", &names).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentInfo {
    pub content_bytes: u64,
}

pub trait Origin: Send + Sync {
    /// The content's length (HTTP: HEAD, or a one-byte ranged GET where HEAD is refused).
    fn stat<'a>(&'a self, request: &'a OriginRequest) -> OriginFuture<'a, ContentInfo>;

    /// Streams the bytes in `range` (one piece, or many read in order from one request).
    fn open_range<'a>(&'a self, request: &'a OriginRequest, range: Range<u64>) -> OriginFuture<'a, OriginBody>;
}

/// Reads a whole range into memory.
pub async fn read_range(
    origin: &dyn Origin,
    request: &OriginRequest,
    range: Range<u64>,
) -> Result<Vec<u8>, OriginError> {
    let mut body = origin.open_range(request, range.clone()).await?;
    body.read_exact((range.end - range.start) as usize).await
}

/// Chunks of a response body, as the transport delivers them.
pub trait BodyChunks: Send {
    /// The next chunk; `None` at the end of the body.
    fn next_chunk(&mut self) -> OriginFuture<'_, Option<Bytes>>;
}

/// A ranged body of known length, read in caller-sized parts; ending early is `ShortRead`.
pub struct OriginBody {
    url: String,
    expected: u64,
    received: u64,
    chunks: Box<dyn BodyChunks>,
    pending: Bytes,
}

impl OriginBody {
    /// `url` is shown in errors (pass it redacted); `expected` is the range length.
    pub fn new(url: String, expected: u64, chunks: Box<dyn BodyChunks>) -> OriginBody {
        OriginBody { url, expected, received: 0, chunks, pending: Bytes::new() }
    }

    /// Bytes of the range not read yet.
    pub fn remaining(&self) -> u64 {
        self.expected - self.received
    }

    /// The next `n` bytes (at most `remaining`), for example one piece.
    pub async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, OriginError> {
        if n as u64 > self.remaining() {
            return Err(OriginError::Other {
                url: self.url.clone(),
                reason: format!("asked for {n} bytes, {} left in the range", self.remaining()),
            });
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.pending.is_empty() {
                let chunk = self.chunks.next_chunk().await.map_err(|e| self.short(out.len(), Some(e)))?;
                match chunk {
                    Some(chunk) => self.pending = chunk,
                    None => return Err(self.short(out.len(), None)),
                }
            }
            let take = self.pending.len().min(n - out.len());
            out.extend_from_slice(&self.pending.split_to(take));
        }
        self.received += n as u64;
        Ok(out)
    }

    fn short(&self, got: usize, cause: Option<OriginError>) -> OriginError {
        match cause {
            Some(e @ OriginError::Timeout { .. }) => e,
            cause => OriginError::ShortRead {
                url: self.url.clone(),
                expected: self.expected,
                received: self.received + got as u64,
                reason: cause.map(|e| e.to_string()),
            },
        }
    }
}

impl fmt::Debug for OriginBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginBody")
            .field("url", &self.url)
            .field("expected", &self.expected)
            .field("received", &self.received)
            .finish()
    }
}

/// Why an origin read failed. URLs are shown without query or credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{url}: unsupported scheme {scheme:?} (supported: http, https)")]
    UnsupportedScheme { url: String, scheme: String },
    #[error("{url}: invalid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The URL (or a redirect, or what its name resolves to) points at an internal address
    /// `[origin] allowed_networks` does not name.
    #[error("{url}: refused: {reason}")]
    AddressRefused { url: String, reason: String },
    #[error("{url}: host unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: TLS failure: {reason} (add the registry's CA to ca_cert_files; insecure_skip_verify only for a registry you trust)")]
    Tls { url: String, reason: String },
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: String, status: u16 },
    #[error("{url}: access denied (HTTP {status}); check the credentials passed on")]
    Forbidden { url: String, status: u16 },
    #[error("{url}: origin server error (HTTP {status})")]
    ServerError { url: String, status: u16 },
    /// HTTP 429: the origin asks us to slow down; worth another try after a pause.
    #[error("{url}: the origin is rate-limiting requests (HTTP {status})")]
    Throttled { url: String, status: u16 },
    #[error("{url}: unexpected HTTP status {status}")]
    UnexpectedStatus { url: String, status: u16 },
    #[error("{url}: the origin ignored the range {start}-{end} (HTTP {status})")]
    RangeIgnored { url: String, status: u16, start: u64, end: u64 },
    #[error("{url}: cannot tell the content length: {reason}")]
    NoContentLength { url: String, reason: String },
    #[error("{url}: body ended after {received} of {expected} bytes{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    ShortRead { url: String, expected: u64, received: u64, reason: Option<String> },
    #[error("{url}: no response within {after_ms} ms")]
    Timeout { url: String, after_ms: u64 },
    #[error("{url}: {reason}")]
    Other { url: String, reason: String },
    #[error("origin configuration: {0}")]
    Config(String),
}

impl OriginError {
    /// The HTTP status, for errors that come from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            OriginError::NotFound { status, .. }
            | OriginError::Forbidden { status, .. }
            | OriginError::ServerError { status, .. }
            | OriginError::Throttled { status, .. }
            | OriginError::UnexpectedStatus { status, .. }
            | OriginError::RangeIgnored { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error an HTTP status stands for (`url` shown as given: pass it redacted).
    pub fn from_status(url: &str, code: u16) -> OriginError {
        let url = url.to_string();
        match code {
            404 | 410 => OriginError::NotFound { url, status: code },
            401 | 403 => OriginError::Forbidden { url, status: code },
            429 => OriginError::Throttled { url, status: code },
            500..=599 => OriginError::ServerError { url, status: code },
            _ => OriginError::UnexpectedStatus { url, status: code },
        }
    }

    /// Worth another try later (the origin or the path to it may recover).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OriginError::Unreachable { .. }
                | OriginError::ServerError { .. }
                | OriginError::Throttled { .. }
                | OriginError::ShortRead { .. }
                | OriginError::Timeout { .. }
        )
    }
}
